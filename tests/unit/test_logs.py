"""Quiet runs: library logs and Python warnings go to run_dir/logs/engine.log; errors still
reach the terminal; --debug keeps everything live."""

from __future__ import annotations

import logging
import subprocess
import sys
import warnings

import pytest

from cai.logs import engine_output_to_log, route_library_logs


def test_library_logs_and_warnings_go_to_the_file_errors_to_the_terminal(tmp_path, capsys):
    log_file = route_library_logs(tmp_path, verbose=False)
    assert log_file == tmp_path / "logs" / "engine.log"
    logging.getLogger("trl.trainer").info("an info line from a library")
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("TRL currently supports vLLM versions from 0.22.0", UserWarning, 2)
    logging.getLogger("vllm.engine").error("an engine error")
    for handler in logging.getLogger("trl").handlers:
        handler.flush()
    text = log_file.read_text(encoding="utf-8")
    assert "an info line from a library" in text
    assert "TRL currently supports vLLM versions" in text
    assert "an engine error" in text
    err = capsys.readouterr().err
    assert "an engine error" in err
    assert "an info line" not in err and "TRL currently supports" not in err


def test_verbose_leaves_logging_alone(tmp_path):
    assert route_library_logs(tmp_path, verbose=True) is None
    assert not (tmp_path / "logs").exists()


CHILD = "import os; os.write(2, b'a C-level warning\\n'); print('an import-time line', flush=True)"


def test_processes_an_engine_start_spawns_write_to_the_log(tmp_path, capfd):
    log_file = route_library_logs(tmp_path, verbose=False)
    with engine_output_to_log():
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    print("this process writes to the terminal again")
    out, err = capfd.readouterr()
    assert "a C-level warning" not in err and "an import-time line" not in out
    assert "this process writes to the terminal again" in out
    text = log_file.read_text(encoding="utf-8")
    assert "a C-level warning" in text and "an import-time line" in text


def test_a_failed_engine_start_names_the_log(tmp_path, capfd):
    log_file = route_library_logs(tmp_path, verbose=False)
    with pytest.raises(RuntimeError, match="no engine"), engine_output_to_log():
        raise RuntimeError("no engine")
    assert str(log_file) in capfd.readouterr().err


def test_without_routing_the_engine_output_stays_live(capfd):
    with engine_output_to_log():
        subprocess.run([sys.executable, "-c", CHILD], check=True)
    out, err = capfd.readouterr()
    assert "a C-level warning" in err and "an import-time line" in out


class _Trainer:
    """Just the callback list of a transformers Trainer."""

    def __init__(self, callbacks):
        self.callbacks = list(callbacks)

    def remove_callback(self, kind):
        self.callbacks = [c for c in self.callbacks if not isinstance(c, kind)]

    def add_callback(self, callback):
        self.callbacks.append(callback)


def test_a_routed_trainer_logs_metrics_to_the_file_and_shows_one_bar(tmp_path, capsys):
    from types import SimpleNamespace

    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from cai.logs import quiet_trainer

    log_file = route_library_logs(tmp_path, verbose=False)
    trainer = _Trainer([PrinterCallback(), ProgressCallback()])
    quiet_trainer(trainer)
    [bar] = trainer.callbacks
    state = SimpleNamespace(is_world_process_zero=True, max_steps=4, global_step=0)
    bar.on_train_begin(None, state, None)
    for step in range(1, 5):
        state.global_step = step
        bar.on_step_end(None, state, None)
        bar.on_log(None, state, None, logs={"loss": 0.5 / step, "grad_norm": 1.0})
    bar.on_train_end(None, state, None)
    captured = capsys.readouterr()
    assert "grad_norm" not in captured.out + captured.err
    assert "4/4" in captured.err
    assert "step 4: {'loss': 0.125, 'grad_norm': 1.0}" in log_file.read_text(encoding="utf-8")


def test_an_unrouted_trainer_keeps_its_own_output():
    from transformers.trainer_callback import PrinterCallback

    from cai.logs import quiet_trainer

    printer = PrinterCallback()
    trainer = _Trainer([printer])
    quiet_trainer(trainer)
    assert trainer.callbacks == [printer]
