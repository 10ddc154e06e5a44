"""The HTTP backend's resilience against a small local HTTP server that misbehaves on cue:
retries with backoff, load balancing, clear errors, API keys, and the non-vLLM fallback;
bounded deadlines against a server that never answers, a URL without /v1, a refused port;
a fleet whose servers are stopped and restarted on the same port mid-batch."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cai.backends.base import BackendError, ChoiceRequest, ContextOverflowError, GenerationParams
from cai.backends.http import HttpPool
from cai.backends.http_errors import (
    OutageError,
    RequestRejectedError,
    ServerTimeoutError,
    ServerUnavailableError,
)
from cai.backends.openai_server import OpenAIServerBackend
from cai.errors import CaiError
from cai.serving import free_port


class _QuietServer(ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that timed out closed its socket; that is the point of the test."""


class Server:
    """An OpenAI-shaped server under /v1 (like vLLM: other paths answer 404); `failures`
    lists statuses (or "sleep") to answer first; `hang` makes every request wait forever;
    `delay` makes every POST take that long. `stop()` kills it like SIGKILL would (requests
    in flight lose their connection, new ones are refused); `restart()` listens again on the
    same port."""

    def __init__(self, failures=(), chat_top=None, hang=False, root="/models/m", delay=0.0) -> None:
        self.failures = list(failures)
        self.root = root
        self.released = threading.Event()
        self.hang = hang
        self.delay = delay
        self.dead = False
        self.hits: list[str] = []
        self.answered: list[str] = []  # POSTs answered with 200
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
                if status == 200 and self.command == "POST":
                    outer.answered.append(self.path)  # before the client can see the answer
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
                if outer.delay:
                    time.sleep(outer.delay)
                if outer.dead:
                    return None  # killed mid-request: the connection closes without an answer
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

        self.handler = Handler
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._listen()

    def _listen(self):
        self.dead = False
        self.httpd = _QuietServer(("127.0.0.1", self.port), self.handler)
        threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True).start()

    def stop(self):
        self.dead = True
        self.httpd.shutdown()
        self.httpd.server_close()

    def restart(self):
        self._listen()

    def close(self):
        self.released.set()
        if not self.dead:
            self.stop()


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
    from cai.backends import backend_spec, make_backend

    spec = backend_spec(
        kind="openai",
        model="m",
        base_urls=[server.url],
        timeout_s=7,
        connect_timeout_s=2,
        read_timeout_s=3,
        outage_timeout_s=9,
        max_retries=1,
    )
    backend = make_backend(spec)
    pool = backend.pool
    assert (pool.timeout_s, pool.connect_timeout_s, pool.read_timeout_s) == (7, 2, 3)
    assert pool.outage_timeout_s == 9
    assert pool.max_retries == 1 and backend.model_id == "openai:m:/models/m"
    backend.close()


def test_a_local_servers_checkpoint_is_named_by_its_content(tmp_path):
    from cai.model_names import model_identity

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


# a fleet: servers stopped and restarted on the same port -----------------------------------


def _chat(count: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": str(i)}] for i in range(count)]


def _fleet_backend(urls, notices: list[str], **kw) -> OpenAIServerBackend:
    """A backend whose pool probes quickly and collects its stderr lines in `notices`."""
    backend = OpenAIServerBackend(urls, max_concurrency=4, show_progress=False, **kw)
    pool = backend.pool
    pool.probe_interval_s, pool.max_probe_interval_s = 0.05, 0.2
    pool.backoff_s, pool.max_backoff_s = 0.02, 0.1
    pool.notify = notices.append
    return backend


def _in_thread(fn):
    result: dict = {}

    def run() -> None:
        try:
            result["value"] = fn()
        except Exception as err:  # checked by the caller
            result["error"] = err

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    return worker, result


def _wait_for(condition, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_a_stopped_server_leaves_the_rotation_and_returns_after_a_restart():
    first, second = Server(delay=0.02), Server(delay=0.02)
    notices: list[str] = []
    backend = _fleet_backend([first.url, second.url], notices)
    try:
        params = GenerationParams(seed=3)
        worker, result = _in_thread(lambda: backend.generate_chat(_chat(80), params))
        _wait_for(lambda: len(first.answered) >= 4)
        first.stop()  # mid-batch: its requests in flight lose their connection
        answered_before = len(second.answered)
        worker.join(30)
        assert not worker.is_alive() and "error" not in result, result.get("error")
        assert [g.texts for g in result["value"]] == [["3-0"]] * 80
        assert len(second.answered) > answered_before  # the rest went to the other server
        [out, up] = backend.pool.endpoints()
        assert not out["healthy"] and out["down_s"] is not None and up["healthy"]
        assert any(
            f"{first.url} stopped answering" in n and "out of rotation" in n for n in notices
        )

        # while it is down, every request goes to the other server without a failure
        retries = backend.pool.retries
        assert len(backend.generate_chat(_chat(8), params)) == 8
        assert backend.pool.retries == retries

        first.restart()
        _wait_for(lambda: backend.pool.endpoints()[0]["healthy"])
        assert any(f"{first.url} answers again" in n for n in notices)
        served = len(first.answered)
        assert [g.texts for g in backend.generate_chat(_chat(8), params)] == [["3-0"]] * 8
        assert len(first.answered) > served  # back in rotation: it serves requests again
        assert backend.pool.outages == 0
    finally:
        backend.close()
        first.close()
        second.close()


def test_a_request_stuck_on_a_dead_host_moves_to_another_server_with_a_fresh_deadline(server):
    """A host that dies answers nothing (not even a reset): its requests in flight only time
    out. Once the host is out of rotation they go to another server with a whole deadline."""
    dead = Server()
    pool = fast_pool([dead.url, server.url], timeout_s=1.0)
    pool.notify = lambda line: None
    try:
        pool.discover()
        dead.hang = True  # what it holds now gets no answer, ever
        worker, result = _in_thread(lambda: pool.request("POST", "/completions", {"seed": 7}))
        _wait_for(lambda: "/v1/completions" in dead.hits)  # in flight on the dying host
        dead.stop()  # and nothing connects to it any more
        pool.request("POST", "/completions", {})  # to the other server
        pool.request("POST", "/completions", {})  # refused: the dead host is out of rotation
        assert not pool.endpoints()[0]["healthy"]
        worker.join(10)
        assert "error" not in result, result.get("error")
        assert result["value"]["choices"][0]["text"] == "7-0"
        assert len(server.answered) == 3
    finally:
        pool.close()
        dead.close()


def test_a_server_answering_5xx_in_a_row_is_taken_out_of_rotation(server):
    failing = Server(failures=[503] * 1000)
    notices: list[str] = []
    backend = _fleet_backend([failing.url, server.url], notices)
    try:
        gens = backend.generate_chat(_chat(20), GenerationParams(seed=1))
        assert [g.texts for g in gens] == [["1-0"]] * 20
        assert len(server.answered) == 20
        # out of rotation after 3 in a row; its probe (GET /models) answers, so it is tried
        # again now and then, each time after a longer pause
        assert len(failing.hits) < 20
        assert any(f"{failing.url} stopped answering (HTTP 503" in n for n in notices)
    finally:
        backend.close()
        failing.close()


def test_the_only_server_restarted_within_the_outage_deadline_finishes_the_batch():
    only = Server(delay=0.02)
    notices: list[str] = []
    backend = _fleet_backend([only.url], notices, outage_timeout_s=30, max_retries=1)
    backend.pool.notice_every_s = 0.3
    try:
        params = GenerationParams(seed=5)
        worker, result = _in_thread(lambda: backend.generate_chat(_chat(40), params))
        _wait_for(lambda: len(only.answered) >= 4)
        only.stop()
        time.sleep(1.5)  # longer than the backoff and retries of any single request
        assert worker.is_alive()
        assert any(n.startswith(f"waiting for {only.url} (down ") for n in notices)
        assert "giving up in" in notices[-1]
        only.restart()
        worker.join(30)
        assert not worker.is_alive() and "error" not in result, result.get("error")
        assert [g.texts for g in result["value"]] == [["5-0"]] * 40
        assert backend.pool.outages == 1
        assert any(f"{only.url} answers again" in n and "continuing" in n for n in notices)
        waiting = [n for n in notices if n.startswith("waiting for")]
        assert 1 <= len(waiting) <= 1.5 / 0.3 + 2  # rate-limited, not one line per request
    finally:
        backend.close()
        only.close()


def test_an_outage_longer_than_the_deadline_is_one_error_naming_the_url():
    only = Server()
    notices: list[str] = []
    backend = _fleet_backend([only.url], notices, outage_timeout_s=1.0)
    try:
        assert backend.generate_chat(_chat(2), GenerationParams(seed=1))
        only.stop()
        started = time.monotonic()
        with pytest.raises(OutageError) as err:
            backend.generate_chat(_chat(6), GenerationParams(seed=1))
        assert 0.9 <= time.monotonic() - started < 10
        message = str(err.value)
        assert isinstance(err.value, CaiError) and "\n" not in message
        assert f"No server answered for 1 s (outage_timeout_s): {only.url} (down 1 s" in message
        assert "ConnectError" in message and "rerun the same command to resume" in message
        # once the deadline has passed, later requests fail at once instead of waiting again
        started = time.monotonic()
        with pytest.raises(OutageError):
            backend.generate_chat(_chat(1), GenerationParams(seed=1))
        assert time.monotonic() - started < 0.5
        # and a server that comes back is used again
        only.restart()
        _wait_for(lambda: backend.pool.endpoints()[0]["healthy"])
        assert backend.generate_chat(_chat(1), GenerationParams(seed=1))[0].texts == ["1-0"]
    finally:
        backend.close()
        only.close()


def test_a_server_that_never_answered_is_not_waited_for():
    url = f"http://127.0.0.1:{free_port()}/v1"
    pool = fast_pool([url], max_retries=3, outage_timeout_s=600)
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError) as err:
        pool.request("POST", "/completions", {})
    assert time.monotonic() - started < 5.0
    assert not isinstance(err.value, OutageError) and "after 4 attempts" in str(err.value)
    # the backend's first contact fails at once, whatever the outage deadline
    started = time.monotonic()
    with pytest.raises(ServerUnavailableError, match=re.escape(f"Cannot connect to {url}")):
        OpenAIServerBackend([url], outage_timeout_s=600, show_progress=False)
    assert time.monotonic() - started < 5.0


def test_an_outage_deadline_of_zero_fails_like_a_plain_retry(server):
    backend = _fleet_backend([server.url], [], outage_timeout_s=0, max_retries=2)
    try:
        server.stop()
        started = time.monotonic()
        with pytest.raises(ServerUnavailableError) as err:
            backend.generate_chat(_chat(1), GenerationParams())
        assert not isinstance(err.value, OutageError) and "after 3 attempts" in str(err.value)
        assert time.monotonic() - started < 5.0
    finally:
        backend.close()


def test_the_outage_deadline_is_a_backend_setting():
    from cai.backends import backend_spec

    assert backend_spec(kind="openai").outage_timeout_s == 600
    assert backend_spec(kind="openai", outage_timeout_s=0).outage_timeout_s == 0
    with pytest.raises(ValueError):
        backend_spec(kind="openai", outage_timeout_s=-1)
