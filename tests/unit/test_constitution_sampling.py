"""Principle sampling: the same item gets the same principles in every run and process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from cai.constitution import load_constitution, load_constitution_text, sample_principles

KEYS = [f"pair-{i}" for i in range(20)]


def ids(principles) -> list[str]:
    return [p.id for p in principles]


def weighted_constitution(weights: dict[str, float]):
    body = "".join(
        f"  - id: {pid}\n    weight: {w}\n    critique_request: c\n    revision_request: r\n"
        f"    comparison_question: q?\n"
        for pid, w in weights.items()
    )
    return load_constitution_text("name: w\nprinciples:\n" + body)


def test_same_key_same_principles_and_k_distinct():
    constitution = load_constitution("default")
    for key in KEYS:
        first = ids(sample_principles(constitution, key, k=4, seed=0))
        assert first == ids(sample_principles(constitution, key, k=4, seed=0))
        assert len(first) == len(set(first)) == 4
    # Different keys get different draws (not one fixed list for everyone).
    assert len({tuple(ids(sample_principles(constitution, k, 4, 0))) for k in KEYS}) > 10


def test_seed_and_constitution_change_the_draw():
    default, medical = load_constitution("default"), load_constitution("medical-safety")
    by_seed = [ids(sample_principles(default, k, 3, 0)) for k in KEYS]
    assert by_seed != [ids(sample_principles(default, k, 3, 1)) for k in KEYS]
    assert by_seed != [ids(sample_principles(medical, k, 3, 0)) for k in KEYS]


def test_k_edges():
    constitution = load_constitution("helpful-only")
    everything = sample_principles(constitution, "x", k=50, seed=0)
    assert sorted(ids(everything)) == sorted(constitution.principle_ids)
    assert sample_principles(constitution, "x", k=0, seed=0) == []
    with pytest.raises(ValueError, match="k must be >= 0"):
        sample_principles(constitution, "x", k=-1, seed=0)


def test_reproducible_across_processes():
    """A fresh interpreter with a different hash seed draws exactly the same principles."""
    constitution = load_constitution("medical-safety")
    here = {
        "uniform": [ids(sample_principles(constitution, k, 3, 7)) for k in KEYS],
        "weighted": [ids(sample_principles(constitution, k, 3, 7, weighted=True)) for k in KEYS],
    }
    script = (
        "import json\n"
        "from cai.constitution import load_constitution, sample_principles\n"
        "c = load_constitution('medical-safety')\n"
        f"keys = {KEYS!r}\n"
        "print(json.dumps({\n"
        "  'uniform': [[p.id for p in sample_principles(c, k, 3, 7)] for k in keys],\n"
        "  'weighted': [[p.id for p in sample_principles(c, k, 3, 7, weighted=True)]\n"
        "               for k in keys]}))\n"
    )
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, check=True
    )
    assert json.loads(out.stdout) == here


def test_uniform_draws_are_roughly_uniform():
    constitution = load_constitution("default")
    n = len(constitution.principles)
    draws = 3200
    counts = Counter(sample_principles(constitution, f"k{i}", 1, 0)[0].id for i in range(draws))
    assert set(counts) == set(constitution.principle_ids)
    expected = draws / n
    chi2 = sum((counts[p] - expected) ** 2 / expected for p in constitution.principle_ids)
    assert chi2 < 45  # 15 degrees of freedom: p < 0.001 above ~37.7


def test_weighted_draws_follow_weights_and_skip_zero():
    constitution = weighted_constitution({"light": 1, "heavy": 3, "never": 0})
    draws = 4000
    counts = Counter(
        sample_principles(constitution, f"k{i}", 1, 0, weighted=True)[0].id for i in range(draws)
    )
    assert counts["never"] == 0
    assert 2.6 < counts["heavy"] / counts["light"] < 3.4
    # Without weights, every principle is drawn, the zero-weight one included.
    uniform = Counter(sample_principles(constitution, f"k{i}", 1, 0)[0].id for i in range(300))
    assert uniform["never"] > 50
    # Weighted k larger than the drawable pool returns the drawable ones only.
    assert sorted(ids(sample_principles(constitution, "x", 3, 0, weighted=True))) == [
        "heavy",
        "light",
    ]


def test_weighted_with_nothing_drawable():
    constitution = weighted_constitution({"a": 0, "b": 0})
    with pytest.raises(ValueError, match="no principle with weight > 0"):
        sample_principles(constitution, "x", 1, 0, weighted=True)
