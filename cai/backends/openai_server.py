"""OpenAI-compatible HTTP servers (`cai serve` / vLLM, or any compatible server) as a Backend.

The interface is synchronous and batch-first; inside, requests run as coroutines on one event
loop (`cai.backends.async_http`) with up to `max_concurrency` in flight per server, adapted to
how fast it answers, and paced by `requests_per_minute` / `tokens_per_minute` where a provider
sets them. When the server is vLLM (it has /tokenize), choice
scoring uses the same token sequence as the other backends (chat template tokenized by the
server, then the assistant prefix) and vLLM's `logprob_token_ids`, which returns the raw
full-vocabulary log-probs of exactly the choice tokens. Other servers fall back to the
top log-probs of a one-token chat completion, which only works when the choices are among
them (an error says so otherwise).

Several base URLs form a fleet (see `cai.backends.http`): a server that stops answering is
taken out of rotation and probed until it is back, and when every server is down (one
restarting) requests wait up to `outage_timeout_s` for one to return instead of failing.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from cai.backends.async_http import AsyncHttpPool
from cai.backends.base import (
    Backend,
    BackendError,
    ChoiceRequest,
    ChoiceScore,
    ContextOverflowError,
    Generation,
    GenerationParams,
    Message,
)
from cai.backends.client_tokens import ClientTokenizer, is_local, load_client_tokenizer
from cai.backends.http import HttpPool
from cai.backends.http_errors import RequestRejectedError
from cai.backends.http_limits import EndpointLimits
from cai.backends.tokens import ChoiceTokenError, check_context
from cai.model_names import model_identity

T = TypeVar("T")
R = TypeVar("R")

_FALLBACK_TOP_LOGPROBS = 20
log = logging.getLogger(__name__)


def served_identity(root: str, base_urls: list[str]) -> str:
    """What a server's model computes, as far as this machine can tell.

    vLLM reports the checkpoint it loaded as the model's `root` (a path or a hub id). When
    every server runs on this machine and that path is a local directory, its content hash
    stands in for the path (`cai.model_names.model_identity`), so retraining into the same
    directory changes the identity and no local absolute path enters cache keys. A remote
    server's root is kept as it reports it: its files cannot be read from here.
    """
    if is_local(base_urls) and Path(root).is_dir():
        return model_identity(root)
    return root


def _finish(reason: str | None) -> str:
    return reason if reason in ("stop", "length") else ("stop" if reason is None else "error")


class OpenAIServerBackend(Backend):
    """One or several OpenAI-compatible servers serving the same model."""

    def __init__(
        self,
        base_urls: list[str] | str,
        model: str | None = None,
        *,
        api_key_env: str = "OPENAI_API_KEY",
        max_concurrency: int = 16,
        timeout_s: float = 120.0,
        max_retries: int = 5,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        connect_timeout_s: float = 5.0,
        read_timeout_s: float | None = None,
        outage_timeout_s: float = 600.0,
        show_progress: bool = True,
        limits: EndpointLimits | list[EndpointLimits] | None = None,
        transport: str = "async",
        client_tokenizer: str = "auto",
    ) -> None:
        urls = [base_urls] if isinstance(base_urls, str) else list(base_urls)
        settings: dict[str, Any] = {
            "api_key": os.environ.get(api_key_env) or None,
            "timeout_s": timeout_s,
            "max_retries": max_retries,
            "backoff_s": backoff_s,
            "max_backoff_s": max_backoff_s,
            "max_connections": max_concurrency,
            "connect_timeout_s": connect_timeout_s,
            "read_timeout_s": read_timeout_s,
            "outage_timeout_s": outage_timeout_s,
        }
        if transport == "async":
            limits = limits or EndpointLimits(max_in_flight=max_concurrency)
            self.pool: HttpPool = AsyncHttpPool(urls, limits=limits, **settings)
        elif transport == "threads":
            self.pool = HttpPool(urls, **settings)
        else:
            raise BackendError(
                f"Unknown HTTP transport {transport!r}", fix="Use 'async' or 'threads'"
            )
        self.max_concurrency = max_concurrency
        self.show_progress = show_progress
        self._executor = ThreadPoolExecutor(max_concurrency, thread_name_prefix="cai-http")
        self._max_model_len: int | None = None
        try:
            self.model, roots = self._resolve_model(model)
        except BaseException:
            self.close()
            raise
        self.model_id = f"openai:{self.model}:{self._identity(roots)}"
        self._roots = roots
        self._client_tokenizer_setting = client_tokenizer
        self._client_tokenizer: ClientTokenizer | bool | None = False  # False: not looked for
        self._is_vllm: bool | None = None
        self._choice_ids: dict[str, int] = {}
        self._prefix_ids: dict[str, list[int]] = {}
        self._lock = threading.Lock()

    # setup ----------------------------------------------------------------------------
    def _resolve_model(self, model: str | None) -> tuple[str, set[str]]:
        """(served name, the checkpoints the servers report as its root), checked per URL."""
        served: dict[str, str] = {}
        for url, listed in zip(self.pool.base_urls, self.pool.discover(), strict=True):
            names = {str(m.get("id")): str(m.get("root") or m.get("id")) for m in listed}
            if model is None and len(names) != 1:
                raise BackendError(
                    f"{url} serves {sorted(names)}",
                    key="served_model_name",
                    fix="Say which model to use with served_model_name",
                )
            wanted = model or next(iter(names))
            if wanted not in names:
                raise BackendError(
                    f"{url} does not serve model {wanted!r}; it serves {sorted(names)}",
                    key="served_model_name",
                    fix="Set served_model_name (or model) to one of those",
                )
            served[url] = names[wanted]
            lengths = [m.get("max_model_len") for m in listed if str(m.get("id")) == wanted]
            if lengths and isinstance(lengths[0], int):
                self._max_model_len = min(self._max_model_len or lengths[0], lengths[0])
            model = wanted
        return str(model), set(served.values())

    def _identity(self, roots: set[str]) -> str:
        """The served checkpoints' identity; several distinct ones are all named (and warned
        about: replicas of different checkpoints answer the same request differently)."""
        identities = sorted({served_identity(root, self.pool.base_urls) for root in roots})
        if len(identities) > 1:
            log.warning(
                "the servers at %s serve %r from different checkpoints: %s",
                ", ".join(self.pool.base_urls),
                self.model,
                ", ".join(identities),
            )
        return ",".join(identities)

    @property
    def is_vllm(self) -> bool:
        """True when the server has vLLM's /tokenize endpoint."""
        if self._is_vllm is None:
            try:
                self.pool.request(
                    "POST", "/tokenize", {"model": self.model, "prompt": "a"}, at_root=True
                )
                self._is_vllm = True
            except RequestRejectedError:
                self._is_vllm = False
        return self._is_vllm

    def endpoint_stats(self) -> list[dict[str, Any]]:
        """Per server: the concurrency chosen for it, its queueing time, requests, throttles."""
        if isinstance(self.pool, AsyncHttpPool):
            return self.pool.endpoint_stats()
        return [{"url": e["url"], "requests": e["served"]} for e in self.pool.endpoints()]

    def _map(self, fn: Callable[[T], Awaitable[R]], items: list[T], desc: str) -> list[R]:
        """Apply fn to every item with bounded concurrency, keeping order."""
        if not items:
            return []
        if isinstance(self.pool, AsyncHttpPool):
            return self._map_async(fn, items, desc)
        futures = [self._executor.submit(_drive, fn(item)) for item in items]
        if self.show_progress and len(items) > 1:
            from tqdm.auto import tqdm

            for future in tqdm(futures, desc=desc, leave=False):
                future.exception()
        return [future.result() for future in futures]

    def _map_async(self, fn: Callable[[T], Awaitable[R]], items: list[T], desc: str) -> list[R]:
        assert isinstance(self.pool, AsyncHttpPool)
        if not (self.show_progress and len(items) > 1):
            return self.pool.map(fn, items)
        from tqdm.auto import tqdm

        with tqdm(total=len(items), desc=desc, leave=False) as bar:
            return self.pool.map(fn, items, progress=lambda: bar.update(1))

    # generation -----------------------------------------------------------------------
    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "n": params.n,
            "temperature": params.temperature,
            "top_p": params.top_p,
            "max_tokens": params.max_tokens,
        }
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        return body

    @staticmethod
    def _generation(reply: dict[str, Any], chat: bool) -> Generation:
        choices = sorted(reply["choices"], key=lambda c: c.get("index", 0))
        texts = [(c["message"]["content"] or "") if chat else c["text"] for c in choices]
        usage = reply.get("usage") or {}
        return Generation(
            texts=texts,
            finish_reasons=[_finish(c.get("finish_reason")) for c in choices],
            prompt_tokens=usage.get("prompt_tokens"),
        )

    def generate_chat(
        self, conversations: list[list[Message]], params: GenerationParams
    ) -> list[Generation]:
        base = self._sampling(params)

        async def one(messages: list[Message]) -> Generation:
            payload = {**base, "messages": messages}
            tokens = _estimate_tokens(messages, params)
            reply = await self.pool.arequest("POST", "/chat/completions", payload, tokens=tokens)
            return self._generation(reply, chat=True)

        return self._map(one, conversations, "generate")

    def generate_text(self, prompts: list[str], params: GenerationParams) -> list[Generation]:
        base = self._sampling(params)

        async def one(prompt: str) -> Generation:
            payload = {**base, "prompt": prompt}
            tokens = _estimate_tokens(prompt, params)
            reply = await self.pool.arequest("POST", "/completions", payload, tokens=tokens)
            return self._generation(reply, chat=False)

        return self._map(one, prompts, "generate")

    # scoring --------------------------------------------------------------------------
    async def _tokenize(self, body: dict[str, Any]) -> tuple[list[int], int]:
        payload = {"model": self.model, **body}
        reply = await self.pool.arequest("POST", "/tokenize", payload, at_root=True)
        return list(reply["tokens"]), int(reply.get("max_model_len") or 0)

    async def _choice_id(self, choice: str) -> int:
        with self._lock:
            cached = self._choice_ids.get(choice)
        if cached is not None:
            return cached
        tokens, _ = await self._tokenize({"prompt": choice, "add_special_tokens": False})
        if len(tokens) != 1:
            raise ChoiceTokenError(
                f"Choice {choice!r} is {len(tokens)} tokens ({tokens}) for the served model; "
                "each choice must be exactly one token. Use short labels such as 'A'/'B' and "
                "put any leading space or bracket in the assistant_prefix instead."
            )
        with self._lock:
            self._choice_ids[choice] = tokens[0]
        return tokens[0]

    async def _assistant_prefix_ids(self, prefix: str) -> list[int]:
        """The assistant prefix's ids, asked of the server once per text: a judge sends the
        same prefix with every request, and a second /tokenize each time cost a third of all
        requests."""
        with self._lock:
            cached = self._prefix_ids.get(prefix)
        if cached is None:
            cached = (await self._tokenize({"prompt": prefix, "add_special_tokens": False}))[0]
            with self._lock:
                self._prefix_ids[prefix] = cached
        return list(cached)

    async def _prompt_ids(self, request: ChoiceRequest) -> tuple[list[int], int]:
        if request.messages is not None:
            ids, limit = await self._tokenize(
                {"messages": request.messages, "add_generation_prompt": True}
            )
            if request.assistant_prefix:
                ids += await self._assistant_prefix_ids(request.assistant_prefix)
            return ids, limit
        if request.text is None:
            raise BackendError("A ChoiceRequest needs `messages` or `text`; both are empty.")
        return await self._tokenize(
            {"prompt": request.text + request.assistant_prefix, "add_special_tokens": True}
        )

    async def _score_vllm(self, request: ChoiceRequest) -> ChoiceScore:
        if len(set(request.choices)) != len(request.choices) or len(request.choices) < 2:
            raise ChoiceTokenError(f"Need two or more distinct choices, got {request.choices}.")
        ids = [await self._choice_id(c) for c in request.choices]
        prompt, limit = await self._prompt_ids(request)
        if limit and len(prompt) + 1 > limit:
            raise ContextOverflowError(
                f"The prompt is {len(prompt)} tokens; the served model's context is {limit}."
            )
        return await self._score_ids(request, prompt, ids)

    async def _score_ids(
        self, request: ChoiceRequest, prompt: list[int], ids: list[int]
    ) -> ChoiceScore:
        """One scoring request for prompt ids built already."""
        reply = await self.pool.arequest(
            "POST",
            "/completions",
            {
                "model": self.model,
                "prompt": prompt,
                "max_tokens": 1,
                "temperature": 0.0,
                "logprobs": len(ids),
                "logprob_token_ids": ids,
                "return_tokens_as_token_ids": True,
            },
            tokens=len(prompt) + 1,
        )
        top = reply["choices"][0]["logprobs"]["top_logprobs"][0]
        values = []
        for choice, token_id in zip(request.choices, ids, strict=True):
            key = f"token_id:{token_id}"
            if key not in top:
                raise BackendError(
                    f"The server returned no log-prob for choice {choice!r} (token {token_id}); "
                    "it may be a vLLM too old for logprob_token_ids."
                )
            values.append(float(top[key]))
        return ChoiceScore.from_logprobs(request.choices, values, _prompt_tokens(reply))

    async def _score_generic(self, request: ChoiceRequest) -> ChoiceScore:
        body: dict[str, Any] = {
            "model": self.model,
            "max_tokens": 1,
            "temperature": 0.0,
            "logprobs": True,
            "top_logprobs": _FALLBACK_TOP_LOGPROBS,
        }
        if request.messages is not None:
            messages = list(request.messages)
            if request.assistant_prefix:
                messages.append({"role": "assistant", "content": request.assistant_prefix})
            payload = {**body, "messages": messages}
            reply = await self.pool.arequest("POST", "/chat/completions", payload)
            entries = reply["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
            top = {e["token"]: float(e["logprob"]) for e in entries}
        else:
            body["logprobs"] = _FALLBACK_TOP_LOGPROBS
            del body["top_logprobs"]
            prompt = (request.text or "") + request.assistant_prefix
            reply = await self.pool.arequest("POST", "/completions", {**body, "prompt": prompt})
            top = {
                k: float(v) for k, v in reply["choices"][0]["logprobs"]["top_logprobs"][0].items()
            }
        missing = [c for c in request.choices if c not in top]
        if missing:
            raise BackendError(
                f"Choices {missing} are not among the server's top {_FALLBACK_TOP_LOGPROBS} "
                "log-probs, so their probability is unknown. Exact choice scoring needs a vLLM "
                "server (`cai serve`) or a local backend."
            )
        return ChoiceScore.from_logprobs(
            request.choices, [top[c] for c in request.choices], _prompt_tokens(reply)
        )

    def score_choices(self, requests: list[ChoiceRequest]) -> list[ChoiceScore]:
        if not requests:
            return []
        if not self.is_vllm:
            return self._map(self._score_generic, requests, "score")
        tokenizer = self._local_tokenizer()
        if tokenizer is None:
            return self._map(self._score_vllm, requests, "score")
        prompts = tokenizer.prompt_ids(requests)
        check_context([len(p) for p in prompts], 1, self._max_model_len)
        jobs = [
            (r, p, tokenizer.choice_ids(r.choices)) for r, p in zip(requests, prompts, strict=True)
        ]

        async def score(job: tuple[ChoiceRequest, list[int], list[int]]) -> ChoiceScore:
            return await self._score_ids(*job)

        return self._map(score, jobs, "score")

    def _local_tokenizer(self) -> ClientTokenizer | None:
        """The served checkpoint's tokenizer when it is on this machine (loaded once)."""
        if self._client_tokenizer is False:
            self._client_tokenizer = load_client_tokenizer(
                self._client_tokenizer_setting, self._roots, self.pool.base_urls
            )
        return self._client_tokenizer or None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.pool.close()


def _drive(coroutine: Coroutine[Any, Any, R]) -> R:
    """Run a coroutine that never suspends (the thread transport's requests block instead)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise RuntimeError("a request of the thread transport suspended")


def _estimate_tokens(prompt: Any, params: GenerationParams) -> int:
    """Tokens a generation may use, for tokens-per-minute pacing (about 4 characters a token)."""
    return len(str(prompt)) // 4 + params.max_tokens * params.n


def _prompt_tokens(reply: dict[str, Any]) -> int | None:
    """The prompt tokens the server reports in `usage` (None when it reports none)."""
    usage = reply.get("usage") or {}
    value = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    return value if isinstance(value, int) else None
