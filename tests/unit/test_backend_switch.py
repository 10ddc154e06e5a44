"""A flag that switches a backend's kind drops the file's settings of the old kind, and says so.

`cai run examples/quickstart.yaml --backend openai --base-url URL` is how a new user points the
quickstart at a server; its vllm settings (dtype, max_model_len, enforce_eager) mean nothing
to a server and must not stop it. Settings the user gives on the command line stay strict.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from cai.backends import OpenAISpec, ScriptedSpec, TransformersSpec, VLLMSpec
from cai.cli.app import app
from cai.config import ConfigError, load_config
from cai.evaluate import WinRateConfig
from cai.pipeline import load_pipeline_config
from cai.train.preference import OnlineTrainConfig

QUICKSTART = Path(__file__).resolve().parents[2] / "examples" / "quickstart.yaml"
URL = "http://127.0.0.1:1/v1"
VLLM_ONLY = "dtype, max_model_len, enforce_eager"


def test_backend_openai_over_the_quickstart_loads_and_says_what_it_dropped(capsys):
    config = load_pipeline_config(
        QUICKSTART, [], {"policy.kind": "openai", "policy.base_urls": [URL]}
    )
    assert isinstance(config.policy, OpenAISpec)
    assert config.policy.base_urls == [URL]
    assert config.policy.model == "smollm2-135m-instruct"  # a setting both kinds have stays
    lines = capsys.readouterr().err.splitlines()
    assert lines == [
        f"policy: kind openai from the command line drops {VLLM_ONLY} from the file "
        "(settings of kind vllm, not of kind openai)"
    ]


def test_backend_scripted_over_the_quickstart_loads(capsys):
    config = load_pipeline_config(QUICKSTART, [], {"policy.kind": "scripted"})
    assert isinstance(config.policy, ScriptedSpec)
    assert f"drops {VLLM_ONLY}" in capsys.readouterr().err


def test_a_kind_that_shares_settings_keeps_them():
    config = load_pipeline_config(QUICKSTART, [], {"policy.kind": "transformers"})
    assert isinstance(config.policy, TransformersSpec)
    assert config.policy.dtype == "float32"  # the file's dtype is a transformers setting too


def test_set_kind_switches_like_the_flag(capsys):
    config = load_pipeline_config(QUICKSTART, ["policy.kind=openai", f"policy.base_urls={URL}"])
    assert isinstance(config.policy, OpenAISpec) and config.policy.base_urls == [URL]
    assert "drops dtype" in capsys.readouterr().err


def test_a_setting_given_for_the_new_kind_stays_strict():
    with pytest.raises(ConfigError, match="dtype is not a setting of kind openai"):
        load_pipeline_config(QUICKSTART, ["policy.dtype=float32"], {"policy.kind": "openai"})


def test_the_same_kind_drops_nothing_and_a_wrong_file_stays_wrong(tmp_path, capsys):
    config = load_pipeline_config(QUICKSTART, [], {"policy.kind": "vllm"})
    assert isinstance(config.policy, VLLMSpec) and config.policy.max_model_len == 2048
    assert capsys.readouterr().err == ""
    path = tmp_path / "p.yaml"
    path.write_text("policy:\n  kind: openai\n  dtype: float32\n")
    with pytest.raises(ConfigError, match="dtype is not a setting of kind openai"):
        load_pipeline_config(path, [], {"policy.kind": "openai"})


def test_every_backend_a_flag_names_switches(tmp_path, capsys):
    """eval's --backend sets the kind of its three backends; a trainer's --judge-backend the
    judge's."""
    vllm = "{kind: vllm, model: m, dtype: float32, max_model_len: 512}"
    path = tmp_path / "e.yaml"
    path.write_text(
        f"prompts: p.jsonl\noutput_dir: out\npolicy: {vllm}\nbaseline: {vllm}\njudge: {vllm}\n"
    )
    options = {f"{role}.kind": "scripted" for role in ("policy", "baseline", "judge")}
    config = load_config(WinRateConfig, path, options)
    assert {type(s) for s in (config.policy, config.baseline, config.judge)} == {ScriptedSpec}
    assert len(capsys.readouterr().err.splitlines()) == 3

    path = tmp_path / "t.yaml"
    path.write_text(f"model: m\nprompts: p.jsonl\noutput_dir: out\njudge:\n  backend: {vllm}\n")
    options = {"judge.backend.kind": "openai", "judge.backend.base_urls": [URL]}
    config = load_config(OnlineTrainConfig, path, options)
    assert isinstance(config.judge.backend, OpenAISpec)
    assert "judge.backend: kind openai" in capsys.readouterr().err


def test_cai_run_quickstart_with_backend_openai_reaches_the_run(tmp_path, monkeypatch):
    """Through the command line up to the run itself (no server is there to answer)."""
    seen = []
    monkeypatch.setattr("cai.cli.run.run_and_report", lambda config: seen.append(config))
    args = ["run", str(QUICKSTART), "--backend", "openai", "--base-url", URL]
    result = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert isinstance(seen[0].policy, OpenAISpec) and seen[0].policy.base_urls == [URL]
    assert f"policy: kind openai from the command line drops {VLLM_ONLY}" in result.output


def test_cai_run_quickstart_with_backend_scripted_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = ["run", str(QUICKSTART), "--backend", "scripted", "--limit", "2", "--out", "run"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert (tmp_path / "run" / "config.resolved.yaml").is_file()
