"""Import human preference labels from the formats people already have.

- `trl`: TRL's preference format (prompt / chosen / rejected, conversational or plain strings;
  without a prompt column the shared turns of chosen and rejected become the prompt).
- `hh`: Anthropic HH-RLHF transcripts, chosen and rejected strings of
  "\\n\\nHuman: ...\\n\\nAssistant: ..." turns; the shared turns are split off as the prompt.
- `table`: one rating per row: prompt, response_a, response_b and label in {a, b, tie} or a
  probability that a is better (`prob_a` / `probability`); optional `rater_id`, `item_id`.
- `single`: one answer per row with a thumbs up or down: prompt, response and label (`up` /
  `down`, 👍 / 👎, true / false, 1 / 0; `cai.human.thumbs`), written as unpaired rows
  (`cai.records.UnpairedRow`: prompt / completion / label) that `cai train kto` reads as is.

Columns may go by their usual other names (`rater`, `annotator`, `worker_id` for `rater_id`;
`preferred` / `dispreferred` for chosen / rejected; `answer_a` for `response_a`, ...; case,
spaces and dashes do not matter): `COLUMN_ALIASES` lists them per format, and the report says
which name was read as which column.

Nothing is lost silently: malformed rows become errors with their row numbers, rows whose
chosen equals rejected, whose prompts cannot be aligned, or that carry no label yet are
flagged and counted, and columns no format uses are listed as ignored. Good rows are
imported either way; a file with no importable row at all is an error (`require_rows`).
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from cai.backends.base import Message
from cai.errors import CaiError, InputError
from cai.human.pairs import (
    PairDataError,
    assistant,
    pair_key,
    prompt_messages,
    response_text,
)
from cai.human.thumbs import SPELLINGS, ThumbError, parse_thumb
from cai.records import PreferenceRow, UnpairedRow, stable_id
from cai.tables import RowError, iter_rows

Format = Literal["auto", "trl", "hh", "table", "single"]
PROB_COLUMNS = ("prob_a", "probability")
TIE_LABELS = {"tie", "t", "=", "equal", "same", "tie (bothbad)", "both", "neither"}
A_LABELS = {"a", "response_a", "model_a", "answer_a"}
B_LABELS = {"b", "response_b", "model_b", "answer_b"}

_RATER = (
    "rater", "annotator", "annotator_id", "labeler", "labeler_id", "labeller", "labeller_id",
    "worker", "worker_id",
)  # fmt: skip
_PROMPT = ("question", "instruction", "query", "input", "context")
_CHOSEN = (
    "preferred", "chosen_response", "response_chosen", "better", "better_response", "accepted",
)  # fmt: skip
_REJECTED = (
    "dispreferred", "rejected_response", "response_rejected", "worse", "worse_response", "loser",
)  # fmt: skip
_SIDE_WORDS = ("answer", "completion", "output")


def _side(letter: str, number: int) -> tuple[str, ...]:
    """Other names of response_<letter>: answer_a, completion_a, ..., response_1, answer_1."""
    words = (f"{w}_{letter}" for w in _SIDE_WORDS)
    return (*words, *(f"{w}_{number}" for w in ("response", *_SIDE_WORDS)))


COLUMN_ALIASES: dict[str, dict[str, tuple[str, ...]]] = {
    "table": {
        "prompt": _PROMPT,
        "response_a": _side("a", 1),
        "response_b": _side("b", 2),
        "label": ("preference", "choice", "winner", "human_label", "preferred"),
        "prob_a": ("p_a", "prob_response_a"),
        "probability": (),
        "rater_id": _RATER,
        "item_id": (),
        "comment": ("comments", "note", "notes"),
    },
    "trl": {
        "prompt": _PROMPT,
        "chosen": (*_CHOSEN, "winner"),
        "rejected": _REJECTED,
        "prob_chosen": ("chosen_prob", "p_chosen"),
        "rater_id": _RATER,
    },
    "hh": {"chosen": (*_CHOSEN, "winner"), "rejected": _REJECTED, "rater_id": _RATER},
    "single": {
        "prompt": _PROMPT,
        "completion": ("response", "answer", "output", "reply", "model_response"),
        # not `rating` or `vote`: a 1-5 or -1/+1 scale is not a thumbs up/down
        "label": ("thumbs", "thumb", "thumbs_up", "feedback", "human_label"),
        "rater_id": _RATER,
        "comment": ("comments", "note", "notes"),
    },
}
"""Per format: each column it reads and the other names it accepts for it. `winner` and
`preferred` are the label (a / b / tie) in a table, the chosen text elsewhere."""


def _normal(name: Any) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


_LOOKUP = {
    fmt: {_normal(n): column for column, names in table.items() for n in (column, *names)}
    for fmt, table in COLUMN_ALIASES.items()
}


class Columns(BaseModel):
    """A row with its columns under the names a format reads (`row`), which other names
    were read as which column (`mapped`), and the columns the format does not use."""

    row: dict[str, Any]
    mapped: dict[str, str] = Field(default_factory=dict)
    unknown: list[str] = Field(default_factory=list)


def canonical_columns(row: dict[str, Any], fmt: str) -> Columns:
    """`row` with each known column under its own name. A column already under its own name
    wins over another name for it; a second name for the same column is left unknown."""
    lookup = _LOOKUP[fmt]
    out: dict[str, Any] = {name: row[name] for name in row if name in COLUMN_ALIASES[fmt]}
    mapped, unknown = {}, []
    for name, value in row.items():
        if name in out and name in COLUMN_ALIASES[fmt]:
            continue
        column = lookup.get(_normal(name))
        if column is None or column in out:
            unknown.append(str(name))
        else:
            out[column] = value
            mapped[str(name)] = column
    return Columns(row=out, mapped=mapped, unknown=unknown)


class RowProblem(CaiError, ValueError):
    """Why one row cannot become a preference row; `kind` is "malformed" or a flag kind."""

    def __init__(self, kind: str, detail: str):
        super().__init__(detail)
        self.kind = kind

    def __reduce__(self):
        return (type(self), (self.kind, self.message))


class RowIssue(BaseModel):
    row: int
    line: int | None = None
    """The line the row starts on, for text files."""
    kind: str
    detail: str
    raw: dict[str, Any] | None = None

    def where(self) -> str:
        """ "row 3", or "row 3 (line 4)" when the row starts on another line of the file."""
        line = f" (line {self.line})" if self.line not in (None, self.row) else ""
        return f"row {self.row}{line}"


class ImportReport(BaseModel):
    """What an import did: rows read and imported, errors (malformed) and flags, by row."""

    source_path: str
    format: str
    n_rows: int = 0
    n_imported: int = 0
    n_ties: int = 0
    n_up: int = 0
    n_down: int = 0
    """Thumbs up and down among the imported rows (format `single`)."""
    errors: list[RowIssue] = Field(default_factory=list)
    flagged: list[RowIssue] = Field(default_factory=list)
    columns_mapped: dict[str, str] = Field(default_factory=dict)
    """Columns read under another name: {name in the file: column}."""
    unknown_columns: dict[str, int] = Field(default_factory=dict)
    """Columns the format does not use (ignored): {name: rows that had it}."""
    notes: list[str] = Field(default_factory=list)
    """Lines the summary shows after the counts (how the rows were read)."""

    def flag_counts(self) -> dict[str, int]:
        return dict(Counter(issue.kind for issue in self.flagged))

    def note_columns(self, columns: Columns) -> None:
        self.columns_mapped.update(columns.mapped)
        for name in columns.unknown:
            self.unknown_columns[name] = self.unknown_columns.get(name, 0) + 1

    def _column_lines(self) -> list[str]:
        lines = []
        if self.columns_mapped:
            pairs = ", ".join(f"{k} -> {v}" for k, v in self.columns_mapped.items())
            lines.append(f"  columns read as: {pairs}")
        if self.unknown_columns:
            names = ", ".join(f"{k} ({v} rows)" for k, v in self.unknown_columns.items())
            lines.append(f"  columns ignored (the {self.format} format does not use them): {names}")
        return lines

    @property
    def row_kind(self) -> str:
        """What the imported rows are: single answers with a thumbs up/down, or pairs."""
        return "unpaired (thumbs up/down)" if self.format == "single" else "preference"

    def summary(self, max_listed: int = 10) -> str:
        counts = f"{self.n_up} up, {self.n_down} down" if self.format == "single" else None
        lines = [
            f"{self.source_path} ({self.format}): {self.n_rows} rows read, {self.n_imported} "
            f"imported ({counts or f'{self.n_ties} ties'}), {len(self.errors)} malformed, "
            f"{len(self.flagged)} flagged {self.flag_counts() or ''}".rstrip(),
            *self._column_lines(),
            *(f"  {note}" for note in self.notes),
        ]
        for issue in (self.errors + self.flagged)[:max_listed]:
            lines.append(f"  {issue.where()}: {issue.kind}: {issue.detail}")
        hidden = len(self.errors) + len(self.flagged) - max_listed
        if hidden > 0:
            lines.append(f"  ... and {hidden} more (see the JSON report)")
        return "\n".join(lines)

    def require_rows(self, details: str | None = None) -> None:
        """Raise `NothingImportedError` when no row could be imported, with the reasons by
        kind and one example each; `details` says where the full report is."""
        if self.n_imported:
            return
        if not self.n_rows:
            raise NothingImportedError(
                "the file holds no rows",
                file=self.source_path,
                fix="Check the path; the labels file has a header or JSON lines but no rows.",
            )
        raise NothingImportedError(
            self._why_nothing(),
            file=self.source_path,
            fix=details or "Check the format (--format) and the column names.",
        )

    def _why_nothing(self) -> str:
        issues = self.errors + self.flagged
        examples: dict[str, RowIssue] = {}
        for issue in issues:
            examples.setdefault(issue.kind, issue)
        reasons = "; ".join(
            f"{n} {kind} (e.g. {examples[kind].where()}: {examples[kind].detail})"
            for kind, n in Counter(issue.kind for issue in issues).most_common()
        )
        if self.n_rows == 1:
            return f"its one row could not be imported: {reasons}"
        return f"none of its {self.n_rows} rows could be imported: {reasons}"


class NothingImportedError(InputError):
    """A labels file yielded no preference row at all."""


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


def _preview(value: Any, width: int = 40) -> str:
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _as_probability(value: Any, column: str) -> float:
    try:
        p = float(value)
    except (TypeError, ValueError, OverflowError):
        raise RowProblem("malformed", f"{column}={_preview(value)} is not a number") from None
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
    row = canonical_columns(row, "trl").row
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
    row = canonical_columns(row, "hh").row
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
        if text in A_LABELS:
            return 1.0
        if text in B_LABELS:
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
    row = canonical_columns(row, "table").row
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


def _thumb(row: dict[str, Any]) -> bool:
    try:
        label = parse_thumb(row.get("label"))
    except ThumbError as err:
        raise RowProblem("malformed", f"label={err}") from None
    if label is None:
        raise RowProblem("unlabelled", f"no thumbs up/down yet (fill `label` with {SPELLINGS})")
    return label


def convert_single(row: dict[str, Any], rater: str | None = None) -> dict[str, Any]:
    """One rated answer as an `UnpairedRow` dict (label true = thumbs up)."""
    row = canonical_columns(row, "single").row
    _require(row, "prompt", "completion")
    try:
        prompt = prompt_messages(row["prompt"])
        text = response_text(row["completion"])
    except PairDataError as err:
        raise RowProblem("malformed", str(err)) from None
    if not text.strip():
        raise RowProblem("malformed", "the response is empty")
    return UnpairedRow(
        prompt=prompt,
        completion=assistant(text),
        label=_thumb(row),
        prompt_id=stable_id(prompt),
        completion_id=stable_id(prompt, text),
        source="human",
        method="human-import",
        rater_id=_rater(row, rater),
    ).model_dump()


CONVERTERS = {
    "trl": convert_trl,
    "hh": convert_hh,
    "table": convert_table,
    "single": convert_single,
}


def detect_format(row: dict[str, Any]) -> str:
    """Guess the format from one row's columns (under any of their accepted names)."""
    table = canonical_columns(row, "table").row
    if "response_a" in table and "response_b" in table:
        return "table"
    trl = canonical_columns(row, "trl").row
    if "chosen" in trl and "rejected" in trl:
        hh = isinstance(trl["chosen"], str) and "Human:" in trl["chosen"]
        return "hh" if hh and trl.get("prompt") is None else "trl"
    single = canonical_columns(row, "single").row
    if "completion" in single and "label" in single:
        return "single"
    raise RowProblem(
        "malformed",
        f"cannot tell the format from columns {list(row)}: expected prompt/chosen/rejected "
        "(trl), chosen/rejected HH transcripts (hh), prompt/response_a/response_b/label "
        "(table) or prompt/response/thumbs (single)",
    )


def convert_row(
    row: dict[str, Any], format: str = "auto", rater: str | None = None
) -> dict[str, Any]:
    """One PreferenceRow dict from one row of any supported format (raises RowProblem)."""
    fmt = detect_format(row) if format == "auto" else format
    return CONVERTERS[fmt](row, rater)


def _issue(record, kind: str, detail: str, raw: dict[str, Any] | None = None) -> RowIssue:
    return RowIssue(row=record.row, line=record.line, kind=kind, detail=detail, raw=raw)


def import_human(
    path: str | Path, format: Format = "auto", rater_id: str | None = None, progress: bool = False
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Read human labels into PreferenceRow dicts (UnpairedRow dicts for thumbs up/down;
    source="human") and a report of every row
    that was not imported and why, and of the columns read under other names or ignored.
    `rater_id` fills rows that name no rater."""
    from tqdm import tqdm

    report = ImportReport(source_path=str(path), format=format)
    rows: list[dict[str, Any]] = []
    records = iter_rows(path)
    for record in tqdm(records, desc="importing", unit=" rows", disable=not progress):
        report.n_rows += 1
        raw = record.data
        if isinstance(raw, RowError):
            report.errors.append(_issue(record, "malformed", raw.message))
            continue
        try:
            if report.format == "auto":
                report.format = detect_format(raw)
            report.note_columns(canonical_columns(raw, report.format))
            converted = CONVERTERS[report.format](raw, rater_id)
        except RowProblem as problem:
            issue = _issue(record, problem.kind, str(problem), dict(raw))
            (report.errors if problem.kind == "malformed" else report.flagged).append(issue)
            continue
        except (ValueError, TypeError, OverflowError) as err:  # pydantic and odd cell types
            report.errors.append(_issue(record, "malformed", str(err)[:300], dict(raw)))
            continue
        rows.append(converted)
        report.n_ties += converted.get("prob_chosen") == 0.5
        report.n_up += converted.get("label") is True
        report.n_down += converted.get("label") is False
    report.n_imported = len(rows)
    return rows, report
