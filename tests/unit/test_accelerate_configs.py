"""The shipped accelerate configs load with accelerate's own reader, and the CPU recipes the
docs give for two processes really run two ranks that talk to each other (and the one that
does not is caught)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFIGS = sorted((Path(__file__).resolve().parents[2] / "examples" / "accelerate").glob("*.yaml"))


def test_configs_are_shipped():
    assert {p.stem for p in CONFIGS} >= {"ddp", "zero2", "zero3", "fsdp"}


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_config_loads_with_accelerate(path):
    from accelerate.commands.config.config_args import load_config_from_file

    config = load_config_from_file(str(path))
    expected = {"ddp": "MULTI_GPU", "zero2": "DEEPSPEED", "zero3": "DEEPSPEED", "fsdp": "FSDP"}
    assert config.distributed_type.value == expected[path.stem]
    assert config.num_processes >= 2 and config.mixed_precision == "bf16"
    if path.stem.startswith("zero"):
        ds = config.deepspeed_config
        assert ds["zero_stage"] == int(path.stem[-1])
        # left to the run's own config (PPO and TRL fill DeepSpeed's "auto" from it)
        assert "gradient_accumulation_steps" not in ds
        # a frozen reference / reward model beside the trained one must load whole
        assert ds["zero3_init_flag"] is False
    if path.stem == "zero3":
        assert config.deepspeed_config["zero3_save_16bit_model"] is True


def test_zero_configs_become_a_deepspeed_plugin_that_ppo_can_complete():
    """What `accelerate launch --config_file zero3.yaml` hands the Accelerator, completed by
    PPO with the sizes it cannot infer from a dataloader (DeepSpeed itself needs GPUs)."""
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DeepSpeedPlugin

    from cai.train.ppo.config import PPOConfig
    from cai.train.ppo.setup import PPOSetupError, configure_deepspeed

    ds = load_config_from_file(str(CONFIGS[0].with_name("zero3.yaml"))).deepspeed_config
    plugin = DeepSpeedPlugin(
        zero_stage=ds["zero_stage"],
        zero3_init_flag=ds["zero3_init_flag"],
        zero3_save_16bit_model=ds["zero3_save_16bit_model"],
    )

    class State:
        deepspeed_plugin = plugin

    class Acc:
        state = State()
        num_processes = 4

    config = PPOConfig(
        model="m", batch_size=8, mini_batch_size=4, gradient_accumulation_steps=2, max_grad_norm=0.5
    )
    configure_deepspeed(Acc(), config)
    assert plugin.deepspeed_config["train_micro_batch_size_per_gpu"] == 2
    assert plugin.deepspeed_config["gradient_accumulation_steps"] == 2
    assert plugin.deepspeed_config["train_batch_size"] == 2 * 2 * 4
    assert plugin.deepspeed_config["gradient_clipping"] == 0.5
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"]

    plugin.deepspeed_config["gradient_accumulation_steps"] = 1
    with pytest.raises(PPOSetupError, match="gradient_accumulation_steps"):
        configure_deepspeed(Acc(), config)


@pytest.mark.slow
def test_two_cpu_processes_reduce_across_ranks(tmp_path):
    script = tmp_path / "ranks.py"
    script.write_text(
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from accelerate import Accelerator\n"
        "acc = Accelerator()\n"
        "total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), reduction='sum')\n"
        "Path(sys.argv[1], f'rank{acc.process_index}.txt').write_text(\n"
        "    f'rank {acc.process_index} of {acc.num_processes}: {total.item()}')\n"
        # a script that leaves its process group to interpreter teardown can abort at exit
        "torch.distributed.destroy_process_group()\n"
    )
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        # --standalone: a local rendezvous on a free port (a fixed port may be taken)
        [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert _rank_lines(tmp_path) == ["rank 0 of 2: 3.0", "rank 1 of 2: 3.0"]


def _rank_lines(directory: Path) -> list[str]:
    """What each rank wrote to its own file (ranks printing to one pipe can interleave)."""
    return [(directory / f"rank{i}.txt").read_text() for i in range(2)]


def _ranks_script(tmp_path) -> Path:
    script = tmp_path / "ranks.py"
    script.write_text(
        "import sys, torch\n"
        "from pathlib import Path\n"
        "from accelerate import Accelerator\n"
        "from cai.train.distributed import check_process_group, prepare_launch\n"
        "prepare_launch()\n"
        "acc = Accelerator()\n"
        "check_process_group(acc.num_processes)\n"
        "total = acc.reduce(torch.tensor([float(acc.process_index + 1)]), reduction='sum')\n"
        "Path(sys.argv[1], f'rank{acc.process_index}.txt').write_text(\n"
        "    f'rank {acc.process_index} of {acc.num_processes}: {total.item()}')\n"
        # no destroy_process_group here: cai's prepare_launch ends the group at exit
    )
    return script


@pytest.mark.slow
def test_accelerate_launch_multi_gpu_flag_runs_two_cpu_ranks(tmp_path):
    """The accelerate form of the CPU recipe: `--multi_gpu` picks accelerate's torchrun launcher
    and ACCELERATE_USE_CPU=true puts its ranks on CPU in one gloo group. (`--cpu
    --num_processes 2` would start a single process: accelerate's simple launcher.)"""
    accelerate = Path(sys.executable).with_name("accelerate")
    env = {**os.environ, "ACCELERATE_USE_CPU": "true", "OMP_NUM_THREADS": "1"}
    command = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2"]
    command += ["--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no"]
    command += ["--main_process_port", str(_free_port()), str(_ranks_script(tmp_path))]
    command += [str(tmp_path)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert _rank_lines(tmp_path) == ["rank 0 of 2: 3.0", "rank 1 of 2: 3.0"]


@pytest.mark.slow
def test_torchrun_without_the_cpu_flag_is_completed_or_refused(tmp_path):
    """torchrun on a machine without GPUs: cai sets ACCELERATE_USE_CPU itself (two ranks); an
    explicit ACCELERATE_USE_CPU=false leaves two lone "rank 0 of 1" copies, which cai refuses."""
    torchrun = Path(sys.executable).with_name("torchrun")
    script = _ranks_script(tmp_path)
    base = {k: v for k, v in os.environ.items() if k != "ACCELERATE_USE_CPU"}
    command = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(tmp_path)]
    done = subprocess.run(
        command, env={**base, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    assert _rank_lines(tmp_path) == ["rank 0 of 2: 3.0", "rank 1 of 2: 3.0"]

    env = {**base, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "false"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "the launcher started 2 processes (WORLD_SIZE=2)" in done.stderr + done.stdout


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
