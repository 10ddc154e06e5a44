"""`cai constitution validate / show / new / list` through the real CLI app."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from cai.cli.app import app
from cai.constitution import load_constitution

runner = CliRunner()


def test_validate_ok_and_failures_with_every_error(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ndescripton: d\nprinciples:\n  - id: a\n    weight: heavy\n")
    result = runner.invoke(app, ["constitution", "validate", "default", str(bad)])
    assert result.exit_code == 2
    assert "ok   default: default v1.0, 16 principles" in result.stdout
    assert "FAIL" in result.stderr and "3 problem(s)" in result.stderr
    assert ":2:1: descripton: unknown field `descripton`" in result.stderr
    assert ":4:5: principles[0]: principle `a` is missing required fields" in result.stderr
    assert ":5:5: principles[0].weight: wrong type" in result.stderr
    assert "1 of 2 file(s) failed" in result.stderr

    good = runner.invoke(app, ["constitution", "validate", "helpful-only", "medical-safety"])
    assert good.exit_code == 0, good.output


def test_show_prints_resolved_yaml_with_hash():
    expected = load_constitution("medical-safety")
    result = runner.invoke(app, ["constitution", "show", "medical-safety"])
    assert result.exit_code == 0, result.output
    assert f"# content hash: {expected.content_hash}" in result.stdout
    assert "# built on: default (bundled)" in result.stdout
    assert "extends:" not in result.stdout  # resolved: self-contained
    as_json = runner.invoke(app, ["constitution", "show", "medical-safety", "--json"])
    payload = json.loads(as_json.stdout)
    assert payload["content_hash"] == expected.content_hash
    assert [p["id"] for p in payload["principles"]] == expected.principle_ids
    missing = runner.invoke(app, ["constitution", "show", "defualt"])
    assert missing.exit_code == 2 and "did you mean `default`?" in missing.stderr


def test_new_writes_a_commented_starter_that_validates(tmp_path):
    out = tmp_path / "mine.yaml"
    result = runner.invoke(app, ["constitution", "new", "mine", "--out", str(out)])
    assert result.exit_code == 0, result.output
    text = out.read_text()
    assert text.count("#") > 10  # commented for the reader
    constitution = load_constitution(out)
    assert constitution.name == "mine" and len(constitution.principles) == 1
    again = runner.invoke(app, ["constitution", "new", "mine", "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.stderr

    child = tmp_path / "child.yaml"
    extended = runner.invoke(
        app, ["constitution", "new", "child", "--out", str(child), "--extends", "default"]
    )
    assert extended.exit_code == 0, extended.output
    assert len(load_constitution(child).principles) == 17
    bad_name = runner.invoke(app, ["constitution", "new", "bad name", "--out", str(tmp_path / "b")])
    assert bad_name.exit_code == 2 and "invalid constitution name" in bad_name.stderr


def test_list_shows_bundled():
    result = runner.invoke(app, ["constitution", "list"])
    assert result.exit_code == 0
    lines = result.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [
        "default",
        "helpful-only",
        "medical-safety",
        "rl-paper",
    ]
    assert "16 principles" in lines[0]
