"""What the loop shows outside its run directory: one tracker run per loop (a round axis),
and the final policy's model card with the round table, pushed to the Hub when asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cai.loop.config import LoopConfig
from cai.loop.report import RoundRow, markdown_table, stage_table
from cai.train.cards import (
    ModelCard,
    base_license,
    constitution_facts,
    dataset_facts,
    public_model_name,
    write_model_card,
)
from cai.train.push import push_if_asked
from cai.train.tracking import TrackerRun

LOOP_SETTINGS = ("rounds", "prompts.per_round", "sample", "judge", "data", "policy_step")


class LoopTracker:
    """The loop's one tracker run: settings at the start, then a row per finished round."""

    def __init__(self, config: LoopConfig, run_dir: Path) -> None:
        self.run = None
        self.logged: set[int] = set()
        if config.report_to:
            settings = config.model_dump(mode="json", exclude={"output_dir"})
            self.run = TrackerRun(config.report_to, run_dir, "cai-loop", config.name, settings)

    def log_rows(self, rows: list[RoundRow]) -> None:
        """Log the rounds not logged yet (after a resume: the earlier rounds first)."""
        if self.run is None:
            return
        for row in rows:
            if row.round not in self.logged:
                self.run.log(row.tracked(), step=row.round)
                self.logged.add(row.round)

    def finish(self) -> None:
        if self.run is not None:
            self.run.finish()


def _settings(config: LoopConfig) -> dict[str, Any]:
    data = config.model_dump(mode="json")
    picked: dict[str, Any] = {}
    for key in LOOP_SETTINGS:
        value: Any = data
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        picked[key] = value
    return picked


def loop_card(
    config: LoopConfig, start: str, rows: list[RoundRow], train_data: Path | None
) -> ModelCard:
    """The final policy's card: the loop as the method, its rounds, its last round's data."""
    method = config.policy_step.method
    last = rows[-1] if rows else None
    metrics = (
        {}
        if last is None
        else {
            k: v for k, v in last.tracked().items() if v is not None and not k.startswith("time/")
        }
    )
    reward = config.reward_model.model if config.reward_model else None
    times = stage_table(rows)
    return ModelCard(
        title=f"{config.name}: policy after {len(rows)} round(s)",
        method=f"cai loop: {len(rows)} round(s) of sample -> judge -> {method.upper()}",
        base_model=public_model_name(start),
        license=base_license(start),
        settings=_settings(config),
        data=[dataset_facts(train_data)] if train_data and train_data.is_file() else [],
        constitution=constitution_facts(config.constitution),
        judge_model=public_model_name(getattr(config.judge_backend, "model", None)),
        reward_models=[public_model_name(reward)] if reward else [],
        metrics=metrics,
        rounds_table=markdown_table(rows) + (f"\nSeconds per stage:\n\n{times}" if times else ""),
        tags=["rlaif", "cai-loop", method],
    )


def publish_final_policy(
    config: LoopConfig, start: str, final: str, rows: list[RoundRow], train_data: Path | None
) -> None:
    """Write the loop's card into the final policy's directory and push it when asked.
    The starting policy is never written to (a loop that trained nothing leaves it alone)."""
    final_dir = Path(final)
    if not rows or final_dir.resolve() == Path(start).resolve() or not final_dir.is_dir():
        return
    facts = {"loop": config.name, "rounds": len(rows), "start_policy": start}
    write_model_card(final_dir, loop_card(config, start, rows, train_data), facts)
    push_if_asked(final_dir, config.push_to_hub, config.private)
