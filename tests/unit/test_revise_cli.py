"""`cai revise` parses its options into ReviseConfig and reports what happened."""

from __future__ import annotations

import yaml
from typer.testing import CliRunner

from cai.cli.app import app
from cai.sft_data import load_split


def _prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text('{"prompt": "one"}\n{"prompt": "two"}\n{"prompt": "three"}\n')
    return path


def test_cli_runs_the_stage_with_yaml_options_and_overrides(tmp_path):
    config = tmp_path / "revise.yaml"
    config.write_text(
        yaml.safe_dump({"constitution": "helpful-only", "rounds": 3, "guards": {"policy": "drop"}})
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "revise", str(_prompts(tmp_path)), "--out", str(out), "--config", str(config),
            "--backend", "scripted", "--rounds", "2", "--format", "jsonl", "--preferences",
            "--set", "revision.max_tokens=64", "--set", "max_examples=0",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "revised: 3 prompts (3 now, 0 resumed), 2 round(s)" in result.output
    assert "guards (drop)" in result.output
    saved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert saved["rounds"] == 2  # the option beat the YAML file
    assert saved["constitution"] == "helpful-only"
    assert saved["revision"]["max_tokens"] == 64
    assert saved["backend"]["kind"] == "scripted"
    rows = load_split(out / "sft")
    assert len(rows) == 3 and all(len(r["rounds"]) == 2 for r in rows)
    assert (out / "preferences" / "train.jsonl").is_file()


def test_cli_bad_input_is_a_clear_error(tmp_path):
    runner = CliRunner()
    missing = runner.invoke(
        app,
        [
            "revise",
            str(tmp_path / "nope.jsonl"),
            "--out",
            str(tmp_path / "o"),
            "--backend",
            "scripted",
        ],
    )
    assert missing.exit_code == 2 and "no such file" in missing.output

    unknown = runner.invoke(
        app,
        ["revise", str(_prompts(tmp_path)), "--out", str(tmp_path / "o"), "--set", "roundz=2"],
    )
    assert unknown.exit_code == 2 and "roundz: unknown setting" in unknown.output

    no_out = runner.invoke(app, ["revise", str(_prompts(tmp_path)), "--backend", "scripted"])
    assert no_out.exit_code == 2 and "out: required" in no_out.output
