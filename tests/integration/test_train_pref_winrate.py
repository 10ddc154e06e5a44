"""Train with DPO, then judge the trained policy against its base with real engines."""

from __future__ import annotations

import json

import pytest

from cai.testing.data import write_random_preferences, write_random_prompts

pytestmark = [pytest.mark.slow, pytest.mark.vllm]


def test_dpo_policy_win_rate_against_its_base(tiny_model_dir, vllm_backend, tmp_path):
    from cai.backends.transformers_local import TransformersBackend
    from cai.constitution import load_constitution
    from cai.evaluate import WinRateConfig, judge_responses, run_win_rate
    from cai.judge.compare import JudgeConfig, PairwiseJudge
    from cai.templates import TemplateSet
    from cai.train.preference import DPOTrainConfig, train_dpo

    train_dpo(
        DPOTrainConfig(
            model=str(tiny_model_dir),
            output_dir=str(tmp_path / "dpo"),
            train_data=write_random_preferences(tmp_path / "prefs.jsonl"),
            max_steps=2,
            per_device_train_batch_size=4,
            learning_rate=1e-2,
            dtype="float32",
        )
    )
    policy = TransformersBackend(str(tmp_path / "dpo"), device="cpu", show_progress=False)
    config = WinRateConfig(
        prompts=write_random_prompts(tmp_path / "prompts.jsonl", n=6),
        policy={"kind": "transformers", "model": str(tmp_path / "dpo")},
        baseline={"kind": "vllm", "model": str(tiny_model_dir)},
        judge={"kind": "vllm", "model": str(tiny_model_dir)},
        judge_config={"principles_per_pair": 2},
        max_tokens=12,
        bootstrap_resamples=300,
        output_dir=str(tmp_path / "eval"),
    )
    report = run_win_rate(config, policy, vllm_backend, vllm_backend)
    s = report.summary
    assert s.n_prompts == 6 and s.n_judged + s.n_failed == 6
    assert s.wins + s.ties + s.losses == s.n_judged
    if s.n_judged:
        low, high = s.win_rate_ci
        assert low <= s.win_rate <= high
        assert 0.0 < s.mean_prob < 1.0

    pairs = [json.loads(line) for line in (tmp_path / "eval" / "pairs.jsonl").open()]
    judged = [p for p in pairs if p["prob_policy"] is not None]
    for pair in judged:  # the label is the mean of the two answer orders
        assert pair["prob_policy"] == pytest.approx(
            (pair["per_order"]["AB"] + pair["per_order"]["BA"]) / 2, abs=1e-6
        )

    # Swapping policy and baseline swaps the debiased label exactly: 1 - p.
    judge = PairwiseJudge(
        vllm_backend,
        load_constitution("default"),
        TemplateSet(),
        JudgeConfig(principles_per_pair=2, seed=config.seed),
    )
    swapped = judge_responses(
        judge,
        [p["prompt_id"] for p in judged],
        [p["prompt"] for p in judged],
        [p["baseline_response"] for p in judged],
        [p["policy_response"] for p in judged],
    )
    for pair, other in zip(judged, swapped, strict=True):
        assert other.prob_policy == pytest.approx(1.0 - pair["prob_policy"], abs=1e-4)
