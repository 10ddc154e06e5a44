"""Quiet runs: engine and library logs go to a file in the run directory, not the terminal.

A user should see one progress bar per stage, the warnings that matter, and the summary. vLLM
(its engine processes included), transformers, TRL and datasets log a great deal at INFO;
`route_library_logs(run_dir)` sends all of it, Python warnings included, to
`run_dir/logs/engine.log` and lets only errors through to the terminal. `cai --debug` (or `CAI_DEBUG=1`) keeps everything live.

vLLM configures its logging when it is first imported, in every process it starts, from the
environment; so the routing is an environment variable pointing at a logging config file,
set before vLLM is imported (cai imports it lazily, inside the functions that need it), plus
a direct reconfiguration for a process where it was imported already.

Some lines escape any logging config: vLLM's engine processes log at import time, before
vLLM configures their logging (Triton's "doesn't include CPU backend"), and torch's C++ code
prints straight to file descriptor 2 (the CPU worker's "NUMA binding" warning). Those
processes inherit their output from the process that starts them, so
`engine_output_to_log()` points this process's descriptors 1 and 2 at the log file while an
engine starts: its processes keep the log as their terminal, and this one gets its own back.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from cai.debug import debug_enabled

LOG_DIR = "logs"
LOG_FILE = "engine.log"
#: Set while library logs are routed: the log file, for the engine processes started later.
LOG_FILE_ENV = "CAI_ENGINE_LOG"
_LIBRARIES = ("vllm", "transformers", "trl", "datasets", "accelerate", "torch", "httpx")
#: Python warnings (`warnings.warn`), which libraries use for advice such as TRL's "supports
#: vLLM versions ..." or torch's pin_memory note: to the log file with everything else.
_WARNINGS_LOGGER = "py.warnings"
#: Every metrics dict a trainer logs (`quiet_trainer`), one line per logging step.
_METRICS_LOGGER = "cai.training"
#: The loggers whose records go to the log file (errors to the terminal as well).
ROUTED_LOGGERS = (*_LIBRARIES, _WARNINGS_LOGGER, _METRICS_LOGGER)
_CHILD_WARNINGS = (
    "ignore::DeprecationWarning,ignore::FutureWarning,"
    "ignore::UserWarning:multiprocessing.resource_tracker"
)


def _logging_config(log_file: Path) -> dict:
    handlers = {
        "file": {
            "class": "logging.FileHandler",
            "filename": str(log_file),
            "mode": "a",
            "encoding": "utf-8",
            "formatter": "plain",
            "level": "DEBUG",
        },
        "terminal": {
            "class": "logging.StreamHandler",
            "stream": "ext://sys.stderr",
            "formatter": "plain",
            "level": "ERROR",
        },
    }
    loggers = {
        name: {"handlers": ["file", "terminal"], "level": "INFO", "propagate": False}
        for name in ROUTED_LOGGERS
    }
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"plain": {"format": "%(asctime)s %(name)s %(levelname)s %(message)s"}},
        "handlers": handlers,
        "loggers": loggers,
    }


def route_library_logs(run_dir: str | Path, verbose: bool | None = None) -> Path | None:
    """Send library logs of this process and the engines it starts to run_dir/logs/engine.log.

    Returns the log file, or None when `verbose` (logs stay live). Safe to call more than once.
    """
    if verbose is None:
        verbose = debug_enabled()
    if verbose:
        return None
    log_dir = Path(run_dir) / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / LOG_FILE
    config = _logging_config(log_file.resolve())
    config_file = log_dir / "logging.json"
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    os.environ[LOG_FILE_ENV] = str(log_file.resolve())
    os.environ["VLLM_CONFIGURE_LOGGING"] = "1"
    os.environ["VLLM_LOGGING_CONFIG_PATH"] = str(config_file.resolve())
    # processes started from here on (vLLM's engine core and workers, multiprocessing's
    # resource tracker) do not share this process's warning capture: keep their library
    # advice (deprecations, "leaked shared_memory" at exit) off the terminal too
    os.environ.setdefault("PYTHONWARNINGS", _CHILD_WARNINGS)
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    logging.config.dictConfig(config)
    logging.captureWarnings(True)
    if "datasets" in sys.modules:
        import datasets

        datasets.disable_progress_bars()
    else:
        os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    # transformers' "Loading weights" / "Writing model shards" bars, once per model load or
    # save: a loop loads and saves models many times a round
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()
    return log_file


def quiet_trainer(trainer) -> None:
    """When library logs are routed: a transformers/TRL trainer shows one step bar (its postfix
    the latest loss) instead of printing every logged metrics dict, and the metrics go to the
    engine log. Unrouted (`--debug`), the trainer keeps its own output."""
    if not os.environ.get(LOG_FILE_ENV):
        return
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    trainer.add_callback(_step_bar())


def _step_bar():
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    metrics_log = logging.getLogger(_METRICS_LOGGER)

    class StepBar(TrainerCallback):
        def __init__(self) -> None:
            self.bar = None

        def on_train_begin(self, args, state, control, **kwargs):
            if state.is_world_process_zero:
                self.bar = tqdm(
                    total=state.max_steps, initial=state.global_step, desc="training", unit="step"
                )

        def on_step_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero or not logs:
                return
            metrics_log.info("step %d: %s", state.global_step, logs)
            if self.bar is not None and isinstance(logs.get("loss"), int | float):
                self.bar.set_postfix(loss=f"{logs['loss']:.4g}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            if self.bar is not None:
                self.bar.close()
                self.bar = None

    return StepBar()


@contextmanager
def engine_output_to_log() -> Iterator[None]:
    """While the body starts engine processes, their stdout and stderr become the engine log
    (when library logs are routed; otherwise nothing changes). This process's own output goes
    back to where it was on exit, errors included."""
    log_file = os.environ.get(LOG_FILE_ENV)
    if not log_file:
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = (os.dup(1), os.dup(2))
    try:
        with open(log_file, "ab") as log:
            os.dup2(log.fileno(), 1)
            os.dup2(log.fileno(), 2)
        yield
    except BaseException:
        _restore(saved)
        # the engine's own account of why it failed went to the log, not the terminal
        print(f"the engine's output is in {log_file}", file=sys.stderr)
        raise
    else:
        _restore(saved)


def _restore(saved: tuple[int, int]) -> None:
    sys.stdout.flush()
    sys.stderr.flush()
    for fd, original in zip((1, 2), saved, strict=True):
        os.dup2(original, fd)
        os.close(original)
