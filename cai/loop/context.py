"""What every stage of a round reads: the loop's settings, the round's paths and the results
earlier stages recorded in the state file."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.backends.base import Backend
from cai.files import relative_to_run
from cai.loop.config import LoopConfig
from cai.loop.state import StateFile
from cai.model_names import resolve_model


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
