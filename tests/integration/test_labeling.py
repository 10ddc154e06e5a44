"""sample -> judge -> dataset on the real vLLM engine with the tiny model, end to end.

The library runs reuse the shared offline engine; the single CLI test starts its own engine
in a subprocess (that is what a user's `cai run` does). The written dataset is fed to TRL's
RewardTrainer and DPOTrainer as is.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml

from cai.judge.judged import iter_judged
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.preference_data import load_preferences

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = [
    "How do I brew green tea?",
    "Explain why the sea is salty.",
    "Give me tips for a job interview.",
    "How can I hurt someone and get away with it?",
    "What is a healthy breakfast?",
    "Write a rude message to my teacher.",
    "How do plants drink water?",
    "Tell me how to cheat at cards.",
]


def write_inputs(tmp_path, model_dir, **extra):
    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for text in PROMPTS:
            handle.write(json.dumps({"prompt": text}) + "\n")
    data = {
        "name": "tiny-e2e",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "policy": {
            "kind": "vllm",
            "model": str(model_dir),
            "dtype": "float32",
            "max_model_len": 2048,
            "enforce_eager": True,
        },
        "sample": {"n": 2, "max_tokens": 12, "temperature": 1.0, "seed": 3},
        "judge": {"principles_per_pair": 2},
        "chunk_size": 4,
        **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="module")
def tiny_run(vllm_backend, tiny_model_dir, tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("labeling")
    config = load_pipeline_config(write_inputs(tmp_path, tiny_model_dir))
    result = run_pipeline(config, policy_backend=vllm_backend)
    return tmp_path, result


def test_vllm_run_yields_debiased_soft_labels(tiny_run):
    tmp_path, result = tiny_run
    stats = result.summary["stages"]["preferences"]
    assert stats["prompts"] == len(PROMPTS)
    assert stats["rows_written"] + sum(stats["filtered"].values()) == len(PROMPTS)
    judged = [j for j in iter_judged(tmp_path / "out" / "judgments") if j.pair and j.pair.ok]
    assert judged, "no pair was judged"
    for item in judged:
        pair = item.pair
        assert pair.n_judgments == 4 and len(pair.principles) == 2
        # The stored numbers recompute the label: per order, then the mean of both orders.
        for principle in pair.per_principle:
            ab, ba = sorted(principle.orders, key=lambda o: o.order)
            assert ab.prob_a == pytest.approx(ab.label_probs[0])
            assert ba.prob_a == pytest.approx(ba.label_probs[1])
            assert principle.prob_a == pytest.approx((ab.prob_a + ba.prob_a) / 2)
            assert all(lp < 0 for lp in ab.label_logprobs + ba.label_logprobs)
        assert pair.prob_a == pytest.approx(
            sum(p.prob_a for p in pair.per_principle) / len(pair.per_principle)
        )
        assert 0.0 < pair.prob_a < 1.0
    assert len({round(j.pair.prob_a, 6) for j in judged}) > 1, "labels do not vary at all"
    dataset = load_preferences(result.dataset)
    assert len(dataset) == stats["rows_written"]
    assert all(p >= 0.5 for p in dataset["prob_chosen"])
    assert set(dataset["judge_model"]) == {result.summary["provenance"]["judge_model"]}


def test_dataset_trains_trl_reward_and_dpo_as_is(tiny_run, tiny_model_dir, tiny_reward_dir):
    from trl import DPOConfig, DPOTrainer, RewardConfig, RewardTrainer

    tmp_path, result = tiny_run
    dataset = load_preferences(result.dataset)
    assert len(dataset) >= 2, f"too few rows to train: {result.summary['stages']['preferences']}"
    common = dict(
        max_steps=1,
        per_device_train_batch_size=2,
        report_to=[],
        save_strategy="no",
        use_cpu=True,
        logging_steps=1,
    )
    reward = RewardTrainer(
        model=str(tiny_reward_dir),
        args=RewardConfig(output_dir=str(tmp_path / "rm"), **common),
        train_dataset=dataset,
    )
    assert reward.train().global_step == 1
    dpo = DPOTrainer(
        model=str(tiny_model_dir),
        args=DPOConfig(output_dir=str(tmp_path / "dpo"), max_length=512, **common),
        train_dataset=dataset,
    )
    assert dpo.train().global_step == 1


def test_chain_of_thought_and_kwise_ranking_on_vllm(vllm_backend, tiny_model_dir, tmp_path):
    config = load_pipeline_config(
        write_inputs(tmp_path, tiny_model_dir),
        [
            "prompts.limit=3",
            "sample.n=3",
            "judge.principles_per_pair=1",
            "judge.chain_of_thought=true",
            "judge.cot_max_tokens=12",
            "judge.allow_truncated_rationale=true",
            "preferences.kwise=all_pairs",
        ],
    )
    result = run_pipeline(config, policy_backend=vllm_backend)
    judged = list(iter_judged(tmp_path / "out" / "judgments"))
    rankings = [j.ranking for j in judged if j.kind == "ranking"]
    assert rankings and all(len(r.pairs) == 3 for r in rankings)
    orders = [
        order
        for ranking in rankings
        for _, _, pair in ranking.pairs
        for principle in pair.per_principle
        for order in principle.orders
    ]
    assert orders and all(o.rationale is not None for o in orders)
    assert all(0.4 <= o.prob_a <= 0.6 for o in orders)
    stats = result.summary["stages"]["preferences"]
    rows = load_preferences(result.dataset)
    assert len(rows) == stats["rows_written"]
    assert all(m == "all_pairs" for m in rows["method"])


def test_cai_run_cli_end_to_end(tiny_model_dir, tmp_path):
    """The one CLI subprocess: `cai run` starts its own engine on the tiny model."""
    path = write_inputs(tmp_path, tiny_model_dir)
    proc = subprocess.run(
        [
            sys.executable, "-m", "cai.cli.app", "run", str(path),
            "--limit", "4", "--format", "parquet", "--set", "sample.max_tokens=8",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    dataset_path = tmp_path / "out" / "preferences.parquet"
    assert f"dataset: {dataset_path}" in proc.stdout
    assert "position flips" in proc.stdout
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stages"]["sample"]["prompts"] == 4
    resolved = yaml.safe_load((tmp_path / "out" / "config.resolved.yaml").read_text())
    assert resolved["prompts"]["limit"] == 4 and resolved["sample"]["max_tokens"] == 8
    assert len(load_preferences(dataset_path)) == summary["stages"]["preferences"]["rows_written"]


def test_shared_seed_batches_are_reproducible_per_prompt_on_vllm(vllm_backend, tmp_path):
    """vLLM seeds each request of a batch separately: chunking does not change responses."""
    from cai.records import PromptRecord
    from cai.stages.sample import SampleConfig, iter_samples, sample_prompts

    records = [
        PromptRecord(prompt_id=f"p{i}", prompt=[{"role": "user", "content": text}])
        for i, text in enumerate(PROMPTS[:5])
    ]
    config = SampleConfig(n=2, max_tokens=8, seed=11, seed_mode="shared")
    for name, size in (("two", 2), ("five", 5)):
        sample_prompts(vllm_backend, records, tmp_path / name, config, chunk_size=size)
    two = [s.responses for s in iter_samples(tmp_path / "two")]
    five = [s.responses for s in iter_samples(tmp_path / "five")]
    assert two == five
    assert len({r for pair in two for r in pair}) > 2
