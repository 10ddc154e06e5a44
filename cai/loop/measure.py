"""The end of a round: judged win rate of policy r+1 against policy r and the start.

Both comparisons go through `cai.evaluate.run_win_rate` (both answer orders, bootstrap
interval over prompts). In round 1 policy r is the starting policy, so one comparison serves
both. Mean reward (the round's reward model on policy r+1's answers) and mean response length
(whitespace words) come from the same answers.

From round 2 on the two comparisons share their engines instead of starting five: policy
r+1's answers (greedy, same seed, same prompts) are kept in a call cache beside the report,
so the second comparison reads them instead of starting that engine again; and the judge's
engine, started for the first comparison's judging, is held until the stage ends, so the
second comparison's baseline (usually the starting policy, the judge's model) and judging
use it as it is. Each role still starts only after the previous one stopped (`RoleHandover`);
only the held judge, started last, outlives a comparison.
"""

from __future__ import annotations

import json
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from cai.backends import make_backend, parse_backend_spec
from cai.backends.owned import starts_lazily
from cai.evaluate import WinRateConfig, run_win_rate
from cai.loop.context import RoundContext
from cai.train.reward_scorer import RewardModelScorer

ANSWERS_CACHE = "answers.sqlite"
"""Policy r+1's eval answers, read back by the second comparison (in rounds/<r>/eval/)."""


def _win_rate(ctx: RoundContext, policy: str, baseline: str, out: Path) -> dict[str, Any]:
    settings = ctx.config.eval
    policy_spec = ctx.backend_dict(policy, settings.backend)
    if ctx.round_no > 1 and not policy_spec.get("cache_path"):
        policy_spec["cache_path"] = str(out.parent / ANSWERS_CACHE)
    config = WinRateConfig(
        prompts=settings.prompts,
        prompt_column=settings.column,
        limit=settings.limit,
        policy=policy_spec,
        baseline=ctx.backend_dict(baseline, settings.backend),
        judge=ctx.config.judge_backend.model_dump(mode="json"),
        constitution=ctx.config.constitution,
        templates=ctx.config.templates,
        judge_config=ctx.config.judge.model_dump(mode="json"),
        max_tokens=settings.max_tokens,
        temperature=0.0,
        seed=ctx.config.judge.seed,
        tie_margin=settings.tie_margin,
        confidence=settings.confidence,
        bootstrap_resamples=settings.bootstrap_resamples,
        output_dir=str(out),
    )
    report = run_win_rate(config, judge_backend=ctx.judge_backend)
    return {"report": ctx.rel(out / "report.json"), **report.summary.model_dump(mode="json")}


def _hold_judge(ctx: RoundContext, held: ExitStack) -> None:
    """A handle on the judge's shared engine for the whole stage. It is lazy, so it starts
    nothing itself; once the first comparison's judging starts the engine, the handle keeps
    it running for the second comparison. Only engines that start lazily (vLLM) are held:
    holding one that loads when made would keep a model in memory beside the others."""
    if ctx.judge_backend is not None:
        return  # the caller's judge: already kept, by the caller
    spec = parse_backend_spec(ctx.config.judge_backend.model_dump(mode="json"))
    if starts_lazily(spec):
        held.callback(make_backend(spec).close)


def _answers(pairs_file: Path) -> list[tuple[list[dict[str, str]], str]]:
    with pairs_file.open(encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    return [(row["prompt"], row["policy_response"]) for row in rows]


def _mean_reward(reward_model: Path, answers) -> float | None:
    """The reward model's mean score of (prompt, answer) conversations."""
    if not answers:
        return None
    scorer = RewardModelScorer(str(reward_model))
    conversations = [[*prompt, {"role": "assistant", "content": text}] for prompt, text in answers]
    scores = scorer.score(conversations)
    return sum(scores) / len(scores)


def eval_stage(ctx: RoundContext) -> dict[str, Any]:
    """Win rates of policy r+1 vs r and vs the start, mean reward and response length."""
    policy = str(ctx.path(ctx.result("policy")["path"]))
    out = ctx.dir / "eval"
    with ExitStack() as held:
        if ctx.round_no > 1:
            _hold_judge(ctx, held)
        previous = _win_rate(ctx, policy, ctx.policy_in, out / "vs_previous")
        if ctx.round_no == 1:
            start = previous  # policy r is the starting policy
        else:
            start = _win_rate(ctx, policy, ctx.start_policy, out / "vs_start")
    answers = _answers(out / "vs_previous" / "pairs.jsonl")
    reward = None
    if ctx.config.reward_model is not None:
        reward = _mean_reward(ctx.path(ctx.result("reward_model")["path"]), answers)
    words = [len(text.split()) for _, text in answers]
    return {
        "vs_previous": previous,
        "vs_start": start,
        "mean_reward": reward,
        "mean_response_words": sum(words) / len(words) if words else None,
    }
