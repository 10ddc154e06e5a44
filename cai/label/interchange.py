"""File-level interchange with Argilla and Label Studio: pairs out, completed labels back in.

Argilla (2.x `Dataset.to_disk` / `from_disk` layout):

    OUT/records.json            a JSON list of records (`Record.to_dict()` shape):
                                {"id", "fields": {"prompt", "response_a", "response_b"},
                                 "metadata": {"item_id", "prompt_messages", "principle"},
                                 "suggestions": {}, "responses": {}, "vectors": {},
                                 "_server_id": null}
    OUT/.argilla/settings.json  fields prompt / response_a / response_b (text, Markdown);
                                questions `preference` (label_selection: a, b, tie, both_bad)
                                and `reason` (text, optional); extra metadata allowed
    OUT/.argilla/dataset.json   the dataset model (name, guidelines)

  `rg.Dataset.from_disk(OUT)` loads it into an Argilla server. Labels come back from a
  `to_disk` directory (or its records.json), nested (`"responses": {"preference": [{"value",
  "user_id", "status"}]}`), or flattened as `records.to_list(flatten=True)` and `to_hub` write
  them (`preference.responses`, `preference.responses.users`, `preference.responses.status`,
  in JSON, JSONL or Parquet). Each submitted response is one human label; its `user_id` is the
  rater id; the same user's `reason` response is kept. Draft and discarded responses are left
  out (and counted).

Label Studio (JSON tasks and a labeling config):

    OUT.json                    [{"data": {"item_id", "prompt", "prompt_messages",
                                  "response_a", "response_b", "principle"}}, ...]
    OUT.label_config.xml        <Pairwise name="preference" toName="response_a,response_b">
                                (click the better response), <Choices name="no_winner">
                                (Tie / Both bad) and <TextArea name="reason">

  Labels come back from Label Studio's JSON export (tasks with `annotations`, each with a
  `result` list: `{"type": "pairwise", "value": {"selected": "left" | "right"}}`, left being
  response_a, the first name in toName; `{"type": "choices", "value": {"choices": ["Tie"]}}`;
  `{"type": "textarea", "value": {"text": ["..."]}}`) or its JSON-MIN export (the same
  values flattened per annotation). `completed_by` (its email when the export holds one) is
  the rater id, `lead_time` the seconds spent; cancelled (skipped) annotations are left out.

Projects set up in the tools themselves, under their own names (Label Studio's Pairwise
template, an Argilla dataset with its own fields and question), read back through the same
mapping (`cai.label.foreign`; the readers are `read_argilla` and `read_label_studio`).

Both imports check each pair against its `item_id` (an edited text is an error for that row,
as with `cai route import`) and write the same human-label rows as `cai label export`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from cai.errors import InputError
from cai.files import atomic_write_json, atomic_write_text
from cai.human.imports import ImportReport, RowIssue
from cai.human.pairs import render_conversation
from cai.label.export import human_row
from cai.label.foreign import ANSWERS, FIELDS_FLAG, PairNames, Skip
from cai.label.items import Item
from cai.label.read_argilla import PREFERENCE, REASON, argilla_labels
from cai.label.read_label_studio import label_studio_labels
from cai.tables import RowError, iter_rows

NO_WINNER = "no_winner"
VALUES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
GUIDELINES = (
    "Read the conversation, then the two responses. Pick the better response, or Tie when "
    "they are equally good, or Both bad when neither is acceptable. A one-line reason helps."
)


class InterchangeError(InputError):
    """An interchange file cannot be written or read."""


def prompt_text(item: Item) -> str:
    """The prompt as people read it: the text of a single user turn, else the turns."""
    if len(item.prompt) == 1 and item.prompt[0]["role"] == "user":
        return item.prompt[0]["content"]
    return render_conversation(item.prompt)


# ---- Argilla ---------------------------------------------------------------------------------
def argilla_settings() -> dict[str, Any]:
    def field(name: str, title: str) -> dict[str, Any]:
        return {
            "name": name,
            "title": title,
            "description": None,
            "required": True,
            "settings": {"type": "text", "use_markdown": True},
        }

    return {
        "guidelines": GUIDELINES,
        "questions": [
            {
                "name": PREFERENCE,
                "title": "Which response is better?",
                "description": None,
                "required": True,
                "settings": {
                    "type": "label_selection",
                    "options": [
                        {"value": value, "text": text, "description": None}
                        for value, text in VALUES.items()
                    ],
                    "visible_options": None,
                },
            },
            {
                "name": REASON,
                "title": "Reason (optional, one line)",
                "description": None,
                "required": False,
                "settings": {"type": "text", "use_markdown": False},
            },
        ],
        "fields": [
            field("prompt", "Prompt"),
            field("response_a", "Response A"),
            field("response_b", "Response B"),
        ],
        "vectors": [],
        "metadata": [],
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
    }


def argilla_record(item: Item) -> dict[str, Any]:
    metadata = {
        "item_id": item.item_id,
        "prompt_messages": json.dumps(item.prompt, ensure_ascii=False),
    }
    if item.principle:
        metadata["principle"] = item.principle
    return {
        "id": item.item_id,
        "fields": {
            "prompt": prompt_text(item),
            "response_a": item.response_a,
            "response_b": item.response_b,
        },
        "metadata": metadata,
        "suggestions": {},
        "responses": {},
        "vectors": {},
        "_server_id": None,
    }


def to_argilla(items: list[Item], out: str | Path, name: str | None = None) -> Path:
    """Write an Argilla dataset directory (`rg.Dataset.from_disk` reads it)."""
    out = Path(out)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InterchangeError(
            "exists and is not an empty directory",
            file=out,
            fix="Argilla datasets are written to a new directory; pick another --out.",
        )
    dataset = {
        "id": None,
        "name": name or out.name,
        "status": None,
        "guidelines": GUIDELINES,
        "allow_extra_metadata": True,
        "distribution": {"strategy": "overlap", "min_submitted": 1},
        "workspace_id": None,
        "last_activity_at": None,
        "inserted_at": None,
        "updated_at": None,
    }
    atomic_write_json(out / ".argilla" / "settings.json", argilla_settings())
    atomic_write_json(out / ".argilla" / "dataset.json", dataset)
    atomic_write_text(
        out / "records.json",
        json.dumps([argilla_record(item) for item in items], ensure_ascii=False, indent=1) + "\n",
    )
    return out


# ---- Label Studio ----------------------------------------------------------------------------
def label_studio_config(with_principle: bool = False) -> str:
    principle = (
        '  <Header value="Principle under test" size="6"/>\n'
        '  <Text name="principle" value="$principle"/>\n'
        if with_principle
        else ""
    )
    return (
        "<View>\n"
        '  <Header value="Which response is better?"/>\n'
        '  <Text name="prompt" value="$prompt"/>\n'
        f"{principle}"
        '  <View style="display: grid; grid-template-columns: 1fr 1fr; column-gap: 1em">\n'
        '    <View><Header value="Response A" size="5"/>'
        '<Text name="response_a" value="$response_a"/></View>\n'
        '    <View><Header value="Response B" size="5"/>'
        '<Text name="response_b" value="$response_b"/></View>\n'
        "  </View>\n"
        f'  <Pairwise name="{PREFERENCE}" toName="response_a,response_b"/>\n'
        '  <Header value="Or, when neither is better:" size="6"/>\n'
        f'  <Choices name="{NO_WINNER}" toName="prompt" choice="single" showInline="true">\n'
        '    <Choice value="Tie"/>\n'
        '    <Choice value="Both bad"/>\n'
        "  </Choices>\n"
        f'  <TextArea name="{REASON}" toName="prompt" rows="1" maxSubmissions="1" '
        'placeholder="Reason (optional, one line)"/>\n'
        "</View>\n"
    )


def label_studio_task(item: Item) -> dict[str, Any]:
    return {
        "data": {
            "item_id": item.item_id,
            "prompt": prompt_text(item),
            "prompt_messages": json.dumps(item.prompt, ensure_ascii=False),
            "response_a": item.response_a,
            "response_b": item.response_b,
            "principle": item.principle or "",
        }
    }


def to_label_studio(items: list[Item], out: str | Path) -> tuple[Path, Path]:
    """Write Label Studio tasks (JSON) and the labeling config beside them."""
    out = Path(out)
    if out.suffix.lower() != ".json":
        raise InterchangeError(
            "Label Studio tasks are written as a .json file",
            file=out,
            fix="Pass --out tasks.json.",
        )
    config = out.with_name(out.stem + ".label_config.xml")
    tasks = [label_studio_task(item) for item in items]
    atomic_write_text(out, json.dumps(tasks, ensure_ascii=False, indent=1) + "\n")
    atomic_write_text(config, label_studio_config(any(item.principle for item in items)))
    return out, config


# ---- reading labels back -----------------------------------------------------------------------
Reader = Callable[[dict[str, Any], PairNames], tuple[Item, list[dict[str, Any]], int, dict]]
READERS: dict[str, Reader] = {"argilla": argilla_labels, "label-studio": label_studio_labels}
CHOICES = ("a", "b", "tie", "both_bad")


def detect_format(path: Path, first: dict[str, Any] | None) -> str:
    if path.is_dir() and (path / "records.json").is_file():
        return "argilla"
    if first is not None:
        if "annotations" in first or isinstance(first.get("data"), dict) or "annotator" in first:
            return "label-studio"
        if "fields" in first or "responses" in first or any(".responses" in k for k in first):
            return "argilla"
    raise InterchangeError(
        "cannot tell whether this is an Argilla or a Label Studio export",
        file=path,
        fix="Pass --format argilla or --format label-studio.",
    )


def import_labels(
    path: str | Path, format: str = "auto", names: PairNames | None = None
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Human-label rows from a completed Argilla or Label Studio export, and a report of
    every record that gave none (and why). `names` says where a file that does not use
    cai's names keeps the pair and the answer (`cai.label.foreign`)."""
    path, names = Path(path), names or PairNames()
    source = path / "records.json" if path.is_dir() and (path / "records.json").is_file() else path
    records = list(iter_rows(source))
    if format == "auto":
        first = next((r.data for r in records if isinstance(r.data, dict)), None)
        format = detect_format(path, first)
    report = ImportReport(source_path=str(path), format=format)
    rows: list[dict[str, Any]] = []
    for record in records:
        report.n_rows += 1
        rows += _record_rows(record, partial(READERS[format], names=names), report)
    report.n_imported = len(rows)
    _require_names(report, format, names)
    report.notes += _rater_notes(rows)
    return rows, report


def _require_names(report: ImportReport, format: str, names: PairNames) -> None:
    """A file whose names are not cai's and were not given is one error, not one per row."""
    unnamed = [issue for issue in report.errors if issue.kind == "unnamed"]
    if report.n_imported or not unnamed:
        return
    if names.given:
        what = f"the names given ({_given(names)}) do not fit its records"
    else:
        what = "its records do not use cai's names and no --fields / --question names them"
    question = "the question" if format == "argilla" else "the Pairwise tag"
    raise InterchangeError(
        f"{what}: {unnamed[0].where()}: {unnamed[0].detail}",
        file=report.source_path,
        fix=f"Name the texts with {FIELDS_FLAG} and {question} with --question NAME.",
    )


def _given(names: PairNames) -> str:
    parts = [f"{k}={v}" for k, v in (("prompt", names.prompt), ("a", names.a), ("b", names.b))]
    given = [p for p in parts if not p.endswith("=None")]
    if names.question:
        given.append(f"question={names.question}")
    return ", ".join(given)


def _rater_notes(rows: list[dict[str, Any]]) -> list[str]:
    """How pairs that several people labelled were kept: each label is its own row."""
    by_pair: dict[str, list[str]] = {}
    for row in rows:
        by_pair.setdefault(row["item_id"], []).append(row["choice"])
    several = [choices for choices in by_pair.values() if len(choices) > 1]
    if not several:
        return []
    split = sum(len(set(choices)) > 1 for choices in several)
    return [
        f"{len(several)} pair(s) labelled by more than one rater ({split} disagree): each "
        "label is kept as its own row, as `cai label export` does"
    ]


def _record_rows(record: Any, read: Callable, report: ImportReport) -> list[dict[str, Any]]:
    """The human-label rows of one exported record; what it lacks goes into `report`."""
    issue = partial(RowIssue, row=record.row, line=record.line)
    if isinstance(record.data, RowError):
        report.errors.append(issue(kind="malformed", detail=record.data.message))
        return []
    try:
        item, labels, left_out, read_as = read(record.data)
    except Skip as skip:
        found = issue(kind=skip.kind, detail=skip.detail)
        (report.flagged if skip.kind == "unlabelled" else report.errors).append(found)
        return []
    report.columns_mapped.update(read_as)
    if left_out:
        what = (
            "cancelled (skipped) annotation(s)"
            if report.format == "label-studio"
            else "draft or discarded response(s)"
        )
        detail = f"{left_out} {what} left out"
        report.flagged.append(issue(kind="not_submitted", detail=detail))
    empty = [label for label in labels if label["value"] is None]
    if empty:
        detail = f"{len(empty)} annotation(s) submitted with no choice made"
        report.flagged.append(issue(kind="no_choice", detail=detail))
    usable = [label for label in labels if label["value"] in CHOICES]
    bad = [str(label["value"]) for label in labels if label not in usable and label not in empty]
    if bad:
        detail = f"answer(s) {', '.join(bad)} are not one of {ANSWERS}"
        report.errors.append(issue(kind="malformed", detail=detail))
    if not labels and not left_out:
        report.flagged.append(issue(kind="unlabelled", detail="no answer yet"))
    rows = []
    for label in usable:
        seconds = label.get("seconds")
        rows.append(
            human_row(
                item,
                label["value"],
                label["user"],
                reason=label.get("reason"),
                labelled_at=label.get("at") if isinstance(label.get("at"), str) else None,
                seconds=seconds if isinstance(seconds, int | float) else None,
            )
        )
        report.n_ties += label["value"] in ("tie", "both_bad")
    return rows
