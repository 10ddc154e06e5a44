"""Agreement metrics against values worked out by hand, and the written report."""

from __future__ import annotations

import json

import pytest

from cai.human.agreement import (
    NoSharedPairsError,
    calibration_bins,
    cohen_kappa,
    compute_agreement,
    fleiss_kappa,
)
from cai.human.report import write_report


def pref(prompt, chosen, rejected, p, source="ai", **extra):
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt,
        "pair_id": "stale-id-ignored",
        "prob_chosen": p,
        "source": source,
        **extra,
    }


# Pair i has responses "a<i>" and "b<i>"; "a<i>" sorts first.
AI = [
    pref("p1", "a1", "b1", 0.9, orders_agree=True, principles=["harm", "honest"]),
    pref("p2", "a2", "b2", 0.8, orders_agree=True, principles=["harm"]),
    pref("p3", "b3", "a3", 0.7, orders_agree=False, principles=["honest"]),
    pref("p4", "a4", "b4", 0.6, orders_agree=False, principles=["harm"]),
    pref("p5", "b5", "a5", 0.55, orders_agree=True, principles=["honest"]),
    pref("p6", "a6", "b6", 0.95, principles=[]),  # no human label, order agreement unknown
]
HUMAN = [
    pref("p1", "a1", "b1", 1.0, "human", rater_id="r1"),
    pref("p1", "a1", "b1", 1.0, "human", rater_id="r2"),
    pref("p2", "b2", "a2", 1.0, "human", rater_id="r1"),
    pref("p3", "b3", "a3", 1.0, "human", rater_id="r1"),
    pref("p4", "a4", "b4", 0.5, "human", rater_id="r1"),  # tie
    pref("p5", "b5", "a5", 1.0, "human", rater_id="r1"),
    pref("p5", "b5", "a5", 1.0, "human", rater_id="r2"),
    pref("p5", "a5", "b5", 1.0, "human", rater_id="r3"),
]


def test_cohen_kappa_by_hand():
    # observed 3/5; marginals x: F3 S2, y: F1 S3 T1 -> expected 9/25; kappa 0.24/0.64
    x = ["F", "F", "S", "F", "S"]
    y = ["F", "S", "S", "T", "S"]
    assert cohen_kappa(x, y) == pytest.approx(0.375)
    assert cohen_kappa(["F", "F"], ["F", "F"]) is None  # p_e = 1: undefined
    assert cohen_kappa(["F", "S"], ["S", "F"]) == pytest.approx(-1.0)


def test_fleiss_kappa_by_hand():
    # items [F,F] and [S,S,F]: P = 1 and 1/3 -> 2/3; p_F = 3/5, p_S = 2/5 -> P_e = 0.52
    kappa, observed = fleiss_kappa([["F", "F"], ["S", "S", "F"], ["F"]])
    assert observed == pytest.approx(2 / 3)
    assert kappa == pytest.approx((2 / 3 - 0.52) / 0.48)
    assert fleiss_kappa([["F"]]) == (None, None)


def test_calibration_bins_by_hand():
    ece, bins = calibration_bins([0.55, 0.58, 0.95, 1.0], [1.0, 0.0, 1.0, 1.0], n_bins=5)
    # bin 0.5-0.6: conf 0.565, outcome 0.5 -> |0.065| * 2/4; bin 0.9-1.0: conf 0.975, outcome 1
    assert [b.count for b in bins] == [2, 0, 0, 0, 2]
    assert bins[0].mean_confidence == pytest.approx(0.565) and bins[0].mean_outcome == 0.5
    assert bins[1].mean_confidence is None
    assert ece == pytest.approx(0.5 * 0.065 + 0.5 * 0.025)


def test_compute_agreement_matches_hand_computed_values():
    report = compute_agreement(AI, HUMAN, n_bins=5)
    assert report.n_pairs == 5 and report.n_ai_rows == 6 and report.n_human_rows == 8
    # AI labels F F S F S; human (mean of raters) F S S T S (p5: 1/3 for a5)
    assert report.n_human_ties == 1 and report.n_ai_ties == 0
    assert report.n_decisive == 4
    assert report.accuracy == pytest.approx(3 / 4)
    assert report.cohen_kappa == pytest.approx(0.375)
    # confidence 0.9 0.8 0.7 0.6 0.55 vs human agreement with the AI's choice 1 0 1 0.5 2/3
    expected_ece = (0.1 + 0.8 + 0.3 + 0.1 + abs(0.55 - 2 / 3)) / 5
    assert report.ece == pytest.approx(expected_ece)
    assert [b.count for b in report.calibration] == [1, 1, 1, 1, 1]
    # orders disagree on rows 3 and 4 of the 5 AI rows that record it
    assert report.position_disagreement_rate == pytest.approx(2 / 5)
    assert report.n_position_known == 5
    assert report.accuracy_orders_agree == pytest.approx(2 / 3)  # p1 yes, p2 no, p5 yes
    assert report.accuracy_orders_disagree == pytest.approx(1.0)  # p3 yes (p4 is a human tie)
    per = {p.principle: p for p in report.per_principle}
    assert per["harm"].n == 2 and per["harm"].accuracy == pytest.approx(0.5)
    assert per["honest"].n == 3 and per["honest"].accuracy == pytest.approx(1.0)
    assert per["harm"].basis == "pair label"
    ir = report.inter_rater
    assert ir.n_pairs == 2 and ir.n_ratings == 5
    assert ir.observed_agreement == pytest.approx(2 / 3)
    assert ir.fleiss_kappa == pytest.approx((2 / 3 - 0.52) / 0.48)


def test_optional_per_order_and_per_principle_columns_are_used():
    ai = [dict(row) for row in AI]
    ai[0]["prob_chosen_by_principle"] = [0.9, 0.3]  # under "honest" the judge preferred b1
    ai[5] = {**ai[5], "prob_chosen_by_order": [0.9, 0.2]}  # orders point opposite ways
    report = compute_agreement(ai, HUMAN)
    per = {p.principle: p for p in report.per_principle}
    assert per["honest"].accuracy == pytest.approx(2 / 3)
    assert per["honest"].basis == "principle probability"
    assert report.position_disagreement_rate == pytest.approx(3 / 6)


def test_no_shared_pairs_is_an_error_that_says_why():
    with pytest.raises(NoSharedPairsError) as caught:
        compute_agreement(AI[:1], [pref("other", "x", "y", 1.0, "human")])
    message = str(caught.value)
    assert (
        "no pair is in both datasets: the AI dataset has 1 pair, the human dataset 1 pair"
        in message
    )
    assert "no prompt appears in both" in message and "pair id is computed from" in message
    ai = AI[0]
    spaced = pref(
        ai["prompt"][0]["content"],
        ai["chosen"][0]["content"] + " ",
        ai["rejected"][0]["content"],
        1.0,
        "human",
    )
    with pytest.raises(NoSharedPairsError) as caught:
        compute_agreement(AI[:1], [spaced])
    assert "1 prompt in both, but never with the same two responses" in str(caught.value)
    assert "1 pair would match if whitespace and line endings were ignored" in str(caught.value)


def test_human_rows_in_the_ai_dataset_are_not_compared_with_themselves():
    report = compute_agreement(AI + HUMAN[:1], HUMAN)
    assert report.n_ai_rows == 6 and report.accuracy == pytest.approx(3 / 4)
    assert any("source=human" in note for note in report.notes)


def test_report_files(tmp_path):
    report = compute_agreement(AI, HUMAN)
    paths = write_report(report, tmp_path / "agree")
    for name in ("json", "reliability", "principles", "markdown", "html"):
        assert paths[name].exists() and paths[name].stat().st_size > 0
    assert paths["reliability"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = paths["markdown"].read_text()
    assert (
        "| accuracy | 0.750 |" in markdown and "![reliability diagram](reliability.png)" in markdown
    )
    # harm: (F,F), (F,S) and a human tie; resamples give accuracy 0 or 1 (each with
    # probability 7/27 > 2.5%) and kappa 0 or undefined (the AI always said "first")
    assert "| harm | 2 | 0.500 | [0.000, 1.000] | 0.000 | [0.000, 0.000] | pair label |" in markdown
    html = paths["html"].read_text()
    assert "data:image/png;base64," in html and "<td>0.375</td>" in html
    assert json.loads(paths["json"].read_text())["accuracy"] == pytest.approx(0.75)


@pytest.mark.parametrize(
    ("fmt", "name"), [("save_to_disk", "prefs"), ("parquet", "p.parquet"), ("jsonl", "p.jsonl")]
)
def test_reads_the_preference_datasets_the_labeler_writes(tmp_path, fmt, name):
    from cai.preference_data import write_dataset
    from cai.records import PreferenceRow
    from cai.tables import read_rows

    rows_path = tmp_path / "rows.jsonl"
    rows_path.write_text("".join(PreferenceRow(**row).model_dump_json() + "\n" for row in AI))
    ai = read_rows(write_dataset(rows_path, tmp_path / name, fmt))
    assert len(ai) == 6 and ai[2]["prompt"] == [{"role": "user", "content": "p3"}]
    report = compute_agreement(ai, HUMAN)
    assert report.n_pairs == 5 and report.accuracy == pytest.approx(3 / 4)
