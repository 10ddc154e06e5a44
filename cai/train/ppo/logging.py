"""Per-step PPO metrics: appended to metrics.jsonl and metrics.csv, plotted to a PNG at the end.

Appending (never rewriting) means a resumed run continues the same files; rows from steps
after the checkpoint a run resumes from are dropped first so no step appears twice.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

# The curves a reader wants first; anything else logged is kept in the files too.
PLOTTED = [
    "reward/mean",
    "kl/mean",
    "policy/entropy",
    "policy/clip_fraction",
    "policy/approx_kl",
    "value/loss",
    "response/length",
    "kl/coef",
]


class MetricsLogger:
    """Writes one row per step to JSONL and CSV (columns fixed by the first row)."""

    def __init__(self, directory: str | Path, enabled: bool = True) -> None:
        self.directory = Path(directory)
        self.enabled = enabled
        self.jsonl = self.directory / "metrics.jsonl"
        self.csv = self.directory / "metrics.csv"
        if enabled:
            self.directory.mkdir(parents=True, exist_ok=True)

    def truncate_after(self, step: int) -> None:
        """Drop logged rows with step > `step` (a resumed run re-logs them)."""
        if not self.enabled:
            return
        rows = [r for r in read_metrics(self.jsonl) if r["step"] <= step]
        self.jsonl.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if rows:
            self._write_csv(rows, mode="w")
        elif self.csv.exists():
            self.csv.unlink()

    def log(self, row: dict[str, float]) -> None:
        if not self.enabled:
            return
        with self.jsonl.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        self._write_csv([row], mode="a")

    def _write_csv(self, rows: list[dict], mode: str) -> None:
        new_file = mode == "w" or not self.csv.exists() or self.csv.stat().st_size == 0
        if new_file:
            fields = list(rows[0])
        else:
            with self.csv.open() as handle:
                fields = next(csv.reader(handle))
        with self.csv.open(mode if not new_file else "w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields, extrasaction="ignore")
            if new_file:
                writer.writeheader()
            writer.writerows(rows)

    def plot(self, path: str | Path | None = None) -> Path | None:
        if not self.enabled:
            return None
        return plot_metrics(read_metrics(self.jsonl), path or self.directory / "metrics.png")


def read_metrics(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def plot_metrics(rows: list[dict], path: str | Path) -> Path | None:
    """A grid of the main curves against the PPO step (matplotlib's Agg backend, no display)."""
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [n for n in PLOTTED if any(n in r for r in rows)]
    cols = 2
    nrows = (len(names) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(10, 2.6 * nrows), squeeze=False)
    steps = [r["step"] for r in rows]
    for ax, name in zip(axes.flat, names, strict=False):
        ax.plot(steps, [r.get(name, float("nan")) for r in rows], linewidth=1.2)
        ax.set_title(name, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(names) :]:
        ax.axis("off")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
