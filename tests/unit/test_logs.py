"""Quiet runs: library logs and Python warnings go to run_dir/logs/engine.log; errors still
reach the terminal; --debug keeps everything live."""

from __future__ import annotations

import logging
import warnings

from cai.logs import route_library_logs


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
