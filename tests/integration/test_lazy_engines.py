"""On real vLLM: a fully resumed run starts no engine, and roles naming one model share one."""

from __future__ import annotations

import json

import pytest
import yaml

from cai.backends import vllm_offline
from cai.backends.shared import open_entries

pytestmark = pytest.mark.vllm

PROMPTS = ["How do I brew green tea?", "Why is the sea salty?", "Tips for an interview?"]


def _prompts(tmp_path):
    path = tmp_path / "prompts.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    return path


def _spec(model_dir) -> dict:
    return {"kind": "vllm", "model": str(model_dir), "max_model_len": 512, "enforce_eager": True}


def test_a_fully_resumed_run_starts_no_engine(vllm_backend, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app
    from cai.pipeline import load_pipeline_config, run_pipeline

    _prompts(tmp_path)
    config_path = tmp_path / "pipeline.yaml"
    config_path.write_text(
        yaml.safe_dump(
            {
                "output_dir": str(tmp_path / "out"),
                "prompts": {"path": "prompts.jsonl"},
                "policy": _spec(tiny_model_dir),
                "sample": {"n": 2, "max_tokens": 8, "seed": 3},
                "judge": {"principles_per_pair": 2},
                "chunk_size": 2,
            }
        )
    )
    # the first run labels everything on the session's engine (same model identity)
    run_pipeline(load_pipeline_config(config_path), policy_backend=vllm_backend)
    started = vllm_offline.ENGINES_STARTED

    result = CliRunner().invoke(app, ["run", str(config_path)])

    assert result.exit_code == 0, result.output
    assert started == vllm_offline.ENGINES_STARTED  # no engine for zero requests
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["stages"]["sample"]["prompts_resumed"] == len(PROMPTS)
    assert summary["stages"]["judge"]["prompts_resumed"] == len(PROMPTS)
    assert summary["stages"]["judge"]["prompts_judged_now"] == 0
    assert open_entries() == 0


def test_win_rate_with_one_model_in_three_roles_starts_one_engine(tiny_model_dir, tmp_path):
    from cai.evaluate import WinRateConfig, run_win_rate

    config = WinRateConfig(
        prompts=str(_prompts(tmp_path)),
        policy={**_spec(tiny_model_dir), "seed": 0},
        baseline={**_spec(tiny_model_dir), "seed": 0},
        judge=_spec(tiny_model_dir),
        judge_config={"principles_per_pair": 1},
        max_tokens=6,
        bootstrap_resamples=50,
        output_dir=str(tmp_path / "report"),
    )
    started = vllm_offline.ENGINES_STARTED

    report = run_win_rate(config)

    assert started + 1 == vllm_offline.ENGINES_STARTED
    assert report.policy == report.baseline == report.judge
    assert report.summary.n_prompts == len(PROMPTS)
    assert open_entries() == 0  # the last role's close stopped the engine
