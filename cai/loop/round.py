"""One round: prompts -> label (sample, judge, preferences) -> data -> reward model -> policy
-> eval, each stage recorded in the state file when it starts and when it finishes.

A finished stage is skipped on rerun and its result read back from the state file; the
stage a kill interrupted is entered again and resumes its own work (chunked jobs for
labelling, checkpoints for training, whole rewrites for the small files).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from cai.loop import measure, steps, training
from cai.loop.context import RoundContext
from cai.loop.report import STAGE_NAMES

STAGE_ORDER = STAGE_NAMES
STAGES: dict[str, Callable[[RoundContext], dict[str, Any]]] = {
    "prompts": steps.prompts_stage,
    "label": steps.label_stage,
    "data": steps.data_stage,
    "reward_model": training.reward_model_stage,
    "policy": training.policy_stage,
    "eval": measure.eval_stage,
}
"""Each stage's function: it reads the round's context and returns the result recorded for it."""


def run_round(ctx: RoundContext, say: Callable[[str], None]) -> None:
    """Run every stage of the round not finished yet, in order."""
    for name in STAGE_ORDER:
        if name == "reward_model" and ctx.config.reward_model is None:
            continue
        if ctx.state.done(ctx.round_no, name):
            continue
        resumed = ctx.state.record(ctx.round_no, name) is not None
        say(f"round {ctx.round_no}: {name}" + (" (resuming)" if resumed else ""))
        ctx.state.start(ctx.round_no, name)
        started = time.monotonic()
        result = STAGES[name](ctx)
        seconds = round(time.monotonic() - started, 1)
        ctx.state.finish(ctx.round_no, name, result, seconds)
        say(f"round {ctx.round_no}: {name} took {seconds:.1f}s")
