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
from cai.human.pairs import PairDataError, pair_key, prompt_messages, render_conversation
from cai.label.export import human_row
from cai.label.items import Item
from cai.tables import RowError, iter_rows

PREFERENCE = "preference"
REASON = "reason"
NO_WINNER = "no_winner"
VALUES = {"a": "A is better", "b": "B is better", "tie": "Tie", "both_bad": "Both bad"}
GUIDELINES = (
    "Read the conversation, then the two responses. Pick the better response, or Tie when "
    "they are equally good, or Both bad when neither is acceptable. A one-line reason helps."
)
SUBMITTED = (None, "submitted")


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
class _Skip(Exception):
    """A row that holds no usable label: `kind` and `detail` say why."""

    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind, self.detail = kind, detail


def _lf(text: str) -> str:
    return text.replace("\r\n", "\n")


def _item(item_id: Any, prompt: Any, messages_json: Any, a: Any, b: Any, principle: Any) -> Item:
    if a is None or b is None:
        raise _Skip("malformed", "response_a or response_b is missing")
    try:
        if isinstance(messages_json, str) and messages_json.strip():
            messages = prompt_messages(json.loads(messages_json))
        else:
            messages = prompt_messages(prompt)
    except (PairDataError, ValueError) as err:
        raise _Skip("malformed", f"cannot read the prompt ({err})") from None
    a, b = str(a), str(b)
    if item_id and str(item_id) != pair_key(messages, a, b):
        lf = [{**m, "content": _lf(m["content"])} for m in messages]
        if str(item_id) != pair_key(lf, _lf(a), _lf(b)):
            raise _Skip(
                "malformed",
                f"item_id {item_id} does not match its prompt and responses (were they edited?)",
            )
        messages, a, b = lf, _lf(a), _lf(b)
    return Item(
        item_id=pair_key(messages, a, b),
        prompt=messages,
        response_a=a,
        response_b=b,
        principle=str(principle) if principle else None,
    )


def _argilla_labels(row: dict[str, Any]) -> tuple[Item, list[dict[str, Any]], int]:
    """(pair, [{"value", "user", "reason"}], responses left out) of one Argilla record."""
    if isinstance(row.get("fields"), dict):
        fields, metadata = row["fields"], row.get("metadata") or {}
        responses = row.get("responses") or {}
        answers = [
            (r.get("value"), r.get("user_id"), r.get("status"))
            for r in responses.get(PREFERENCE) or []
            if isinstance(r, dict)
        ]
        reasons = {
            r.get("user_id"): r.get("value")
            for r in responses.get(REASON) or []
            if isinstance(r, dict)
        }
    else:  # flattened: records.to_list(flatten=True), to_hub
        fields = metadata = row

        def column(name: str) -> list[Any]:
            value = row.get(name)
            return list(value) if isinstance(value, list | tuple) else []

        values = column(f"{PREFERENCE}.responses")
        users = column(f"{PREFERENCE}.responses.users") or [None] * len(values)
        statuses = column(f"{PREFERENCE}.responses.status") or [None] * len(values)
        answers = list(zip(values, users, statuses, strict=False))
        reasons = dict(
            zip(column(f"{REASON}.responses.users"), column(f"{REASON}.responses"), strict=False)
        )
    item = _item(
        metadata.get("item_id") or row.get("id"),
        fields.get("prompt"),
        metadata.get("prompt_messages"),
        fields.get("response_a"),
        fields.get("response_b"),
        metadata.get("principle"),
    )
    labels, left_out = [], 0
    for value, user, status in answers:
        if status not in SUBMITTED:
            left_out += 1
            continue
        labels.append({"value": value, "user": user, "reason": reasons.get(user)})
    return item, labels, left_out


def _rater(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("email") or value.get("username") or value.get("id")
    return None if value in (None, "") else str(value)


def _first_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("text")
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value if isinstance(value, str) and value.strip() else None


def _ls_choice(pairwise: Any, no_winner: Any) -> str | None:
    if isinstance(no_winner, dict):
        no_winner = no_winner.get("choices")
    if isinstance(no_winner, str):
        no_winner = [no_winner]
    for choice in no_winner or []:
        text = str(choice).strip().lower()
        if text == "tie":
            return "tie"
        if text in ("both bad", "both_bad"):
            return "both_bad"
    if isinstance(pairwise, dict):
        pairwise = pairwise.get("selected")
    return {"left": "a", "right": "b"}.get(str(pairwise).strip().lower()) if pairwise else None


def _label_studio_labels(row: dict[str, Any]) -> tuple[Item, list[dict[str, Any]], int]:
    data = row.get("data") if isinstance(row.get("data"), dict) else row
    item = _item(
        data.get("item_id"),
        data.get("prompt"),
        data.get("prompt_messages"),
        data.get("response_a"),
        data.get("response_b"),
        data.get("principle"),
    )
    labels, left_out = [], 0
    if isinstance(row.get("data"), dict):  # the full JSON export
        for annotation in row.get("annotations") or []:
            if not isinstance(annotation, dict) or annotation.get("was_cancelled"):
                left_out += 1
                continue
            values: dict[str, Any] = {}
            for result in annotation.get("result") or []:
                if isinstance(result, dict):
                    values[result.get("from_name")] = result.get("value")
            labels.append(
                {
                    "value": _ls_choice(values.get(PREFERENCE), values.get(NO_WINNER)),
                    "user": _rater(annotation.get("completed_by")),
                    "reason": _first_text(values.get(REASON)),
                    "at": annotation.get("created_at"),
                    "seconds": annotation.get("lead_time"),
                }
            )
    else:  # JSON-MIN: one flattened annotation per row
        value = _ls_choice(row.get(PREFERENCE), row.get(NO_WINNER))
        if value is not None or row.get("annotator") is not None:
            labels.append(
                {
                    "value": value,
                    "user": _rater(row.get("annotator")),
                    "reason": _first_text(row.get(REASON)),
                    "at": row.get("created_at"),
                    "seconds": row.get("lead_time"),
                }
            )
    return item, labels, left_out


def detect_format(path: Path, first: dict[str, Any] | None) -> str:
    if path.is_dir() and (path / "records.json").is_file():
        return "argilla"
    if first is not None:
        if "annotations" in first or isinstance(first.get("data"), dict) or "annotator" in first:
            return "label-studio"
        if "fields" in first or "responses" in first or f"{PREFERENCE}.responses" in first:
            return "argilla"
    raise InterchangeError(
        "cannot tell whether this is an Argilla or a Label Studio export",
        file=path,
        fix="Pass --format argilla or --format label-studio.",
    )


def import_labels(
    path: str | Path, format: str = "auto"
) -> tuple[list[dict[str, Any]], ImportReport]:
    """Human-label rows from a completed Argilla or Label Studio export, and a report of
    every record that gave none (and why)."""
    path = Path(path)
    source = path / "records.json" if path.is_dir() and (path / "records.json").is_file() else path
    records = list(iter_rows(source))
    if format == "auto":
        first = next((r.data for r in records if isinstance(r.data, dict)), None)
        format = detect_format(path, first)
    read = _argilla_labels if format == "argilla" else _label_studio_labels
    report = ImportReport(source_path=str(path), format=format)
    rows: list[dict[str, Any]] = []
    for record in records:
        report.n_rows += 1
        rows += _record_rows(record, read, report)
    report.n_imported = len(rows)
    return rows, report


def _record_rows(record: Any, read: Callable, report: ImportReport) -> list[dict[str, Any]]:
    """The human-label rows of one exported record; what it lacks goes into `report`."""
    issue = partial(RowIssue, row=record.row, line=record.line)
    if isinstance(record.data, RowError):
        report.errors.append(issue(kind="malformed", detail=record.data.message))
        return []
    try:
        item, labels, left_out = read(record.data)
    except _Skip as skip:
        found = issue(kind=skip.kind, detail=skip.detail)
        (report.errors if skip.kind == "malformed" else report.flagged).append(found)
        return []
    if left_out:
        detail = f"{left_out} draft, discarded or cancelled response(s) left out"
        report.flagged.append(issue(kind="not_submitted", detail=detail))
    usable = [label for label in labels if label["value"] in ("a", "b", "tie", "both_bad")]
    if len(usable) < len(labels):
        bad = [str(label["value"]) for label in labels if label not in usable]
        detail = f"answer(s) {', '.join(bad)} are not a, b, tie or both_bad"
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
