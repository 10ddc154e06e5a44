"""The reward service as a verl reward function (`custom_reward_function.path` = this file).

verl calls `compute_score(data_source, solution_str, ground_truth, extra_info=None, **kwargs)`
once per response (its reward loop awaits an `async def` one), with the response text alone:
the prompt has to travel in the dataset's `extra_info` (as `prompt`, or `question` as verl's
own GSM8K preprocessing writes it). The service's micro-batcher gathers those single calls
into engine batches again.

Settings come from `custom_reward_function.reward_kwargs` (verl passes them as keyword
arguments): `url` (else the CAI_REWARD_URL environment variable), `mode` (`score`: P(follows);
`compare`: P(the response beats `ground_truth` as a reference answer)), `deadline_s`,
`token_env`. A response the judge could not score raises: verl has no "no reward" value, and
a made-up number would train the policy on nothing.
"""

from __future__ import annotations

import os
from typing import Any

from cai.reward.client import AsyncRemoteJudgeReward, RemoteJudgeReward, RewardServiceError

URL_ENV = "CAI_REWARD_URL"
_clients: dict[tuple, RemoteJudgeReward] = {}


def _client(kind: type[RemoteJudgeReward], kwargs: dict[str, Any]) -> RemoteJudgeReward:
    url = kwargs.get("url") or os.environ.get(URL_ENV)
    if not url:
        raise RewardServiceError(
            "the verl reward function has no service URL",
            fix=f"Set custom_reward_function.reward_kwargs.url (or {URL_ENV}) to the address "
            "of `cai reward serve`, e.g. http://127.0.0.1:8100.",
        )
    mode = kwargs.get("mode", "score")
    if mode not in ("score", "compare"):
        raise RewardServiceError(
            f"verl scores one response per call, so mode {mode!r} cannot work here",
            fix="Use mode score, or compare (against ground_truth as the reference answer).",
        )
    settings = (
        kind,
        url,
        mode,
        float(kwargs.get("deadline_s", 600.0)),
        kwargs.get("token_env", "CAI_REWARD_TOKEN"),
    )
    if settings not in _clients:
        _clients[settings] = kind(
            url, mode, deadline_s=settings[3], token_env=settings[4], reference_column="reference"
        )
    return _clients[settings]


def _prompt(extra_info: dict | None) -> Any:
    info = extra_info or {}
    for name in ("prompt", "question"):
        if info.get(name):
            return info[name]
    raise RewardServiceError(
        "verl passed no prompt: the judge needs the question the response answers",
        fix="Put it in each row's extra_info as `prompt` (text or chat messages) or `question`.",
    )


def _arguments(solution_str: str, ground_truth: Any, extra_info: dict | None, mode: str):
    extra = {"reference": [str(ground_truth)]} if mode == "compare" else {}
    return [_prompt(extra_info)], [solution_str], extra


def _one(rewards: list, client: RemoteJudgeReward) -> dict[str, float]:
    if rewards[0] is None:
        raise RewardServiceError(
            f"the reward service at {client.url} could not score this response (see its log)"
        )
    return {"score": float(rewards[0])}


def compute_score(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The judge's reward of one response, for verl (sync)."""
    client = _client(RemoteJudgeReward, kwargs)
    prompts, completions, extra = _arguments(solution_str, ground_truth, extra_info, client.mode)
    return _one(client(prompts, completions, **extra), client)


async def compute_score_async(
    data_source: str,
    solution_str: str,
    ground_truth: Any,
    extra_info: dict | None = None,
    **kwargs: Any,
) -> dict[str, float]:
    """The same, awaited by verl's reward loop instead of occupying a thread."""
    client = _client(AsyncRemoteJudgeReward, kwargs)
    prompts, completions, extra = _arguments(solution_str, ground_truth, extra_info, client.mode)
    return _one(await client(prompts, completions, **extra), client)
