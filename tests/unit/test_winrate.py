"""Win-rate arithmetic, bootstrap interval, and the whole win-rate run on a scripted judge."""

from __future__ import annotations

import json
import math
import random

import pytest

from cai.backends.scripted import ScriptedBackend
from cai.evaluate import (
    WinRateConfig,
    WinRateError,
    bootstrap_interval,
    outcome,
    run_win_rate,
    summarize,
)


def test_outcome_and_counts_by_hand():
    assert outcome(0.9) == 1.0
    assert outcome(0.1) == 0.0
    assert outcome(0.5) == 0.5
    assert outcome(0.53, tie_margin=0.05) == 0.5
    s = summarize([0.9, 0.2, 0.5, None, 0.7, 0.0], [True, True, False, None, True, True])
    assert (s.n_prompts, s.n_judged, s.n_failed) == (6, 5, 1)
    assert (s.wins, s.losses, s.ties) == (2, 2, 1)
    assert s.win_rate == pytest.approx(2.5 / 5)
    assert s.mean_prob == pytest.approx((0.9 + 0.2 + 0.5 + 0.7 + 0.0) / 5)
    assert s.orders_disagree == pytest.approx(1 / 5)  # the None pair is left out
    low, high = s.win_rate_ci
    assert 0.0 <= low <= s.win_rate <= high <= 1.0


def test_bootstrap_constant_values_give_a_point_interval():
    assert bootstrap_interval([1.0] * 30, n_resamples=200) == (1.0, 1.0)
    assert bootstrap_interval([0.25] * 7, n_resamples=50) == (0.25, 0.25)


def test_bootstrap_matches_the_normal_approximation_for_a_coin():
    values = [1.0] * 100 + [0.0] * 100  # mean 0.5, standard error sqrt(0.25 / 200)
    low, high = bootstrap_interval(values, n_resamples=4000, confidence=0.95, seed=3)
    se = math.sqrt(0.25 / 200)
    assert low == pytest.approx(0.5 - 1.96 * se, abs=0.015)
    assert high == pytest.approx(0.5 + 1.96 * se, abs=0.015)
    narrow = bootstrap_interval(values, n_resamples=4000, confidence=0.5, seed=3)
    assert low < narrow[0] < narrow[1] < high
    assert bootstrap_interval(values, 500, 0.9, seed=7) == bootstrap_interval(values, 500, 0.9, 7)


def test_bootstrap_refuses_empty_and_bad_confidence():
    with pytest.raises(WinRateError, match="at least one"):
        bootstrap_interval([])
    with pytest.raises(WinRateError, match="between 0 and 1"):
        bootstrap_interval([1.0], confidence=1.0)
    s = summarize([None, None])
    assert s.win_rate is None and s.win_rate_ci is None and s.n_failed == 2


# --- the whole run on scripted models ------------------------------------------------------


def _slot_text(text: str, label: str) -> str:
    return text.split(f"({label})\n<response>\n", 1)[1].split("\n</response>", 1)[0]


def _content_judge(request):
    """Prefers whichever answer says "good", wherever it is shown."""
    text = request.messages[-1]["content"]
    return [float("good" in _slot_text(text, "A")), float("good" in _slot_text(text, "B"))]


def _write_prompts(path, n):
    with path.open("w") as handle:
        for i in range(n):
            handle.write(json.dumps({"prompt": f"question number {i}"}) + "\n")


def _number(prompt) -> int:
    return int(prompt[-1]["content"].rsplit(" ", 1)[1])


def _config(tmp_path, n):
    _write_prompts(tmp_path / "prompts.jsonl", n)
    return WinRateConfig(
        prompts=str(tmp_path / "prompts.jsonl"),
        policy={"kind": "scripted"},
        baseline={"kind": "scripted"},
        judge={"kind": "scripted"},
        judge_config={"principles_per_pair": 2},
        bootstrap_resamples=500,
        output_dir=str(tmp_path / "report"),
    )


def test_win_rate_run_with_a_content_judge(tmp_path):
    # prompts 0-5: policy good, baseline bad; 6-7: baseline good; 8-9: both bad
    policy = ScriptedBackend(
        respond=lambda p, params, i: "a good answer" if _number(p) < 6 else "a poor answer",
        model_id="policy",
    )
    baseline = ScriptedBackend(
        respond=lambda p, params, i: "a good reply" if _number(p) in (6, 7) else "meh",
        model_id="baseline",
    )
    judge = ScriptedBackend(score=_content_judge, model_id="judge")
    report = run_win_rate(_config(tmp_path, 10), policy, baseline, judge)
    s = report.summary
    assert (s.wins, s.losses, s.ties, s.n_failed) == (6, 2, 2, 0)
    assert s.win_rate == pytest.approx(0.7)
    p_good = 1 / (1 + math.exp(-1.0))  # softmax over logits [1, 0]
    assert s.mean_prob == pytest.approx((6 * p_good + 2 * (1 - p_good) + 2 * 0.5) / 10)
    # the judge counts an exact 0.5 in both orders (the two both-bad pairs) as no agreement
    assert s.orders_disagree == pytest.approx(0.2)
    # 10 prompts x 2 principles x 2 orders
    assert judge.calls["score"] == 40
    saved = json.loads((tmp_path / "report" / "report.json").read_text())
    assert saved["summary"]["wins"] == 6 and saved["policy"] == "policy"
    rows = (tmp_path / "report" / "pairs.jsonl").read_text().splitlines()
    assert len(rows) == 10
    assert "win rate" in (tmp_path / "report" / "report.md").read_text()


def test_position_biased_judge_gives_ties_not_wins(tmp_path):
    policy = ScriptedBackend(respond=lambda p, params, i: f"policy {random.random()}")
    baseline = ScriptedBackend(respond=lambda p, params, i: "baseline")
    first_wins = ScriptedBackend(score=lambda request: [-0.1, -2.5])
    s = run_win_rate(_config(tmp_path, 8), policy, baseline, first_wins).summary
    assert (s.wins, s.losses, s.ties) == (0, 0, 8)
    assert s.win_rate == 0.5 and s.orders_disagree == 1.0
    assert s.mean_prob == pytest.approx(0.5)


def test_unlabelled_pairs_are_counted_not_scored(tmp_path):
    policy = ScriptedBackend(respond=lambda p, params, i: "" if _number(p) == 0 else "good one")
    baseline = ScriptedBackend(respond=lambda p, params, i: "bad one")
    judge = ScriptedBackend(score=_content_judge)
    report = run_win_rate(_config(tmp_path, 4), policy, baseline, judge)
    s = report.summary
    assert (s.n_failed, s.n_judged, s.wins) == (1, 3, 3)
    assert s.win_rate == 1.0
    failed = [
        json.loads(line)
        for line in (tmp_path / "report" / "pairs.jsonl").read_text().splitlines()
        if json.loads(line)["prob_policy"] is None
    ]
    assert failed[0]["failures"][0]["kind"] == "empty_response"
    assert "got no label" in (tmp_path / "report" / "report.md").read_text()


def test_one_order_only_is_refused(tmp_path):
    config = _config(tmp_path, 2).model_copy(update={"judge_config": {"both_orders": False}})
    with pytest.raises(WinRateError, match="both answer orders"):
        run_win_rate(config, ScriptedBackend(), ScriptedBackend(), ScriptedBackend())


def test_cli_winrate_runs_and_reports(tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app

    _write_prompts(tmp_path / "p.jsonl", 5)
    out = tmp_path / "eval"
    args = ["eval", "winrate", "--prompts", str(tmp_path / "p.jsonl"), "--backend", "scripted"]
    result = CliRunner().invoke(app, [*args, "-o", str(out), "--set", "bootstrap_resamples=100"])
    assert result.exit_code == 0, result.output
    assert "wins/ties/losses 0/5/0" in result.output  # the default scripted judge is indifferent
    assert json.loads((out / "report.json").read_text())["summary"]["ties"] == 5

    bad = CliRunner().invoke(app, [*args, "-o", str(out), "--set", "tie_margin=0.7"])
    assert bad.exit_code == 2 and "tie_margin" in bad.output


def test_cli_train_commands_reject_unknown_settings(tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app

    for command in ("reward", "dpo", "grpo", "rloo"):
        result = CliRunner().invoke(
            app, ["train", command, "--model", "m", "-o", str(tmp_path), "--set", "bogus=1"]
        )
        assert result.exit_code == 2, (command, result.output)
        assert "bogus: unknown setting" in result.output
