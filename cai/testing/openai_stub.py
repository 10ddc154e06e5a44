"""An OpenAI-compatible stub server on 127.0.0.1 that enforces a provider's rate limits.

Big API providers cap requests per minute and tokens per minute per key and answer over the
cap with HTTP 429 and a `Retry-After` header. This server does the same (over a sliding
60 s window, scaled by `window_s` so tests run in seconds), and answers like vLLM otherwise:
`/tokenize`, `/v1/models`, `/v1/completions` with `logprob_token_ids`, and
`/v1/chat/completions`. `delay_s` makes every answer slow. It records what it admitted and
refused, so a test can check the client stayed under the limit and lost nothing.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import deque
from dataclasses import dataclass, field


@dataclass
class StubLimits:
    """The caps: requests and tokens per `window_s` (60 s like the providers; shorter in tests)."""

    rpm: int | None = None
    tpm: int | None = None
    window_s: float = 60.0
    delay_s: float = 0.0


@dataclass
class StubLog:
    admitted: list[float] = field(default_factory=list)  # monotonic times of answered POSTs
    refused: int = 0
    tokens: int = 0


def _tokens(text: str) -> list[int]:
    """About four characters a token, as real tokenizers of English average."""
    return [32 + (ord(c) % 64) for c in text[::4]] or [32]


class OpenAIStub:
    """Serve the stub in a thread of its own: `with OpenAIStub(StubLimits(...)) as stub:`."""

    def __init__(
        self, limits: StubLimits | None = None, model: str = "stub", reply: str = "A"
    ) -> None:
        self.limits = limits or StubLimits()
        self.model = model
        self.reply = reply  # every generated text (a provider judge's written verdict, say)
        self.log = StubLog()
        self._recent: deque[tuple[float, int]] = deque()  # (time, tokens) in the window
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True, name="openai-stub")
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __enter__(self) -> OpenAIStub:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0, backlog=512)
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()
        tasks = asyncio.all_tasks(self._loop)
        for task in tasks:
            task.cancel()
        self._loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
        self._loop.close()

    # rate limits ---------------------------------------------------------------------------
    def _admit(self, tokens: int) -> float:
        """0 when the request fits the caps now (and it is counted), else seconds to wait."""
        now = time.monotonic()
        window = self.limits.window_s
        while self._recent and self._recent[0][0] <= now - window:
            self._recent.popleft()
        over_requests = self.limits.rpm is not None and len(self._recent) >= self.limits.rpm
        used = sum(t for _, t in self._recent)
        over_tokens = self.limits.tpm is not None and used + tokens > self.limits.tpm
        if over_requests or over_tokens:
            oldest = self._recent[0][0] if self._recent else now
            return max(0.001, oldest + window - now)
        self._recent.append((now, tokens))
        return 0.0

    # HTTP ------------------------------------------------------------------------------
    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path, _ = lines[0].split(" ", 2)
                headers = {
                    k.strip().lower(): v.strip()
                    for k, v in (h.split(":", 1) for h in lines[1:] if ":" in h)
                }
                size = int(headers.get("content-length", 0))
                body = json.loads(await reader.readexactly(size)) if size else {}
                status, reply, extra = await self._answer(method, path, body)
                data = json.dumps(reply).encode()
                out = [f"HTTP/1.1 {status} X", "Content-Type: application/json",
                       f"Content-Length: {len(data)}", *extra, "", ""]  # fmt: skip
                writer.write("\r\n".join(out).encode() + data)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()

    async def _answer(self, method: str, path: str, body: dict) -> tuple[int, dict, list[str]]:
        if method == "GET" and path == "/v1/models":
            return 200, {"data": [{"id": self.model, "root": self.model}]}, []
        if path == "/tokenize":
            if "messages" in body:
                text = "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])
                text += "<assistant>" if body.get("add_generation_prompt") else ""
            else:
                text = body.get("prompt", "")
            return 200, {"tokens": _tokens(text), "max_model_len": 4096}, []
        prompt = body.get("prompt") or body.get("messages") or ""
        tokens = len(prompt) if isinstance(prompt, list) else len(_tokens(str(prompt)))
        tokens += int(body.get("max_tokens") or 16)
        wait = self._admit(tokens)
        if wait:
            self.log.refused += 1
            seconds = max(1, round(wait)) if self.limits.window_s >= 60 else wait
            error = {"error": {"message": "Rate limit reached", "type": "rate_limit"}}
            return 429, error, [f"Retry-After: {seconds:.3g}"]
        if self.limits.delay_s:
            await asyncio.sleep(self.limits.delay_s)
        self.log.admitted.append(time.monotonic())
        self.log.tokens += tokens
        ids = body.get("logprob_token_ids") or []
        top = {f"token_id:{t}": -0.5 - i for i, t in enumerate(ids)}
        usage = {"prompt_tokens": tokens - int(body.get("max_tokens") or 16),
                 "completion_tokens": 1}  # fmt: skip
        if "chat" in path:
            choice = {"index": 0, "message": {"content": self.reply}, "finish_reason": "stop"}
        else:
            choice = {"index": 0, "text": self.reply, "finish_reason": "length",
                      "logprobs": {"top_logprobs": [top]}}  # fmt: skip
        return 200, {"choices": [choice], "usage": usage}, []
