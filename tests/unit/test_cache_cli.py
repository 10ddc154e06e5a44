"""`cai cache stats|clear` and `cai models list` through the real CLI app."""

from __future__ import annotations

from typer.testing import CliRunner

from cai.backends.base import GenerationParams
from cai.backends.cached import CachedBackend
from cai.backends.scripted import ScriptedBackend
from cai.cache import CallCache
from cai.cli.app import app

runner = CliRunner()


def _fill(path):
    convs = [[{"role": "user", "content": str(i)}] for i in range(3)]
    CachedBackend(ScriptedBackend(model_id="m1"), CallCache(path)).generate_chat(
        convs, GenerationParams()
    )
    CachedBackend(ScriptedBackend(model_id="m2"), CallCache(path)).generate_text(
        ["x"], GenerationParams()
    )


def test_stats_then_clear_one_model_then_all(tmp_path):
    path = tmp_path / "calls.sqlite"
    _fill(path)
    result = runner.invoke(app, ["cache", "stats", str(path)])
    assert result.exit_code == 0, result.output
    assert "4 entries" in result.output and "m1: chat=3" in result.output
    result = runner.invoke(app, ["cache", "clear", str(path), "--model-id", "m1", "--yes"])
    assert result.exit_code == 0 and "Removed 3 entries" in result.output
    result = runner.invoke(app, ["cache", "clear", str(path)], input="n\n")
    assert result.exit_code == 1 and CallCache(path).summary().entries == 1
    result = runner.invoke(app, ["cache", "clear", str(path)], input="y\n")
    assert result.exit_code == 0 and CallCache(path).summary().entries == 0


def test_missing_cache_file_is_reported(tmp_path):
    missing = tmp_path / "none.sqlite"
    result = runner.invoke(app, ["cache", "stats", str(missing)])
    assert result.exit_code == 2 and "no call cache here" in result.stderr
    assert str(missing) in result.stderr and "Traceback" not in result.output


def test_stats_and_clear_on_a_corrupt_file_move_it_aside(tmp_path):
    path = tmp_path / "calls.sqlite"
    garbage = b"this is not an SQLite file " * 300
    path.write_bytes(garbage)
    result = runner.invoke(app, ["cache", "stats", str(path)])
    assert result.exit_code == 0, result.output
    assert "0 entries" in result.stdout
    [moved] = tmp_path.glob("calls.sqlite.corrupt-*")
    assert moved.read_bytes() == garbage
    assert str(path) in result.stderr and str(moved) in result.stderr
    assert "cai cache clear" in result.stderr

    path.write_bytes(garbage)
    result = runner.invoke(app, ["cache", "clear", str(path), "--yes"])
    assert result.exit_code == 0 and "Removed 0 entries" in result.stdout
    assert len(list(tmp_path.glob("calls.sqlite.corrupt-*"))) == 2


def test_a_directory_given_as_cache_is_one_line_error(tmp_path):
    result = runner.invoke(app, ["cache", "stats", str(tmp_path)])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "cannot open the call cache" in result.stderr
    assert "Traceback" not in result.output


def test_models_list_uses_cai_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output and "not pulled" in result.output


def test_models_pull_of_an_unknown_name_is_a_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "pull", "gpt-17"])
    assert result.exit_code == 2
    assert result.stderr.startswith("error: ") and "Known: smollm2-135m-instruct" in result.stderr
    assert "Traceback" not in result.output
