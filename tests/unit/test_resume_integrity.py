"""A rerun never mixes old and new inputs, and a run touches nothing it did not write.

Each resume case compares the dataset of a rerun after the inputs changed with the dataset
of a fresh run on the new inputs: they must be equal, row for row.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend
from cai.errors import CaiError, OutputDirError
from cai.jobs import ChunkedJob, JobConfigMismatchError, JobIncompleteError, iter_job_results
from cai.pipeline import load_pipeline_config, run_pipeline
from cai.preference_data import load_preferences


def content_score(request: ChoiceRequest) -> list[float]:
    text = "".join(m["content"] for m in request.messages or []) + request.assistant_prefix
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[0] / 64, digest[1] / 64]


def write_prompts(path: Path, texts: list[str]) -> Path:
    path.write_text("".join(json.dumps({"prompt": t}) + "\n" for t in texts), encoding="utf-8")
    return path


def config_file(tmp_path: Path, out: Path, **extra) -> Path:
    data = {
        "name": "integrity",
        "output_dir": str(out),
        "prompts": {"path": str(tmp_path / "prompts.jsonl")},
        "policy": {"kind": "scripted", "model": "unit"},
        "sample": {"n": 2, "max_tokens": 16},
        "judge": {"principles_per_pair": 2},
        "preferences": {"format": "jsonl"},
        "chunk_size": 3,
        **extra,
    }
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(path: Path, *overrides: str):
    backend = ScriptedBackend(score=content_score, model_id="scripted:unit")
    config = load_pipeline_config(path, list(overrides))
    return run_pipeline(config, policy_backend=backend, judge_backend=backend)


def rows(result) -> list[tuple]:
    dataset = load_preferences(result.dataset)
    return sorted(
        (r["prompt"][-1]["content"], r["chosen"][0]["content"], r["rejected"][0]["content"])
        for r in dataset
    )


def questions(n: int, tag: str = "q") -> list[str]:
    return [f"{tag} question {i}?" for i in range(n)]


def test_prompts_rewritten_in_place_give_the_fresh_result(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(8, "old"))
    first = run(config_file(tmp_path, tmp_path / "run"))
    assert {r[0] for r in rows(first)} == set(questions(8, "old"))

    write_prompts(tmp_path / "prompts.jsonl", questions(8, "new"))
    again = run(config_file(tmp_path, tmp_path / "run"))
    fresh = run(config_file(tmp_path, tmp_path / "fresh"))
    assert rows(again) == rows(fresh)
    assert {r[0] for r in rows(again)} == set(questions(8, "new"))
    sample = again.summary["stages"]["sample"]
    assert sample["prompts_resumed"] == 0 and sample["prompts_sampled_now"] == 8


def test_prompts_shrunk_drop_the_chunks_past_the_new_end(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(8))
    run(config_file(tmp_path, tmp_path / "run"))
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    again = run(config_file(tmp_path, tmp_path / "run"))
    fresh = run(config_file(tmp_path, tmp_path / "fresh"))
    assert rows(again) == rows(fresh) and len(rows(again)) == 4
    sample = again.summary["stages"]["sample"]
    # chunk 0 (3 prompts) is unchanged; chunk 1 now holds one prompt instead of three
    assert sample["prompts_resumed"] == 3 and sample["prompts_sampled_now"] == 1
    chunks = sorted(p.name for p in (tmp_path / "run" / "samples" / "chunks").iterdir())
    assert len(chunks) == 2


def test_one_prompt_edited_recomputes_only_its_chunk(tmp_path):
    texts = questions(9)
    write_prompts(tmp_path / "prompts.jsonl", texts)
    run(config_file(tmp_path, tmp_path / "run"))
    texts[4] = "an edited question?"
    write_prompts(tmp_path / "prompts.jsonl", texts)
    again = run(config_file(tmp_path, tmp_path / "run"))
    assert again.summary["stages"]["sample"]["prompts_sampled_now"] == 3
    assert again.summary["stages"]["judge"]["prompts_judged_now"] == 3
    assert rows(again) == rows(run(config_file(tmp_path, tmp_path / "fresh")))


def test_samples_edited_between_sample_and_judge_are_judged_again(tmp_path):
    samples = tmp_path / "samples.jsonl"

    def write_samples(answer: str) -> None:
        with samples.open("w") as handle:
            for i in range(5):
                handle.write(
                    json.dumps({"prompt": f"q{i}?", "responses": [f"{answer} {i}", f"other {i}"]})
                    + "\n"
                )

    write_samples("first")
    judge_only = {"stages": ["judge", "preferences"], "samples": str(samples)}
    run(config_file(tmp_path, tmp_path / "run", **judge_only))
    write_samples("second")
    again = run(config_file(tmp_path, tmp_path / "run", **judge_only))
    fresh = run(config_file(tmp_path, tmp_path / "fresh", **judge_only))
    assert rows(again) == rows(fresh)
    assert all("first" not in " ".join(r) for r in rows(again))


def test_changed_setting_is_refused_and_the_resolved_config_is_kept(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    path = config_file(tmp_path, tmp_path / "run")
    run(path)
    resolved = (tmp_path / "run" / "config.resolved.yaml").read_text()
    summary = (tmp_path / "run" / "summary.json").read_text()
    with pytest.raises(JobConfigMismatchError) as err:
        run(path, "sample.temperature=0.5")
    message = str(err.value)
    assert "config.temperature" in message and "--overwrite" in message and "--out" in message
    assert (tmp_path / "run" / "config.resolved.yaml").read_text() == resolved
    assert (tmp_path / "run" / "summary.json").read_text() == summary


def test_files_written_for_a_run_carry_no_absolute_paths(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    result = run(config_file(tmp_path, tmp_path / "run"))
    for name in ("config.resolved.yaml", "summary.json", "preferences.jsonl.README.md"):
        text = (tmp_path / "run" / name).read_text()
        assert str(tmp_path) not in text, name
    assert Path(result.dataset).is_file()
    resolved = yaml.safe_load((tmp_path / "run" / "config.resolved.yaml").read_text())
    assert resolved["prompts"]["path"] == "../prompts.jsonl"


def test_a_foreign_file_in_preferences_survives_and_stops_the_write(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    out = tmp_path / "run"
    (out / "preferences").mkdir(parents=True)
    (out / "preferences" / "my-notes.txt").write_text("mine")
    path = config_file(tmp_path, out, preferences={"format": "save_to_disk"})
    for overrides in ((), ("overwrite=true",)):
        with pytest.raises(OutputDirError, match=r"my-notes\.txt"):
            run(path, *overrides)
        assert (out / "preferences" / "my-notes.txt").read_text() == "mine"


def test_foreign_files_anywhere_in_the_run_survive_overwrite(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    out = tmp_path / "run"
    path = config_file(tmp_path, out)
    run(path)
    planted = [
        out / "notes.md",
        out / "samples" / "notes.md",
        out / "samples" / "chunks" / "notes.md",
        out / "judgments" / "chunks" / "00000000.txt",
    ]
    for file in planted:
        file.write_text("mine")
    run(path, "overwrite=true")
    for file in planted:
        assert file.read_text() == "mine", file


def test_overwrite_never_writes_into_another_runs_samples(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    other = tmp_path / "other"
    run(config_file(tmp_path, other))
    before = {p.name: p.read_bytes() for p in (other / "samples" / "chunks").iterdir()}
    path = config_file(tmp_path, tmp_path / "mine", samples=str(other / "samples"))
    with pytest.raises(CaiError, match="outside the output directory"):
        run(path, "overwrite=true", "sample.seed=7")
    after = {p.name: p.read_bytes() for p in (other / "samples" / "chunks").iterdir()}
    assert after == before


def _hold_lock(directory: str, ready, release) -> None:
    from cai.files import DirectoryLock

    with DirectoryLock(directory):
        ready.set()
        release.wait(30)


def test_a_second_run_on_a_busy_directory_is_refused_with_the_pid(tmp_path):
    write_prompts(tmp_path / "prompts.jsonl", questions(4))
    out = tmp_path / "run"
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(60)
        with pytest.raises(OutputDirError, match=f"in use by another cai process \\(pid {holder.pid}\\)"):
            run(config_file(tmp_path, out))
        assert not (out / "config.resolved.yaml").exists()
    finally:
        release.set()
        holder.join(30)
    run(config_file(tmp_path, out))  # free again once the holder is gone
    assert (out / "summary.json").is_file()


def test_a_killed_lock_holder_leaves_no_stale_lock(tmp_path):
    context = multiprocessing.get_context("spawn")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold_lock, args=(str(tmp_path), ready, release))
    holder.start()
    assert ready.wait(60)
    os.kill(holder.pid, 9)
    holder.join(30)
    from cai.files import DirectoryLock

    with DirectoryLock(tmp_path):
        assert (tmp_path / ".cai.lock").read_text().strip() == str(os.getpid())


def test_unfinished_job_is_never_read_as_a_result(tmp_path):
    def explode(chunk):
        if chunk[0] >= 4:
            raise RuntimeError("killed")
        return [{"x": x} for x in chunk]

    with ChunkedJob(tmp_path, {"stage": "t"}, chunk_size=2) as job, pytest.raises(RuntimeError):
        job.run(range(8), explode)
    with pytest.raises(JobIncompleteError, match="has not finished"):
        list(iter_job_results(tmp_path))
    with ChunkedJob(tmp_path, {"stage": "t"}, chunk_size=2) as job:
        stats = job.run(range(8), lambda chunk: [{"x": x} for x in chunk])
    assert stats.items_done_before == 4 and stats.items_processed == 4
    assert [r["x"] for r in iter_job_results(tmp_path)] == list(range(8))
    meta = json.loads((tmp_path / "job.json").read_text())
    assert meta["complete"]["items"] == 8 and len(meta["complete"]["chunks"]) == 4


def test_temp_files_are_unique_and_none_are_left_behind(tmp_path):
    from cai.files import atomic_write_lines

    for _ in range(3):
        atomic_write_lines(tmp_path / "a.jsonl", [{"t": time.time()}])
    assert [p.name for p in tmp_path.iterdir()] == ["a.jsonl"]


def test_judge_takes_prompt_and_responses_rows_and_trl_pairs(tmp_path):
    table = tmp_path / "responses.jsonl"
    table.write_text(
        json.dumps({"prompt": "Say hi?", "responses": ["hi", "hello there"]})
        + "\n"
        + json.dumps(
            {
                "prompt": [{"role": "user", "content": "Name a colour?"}],
                "chosen": [{"role": "assistant", "content": "blue"}],
                "rejected": [{"role": "assistant", "content": "a chair"}],
            }
        )
        + "\n"
        + json.dumps(
            {
                "chosen": "\n\nHuman: 2+2?\n\nAssistant: 4",
                "rejected": "\n\nHuman: 2+2?\n\nAssistant: 5",
            }
        )
        + "\n"
    )
    result = run(
        config_file(
            tmp_path, tmp_path / "run", stages=["judge", "preferences"], samples=str(table)
        )
    )
    prompts = {r[0] for r in rows(result)}
    assert prompts == {"Say hi?", "Name a colour?", "2+2?"}
    judged = [
        json.loads(line)
        for chunk in sorted((tmp_path / "run" / "judgments" / "chunks").iterdir())
        for line in chunk.read_text().splitlines()
    ]
    assert {j["policy_model"] for j in judged} == {"unknown:responses.jsonl"}


def test_judge_checks_its_samples_before_loading_a_model(tmp_path):
    bad = tmp_path / "samples.jsonl"
    bad.write_text(json.dumps({"prompt": "q?", "responses": ["a", "b"]}) + "\n" + '"just text"\n')
    result = CliRunner().invoke(
        __import__("cai.cli.app", fromlist=["app"]).app,
        [
            "judge",
            str(bad),
            "--out",
            str(tmp_path / "run"),
            "--backend",
            "vllm",
            "--model",
            str(tmp_path / "no-such-model"),
        ],
    )
    assert result.exit_code == 2, result.output
    assert "samples.jsonl" in result.output and "row 2" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "run" / "config.resolved.yaml").exists()
