"""scripts/gpu-check.sh where there is no GPU: its Python parts import, its options parse, and
it skips (exit 0, or 1 with --require-gpu) instead of failing half-way."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "gpu-check.sh"


def _run(*args: str, tmp_path: Path, path_first: Path | None = None):
    env = {**os.environ, "PYTHON": sys.executable}
    if path_first is not None:
        env["PATH"] = f"{path_first}{os.pathsep}{env['PATH']}"
    return subprocess.run(
        ["bash", str(SCRIPT), "--out", str(tmp_path / "out"), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_check_only_imports_the_python_parts(tmp_path):
    done = _run("--check-only", tmp_path=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "gpu-check: check-only: verified" in done.stdout
    assert (tmp_path / "out" / "gpu_check.py").is_file()


def test_without_a_gpu_it_skips_and_says_so(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "nvidia-smi").write_text("#!/bin/sh\nexit 9\n")
    (fake / "nvidia-smi").chmod(0o755)
    done = _run(tmp_path=tmp_path, path_first=fake)
    assert done.returncode == 0
    assert done.stdout.strip() == "gpu-check: skipped: no GPU (nvidia-smi failed)"
    assert _run("--require-gpu", tmp_path=tmp_path, path_first=fake).returncode == 1


def test_unknown_options_are_refused(tmp_path):
    done = _run("--frobnicate", tmp_path=tmp_path)
    assert done.returncode == 2 and "unknown option --frobnicate" in done.stderr
