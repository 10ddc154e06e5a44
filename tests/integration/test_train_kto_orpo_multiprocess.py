"""`cai train orpo` and `cai train kto` under `accelerate launch` with two CPU processes against
the same command in one process holding the same global batch (the launch form docs/training.md
gives for CPUs, launcher helpers shared with test_train_multiprocess.py).

Where the maths says the updates must be identical, they are checked to be: both ranks hold
bit-identical weights after every step, the logged loss of every step matches the one-process
run's, and the final weights match it to float32 rounding while training moved them by far more.

When the maths says so:
- ORPO: the odds-ratio term is a mean over pairs, and DDP averages the two ranks' half-batch
  means, which is the whole-batch mean. Its supervised term is a mean over the tokens of the
  chosen conversations (prompt and answer) within each process, which equals the whole-batch
  token mean only when the processes hold as many such tokens: so every pair here has the
  same prompt and chosen answer and only the rejected answers differ. (With prompts of other
  lengths the two runs differed by 5e-4 of the update, against 1e-6 here.)
- KTO: its default loss takes a reference point from a KL estimate that TRL builds from
  mismatched (prompt, answer) pairs rotated within each block of `per_device_train_batch_size`
  rows, so two processes with half the batch each pair other rows than one process: the two
  runs legitimately differ there. `loss_type: apo_zero_unpaired` has no such term (each answer's
  loss is its own), so it is the KTO loss whose updates must match, and the one run here.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai.train.distributed import DEBUG_DATA_LOG, read_data_log

pytestmark = pytest.mark.slow

# The one-process loss of each step, to float32 rounding of other matrix shapes (the reward
# model test in test_train_multiprocess.py explains the figure).
TOLERANCE = dict(rel=1e-5, abs=1e-7)
STEPS = 2
SETTINGS = dict(
    max_steps=STEPS,
    learning_rate=0.1,
    seed=0,
    dtype="float32",
    logging_steps=1,
    save_steps=1000,
    max_length=64,
    # Plain SGD, so an update is the gradient itself: under Adam the first step moves every
    # weight by about the learning rate in the sign of its gradient, and gradients that are
    # zero up to rounding then flip by the full step between the two layouts.
    trl={"optim": "sgd"},
)


def write_data(directory: Path) -> tuple[Path, Path]:
    """ORPO pairs (one prompt and chosen answer for all, see above) and KTO thumbs, 4 rows a
    step."""
    pairs, thumbs = directory / "pairs.jsonl", directory / "thumbs.jsonl"
    with pairs.open("w") as p, thumbs.open("w") as t:
        for i in range(4 * STEPS):
            prompt = [{"role": "user", "content": f"question number {i} about rivers"}]
            rejected = f"no {'and no ' * (i % 3)}{i}"
            p.write(
                json.dumps(
                    {
                        "prompt": [{"role": "user", "content": "a question about rivers"}],
                        "chosen": [{"role": "assistant", "content": "a calm and helpful answer"}],
                        "rejected": [{"role": "assistant", "content": rejected}],
                        "prob_chosen": 0.9,
                    }
                )
                + "\n"
            )
            answer = [{"role": "assistant", "content": f"answer {i} " * (1 + i % 3)}]
            t.write(
                json.dumps({"prompt": prompt, "completion": answer, "label": i % 2 == 0}) + "\n"
            )
    return pairs, thumbs


def train_both(model: str, directory: Path, processes: int) -> None:
    """ORPO, then KTO (apo_zero_unpaired), in this process group; outputs in `directory`."""
    from cai.train.kto import KTOTrainConfig, train_kto
    from cai.train.orpo import ORPOTrainConfig, train_orpo

    pairs, thumbs = directory / "pairs.jsonl", directory / "thumbs.jsonl"
    batch = {"per_device_train_batch_size": 4 // processes}
    out = directory / f"p{processes}"
    train_orpo(
        ORPOTrainConfig(
            model=model, train_data=str(pairs), output_dir=str(out / "orpo"), **SETTINGS, **batch
        )
    )
    train_kto(
        KTOTrainConfig(
            model=model,
            train_data=str(thumbs),
            output_dir=str(out / "kto"),
            loss_type="apo_zero_unpaired",
            **SETTINGS,
            **batch,
        )
    )


def _losses(out: Path, rank: int = 0) -> list[float]:
    rows = read_data_log(out)[rank]
    return [r["values"]["loss"] for r in rows if r["kind"] == "metrics" and "loss" in r["values"]]


def _weights(directory: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _check(two: Path, one: Path, base: Path) -> None:
    logs = read_data_log(two)
    assert sorted(logs) == [0, 1], "each rank writes its own data log"
    digests = [[r["sha256"] for r in logs[rank] if r["kind"] == "weights"] for rank in (0, 1)]
    assert len(digests[0]) == STEPS and digests[0] == digests[1], "the ranks' weights diverged"
    assert len(set(digests[0])) == STEPS, "every step changed the weights"

    assert len(_losses(two)) == STEPS
    assert _losses(two) == pytest.approx(_losses(one), **TOLERANCE)

    start, single, double = _weights(base), _weights(one), _weights(two)
    moved = max((single[k] - start[k]).abs().max().item() for k in start)
    apart = max((double[k] - single[k]).abs().max().item() for k in start)
    assert moved > 1e-3, "training should move the weights"
    # measured: 1e-6 of the largest update apart; ORPO's token mean over unequal halves: 5e-4
    assert apart <= 1e-4 * moved, f"two processes ended {apart} from one (moved {moved})"
    facts = json.loads((two / "cai_training.json").read_text())
    assert facts["processes"] == 2 and facts["global_step"] == STEPS
    assert json.loads((one / "cai_training.json").read_text())["processes"] == 1


def test_orpo_and_kto_two_processes_match_one(tiny_model_dir, tmp_path, monkeypatch):
    import subprocess

    from test_train_multiprocess import BIN, _env

    write_data(tmp_path)
    # two processes: one `accelerate launch` of this file trains ORPO, then KTO
    command = [str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += [__file__, str(tiny_model_dir), str(tmp_path)]
    done = subprocess.run(
        command, env=_env(ACCELERATE_USE_CPU="true"), capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    # one process, the same global batch, here
    monkeypatch.setenv(DEBUG_DATA_LOG, "1")
    train_both(str(tiny_model_dir), tmp_path, 1)

    for method in ("orpo", "kto"):
        _check(tmp_path / "p2" / method, tmp_path / "p1" / method, tiny_model_dir)


if __name__ == "__main__":  # a rank of the two-process run
    import sys

    train_both(sys.argv[1], Path(sys.argv[2]), 2)
