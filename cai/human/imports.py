"""Import human preference labels from the formats people already have.

- `trl`: TRL's preference format (prompt / chosen / rejected, conversational or plain strings;
  without a prompt column the shared turns of chosen and rejected become the prompt).
- `hh`: Anthropic HH-RLHF transcripts, chosen and rejected strings of
  "\\n\\nHuman: ...\\n\\nAssistant: ..." turns; the shared turns are split off as the prompt.
- `table`: one rating per row: prompt, response_a, response_b and label in {a, b, tie} or a
  probability that a is better (`prob_a` / `probability`); optional `rater_id`, `item_id`.

Nothing is lost silently: malformed rows become errors with their row numbers, and rows
whose chosen equals rejected, whose prompts cannot be aligned, or that carry no label yet are
flagged and counted. Good rows are imported either way.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cai.backends.base import Message
from cai.human.pairs import (
    PairDataError,
    assistant,
    pair_key,
    prompt_messages,
    response_text,
)
from cai.human.storage import RowError, iter_rows
from cai.records import PreferenceRow, stable_id

Format = Literal["auto", "trl", "hh", "table"]
FLAG_KINDS = ("chosen_equals_rejected", "unalignable_prompt", "unlabelled")
PROB_COLUMNS = ("prob_a", "probability")
TIE_LABELS = {"tie", "t", "=", "equal", "same"}


class RowProblem(ValueError):
    """Why one row cannot become a preference row; `kind` is "malformed" or a flag kind."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind


class RowIssue(BaseModel):
    row: int
    kind: str
    detail: str
    raw: dict[str, Any] | None = None


class ImportReport(BaseModel):
    """What an import did: rows read and imported, errors (malformed) and flags, by row."""

    source_path: str
    format: str
    n_rows: int = 0
    n_imported: int = 0
    n_ties: int = 0
    errors: list[RowIssue] = Field(default_factory=list)
    flagged: list[RowIssue] = Field(default_factory=list)

    def flag_counts(self) -> dict[str, int]:
        return dict(Counter(issue.kind for issue in self.flagged))

    def summary(self, max_listed: int = 10) -> str:
        lines = [
            f"{self.source_path} ({self.format}): {self.n_rows} rows read, {self.n_imported} "
            f"imported ({self.n_ties} ties), {len(self.errors)} malformed, "
            f"{len(self.flagged)} flagged {self.flag_counts() or ''}".rstrip()
        ]
        for issue in (self.errors + self.flagged)[:max_listed]:
            lines.append(f"  row {issue.row}: {issue.kind}: {issue.detail}")
        hidden = len(self.errors) + len(self.flagged) - max_listed
        if hidden > 0:
            lines.append(f"  ... and {hidden} more (see the JSON report)")
        return "\n".join(lines)


_HH_TURN = re.compile(r"(?:^|\n\n)(Human|Assistant):[ ]?")


def parse_hh_transcript(text: str) -> list[Message]:
    """Split an HH-RLHF transcript into messages; raises RowProblem when it is not one."""
    if not isinstance(text, str) or not text.strip():
        raise RowProblem("malformed", "the transcript is empty or not a string")
    stripped = text.lstrip("\n")
    if not (stripped.startswith("Human:") or stripped.startswith("Assistant:")):
        raise RowProblem(
            "malformed",
            "an HH transcript must start with '\\n\\nHuman:' (got "
            f"{text[:40]!r}); use --format trl or table for other layouts",
        )
    parts = _HH_TURN.split(stripped)
    messages = []
    for speaker, content in zip(parts[1::2], parts[2::2], strict=True):
        role = "user" if speaker == "Human" else "assistant"
        messages.append({"role": role, "content": content.strip()})
    return messages


def split_shared_prompt(
    chosen: list[Message], rejected: list[Message]
) -> tuple[list[Message], str, str]:
    """(prompt, chosen text, rejected text) from two full conversations that differ only in
    the last assistant turn; RowProblem("unalignable_prompt") otherwise."""
    for name, conv in (("chosen", chosen), ("rejected", rejected)):
        if not conv or conv[-1]["role"] != "assistant":
            raise RowProblem("malformed", f"the {name} conversation does not end with an answer")
    prompt_c, prompt_r = chosen[:-1], rejected[:-1]
    if prompt_c != prompt_r:
        turn = next(
            (i for i, (x, y) in enumerate(zip(prompt_c, prompt_r, strict=False), 1) if x != y),
            min(len(prompt_c), len(prompt_r)) + 1,
        )
        raise RowProblem(
            "unalignable_prompt",
            f"chosen and rejected differ before their last answer (first at turn {turn}), so "
            "no shared prompt can be split off",
        )
    if not prompt_c or prompt_c[-1]["role"] != "user":
        raise RowProblem("unalignable_prompt", "no user turn precedes the answers")
    return prompt_c, chosen[-1]["content"], rejected[-1]["content"]


def _as_probability(value: Any, column: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError):
        raise RowProblem("malformed", f"{column}={value!r} is not a number") from None
    if not 0.0 <= p <= 1.0:
        raise RowProblem("malformed", f"{column}={p} is outside [0, 1]")
    return p


def _is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _rater(row: dict[str, Any], default: str | None) -> str | None:
    value = row.get("rater_id")
    return default if _is_blank(value) else str(value)


def _build(
    prompt: list[Message], chosen: str, rejected: str, p: float, rater: str | None
) -> dict[str, Any]:
    if chosen == rejected:
        raise RowProblem("chosen_equals_rejected", "chosen and rejected are the same text")
    if not chosen.strip() or not rejected.strip():
        raise RowProblem("malformed", "a response is empty")
    if p < 0.5:  # the label says the other response is better
        chosen, rejected, p = rejected, chosen, 1.0 - p
    row = PreferenceRow(
        prompt=prompt,
        chosen=assistant(chosen),
        rejected=assistant(rejected),
        prompt_id=stable_id(prompt),
        pair_id=pair_key(prompt, chosen, rejected),
        prob_chosen=p,
        n_judgments=1,
        source="human",
        method="human-import",
        rater_id=rater,
    )
    return row.model_dump()


def _require(row: dict[str, Any], *columns: str) -> None:
    missing = [c for c in columns if c not in row or row[c] is None]
    if missing:
        raise RowProblem(
            "malformed", f"missing column(s) {missing} (row has: {', '.join(map(str, row))})"
        )


def _message(value: Any) -> Message:
    return {"role": str(value["role"]), "content": str(value["content"] or "")}


def convert_trl(row: dict[str, Any], rater: str | None = None) -> dict[str, Any]:
    _require(row, "chosen", "rejected")
    p = _as_probability(row["prob_chosen"], "prob_chosen") if "prob_chosen" in row else 1.0
    if row.get("prompt") is None:
        chosen, rejected = row["chosen"], row["rejected"]
        if isinstance(chosen, str) and isinstance(rejected, str):
            return convert_hh(row, rater)
        try:
            chosen_msgs = [*prompt_messages(chosen[:-1]), _message(chosen[-1])]
            rejected_msgs = [*prompt_messages(rejected[:-1]), _message(rejected[-1])]
        except (PairDataError, TypeError, KeyError, IndexError) as err:
            raise RowProblem("malformed", f"implicit-prompt conversation: {err}") from None
        prompt, c, r = split_shared_prompt(chosen_msgs, rejected_msgs)
        return _build(prompt, c, r, p, _rater(row, rater))
    try:
        prompt = prompt_messages(row["prompt"])
        c, r = response_text(row["chosen"]), response_text(row["rejected"])
    except PairDataError as err:
        raise RowProblem("malformed", str(err)) from None
    return _build(prompt, c, r, p, _rater(row, rater))


def convert_hh(row: dict[str, Any], rater: str | None = None) -> dict[str, Any]:
    _require(row, "chosen", "rejected")
    prompt, c, r = split_shared_prompt(
        parse_hh_transcript(row["chosen"]), parse_hh_transcript(row["rejected"])
    )
    return _build(prompt, c, r, 1.0, _rater(row, rater))


def table_probability(row: dict[str, Any]) -> float:
    """P(response_a is better) from `label` (a / b / tie) or a probability column."""
    label = row.get("label")
    if not _is_blank(label):
        text = str(label).strip().lower()
        if text in ("a", "response_a"):
            return 1.0
        if text in ("b", "response_b"):
            return 0.0
        if text in TIE_LABELS:
            return 0.5
        try:
            return _as_probability(text, "label")
        except RowProblem:
            raise RowProblem(
                "malformed", f"label={label!r} is not one of a, b, tie or a probability"
            ) from None
    for column in PROB_COLUMNS:
        if not _is_blank(row.get(column)):
            return _as_probability(row[column], column)
    raise RowProblem("unlabelled", "no label yet (fill `label` with a, b or tie)")


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def convert_table(row: dict[str, Any], rater: str | None = None) -> dict[str, Any]:
    _require(row, "prompt", "response_a", "response_b")
    try:
        prompt = prompt_messages(row["prompt"])
    except PairDataError as err:
        raise RowProblem("malformed", str(err)) from None
    a, b = str(row["response_a"]), str(row["response_b"])
    item_id = None if _is_blank(row.get("item_id")) else str(row["item_id"])
    if item_id is not None and item_id != pair_key(prompt, a, b):
        # spreadsheets may save line breaks as CRLF; accept the text if that was the only change
        prompt_lf = [{**m, "content": _lf(m["content"])} for m in prompt]
        if item_id == pair_key(prompt_lf, _lf(a), _lf(b)):
            prompt, a, b = prompt_lf, _lf(a), _lf(b)
    if item_id is not None and item_id != pair_key(prompt, a, b):
        raise RowProblem(
            "malformed",
            f"item_id {row['item_id']} does not match its prompt and responses (were they "
            "edited?); restore the exported text or drop the item_id to import it as new",
        )
    if a == b:
        raise RowProblem("chosen_equals_rejected", "response_a and response_b are the same text")
    return _build(prompt, a, b, table_probability(row), _rater(row, rater))


CONVERTERS = {"trl": convert_trl, "hh": convert_hh, "table": convert_table}


def detect_format(row: dict[str, Any]) -> str:
    """Guess the format from one row's columns."""
    if "response_a" in row and "response_b" in row:
        return "table"
    if "chosen" in row and "rejected" in row:
        hh = isinstance(row["chosen"], str) and "Human:" in row["chosen"]
        return "hh" if hh and row.get("prompt") is None else "trl"
    raise RowProblem(
        "malformed",
        f"cannot tell the format from columns {list(row)}: expected prompt/chosen/rejected "
        "(trl), chosen/rejected HH transcripts (hh) or prompt/response_a/response_b/label (table)",
    )


def import_human(
    path: str | Path, format: Format = "auto", rater_id: str | None = None, progress: bool = False
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Read human labels into PreferenceRow dicts (source="human") and a report of every row
    that was not imported and why. `rater_id` fills rows that name no rater."""
    from tqdm import tqdm

    report = ImportReport(source_path=str(path), format=format)
    rows: list[dict[str, Any]] = []
    for number, raw in tqdm(iter_rows(path), desc="importing", unit=" rows", disable=not progress):
        report.n_rows += 1
        if isinstance(raw, RowError):
            report.errors.append(RowIssue(row=number, kind="malformed", detail=str(raw)))
            continue
        try:
            if report.format == "auto":
                report.format = detect_format(raw)
            converted = CONVERTERS[report.format](raw, rater_id)
        except RowProblem as problem:
            issue = RowIssue(row=number, kind=problem.kind, detail=str(problem), raw=dict(raw))
            (report.errors if problem.kind == "malformed" else report.flagged).append(issue)
            continue
        except (ValueError, TypeError) as err:  # pydantic validation and odd cell types
            issue = RowIssue(row=number, kind="malformed", detail=str(err)[:300], raw=dict(raw))
            report.errors.append(issue)
            continue
        rows.append(converted)
        report.n_ties += converted["prob_chosen"] == 0.5
    report.n_imported = len(rows)
    return rows, report
