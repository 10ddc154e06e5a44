"""What the loop reports: one row per finished round, as Markdown, JSON and a figure.

Rows are rebuilt from the state file every time, so the report of a resumed run is the
report of an uninterrupted one. `stop_reason` applies the stopping rule to the same rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cai.files import atomic_write_json, atomic_write_text, temp_path_beside
from cai.loop.state import StateFile

STAGE_NAMES = ("prompts", "label", "data", "reward_model", "policy", "eval")
"""A round's stages in order (`cai.loop.round` runs them)."""


class RoundRow(BaseModel):
    round: int
    pairs: int
    """Preference pairs this round labelled (after human overrides)."""
    train_rows: int
    """Rows the round trained on (its own and earlier rounds', per `data.mix`)."""
    human_overrides: int
    win_vs_previous: float | None
    win_vs_previous_ci: tuple[float, float] | None
    win_vs_start: float | None
    win_vs_start_ci: tuple[float, float] | None
    mean_reward: float | None
    kl: float | None
    mean_response_words: float | None
    stage_seconds: dict[str, float] = {}
    """Wall time of each stage of the round (seconds), where it was timed."""

    def tracked(self) -> dict[str, float | None]:
        """The row as tracker metrics: win rates with their interval ends, and stage times."""
        values: dict[str, float | None] = {
            "pairs": self.pairs,
            "train_rows": self.train_rows,
            "human_overrides": self.human_overrides,
            "mean_reward": self.mean_reward,
            "kl": self.kl,
            "mean_response_words": self.mean_response_words,
        }
        for key in ("win_vs_previous", "win_vs_start"):
            values[f"{key}/rate"] = getattr(self, key)
            ci = getattr(self, f"{key}_ci")
            values[f"{key}/ci_low"] = ci[0] if ci else None
            values[f"{key}/ci_high"] = ci[1] if ci else None
        for stage, seconds in self.stage_seconds.items():
            values[f"time/{stage}_s"] = seconds
        if self.stage_seconds:
            values["time/round_s"] = sum(self.stage_seconds.values())
        return values


def round_rows(state: StateFile, rounds: int) -> list[RoundRow]:
    """A row for each round whose eval finished, in order."""
    rows = []
    for r in range(1, rounds + 1):
        if not state.done(r, "eval"):
            break
        data, evals = state.result(r, "data"), state.result(r, "eval")
        policy = state.result(r, "policy")
        previous, start = evals["vs_previous"], evals["vs_start"]
        rows.append(
            RoundRow(
                round=r,
                pairs=data["pairs"],
                train_rows=data["train_rows"],
                human_overrides=data.get("ai_overridden", 0),
                win_vs_previous=previous["win_rate"],
                win_vs_previous_ci=previous["win_rate_ci"],
                win_vs_start=start["win_rate"],
                win_vs_start_ci=start["win_rate_ci"],
                mean_reward=evals.get("mean_reward"),
                kl=policy.get("kl"),
                mean_response_words=evals.get("mean_response_words"),
                stage_seconds=state.seconds(r),
            )
        )
    return rows


def gain_is_flat(row: RoundRow) -> bool:
    """The interval of the gain over policy r (win rate - 0.5) includes zero (or is unknown)."""
    ci = row.win_vs_previous_ci
    return ci is None or ci[0] <= 0.5 <= ci[1]


def stop_reason(rows: list[RoundRow], patience: int | None) -> str | None:
    """Why to stop now: the last `patience` rounds all gained nothing measurable."""
    if patience is None or len(rows) < patience:
        return None
    last = rows[-patience:]
    if all(gain_is_flat(row) for row in last):
        return (
            f"the win rate over the previous policy had an interval including 0.5 (no "
            f"measurable gain) for {patience} round(s) in a row (rounds "
            f"{last[0].round}-{last[-1].round})"
        )
    return None


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _rate(value: float | None, ci: tuple[float, float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + ("" if ci is None else f" [{ci[0]:.3f}, {ci[1]:.3f}]")


def markdown_table(rows: list[RoundRow]) -> str:
    lines = [
        "| round | pairs | train rows | human overrides | win vs previous [CI] | "
        "win vs start [CI] | mean reward | KL | mean response words |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        lines.append(
            f"| {row.round} | {row.pairs} | {row.train_rows} | {row.human_overrides} | "
            f"{_rate(row.win_vs_previous, row.win_vs_previous_ci)} | "
            f"{_rate(row.win_vs_start, row.win_vs_start_ci)} | {_num(row.mean_reward)} | "
            f"{_num(row.kl)} | {_num(row.mean_response_words, 1)} |"
        )
    return "\n".join(lines) + "\n"


def stage_table(rows: list[RoundRow]) -> str:
    """Seconds per stage and per round, for the rounds whose stages were timed."""
    timed = [row for row in rows if row.stage_seconds]
    if not timed:
        return ""
    stages = [s for s in STAGE_NAMES if any(s in row.stage_seconds for row in timed)]
    lines = [
        "| round | " + " | ".join(stages) + " | round |",
        "|---" * (len(stages) + 2) + "|",
    ]
    for row in timed:
        cells = [_num(row.stage_seconds.get(stage), 1) for stage in stages]
        total = sum(row.stage_seconds.values())
        lines.append(f"| {row.round} | " + " | ".join(cells) + f" | {total:.1f} |")
    return "\n".join(lines) + "\n"


def write_report(
    run_dir: Path, name: str, rows: list[RoundRow], stopped: str | None, extra: dict[str, Any]
) -> dict[str, Path]:
    """summary.json, summary.md and loop.png in the run directory (each written atomically)."""
    payload = {
        "name": name,
        "rounds": [row.model_dump(mode="json") for row in rows],
        "stopped": stopped,
        **extra,
    }
    text = f"# {name}\n\n" + markdown_table(rows)
    times = stage_table(rows)
    if times:
        text += "\nSeconds per stage (wall time of the run that finished it):\n\n" + times
    if stopped:
        text += f"\nStopped early: {stopped}.\n"
    paths = {
        "json": atomic_write_json(run_dir / "summary.json", payload),
        "markdown": atomic_write_text(run_dir / "summary.md", text),
    }
    if rows:
        paths["figure"] = plot_rounds(rows, run_dir / "loop.png")
    return paths


def plot_rounds(rows: list[RoundRow], path: Path) -> Path:
    """Four panels per round: win rates with intervals, reward, KL, response length."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = [row.round for row in rows]
    fig, axes = plt.subplots(1, 4, figsize=(16, 3.6))
    for key, label in (("win_vs_previous", "vs previous"), ("win_vs_start", "vs start")):
        values = [getattr(row, key) for row in rows]
        cis = [getattr(row, f"{key}_ci") or (v, v) for row, v in zip(rows, values, strict=True)]
        low = [v - c[0] if v is not None else 0 for v, c in zip(values, cis, strict=True)]
        high = [c[1] - v if v is not None else 0 for v, c in zip(values, cis, strict=True)]
        axes[0].errorbar(x, values, yerr=[low, high], marker="o", capsize=4, label=label)
    axes[0].axhline(0.5, color="grey", linestyle="--", linewidth=1)
    axes[0].set(title="judged win rate", ylim=(0, 1), xlabel="round")
    axes[0].legend()
    panels = (
        ("mean_reward", "mean reward (reward model)"),
        ("kl", "KL to policy r (PPO)"),
        ("mean_response_words", "mean response length (words)"),
    )
    for ax, (key, title) in zip(axes[1:], panels, strict=True):
        values = [getattr(row, key) for row in rows]
        shown = [(r, v) for r, v in zip(x, values, strict=True) if v is not None]
        if shown:
            ax.plot([r for r, _ in shown], [v for _, v in shown], marker="o")
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", va="center", transform=ax.transAxes)
        ax.set(title=title, xlabel="round")
    for ax in axes:
        ax.set_xticks(x)
    fig.tight_layout()
    tmp = temp_path_beside(path) / path.name
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)
    tmp.parent.rmdir()
    return path
