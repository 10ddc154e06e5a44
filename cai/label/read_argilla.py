"""Labels from an Argilla export, whether cai wrote the dataset or someone set it up in
Argilla with their own field and question names.

Four layouts are read, one record per row:

- 2.x nested (`Dataset.to_disk` records.json, `records.to_list()`, `to_json`):
  `{"id", "fields": {...}, "metadata": {...}, "responses": {QUESTION: [{"value",
  "user_id", "status"}]}}`;
- 2.x flattened (`records.to_list(flatten=True)`, `to_datasets`, `to_hub`): the fields and
  metadata as columns, and `QUESTION.responses`, `QUESTION.responses.users`,
  `QUESTION.responses.status` as parallel lists;
- 1.x `FeedbackDataset.format_as("datasets")` / `push_to_huggingface`: the fields as
  columns, `QUESTION` a list of `{"user_id", "value", "status"}`, `metadata` a JSON string;
- 1.x `FeedbackRecord` JSON: `{"fields", "metadata", "responses": [{"user_id", "status",
  "values": {QUESTION: {"value"}}}]}`.

The fields and the question are cai's (`prompt`, `response_a`, `response_b`, `preference`)
unless `--fields` and `--question` name others; Argilla keeps no order that says which
field is "a", so they are never guessed. An answer is a label (a / b / tie / both_bad,
the winning field's name, or the usual spellings: `answer_choice`) or a ranking.
"""

from __future__ import annotations

import json
from typing import Any

from cai.label.foreign import META_KEYS, PairNames, Skip, answer_choice, pair_item
from cai.label.items import Item

PREFERENCE = "preference"
REASON = "reason"
SUBMITTED = (None, "submitted")


def _metadata(value: Any) -> dict[str, Any]:
    if isinstance(value, str) and value.strip().startswith("{"):
        try:
            value = json.loads(value)
        except ValueError:
            return {}
    return value if isinstance(value, dict) else {}


def _answers(row: dict[str, Any], question: str) -> tuple[list[tuple[Any, Any, Any]], set[str]]:
    """[(value, user, status)] of `question`, and the names of every question the record
    holds answers to (to name them when `question` is not one)."""
    responses = row.get("responses")
    if isinstance(responses, dict):  # 2.x nested
        found = {str(q) for q, v in responses.items() if v}
        answers = [
            (r.get("value"), r.get("user_id"), r.get("status"))
            for r in responses.get(question) or []
            if isinstance(r, dict)
        ]
        return answers, found
    if isinstance(responses, list):  # 1.x FeedbackRecord
        found, answers = set(), []
        for response in responses:
            values = response.get("values") if isinstance(response, dict) else None
            if not isinstance(values, dict):
                continue
            found |= {str(q) for q in values}
            if isinstance(values.get(question), dict):
                status = response.get("status")
                answers.append((values[question].get("value"), response.get("user_id"), status))
        return answers, found
    found = {k[: -len(".responses")] for k, v in row.items() if k.endswith(".responses") and v}
    found |= {k for k, v in row.items() if _is_v1_answers(v)}
    if isinstance(row.get(f"{question}.responses"), list | tuple):  # 2.x flattened
        values = list(row[f"{question}.responses"])
        users = list(row.get(f"{question}.responses.users") or [None] * len(values))
        statuses = list(row.get(f"{question}.responses.status") or [None] * len(values))
        return list(zip(values, users, statuses, strict=False)), found
    if _is_v1_answers(row.get(question)):  # 1.x datasets
        return [(r.get("value"), r.get("user_id"), r.get("status")) for r in row[question]], found
    return [], found


def _is_v1_answers(value: Any) -> bool:
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(r, dict) and "user_id" in r and "value" in r for r in value)
    )


def _record_fields(row: dict[str, Any], names: PairNames) -> dict[str, Any]:
    """The record's fields and cai's metadata keys, fields first. The record id is cai's
    item id only in a dataset cai wrote."""
    metadata = _metadata(row.get("metadata"))
    if isinstance(row.get("fields"), dict):
        fields = dict(row["fields"])
    else:
        fields = {k: v for k, v in row.items() if "." not in k and k != "metadata"}
    fields.update({k: metadata[k] for k in META_KEYS if k in metadata and k not in fields})
    if "item_id" not in fields and row.get("id") and not names.given:
        fields["item_id"] = row["id"]
    return fields


def argilla_labels(
    row: dict[str, Any], names: PairNames
) -> tuple[Item, list[dict[str, Any]], int, dict[str, str]]:
    """(pair, [{"value", "user", "reason"}], responses left out, names read as cai's) of
    one Argilla record."""
    fields = _record_fields(row, names)
    missing = [
        f"{role} field `{name}`"
        for role, name in (("prompt", names.prompt), ("a", names.a), ("b", names.b))
        if name and name not in fields
    ]
    if not (names.a or names.b) and not {"response_a", "response_b"} <= set(fields):
        missing.append("fields `response_a` and `response_b`")
    question = names.question or PREFERENCE
    answers, found = _answers(row, question)
    if not answers and found - {REASON}:
        missing.append(f"answers to the question `{question}`")
    if missing:
        has = f"its fields: {_keys(fields)}"
        if found:
            has += f"; its questions: {', '.join(sorted(found))}"
        raise Skip("unnamed", f"no {' and no '.join(missing)} ({has})")
    item, read_as = pair_item(fields, names)
    a_key = names.a or "response_a"
    b_key = names.b or "response_b"
    reasons = dict((user, value) for value, user, _ in _answers(row, REASON)[0])
    labels, left_out = [], 0
    for value, user, status in answers:
        if status not in SUBMITTED:
            left_out += 1
            continue
        choice = answer_choice(value, a_key, b_key)
        labels.append({"value": choice or value, "user": _user(user), "reason": reasons.get(user)})
    if names.question:
        read_as[names.question] = PREFERENCE
    return item, labels, left_out, read_as


def _user(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _keys(data: dict[str, Any]) -> str:
    """The names that may be fields: text values, not Argilla's own record keys."""
    own = {*META_KEYS, "status", "_server_id", "external_id", "inserted_at", "updated_at"}
    texts = [str(k) for k, v in data.items() if isinstance(v, str) and k not in own]
    return ", ".join(texts) or "none"
