"""Several processes, one run: launch checks, one writer per output directory, a test-only data log.

Every `cai train` command runs unchanged under `accelerate launch` (GPUs) or `torchrun` (CPUs)
with N processes: each process trains on its own shard of the data, metrics are gathered, and
only the main process (rank 0) writes checkpoints, logs, `config.resolved.yaml`, cards and the
final model while the others wait at a barrier.

Two ways a multi-process launch silently goes wrong are stopped here, before training starts:

- torchrun (or `accelerate launch --multi_gpu`) sets WORLD_SIZE and LOCAL_RANK, but accelerate
  only joins the processes into a CPU (gloo) group when ACCELERATE_USE_CPU is true; on a machine
  without a GPU each process otherwise falls back to "rank 0 of 1" and trains alone on all the
  data, every one of them writing the same output directory. `prepare_launch` sets
  ACCELERATE_USE_CPU=true for such a launch when torch sees no accelerator (an explicit value
  is respected), and `check_process_group` refuses a run whose process group is smaller than
  the launcher's WORLD_SIZE.
- Two separately started copies of one run writing one output directory: the main process
  holds `cai.files.DirectoryLock` on the output directory for the whole run, so the second
  copy stops with "in use by another cai process (pid N)".

`CAI_DEBUG_DATA_LOG=1` (for tests and for checking a launch by hand) makes each process append
what it trained on to `output_dir/debug/data-rank{R}.jsonl`: the example ids (reward model:
row numbers of the training table; PPO: prompt indices) of every batch, a SHA-256 of its weights
after every optimiser step, and the logged metrics. Hashing every parameter each step is slow
on real models; leave it unset outside checks.
"""

from __future__ import annotations

import atexit
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.files import DirectoryLock

DEBUG_DATA_LOG = "CAI_DEBUG_DATA_LOG"
DEBUG_DIR = "debug"

#: Process counts and ranks as torchrun / accelerate (WORLD_SIZE, RANK) and MPI launchers set them.
_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("RANK", "PMI_RANK", "OMPI_COMM_WORLD_RANK", "MV2_COMM_WORLD_RANK")


class ProcessGroupError(CaiError, RuntimeError):
    """The launcher started several processes that did not form one process group."""


def _first_int(names: tuple[str, ...], default: int) -> int:
    for name in names:
        value = os.environ.get(name, "").strip()
        if value.isdigit():
            return int(value)
    return default


def launched_processes() -> int:
    """How many processes the launcher says this run has (1 without a launcher)."""
    return max(_first_int(_SIZE_VARIABLES, 1), 1)


def launched_rank() -> int:
    """This process's global rank as the launcher set it (0 without a launcher)."""
    return _first_int(_RANK_VARIABLES, 0)


def is_main_process() -> bool:
    """Rank 0 (or no launcher): the process that prints the command's summary."""
    return launched_rank() == 0


def _accelerator_available() -> bool:
    import torch

    probe = getattr(getattr(torch, "accelerator", None), "is_available", None)
    return bool(probe()) if probe is not None else torch.cuda.is_available()


def prepare_launch() -> None:
    """Call before anything creates accelerate state: a multi-process launch on a machine where
    torch sees no accelerator trains on CPU in one gloo group (ACCELERATE_USE_CPU=true) instead
    of as N independent copies. An ACCELERATE_USE_CPU already set, true or false, is kept."""
    if launched_processes() > 1:
        _end_group_at_exit()
    if (
        launched_processes() > 1
        and "ACCELERATE_USE_CPU" not in os.environ
        and not _accelerator_available()
    ):
        os.environ["ACCELERATE_USE_CPU"] = "true"


_GROUP_END_REGISTERED = False


def _end_group_at_exit() -> None:
    """Destroy the process group when the interpreter exits, before its threads are torn down.

    Left to interpreter teardown, gloo's threads can abort a rank that finished its work
    ("terminate called without an active exception", SIGABRT), and the launcher then reports a
    successful run as failed (2 of 8 two-rank CPU launches here)."""
    global _GROUP_END_REGISTERED
    if _GROUP_END_REGISTERED:
        return
    _GROUP_END_REGISTERED = True

    def end() -> None:
        dist = sys.modules.get("torch.distributed")  # never import torch just to exit
        if dist is not None and dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()

    atexit.register(end)


def check_process_group(num_processes: int) -> None:
    """Refuse to train when the launcher started more processes than joined the process group."""
    launched = launched_processes()
    if launched > 1 and num_processes != launched:
        raise ProcessGroupError(
            f"the launcher started {launched} processes (WORLD_SIZE={launched}) but this one "
            f"trains in a group of {num_processes}: each process would train alone on all the "
            "data and write the same output directory",
            fix="On a machine without GPUs launch with `ACCELERATE_USE_CPU=true torchrun "
            "--nproc_per_node N -m cai.cli.app train ...` (ACCELERATE_USE_CPU=false forces a GPU "
            "launch); with GPUs check that torch sees them (torch.cuda.is_available()).",
        )


@contextlib.contextmanager
def one_writer(output_dir: str | Path, num_processes: int, main: bool) -> Iterator[None]:
    """The guard around a training run: the process group is whole, and the main process holds
    the output directory's lock until the run ends (other ranks write nothing there)."""

    check_process_group(num_processes)
    if not main:
        yield
        return
    with DirectoryLock(output_dir, "training output directory"):
        yield


# ---- the test-only data log --------------------------------------------------------------------
def debug_data_log_enabled() -> bool:
    return os.environ.get(DEBUG_DATA_LOG, "").strip().lower() not in ("", "0", "false", "no")


def state_dict_digest(module) -> str:
    """SHA-256 over every tensor of `module.state_dict()` (names and bytes, in name order).

    Equal digests on two ranks mean bit-identical replicas (DDP); under FSDP or ZeRO-3 each rank
    holds a shard, so the digests differ by design there.
    """
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        data = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(data.view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class DataLog:
    """Appends what one process trained on to `output_dir/debug/data-rank{R}.jsonl` when
    CAI_DEBUG_DATA_LOG is set; every method is a no-op otherwise."""

    def __init__(self, output_dir: str | Path, rank: int, enabled: bool | None = None) -> None:
        self.enabled = debug_data_log_enabled() if enabled is None else enabled
        self.rank = rank
        self.path = Path(output_dir) / DEBUG_DIR / f"data-rank{rank}.jsonl"

    def _write(self, row: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps({"rank": self.rank, **row}) + "\n")

    def batch(self, step: int, ids: list[int]) -> None:
        """The examples (row numbers or prompt indices) this process used for `step`."""
        if self.enabled:
            self._write({"kind": "batch", "step": step, "ids": [int(i) for i in ids]})

    def weights(self, step: int, module) -> None:
        """A digest of this process's weights after the optimiser steps of `step`."""
        if self.enabled:
            self._write({"kind": "weights", "step": step, "sha256": state_dict_digest(module)})

    def metrics(self, step: int, values: dict[str, Any]) -> None:
        if self.enabled:
            shown = {k: v for k, v in values.items() if isinstance(v, int | float)}
            self._write({"kind": "metrics", "step": step, "values": shown})


def read_data_log(output_dir: str | Path) -> dict[int, list[dict[str, Any]]]:
    """Every rank's debug data log in `output_dir`: {rank: [rows in order]}."""
    found: dict[int, list[dict[str, Any]]] = {}
    for path in sorted((Path(output_dir) / DEBUG_DIR).glob("data-rank*.jsonl")):
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        found[int(path.stem.removeprefix("data-rank"))] = rows
    return found


def trainer_debug_callback(rank: int, output_dir: str | Path):
    """A transformers TrainerCallback writing weight digests and logged metrics to the data log
    (None when CAI_DEBUG_DATA_LOG is unset)."""
    if not debug_data_log_enabled():
        return None
    from transformers import TrainerCallback

    log = DataLog(output_dir, rank, enabled=True)

    class DataLogCallback(TrainerCallback):
        def on_step_end(self, args, state, control, model=None, **kwargs):
            if model is not None:
                log.weights(state.global_step, model)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                log.metrics(state.global_step, logs)

    return DataLogCallback()


def save_trained_model(trainer, output_dir: str | Path, merge_lora: bool) -> None:
    """Save model + tokenizer from a transformers Trainer once: `trainer.save_model` is
    collective (every rank calls it; FSDP / ZeRO-3 gather the weights) and writes on the main
    process only; a LoRA adapter to merge is merged and saved on the main process alone."""
    if not merge_lora:
        trainer.save_model(str(output_dir))
        return
    model = trainer.accelerator.unwrap_model(trainer.model)
    if trainer.is_world_process_zero():
        model.merge_and_unload().save_pretrained(str(output_dir))
        trainer.processing_class.save_pretrained(str(output_dir))
