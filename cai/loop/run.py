"""Running the loop: lock the run directory, check every input, then run rounds until the
configured number, or until the stopping rule says the policy has stopped improving."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cai.backends.base import Backend
from cai.config import save_resolved
from cai.constitution import load_constitution
from cai.constitution.usage import require_use
from cai.files import DirectoryLock, relative_to_run
from cai.loop.config import LoopConfig, fingerprint
from cai.loop.context import RoundContext
from cai.loop.data import check_pool, read_human_labels
from cai.loop.publish import LoopTracker, publish_final_policy
from cai.loop.report import RoundRow, markdown_table, round_rows, stop_reason, write_report
from cai.loop.round import run_round
from cai.loop.state import StateFile
from cai.model_names import resolve_model
from cai.paths import check_run_paths
from cai.tables import count_prompts
from cai.templates import TemplateSet


class LoopResult(BaseModel):
    output_dir: str
    rounds: list[RoundRow]
    stopped: str | None
    final_policy: str
    summary: str
    """The summary table as Markdown."""


def check_inputs(config: LoopConfig) -> None:
    """Everything a round reads is read once here, before any model loads or file is written."""
    check_pool(config)
    count_prompts(config.eval.prompts, config.eval.column, config.eval.limit)
    require_use(load_constitution(config.constitution), "judge")
    TemplateSet(config.templates)
    if config.human_labels:
        read_human_labels(config.human_labels)


def _start_policy(config: LoopConfig) -> str:
    """The starting policy as a local directory (an embedded name is resolved once)."""
    return resolve_model(config.policy.model)


def _save_resolved(config: LoopConfig, run_dir: Path) -> None:
    keys = (
        "prompts.path",
        "eval.prompts",
        "human_labels",
        "templates",
        "constitution",
        "policy.model",
        "judge_backend.model",
        "reward_model.model",
    )
    data = config.model_dump(mode="json", exclude={"output_dir"})
    save_resolved(data, run_dir, keys, header="output_dir: the directory holding this file")


def _rounds(
    config: LoopConfig,
    run_dir: Path,
    state: StateFile,
    start: str,
    judge_backend: Backend | None,
    say: Callable[[str], None],
    tracker: LoopTracker,
) -> tuple[str, str | None]:
    """Run the rounds not finished yet; (the newest policy, why the loop stopped early)."""
    final, stopped = start, None
    tracker.log_rows(round_rows(state, config.rounds))  # rounds an earlier run finished
    for round_no in range(1, config.rounds + 1):
        rows = round_rows(state, config.rounds)
        stopped = stop_reason(rows, config.stop.patience)
        if stopped:
            say(f"stopping before round {round_no}: {stopped}")
            break
        ctx = RoundContext(config, run_dir, round_no, start, state, judge_backend)
        run_round(ctx, say)
        final = str(ctx.path(state.result(round_no, "policy")["path"]))
        rows = round_rows(state, config.rounds)
        write_report(run_dir, config.name, rows, None, {})
        tracker.log_rows(rows)
    return final, stopped


def _train_data(state: StateFile, run_dir: Path, rows: list[RoundRow]) -> Path | None:
    """The last finished round's training rows (for the final policy's card)."""
    if not rows:
        return None
    return run_dir / state.result(rows[-1].round, "data")["train_path"]


def run_loop(
    config: LoopConfig,
    *,
    judge_backend: Backend | None = None,
    say: Callable[[str], None] = lambda text: None,
) -> LoopResult:
    """Run (or resume) every round; `judge_backend` replaces the judge the config describes."""
    check_run_paths(config)
    run_dir = Path(config.output_dir)
    with DirectoryLock(run_dir, "loop directory"):
        check_inputs(config)
        state = StateFile(run_dir, fingerprint(config))
        _save_resolved(config, run_dir)
        start = _start_policy(config)
        tracker = LoopTracker(config, run_dir)
        try:
            final, stopped = _rounds(config, run_dir, state, start, judge_backend, say, tracker)
        finally:
            tracker.finish()
        state.set_stopped(stopped)
        rows = round_rows(state, config.rounds)
        extra: dict[str, Any] = {
            "start_policy": relative_to_run(start, run_dir),
            "final_policy": relative_to_run(final, run_dir),
        }
        write_report(run_dir, config.name, rows, stopped, extra)
        publish_final_policy(config, start, final, rows, _train_data(state, run_dir, rows))
    return LoopResult(
        output_dir=str(run_dir),
        rounds=rows,
        stopped=stopped,
        final_policy=final,
        summary=markdown_table(rows),
    )
