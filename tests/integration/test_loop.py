"""`cai loop` end to end on the tiny models: two rounds, a rerun that recomputes nothing, and a
SIGKILL in the middle of round two followed by a rerun that finishes it.

The policy is the tiny random Llama sampled with transformers and trained with DPO (two
steps, a large learning rate so policy 2 really differs from policy 1); the reward model is
the tiny sequence classifier. The judge is the scripted backend with content-dependent scores
(the judge's arithmetic is tested elsewhere): the CLI runs in a subprocess whose only change is
that a `kind: scripted` judge gets those scores; everything else is the real command path.
"""

from __future__ import annotations

import hashlib
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

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import hashlib, sys
    import cai.backends
    from cai.backends.scripted import ScriptedBackend

    _real = cai.backends.make_backend

    def score(request):
        text = "".join(m["content"] for m in request.messages) + request.assistant_prefix
        digest = hashlib.sha256(text.encode()).digest()
        return [digest[0] / 64, digest[1] / 64]

    def make_backend(spec, *args, **kwargs):
        if spec.kind == "scripted":
            return ScriptedBackend(score=score, model_id="scripted-content")
        return _real(spec, *args, **kwargs)

    cai.backends.make_backend = make_backend
    if __name__ == "__main__":
        from cai.cli.app import main
        sys.argv = ["cai", "loop", *sys.argv[1:]]
        main()
    """
)


def write_inputs(tmp_path: Path, policy: Path, reward: Path, **extra) -> Path:
    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for i in range(12):
            handle.write(
                json.dumps({"prompt": f"Question {i}: how should I help a friend?"}) + "\n"
            )
    with (tmp_path / "eval.jsonl").open("w") as handle:
        for i in range(6):
            handle.write(json.dumps({"prompt": f"Held out {i}: what is a kind answer?"}) + "\n")
    train = {"max_steps": 2, "per_device_train_batch_size": 4, "logging_steps": 1}
    settings = {
        "name": "tiny-loop",
        "rounds": 2,
        "prompts": {"path": "prompts.jsonl", "per_round": 6},
        "policy": {"kind": "transformers", "model": str(policy)},
        "judge_backend": {"kind": "scripted", "model": "content"},
        "sample": {"n": 2, "max_tokens": 8},
        "judge": {"principles_per_pair": 1},
        "preferences": {"format": "jsonl"},
        "chunk_size": 4,
        "reward_model": {"model": str(reward), "train": train},
        "policy_step": {"method": "dpo", "train": {**train, "learning_rate": 5e-3}},
        "eval": {"prompts": "eval.jsonl", "max_tokens": 8, "bootstrap_resamples": 300},
        **extra,
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(settings))
    return path


def start(tmp_path: Path, config: Path, out: Path) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def finish(proc: subprocess.Popen) -> str:
    stdout, stderr = proc.communicate(timeout=400)
    assert proc.returncode == 0, stderr[-3000:]
    return stdout


def jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def snapshot(directory: Path) -> dict[str, tuple[int, str]]:
    """Every file under `directory`: (mtime in ns, sha256 of the content)."""
    return {
        str(p.relative_to(directory)): (
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
        for p in sorted(directory.rglob("*"))
        if p.is_file()
    }


def state(out: Path) -> dict:
    try:
        return json.loads((out / "loop_state.json").read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def check_round_data(out: Path) -> None:
    """Pairs, training rows and the summary agree with the files, row for row."""
    pairs = {r: jsonl(out / "rounds" / str(r) / "data" / "pairs.jsonl") for r in (1, 2)}
    for r in (1, 2):
        labelled = jsonl(out / "rounds" / str(r) / "preferences.jsonl")
        assert len(pairs[r]) == len(labelled) > 0
        assert len({row["pair_id"] for row in pairs[r]}) == len(pairs[r])
        assert {row["round"] for row in pairs[r]} == {r}
        samples = [
            row
            for chunk in sorted((out / "rounds" / str(r) / "samples" / "chunks").glob("*.jsonl"))
            for row in jsonl(chunk)
        ]
        assert len(samples) == 6 and len({s["prompt_id"] for s in samples}) == 6
    train = jsonl(out / "rounds" / "2" / "data" / "train.jsonl")
    assert len(train) == len(pairs[1]) + len(pairs[2])  # mix: all, one copy each
    assert len({(row["round"], row["pair_id"]) for row in train}) == len(train)
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rounds"]
    assert [row["round"] for row in rows] == [1, 2]
    assert [row["pairs"] for row in rows] == [len(pairs[1]), len(pairs[2])]
    assert [row["train_rows"] for row in rows] == [len(pairs[1]), len(train)]


def check_win_rates(out: Path) -> None:
    """Each reported win rate is (wins + ties / 2) / judged of its own pairs file."""
    rows = json.loads((out / "summary.json").read_text())["rounds"]
    for row, name in ((rows[1], "vs_previous"), (rows[1], "vs_start"), (rows[0], "vs_previous")):
        probs = [
            p["prob_policy"]
            for p in jsonl(out / "rounds" / str(row["round"]) / "eval" / name / "pairs.jsonl")
        ]
        judged = [p for p in probs if p is not None]
        wins = sum(p > 0.5 for p in judged) + 0.5 * sum(p == 0.5 for p in judged)
        key = "win_vs_previous" if name == "vs_previous" else "win_vs_start"
        assert row[key] == pytest.approx(wins / len(judged))
        low, high = row[f"{key}_ci"]
        assert 0.0 <= low <= row[key] <= high <= 1.0
    # round 1: policy r is the starting policy, so both comparisons are the same one
    assert rows[0]["win_vs_start"] == rows[0]["win_vs_previous"]
    assert not (out / "rounds" / "1" / "eval" / "vs_start").exists()


def test_two_rounds_then_a_rerun_that_recomputes_nothing(tmp_path, tiny_model_dir, tiny_reward_dir):
    config = write_inputs(tmp_path, tiny_model_dir, tiny_reward_dir)
    out = tmp_path / "run"
    stdout = finish(start(tmp_path, config, out))
    assert "| round | pairs |" in stdout and "final policy: " in stdout
    check_round_data(out)
    check_win_rates(out)

    # round 2 sampled from policy 2 (what round 1 trained), not from the start
    first = jsonl(next((out / "rounds" / "1" / "samples" / "chunks").glob("*.jsonl")))[0]
    second = jsonl(next((out / "rounds" / "2" / "samples" / "chunks").glob("*.jsonl")))[0]
    assert first["policy_model"] != second["policy_model"]
    weights = [out / "rounds" / str(r) / "policy" / "model.safetensors" for r in (1, 2)]
    assert (
        hashlib.sha256(weights[0].read_bytes()).digest()
        != hashlib.sha256(weights[1].read_bytes()).digest()
    )
    # the reward model warm-starts from the previous round's
    card = json.loads((out / "rounds" / "2" / "reward_model" / "cai_training.json").read_text())
    assert Path(card["base_model"]).resolve() == (out / "rounds" / "1" / "reward_model").resolve()
    summary = json.loads((out / "summary.json").read_text())
    assert all(row["mean_reward"] is not None for row in summary["rounds"])
    assert summary["final_policy"] == "rounds/2/policy"
    assert (out / "loop.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| 2 |" in (out / "summary.md").read_text()

    before = snapshot(out / "rounds")
    again = finish(start(tmp_path, config, out))
    assert "round 1:" not in again and "round 2:" not in again
    assert snapshot(out / "rounds") == before

    # the same run directory with a changed setting is refused, naming the setting
    proc = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(config), "--out", str(out),
         "--set", "sample.n=3"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 2
    assert "changed: sample.n" in proc.stderr


def test_sigkill_in_round_two_then_rerun_finishes_it(tmp_path, tiny_model_dir, tiny_reward_dir):
    config = write_inputs(tmp_path, tiny_model_dir, tiny_reward_dir)
    out = tmp_path / "run"
    proc = start(tmp_path, config, out)
    chunks = out / "rounds" / "2" / "samples" / "chunks"
    deadline = time.monotonic() + 300
    while not (
        state(out).get("rounds", {}).get("2", {}).get("stages", {}).get("label")
        and chunks.is_dir()
        and any(chunks.glob("*.jsonl"))
    ):
        assert proc.poll() is None, f"finished before the kill point:\n{proc.stderr.read()[-3000:]}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    killed = state(out)["rounds"]
    assert all(s["status"] == "done" for s in killed["1"]["stages"].values())
    assert killed["2"]["stages"]["label"]["status"] == "started"
    assert "eval" not in killed["2"]["stages"]
    round_one = snapshot(out / "rounds" / "1")

    stdout = finish(start(tmp_path, config, out))
    assert "round 1:" not in stdout
    assert "round 2: label (resuming)" in stdout
    assert snapshot(out / "rounds" / "1") == round_one
    final = state(out)["rounds"]["2"]["stages"]
    assert set(final) == {"prompts", "label", "data", "reward_model", "policy", "eval"}
    assert all(s["status"] == "done" for s in final.values())
    sampled = json.loads((out / "rounds" / "2" / "summary.json").read_text())["stages"]["sample"]
    assert sampled["prompts_resumed"] >= 4  # the chunk committed before the kill was kept
    check_round_data(out)
    check_win_rates(out)


@pytest.mark.parametrize(
    ("method", "reward", "train"),
    [
        ("ppo", "reward_model", {"steps": 2, "batch_size": 4, "mini_batch_size": 2}),
        (
            "grpo",
            "judge",
            {
                "max_steps": 2,
                "per_device_train_batch_size": 4,
                "num_generations": 2,
                "max_completion_length": 8,
            },
        ),
    ],
)
def test_one_round_with_an_online_policy_step(
    tmp_path, tiny_model_dir, tiny_reward_dir, method, reward, train
):
    """PPO on the round's reward model and GRPO with the judge as reward each train a policy
    that the round's evaluation then samples; PPO's KL reaches the summary."""
    config = write_inputs(
        tmp_path,
        tiny_model_dir,
        tiny_reward_dir,
        rounds=1,
        policy_step={"method": method, "reward": reward, "train": train},
    )
    out = tmp_path / "run"
    finish(start(tmp_path, config, out))
    summary = json.loads((out / "summary.json").read_text())
    (row,) = summary["rounds"]
    assert row["pairs"] > 0 and row["mean_reward"] is not None
    assert 0.0 <= row["win_vs_start"] <= 1.0
    assert (row["kl"] is not None) == (method == "ppo")
    policy = out / summary["final_policy"]
    assert list(policy.rglob("model.safetensors")), f"no trained weights under {policy}"
    state_stages = state(out)["rounds"]["1"]["stages"]
    assert all(s["status"] == "done" for s in state_stages.values())
