"""The shipped accelerate configs load with accelerate's own reader, and the CPU recipe the
docs give for two processes really runs two ranks that talk to each other."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "accelerate").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"ddp", "zero2", "fsdp"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "fsdp": "FSDP"}[path.stem]
    assert config.distributed_type.value == expected
    assert config.num_processes >= 2 and config.mixed_precision == "bf16"
    if path.stem == "zero2":
        assert config.deepspeed_config["zero_stage"] == 2


@pytest.mark.slow
def test_two_cpu_processes_reduce_across_ranks(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(
        "import torch\n"
        "from accelerate import Accelerator\n"
        "acc = Accelerator()\n"
        "total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), reduction='sum')\n"
        "print(f'rank {acc.process_index} of {acc.num_processes}: {total.item()}')\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [str(torchrun), "--nproc_per_node", "2", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0 of 2: 3.0" in done.stdout and "rank 1 of 2: 3.0" in done.stdout
