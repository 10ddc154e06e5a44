"""Unpaired (thumbs up/down) training rows: made from preference pairs, or checked as read.

KTO learns from single answers marked desirable or undesirable. A preference pair becomes two
such answers: chosen -> `label: true`, rejected -> `label: false`. What a pair's soft label
means for that split:

- a tie (`prob_chosen` = 0.5) says neither answer is better, so it gives no label and is
  dropped; pairs closer to 0.5 than `min_confidence` are dropped too (the same rule as the
  preference builder's `min_confidence`, which AI datasets already passed when written);
- a pair with `prob_chosen` below 0.5 says its `rejected` answer is the better one;
- the label itself is hard: the pair's confidence is kept as `pair_confidence` (provenance).

One answer can sit in several pairs (all_pairs rankings, or a middle answer that beat one
and lost to another). Where all its pairs agree it is kept once; where they disagree it is
neither desirable nor undesirable on its own, so it is dropped and counted.

TRL's KTO estimates its KL term from the neighbouring rows of each batch, in file order
(`train_sampling_strategy: sequential`), so `alternate_labels` orders rows so that up and
down alternate and each answer sits next to answers to other prompts.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, Field

from cai.errors import InputError
from cai.human.pairs import PairDataError, pair_key, prompt_messages, response_text
from cai.human.thumbs import SPELLINGS, ThumbError, parse_thumb
from cai.records import UnpairedRow, stable_id
from cai.tables import json_messages

TIE_EPSILON = 1e-9
UNPAIRED_COLUMNS = ("prompt", "completion", "label")


class UnpairReport(BaseModel):
    """What the split of pairs into single answers kept and dropped."""

    n_pairs: int = 0
    pairs_dropped: dict[str, int] = Field(default_factory=dict)
    """Pairs that gave no labels, by reason: tie, low_confidence, same_text."""
    n_desirable: int = 0
    n_undesirable: int = 0
    answers_merged: int = 0
    """Repeats of an answer with the same label in several pairs, kept once."""
    answers_conflicting: int = 0
    """Answers dropped because they were chosen in one pair and rejected in another."""


def _pair_error(message: str, where: str, row: int, fix: str | None = None) -> InputError:
    return InputError(message, file=where, row=row, fix=fix)


def pair_probability(row: dict[str, Any], where: str, number: int) -> float:
    """P(chosen is better) of a pair: its `prob_chosen`, 1 when it has none."""
    value = row.get("prob_chosen")
    if value is None:
        return 1.0  # a plain TRL pair: chosen is better
    try:
        p = float(value)
    except (TypeError, ValueError):
        p = float("nan")
    if not 0.0 <= p <= 1.0:
        raise _pair_error(f"prob_chosen={value!r} is not a probability in [0, 1]", where, number)
    return p


def _sides(row: dict[str, Any], where: str, number: int) -> tuple[Any, Any, Any, float]:
    """(prompt, better answer, worse answer, P(better wins) >= 0.5) as the row holds them."""
    if row.get("prompt") is None:
        raise _pair_error(
            "the pair has no prompt",
            where,
            number,
            fix="KTO needs the prompt apart from the answers: bring implicit-prompt pairs in "
            "with `cai import-human --format trl`, which splits the shared turns off",
        )
    p = pair_probability(row, where, number)
    chosen, rejected = row.get("chosen"), row.get("rejected")
    if p < 0.5:
        chosen, rejected, p = rejected, chosen, 1.0 - p
    return row["prompt"], chosen, rejected, p


def _drop_reason(p: float, better: str, worse: str, min_confidence: float) -> str | None:
    if abs(p - 0.5) <= TIE_EPSILON:
        return "tie"
    if abs(p - 0.5) < min_confidence:
        return "low_confidence"
    if better == worse:
        return "same_text"
    return None


def _answer(row, prompt, completion, text: str, label: bool, p: float, pair_id: str):
    messages = prompt_messages(prompt)
    return UnpairedRow(
        prompt=prompt,
        completion=completion,
        label=label,
        prompt_id=row.get("prompt_id") or stable_id(messages),
        completion_id=stable_id(messages, text),
        source=row.get("source") or "ai",
        method="unpaired",
        pair_id=pair_id,
        pair_confidence=p,
        rater_id=row.get("rater_id"),
    ).model_dump()


def _pair_answers(row, number: int, where: str, min_confidence: float, report: UnpairReport):
    from pydantic import ValidationError

    prompt, better, worse, p = _sides(row, where, number)
    try:
        messages = prompt_messages(prompt)
        better_text, worse_text = response_text(better), response_text(worse)
    except PairDataError as err:
        raise _pair_error(err.message, where, number) from None
    reason = _drop_reason(p, better_text, worse_text, min_confidence)
    if reason is not None:
        report.pairs_dropped[reason] = report.pairs_dropped.get(reason, 0) + 1
        return []
    pair_id = row.get("pair_id") or pair_key(messages, better_text, worse_text)
    try:
        return [
            _answer(row, prompt, better, better_text, True, p, pair_id),
            _answer(row, prompt, worse, worse_text, False, p, pair_id),
        ]
    except ValidationError as err:
        problem = err.errors()[0]
        key = ".".join(map(str, problem["loc"]))
        raise InputError(problem["msg"], file=where, row=number, key=key) from None


def unpair_preferences(
    rows: Iterable[dict[str, Any]], min_confidence: float = 0.0, where: str = "pairs"
) -> tuple[list[dict[str, Any]], UnpairReport]:
    """Preference rows (cai's, or TRL's prompt / chosen / rejected) as `UnpairedRow` dicts,
    in order of first appearance, and a report of what was dropped; `where` names the
    source in errors. Prompts and answers keep their form (messages or plain text)."""
    report = UnpairReport()
    by_answer: dict[str, list[dict[str, Any]]] = {}
    for number, row in enumerate(rows, 1):
        report.n_pairs += 1
        for answer in _pair_answers(row, number, where, min_confidence, report):
            by_answer.setdefault(answer["completion_id"], []).append(answer)
    kept = []
    for answers in by_answer.values():
        if len({a["label"] for a in answers}) > 1:
            report.answers_conflicting += 1
            continue
        kept.append(answers[0])
        report.answers_merged += len(answers) - 1
    report.n_desirable = sum(a["label"] for a in kept)
    report.n_undesirable = len(kept) - report.n_desirable
    return kept, report


def _cell(value: Any) -> Any:
    """A conversation stored as a JSON text cell (CSV) back as messages; else as it is."""
    return (json_messages(value) or value) if isinstance(value, str) else value


def checked_unpaired(rows: Iterable[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Unpaired rows as read from a file, each `label` a bool (CSV cells such as "true",
    "up" or "1" are read with the thumbs spellings) and JSON message cells decoded; a row
    without a prompt, an answer or a readable label is an error naming it."""
    checked = []
    for number, row in enumerate(rows, 1):
        missing = [c for c in UNPAIRED_COLUMNS if row.get(c) is None or row.get(c) == ""]
        if missing:
            raise _pair_error(f"missing {', '.join(missing)}", where, number)
        try:
            label = parse_thumb(row["label"])
        except ThumbError as err:
            raise InputError(str(err), file=where, row=number, key="label") from None
        if label is None:
            raise InputError(f"the label is empty; use {SPELLINGS}", file=where, row=number)
        prompt, completion = _cell(row["prompt"]), _cell(row["completion"])
        checked.append({**row, "prompt": prompt, "completion": completion, "label": label})
    return checked


def alternate_labels(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Up and down answers taken in turn, the down ones shifted by half their number so an
    answer's neighbours come from other pairs; what is left of the longer side follows.
    With pairs 0..3: up0, down2, up1, down3, up2, down0, up3, down1."""
    up = [row for row in rows if row["label"]]
    down = [row for row in rows if not row["label"]]
    shift = len(down) // 2
    down = down[shift:] + down[:shift]
    ordered = []
    for index in range(max(len(up), len(down))):
        ordered += [side[index] for side in (up, down) if index < len(side)]
    return ordered


def label_counts(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    counts = Counter("desirable" if row["label"] else "undesirable" for row in rows)
    return {"desirable": counts["desirable"], "undesirable": counts["undesirable"]}
