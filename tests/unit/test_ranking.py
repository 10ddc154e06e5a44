"""Bradley-Terry on cases with known answers."""

from __future__ import annotations

import math

import pytest

from cai.judge.ranking import Comparison, bradley_terry, win_probability


def test_two_items_differ_by_the_log_odds():
    scores = bradley_terry(2, [Comparison(0, 1, 0.75)])
    assert scores[0] - scores[1] == pytest.approx(math.log(3), abs=1e-6)
    assert sum(scores) == pytest.approx(0.0, abs=1e-9)


def test_consistent_soft_outcomes_recover_the_true_strengths():
    strengths = [4.0, 2.0, 1.0, 0.5]
    comparisons = [
        Comparison(i, j, strengths[i] / (strengths[i] + strengths[j]))
        for i in range(4)
        for j in range(i + 1, 4)
    ]
    scores = bradley_terry(4, comparisons)
    for i in range(4):
        for j in range(4):
            assert scores[i] - scores[j] == pytest.approx(
                math.log(strengths[i] / strengths[j]), abs=1e-5
            )
    assert win_probability(scores[0], scores[1]) == pytest.approx(4 / 6, abs=1e-6)


def test_order_of_comparisons_and_direction_do_not_matter():
    forward = bradley_terry(
        3, [Comparison(0, 1, 0.8), Comparison(1, 2, 0.6), Comparison(0, 2, 0.9)]
    )
    flipped = bradley_terry(
        3, [Comparison(2, 0, 0.1), Comparison(2, 1, 0.4), Comparison(1, 0, 0.2)]
    )
    assert forward == pytest.approx(flipped, abs=1e-7)


def test_prior_keeps_a_clean_sweep_finite_and_ordered():
    sweep = [Comparison(0, 1, 1.0), Comparison(0, 2, 1.0), Comparison(1, 2, 1.0)]
    scores = bradley_terry(3, sweep, prior=0.1)
    assert all(math.isfinite(s) for s in scores)
    assert scores[0] > scores[1] > scores[2]


def test_equal_items_tie():
    scores = bradley_terry(3, [Comparison(0, 1, 0.5), Comparison(1, 2, 0.5), Comparison(0, 2, 0.5)])
    assert scores == pytest.approx([0.0, 0.0, 0.0], abs=1e-9)


def test_bad_comparisons_are_rejected():
    with pytest.raises(ValueError, match="distinct"):
        bradley_terry(2, [Comparison(0, 0, 0.5)])
    with pytest.raises(ValueError, match="out of range"):
        bradley_terry(2, [Comparison(0, 1, 1.5)])
