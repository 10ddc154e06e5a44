"""`cai serve` as a real subprocess: a batch survives its only server killed and restarted
mid-way with the backend's default settings (the HTTP backend waits for a server that went away,
says so once when it goes and once when it is back, and seeded requests resent to the restarted
server give what a clean run gives), and SIGTERM stops the server cleanly."""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from cai.backends.base import ChoiceRequest, GenerationParams
from cai.backends.openai_server import OpenAIServerBackend
from cai.serving import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


class CaiServe:
    """`python -m cai.cli.app serve ...` with its output read line by line."""

    def __init__(self, model_dir, port: int) -> None:
        cmd = [sys.executable, "-m", "cai.cli.app", "serve", str(model_dir), "--port", str(port)]
        cmd += ["--served-model-name", "tiny", "--dtype", "float32", "--max-model-len", "512"]
        cmd += ["--enforce-eager"]
        self.proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_ready(self, timeout_s: float = 300) -> str:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=1)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.output)
                continue
            if line.startswith("Serving"):
                return line.split(" at ")[-1].strip()
        raise AssertionError("cai serve never became ready:\n" + "".join(self.output))

    def vllm_children(self) -> list[psutil.Process]:
        return psutil.Process(self.proc.pid).children()

    def ensure_stopped(self) -> None:
        """Cleanup after a failure: SIGTERM, then SIGKILL the server's process group."""
        if self.proc.poll() is not None:
            return
        children = self.vllm_children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            for child in children:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGKILL)
            self.proc.kill()


def test_batch_survives_restart_and_serve_stops_on_sigterm(tiny_model_dir, capsys):
    port = free_port()
    first = CaiServe(tiny_model_dir, port)
    url = first.wait_ready()
    assert url == f"http://127.0.0.1:{port}/v1"

    # The default settings: the requests wait out the restart (outage_timeout_s, 600 s).
    backend = OpenAIServerBackend([url], "tiny", max_concurrency=2, show_progress=False)
    convs = [[{"role": "user", "content": f"Write about item {i}."}] for i in range(24)]
    params = GenerationParams(n=2, temperature=1.0, max_tokens=64, seed=9)
    judge = [
        ChoiceRequest(
            messages=[{"role": "user", "content": f"Is {i} odd? (A) yes (B) no"}],
            assistant_prefix="Answer: (",
        )
        for i in range(4)
    ]
    scores = backend.score_choices(judge)
    result: dict = {}

    def run_batch() -> None:
        try:
            result["generations"] = backend.generate_chat(convs, params)
        except Exception as err:  # reported by the assertions below
            result["error"] = err

    worker = threading.Thread(target=run_batch)
    worker.start()
    time.sleep(1.0)
    assert worker.is_alive(), "the batch finished before the server could be killed"

    # SIGKILL the vLLM server under `cai serve`; cai serve notices and exits with an error
    [child] = first.vllm_children()
    os.killpg(child.pid, signal.SIGKILL)
    assert first.proc.wait(timeout=30) != 0
    assert "exited with code" in "".join(first.output)

    second = CaiServe(tiny_model_dir, port)
    try:
        assert second.wait_ready() == url
        worker.join(timeout=480)
        assert not worker.is_alive()
        assert "error" not in result, result.get("error")
        generations = result["generations"]
        assert len(generations) == len(convs)
        assert all(len(g.texts) == 2 for g in generations)
        assert backend.pool.retries > 0
        # seeded requests retried on the restarted server give exactly what a clean run gives
        # (sent by a client that keeps more of them in flight: seeds, not order, fix the text)
        with OpenAIServerBackend([url], "tiny", max_concurrency=16, show_progress=False) as clean:
            assert clean.generate_chat(convs, params) == generations
        assert backend.pool.outages == 1
        for before, after in zip(scores, backend.score_choices(judge), strict=True):
            assert after.logprobs == pytest.approx(before.logprobs, abs=1e-5)
        err = capsys.readouterr().err
        assert f"{url} stopped answering" in err and "giving up in 600 s" in err
        assert f"{url} answers again after" in err and "continuing" in err

        children = second.vllm_children()
        assert children
        second.proc.send_signal(signal.SIGTERM)
        assert second.proc.wait(timeout=60) == 0
        assert "Server stopped." in "".join(second.output)
        assert not any(child.is_running() and child.status() != "zombie" for child in children)
        with pytest.raises(httpx.ConnectError):
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
    finally:
        backend.close()
        first.ensure_stopped()
        second.ensure_stopped()
