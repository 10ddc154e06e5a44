"""Labels from a Label Studio export: cai's own tasks and projects made with Label Studio's
Pairwise template alike.

The JSON export holds one task per row: `data` (the texts, under whatever names the project
used) and `annotations`, each with `completed_by`, `lead_time`, `was_cancelled` and a
`result` list. The Pairwise tag writes `{"from_name": NAME, "to_name": NAME, "type":
"pairwise", "value": {"selected": "left" | "right"}}` (its `to_name` is the tag's own name;
left is the first object of the config's `toName`). The config is not in the export, so
the left and right texts are, in order: the names `--fields` gives, cai's `response_a` /
`response_b`, the two names of a `to_name` that lists them, else the task's only two texts
besides the prompt, in the order its data lists them (Label Studio keeps the order the
tasks were imported with). A `choices` result reading Tie or Both bad overrides the pick;
the first `textarea` result is the reason. The JSON-MIN export (one flattened annotation
per row, `annotator` instead of `completed_by`) reads the same way.
"""

from __future__ import annotations

from typing import Any

from cai.label.foreign import PairNames, answer_choice, find_sides, pair_item
from cai.label.items import Item

NO_WINNER_CHOICES = {"tie": "tie", "both_bad": "both_bad", "both bad": "both_bad"}


def rater(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("email") or value.get("username") or value.get("id")
    return None if value in (None, "") else str(value)


def first_text(value: Any) -> str | None:
    if isinstance(value, dict):
        value = value.get("text")
    if isinstance(value, list):
        value = next((v for v in value if isinstance(v, str) and v.strip()), None)
    return value if isinstance(value, str) and value.strip() else None


def _no_winner(choices: Any) -> str | None:
    if isinstance(choices, dict):
        choices = choices.get("choices")
    if isinstance(choices, str):
        choices = [choices]
    if not isinstance(choices, list):
        return None
    for choice in choices:
        found = NO_WINNER_CHOICES.get(str(choice).strip().lower().replace("_", " "))
        found = found or NO_WINNER_CHOICES.get(str(choice).strip().lower())
        if found:
            return found
    return None


def _objects(results: list[dict[str, Any]], names: PairNames) -> list[str] | None:
    """The two object names a pairwise result's `to_name` lists, when it lists two."""
    for result in results:
        if _is_pick(result, names):
            to_name = result.get("to_name")
            parts = [p.strip() for p in str(to_name or "").split(",") if p.strip()]
            return parts if len(parts) == 2 else None
    return None


def _is_pick(result: dict[str, Any], names: PairNames) -> bool:
    if names.question:
        return result.get("from_name") == names.question
    return result.get("type") == "pairwise"


def _annotation_label(
    results: list[Any], names: PairNames, sides: tuple[str, str]
) -> dict[str, Any]:
    """The pick (or a Tie / Both bad choice over it) and the reason of one annotation. A
    Choices tag named by --question may pick a side by its data key."""
    value = reason = None
    for result in results:
        if not isinstance(result, dict):
            continue
        kind, raw = result.get("type"), result.get("value")
        if _is_pick(result, names) and value is None:
            value = answer_choice((raw or {}).get("selected") if isinstance(raw, dict) else raw)
            if value is None and isinstance(raw, dict) and "choices" in raw:
                value = answer_choice((raw.get("choices") or [None])[0], *sides)
        elif kind == "choices" and _no_winner(raw):
            value = _no_winner(raw)
            break  # a tie or both-bad choice stands over a pick made before it
        elif kind == "textarea" and reason is None:
            reason = first_text(raw)
    return {"value": value, "reason": reason}


def label_studio_labels(
    row: dict[str, Any], names: PairNames
) -> tuple[Item, list[dict[str, Any]], int, dict[str, str]]:
    """(pair, [{"value", "user", "reason", "at", "seconds"}], cancelled annotations, names
    read as cai's) of one exported task."""
    if not isinstance(row.get("data"), dict):
        return _json_min_labels(row, names)
    data = row["data"]
    annotations = [a for a in row.get("annotations") or [] if isinstance(a, dict)]
    first_results = next((a.get("result") for a in annotations if a.get("result")), None) or []
    objects = _objects(first_results, names)
    item, read_as = pair_item(data, names, objects)
    sides = find_sides(data, names, objects)
    labels, cancelled = [], 0
    for annotation in annotations:
        if annotation.get("was_cancelled"):
            cancelled += 1
            continue
        label = _annotation_label(annotation.get("result") or [], names, sides)
        labels.append(
            {
                **label,
                "user": rater(annotation.get("completed_by")),
                "at": annotation.get("created_at"),
                "seconds": annotation.get("lead_time"),
            }
        )
    return item, labels, cancelled, read_as


def _selected(value: Any) -> Any:
    """The pick of a Pairwise value: JSON-MIN writes it as `[{"selected": "left"}]`."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return value.get("selected") if isinstance(value, dict) else value


def _json_min_pick(row: dict[str, Any], names: PairNames) -> str | None:
    """The column holding the pick: the named one, cai's, else the one whose value is a
    Pairwise pick."""
    if names.question or "preference" in row:
        return names.question or "preference"
    return next((k for k, v in row.items() if _is_pairwise(v)), None)


def _is_pairwise(value: Any) -> bool:
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    return isinstance(value, dict) and "selected" in value


def _json_min_labels(
    row: dict[str, Any], names: PairNames
) -> tuple[Item, list[dict[str, Any]], int, dict[str, str]]:
    """JSON-MIN: the task's data and one annotation's values side by side in one row (its
    cancelled annotations and tasks with none are not in it)."""
    question = _json_min_pick(row, names)
    pick = row.get(question) if question else None
    skip = {question, "no_winner", "reason", "annotator", "annotation_id", "created_at",
            "updated_at", "lead_time", "agreement"}  # fmt: skip
    data = {k: v for k, v in row.items() if k not in skip}
    item, read_as = pair_item(data, names)
    sides = find_sides(data, names)
    value = _no_winner(row.get("no_winner")) or answer_choice(_selected(pick), *sides)
    labels = []
    if value is not None or row.get("annotator") is not None:
        labels.append(
            {
                "value": value,
                "user": rater(row.get("annotator")),
                "reason": first_text(row.get("reason")),
                "at": row.get("created_at"),
                "seconds": row.get("lead_time"),
            }
        )
    return item, labels, 0, read_as
