"""Quiet runs: engine and library logs go to a file in the run directory, not the terminal.

A user should see one progress bar per stage, the warnings that matter, and the summary. vLLM
(its engine processes included), transformers, TRL and datasets log a great deal at INFO;
`route_library_logs(run_dir)` sends all of it, Python warnings included, to
`run_dir/logs/engine.log` and lets only errors through to the terminal. `cai --debug` (or `CAI_DEBUG=1`) keeps everything live.

vLLM configures its logging when it is first imported, in every process it starts, from the
environment; so the routing is an environment variable pointing at a logging config file,
set before vLLM is imported (cai imports it lazily, inside the functions that need it), plus
a direct reconfiguration for a process where it was imported already.
"""

from __future__ import annotations

import json
import logging
import logging.config
import os
import sys
from pathlib import Path

LOG_DIR = "logs"
LOG_FILE = "engine.log"
_LIBRARIES = ("vllm", "transformers", "trl", "datasets", "accelerate", "torch", "httpx")
#: Python warnings (`warnings.warn`), which libraries use for advice such as TRL's "supports
#: vLLM versions ..." or torch's pin_memory note: to the log file with everything else.
_WARNINGS_LOGGER = "py.warnings"
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
        for name in (*_LIBRARIES, _WARNINGS_LOGGER)
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
        from cai.debug import debug_enabled

        verbose = debug_enabled()
    if verbose:
        return None
    log_dir = Path(run_dir) / LOG_DIR
    log_dir.mkdir(parents=True, exist_ok=True)
    log_file = log_dir / LOG_FILE
    config = _logging_config(log_file.resolve())
    config_file = log_dir / "logging.json"
    config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
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
    return log_file
