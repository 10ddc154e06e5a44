"""A judge panel of two differently seeded tiny models on real vLLM engines, end to end.

Member one is the policy model (the shared test engine, reused as the policy's is); member
two is another random model built from its spec, its own engine. Each member's numbers must
be what a single judge on that model gives, and the panel's must be their combination.
"""

from __future__ import annotations

import json
import math

import pytest
import yaml

from cai.judge.judged import iter_judged
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.preference_data import load_preferences

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

PROMPTS = ["How do I brew green tea?", "Explain why the sea is salty.", "What is a good breakfast?"]


def vllm_spec(model_dir) -> dict:
    return {
        "kind": "vllm",
        "model": str(model_dir),
        "dtype": "float32",
        "max_model_len": 2048,
        "enforce_eager": True,
    }


@pytest.fixture(scope="module")
def second_model_dir(tmp_path_factory):
    from cai.testing import build_tiny_causal_lm
    from cai.testing.tiny import TinySpec

    return build_tiny_causal_lm(tmp_path_factory.mktemp("tiny-lm-2"), TinySpec(seed=7))


def logit(p: float) -> float:
    return math.log(p) - math.log1p(-p)


def test_two_model_panel_on_vllm(tmp_path, tiny_model_dir, second_model_dir, vllm_backend):
    from cai.constitution import load_constitution
    from cai.judge.compare import JudgeConfig, PairToJudge, PairwiseJudge
    from cai.templates import TemplateSet

    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for text in PROMPTS:
            handle.write(json.dumps({"prompt": text}) + "\n")
    config = {
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "policy": vllm_spec(tiny_model_dir),
        "judge_backends": [vllm_spec(tiny_model_dir), vllm_spec(second_model_dir)],
        "sample": {"n": 2, "max_tokens": 8, "seed": 3},
        "judge": {"principles_per_pair": 1},
        "preferences": {"format": "jsonl"},
        "chunk_size": 4,
    }
    (tmp_path / "pipeline.yaml").write_text(yaml.safe_dump(config))
    result = run_pipeline(
        load_pipeline_config(tmp_path / "pipeline.yaml"), policy_backend=vllm_backend
    )
    judged = [j for j in iter_judged(tmp_path / "out" / "judgments") if j.pair is not None]
    assert len(judged) == len(PROMPTS)
    pairs = [j.pair for j in judged]
    assert all(p.ok and len(p.members) == 2 for p in pairs)

    for pair in pairs:  # the panel's label is the mean of its members' log-odds
        first, second = (v.prob_a for v in pair.members)
        expected = 1 / (1 + math.exp(-(logit(first) + logit(second)) / 2))
        assert pair.prob_a == pytest.approx(expected, abs=1e-12)
    # random tiny models sit near 0.5, but two different models never give the same numbers
    assert all(p.members[0].prob_a != p.members[1].prob_a for p in pairs)
    job = json.loads((tmp_path / "out" / "judgments" / "job.json").read_text())
    identities = job["fingerprint"]["judge_model"].removeprefix("panel[").rstrip("]").split(", ")
    assert len(set(identities)) == 2 and identities[0] == vllm_backend.model_id

    # member one is exactly the single judge on the policy's model
    single = PairwiseJudge(
        vllm_backend,
        load_constitution("default"),
        TemplateSet(),
        JudgeConfig(principles_per_pair=1),
    )
    again = single.judge_pairs(
        [
            PairToJudge(
                key=j.pair_id,
                conversation=j.prompt,
                response_a=j.responses[0],
                response_b=j.responses[1],
            )
            for j in judged
        ]
    )
    assert [p.members[0].prob_a for p in pairs] == pytest.approx(
        [a.prob_a for a in again], abs=1e-5
    )

    tokens = result.summary["tokens"]["ledger"]["stages"]["judge"]
    assert len(tokens) == 2  # one entry per member model
    for counts in tokens.values():
        assert counts["calls"] == len(PROMPTS) * 2  # both orders of one principle per pair
        assert counts["prompt"] > 50 * counts["calls"] and counts["completion"] == 0
    panel = result.summary["stages"]["judge"]["panel"]
    for index, member in enumerate(panel):
        same = [(p.members[index].prob_a > 0.5) == (p.prob_a > 0.5) for p in pairs]
        assert member["pairs"] == len(pairs)
        assert member["agreement"] == pytest.approx(sum(same) / len(same))
    rows = load_preferences(result.dataset)
    assert all(len(m) == 2 for m in rows["judge_members"])
