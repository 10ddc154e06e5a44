"""ITEMS: the pairs people label, read from what `cai route export` writes or from any cai or
TRL preference dataset.

Every file goes through `cai.tables.iter_rows` (JSONL, JSON, CSV, Parquet or a
save_to_disk directory). Each row is one of:

- a labelling sheet row (`item_id`, `prompt`, `response_a`, `response_b`, ...; any name the
  `table` importer accepts): its `item_id`, when present, must still match its text;
- a preference row (`prompt` / `chosen` / `rejected`, TRL's conversational or plain format, or
  HH-RLHF transcripts). Its two responses are put in a seeded order, as `route export` does,
  so `chosen` is not always response A. A cai AI row (`prob_chosen`, `source` not "human")
  carries the AI's label, kept for the admin page and `--show-ai`, never shown otherwise.

An optional `principle` (text) or `principles` (list) column is shown as the principle under
test. Any label already in the file is ignored: the page is blind. A pair that appears twice
(same `pair_key`) is loaded once. A row that cannot be read is an error naming the file and
row, like every other cai command.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cai.backends.base import Message
from cai.errors import InputError
from cai.human.imports import (
    RowProblem,
    canonical_columns,
    convert_row,
    detect_format,
)
from cai.human.pairs import (
    PairDataError,
    pair_key,
    prob_first,
    prompt_messages,
    response_text,
    row_key,
)
from cai.human.storage import read_preference_rows
from cai.records import stable_id
from cai.tables import RowError, counted, iter_rows

ITEMS_FIX = (
    "ITEMS is a labelling sheet from `cai route export` (item_id, prompt, response_a, "
    "response_b) or a preference dataset (prompt, chosen, rejected)."
)


class ItemsError(InputError):
    """An ITEMS file cannot be read as pairs to label."""


@dataclass(frozen=True)
class Item:
    """One pair to label. `ai_prob_a` is the AI's probability that response A is better."""

    item_id: str
    prompt: list[Message]
    response_a: str
    response_b: str
    principle: str | None = None
    ai_prob_a: float | None = None


@dataclass
class ItemsReport:
    path: str
    n_rows: int = 0
    n_items: int = 0
    n_duplicates: int = 0
    n_with_ai: int = 0
    kinds: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {kind}" for kind, n in self.kinds.items())
        text = f"{self.path}: {counted(self.n_items, 'pair')} from {counted(self.n_rows, 'row')}"
        if kinds:
            text += f" ({kinds})"
        if self.n_duplicates:
            text += f"; {counted(self.n_duplicates, 'duplicate pair')} loaded once"
        if self.n_with_ai:
            text += f"; {self.n_with_ai} with an AI label"
        return text


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _principle(row: dict[str, Any]) -> str | None:
    value = row.get("principle")
    if value is None:
        value = row.get("principles")
    if isinstance(value, list):
        value = ", ".join(str(v) for v in value if v is not None)
    if value is None or not str(value).strip():
        return None
    return str(value).strip()


def _from_sheet(row: dict[str, Any]) -> Item:
    table = canonical_columns(row, "table").row
    missing = [c for c in ("prompt", "response_a", "response_b") if table.get(c) is None]
    if missing:
        raise RowProblem("malformed", f"missing column(s) {', '.join(missing)}")
    try:
        prompt = prompt_messages(table["prompt"])
    except PairDataError as err:
        raise RowProblem("malformed", err.message) from None
    a, b = str(table["response_a"]), str(table["response_b"])
    item_id = table.get("item_id")
    item_id = None if item_id is None or not str(item_id).strip() else str(item_id)
    if item_id is not None and item_id != pair_key(prompt, a, b):
        # a spreadsheet may have saved line breaks as CRLF; that alone is not an edit
        prompt_lf = [{**m, "content": _lf(m["content"])} for m in prompt]
        if item_id == pair_key(prompt_lf, _lf(a), _lf(b)):
            prompt, a, b = prompt_lf, _lf(a), _lf(b)
        else:
            raise RowProblem(
                "malformed",
                f"item_id {item_id} does not match its prompt and responses (were they "
                "edited?); restore the exported text or drop the item_id",
            )
    return _item(prompt, a, b, _principle(row), None)


def _from_preference(row: dict[str, Any], fmt: str, seed: int) -> Item:
    converted = convert_row(row, fmt)
    prompt = converted["prompt"]
    chosen, rejected = response_text(converted["chosen"]), response_text(converted["rejected"])
    trl = canonical_columns(row, "trl").row
    ai_prob = None
    if trl.get("prob_chosen") is not None and row.get("source") != "human":
        ai_prob = float(converted["prob_chosen"])
    key = pair_key(prompt, chosen, rejected)
    a, b, p_a = chosen, rejected, ai_prob
    if int(stable_id(seed, key), 16) % 2:
        a, b = rejected, chosen
        p_a = None if ai_prob is None else 1.0 - ai_prob
    return _item(prompt, a, b, _principle(row), p_a)


def _item(
    prompt: list[Message], a: str, b: str, principle: str | None, ai_prob_a: float | None
) -> Item:
    if a == b:
        raise RowProblem("malformed", "the two responses are the same text")
    if not a.strip() or not b.strip():
        raise RowProblem("malformed", "a response is empty")
    return Item(
        item_id=pair_key(prompt, a, b),
        prompt=prompt,
        response_a=a,
        response_b=b,
        principle=principle,
        ai_prob_a=ai_prob_a,
    )


def item_from_row(row: dict[str, Any], seed: int = 0) -> tuple[Item, str]:
    """One Item and the kind of row it came from ("sheet" or "preference"); raises
    RowProblem when the row is not a pair."""
    fmt = detect_format(row)
    if fmt == "table":
        return _from_sheet(row), "sheet"
    return _from_preference(row, fmt, seed), "preference"


def load_items(path: str | Path, seed: int = 0) -> tuple[list[Item], ItemsReport]:
    """Every distinct pair of an ITEMS file, in file order; raises `ItemsError` (file, row,
    line) at the first row that is not a pair, and when the file holds none."""
    report = ItemsReport(path=str(path))
    items: list[Item] = []
    seen: set[str] = set()
    for record in iter_rows(path):
        report.n_rows += 1
        if isinstance(record.data, RowError):
            raise record.data
        try:
            item, kind = item_from_row(record.data, seed)
        except RowProblem as problem:
            raise ItemsError(
                str(problem), file=path, row=record.row, line=record.line, fix=ITEMS_FIX
            ) from None
        except (PairDataError, TypeError, ValueError) as err:
            message = err.message if isinstance(err, PairDataError) else str(err)[:300]
            raise ItemsError(
                message, file=path, row=record.row, line=record.line, fix=ITEMS_FIX
            ) from None
        report.kinds[kind] = report.kinds.get(kind, 0) + 1
        if item.item_id in seen:
            report.n_duplicates += 1
            continue
        seen.add(item.item_id)
        items.append(item)
        report.n_with_ai += item.ai_prob_a is not None
    if not items:
        raise ItemsError("the file holds no pairs to label", file=path, fix=ITEMS_FIX)
    report.n_items = len(items)
    return items, report


def ai_probabilities(path: str | Path) -> dict[str, float]:
    """{pair_key: P(alphabetically first response wins)} from an AI preference dataset
    (several rows of one pair are averaged)."""

    sums: dict[str, list[float]] = {}
    for row in read_preference_rows(path):
        if row.get("source") == "human":
            continue
        sums.setdefault(row_key(row), []).append(prob_first(row))
    return {key: sum(values) / len(values) for key, values in sums.items()}


def prob_a_from_first(item_a: str, item_b: str, p_first: float) -> float:
    """P(response A wins) from P(the alphabetically first response wins)."""
    return p_first if item_a <= item_b else 1.0 - p_first
