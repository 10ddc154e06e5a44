"""`cai serve` processes for the HTTP benchmarks, and what their logs say about the load.

Each server runs in a session of its own, so stopping it (or SIGKILLing a client run in the
same way) takes the engine processes it started along with it. The server's log (uvicorn's
access lines) is where the benchmarks count the requests a run sent, the same way for cai
and for a peer tool.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

SERVED_NAME = "tiny"
_POST = re.compile(r'"POST (/[^ ?"]*)[^"]*" (\d{3})')


def free_port() -> int:
    """A TCP port nothing listens on right now (the OS picks it)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def count_posts(log_text: str) -> dict[str, int]:
    """POST requests in a server's access log, by `path status` (e.g. `/v1/completions 200`)."""
    counts: dict[str, int] = {}
    for path, status in _POST.findall(log_text):
        key = f"{path} {status}"
        counts[key] = counts.get(key, 0) + 1
    return counts


def cai_command() -> str:
    """The `cai` entry point of the virtualenv this script runs in."""
    return str(Path(sys.executable).parent / "cai")


@dataclass
class Server:
    """One `cai serve` process and where it logs."""

    process: subprocess.Popen
    port: int
    log: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_text(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace") if self.log.exists() else ""

    def stop(self) -> None:
        stop_group(self.process, signal.SIGTERM, wait_s=30)


def stop_group(process: subprocess.Popen, sig: int, wait_s: float = 30) -> None:
    """Signal the process's whole session; SIGKILL it if it outlives `wait_s`."""
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, sig)
        process.wait(timeout=wait_s)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
    except ProcessLookupError:
        pass


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
            return answer.status == 200
    except (urllib.error.URLError, OSError):
        return False


def launch_server(model_dir: Path, log: Path, max_model_len: int = 2048) -> Server:
    """Start `cai serve MODEL` on a free port (float32 like the offline benchmarks)."""
    port = free_port()
    command = [
        cai_command(), "serve", str(model_dir), "--port", str(port), "--dtype", "float32",
        "--max-model-len", str(max_model_len), "--served-model-name", SERVED_NAME,
        "--log-file", str(log),
    ]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    return Server(process, port, log)


def wait_healthy(servers: list[Server], timeout_s: float = 900) -> None:
    """Block until every server answers /health; stop them all if one dies or time runs out."""
    deadline = time.monotonic() + timeout_s
    waiting = list(servers)
    while waiting:
        waiting = [s for s in waiting if not _healthy(s.port)]
        dead = [s for s in waiting if s.process.poll() is not None]
        if dead or time.monotonic() > deadline:
            for server in servers:
                server.stop()
            late = dead or waiting
            raise RuntimeError(
                f"`cai serve` did not come up on port {late[0].port}; see {late[0].log}"
            )
        time.sleep(1)


def start_servers(model_dir: Path, logs: list[Path]) -> list[Server]:
    """One server per log file, started together (engine starts overlap), once all are healthy."""
    servers = [launch_server(model_dir, log) for log in logs]
    wait_healthy(servers)
    return servers


def start_server(model_dir: Path, log: Path) -> Server:
    return start_servers(model_dir, [log])[0]


def exit_on_sigterm() -> None:
    """Turn SIGTERM (a `timeout`, a killed parent) into SystemExit, so `finally` blocks stop
    the servers this process started instead of leaving them running."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
