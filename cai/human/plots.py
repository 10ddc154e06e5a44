"""Plots for the agreement report, drawn on the Agg canvas (no display, no global pyplot
state, safe in threads and on servers)."""

from __future__ import annotations

from pathlib import Path

from cai.human.agreement import CalibrationBin, PrincipleAgreement
from cai.human.length_bias import LengthBias


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(figure)
    return figure


def reliability_diagram(bins: list[CalibrationBin], path: str | Path, ece: float | None) -> Path:
    """Human agreement rate against the AI's confidence, per bin, with the diagonal."""
    figure = _figure(5, 4.5)
    ax = figure.add_subplot(1, 1, 1)
    lo, hi = bins[0].lo, bins[-1].hi
    ax.plot([lo, hi], [lo, hi], linestyle="--", color="grey", label="perfect calibration")
    filled = [b for b in bins if b.count]
    ax.bar(
        [(b.lo + b.hi) / 2 for b in filled],
        [b.mean_outcome for b in filled],
        width=[(b.hi - b.lo) * 0.9 for b in filled],
        alpha=0.6,
        label="human agreement",
    )
    ax.plot(
        [b.mean_confidence for b in filled],
        [b.mean_outcome for b in filled],
        marker="o",
        color="black",
        label="bin mean",
    )
    for b in filled:
        ax.annotate(f"n={b.count}", ((b.lo + b.hi) / 2, 0.02), ha="center", fontsize=8)
    ax.set_xlim(lo, hi)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("AI judge confidence (prob_chosen)")
    ax.set_ylabel("share of humans preferring the AI's choice")
    title = "Reliability" + (f" (ECE {ece:.3f})" if ece is not None else "")
    ax.set_title(title)
    ax.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)


def principle_chart(rows: list[PrincipleAgreement], path: str | Path) -> Path:
    """Accuracy against human labels per principle."""
    rows = [r for r in rows if r.accuracy is not None]
    figure = _figure(6, max(2.0, 0.35 * len(rows) + 1.0))
    ax = figure.add_subplot(1, 1, 1)
    ax.barh([r.principle for r in rows], [r.accuracy for r in rows])
    for i, r in enumerate(rows):
        ax.annotate(f"n={r.n}", (min(r.accuracy, 0.9), i), va="center", fontsize=8)
    ax.set_xlim(0.0, 1.0)
    ax.axvline(0.5, linestyle="--", color="grey")
    ax.set_xlabel("accuracy against human labels")
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)


def length_bias_chart(bias: LengthBias, path: str | Path) -> Path:
    """Share of pairs where the longer response won, judge beside people, per bin of
    relative length difference."""
    figure = _figure(6, 4.5)
    ax = figure.add_subplot(1, 1, 1)
    bins = bias.bins
    xs = list(range(len(bins)))
    for offset, name, values in (
        (-0.2, "AI judge", [b.judge_longer_rate for b in bins]),
        (0.2, "people", [b.human_longer_rate for b in bins]),
    ):
        ax.bar(
            [x + offset for x in xs],
            [v if v is not None else 0.0 for v in values],
            width=0.4,
            label=name,
            alpha=0.75,
        )
    for x, b in zip(xs, bins, strict=True):
        ax.annotate(f"n={b.n}", (x, 0.02), ha="center", fontsize=8)
    ax.axhline(0.5, linestyle="--", color="grey", label="no length preference")
    ax.set_xticks(xs, [f"{b.lo:.0%}-{b.hi:.0%}" for b in bins])
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel(f"relative length difference ((longer - shorter) / longer, {bias.unit})")
    ax.set_ylabel("share choosing the longer response")
    ax.set_title("Length bias")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), ncol=3, fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)
