"""The executor seam without Ray: settings, the local executor, and how jobs use executors.

Ray itself is exercised in tests/integration/test_ray_executor.py (marker `ray`).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cai.backends import backend_spec
from cai.backends.scripted import ScriptedBackend
from cai.cli.app import app
from cai.config import ConfigError
from cai.constitution import load_constitution
from cai.executors import ExecutorConfig, LocalExecutor, make_executor
from cai.jobs import ChunkedJob, encode_rows, iter_job_results
from cai.judge.compare import JudgeConfig, PairwiseJudge
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.records import PromptRecord
from cai.stages.judge import JudgeRecipe, judge_samples
from cai.stages.sample import SampleConfig, SampleRecipe, iter_samples, sample_chunk, sample_prompts
from cai.templates import TemplateSet


def _prompts(count: int) -> list[PromptRecord]:
    return [
        PromptRecord(prompt_id=f"p{i}", prompt=[{"role": "user", "content": f"Question {i}?"}])
        for i in range(count)
    ]


def _chunk_bytes(work_dir: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((work_dir / "chunks").glob("*.jsonl"))}


# ---- settings -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"actors": 2}, "needs the ray executor"),
        ({"address": "head:6379"}, "joins a Ray cluster"),
        ({"kind": "ray", "num_gpus_per_actor": -1}, "num_gpus_per_actor"),
        ({"kind": "ray", "actors": 0}, "actors"),
        ({"kind": "dask"}, "kind"),
    ],
)
def test_bad_executor_settings_name_the_key(tmp_path, settings, message):
    path = tmp_path / "pipeline.yaml"
    path.write_text(yaml.safe_dump({"stages": ["judge"], "executor": settings}))
    with pytest.raises(ConfigError, match=message) as caught:
        load_pipeline_config(path)
    assert "executor" in str(caught.value)


def test_defaults_are_local_and_ray_settings_load():
    assert ExecutorConfig().kind == "local"
    assert isinstance(make_executor(None), LocalExecutor)
    config = ExecutorConfig(kind="ray", actors=4, address="auto", max_restarts=0)
    assert (config.max_in_flight_per_actor, config.num_gpus_per_actor) == (2, "auto")


@pytest.mark.parametrize("command", ["run", "sample", "judge", "revise"])
def test_cli_flags_reach_the_executor_setting(tmp_path, monkeypatch, command):
    seen = {}

    def fake_run(config, **_):
        seen["executor"] = config.executor
        raise SystemExit(0)

    monkeypatch.setattr("cai.pipeline.run_pipeline", fake_run)
    monkeypatch.setattr("cai.pipeline.run_revise", fake_run)
    args = {
        "run": ["run", str(tmp_path / "p.yaml")],
        "sample": ["sample", "prompts.jsonl", "--out", str(tmp_path / "o")],
        "judge": ["judge", "samples.jsonl", "--out", str(tmp_path / "o")],
        "revise": ["revise", "prompts.jsonl", "--out", str(tmp_path / "o")],
    }[command]
    (tmp_path / "p.yaml").write_text(yaml.safe_dump({"stages": ["judge"]}))
    result = CliRunner().invoke(app, [*args, "--executor", "ray", "--actors", "3"])
    assert result.exit_code == 0, result.output
    assert (seen["executor"].kind, seen["executor"].actors) == ("ray", 3)


def test_ray_missing_is_one_line_naming_the_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n')
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        ["sample", str(prompts), "--out", str(out), "--backend", "scripted", "--executor", "ray"],
    )
    assert result.exit_code == 2, result.output
    message = result.output.strip()
    assert "pip install 'cai[ray]'" in message and "\n" not in message
    assert not (out / "samples").exists()


# ---- the local executor --------------------------------------------------------------------------
def test_local_executor_writes_what_the_process_path_wrote(tmp_path):
    """The recipe path (what Ray actors run too) and a plain `process` function agree."""
    from cai.ledger import LedgerBackend, attach_chunk_tokens

    config = SampleConfig(n=2, max_tokens=8, seed=3)
    backend = ScriptedBackend(model_id="scripted:unit")
    prompts = _prompts(10)
    counted = LedgerBackend(backend, "sample")  # each chunk's first row carries its tokens
    with ChunkedJob(tmp_path / "plain", {"k": 1}, chunk_size=3) as job:
        job.run(
            prompts,
            lambda chunk: attach_chunk_tokens(
                [s.model_dump(mode="json") for s in sample_chunk(counted, chunk, config)],
                counted.take(),
            ),
        )
    recipe = SampleRecipe(backend=None, config=config)
    with (
        LocalExecutor().open(recipe, backend=backend) as session,
        ChunkedJob(tmp_path / "recipe", {"k": 1}, chunk_size=3) as job,
    ):
        stats = job.run(prompts, executor=session)
    assert _chunk_bytes(tmp_path / "recipe") == _chunk_bytes(tmp_path / "plain")
    report = stats.executor
    assert (report.kind, report.actors, report.items, report.chunks) == ("local", 1, 10, 4)
    assert report.per_actor[0].name == "local" and report.per_actor[0].items == 10


def test_backend_spec_or_backend_give_the_same_samples(tmp_path):
    config = SampleConfig(n=2, max_tokens=8)
    given = sample_prompts(
        ScriptedBackend(model_id="scripted:unit"), _prompts(5), tmp_path / "a", config, chunk_size=2
    )
    built = sample_prompts(
        backend_spec(kind="scripted", model="unit"),
        _prompts(5),
        tmp_path / "b",
        config,
        chunk_size=2,
    )
    assert _chunk_bytes(tmp_path / "a") == _chunk_bytes(tmp_path / "b")
    assert given.executor.items == built.executor.items == 5


def test_judge_recipe_equals_a_judge_object_and_counts_requests(tmp_path):
    sample_prompts(
        backend_spec(kind="scripted", model="unit"),
        _prompts(6),
        tmp_path / "samples",
        SampleConfig(n=2),
        chunk_size=4,
    )
    constitution, templates = load_constitution("default"), TemplateSet()
    config = JudgeConfig(principles_per_pair=2)
    judge = PairwiseJudge(
        ScriptedBackend(model_id="scripted:unit"), constitution, templates, config
    )
    direct = judge_samples(judge, iter_samples(tmp_path / "samples"), tmp_path / "j1", chunk_size=4)
    recipe = JudgeRecipe.from_parts(
        backend_spec(kind="scripted", model="unit"), constitution, templates, config
    )
    rebuilt = judge_samples(
        recipe, iter_samples(tmp_path / "samples"), tmp_path / "j2", chunk_size=4
    )
    assert _chunk_bytes(tmp_path / "j1") == _chunk_bytes(tmp_path / "j2")
    assert json.loads((tmp_path / "j1" / "job.json").read_text()) == json.loads(
        (tmp_path / "j2" / "job.json").read_text()
    )
    assert direct.executor.counters["requests_scored"] == judge.requests_scored == 6 * 2 * 2
    assert rebuilt.executor.counters == direct.executor.counters


# ---- ChunkedJob.run with an executor -------------------------------------------------------------
class Recording:
    """An executor session that records which chunk indexes it was asked to process."""

    def __init__(self, mangle=None):
        self.asked: list[int] = []
        self.mangle = mangle

    def map(self, chunks):
        out = []
        for index, chunk in chunks:
            self.asked.append(index)
            out.append((index, [{"id": item} for item in chunk]))
        if self.mangle:
            out = self.mangle(out)
        yield from out


def test_committed_chunks_are_skipped_before_dispatch(tmp_path):
    items = [f"item{i}" for i in range(10)]
    with ChunkedJob(tmp_path, {"k": 1}, chunk_size=3) as job:
        first = Recording()
        job.run(items, executor=first)
    assert first.asked == [0, 1, 2, 3]
    items[4] = "changed"  # chunk 1 holds items 3..5
    with ChunkedJob(tmp_path, {"k": 1}, chunk_size=3) as job:
        second = Recording()
        stats = job.run(items, executor=second)
    assert second.asked == [1]
    assert (stats.items_processed, stats.items_done_before) == (3, 7)
    assert [row["id"] for row in iter_job_results(tmp_path)] == items
    assert len(list((tmp_path / "chunks").glob("*.jsonl"))) == 4  # the stale chunk 1 is gone


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda out: [*out, out[0]], "twice"),
        (lambda out: out[:-1], "stopped early"),
    ],
)
def test_an_executor_that_loses_or_repeats_a_chunk_fails_the_job(tmp_path, mangle, message):
    with (
        ChunkedJob(tmp_path, {"k": 1}, chunk_size=2) as job,
        pytest.raises(RuntimeError, match=message),
    ):
        job.run(list(range(6)), executor=Recording(mangle))
    assert json.loads((tmp_path / "job.json").read_text())["complete"] is None


def test_rows_encoded_by_a_worker_commit_the_same_bytes(tmp_path):
    rows = [{"text": 'naïve «quotes» \u2028 and \\ and "', "n": [1, 2.5, None]}, {"k": {}}]

    class Encoding(Recording):
        def map(self, chunks):
            for index, _ in chunks:
                yield index, encode_rows(rows)

    with ChunkedJob(tmp_path / "dicts", {"k": 1}, chunk_size=2) as job:
        job.run([1, 2], lambda chunk: rows)
    with ChunkedJob(tmp_path / "text", {"k": 1}, chunk_size=2) as job:
        job.run([1, 2], executor=Encoding())
    assert _chunk_bytes(tmp_path / "text") == _chunk_bytes(tmp_path / "dicts")
    assert encode_rows(rows).count == 2


def test_run_needs_a_process_or_an_executor(tmp_path):
    with ChunkedJob(tmp_path, {"k": 1}) as job, pytest.raises(TypeError, match="exactly one"):
        job.run([1, 2])


# ---- reports -----------------------------------------------------------------------------------
def test_pipeline_summary_has_an_executor_block_per_stage(tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Q{i}?"}) + "\n" for i in range(5)))
    config = load_pipeline_config(
        None,
        options={
            "output_dir": str(tmp_path / "out"),
            "prompts.path": str(prompts),
            "policy.kind": "scripted",
            "chunk_size": 2,
            "preferences.format": "jsonl",
        },
    )
    result = run_pipeline(config)
    for stage in ("sample", "judge"):
        block = result.summary["stages"][stage]["executor"]
        assert block["kind"] == "local" and block["items"] == 5 and block["restarts"] == 0
    judge = result.summary["stages"]["judge"]
    assert judge["choice_requests_scored_now"] == judge["executor"]["counters"]["requests_scored"]


def test_backends_passed_in_code_cannot_travel_to_ray_actors(tmp_path, monkeypatch):
    monkeypatch.setattr("cai.executors.ray.import_ray", lambda: None)  # no Ray needed here
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text('{"prompt": "one"}\n')
    config = load_pipeline_config(
        None,
        options={
            "output_dir": str(tmp_path / "out"),
            "prompts.path": str(prompts),
            "stages": ["sample"],
            "executor.kind": "ray",
        },
    )
    with pytest.raises(ConfigError, match="cannot travel to Ray actors"):
        run_pipeline(config, policy_backend=ScriptedBackend())
