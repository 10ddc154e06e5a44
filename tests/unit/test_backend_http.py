"""The HTTP backend's resilience against a small local HTTP server that misbehaves on cue:
retries with backoff, load balancing, clear errors, API keys, and the non-vLLM fallback."""

from __future__ import annotations

import json
import math
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, GenerationParams
from cai.backends.http import HttpPool, RequestRejectedError, ServerUnavailableError
from cai.backends.openai_server import OpenAIServerBackend
from cai.serving import free_port


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that timed out closed its socket; that is the point of the test."""


class Server:
    """An OpenAI-shaped server; `failures` lists statuses (or "sleep") to answer first."""

    def __init__(self, failures=(), chat_top=None) -> None:
        self.failures = list(failures)
        self.hits: list[str] = []
        self.auth: list[str | None] = []
        self.chat_top = chat_top or {"A": -0.5, "B": -1.5, "Hello": -3.0}
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _send(self, status, body):
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_GET(self):
                outer.hits.append(self.path)
                self._send(200, {"data": [{"id": "m", "root": "/models/m"}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.hits.append(self.path)
                outer.auth.append(self.headers.get("Authorization"))
                if outer.failures:
                    failure = outer.failures.pop(0)
                    if failure == "sleep":
                        time.sleep(1.0)
                    else:
                        return self._send(failure, {"error": {"message": f"failure {failure}"}})
                if self.path == "/tokenize":
                    return self._send(404, {"detail": "Not Found"})
                if "long" in json.dumps(body):
                    return self._send(
                        400, {"error": {"message": "This model's maximum context length is 8"}}
                    )
                if self.path == "/v1/chat/completions" and body.get("logprobs"):
                    top = [{"token": t, "logprob": v} for t, v in outer.chat_top.items()]
                    choice = {"index": 0, "logprobs": {"content": [{"top_logprobs": top}]}}
                    return self._send(200, {"choices": [choice]})
                texts = [f"{body.get('seed')}-{i}" for i in range(body.get("n", 1))]
                key = "message" if "chat" in self.path else "text"
                choices = [
                    {
                        "index": i,
                        key: {"content": t} if key == "message" else t,
                        "finish_reason": "stop",
                    }
                    for i, t in enumerate(texts)
                ]
                self._send(200, {"choices": choices, "usage": {"prompt_tokens": 3}})

        self.port = free_port()
        self.httpd = _QuietServer(("127.0.0.1", self.port), Handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def server():
    s = Server()
    yield s
    s.close()


def fast_pool(urls, **kw):
    return HttpPool(
        urls, timeout_s=kw.pop("timeout_s", 5), backoff_s=0.01, max_backoff_s=0.02, **kw
    )


def test_5xx_and_429_are_retried(server):
    server.failures = [503, 500, 429]
    pool = fast_pool([server.url], max_retries=3)
    assert pool.request("POST", "/completions", {"n": 1})["choices"]
    assert pool.retries == 3


def test_retries_run_out_with_a_clear_error(server):
    server.failures = [502] * 5
    pool = fast_pool([server.url], max_retries=2)
    with pytest.raises(ServerUnavailableError, match=r"after 3 attempts.*HTTP 502"):
        pool.request("POST", "/completions", {})


def test_timeouts_are_retried(server):
    server.failures = ["sleep"]
    pool = fast_pool([server.url], max_retries=2, timeout_s=0.3)
    assert pool.request("POST", "/completions", {})["choices"]
    assert pool.retries == 1


def test_client_errors_are_not_retried(server):
    pool = fast_pool([server.url], max_retries=5)
    server.failures = [422]
    with pytest.raises(RequestRejectedError, match="HTTP 422"):
        pool.request("POST", "/completions", {})
    server.failures = [401]
    with pytest.raises(RequestRejectedError, match="API key"):
        pool.request("POST", "/completions", {})
    with pytest.raises(ContextOverflowError, match="maximum context length"):
        pool.request("POST", "/completions", {"prompt": "long"})
    assert pool.retries == 0


def test_load_balancing_and_a_dead_url(server):
    other = Server()
    try:
        pool = fast_pool([server.url, other.url], max_retries=3)
        for _ in range(6):
            pool.request("POST", "/completions", {})
        assert len(server.hits) == 3 and len(other.hits) == 3
        dead = f"http://127.0.0.1:{free_port()}/v1"
        pool = fast_pool([dead, server.url], max_retries=3)
        for _ in range(4):
            pool.request("POST", "/completions", {})
        assert pool.retries == 1  # the refused URL sits out its cool-down after one failure
    finally:
        other.close()


def test_backend_batches_keep_order_and_send_the_key(server, monkeypatch):
    monkeypatch.setenv("MY_KEY", "secret")
    backend = OpenAIServerBackend(
        [server.url], api_key_env="MY_KEY", max_concurrency=4, show_progress=False
    )
    assert backend.model == "m" and backend.model_id == "openai:m:/models/m"
    gens = backend.generate_chat(
        [[{"role": "user", "content": str(i)}] for i in range(8)], GenerationParams(n=2, seed=4)
    )
    assert [g.texts for g in gens] == [["4-0", "4-1"]] * 8
    assert set(server.auth) == {"Bearer secret"}
    backend.close()


def test_non_vllm_server_scores_from_top_logprobs(server):
    backend = OpenAIServerBackend([server.url], "m", show_progress=False)
    [score] = backend.score_choices([ChoiceRequest(messages=[{"role": "user", "content": "?"}])])
    assert not backend.is_vllm
    assert score.logprobs == [-0.5, -1.5]
    assert score.probs[0] == pytest.approx(1 / (1 + math.exp(-1.0)))
    with pytest.raises(BackendError, match="not among the server's top"):
        backend.score_choices(
            [ChoiceRequest(messages=[{"role": "user", "content": "?"}], choices=("A", "C"))]
        )
    backend.close()
