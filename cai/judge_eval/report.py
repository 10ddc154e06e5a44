"""The judge-eval report: report.json (every number), report.md, a self-contained
report.html and accuracy.png (accuracy per subset per cell).

Blocks are rendered to Markdown and HTML by the agreement report's own renderers
(`cai.human.report`), so both formats always carry the same numbers.
"""

from __future__ import annotations

import html
from pathlib import Path

from pydantic import BaseModel, Field

from cai.files import atomic_write_text
from cai.human.plots import _figure
from cai.human.report import _html_block, _markdown_block
from cai.human.report_sections import Block, fmt, fmt_ci
from cai.judge_eval.metrics import BenchmarkScore

TITLE = "Judge evaluation"


class CellReport(BaseModel):
    cell: str
    judge: str
    judge_models: list[str]
    constitution: str
    templates: str | None
    method: str
    benchmarks: list[BenchmarkScore]
    verdicts: dict[str, str] = Field(default_factory=dict)
    """Per benchmark: one line against the published anchors."""


class EvalReport(BaseModel):
    cells: list[CellReport]
    tie_margin: float
    bootstrap_resamples: int
    confidence: float
    limit: int | None
    notes: list[str] = Field(default_factory=list)


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}"


def _pct_ci(ci) -> str:
    return "n/a" if ci is None else f"[{100 * ci.low:.1f}, {100 * ci.high:.1f}]"


def _table(header: list[str], rows: list[list[str]]) -> Block:
    return Block("table", header=tuple(header), rows=tuple(tuple(r) for r in rows))


def _overview(report: EvalReport) -> list[Block]:
    rows = []
    for cell in report.cells:
        for b in cell.benchmarks:
            run = b.run
            cost = "n/a" if run is None or run.cost is None else f"${run.cost:.4f}"
            rows.append(
                [
                    cell.cell,
                    b.benchmark,
                    _pct(b.score),
                    _pct(b.overall.accuracy),
                    _pct_ci(b.overall.accuracy_ci),
                    fmt(b.flip_rate),
                    fmt(b.tie_rate),
                    str(run.tokens if run else 0),
                    f"{run.judge_seconds:.1f}" if run else "n/a",
                    cost,
                ]
            )
    pct = f"{report.confidence:.0%}"
    return [
        _table(
            [
                "cell",
                "benchmark",
                "score",
                "accuracy",
                f"{pct} interval",
                "flip rate",
                "tie rate",
                "tokens",
                "judge s",
                "cost",
            ],
            rows,
        ),
        Block(
            "p",
            "score: the benchmark counted its own way (x100); accuracy: the share of "
            "items right, ties counting half, with a percentile bootstrap interval over items "
            f"({report.bootstrap_resamples} resamples). Flip rate: the share of pairs whose "
            "two answer orders picked different winners. Tie rate: the share the judge left "
            f"within {report.tie_margin} of 0.5.",
        ),
    ]


def _subset_table(b: BenchmarkScore) -> Block:
    """Per subset and overall: items, accuracy with its interval, the benchmark's score,
    RM-Bench's hard / normal / easy and the votes' agreement with ties where they apply."""
    has_style = any(s.hard is not None for s in b.subsets)
    has_votes = any(s.with_ties is not None for s in b.subsets)
    header = ["subset", "items", "scored", "failed", "accuracy", "interval", "score"]
    header += ["hard", "normal", "easy"] if has_style else []
    header += ["agreement with ties"] if has_votes else []
    rows = []
    for s in [*b.subsets, b.overall]:
        score = s.score if s.subset != "all" else b.score
        row = [s.subset, str(s.items), str(s.scored), str(s.failed)]
        row += [_pct(s.accuracy), _pct_ci(s.accuracy_ci), _pct(score)]
        row += [_pct(s.hard), _pct(s.normal), _pct(s.easy)] if has_style else []
        row += [_pct(s.with_ties)] if has_votes else []
        rows.append(row)
    return _table(header, rows)


def _judge_blocks(b: BenchmarkScore) -> list[Block]:
    """Length bias, the per-principle view and what the judging cost."""
    blocks = []
    lb = b.length_bias
    if lb is not None and lb.n_pairs:
        text = (
            f"Length bias: on {lb.n_pairs} decided pairs of unequal length the judge picked the "
            f"longer answer {fmt(lb.judge_longer_rate)} of the time "
            f"({fmt_ci(lb.judge_longer_ci)}); the benchmark's right answer is the longer one "
            f"{fmt(lb.human_longer_rate)} of the time."
        )
        blocks.append(Block("p", text))
    if b.principles:
        header = ["principle", "pairs", "decisive", "on the benchmark's side", "labels it moves"]
        rows = [
            [p.principle, str(p.pairs), str(p.decisive_pairs), fmt(p.right), str(p.moves)]
            for p in b.principles
        ]
        blocks.append(_table(header, rows))
    run = b.run
    if run is not None:
        rate = "n/a" if b.pairs_per_second is None else f"{b.pairs_per_second:.2f}"
        unpriced = f"; no price for {', '.join(run.unpriced_models)}" if run.unpriced_models else ""
        text = (
            f"Cost: {run.tokens} tokens, {run.judge_seconds:.1f} s judging over all runs of "
            f"this job ({rate} judged rows/s; this run {run.judge_seconds_now:.1f} s, "
            f"{run.pairs_judged_now} rows judged, {run.pairs_resumed} resumed){unpriced}. "
            f"Run directory: {run.run_dir}."
        )
        blocks.append(Block("p", text))
    return blocks


def _benchmark_blocks(cell: CellReport, b: BenchmarkScore) -> list[Block]:
    blocks = [Block("h2", f"{cell.cell} on {b.benchmark} ({b.format})")]
    blocks.append(Block("p", f"Verdict: {cell.verdicts.get(b.benchmark, 'n/a')}"))
    read = (
        f"{b.rows_read} rows read, {b.malformed} malformed (left out), {b.rows_sampled_out} "
        f"left out by --limit; {b.overall.items} items, {b.comparisons} judged comparisons "
        f"({b.comparisons_failed} without a label). Score rule: {b.score_rule}."
    )
    blocks.append(Block("p", read))
    if b.malformed_examples:
        where = [
            (f"row {m.row}{f' (line {m.line})' if m.line else ''}: {m.reason}",)
            for m in b.malformed_examples
        ]
        blocks.append(Block("ul", rows=tuple(where)))
    blocks.append(_subset_table(b))
    if b.sections:
        blocks.append(_table(["section", "score"], [[k, _pct(v)] for k, v in b.sections.items()]))
    blocks += _judge_blocks(b)
    blocks += [Block("p", note) for note in b.notes]
    return blocks


def report_blocks(report: EvalReport) -> list[Block]:
    blocks = [*_overview(report)]
    if any(c.benchmarks for c in report.cells):
        blocks.append(Block("img", "accuracy per subset per cell", key="accuracy"))
    for cell in report.cells:
        blocks.append(
            Block(
                "p",
                (
                    f"Cell {cell.cell}: judge {cell.judge} ({', '.join(cell.judge_models)}), "
                    f"constitution {cell.constitution}, templates {cell.templates or 'bundled'}, "
                    f"method {cell.method}."
                ),
            )
        )
    for cell in report.cells:
        for b in cell.benchmarks:
            blocks += _benchmark_blocks(cell, b)
    blocks += [Block("p", note) for note in report.notes]
    return blocks


def accuracy_chart(report: EvalReport, path: str | Path) -> Path:
    """Grouped bars: accuracy per benchmark subset, one bar per cell."""
    names = {b.benchmark for cell in report.cells for b in cell.benchmarks}
    groups: list[str] = []
    for cell in report.cells:
        for b in cell.benchmarks:
            for s in b.subsets:
                key = s.subset if len(names) == 1 else f"{b.benchmark}:{s.subset}"
                if key not in groups:
                    groups.append(key)
    figure = _figure(max(6.0, 0.6 * len(groups) * max(1, len(report.cells)) + 2), 4.5)
    ax = figure.add_subplot(1, 1, 1)
    width = 0.8 / max(1, len(report.cells))
    for n, cell in enumerate(report.cells):
        values = {
            s.subset if len(names) == 1 else f"{b.benchmark}:{s.subset}": s.accuracy
            for b in cell.benchmarks
            for s in b.subsets
        }
        xs = [i + n * width for i in range(len(groups))]
        ax.bar(xs, [values.get(g) or 0.0 for g in groups], width=width, label=cell.cell)
    ax.set_xticks(
        [i + 0.4 - width / 2 for i in range(len(groups))],
        groups,
        rotation=30,
        ha="right",
        fontsize=8,
    )
    ax.axhline(0.5, linestyle="--", color="grey", label="a coin (pairs)")
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("accuracy (ties count half)")
    ax.set_title("Accuracy per subset per cell")
    ax.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(str(path))
    return Path(path)


def render_markdown(report: EvalReport, images: dict[str, str]) -> str:
    lines = [f"# {TITLE}", ""]
    for block in report_blocks(report):
        lines += _markdown_block(block, images)
    return "\n".join(lines).rstrip() + "\n"


def render_html(report: EvalReport, images: dict[str, Path]) -> str:
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>{TITLE}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:2em auto}"
        "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;"
        "padding:4px 8px;text-align:left}img{max-width:100%}</style></head><body>",
        f"<h1>{html.escape(TITLE)}</h1>",
        *(_html_block(block, images) for block in report_blocks(report)),
        "</body></html>",
    ]
    return "\n".join(p for p in parts if p)


REPORT_FILES = ("report.json", "report.md", "report.html", "accuracy.png")


def write_report(report: EvalReport, out_dir: str | Path) -> dict[str, Path]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"json": out / "report.json"}
    atomic_write_text(paths["json"], report.model_dump_json(indent=2))
    images: dict[str, Path] = {}
    if any(c.benchmarks for c in report.cells):
        images["accuracy"] = accuracy_chart(report, out / "accuracy.png")
    paths.update(images)
    paths["markdown"] = out / "report.md"
    atomic_write_text(
        paths["markdown"], render_markdown(report, {k: v.name for k, v in images.items()})
    )
    paths["html"] = out / "report.html"
    atomic_write_text(paths["html"], render_html(report, images))
    return paths
