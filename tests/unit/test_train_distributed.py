"""Launch checks, the one-writer lock and the debug data log of `cai.train.distributed`."""

from __future__ import annotations

import pytest

from cai.errors import OutputDirError
from cai.train import distributed
from cai.train.distributed import (
    DataLog,
    ProcessGroupError,
    check_process_group,
    one_writer,
    prepare_launch,
    read_data_log,
    state_dict_digest,
)

LAUNCH_VARIABLES = ("WORLD_SIZE", "RANK", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "ACCELERATE_USE_CPU")


@pytest.fixture()
def launch_env(monkeypatch):
    for name in LAUNCH_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_launcher_sizes_and_ranks(launch_env):
    assert distributed.launched_processes() == 1 and distributed.is_main_process()
    launch_env.setenv("WORLD_SIZE", "4")
    launch_env.setenv("RANK", "3")
    assert distributed.launched_processes() == 4 and not distributed.is_main_process()
    launch_env.delenv("WORLD_SIZE")
    launch_env.setenv("OMPI_COMM_WORLD_SIZE", "2")
    assert distributed.launched_processes() == 2


def test_prepare_launch_puts_a_gpu_less_multi_process_launch_on_cpu(launch_env):
    launch_env.setattr(distributed, "_accelerator_available", lambda: False)
    prepare_launch()
    assert "ACCELERATE_USE_CPU" not in distributed.os.environ  # one process: nothing to do
    launch_env.setenv("WORLD_SIZE", "2")
    prepare_launch()
    assert distributed.os.environ["ACCELERATE_USE_CPU"] == "true"


def test_prepare_launch_keeps_gpus_and_explicit_choices(launch_env):
    launch_env.setenv("WORLD_SIZE", "2")
    launch_env.setattr(distributed, "_accelerator_available", lambda: True)
    prepare_launch()
    assert "ACCELERATE_USE_CPU" not in distributed.os.environ
    launch_env.setattr(distributed, "_accelerator_available", lambda: False)
    launch_env.setenv("ACCELERATE_USE_CPU", "false")
    prepare_launch()
    assert distributed.os.environ["ACCELERATE_USE_CPU"] == "false"


def test_a_process_group_smaller_than_the_launch_is_refused(launch_env):
    check_process_group(1)
    launch_env.setenv("WORLD_SIZE", "2")
    check_process_group(2)
    with pytest.raises(ProcessGroupError, match="started 2 processes") as err:
        check_process_group(1)
    assert "ACCELERATE_USE_CPU=true torchrun" in str(err.value)


def test_one_writer_locks_the_output_dir_on_the_main_process(launch_env, tmp_path):
    out = tmp_path / "run"
    with one_writer(out, 1, main=True):
        second = one_writer(out, 1, main=True)
        with pytest.raises(OutputDirError, match="in use by another cai process"), second:
            pass
        with one_writer(out, 1, main=False):  # other ranks never take the lock
            pass
    with one_writer(out, 1, main=True):  # released at the end of the run
        pass


def test_data_log_writes_only_when_asked(launch_env, tmp_path):
    import torch

    launch_env.delenv(distributed.DEBUG_DATA_LOG, raising=False)
    DataLog(tmp_path, 0).batch(1, [1, 2])
    assert read_data_log(tmp_path) == {}

    launch_env.setenv(distributed.DEBUG_DATA_LOG, "1")
    module = torch.nn.Linear(3, 2).to(torch.bfloat16)
    for rank in (0, 1):
        log = DataLog(tmp_path, rank)
        log.batch(1, [rank, rank + 2])
        log.weights(1, module)
        log.metrics(1, {"loss": 0.5, "note": "skipped"})
    logs = read_data_log(tmp_path)
    assert sorted(logs) == [0, 1]
    assert [r["kind"] for r in logs[1]] == ["batch", "weights", "metrics"]
    assert logs[1][0]["ids"] == [1, 3] and logs[1][2]["values"] == {"loss": 0.5}
    assert logs[0][1]["sha256"] == logs[1][1]["sha256"] == state_dict_digest(module)
    with torch.no_grad():
        module.bias[0] += 1
    assert state_dict_digest(module) != logs[0][1]["sha256"]
