"""Reward functions: what PPO maximises, behind one callable interface.

Anything with `__call__(RewardInputs) -> list[float]` plugs in: a trained reward model, the
constitutional judge used pointwise, or a synthetic reward for tests and hardware checks.
"""

from __future__ import annotations

import importlib
import math
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from cai.backends.base import Message
from cai.config import ConfigError
from cai.errors import CaiError
from cai.train.rewards import JudgeRewardSpec


@dataclass
class RewardInputs:
    """One rollout batch as the reward sees it."""

    prompts: list[list[Message]]
    responses: list[str]
    """Decoded responses, special tokens (EOS) removed."""
    response_ids: list[list[int]]
    finished: list[bool]


@runtime_checkable
class RewardFunction(Protocol):
    def __call__(self, inputs: RewardInputs) -> list[float]:
        """One finite score per response, higher is better."""


class RewardError(CaiError, RuntimeError):
    """A reward function returned something PPO cannot use."""


def checked_scores(scores: list[float], expected: int, name: str) -> list[float]:
    """Refuse wrong-length or non-finite scores instead of training on them."""
    scores = [float(s) for s in scores]
    if len(scores) != expected:
        raise RewardError(f"reward {name} returned {len(scores)} scores for {expected} responses")
    bad = [i for i, s in enumerate(scores) if not math.isfinite(s)]
    if bad:
        raise RewardError(
            f"reward {name} returned non-finite scores at positions {bad[:10]}; "
            "fix the reward function (PPO cannot learn from NaN or inf)"
        )
    return scores


class TokenFractionReward:
    """Synthetic reward: the share of response tokens that are in `token_ids` (EOS excluded)."""

    def __init__(self, token_ids: list[int], eos_ids: set[int] | None = None) -> None:
        self.token_ids = set(token_ids)
        self.eos_ids = eos_ids or set()

    @classmethod
    def from_strings(cls, tokenizer, tokens: list[str]) -> TokenFractionReward:
        ids = []
        for text in tokens:
            encoded = tokenizer.encode(text, add_special_tokens=False)
            if len(encoded) != 1:
                raise ConfigError(
                    f"reward token {text!r} is {len(encoded)} tokens for this tokenizer "
                    f"({encoded}); pick strings that are single tokens"
                )
            ids.append(encoded[0])
        return cls(ids, {tokenizer.eos_token_id})

    def __call__(self, inputs: RewardInputs) -> list[float]:
        scores = []
        for ids in inputs.response_ids:
            body = [t for t in ids if t not in self.eos_ids]
            scores.append(sum(t in self.token_ids for t in body) / max(len(body), 1))
        return scores


class ModelReward:
    """A trained reward model scoring prompt + response through its chat template: the one
    scorer (`cai.train.reward_scorer`), frozen on the rollout device, as a RewardFunction."""

    def __init__(
        self, path: str, device=None, batch_size: int = 16, max_length: int = 1024
    ) -> None:
        from cai.train.reward_scorer import RewardModelScorer

        self.scorer = RewardModelScorer(
            path, batch_size=batch_size, max_length=max_length, device=device
        )

    def __call__(self, inputs: RewardInputs) -> list[float]:
        return self.scorer.score(
            [
                [*prompt, {"role": "assistant", "content": response}]
                for prompt, response in zip(inputs.prompts, inputs.responses, strict=True)
            ]
        )


class JudgeReward:
    """The constitutional judge as a pointwise reward: mean over sampled principles of the
    probability that the response follows the principle (`cai.train.rewards.AssessReward`).
    A response the judge cannot score stops the run: PPO must not learn from a made-up reward."""

    def __init__(self, assess) -> None:
        self.assess = assess

    def __call__(self, inputs: RewardInputs) -> list[float]:
        scores = self.assess(inputs.prompts, inputs.responses)
        missing = [i for i, score in enumerate(scores) if score is None]
        if missing:
            raise RewardError(
                f"the judge could not score {len(missing)} of {len(scores)} responses "
                f"(last failure: {self.assess.failures[-1] if self.assess.failures else 'unknown'}); "
                "check the judge backend, or shorten max_new_tokens if prompts overflow its context"
            )
        return [float(score) for score in scores]


class RemoteReward:
    """A running `cai reward serve` as PPO's reward (`reward: {kind: remote, url: ...}`): each
    response judged on its own. A response the service could not score, or the service down
    past the client's deadline, stops the run with one line; PPO never learns from a stand-in."""

    def __init__(self, spec) -> None:
        if spec.mode != "score":
            raise ConfigError(
                f"PPO's remote reward scores each response on its own (mode: score), not "
                f"{spec.mode}",
                key="reward.mode",
                fix="Drop reward.mode (or set it to score); rank and compare need groups of "
                "responses or a reference answer per prompt, which PPO's rollouts do not have.",
            )
        self.client = spec.client()

    def __call__(self, inputs: RewardInputs) -> list[float]:
        scores = self.client(inputs.prompts, inputs.responses)
        missing = [i for i, score in enumerate(scores) if score is None]
        if missing:
            raise RewardError(
                f"the reward service at {self.client.url} could not score {len(missing)} of "
                f"{len(scores)} responses (see its log); check the judge behind it"
            )
        return [float(score) for score in scores]


def build_reward(spec, tokenizer, device=None, owned: ExitStack | None = None) -> RewardFunction:
    """The reward function a config's `reward:` section describes.

    A judge reward's backend, built here from its spec, is closed when `owned` closes (the
    trainer's); without `owned` it lives as long as the process.
    """
    kind = spec.kind
    if kind == "tokens":
        return TokenFractionReward.from_strings(tokenizer, spec.tokens)
    if kind == "model":
        return ModelReward(spec.path, device, spec.batch_size, spec.max_length)
    if kind == "python":
        module_name, _, attr = spec.target.partition(":")
        try:
            target = importlib.import_module(module_name)
        except ImportError as err:
            raise ConfigError(
                f"reward target {spec.target!r}: cannot import {module_name}: {err}"
            ) from err
        for part in attr.split("."):
            target = getattr(target, part, None)
            if target is None:
                raise ConfigError(f"reward target {spec.target!r}: {module_name} has no {attr}")
        if isinstance(target, type) or spec.kwargs:
            target = target(**spec.kwargs)
        if not callable(target):
            raise ConfigError(f"reward target {spec.target!r} is not callable")
        return target
    if kind == "judge":
        return _judge(spec, owned)
    if kind == "remote":
        return RemoteReward(spec)
    raise ConfigError(f"unknown reward kind {kind!r}")


def check_judge_reward(spec: JudgeRewardSpec) -> None:
    """Refuse a judge reward PPO cannot build, before any model loads: a pairwise mode (PPO's
    rollouts have no reference answer to beat) or no judge backend."""
    from cai.train.rewards import judge_backend_spec

    if spec.mode != "assess":
        raise ConfigError(
            f"PPO's judge reward scores each response on its own (mode: assess), not {spec.mode}",
            key="reward.mode",
            fix="Drop reward.mode (or set it to assess); pairwise judging needs a reference "
            "answer per prompt, which PPO's rollouts do not have.",
        )
    judge_backend_spec(spec)


def _judge(spec: JudgeRewardSpec, owned: ExitStack | None) -> JudgeReward:
    """The one judge-reward spec, pointwise, as PPO's reward (same refusals as GRPO's)."""
    from cai.train.rewards import judge_reward

    check_judge_reward(spec)
    if owned is None:
        from cai.train.rewards import build_judge_reward

        return JudgeReward(build_judge_reward(spec))
    return JudgeReward(owned.enter_context(judge_reward(spec)))
