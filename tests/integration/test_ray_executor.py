"""The Ray executor on a local Ray instance: same bytes as local, faults lose nothing.

One Ray instance (2 CPUs) serves the whole session. The scripted backend runs in every
actor, built from `backend_spec(kind="scripted")`; one test holds a real vLLM engine in an
actor on the tiny model.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from cai.backends import backend_spec
from cai.executors import ExecutorConfig, LocalExecutor
from cai.jobs import job_is_complete
from cai.pipeline import load_pipeline_config, run_pipeline, run_revise
from cai.records import PromptRecord
from cai.stages.revise import ReviseConfig
from cai.stages.sample import SampleConfig, sample_prompts

pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def ray_address():
    """A local Ray instance for the session (2 CPUs, no dashboard), shut down at the end."""
    ray = pytest.importorskip("ray")
    from cai.executors.ray import start_local_ray

    started = not ray.is_initialized()
    if started:
        start_local_ray(num_cpus=2)  # ray.init(num_cpus=2, include_dashboard=False, ...)
    yield ray.get_runtime_context().gcs_address
    if started:
        ray.shutdown()


def kill_now(actor) -> None:
    """Kill an actor and wait until Ray reports it dead (so the next call to it fails)."""
    import ray

    ray.kill(actor, no_restart=True)
    with contextlib.suppress(ray.exceptions.RayActorError):
        ray.get(actor.__ray_ready__.remote(), timeout=60)


def ray_executor(actors=2, **settings):
    from cai.executors.ray import RayExecutor

    hook = settings.pop("on_dispatch", None)
    return RayExecutor(ExecutorConfig(kind="ray", actors=actors, **settings), on_dispatch=hook)


def _prompts(count: int) -> list[PromptRecord]:
    return [
        PromptRecord(prompt_id=f"p{i}", prompt=[{"role": "user", "content": f"Question {i}?"}])
        for i in range(count)
    ]


def _job_files(work_dir: Path) -> dict[str, bytes]:
    """Every chunk file and the job record, by name."""
    files = {p.name: p.read_bytes() for p in sorted((work_dir / "chunks").glob("*.jsonl"))}
    files["job.json"] = (work_dir / "job.json").read_bytes()
    return files


def _run_outputs(out: Path) -> dict[str, bytes]:
    found = {}
    for sub in ("samples", "judgments"):
        found.update({f"{sub}/{k}": v for k, v in _job_files(out / sub).items()})
    for name in ("preferences.jsonl", "filtered.jsonl", "work/rows.jsonl"):
        found[name] = (out / name).read_bytes()
    return found


def _pipeline_file(tmp_path: Path, out: str, executor: dict, prompts: int = 20) -> Path:
    source = tmp_path / "prompts.jsonl"
    if not source.exists():
        source.write_text(
            "".join(json.dumps({"prompt": f"Question number {i}?"}) + "\n" for i in range(prompts))
        )
    data = {
        "name": "ray-test",
        "output_dir": str(tmp_path / out),
        "prompts": {"path": str(source)},
        "constitution": "default",
        "policy": {"kind": "scripted", "model": "unit"},
        "sample": {"n": 3, "max_tokens": 16, "seed": 7},
        "judge": {"principles_per_pair": 2},
        "preferences": {"format": "jsonl", "kwise": "all_pairs"},
        "chunk_size": 3,
        "executor": executor,
    }
    path = tmp_path / f"{out}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_two_actors_write_the_same_bytes_as_local(tmp_path, ray_address):
    local = run_pipeline(load_pipeline_config(_pipeline_file(tmp_path, "local", {"kind": "local"})))
    ray_run = run_pipeline(
        load_pipeline_config(_pipeline_file(tmp_path, "ray", {"kind": "ray", "actors": 2}))
    )
    assert _run_outputs(tmp_path / "ray") == _run_outputs(tmp_path / "local")
    assert local.summary["stages"]["preferences"] == ray_run.summary["stages"]["preferences"]
    for stage in ("sample", "judge"):
        block = ray_run.summary["stages"][stage]["executor"]
        assert (block["kind"], block["actors"], block["restarts"]) == ("ray", 2, 0)
        assert block["items"] == 20 and block["chunks"] == 7
        assert sum(a["items"] for a in block["per_actor"]) == 20
        assert all(a["items"] > 0 and a["pid"] for a in block["per_actor"])
    judged = ray_run.summary["stages"]["judge"]
    assert (
        judged["choice_requests_scored_now"]
        == local.summary["stages"]["judge"]["choice_requests_scored_now"]
    )


def test_results_come_in_input_order_with_bounded_work_ahead(ray_address):
    from cai.stages.sample import SampleRecipe

    recipe = SampleRecipe(backend=backend_spec(kind="scripted", model="unit"), config=SampleConfig())
    pulled = []

    def chunks():
        for index in range(40):
            pulled.append(index)
            yield index, _prompts(3)

    ahead = []
    with (
        ray_executor(actors=2, max_in_flight_per_actor=1) as executor,
        executor.open(recipe) as session,
    ):
        order = []
        for index, rows in session.map(chunks()):
            ahead.append(len(pulled) - len(order))
            order.append(index)
            assert rows.count == 3
            time.sleep(0.02)  # a slow writer: the actors must not run away from it
    assert order == list(range(40))
    assert max(ahead) <= 2 * 2 * 1  # 2 x actors x max_in_flight_per_actor


def test_a_killed_actor_is_replaced_and_nothing_is_lost_or_repeated(tmp_path, ray_address):

    config = SampleConfig(n=2, max_tokens=8)
    prompts = _prompts(30)  # 15 chunks of 2
    sample_prompts(
        backend_spec(kind="scripted", model="unit"),
        prompts,
        tmp_path / "local",
        config,
        chunk_size=2,
    )

    killed = []

    def kill_one(seq, actor):  # the actor about to take the 5th chunk dies (once)
        if seq == 4 and not killed:
            killed.append(actor)
            kill_now(actor)

    with ray_executor(actors=2, max_restarts=2, on_dispatch=kill_one) as executor:
        stats = sample_prompts(
            backend_spec(kind="scripted", model="unit"),
            prompts,
            tmp_path / "ray",
            config,
            chunk_size=2,
            executor=executor,
        )
    assert _job_files(tmp_path / "ray") == _job_files(tmp_path / "local")
    report = stats.executor
    assert report.restarts == 1
    assert [a.name for a in report.per_actor if a.died] != []
    assert any(a.replaces for a in report.per_actor)
    assert (report.items, report.chunks) == (30, 15)  # each chunk processed and counted once
    assert sum(a.items for a in report.per_actor) == 30


def test_actors_that_keep_dying_stop_the_run_with_one_clear_error(tmp_path, ray_address):

    from cai.executors.ray import ExecutorError

    def kill_every(seq, actor):
        kill_now(actor)

    spec = backend_spec(kind="scripted", model="unit")
    with (
        ray_executor(actors=2, max_restarts=1, on_dispatch=kill_every) as executor,
        pytest.raises(ExecutorError, match=r"gave up after 2 Ray actor deaths.*rerun"),
    ):
        sample_prompts(spec, _prompts(8), tmp_path / "out", SampleConfig(), executor=executor)
    assert not job_is_complete(tmp_path / "out")
    # The same command resumes; here on the local executor, which must agree.
    sample_prompts(spec, _prompts(8), tmp_path / "out", SampleConfig(), executor=LocalExecutor())
    sample_prompts(spec, _prompts(8), tmp_path / "fresh", SampleConfig())
    assert _job_files(tmp_path / "out") == _job_files(tmp_path / "fresh")


def test_errors_inside_an_actor_and_missing_resources_are_one_line(tmp_path, ray_address):
    from cai.constitution import load_constitution
    from cai.executors.ray import ExecutorError
    from cai.judge.compare import JudgeConfig
    from cai.stages.base import RecipeError
    from cai.stages.judge import JudgeRecipe, judge_samples

    spec = backend_spec(kind="scripted", model="unit")
    recipe = JudgeRecipe(
        backend=spec,
        constitution=load_constitution("default"),
        templates_dir=None,
        templates_fingerprint="0" * 16,  # as if this node had other templates
        config=JudgeConfig(),
    )
    with (
        ray_executor(actors=1) as executor,
        pytest.raises(RecipeError, match="templates here differ") as caught,
    ):
        judge_samples(recipe, [], tmp_path / "judged", executor=executor)
    assert "\n" not in str(caught.value)
    with (
        ray_executor(actors=3, num_cpus_per_actor=1) as executor,
        pytest.raises(ExecutorError, match=r"3 actor\(s\) x 1 CPU\(s\) do not fit"),
    ):
        sample_prompts(spec, _prompts(2), tmp_path / "s", SampleConfig(), executor=executor)


DRIVER = textwrap.dedent(
    """
    import sys, time
    from cai.jobs import ChunkedJob

    commit = ChunkedJob._commit

    def slow_commit(path, rows):  # room to kill the driver between commits
        commit(path, rows)
        time.sleep(0.4)

    ChunkedJob._commit = staticmethod(slow_commit)
    from cai.pipeline import load_pipeline_config, run_pipeline

    run_pipeline(load_pipeline_config(sys.argv[1]))
    """
)


def test_a_driver_killed_mid_run_resumes_to_an_undisturbed_result(tmp_path, ray_address):
    executor = {"kind": "ray", "actors": 2, "address": ray_address}
    config = _pipeline_file(tmp_path, "killed", executor, prompts=30)
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    child = subprocess.Popen(
        [sys.executable, str(script), str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    chunks = tmp_path / "killed" / "samples" / "chunks"
    deadline = time.monotonic() + 120
    try:
        while len(list(chunks.glob("*.jsonl"))) < 3:
            assert child.poll() is None, child.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the driver committed no chunks in time"
            time.sleep(0.1)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    assert not job_is_complete(tmp_path / "killed" / "samples")
    committed = len(list(chunks.glob("*.jsonl")))
    assert 3 <= committed < 10

    again = run_pipeline(load_pipeline_config(config))
    run_pipeline(load_pipeline_config(_pipeline_file(tmp_path, "undisturbed", {"kind": "local"})))
    assert _run_outputs(tmp_path / "killed") == _run_outputs(tmp_path / "undisturbed")
    assert again.summary["stages"]["sample"]["prompts_resumed"] == committed * 3


def test_revise_on_two_actors_equals_local(tmp_path, ray_address):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"Topic {i}?"}) + "\n" for i in range(10)))

    def config(out, executor):
        return ReviseConfig(
            prompts=str(prompts),
            out=str(tmp_path / out),
            backend=backend_spec(kind="scripted", model="unit"),
            rounds=2,
            format="jsonl",
            chunk_size=3,
            executor=executor,
        )

    run_revise(config("local", ExecutorConfig()))
    summary = run_revise(config("ray", ExecutorConfig(kind="ray", actors=2)))
    assert _job_files(tmp_path / "ray" / "work") == _job_files(tmp_path / "local" / "work")
    for name in sorted(p.name for p in (tmp_path / "local" / "sft").iterdir()):
        assert (tmp_path / "ray" / "sft" / name).read_bytes() == (
            tmp_path / "local" / "sft" / name
        ).read_bytes()
    assert summary.executor.kind == "ray" and summary.executor.items == 10
    assert summary.executor.counters["cache_misses"] > 0  # both actors wrote one call cache


@pytest.mark.vllm
@pytest.mark.slow
def test_one_actor_holding_a_vllm_engine_samples_like_the_local_engine(
    tmp_path, ray_address, tiny_model_dir, vllm_backend
):
    config = SampleConfig(n=2, max_tokens=8, temperature=1.0, seed=3)
    spec = backend_spec(
        kind="vllm", model=str(tiny_model_dir), enforce_eager=True, max_model_len=2048
    )
    with ray_executor(actors=1) as executor:
        stats = sample_prompts(spec, _prompts(4), tmp_path / "ray", config, executor=executor)
    sample_prompts(vllm_backend, _prompts(4), tmp_path / "local", config)
    assert stats.executor.items == 4 and stats.executor.per_actor[0].pid != os.getpid()
    assert _job_files(tmp_path / "ray") == _job_files(tmp_path / "local")
