"""Answers as human preference rows: the one file `cai agree`, `cai route import` and
`cai mix` all read.

Each live answer that is not a skip becomes one row holding both shapes at once:

- a `cai.records.PreferenceRow` (prompt / chosen / rejected / prob_chosen, `source` "human",
  `method` "human-label", `rater_id`), which `cai agree` and `cai mix` read; a tie or "both
  bad" is `prob_chosen` 0.5;
- a labelling-sheet row (`item_id`, `response_a`, `response_b`, `label` a / b / tie), which
  `cai route import` and `cai import-human --format table` read;

plus what only the page knows: `choice` (a, b, tie or both_bad), `reason`, `shown_left`
(which response, a or b, was on the left), `labelled_at` (UTC, ISO 8601), `seconds` (time on
the pair) and `principle`. JSONL, Parquet and save_to_disk keep messages as lists; a CSV
holds the responses as plain text and a one-turn prompt as plain text (several turns as
JSON), so the file reads back the same through cai's table reader.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from cai.human.pairs import assistant
from cai.label.items import Item
from cai.records import stable_id
from cai.tables import write_table

LABELS = {"a": "a", "b": "b", "tie": "tie", "both_bad": "tie"}
COLUMNS = [
    "prompt", "chosen", "rejected", "prompt_id", "pair_id", "prob_chosen", "n_judgments",
    "source", "method", "rater_id", "item_id", "response_a", "response_b", "label", "choice",
    "reason", "shown_left", "labelled_at", "seconds", "principle",
]  # fmt: skip


def iso_time(timestamp: float | None) -> str | None:
    if timestamp is None:
        return None
    moment = dt.datetime.fromtimestamp(timestamp, dt.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def human_row(
    item: Item,
    choice: str,
    rater_id: str | None,
    *,
    reason: str | None = None,
    shown_left: str | None = None,
    labelled_at: str | None = None,
    seconds: float | None = None,
) -> dict[str, Any]:
    """One human preference row (see the module docstring) for a choice in the pair's terms
    (a, b, tie or both_bad)."""
    label = LABELS[choice]
    a, b = item.response_a, item.response_b
    chosen, rejected = (b, a) if label == "b" else (a, b)
    return {
        "prompt": item.prompt,
        "chosen": assistant(chosen),
        "rejected": assistant(rejected),
        "prompt_id": stable_id(item.prompt),
        "pair_id": item.item_id,
        "prob_chosen": 0.5 if label == "tie" else 1.0,
        "n_judgments": 1,
        "source": "human",
        "method": "human-label",
        "rater_id": rater_id,
        "item_id": item.item_id,
        "response_a": a,
        "response_b": b,
        "label": label,
        "choice": choice,
        "reason": reason or None,
        "shown_left": shown_left,
        "labelled_at": labelled_at,
        "seconds": None if seconds is None else round(float(seconds), 3),
        "principle": item.principle,
    }


def answers_to_rows(answers: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(rows, skips) from `LabelStore.live_answers()`."""
    rows, skips = [], 0
    for answer in answers:
        if answer["choice"] == "skip":
            skips += 1
            continue
        rows.append(
            human_row(
                answer["item"],
                answer["choice"],
                answer["rater_id"],
                reason=answer["reason"],
                shown_left=answer["left_side"],
                labelled_at=iso_time(answer["answered_at"]),
                seconds=answer["seconds"],
            )
        )
    return rows, skips


def _csv_row(row: dict[str, Any]) -> dict[str, Any]:
    import json

    prompt = row["prompt"]
    one_turn = len(prompt) == 1 and prompt[0]["role"] == "user"
    text = prompt[0]["content"].strip() if one_turn else ""
    plain = one_turn and not (text.startswith("[") and text.endswith("]"))
    return {
        **row,
        "prompt": prompt[0]["content"] if plain else json.dumps(prompt, ensure_ascii=False),
        "chosen": row["chosen"][0]["content"],
        "rejected": row["rejected"][0]["content"],
    }


def write_human_rows(rows: list[dict[str, Any]], out: str | Path) -> Path:
    """Write rows atomically as .jsonl, .parquet, .csv or a save_to_disk directory."""

    out = Path(out)
    if out.suffix.lower() == ".csv":
        rows = [_csv_row(row) for row in rows]
    return write_table(rows, out, columns=COLUMNS)
