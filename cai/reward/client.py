"""Clients of the reward service with TRL's reward-function signature.

`RemoteJudgeReward(url, mode=...)` is a reward function as TRL's GRPOTrainer and RLOOTrainer
call them (`prompts, completions, **kwargs -> list[float | None]`); `AsyncRemoteJudgeReward`
is the same with an `async __call__`, which GRPOTrainer awaits on its event loop and
AsyncGRPOTrainer's rollout worker awaits per group. Both pickle (plain settings only; the
HTTP client is made again after unpickling), as AsyncGRPO's spawned worker needs.

Modes: `rank` groups the batch's completions by prompt (GRPO's groups) and asks for one
k-wise judgment per group: rewards are Bradley-Terry scores centred on the group. `score`
judges each completion on its own: P(follows) over the sampled principles. `compare` asks
P(completion beats the reference) with the reference from the dataset column
`reference_column`, as the in-process pairwise judge reward does.

When the service is down, a call retries with backoff until `deadline_s` and then raises
`RewardServiceError`, one line naming the URL and the last error: never a made-up reward.
An item the judge could not score is None (TRL leaves it out, as NaN), counted and logged.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

from cai.errors import CaiError
from cai.records import completion_text
from cai.reward.protocol import Mode, prompt_identity

log = logging.getLogger(__name__)

RETRY_STATUSES = {429, 502, 503, 504}
"""Overload and outage; a 500 is a bug in the service, which retrying does not fix."""
PATHS = {"score": "/v1/score", "compare": "/v1/compare", "rank": "/v1/rank"}


class RewardServiceError(CaiError, RuntimeError):
    """The reward service could not give rewards: down past the deadline, or a refusal."""


class RemoteJudgeReward:
    """The reward service as a TRL reward function (sync)."""

    def __init__(
        self,
        url: str,
        mode: Mode = "rank",
        *,
        token: str | None = None,
        token_env: str = "CAI_REWARD_TOKEN",
        deadline_s: float = 600.0,
        timeout_s: float = 300.0,
        backoff_s: float = 0.5,
        max_backoff_s: float = 10.0,
        reference_column: str = "reference",
    ) -> None:
        if mode not in PATHS:
            raise ValueError(f"mode must be one of {sorted(PATHS)}, not {mode!r}")
        self.url = url.rstrip("/")
        for path in (*PATHS.values(), "/get_reward"):
            if self.url.endswith(path):
                self.url = self.url[: -len(path)]
        self.mode = mode
        self.token = token
        self.token_env = token_env
        self.deadline_s = deadline_s
        self.timeout_s = timeout_s
        self.backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self.reference_column = reference_column
        self.__name__ = f"cai_judge_{mode}"  # TRL logs each reward under its function's name
        self.item_errors = 0

    # ---- what goes out and what comes back ---------------------------------------------------
    def request(self, prompts: list[Any], completions: list[Any], kwargs: dict[str, Any]):
        """(path, JSON body, how to read the answer into one reward per completion)."""
        prompts = [_prompt(p) for p in prompts]
        texts = [completion_text(c) for c in completions]
        if len(texts) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(texts)} completions")
        ids = kwargs.get("prompt_id")
        if self.mode == "rank":
            return self._rank(prompts, texts, ids)
        if self.mode == "compare":
            references = kwargs.get(self.reference_column)
            if references is None:
                raise RewardServiceError(
                    f"compare mode needs a {self.reference_column!r} column in the dataset "
                    "holding the reference answer to beat",
                    fix="Add the column, or use mode='rank' or mode='score'.",
                )
            items = [
                {"prompt": p, "chosen": t, "rejected": completion_text(r), **_key(ids, i)}
                for i, (p, t, r) in enumerate(zip(prompts, texts, references, strict=True))
            ]
            return PATHS["compare"], {"items": items}, _field("prob_chosen")
        items = [
            {"prompt": p, "response": t, **_key(ids, i)}
            for i, (p, t) in enumerate(zip(prompts, texts, strict=True))
        ]
        return PATHS["score"], {"items": items}, _field("reward")

    def _rank(self, prompts: list[Any], texts: list[str], ids):
        groups: dict[str, list[int]] = {}
        for index, prompt in enumerate(prompts):
            groups.setdefault(prompt_identity(prompt), []).append(index)
        members = list(groups.values())
        body = {
            "groups": [
                {"prompt": prompts[m[0]], "responses": [texts[i] for i in m], **_key(ids, m[0])}
                for m in members
            ]
        }

        def read(results: list[dict]) -> list[float | None]:
            out: list[float | None] = [None] * len(texts)
            for indices, result in zip(members, results, strict=True):
                rewards = result.get("rewards") or [None] * len(indices)
                for index, reward in zip(indices, rewards, strict=True):
                    out[index] = reward
            return out

        return PATHS["rank"], body, read

    def _rewards(self, answer: dict, read, size: int, kwargs: dict) -> list[float | None]:
        results = answer.get("results")
        if not isinstance(results, list):
            raise RewardServiceError(f"the reward service at {self.url} answered without results")
        rewards = read(results)
        if len(rewards) != size:
            raise RewardServiceError(
                f"the reward service at {self.url} answered {len(rewards)} rewards for {size}"
            )
        errors = [r["error"] for r in results if r.get("error")]
        missing = sum(r is None for r in rewards)
        if errors or missing:
            self.item_errors += missing
            log.warning(
                "reward service: %d of %d completions unscored (first: %s)",
                missing,
                size,
                errors[0] if errors else "none",
            )
        if callable(kwargs.get("log_metric")):
            kwargs["log_metric"](f"{self.__name__}/unscored", float(missing))
        return rewards

    # ---- the call ------------------------------------------------------------------------
    def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list:
        if not prompts:
            return []
        path, body, read = self.request(list(prompts), list(completions), kwargs)
        answer = self._post_sync(path, body)
        return self._rewards(answer, read, len(prompts), kwargs)

    def _post_sync(self, path: str, body: dict) -> dict:
        import httpx

        started = time.monotonic()
        attempt = 0
        while True:
            try:
                with httpx.Client(timeout=self.timeout_s) as client:
                    reply = client.post(self.url + path, json=body, headers=self._headers())
                outcome = self._outcome(reply.status_code, reply.headers, reply)
            except httpx.TransportError as err:
                outcome = _Retry(f"{type(err).__name__}: {err}", None)
            if not isinstance(outcome, _Retry):
                return outcome
            time.sleep(self._wait(outcome, started, attempt))
            attempt += 1

    def _headers(self) -> dict[str, str]:
        import os

        token = self.token or os.environ.get(self.token_env)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _outcome(self, status: int, headers, reply) -> dict | _Retry:
        """The answer, a retry (outage, overload), or a raise (a refusal: retrying won't help)."""
        if status == 200:
            return reply.json()
        message = _error_line(reply)
        if status in RETRY_STATUSES:
            return _Retry(f"HTTP {status}: {message}", _retry_after(headers))
        raise RewardServiceError(
            f"the reward service at {self.url} refused the request (HTTP {status}): {message}"
        )

    def _wait(self, retry: _Retry, started: float, attempt: int) -> float:
        """Seconds to sleep before the next try; raises once the deadline would pass."""
        backoff = min(self.max_backoff_s, self.backoff_s * 2**attempt) * (0.5 + random.random())
        wait = max(backoff, retry.after or 0.0)
        if time.monotonic() - started + wait > self.deadline_s:
            raise RewardServiceError(
                f"the reward service at {self.url} gave no rewards within {self.deadline_s:g} s "
                f"({attempt + 1} tries; last: {retry.reason})",
                fix="Check that `cai reward serve` is running there, or raise deadline_s.",
            )
        return wait


class AsyncRemoteJudgeReward(RemoteJudgeReward):
    """The same reward with `async __call__`: TRL awaits it instead of blocking a thread."""

    async def __call__(self, prompts: list[Any], completions: list[Any], **kwargs: Any) -> list:
        if not prompts:
            return []
        path, body, read = self.request(list(prompts), list(completions), kwargs)
        answer = await self._post_async(path, body)
        return self._rewards(answer, read, len(prompts), kwargs)

    async def _post_async(self, path: str, body: dict) -> dict:
        import httpx

        started = time.monotonic()
        attempt = 0
        while True:
            try:
                async with httpx.AsyncClient(timeout=self.timeout_s) as client:
                    reply = await client.post(self.url + path, json=body, headers=self._headers())
                outcome = self._outcome(reply.status_code, reply.headers, reply)
            except httpx.TransportError as err:
                outcome = _Retry(f"{type(err).__name__}: {err}", None)
            if not isinstance(outcome, _Retry):
                return outcome
            await asyncio.sleep(self._wait(outcome, started, attempt))
            attempt += 1


class _Retry:
    def __init__(self, reason: str, after: float | None) -> None:
        self.reason = reason
        self.after = after


def _prompt(prompt: Any) -> Any:
    """A prompt as the service reads it: text, or messages reduced to role and content."""
    if isinstance(prompt, str):
        return prompt
    return [
        {"role": str(m.get("role", "user")), "content": str(m.get("content", ""))} for m in prompt
    ]


def _key(ids, index: int) -> dict[str, str]:
    return {"key": str(ids[index])} if ids is not None else {}


def _field(name: str):
    def read(results: list[dict]) -> list[float | None]:
        return [r.get(name) for r in results]

    return read


def _retry_after(headers) -> float | None:
    try:
        return float(headers.get("Retry-After"))
    except (TypeError, ValueError):
        return None


def _error_line(reply) -> str:
    try:
        return str(reply.json().get("error") or reply.text)[:300]
    except ValueError:
        return " ".join(reply.text.split())[:300]
