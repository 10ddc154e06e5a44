"""The openai backend's client against the session's real vLLM server: the labels through
HTTP are the offline engine's, and a fleet of two keeps going while one of them is down.

The second server is a TCP relay in front of the same `vllm serve` process (the session's
`vllm_server`), so taking one of two servers down and bringing it back costs no second engine.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time

import pytest

from cai.backends.base import ChoiceRequest
from cai.backends.openai_server import OpenAIServerBackend
from cai.serving import free_port

pytestmark = [pytest.mark.vllm, pytest.mark.slow]

WORDS = "alpha beta gamma delta (A) (B) water is wet? yes no maybe 42 <tag> émoji 🙂".split()


def _requests(seed: int, count: int) -> list[ChoiceRequest]:
    rng = random.Random(seed)
    out = []
    for _ in range(count):
        text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 30)))
        messages = [{"role": "user", "content": text}]
        if rng.random() < 0.5:
            messages.insert(0, {"role": "system", "content": rng.choice(WORDS)})
        out.append(
            ChoiceRequest(messages=messages, assistant_prefix=rng.choice(["(", "Answer: ("]))
        )
    return out


@pytest.mark.parametrize("seed", [1, 2])
def test_labels_through_http_equal_the_offline_labels(vllm_backend, vllm_server, seed):
    requests = _requests(seed, 24)
    offline = vllm_backend.score_choices(requests)
    for setting in ("auto", "server"):
        backend = OpenAIServerBackend(
            [vllm_server.base_url], "tiny", client_tokenizer=setting, show_progress=False
        )
        try:
            served = backend.score_choices(requests)
        finally:
            backend.close()
        for want, got in zip(offline, served, strict=True):
            assert got.logprobs == pytest.approx(want.logprobs, abs=1e-4), setting
            assert got.probs.index(max(got.probs)) == want.probs.index(max(want.probs))


class Relay:
    """127.0.0.1:port -> the server's port; `stop()` refuses and drops connections."""

    def __init__(self, target_port: int) -> None:
        self.target = target_port
        self.port = free_port()
        self.loop = asyncio.new_event_loop()
        self.server = None
        self.links: set[asyncio.StreamWriter] = set()
        threading.Thread(target=self.loop.run_forever, daemon=True).start()
        self.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def _pipe(self, reader, writer) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _link(self, reader, writer) -> None:
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        self.links |= {writer, up_writer}
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def start(self) -> None:
        async def listen():
            self.server = await asyncio.start_server(self._link, "127.0.0.1", self.port)

        asyncio.run_coroutine_threadsafe(listen(), self.loop).result(10)

    def stop(self) -> None:
        async def down():
            self.server.close()
            for writer in self.links:
                writer.transport.abort()
            self.links.clear()

        asyncio.run_coroutine_threadsafe(down(), self.loop).result(10)

    def close(self) -> None:
        self.stop()
        self.loop.call_soon_threadsafe(self.loop.stop)


def test_one_of_two_servers_down_and_back_during_a_run(vllm_server):
    relay = Relay(vllm_server.port)
    notices: list[str] = []
    backend = OpenAIServerBackend([vllm_server.base_url, relay.url], "tiny", show_progress=False)
    backend.pool.notify = notices.append
    backend.pool.probe_interval_s = backend.pool.max_probe_interval_s = 0.2
    requests = _requests(3, 400)
    try:
        want = backend.score_choices(requests[:8])
        result: dict = {}
        worker = threading.Thread(target=lambda: result.update(v=backend.score_choices(requests)))
        worker.start()
        time.sleep(0.3)
        relay.stop()  # one of the two goes away mid-run
        time.sleep(1.0)
        relay.start()
        worker.join(300)
        assert not worker.is_alive() and len(result["v"]) == 400
        for a, b in zip(want, result["v"][:8], strict=True):
            assert b.logprobs == pytest.approx(a.logprobs, abs=1e-5)
        assert any(f"{relay.url} stopped answering" in n for n in notices)
        deadline = time.monotonic() + 30
        while not backend.pool.endpoints()[1]["healthy"]:
            assert time.monotonic() < deadline
            time.sleep(0.1)
        assert any(f"{relay.url} answers again" in n for n in notices)
        assert backend.pool.outages == 0
    finally:
        backend.close()
        relay.close()
