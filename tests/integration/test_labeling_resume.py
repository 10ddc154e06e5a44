"""Kill -9 `cai run` mid-sampling and mid-judging, rerun, and get the uninterrupted dataset.

The CLI runs in a subprocess on the scripted backend (deterministic, content-dependent
scores, slowed down so the kill lands mid-run); only `make_backend` is redirected to it, so
everything else is the real command path.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

DRIVER = textwrap.dedent(
    """
    import hashlib, sys, time
    import cai.backends
    from cai.backends.scripted import ScriptedBackend

    def respond(prompt, params, index):
        time.sleep(0.03)
        text = prompt[-1]["content"]
        digest = hashlib.sha256(f"{text}|{params.seed}|{index}".encode()).hexdigest()[:10]
        return f"answer {digest}"

    def score(request):
        time.sleep(0.004)
        text = "".join(m["content"] for m in request.messages) + request.assistant_prefix
        digest = hashlib.sha256(text.encode()).digest()
        return [digest[0] / 64, digest[1] / 64]

    cai.backends.make_backend = lambda spec: ScriptedBackend(respond, score, model_id="scripted-kill")
    from cai.cli.app import main
    sys.argv = ["cai", "run", *sys.argv[1:]]
    main()
    """
)


def start(tmp_path: Path, config: Path, out: Path) -> subprocess.Popen:
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER)
    return subprocess.Popen(
        [sys.executable, str(driver), str(config), "--out", str(out)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )


def kill_when(proc: subprocess.Popen, ready, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, f"finished before the kill point:\n{proc.stderr.read()}"
        assert time.monotonic() < deadline, "kill point never reached"
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def chunks(path: Path) -> int:
    return len(list((path / "chunks").glob("*.jsonl"))) if (path / "chunks").exists() else 0


def test_sigkill_anywhere_then_rerun_equals_an_uninterrupted_run(tmp_path):
    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for i in range(24):
            handle.write(json.dumps({"prompt": f"Prompt {i}: how should I do thing {i}?"}) + "\n")
    config = tmp_path / "pipeline.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "prompts": {"path": "prompts.jsonl"},
                "policy": {"kind": "scripted"},
                "sample": {"n": 3, "max_tokens": 16},
                "judge": {"principles_per_pair": 2},
                "preferences": {"format": "jsonl", "kwise": "all_pairs"},
                "chunk_size": 4,
            }
        )
    )
    clean = start(tmp_path, config, tmp_path / "clean")
    assert clean.wait(timeout=300) == 0, clean.stderr.read()

    out = tmp_path / "killed"
    first = start(tmp_path, config, out)
    kill_when(first, lambda: chunks(out / "samples") >= 2)
    assert not (out / "preferences.jsonl").exists()
    second = start(tmp_path, config, out)
    kill_when(second, lambda: chunks(out / "judgments") >= 2)
    assert chunks(out / "judgments") < 6
    third = start(tmp_path, config, out)
    stdout, stderr = third.communicate(timeout=300)
    assert third.returncode == 0, stderr
    assert "dataset:" in stdout

    clean_rows = (tmp_path / "clean" / "preferences.jsonl").read_text()
    assert clean_rows and (out / "preferences.jsonl").read_text() == clean_rows
    assert (out / "filtered.jsonl").read_text() == (
        tmp_path / "clean" / "filtered.jsonl"
    ).read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stages"]["sample"]["prompts_resumed"] == 24
    assert 0 < summary["stages"]["judge"]["prompts_resumed"] < 24
