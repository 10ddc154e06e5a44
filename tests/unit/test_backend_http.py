"""The HTTP backend's resilience against a small local HTTP server that misbehaves on cue:
retries with backoff, load balancing, clear errors, API keys, and the non-vLLM fallback;
bounded deadlines against a server that never answers, a URL without /v1, a refused port."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, GenerationParams
from cai.backends.http import (
    HttpPool,
    RequestRejectedError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from cai.backends.openai_server import OpenAIServerBackend
from cai.serving import free_port


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that timed out closed its socket; that is the point of the test."""


class Server:
    """An OpenAI-shaped server under /v1 (like vLLM: other paths answer 404); `failures`
    lists statuses (or "sleep") to answer first; `hang` makes every request wait forever."""

    def __init__(self, failures=(), chat_top=None, hang=False, root="/models/m") -> None:
        self.failures = list(failures)
        self.root = root
        self.released = threading.Event()
        self.hang = hang
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
                if outer.hang:
                    outer.released.wait(60)
                    return None
                if self.path != "/v1/models":
                    return self._send(404, {"detail": "Not Found"})
                self._send(200, {"data": [{"id": "m", "root": outer.root}]})

            def do_POST(self):
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length) or b"{}")
                outer.hits.append(self.path)
                outer.auth.append(self.headers.get("Authorization"))
                if outer.hang:
                    outer.released.wait(60)
                    return None
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
        self.released.set()
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
    pool = fast_pool([server.url], max_retries=2, read_timeout_s=0.3)
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


# deadlines, URLs without /v1, refused connections -----------------------------------------


@pytest.fixture
def hanging():
    s = Server(hang=True)
    yield s
    s.close()


def test_a_hanging_server_is_reported_within_the_total_deadline(hanging):
    deadline = 1.0
    pool = HttpPool(
        [hanging.url], timeout_s=deadline, read_timeout_s=0.3, backoff_s=0.05, max_retries=50
    )
    started = time.monotonic()
    with pytest.raises(ServerTimeoutError) as err:
        pool.request("POST", "/chat/completions", {"messages": []})
    elapsed = time.monotonic() - started
    assert deadline * 0.9 <= elapsed < 3 * deadline
    message = str(err.value)
    assert f"{hanging.url}/chat/completions" in message and "deadline" in message
    assert "is running and not overloaded" in message and "timeout_s" in message
    assert pool.retries >= 2  # several attempts fit in the deadline, none beyond it


def test_the_default_read_timeout_is_the_whole_deadline(hanging):
    pool = HttpPool([hanging.url], timeout_s=0.8)
    started = time.monotonic()
    with pytest.raises(ServerTimeoutError, match=r"0\.8 s deadline"):
        pool.request("GET", "/models")
    assert time.monotonic() - started < 3 * 0.8 and pool.retries == 0


def test_a_backend_on_a_hanging_server_fails_within_its_deadline(hanging):
    started = time.monotonic()
    with pytest.raises(ServerTimeoutError, match=re.escape(f"GET {hanging.url}/models within 1 s")):
        OpenAIServerBackend([hanging.url], timeout_s=1.0, show_progress=False)
    assert time.monotonic() - started < 3 * 1.0


def test_a_url_without_v1_is_fixed_with_a_log_line(server, caplog):
    bare = server.url.removesuffix("/v1")
    with caplog.at_level("WARNING", logger="cai.backends.http"):
        backend = OpenAIServerBackend([bare], show_progress=False)
    assert backend.pool.base_urls == [server.url]
    assert f"using {server.url}" in caplog.text and "add /v1" in caplog.text
    [gen] = backend.generate_chat([[{"role": "user", "content": "hi"}]], GenerationParams(seed=2))
    assert gen.texts == ["2-0"]
    assert server.hits[:2] == ["/models", "/v1/models"]
    backend.close()


def test_a_server_without_the_openai_routes_says_to_add_v1(server):
    wrong = server.url.removesuffix("/v1") + "/api"
    with pytest.raises(BackendError) as err:
        OpenAIServerBackend([wrong], show_progress=False)
    message = str(err.value)
    assert f"{wrong}/models answered HTTP 404 and so did {wrong}/v1/models" in message
    assert "ends in /v1" in message
    with pytest.raises(BackendError, match="no OpenAI-compatible API there"):
        OpenAIServerBackend([wrong + "/v1"], show_progress=False)


def test_a_refused_connection_fails_fast_naming_the_url():
    url = f"http://127.0.0.1:{free_port()}/v1"
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as err:
        OpenAIServerBackend([url], show_progress=False)  # default 120 s deadline, 5 retries
    assert time.monotonic() - started < 2.0
    message = str(err.value)
    assert f"Cannot connect to {url}/models" in message and "Is the server running" in message


def test_every_url_is_checked_at_start(server):
    dead = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(ServerUnavailableError, match=re.escape(f"Cannot connect to {dead}/models")):
        OpenAIServerBackend([server.url, dead], show_progress=False)


def test_make_backend_passes_the_http_settings(server):
    from cai.backends import BackendSpec, make_backend

    spec = BackendSpec(
        kind="openai",
        model="m",
        base_urls=[server.url],
        timeout_s=7,
        connect_timeout_s=2,
        read_timeout_s=3,
        max_retries=1,
    )
    backend = make_backend(spec)
    pool = backend.pool
    assert (pool.timeout_s, pool.connect_timeout_s, pool.read_timeout_s) == (7, 2, 3)
    assert pool.max_retries == 1 and backend.model_id == "openai:m:/models/m"
    backend.close()


def test_a_local_servers_checkpoint_is_named_by_its_content(tmp_path):
    from cai.models import model_identity

    checkpoint = tmp_path / "my-model"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text("{}")
    local = Server(root=str(checkpoint))
    try:
        backend = OpenAIServerBackend([local.url], show_progress=False)
        assert backend.model_id == f"openai:m:{model_identity(str(checkpoint))}"
        assert backend.model_id.startswith("openai:m:my-model#")
        assert str(tmp_path) not in backend.model_id
        backend.close()
    finally:
        local.close()


def test_replicas_of_different_checkpoints_are_named_and_warned_about(caplog):
    first, second = Server(root="/ckpt/a"), Server(root="/ckpt/b")
    try:
        with caplog.at_level("WARNING", logger="cai.backends.openai_server"):
            backend = OpenAIServerBackend([first.url, second.url], show_progress=False)
        assert backend.model_id == "openai:m:/ckpt/a,/ckpt/b"
        assert "different checkpoints" in caplog.text
        backend.close()
    finally:
        first.close()
        second.close()
