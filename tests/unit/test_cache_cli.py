"""`cai cache stats|clear` and `cai models list` through the real CLI app."""

from __future__ import annotations

from typer.testing import CliRunner

from cai.backends.base import GenerationParams
from cai.backends.scripted import ScriptedBackend
from cai.cache import CachedBackend, CallCache
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
    result = runner.invoke(app, ["cache", "stats", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 1 and "No cache at" in result.output


def test_models_list_uses_cai_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path))
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0
    assert "smollm2-135m-instruct" in result.output and "not pulled" in result.output
