"""The loop's small state file: which stage of which round has started and finished.

Every change is one atomic write of `loop_state.json`, so after a kill the file says exactly
which stages finished (they are skipped on rerun, their results read back from here) and
which one was running (it is entered again; each stage resumes its own work). The file also
holds the settings fingerprint: a rerun with other settings is refused, naming the keys.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

from cai.errors import CaiError
from cai.files import atomic_write_json
from cai.jobs import changed_keys

STATE_FILE = "loop_state.json"


class LoopConfigChangedError(CaiError, RuntimeError):
    """The run directory holds rounds made with other loop settings."""


class StageRecord(BaseModel):
    status: Literal["started", "done"]
    result: dict[str, Any] = Field(default_factory=dict)
    seconds: float | None = None
    """Wall time of the run that finished the stage (a resumed stage: its last run only)."""


class RoundState(BaseModel):
    stages: dict[str, StageRecord] = Field(default_factory=dict)


class LoopState(BaseModel):
    fingerprint: dict[str, Any]
    rounds: dict[str, RoundState] = Field(default_factory=dict)
    stopped: str | None = None
    """Why the loop stopped early (the stopping rule), None while it may go on."""


class StateFile:
    """The state of one run directory, written atomically on every change."""

    def __init__(self, run_dir: str | Path, fingerprint: dict[str, Any]) -> None:
        self.path = Path(run_dir) / STATE_FILE
        fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        self.state = self._read() or LoopState(fingerprint=fingerprint)
        self._refuse_changed(fingerprint)
        self._write()

    def _read(self) -> LoopState | None:
        if not self.path.is_file():
            return None
        try:
            return LoopState.model_validate_json(self.path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValidationError) as err:
            raise LoopConfigChangedError(
                f"cannot read the loop state ({str(err).splitlines()[0]})",
                file=self.path,
                fix="The file was changed outside cai; move the run directory aside and start "
                "again with another --out.",
            ) from None

    def _refuse_changed(self, fingerprint: dict[str, Any]) -> None:
        changed = changed_keys(self.state.fingerprint, fingerprint)
        if changed:
            raise LoopConfigChangedError(
                f"holds rounds made with other loop settings (changed: {', '.join(changed)}); "
                "continuing would mix them",
                file=self.path.parent,
                fix="Restore those settings to resume (rounds, stop and name may change), or "
                "start a new run directory with --out.",
            )

    def _write(self) -> None:
        atomic_write_json(self.path, self.state.model_dump(mode="json"))

    # ---- queries ------------------------------------------------------------------------------
    def record(self, round_no: int, stage: str) -> StageRecord | None:
        found = self.state.rounds.get(str(round_no))
        return found.stages.get(stage) if found else None

    def done(self, round_no: int, stage: str) -> bool:
        record = self.record(round_no, stage)
        return record is not None and record.status == "done"

    def result(self, round_no: int, stage: str) -> dict[str, Any]:
        record = self.record(round_no, stage)
        if record is None or record.status != "done":
            raise KeyError(f"round {round_no} stage {stage} has not finished")
        return record.result

    # ---- changes ------------------------------------------------------------------------------
    def start(self, round_no: int, stage: str) -> None:
        rounds = self.state.rounds.setdefault(str(round_no), RoundState())
        rounds.stages[stage] = StageRecord(status="started")
        self._write()

    def finish(
        self, round_no: int, stage: str, result: dict[str, Any], seconds: float | None = None
    ) -> None:
        rounds = self.state.rounds.setdefault(str(round_no), RoundState())
        clean = json.loads(json.dumps(result, default=str))
        rounds.stages[stage] = StageRecord(status="done", result=clean, seconds=seconds)
        self._write()

    def seconds(self, round_no: int) -> dict[str, float]:
        """Each finished stage's wall time in round r (stages timed by this version of cai)."""
        found = self.state.rounds.get(str(round_no))
        stages = found.stages if found else {}
        return {k: v.seconds for k, v in stages.items() if v.seconds is not None}

    def set_stopped(self, reason: str | None) -> None:
        self.state.stopped = reason
        self._write()
