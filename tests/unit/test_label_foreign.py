"""Label files made in the other tools themselves, under their own names: a Label Studio
project on Label Studio's Pairwise template, and an Argilla dataset whose fields and question
are not cai's (named with --fields / --question)."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.errors import CaiError
from cai.label.foreign import PairNames, answer_choice
from cai.label.interchange import import_labels
from cai.tables import read_rows

run = CliRunner().invoke


def _annotation(ann_id, user, selected=None, cancelled=False, to_name="pw"):
    """One annotation as Label Studio's JSON export writes it; the Pairwise tag's result
    names the tag itself in both from_name and to_name."""
    result = []
    if selected:
        result.append(
            {
                "value": {"selected": selected},
                "id": f"r{ann_id}",
                "from_name": "pw",
                "to_name": to_name,
                "type": "pairwise",
                "origin": "manual",
            }
        )
    return {
        "id": ann_id,
        "completed_by": user,
        "result": result,
        "was_cancelled": cancelled,
        "ground_truth": False,
        "created_at": "2026-03-01T10:00:00.000000Z",
        "updated_at": "2026-03-01T10:00:09.000000Z",
        "draft_created_at": None,
        "lead_time": 9.5,
        "prediction": {},
        "result_count": 0,
        "unique_id": f"u-{ann_id}",
        "import_id": None,
        "last_action": None,
        "task": ann_id,
        "project": 3,
        "updated_by": user,
        "parent_prediction": None,
        "parent_annotation": None,
        "last_created_by": None,
    }


def _task(task_id, data, annotations):
    return {
        "id": task_id,
        "annotations": annotations,
        "file_upload": "b2c1-pairs.json",
        "drafts": [],
        "predictions": [],
        "data": data,
        "meta": {},
        "created_at": "2026-03-01T09:00:00.000000Z",
        "updated_at": "2026-03-01T10:00:09.000000Z",
        "inner_id": task_id,
        "total_annotations": sum(not a["was_cancelled"] for a in annotations),
        "cancelled_annotations": sum(a["was_cancelled"] for a in annotations),
        "total_predictions": 0,
        "comment_count": 0,
        "unresolved_comment_count": 0,
        "last_comment_updated_at": None,
        "project": 3,
        "updated_by": 1,
        "comment_authors": [],
    }


def _pair(i):
    return {"prompt": f"Question {i}?", "text1": f"first answer {i}", "text2": f"second answer {i}"}


@pytest.fixture
def pairwise_export(tmp_path):
    """Six tasks of a project on `<Pairwise name="pw" toName="text1,text2"/>`."""
    reversed_keys = {"text2": "second answer 6", "prompt": "Question 6?", "text1": "first answer 6"}
    tasks = [
        _task(1, _pair(1), [_annotation(11, 1, "left"), _annotation(12, 2, "right")]),
        _task(2, _pair(2), [_annotation(21, 1, "right")]),
        _task(3, _pair(3), [_annotation(31, 1, cancelled=True)]),  # skipped task
        _task(
            4, _pair(4), [_annotation(41, 2, "right", cancelled=True), _annotation(42, 1, "left")]
        ),
        _task(5, _pair(5), []),  # not labelled yet
        # a to_name listing both objects names them, whatever order the data keys are in
        _task(6, reversed_keys, [_annotation(61, 1, "left", to_name="text1,text2")]),
    ]
    path = tmp_path / "project-3-at-2026-03-01.json"
    path.write_text(json.dumps(tasks))
    return path


def test_label_studio_pairwise_template_export(tmp_path, pairwise_export):
    out = tmp_path / "human.jsonl"
    result = run(app, ["label", "import-labels", str(pairwise_export), "-o", str(out)])
    assert result.exit_code == 0, result.output
    rows = read_rows(out)
    picks = [(r["prompt"][0]["content"], r["rater_id"], r["chosen"][0]["content"]) for r in rows]
    assert picks == [
        ("Question 1?", "1", "first answer 1"),
        ("Question 1?", "2", "second answer 1"),
        ("Question 2?", "1", "second answer 2"),
        ("Question 4?", "1", "first answer 4"),
        ("Question 6?", "1", "first answer 6"),
    ]
    assert [r["choice"] for r in rows] == ["a", "b", "b", "a", "a"]
    assert rows[0]["response_a"] == "first answer 1" and rows[0]["seconds"] == 9.5
    assert "6 rows read, 5 imported (0 ties), 0 malformed, 3 flagged" in result.output
    assert "'not_submitted': 2" in result.output and "'unlabelled': 1" in result.output
    assert "row 3: not_submitted: 1 cancelled (skipped) annotation(s) left out" in result.output
    assert "row 5: unlabelled" in result.output
    assert "text1 -> response_a, text2 -> response_b" in result.output
    assert "1 pair(s) labelled by more than one rater (1 disagree)" in result.output


def test_label_studio_names_from_flags_and_missing_prompt(tmp_path):
    data = {"text1": "one", "text2": "two", "source": "web"}
    path = tmp_path / "export.json"
    path.write_text(json.dumps([_task(1, data, [_annotation(1, 1, "right")])]))
    with pytest.raises(CaiError, match="no prompt text") as err:
        import_labels(path)
    assert "--fields" in str(err.value.fix)
    data["title"] = "Which is kinder?"
    path.write_text(json.dumps([_task(1, data, [_annotation(1, 1, "right")])]))
    names = PairNames.parse("prompt=title,a=text1,b=text2", "pw")
    rows, report = import_labels(path, names=names)
    assert [(r["choice"], r["chosen"][0]["content"]) for r in rows] == [("b", "two")]
    assert report.columns_mapped == {
        "title": "prompt", "text1": "response_a", "text2": "response_b",
    }  # fmt: skip

    # a project that asks with a Choices tag whose choices are the data keys
    chooser = _annotation(2, 1)
    chooser["result"] = [{"value": {"choices": ["text2"]}, "id": "c1", "from_name": "winner",
                          "to_name": "text1", "type": "choices", "origin": "manual"}]  # fmt: skip
    path.write_text(json.dumps([_task(1, data, [chooser])]))
    with pytest.raises(CaiError, match="3 candidate response texts"):  # source is text too
        import_labels(path, names=PairNames.parse("prompt=title", "winner"))
    rows, _ = import_labels(path, names=PairNames.parse("prompt=title,a=text1,b=text2", "winner"))
    assert [(r["choice"], r["chosen"][0]["content"]) for r in rows] == [("b", "two")]


def _foreign_argilla(tmp_path):
    """An Argilla 2.x `to_disk` directory of a dataset set up in Argilla itself."""
    answers = [
        ("answer_2", "submitted"), ("answer_1", "submitted"), ("tie", "submitted"),
        ("answer_1", "draft"),
    ]  # fmt: skip
    records = [
        {
            "id": "5b1c9d3e-0000-4000-8000-00000000000" + str(i),
            "fields": {
                "instruction": f"Explain {i}.",
                "answer_1": f"short {i}",
                "answer_2": f"long {i}",
            },
            "metadata": {"batch": 7},
            "suggestions": {},
            "responses": {
                "best": [{"value": value, "user_id": "9f2e-user", "status": status}],
                "why": [{"value": "clearer", "user_id": "9f2e-user", "status": status}],
            },
            "vectors": {},
            "_server_id": None,
        }
        for i, (value, status) in enumerate(answers)
    ]
    out = tmp_path / "argilla-foreign"
    (out / ".argilla").mkdir(parents=True)
    (out / "records.json").write_text(json.dumps(records))
    return out, records


def test_foreign_argilla_needs_names_and_imports_with_them(tmp_path):
    out, records = _foreign_argilla(tmp_path)
    target = tmp_path / "human.jsonl"
    result = run(app, ["label", "import-labels", str(out), "-o", str(target)])
    assert result.exit_code == 2, result.output
    assert "response_a" in result.output and "`preference`" in result.output
    assert "instruction, answer_1, answer_2" in result.output and "best" in result.output
    assert "--fields" in result.output and not target.exists()

    flags = ["--fields", "prompt=instruction,a=answer_1,b=answer_2", "--question", "best"]
    result = run(app, ["label", "import-labels", str(out), "-o", str(target), *flags])
    assert result.exit_code == 0, result.output
    rows = read_rows(target)
    assert [(r["choice"], r["chosen"][0]["content"]) for r in rows] == [
        ("b", "long 0"), ("a", "short 1"), ("tie", "short 2"),
    ]  # fmt: skip
    assert rows[0]["prompt"] == [{"role": "user", "content": "Explain 0."}]
    assert rows[0]["rater_id"] == "9f2e-user" and rows[0]["response_a"] == "short 0"
    assert "'not_submitted': 1" in result.output and "best -> preference" in result.output

    # the same dataset flattened (records.to_list(flatten=True)) and as Argilla 1.x wrote it
    flat, v1 = [], []
    for record in records:
        answers = record["responses"]["best"]
        flat.append(
            {
                "id": record["id"], "status": "completed", "_server_id": None,
                **record["fields"], **record["metadata"],
                "best.responses": [a["value"] for a in answers],
                "best.responses.users": [a["user_id"] for a in answers],
                "best.responses.status": [a["status"] for a in answers],
            }
        )  # fmt: skip
        v1.append(
            {
                **record["fields"],
                "best": answers,
                "best-suggestion": None,
                "best-suggestion-metadata": {"type": None, "score": None, "agent": None},
                "external_id": None,
                "metadata": json.dumps(record["metadata"]),
            }
        )
    names = PairNames.parse("prompt=instruction,a=answer_1,b=answer_2", "best")
    for layout, data in (("flat", flat), ("v1", v1)):
        path = tmp_path / f"{layout}.jsonl"
        path.write_text("".join(json.dumps(r) + "\n" for r in data))
        layout_rows, report = import_labels(path, "argilla", names)
        assert [r["choice"] for r in layout_rows] == ["b", "a", "tie"], layout
        assert report.flag_counts() == {"not_submitted": 1}, layout


def test_answers_and_bad_flags():
    assert answer_choice("B is better") == "b" and answer_choice("Left") == "a"
    assert answer_choice("Both bad") == "both_bad" and answer_choice("Tie") == "tie"
    assert answer_choice("answer_2", "answer_1", "answer_2") == "b"
    ranking = [{"value": "answer_2", "rank": 1}, {"value": "answer_1", "rank": 2}]
    assert answer_choice(ranking, "answer_1", "answer_2") == "b"
    assert answer_choice("maybe") is None
    with pytest.raises(CaiError, match="prompt=NAME"):
        PairNames.parse("question=x")


def test_label_studio_json_min_of_the_pairwise_template(tmp_path):
    """JSON-MIN: the task data, then each tag's value by name (a Pairwise pick as a list of
    one {"selected"}), one row per annotation that was not cancelled."""
    common = {"annotation_id": 1, "created_at": "2026-03-01T10:00:00Z",
              "updated_at": "2026-03-01T10:00:09Z", "lead_time": 4.0}  # fmt: skip
    rows = [
        {**_pair(1), "id": 1, "pw": [{"selected": "right"}], "annotator": "ann@x.org", **common},
        {**_pair(2), "id": 2, "pw": [{"selected": "left"}], "annotator": 2, **common},
    ]
    path = tmp_path / "project-3-min.json"
    path.write_text(json.dumps(rows))
    imported, report = import_labels(path)
    assert [(r["rater_id"], r["choice"], r["chosen"][0]["content"]) for r in imported] == [
        ("ann@x.org", "b", "second answer 1"), ("2", "a", "first answer 2"),
    ]  # fmt: skip
    assert report.format == "label-studio" and report.columns_mapped["text1"] == "response_a"
