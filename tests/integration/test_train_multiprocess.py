"""`cai train reward` and `cai train ppo` with two CPU processes (one gloo group) against the
same command in one process with the same global batch.

The two-process runs are launched the way docs/training.md tells users to on a machine without
GPUs (`ACCELERATE_USE_CPU=true torchrun --nproc_per_node 2 -m cai.cli.app train ...`; the PPO
run leaves ACCELERATE_USE_CPU out, which `cai train` then sets itself), with CAI_DEBUG_DATA_LOG=1
so every rank records the examples it trained on and a digest of its weights after every step
(`cai.train.distributed.DataLog`). Each test checks that
(a) the ranks trained on different examples, which together are exactly the one-process batch,
(b) both ranks hold bit-identical weights after every step, and
(c) the curves match the one-process run's (tolerances justified at REWARD_TOLERANCE and
    PPO_TOLERANCE),
and that the run's files (config, card, checkpoints, model) and summary line come out once.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from cai.testing.data import write_random_preferences
from cai.train.distributed import DEBUG_DATA_LOG, read_data_log

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent

# Tolerances for (c). Both runs are float32 on the same seed and the same global batches, and
# the maths is the same: DDP averages the two ranks' gradients of their half-batch means, which
# is the gradient of the whole-batch mean (PPO: token sums over the global token count, advantages
# whitened and scores normalised over the gathered batch). What differs is float rounding: other
# matrix shapes (half batches, each padded to its own longest row) give other reduction orders,
# and gloo adds the two halves; each moves a float32 result by a few ulps (relative 1e-7).
#
# Reward model: the logged loss of every step agreed to all float32 digits here (grad norms to
# 1e-7), so 1e-5 is a wide margin.
REWARD_TOLERANCE = dict(rel=1e-5, abs=1e-6)
# PPO amplifies the rounding: the random tiny reward model scores every response almost alike
# (batch std ~0.04, a tenth of the mean), so normalising the scores multiplies their 1e-7
# relative differences by ~25, and the value head regresses onto those targets with Adam at
# lr 1e-3, which compounds over steps. Measured here after 3 steps: at most 1.5e-4 relative
# (2e-6 with reward_normalization none, 8e-6 with an exact token-count reward). 1e-3 leaves a 6x
# margin, while the mistakes the test is for are far outside it: whitening advantages per rank
# moves policy/loss by 3e-2 at the first step and by 0.3 at the third; rank-dependent sampling
# seeds, per-rank score normalisation or each rank training on all the prompts change the
# responses themselves.
PPO_TOLERANCE = dict(rel=1e-3, abs=1e-6)


def _env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",  # two ranks on two cores; more threads only contend
        "TOKENIZERS_PARALLELISM": "false",
        DEBUG_DATA_LOG: "1",
    }
    env.pop("ACCELERATE_USE_CPU", None)
    env.update(extra)
    return env


def _cai(args: list[str], processes: int, env: dict[str, str]) -> str:
    """Run `cai ...` in `processes` processes (torchrun when more than one); return its output."""
    if processes == 1:
        command = [sys.executable, "-m", "cai.cli.app", *args]
    else:
        command = [str(BIN / "torchrun"), "--standalone", "--nproc_per_node", str(processes)]
        command += ["-m", "cai.cli.app", *args]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


def _by_step(rows: list[dict], kind: str) -> dict[int, list[dict]]:
    out: dict[int, list[dict]] = {}
    for row in rows:
        if row["kind"] == kind:
            out.setdefault(row["step"], []).append(row)
    return out


def _check_data_and_weights(two: Path, one: Path, steps: int) -> None:
    logs = read_data_log(two)
    assert sorted(logs) == [0, 1], "each rank writes its own data log"
    single = read_data_log(one)[0]
    single_batches = _by_step(single, "batch")
    rank_batches = [_by_step(logs[r], "batch") for r in (0, 1)]
    for step in range(1, steps + 1):
        ids = [sorted(i for row in rank_batches[r][step] for i in row["ids"]) for r in (0, 1)]
        # (a) different data on the two ranks, together the one-process batch
        assert ids[0] and ids[1]
        assert not set(ids[0]) & set(ids[1]), f"step {step}: both ranks trained on {ids}"
        expected = sorted(i for row in single_batches[step] for i in row["ids"])
        assert sorted(ids[0] + ids[1]) == expected, f"step {step}: {ids} vs {expected}"
    # (b) identical weights on both ranks after every step
    digests = [
        {s: rows[-1]["sha256"] for s, rows in _by_step(logs[r], "weights").items()} for r in (0, 1)
    ]
    assert sorted(digests[0]) == list(range(1, steps + 1))
    assert digests[0] == digests[1], "the ranks' weights diverged"
    assert len(set(digests[0].values())) == steps, "every step changed the weights"


def _assert_close_curves(two: list[float], one: list[float], tolerance: dict) -> None:
    assert len(two) == len(one) and len(one) >= 2
    assert two == pytest.approx(one, **tolerance), f"two ranks {two} vs one {one}"
    spread = max(one) - min(one)
    assert spread > 10 * tolerance["rel"] * max(map(abs, one)), f"the curve should move: {one}"


def test_reward_model_two_processes_match_one(tiny_reward_dir, tmp_path):
    data = write_random_preferences(tmp_path / "prefs.jsonl", n=48, seed=3)
    steps = 3

    def run(out: Path, processes: int) -> str:
        args = ["train", "reward", "--model", str(tiny_reward_dir), "--data", data]
        args += ["-o", str(out), "--max-steps", str(steps), "--learning-rate", "1e-3"]
        args += ["--batch-size", str(8 // processes), "--seed", "0"]
        args += ["--set", "dtype=float32", "--set", "logging_steps=1", "--set", "save_steps=1000"]
        env = _env(ACCELERATE_USE_CPU="true") if processes > 1 else _env()
        return _cai(args, processes, env)

    two, one = tmp_path / "two", tmp_path / "one"
    output = run(two, 2)
    assert output.count(f"trained {steps} steps") == 1, "only rank 0 prints the summary"
    run(one, 1)

    _check_data_and_weights(two, one, steps)

    # (c) the logged training loss (already averaged over ranks by the Trainer) per step
    def losses(out: Path) -> list[float]:
        rows = read_data_log(out)[0]
        return [
            r["values"]["loss"] for r in rows if r["kind"] == "metrics" and "loss" in r["values"]
        ]

    _assert_close_curves(losses(two), losses(one), REWARD_TOLERANCE)

    facts = json.loads((two / "cai_training.json").read_text())
    assert facts["processes"] == 2 and facts["global_step"] == steps
    assert (two / "config.resolved.yaml").is_file() and (two / "README.md").is_file()
    assert (two / "model.safetensors").is_file()


def test_ppo_two_processes_match_one(tiny_model_dir, tiny_reward_dir, tmp_path):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"tell me about river number {i}"}) + "\n" for i in range(8))
    )
    steps = 3
    settings = dict(
        ppo_epochs=2,
        max_new_tokens=6,
        learning_rate=1e-3,
        kl_coef=0.1,
        progress=False,
        plot=False,
        save_every=2,
        seed=0,
    )

    def run(out: Path, processes: int) -> str:
        per_process = 4 // processes
        config = tmp_path / f"ppo-{processes}.yaml"
        config.write_text(
            yaml.safe_dump({**settings, "batch_size": per_process, "mini_batch_size": per_process})
        )
        args = ["train", "ppo", "-c", str(config), "--model", str(tiny_model_dir)]
        args += ["--prompts", str(prompts), "--reward-model", str(tiny_reward_dir)]
        args += ["-o", str(out), "--steps", str(steps)]
        # No ACCELERATE_USE_CPU here: `cai train` sets it for a multi-process launch on a
        # machine without GPUs (cai.train.distributed.prepare_launch).
        return _cai(args, processes, _env())

    two, one = tmp_path / "two", tmp_path / "one"
    output = run(two, 2)
    assert output.count(f"ppo: {steps} steps") == 1, "only rank 0 prints the summary"
    run(one, 1)

    _check_data_and_weights(two, one, steps)
    from cai.train.ppo.logging import read_metrics

    curves = [read_metrics(out / "metrics.jsonl") for out in (two, one)]
    assert [r["step"] for r in curves[0]] == list(range(1, steps + 1)), "one row per step"
    for key in ("policy/loss", "value/loss", "reward/mean", "kl/mean"):
        _assert_close_curves(
            [r[key] for r in curves[0]], [r[key] for r in curves[1]], PPO_TOLERANCE
        )
    for key in ("policy/entropy", "response/length"):
        assert [r[key] for r in curves[0]] == pytest.approx([r[key] for r in curves[1]], rel=1e-5)

    saved = yaml.safe_load((two / "config.resolved.yaml").read_text())
    assert saved["batch_size"] == 2
    assert sorted(p.name for p in (two / "checkpoints").iterdir()) == ["step-000002", "step-000003"]
    assert (two / "final" / "model.safetensors").is_file()
