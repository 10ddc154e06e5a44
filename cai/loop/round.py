"""One round: prompts -> label (sample, judge, preferences) -> data -> reward model -> policy
-> eval, each stage recorded in the state file when it starts and when it finishes.

A finished stage is skipped on rerun and its result read back from the state file; the
stage a kill interrupted is entered again and resumes its own work (chunked jobs for
labelling, checkpoints for training, whole rewrites for the small files).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.backends.base import Backend
from cai.loop.config import LoopConfig
from cai.loop.state import StateFile

STAGE_ORDER = ("prompts", "label", "data", "reward_model", "policy", "eval")


@dataclass
class RoundContext:
    """What every stage of round r reads: settings, paths, earlier results."""

    config: LoopConfig
    run_dir: Path
    round_no: int
    start_policy: str
    state: StateFile
    judge_backend: Backend | None = None
    """A judge passed in by the caller (tests, notebooks); None = built from judge_backend."""

    @property
    def dir(self) -> Path:
        return self.run_dir / "rounds" / str(self.round_no)

    def path(self, rel: str) -> Path:
        """A path stored in the state file (relative to the run directory) made usable."""
        return self.run_dir / rel

    def rel(self, path: str | Path) -> str:
        from cai.files import relative_to_run

        return str(relative_to_run(path, self.run_dir))

    def result(self, stage: str, round_no: int | None = None) -> dict[str, Any]:
        return self.state.result(self.round_no if round_no is None else round_no, stage)

    @property
    def policy_in(self) -> str:
        """Policy r: the starting policy in round 1, else what round r-1's policy step made."""
        if self.round_no == 1:
            return self.start_policy
        return str(self.path(self.result("policy", self.round_no - 1)["path"]))

    @property
    def reward_model_in(self) -> str | None:
        """Where this round's reward model starts: the previous round's (warm) or the base."""
        settings = self.config.reward_model
        if settings is None:
            return None
        if settings.warm_start and self.round_no > 1:
            return str(self.path(self.result("reward_model", self.round_no - 1)["path"]))
        from cai.model_names import resolve_model

        return resolve_model(settings.model)

    def backend_dict(self, model: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
        """The policy's backend settings for another model directory; `extra` settings of
        another kind replace them (each kind takes only its own settings)."""
        extra = dict(extra or {})
        data = self.config.policy.model_dump(mode="json")
        if extra.get("kind", data["kind"]) != data["kind"]:
            data = {}
        data.update(extra)
        data["model"] = model
        return data


def _stages() -> dict[str, Callable[[RoundContext], dict[str, Any]]]:
    from cai.loop import measure, steps, training

    return {
        "prompts": steps.prompts_stage,
        "label": steps.label_stage,
        "data": steps.data_stage,
        "reward_model": training.reward_model_stage,
        "policy": training.policy_stage,
        "eval": measure.eval_stage,
    }


def run_round(ctx: RoundContext, say: Callable[[str], None]) -> None:
    """Run every stage of the round not finished yet, in order."""
    stages = _stages()
    for name in STAGE_ORDER:
        if name == "reward_model" and ctx.config.reward_model is None:
            continue
        if ctx.state.done(ctx.round_no, name):
            continue
        resumed = ctx.state.record(ctx.round_no, name) is not None
        say(f"round {ctx.round_no}: {name}" + (" (resuming)" if resumed else ""))
        ctx.state.start(ctx.round_no, name)
        result = stages[name](ctx)
        ctx.state.finish(ctx.round_no, name, result)
