"""`logs/monitor.jsonl` (one line per check) and `monitor.png`.

Every write replaces the file atomically (`cai.files`), so a kill leaves the old or the new
file, never half a line; a resumed run drops the checks after its checkpoint and a check is
never recorded twice for one step.
"""

from __future__ import annotations

import json
from pathlib import Path

from cai.files import atomic_write_lines

LOG_NAME = "monitor.jsonl"
PLOT_NAME = "monitor.png"


class MonitorLog:
    def __init__(self, run_dir: str | Path, enabled: bool = True) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / "logs" / LOG_NAME
        self.enabled = enabled

    def rows(self) -> list[dict]:
        return read_monitor(self.path)

    def truncate_after(self, step: int) -> None:
        """Drop checks after `step` (the step a resumed run continues from)."""
        if self.enabled and self.path.exists():
            atomic_write_lines(self.path, [r for r in self.rows() if r["step"] <= step])

    def append(self, row: dict) -> None:
        """Add one check; an earlier record for the same or a later step is replaced."""
        if self.enabled:
            kept = [r for r in self.rows() if r["step"] < row["step"]]
            atomic_write_lines(self.path, [*kept, row])

    def plot(self) -> Path | None:
        if not self.enabled:
            return None
        return plot_monitor(self.rows(), self.run_dir / PLOT_NAME)


def read_monitor(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


_PANELS = [
    (("reward_mean", "reference_reward_mean"), "reward (policy vs reference)"),
    (("win_rate",), "judge win rate vs reference"),
    (("length_ratio",), "length / reference length"),
    (("boilerplate",), "boilerplate share"),
    (("refusal_rate", "reference_refusal_rate"), "refusal rate (policy vs reference)"),
    (("kl",), "KL to reference (nats / response)"),
]


def plot_monitor(rows: list[dict], path: str | Path) -> Path | None:
    """One panel per signal against the training step; warnings are marked on every panel."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 2, figsize=(10, 7.8), squeeze=False)
    steps = [r["step"] for r in rows]
    warned = [r["step"] for r in rows if r.get("warnings")]
    for ax, (keys, title) in zip(axes.flat, _PANELS, strict=True):
        for key in keys:
            values = [r.get(key) for r in rows]
            values = [float("nan") if v is None else v for v in values]
            ax.plot(steps, values, marker="o", markersize=3, linewidth=1.2, label=key)
        for step in warned:
            ax.axvline(step, color="tab:red", alpha=0.3, linewidth=1)
        if len(keys) > 1:
            ax.legend(fontsize=7)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
