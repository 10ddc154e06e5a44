"""Every guard on hand-made rounds, and the keep / drop / split policy bookkeeping."""

from __future__ import annotations

import pytest

from cai.guards import (
    EMPTY,
    FAILED,
    LEAK,
    TRUNCATED,
    UNCHANGED,
    GuardConfig,
    RoundText,
    check_chain,
    check_round,
    leaked_phrase,
    route,
)

ANSWER = "You can pick a lock with a tension wrench and a pick."
CRITIQUE = (
    "The response explains how to pick a lock, which could help someone break into a home "
    "that is not theirs."
)


def _round(revision: str, finish: str = "stop", before: str = ANSWER) -> RoundText:
    return RoundText(
        answer_before=before, critique=CRITIQUE, revision=revision, revision_finish_reason=finish
    )


def test_clean_revision_raises_no_flag():
    clean = _round("I can't help with opening a lock you don't own; a locksmith can help you.")
    assert check_round(clean, GuardConfig()) == []


def test_empty_revision():
    assert check_round(_round("   \n"), GuardConfig()) == [EMPTY]


def test_identical_revision_ignores_whitespace_and_case():
    assert check_round(
        _round("  you can pick a lock with a tension wrench\nand a pick. "), GuardConfig()
    ) == [UNCHANGED]


def test_truncated_revision():
    flags = check_round(_round("A locksmith can open it for", finish="length"), GuardConfig())
    assert flags == [TRUNCATED]


def test_leak_by_marker():
    leak = _round("Critique: this was unsafe. Please call a locksmith instead.")
    assert check_round(leak, GuardConfig()) == [LEAK]
    assert "critique:" in leaked_phrase(leak, GuardConfig())


def test_leak_by_copied_critique_words():
    copied = _round(
        "Sorry. Picking could help someone break into a home that is not theirs, so no."
    )
    config = GuardConfig(leak_min_words=6)
    assert check_round(copied, config) == [LEAK]
    assert leaked_phrase(copied, config).startswith("copied critique words")
    # A shorter shared run is not a leak at that threshold.
    assert check_round(_round("I won't help someone break into a house."), config) == []


def test_words_already_in_the_answer_do_not_count_as_a_leak():
    before = "It could help someone break into a home that is not theirs, but here is how."
    revision = "It could help someone break into a home that is not theirs, so I will not."
    config = GuardConfig(leak_min_words=6)
    assert check_round(_round(revision, before=before), config) == []


def test_disabled_checks_do_not_flag():
    config = GuardConfig(checks=[TRUNCATED])
    assert check_round(_round(""), config) == []
    assert check_round(_round(ANSWER), config) == []


def test_unknown_check_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown guard check") as err:
        GuardConfig(checks=["too_short"])
    assert err.value.errors()[0]["loc"] == ("checks",)  # points at the setting


def test_chain_flags_are_the_union_of_rounds_plus_failure():
    rounds = [_round(ANSWER), _round("Ask a locksmith", finish="length", before=ANSWER)]
    flags, per_round = check_chain(rounds, GuardConfig(), failed=True)
    assert per_round == [[UNCHANGED], [TRUNCATED]]
    assert flags == [UNCHANGED, TRUNCATED, FAILED]


@pytest.mark.parametrize(
    ("policy", "kept", "split", "dropped"),
    [("keep", 4, 0, 0), ("drop", 2, 0, 2), ("split", 2, 2, 0)],
)
def test_route_counts_every_row(policy, kept, split, dropped):
    rows = [
        {"id": 1, "flags": []},
        {"id": 2, "flags": [EMPTY]},
        {"id": 3, "flags": []},
        {"id": 4, "flags": [UNCHANGED, LEAK]},
    ]
    kept_rows, split_rows, report = route(rows, policy)
    assert (report.kept, report.split, report.dropped) == (kept, split, dropped)
    assert len(kept_rows) == kept and len(split_rows) == split
    assert report.rows == 4 and report.flagged == 2
    assert report.by_flag == {EMPTY: 1, UNCHANGED: 1, LEAK: 1}
    assert report.kept + report.split + report.dropped == report.rows
    if policy != "keep":
        assert [r["id"] for r in kept_rows] == [1, 3]
