"""The judge audit of `cai agree` on six pairs worked out by hand: bootstrap intervals, ties,
position flips, length bias, self-preference, the report files, and degenerate inputs."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.human.agreement import compute_agreement
from cai.human.audit import audit
from cai.human.bootstrap import BootstrapSettings, bootstrap_interval
from cai.human.report import write_report

JUDGE = "HuggingFaceTB/SmolLM2-360M-Instruct@main"


def row(chosen, rejected, p, source="ai", **extra):
    return {
        "prompt": [{"role": "user", "content": f"q-{min(chosen, rejected)}"}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": "x",
        "pair_id": "x",
        "prob_chosen": p,
        "source": source,
        **extra,
    }


# The AI's chosen response sorts first in every pair, so the AI's label is "first" unless p = 0.5.
AI = [
    #   chosen (chars)   rejected        p     orders [chosen first, chosen second]
    row("a" * 10, "bb", 0.9, prob_chosen_by_order=[0.95, 0.85], principles=["harm"]),  # agree
    row("c" * 8, "dddd", 0.8, prob_chosen_by_order=[0.9, 0.3], principles=["harm"]),  # flip
    row("e" * 6, "fffff", 0.7, prob_chosen_by_order=[0.9, 0.5], orders_agree=False),  # order tie
    row("gg", "h" * 8, 0.6, prob_chosen_by_order=[0.7, 0.4], principles=["harm"]),  # flip
    row("iiii", "jjjj", 0.75, prob_chosen_by_order=[0.8, 0.7]),  # agree; equal length
    row("kkk", "l" * 6, 0.5, prob_chosen_by_order=[0.5, 0.5], orders_agree=False),  # AI tie
]
AI = [{**r, "judge_model": JUDGE} for r in AI]
# People pick: the longer a*10, the shorter dddd, the longer e*6, the shorter gg; tie; l*6.
HUMAN = [
    row("a" * 10, "bb", 1.0, "human"),
    row("dddd", "c" * 8, 1.0, "human"),
    row("e" * 6, "fffff", 1.0, "human"),
    row("gg", "h" * 8, 1.0, "human"),
    row("iiii", "jjjj", 0.5, "human"),
    row("l" * 6, "kkk", 1.0, "human"),
]
# Labels (AI, human), "first" = the alphabetically first response (always the AI's chosen):
# F/F, F/S, F/F, F/F, F/tie, tie/S.
FAST = BootstrapSettings(n_resamples=400, seed=3)


def test_accuracy_kappa_and_ties_by_hand():
    report = compute_agreement(AI, HUMAN, bootstrap=FAST)
    assert (report.n_pairs, report.n_decisive, report.n_ai_ties, report.n_human_ties) == (
        6,
        4,
        1,
        1,
    )
    assert report.accuracy == pytest.approx(3 / 4)  # decisive pairs 1-4; pair 2 is wrong
    # kappa over all six: observed 3/6; AI F5 T1, people F3 S2 T1 -> expected 16/36
    assert report.cohen_kappa == pytest.approx((18 / 36 - 16 / 36) / (1 - 16 / 36))
    assert report.cohen_kappa == pytest.approx(0.1)
    for value, ci in (
        (report.accuracy, report.accuracy_ci),
        (report.cohen_kappa, report.cohen_kappa_ci),
    ):
        assert ci is not None and ci.low <= value <= ci.high and ci.low < ci.high
    assert "exactly 0.5 is a tie" in report.tie_policy


def test_position_flips_count_an_exact_half_as_a_tie():
    report = compute_agreement(AI, HUMAN, bootstrap=FAST)
    # outcomes: agree, flip, tie, flip, agree, tie (orders_agree=False is overridden by the
    # per-order probabilities that show a 0.5)
    assert report.n_position_known == 6 and report.n_position_ties == 2
    assert report.position_disagreement_rate == pytest.approx(2 / 6)
    ci = report.position_disagreement_ci
    assert ci is not None and ci.low <= 1 / 3 <= ci.high
    assert report.accuracy_orders_agree == pytest.approx(1.0)  # pair 1 right, pair 5 a tie
    assert report.accuracy_orders_disagree == pytest.approx(0.5)  # pair 2 wrong, pair 4 right


def test_length_bias_by_hand():
    lb = compute_agreement(AI, HUMAN, bootstrap=FAST).length_bias
    assert lb is not None and lb.unit == "chars"
    # unequal and decided by both: pairs 1-4 (pair 5 equal length, pair 6 an AI tie)
    assert (lb.n_pairs, lb.n_equal_length, lb.n_undecided) == (4, 1, 1)
    assert lb.judge_longer_rate == pytest.approx(3 / 4)  # all but pair 4 (gg)
    assert lb.human_longer_rate == pytest.approx(2 / 4)  # pairs 1 and 3
    # relative differences: 0.8, 0.5, 1/6, 0.75 -> bins (0.1,0.25]: 1, (0.25,0.5]: 1, (0.5,1]: 2
    assert [b.n for b in lb.bins] == [0, 1, 1, 2]
    assert [b.judge_longer_rate for b in lb.bins] == [None, 1.0, 1.0, 0.5]
    assert [b.human_longer_rate for b in lb.bins] == [None, 1.0, 0.0, 0.5]
    for rate, ci in ((0.75, lb.judge_longer_ci), (0.5, lb.human_longer_ci)):
        assert ci is not None and ci.low <= rate <= ci.high
    words = compute_agreement(AI, HUMAN, bootstrap=FAST, length_unit="words").length_bias
    assert words is not None and (words.n_pairs, words.n_equal_length) == (0, 6)
    assert words.judge_longer_rate is None and words.judge_longer_ci is None


def test_judge_health_over_the_ai_rows():
    h = compute_agreement(AI, HUMAN, bootstrap=FAST).judge_health
    assert h is not None and (h.pairs_judged, h.pairs_labeled) == (6, 6)
    assert h.mean_confidence == pytest.approx((0.9 + 0.8 + 0.7 + 0.6 + 0.75 + 0.5) / 6)
    assert (h.near_ties, h.exact_ties) == (1, 1)
    assert (h.position_flips, h.order_ties) == (2, 2)
    assert (h.length_pairs, h.chosen_longer) == (4, 3)


def test_self_preference_is_flagged_for_the_same_family():
    report = compute_agreement(
        AI, HUMAN, bootstrap=FAST, policy_models=["smollm2-135m-instruct#0f"]
    )
    sp = report.self_preference
    assert sp is not None and sp.same_family and sp.shared_families == ["smollm"]
    assert sp.judge_models == [JUDGE]
    other = compute_agreement(AI, HUMAN, bootstrap=FAST, policy_models=["Qwen/Qwen2.5-0.5B"])
    assert other.self_preference is not None and not other.self_preference.same_family
    assert compute_agreement(AI, HUMAN, bootstrap=FAST).self_preference is None


def test_bootstrap_is_deterministic_per_seed():
    a = compute_agreement(AI, HUMAN, bootstrap=FAST)
    b = compute_agreement(AI, HUMAN, bootstrap=FAST)
    assert a.accuracy_ci == b.accuracy_ci and a.cohen_kappa_ci == b.cohen_kappa_ci
    assert a.per_principle == b.per_principle
    table = {"right": 30, "wrong": 10}

    def share(t):
        return t.get("right", 0) / sum(t.values())

    first = bootstrap_interval(table, share, BootstrapSettings(n_resamples=500, seed=0))
    again = bootstrap_interval(table, share, BootstrapSettings(n_resamples=500, seed=0))
    assert first is not None and first == again
    assert first.low <= 0.75 <= first.high and first.n_valid == 500
    # a binomial share of 40 items: the 95% interval is about 0.75 +- 0.13
    assert 0.55 < first.low < 0.70 and 0.80 < first.high < 0.95


def test_bootstrap_edges():
    settings = BootstrapSettings(n_resamples=50)
    assert bootstrap_interval({}, lambda t: 1.0, settings) is None
    assert bootstrap_interval({"a": 3}, lambda t: None, settings) is None
    assert bootstrap_interval({"a": 3}, lambda t: 1.0, BootstrapSettings(n_resamples=0)) is None
    one = bootstrap_interval({"a": 1, "b": 0}, lambda t: t["a"] / 1, settings)
    assert one is not None and (one.low, one.high, one.n_valid) == (1.0, 1.0, 50)


def test_per_principle_kappa_and_intervals():
    per = {p.principle: p for p in compute_agreement(AI, HUMAN, bootstrap=FAST).per_principle}
    harm = per["harm"]  # pairs 1, 2, 4: F/F, F/S, F/F
    assert harm.n == 3 and harm.accuracy == pytest.approx(2 / 3)
    # the AI said "first" on all three: kappa is 0 (agreement no better than its marginals)
    assert harm.cohen_kappa == pytest.approx(0.0)
    assert harm.accuracy_ci is not None and harm.accuracy_ci.low <= 2 / 3 <= harm.accuracy_ci.high


@pytest.mark.parametrize(
    "pairs",
    [
        [0],  # one pair
        [0, 2],  # every pair one class (AI and people both "first"), no tie anywhere
    ],
)
def test_degenerate_inputs_do_not_crash(tmp_path, pairs):
    ai, human = [AI[i] for i in pairs], [HUMAN[i] for i in pairs]
    report = compute_agreement(ai, human, bootstrap=FAST)
    assert report.accuracy == 1.0 and report.n_ai_ties == report.n_human_ties == 0
    assert report.accuracy_ci is not None
    assert (report.accuracy_ci.low, report.accuracy_ci.high) == (1.0, 1.0)
    assert report.cohen_kappa is None and report.cohen_kappa_ci is None  # p_e = 1: undefined
    paths = write_report(report, tmp_path / "r")
    assert "| Cohen's kappa | n/a | n/a |" in paths["markdown"].read_text()


def test_report_files_are_complete_and_self_contained(tmp_path):
    report = compute_agreement(AI, HUMAN, bootstrap=FAST, policy_models=["SmolLM2-135M"])
    paths = write_report(report, tmp_path / "r")
    for name in ("reliability", "length_bias", "principles"):
        assert paths[name].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    assert "![length bias by relative length difference](length_bias.png)" in markdown
    assert "Length is measured in characters." in markdown
    assert "| accuracy | 0.750 | [" in markdown
    assert "WARNING: the judge" in markdown and "share the model family smollm" in markdown
    assert "How ties count: A probability of exactly 0.5 is a tie" in markdown
    html = paths["html"].read_text()
    sources = re.findall(r'src="([^"]*)"', html)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "href=" not in html and "<td>0.100</td>" in html
    saved = json.loads(paths["json"].read_text())
    assert saved["length_bias"]["judge_longer_rate"] == pytest.approx(0.75)


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_audit_finds_the_policy_model_in_the_run_summary(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    ai = _jsonl(run / "preferences.jsonl", AI)
    human = _jsonl(tmp_path / "human.jsonl", HUMAN)
    summary = {"stages": {"preferences": {"policy_models": ["smollm2-135m-instruct#aa"]}}}
    (run / "summary.json").write_text(json.dumps(summary))
    report, paths = audit(ai, human, tmp_path / "out", bootstrap=FAST)
    assert report.self_preference is not None and report.self_preference.same_family
    assert paths["html"].exists()
    report, _ = audit(ai, human, tmp_path / "out", bootstrap=FAST, policy_models=["gpt2"])
    assert report.self_preference is not None and not report.self_preference.same_family


def test_agree_cli_options(tmp_path):
    ai = _jsonl(tmp_path / "ai.jsonl", AI)
    human = _jsonl(tmp_path / "human.jsonl", HUMAN)
    out = tmp_path / "rep"
    args = ["agree", "--ai", str(ai), "--human", str(human), "--out", str(out)]
    result = CliRunner().invoke(
        app, [*args, "--bootstrap", "200", "--seed", "5", "--policy-model", "SmolLM2-135M"]
    )
    assert result.exit_code == 0, result.output
    assert "6 shared pairs, accuracy 0.750 [" in result.output
    assert "warning: judge and policy share the model family smollm" in result.output
    saved = json.loads((out / "agreement.json").read_text())
    assert saved["bootstrap"] == {"n_resamples": 200, "seed": 5, "confidence": 0.95}
    result = CliRunner().invoke(app, [*args, "--bootstrap", "0", "--length-unit", "words"])
    assert result.exit_code == 0, result.output
    saved = json.loads((out / "agreement.json").read_text())
    assert saved["accuracy_ci"] is None and saved["length_bias"]["unit"] == "words"
    result = CliRunner().invoke(app, [*args, "--length-unit", "tokens"])
    assert result.exit_code == 2 and "unknown length unit 'tokens'" in result.output
    assert "Traceback" not in result.output


def test_panel_members_against_people_by_hand(tmp_path):
    # Two members voted on every pair. People, on the AI's chosen: pairs 1,3,4 chosen wins;
    # pair 2 and 6 rejected wins; pair 5 tie (left out).
    votes = {
        0: (0.9, 0.2),  # judge-a right, judge-b wrong
        1: (0.3, 0.8),  # people chose rejected: a right, b wrong
        2: (0.6, 0.6),  # both right
        3: (0.5, 0.9),  # a at exactly 0.5: left out for a; b right
        4: (0.7, 0.7),  # people tie: left out for both
        5: (0.2, 0.4),  # people chose rejected (l*6): both right
    }
    ai = [
        {**r, "judge_members": ["judge-a", "judge-b"], "prob_chosen_by_member": list(votes[i])}
        for i, r in enumerate(AI)
    ]
    report = compute_agreement(ai, HUMAN, bootstrap=FAST)
    by_member = {m.member: (m.n, m.accuracy) for m in report.panel_members}
    assert by_member["judge-a"] == (4, pytest.approx(4 / 4))
    assert by_member["judge-b"] == (5, pytest.approx(3 / 5))
    files = write_report(report, tmp_path / "report")
    text = files["markdown"].read_text(encoding="utf-8")
    assert "Panel members against people" in text and "judge-b" in text
    assert compute_agreement(AI, HUMAN, bootstrap=FAST).panel_members == []
