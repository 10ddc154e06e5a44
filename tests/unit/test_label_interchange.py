"""Argilla dataset files and Label Studio tasks: written in their formats, and completed
exports read back as the same human-label rows `cai label export` writes."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.label.interchange import import_labels, to_argilla, to_label_studio
from cai.label.items import load_items
from cai.tables import read_rows

run = CliRunner().invoke


@pytest.fixture
def items(tmp_path):
    rows = [
        {
            "prompt": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": f"Question {i}?"},
            ],
            "chosen": f"good {i}",
            "rejected": f"bad {i}",
            "principle": "honesty" if i == 0 else None,
        }
        for i in range(3)
    ]
    path = tmp_path / "items.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_argilla_dataset_directory_and_labels_back(tmp_path, items):
    out = tmp_path / "argilla"
    result = run(app, ["label", "export-items", str(items), "--format", "argilla", "-o", str(out)])
    assert result.exit_code == 0, result.output
    settings = json.loads((out / ".argilla" / "settings.json").read_text())
    assert [q["name"] for q in settings["questions"]] == ["preference", "reason"]
    assert settings["questions"][0]["settings"]["type"] == "label_selection"
    assert [o["value"] for o in settings["questions"][0]["settings"]["options"]] == [
        "a", "b", "tie", "both_bad",
    ]  # fmt: skip
    assert [f["name"] for f in settings["fields"]] == ["prompt", "response_a", "response_b"]
    assert json.loads((out / ".argilla" / "dataset.json").read_text())["name"] == "argilla"
    records = json.loads((out / "records.json").read_text())
    assert len(records) == 3 and records[0]["responses"] == {}
    assert "System: Be brief." in records[0]["fields"]["prompt"]
    assert records[0]["metadata"]["principle"] == "honesty"

    # what Argilla's to_disk writes after two people answered (nested) ...
    records[0]["responses"] = {
        "preference": [
            {"value": "a", "user_id": "u-1", "status": "submitted"},
            {"value": "tie", "user_id": "u-2", "status": "submitted"},
            {"value": "b", "user_id": "u-3", "status": "draft"},
        ],
        "reason": [{"value": "shorter", "user_id": "u-1"}],
    }
    records[1]["responses"] = {"preference": [{"value": "both_bad", "user_id": "u-1"}]}
    (out / "records.json").write_text(json.dumps(records))
    rows, report = import_labels(out)
    assert report.format == "argilla" and len(rows) == 3
    assert report.flag_counts() == {"not_submitted": 1, "unlabelled": 1}
    first = rows[0]
    assert first["rater_id"] == "u-1" and first["reason"] == "shorter" and first["label"] == "a"
    assert first["chosen"][0]["content"] == records[0]["fields"]["response_a"]
    assert first["prompt"][0] == {"role": "system", "content": "Be brief."}
    assert [r["choice"] for r in rows] == ["a", "tie", "both_bad"]

    # ... and flattened (records.to_list(flatten=True), to_hub), as JSON Lines
    flat = []
    for record in records:
        row = {"id": record["id"], **record["fields"], **record["metadata"]}
        answers = record["responses"].get("preference", [])
        row["preference.responses"] = [a["value"] for a in answers]
        row["preference.responses.users"] = [a["user_id"] for a in answers]
        row["preference.responses.status"] = [a.get("status", "submitted") for a in answers]
        flat.append(row)
    (tmp_path / "flat.jsonl").write_text("".join(json.dumps(r) + "\n" for r in flat))
    flat_rows, _ = import_labels(tmp_path / "flat.jsonl")
    assert [(r["item_id"], r["choice"]) for r in flat_rows] == [
        (r["item_id"], r["choice"]) for r in rows
    ]

    records[2]["fields"]["response_a"] = "edited in Argilla"
    records[2]["responses"] = {"preference": [{"value": "a", "user_id": "u-1"}]}
    (out / "records.json").write_text(json.dumps(records))
    _, report = import_labels(out)
    assert [e.kind for e in report.errors] == ["malformed"] and "edited" in report.errors[0].detail


def test_label_studio_tasks_config_and_export_back(tmp_path, items):
    tasks_path = tmp_path / "tasks.json"
    result = run(
        app,
        ["label", "export-items", str(items), "--format", "label-studio", "-o", str(tasks_path)],
    )
    assert result.exit_code == 0, result.output
    config = (tmp_path / "tasks.label_config.xml").read_text()
    assert '<Pairwise name="preference" toName="response_a,response_b"/>' in config
    assert '<Choices name="no_winner"' in config and '<Text name="principle"' in config
    tasks = json.loads(tasks_path.read_text())
    assert set(tasks[0]["data"]) >= {"item_id", "prompt", "response_a", "response_b"}

    def annotation(user, *results, cancelled=False):
        return {
            "id": 1,
            "completed_by": user,
            "was_cancelled": cancelled,
            "created_at": "2026-01-02T03:04:05.000Z",
            "lead_time": 12.5,
            "result": list(results),
        }

    left = {"from_name": "preference", "to_name": "response_a", "type": "pairwise",
            "value": {"selected": "left"}}  # fmt: skip
    right = {**left, "value": {"selected": "right"}}
    tie = {"from_name": "no_winner", "to_name": "prompt", "type": "choices",
           "value": {"choices": ["Tie"]}}  # fmt: skip
    reason = {"from_name": "reason", "to_name": "prompt", "type": "textarea",
              "value": {"text": ["more honest"]}}  # fmt: skip
    exported = [
        {"id": 1, "data": tasks[0]["data"],
         "annotations": [annotation({"id": 7, "email": "ann@x.org"}, left, reason),
                         annotation(8, right, tie)]},
        {"id": 2, "data": tasks[1]["data"], "annotations": [annotation(7, right, cancelled=True)]},
        {"id": 3, "data": tasks[2]["data"], "annotations": []},
    ]  # fmt: skip
    export = tmp_path / "project-1.json"
    export.write_text(json.dumps(exported))
    out = tmp_path / "human.jsonl"
    result = run(app, ["label", "import-labels", str(export), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    assert [(r["rater_id"], r["choice"]) for r in rows] == [("ann@x.org", "a"), ("8", "tie")]
    assert rows[0]["reason"] == "more honest" and rows[0]["seconds"] == 12.5
    assert rows[0]["labelled_at"] == "2026-01-02T03:04:05.000Z"
    assert "2 imported (1 ties), 0 malformed, 2 flagged" in result.output
    assert "not_submitted" in result.output and "unlabelled" in result.output

    agree = run(app, ["route", "import", str(out), "-o", str(tmp_path / "back.jsonl")])
    assert agree.exit_code == 0 and "2 imported" in agree.output


def test_items_round_trip_unchanged(tmp_path, items):
    pairs, _ = load_items(items)
    to_argilla(pairs, tmp_path / "a")
    records = json.loads((tmp_path / "a" / "records.json").read_text())
    for record in records:
        record["responses"] = {"preference": [{"value": "b", "user_id": "u"}]}
    (tmp_path / "a" / "records.json").write_text(json.dumps(records))
    rows, _ = import_labels(tmp_path / "a")
    assert [r["item_id"] for r in rows] == [p.item_id for p in pairs]
    tasks, _ = to_label_studio(pairs, tmp_path / "t.json")
    data = json.loads(tasks.read_text())
    assert [t["data"]["item_id"] for t in data] == [p.item_id for p in pairs]
    with pytest.raises(Exception, match="empty directory"):
        to_argilla(pairs, tmp_path / "a")
    unknown = tmp_path / "unknown.json"
    unknown.write_text(json.dumps([{"something": 1}]))
    result = run(app, ["label", "import-labels", str(unknown), "-o", str(tmp_path / "h.jsonl")])
    assert result.exit_code == 2 and "--format" in result.output
