"""`cai eval judge` from the command line: flags become a grid, the bundled sample runs on the
scripted backend, a flag that needs another says so in one line."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from cai.cli.app import app

SAMPLE = str(Path(__file__).parents[2] / "cai/judge_eval/samples/rewardbench_sample.jsonl")


def test_flags_run_a_two_cell_grid_on_the_bundled_sample(tmp_path):
    out = tmp_path / "out"
    args = ["eval", "judge", "--benchmark", SAMPLE, "--judge", "fake", "--backend", "scripted"]
    args += ["--constitution", "default", "--constitution", "helpful-only", "--limit", "9"]
    args += ["--principles", "1", "--out", str(out), "--set", "bootstrap.n_resamples=50"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "fake__default on rewardbench_sample: 50.0" in result.output
    report = json.loads((out / "report.json").read_text())
    assert [c["cell"] for c in report["cells"]] == ["fake__default", "fake__helpful-only"]
    bench = report["cells"][0]["benchmarks"][0]
    assert (bench["rows_read"], bench["rows_sampled_out"], bench["overall"]["items"]) == (36, 27, 9)
    assert len({s["subset"] for s in bench["subsets"]}) == 9  # one row of every subset


def test_backend_flag_needs_a_judge_flag(tmp_path):
    grid = tmp_path / "grid.yaml"
    grid.write_text(f"benchmarks: [{{source: {SAMPLE}}}]\njudges: [{{backend: {{model: m}}}}]\n")
    result = CliRunner().invoke(app, ["eval", "judge", "-c", str(grid), "--backend", "openai"])
    assert result.exit_code == 2
    assert "--backend and --base-url need --judge" in result.output


def test_out_that_would_replace_an_input_is_refused(tmp_path):
    source = tmp_path / "report.json"  # a benchmark file named like a report file
    source.write_text(Path(SAMPLE).read_text())
    args = ["eval", "judge", "--benchmark", str(source), "--judge", "fake", "--backend", "scripted"]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path)])
    assert result.exit_code == 2 and "report.json" in result.output
    assert source.read_text() == Path(SAMPLE).read_text()


def test_the_example_grid_loads_with_its_paths_beside_it():
    from cai.config import load_config
    from cai.judge_eval.grid import JudgeEvalConfig, resolve_paths

    path = Path(__file__).parents[2] / "examples" / "judge_grid.yaml"
    grid = resolve_paths(load_config(JudgeEvalConfig, path), path)
    assert Path(grid.benchmarks[0].source).resolve() == Path(SAMPLE).resolve()
    assert [c.name for c in grid.cells()] == ["smollm2__default", "smollm2__helpful-only"]
