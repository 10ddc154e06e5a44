"""`cai eval judge` end to end: read every benchmark, judge it with every cell through the
stage runner, score it each benchmark's way, and write the report."""

from __future__ import annotations

from pathlib import Path

from cai.backends.base import Backend
from cai.judge_eval.anchors import verdict
from cai.judge_eval.grid import JudgeEvalConfig
from cai.judge_eval.metrics import score_benchmark
from cai.judge_eval.report import REPORT_FILES, CellReport, EvalReport, write_report
from cai.judge_eval.run import Progress, judge_cells, load_benchmarks
from cai.judge_eval.scoring import ItemResult, score_item
from cai.paths import check_run_paths, refuse_output_onto_input, settings_inputs
from cai.tables import write_table

ITEMS_FILE = "items.jsonl"


def write_items(grid: JudgeEvalConfig, cell: str, bench: str, results: list[ItemResult]) -> Path:
    """Every item's result beside its cell's run (`cells/<cell>/<benchmark>/items.jsonl`):
    which rows the judge got right, wrong or tied, with each comparison's probability."""
    path = Path(grid.output_dir) / "cells" / cell / bench / ITEMS_FILE
    return write_table((r.model_dump(mode="json") for r in results), path)


def check_paths(grid: JudgeEvalConfig) -> None:
    """Refuse an --out that is, or lies in, an input, or whose files would replace one."""
    check_run_paths(grid)
    out = Path(grid.output_dir)
    written = {f"--out's {name}": out / name for name in (*REPORT_FILES, "pairs", "cells")}
    refuse_output_onto_input(
        written,
        settings_inputs(grid, skip=("output_dir",)),
        fix="Move that input elsewhere, or choose another --out.",
    )


def run_judge_eval(
    grid: JudgeEvalConfig,
    backends: dict[str, Backend] | None = None,
    progress: Progress | None = None,
) -> EvalReport:
    """Every cell on every benchmark; `backends` maps judge names to backends to use."""
    check_paths(grid)
    benchmarks = load_benchmarks(grid)  # every row read and checked before a model loads
    runs, judged = judge_cells(grid, benchmarks, backends, progress)
    by_key = {(r.cell, r.benchmark): r for r in runs}
    cells = []
    for cell in grid.cells():
        scores = []
        verdicts = {}
        for bench in benchmarks:
            run = by_key.get((cell.name, bench.name))
            cell_judged = judged[cell.name, bench.name]
            results = [
                score_item(item, cell_judged, grid.tie_margin)
                for item in bench.items
            ]
            write_items(grid, cell.name, bench.name, results)
            score = score_benchmark(bench, results, cell_judged, cell.method, grid.bootstrap, run)
            scores.append(score)
            ci = score.overall.accuracy_ci
            # RewardBench 2's score is not the items' accuracy (Ties), so no interval there
            interval = None if ci is None or bench.format == "rewardbench2" else (ci.low, ci.high)
            verdicts[bench.name] = verdict(
                bench.format,
                score.score,
                bool(bench.rows_sampled_out),
                score.malformed,
                cell.method,
                interval,
            )
        specs = cell.judge.panel or [cell.judge.backend]
        cells.append(
            CellReport(
                cell=cell.name,
                judge=cell.judge.label(),
                judge_models=[str(s.model) for s in specs if s is not None],
                constitution=cell.constitution,
                templates=cell.templates,
                method=cell.method,
                benchmarks=scores,
                verdicts=verdicts,
            )
        )
    report = EvalReport(
        cells=cells,
        tie_margin=grid.tie_margin,
        bootstrap_resamples=grid.bootstrap.n_resamples,
        confidence=grid.bootstrap.confidence,
        limit=grid.limit,
    )
    write_report(report, Path(grid.output_dir))
    return report
