"""Pipeline config (YAML + overrides) and a full scripted run through every stage."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.config import ConfigError
from cai.pipeline import (
    format_summary,
    load_pipeline_config,
    run_pipeline,
)
from cai.preference_data import load_preferences


def content_score(request: ChoiceRequest) -> list[float]:
    """Deterministic, content-dependent scores (stand-in numbers; the arithmetic is tested elsewhere)."""
    text = "".join(m["content"] for m in request.messages or []) + request.assistant_prefix
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[0] / 64, digest[1] / 64]


def write_prompts(path, count=6):
    with path.open("w") as handle:
        for i in range(count):
            handle.write(json.dumps({"prompt": f"Question number {i}?"}) + "\n")
    return path


def write_config(tmp_path, **extra):
    write_prompts(tmp_path / "prompts.jsonl")
    data = {
        "name": "unit",
        "output_dir": str(tmp_path / "out"),
        "prompts": {"path": "prompts.jsonl"},
        "constitution": "default",
        "policy": {"kind": "scripted", "model": "unit"},
        "sample": {"n": 2, "max_tokens": 16},
        "judge": {"principles_per_pair": 2},
        "chunk_size": 4,
        **extra,
    }
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_overrides_win_over_yaml_and_paths_resolve_beside_the_file(tmp_path, monkeypatch):
    path = write_config(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    config = load_pipeline_config(
        path, ["sample.n=4", "judge.chain_of_thought=true", "judge.cot_band=[0.3, 0.7]"]
    )
    assert config.sample.n == 4 and config.sample.max_tokens == 16
    assert config.judge.chain_of_thought and config.judge.cot_band == (0.3, 0.7)
    assert config.prompts.path == str(tmp_path / "prompts.jsonl")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["sample.n=0"], "sample.n"),
        (["judge.bogus=1"], "judge.bogus"),
        (["stages=[sample, revise_later]"], "unknown stage"),
        (["no_equals_sign"], "key.path=value"),
        (["prompts=null"], "needs prompts"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_pipeline_config(write_config(tmp_path), overrides)


def test_full_scripted_run_writes_dataset_card_summary_and_resolved_config(tmp_path):
    config = load_pipeline_config(write_config(tmp_path))
    backend = ScriptedBackend(score=content_score, model_id="scripted-unit")
    result = run_pipeline(config, policy_backend=backend)
    out = tmp_path / "out"
    dataset = load_preferences(result.dataset)
    stats = result.summary["stages"]["preferences"]
    assert stats["prompts"] == 6
    assert stats["rows_written"] + sum(stats["filtered"].values()) == 6
    assert len(dataset) == stats["rows_written"] > 0
    assert all(p >= 0.5 for p in dataset["prob_chosen"])
    assert set(dataset["judge_model"]) == {"scripted-unit"}
    assert all(n == 4 for n in dataset["n_judgments"])  # 2 principles x 2 orders
    resolved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert resolved["sample"]["n"] == 2 and resolved["judge"]["principles_per_pair"] == 2
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["sample"]["responses"] == 12
    assert "constitution_hash" in summary["provenance"]
    assert (out / "preferences" / "README.md").exists()
    text = format_summary(result)
    assert "pairs written" in text and str(out / "preferences") in text

    # A rerun resumes everything: no new model calls, identical dataset.
    calls_before = dict(backend.calls)
    again = run_pipeline(config, policy_backend=backend)
    assert backend.calls == calls_before
    assert again.summary["stages"]["sample"]["prompts_resumed"] == 6
    assert load_preferences(again.dataset).to_list() == dataset.to_list()


def test_changed_settings_refuse_to_mix_with_old_results(tmp_path):
    from cai.jobs import JobConfigMismatchError

    path = write_config(tmp_path)
    run_pipeline(load_pipeline_config(path), policy_backend=ScriptedBackend(score=content_score))
    with pytest.raises(JobConfigMismatchError, match="changed: config"):
        run_pipeline(
            load_pipeline_config(path, ["sample.n=3"]),
            policy_backend=ScriptedBackend(score=content_score),
        )
    result = run_pipeline(
        load_pipeline_config(path, ["sample.n=3", "overwrite=true"]),
        policy_backend=ScriptedBackend(score=content_score),
    )
    assert result.summary["stages"]["sample"]["responses"] == 18
    # n = 3 -> all pairs, Bradley-Terry, best-vs-worst rows.
    rows = load_preferences(result.dataset)
    assert set(rows["method"]) <= {"best_vs_worst"} and len(rows) > 0
    assert all(m is not None and m > 0 for m in rows["score_margin"])


def test_judge_only_run_reads_an_existing_samples_directory(tmp_path):
    path = write_config(tmp_path)
    backend = ScriptedBackend(score=content_score)
    run_pipeline(load_pipeline_config(path, ["stages=[sample]"]), policy_backend=backend)
    assert not (tmp_path / "out" / "judgments").exists()
    result = run_pipeline(
        load_pipeline_config(
            path,
            [
                "stages=[judge, preferences]",
                f"samples={tmp_path / 'out' / 'samples'}",
                f"output_dir={tmp_path / 'judged'}",
                "preferences.format=jsonl",
            ],
        ),
        judge_backend=backend,
    )
    assert result.dataset.endswith("preferences.jsonl")
    assert result.summary["stages"]["judge"]["prompts"] == 6


def test_summary_reports_calls_served_from_the_call_cache(tmp_path):
    from cai.backends.cached import CachedBackend
    from cai.cache import CallCache

    path = write_config(tmp_path)
    inner = ScriptedBackend(score=content_score, model_id="scripted-cache")
    backend = CachedBackend(inner, CallCache(tmp_path / "calls.sqlite"))
    first = run_pipeline(load_pipeline_config(path), policy_backend=backend)
    calls_after_first = dict(inner.calls)
    assert first.summary["model_calls"]["policy"]["hits"] == 0
    again = run_pipeline(load_pipeline_config(path, ["overwrite=true"]), policy_backend=backend)
    assert inner.calls == calls_after_first  # everything came from the cache
    stats = again.summary["model_calls"]["policy"]
    assert stats["hits"] > 0
    assert "served from cache" in format_summary(again)
    assert load_preferences(again.dataset).to_list() == load_preferences(first.dataset).to_list()


def test_cli_sample_then_judge_on_the_scripted_backend(tmp_path):
    """The two commands wire their flags into the same pipeline (scripted scores are uniform,
    so every pair is an exact tie: counted and written to filtered.jsonl, no rows)."""
    from typer.testing import CliRunner

    from cai.cli.app import app

    prompts = write_prompts(tmp_path / "prompts.jsonl", count=3)
    runner = CliRunner()
    out = tmp_path / "run"
    sampled = runner.invoke(
        app, ["sample", str(prompts), "--out", str(out), "--backend", "scripted", "--n", "2"]
    )
    assert sampled.exit_code == 0, sampled.output
    assert f"samples: {out / 'samples'}" in sampled.output
    judged = runner.invoke(
        app,
        ["judge", str(out / "samples"), "--out", str(out), "--backend", "scripted",
         "--format", "jsonl", "--principles", "1"],
    )  # fmt: skip
    assert judged.exit_code == 0, judged.output
    assert "pairs written: 0" in judged.output and "'tie': 3" in judged.output
    assert len((out / "filtered.jsonl").read_text().splitlines()) == 3
    missing = runner.invoke(app, ["judge", str(tmp_path / "nope"), "--out", str(out)])
    assert missing.exit_code == 2 and "no samples there" in missing.output
    # Bad input fails before any engine starts (the default backend here is vLLM).
    no_prompts = runner.invoke(app, ["sample", str(tmp_path / "nope.jsonl"), "--out", str(out)])
    assert no_prompts.exit_code == 2 and "no such file" in no_prompts.output


def test_revise_stage_runs_from_the_pipeline_file(tmp_path):
    """SL-CAI as a pipeline stage: prompts -> critique -> revision -> SFT data beside the run."""
    from cai.stages.revise import iter_chains

    path = write_config(tmp_path, stages=["revise"], revise={"rounds": 2})
    backend = ScriptedBackend(score=content_score, model_id="scripted-revise")
    result = run_pipeline(load_pipeline_config(path), policy_backend=backend)
    stage = result.summary["stages"]["revise"]
    assert stage["prompts"] == 6 and stage["rounds"] == 2
    chains = list(iter_chains(tmp_path / "out" / "revise"))
    assert len(chains) == 6
    assert "revised: 6 prompts" in format_summary(result)
    # initial answer + 2 x (critique, revision) per prompt
    assert backend.calls["generate"] == 6 * 5
