"""Start and stop vLLM's OpenAI-compatible server as a child process.

`vllm serve` looks up the distribution named `vllm` and fails with the CPU build, so we
start `python -m vllm.entrypoints.openai.api_server`, which works with both builds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from threading import Thread

from cai.errors import CaiError
from cai.platform import prepare_vllm_env


class ServerStartError(CaiError, RuntimeError):
    """The server exited or did not become healthy in time."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


@dataclass
class ServerOptions:
    model: str
    host: str = "127.0.0.1"
    port: int | None = None
    api_key: str | None = None
    served_model_name: str | None = None
    revision: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = 1
    pipeline_parallel_size: int = 1
    enforce_eager: bool = False
    gpu_memory_utilization: float | None = None
    prefix_caching: bool = True
    seed: int = 0
    extra_args: list[str] = field(default_factory=list)

    def command(self, port: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "vllm.entrypoints.openai.api_server",
            "--model",
            self.model,
            "--host",
            self.host,
            "--port",
            str(port),
            "--dtype",
            self.dtype,
            "--seed",
            str(self.seed),
            "--tensor-parallel-size",
            str(self.tensor_parallel_size),
            "--pipeline-parallel-size",
            str(self.pipeline_parallel_size),
        ]
        if self.served_model_name:
            cmd += ["--served-model-name", self.served_model_name]
        if self.revision:
            cmd += ["--revision", self.revision]
        if self.max_model_len:
            cmd += ["--max-model-len", str(self.max_model_len)]
        if self.enforce_eager:
            cmd.append("--enforce-eager")
        if self.gpu_memory_utilization is not None:
            cmd += ["--gpu-memory-utilization", str(self.gpu_memory_utilization)]
        cmd.append(
            "--enable-prefix-caching" if self.prefix_caching else "--no-enable-prefix-caching"
        )
        return cmd + list(self.extra_args)


class VLLMServer:
    """A running vLLM OpenAI-compatible server; a context manager that always stops it."""

    def __init__(self, options: ServerOptions, log_path: str | Path | None = None) -> None:
        self.options = options
        self.port = options.port or free_port(options.host)
        self.process: subprocess.Popen | None = None
        self.log_path = Path(log_path) if log_path else None
        self._tail: deque[str] = deque(maxlen=40)

    @property
    def base_url(self) -> str:
        return f"http://{self.options.host}:{self.port}/v1"

    def start(self, timeout_s: float = 600.0) -> VLLMServer:
        env = prepare_vllm_env(dict(os.environ))
        if self.options.api_key:
            env["VLLM_API_KEY"] = self.options.api_key
        self.process = subprocess.Popen(
            self.options.command(self.port),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=env,
            start_new_session=True,
        )
        Thread(target=self._pump, daemon=True).start()
        self.wait_healthy(timeout_s)
        return self

    def _pump(self) -> None:
        assert self.process and self.process.stdout
        log = self.log_path.open("a") if self.log_path else None
        for line in self.process.stdout:
            self._tail.append(line.rstrip())
            if log:
                log.write(line)
                log.flush()
        if log:
            log.close()

    def wait_healthy(self, timeout_s: float) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        health = f"http://{self.options.host}:{self.port}/health"
        while time.monotonic() < deadline:
            if self.process and self.process.poll() is not None:
                raise ServerStartError(
                    f"vLLM server for {self.options.model!r} exited with code "
                    f"{self.process.returncode} before becoming healthy. Last output:\n"
                    + "\n".join(self._tail),
                    fix="The last lines above say why (a bad model path, no free memory, a "
                    "port in use); `cai doctor` checks the engine",
                )
            try:
                if httpx.get(health, timeout=2.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        self.stop()
        raise ServerStartError(
            f"vLLM server for {self.options.model!r} was not healthy after {timeout_s:.0f}s. "
            "Last output:\n" + "\n".join(self._tail),
            fix="Raise the startup timeout (`cai serve --startup-timeout`) for a large model",
        )

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM the whole process group, then SIGKILL what is left after `grace_s`."""
        if not self.process or self.process.poll() is not None:
            return
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()
        except ProcessLookupError:
            pass

    def recent_output(self) -> str:
        """The last lines the server printed (for error messages)."""
        return "\n".join(self._tail)

    def kill(self) -> None:
        """SIGKILL the server at once (used by tests of retry and restart)."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def __enter__(self) -> VLLMServer:
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


class _Terminated(Exception):
    """Raised in the main thread when SIGTERM arrives, so `finally` blocks run."""


def run_until_stopped(
    server: VLLMServer,
    on_ready: Callable[[VLLMServer], None] | None = None,
    startup_timeout_s: float = 600.0,
) -> int:
    """Start `server`, report readiness, and serve until Ctrl-C or SIGTERM; always stop it.

    Returns 0 after a requested stop, or the server's exit code if it died on its own.
    """

    def _on_term(signum, frame):
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, _on_term)
    try:
        server.start(startup_timeout_s)
        if on_ready:
            on_ready(server)
        while True:
            code = server.process.poll() if server.process else 0
            if code is not None:
                return code or 1
            time.sleep(0.5)
    except (KeyboardInterrupt, _Terminated):
        return 0
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # a second SIGTERM must not skip cleanup
        server.stop()
        signal.signal(signal.SIGTERM, previous)
