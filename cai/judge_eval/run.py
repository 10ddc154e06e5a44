"""Run every cell of the grid on every benchmark through the stage runner, then score.

Per benchmark, the pairs (and Ties groups) go to `pairs/<benchmark>.jsonl` in cai's sample
rows, the table `cai judge` reads; per cell and benchmark, the judge stage runs on it in
`cells/<cell>/<benchmark>/` through `run_pipeline`, so the lock, the resume by content,
the call cache, the token ledger and the Ray executor are the labeling run's own. A judge
model used by several cells is built once and handed to each of its cells' runs (locally;
a Ray executor builds it in its actors from the spec).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cai.backends import make_backend
from cai.backends.base import Backend
from cai.config import ConfigError
from cai.files import atomic_write_json, relative_to_run
from cai.judge.compare import JudgeConfig
from cai.judge.judged import JudgedSample, iter_judged
from cai.judge_eval.grid import Cell, JudgeEvalConfig
from cai.judge_eval.items import Benchmark
from cai.judge_eval.load import load_benchmark
from cai.pipeline import PipelineConfig, run_pipeline
from cai.pipeline.stages import check_run_outputs
from cai.tables import write_table

Progress = Callable[[str], None]


class CellRun(BaseModel):
    """What one cell's run on one benchmark cost, from the runner's summary.json."""

    cell: str
    benchmark: str
    run_dir: str
    judge_model: str | None = None
    judge_seconds: float = 0.0
    """Seconds spent judging this job, over every run of it (a resumed run adds its own)."""
    judge_seconds_now: float = 0.0
    wall_seconds: float = 0.0
    tokens: int = 0
    cost: float | None = None
    unpriced_models: list[str] = []
    pairs_judged_now: int = 0
    pairs_resumed: int = 0


def pairs_path(output_dir: str | Path, bench: Benchmark) -> Path:
    return Path(output_dir) / "pairs" / f"{bench.name}.jsonl"


def write_pairs(output_dir: str | Path, bench: Benchmark) -> Path:
    """The benchmark's pairs and groups as sample rows, in the benchmark's order: the same
    rows give the same file, so the judge stage's chunks (keyed by content) resume."""
    path = pairs_path(output_dir, bench)
    rows = [item.sample_row(bench.name) for item in bench.judged.values()]
    path.parent.mkdir(parents=True, exist_ok=True)
    return write_table(rows, path)


def cell_dir(output_dir: str | Path, cell: Cell, bench: Benchmark) -> Path:
    return Path(output_dir) / "cells" / cell.name / bench.name


def judge_config(grid: JudgeEvalConfig, cell: Cell) -> JudgeConfig:
    settings = {"seed": grid.seed, **grid.judge}
    settings["chain_of_thought"] = cell.method == "cot"
    settings["method"] = "verdict" if cell.method == "verdict" else "logprob"
    return JudgeConfig(**settings)


def pipeline_config(grid: JudgeEvalConfig, cell: Cell, bench: Benchmark) -> PipelineConfig:
    """The labeling run of one cell on one benchmark: the judge stage alone."""
    judge: dict[str, Any] = {}
    if cell.judge.panel is not None:
        judge = {"judge_backends": cell.judge.panel, "panel": cell.judge.panel_settings}
    else:
        judge = {"judge_backend": cell.judge.backend}
    return PipelineConfig(
        name=f"judge-eval {cell.name} on {bench.name}",
        output_dir=str(cell_dir(grid.output_dir, cell, bench)),
        stages=["judge"],
        samples=str(pairs_path(grid.output_dir, bench)),
        constitution=cell.constitution,
        templates=cell.templates,
        judge=judge_config(grid, cell),
        budget=grid.budget,
        chunk_size=grid.chunk_size,
        executor=grid.executor,
        overwrite=grid.overwrite,
        **judge,
    )


def load_benchmarks(grid: JudgeEvalConfig) -> list[Benchmark]:
    """Every benchmark read, mapped and sampled before any model loads."""
    out = []
    for source in grid.benchmarks:
        out.append(
            load_benchmark(
                source.source,
                grid.benchmark_format(source),
                split=source.split,
                name=source.name,
                limit=source.limit or grid.limit,
                seed=grid.seed,
            )
        )
    names = [b.name for b in out]
    if len(set(names)) != len(names):
        raise ConfigError(
            f"two benchmarks share the name {names}", key="benchmarks", fix="Give each a `name`."
        )
    return out


SECONDS_FILE = "judge_eval_seconds.json"


def _job_seconds(run_dir: Path, now: float, resumed: int, judged_now: int) -> float:
    """This job's judging seconds over all its runs: the runner's summary holds this run's
    only, so a run that resumed chunks adds the time it judged to what earlier runs
    recorded, and a run that only resumed keeps their total."""
    path = run_dir / SECONDS_FILE
    before = None
    if resumed and path.is_file():
        try:
            before = float(json.loads(path.read_text()).get("judge_seconds", 0.0))
        except (ValueError, AttributeError):
            before = None
    if before is not None and not judged_now:
        return before
    total = round((before or 0.0) + now, 3)
    atomic_write_json(path, {"judge_seconds": total})
    return total


def _cell_run(
    cell: Cell, bench: Benchmark, run_dir: Path, summary: dict[str, Any], output_dir: str
) -> CellRun:
    stage = summary.get("stages", {}).get("judge", {})
    tokens = summary.get("tokens") or {}
    provenance = summary.get("provenance") or {}
    now = float(stage.get("seconds") or 0.0)
    resumed = int(stage.get("prompts_resumed") or 0)
    judged_now = int(stage.get("prompts_judged_now") or 0)
    return CellRun(
        cell=cell.name,
        benchmark=bench.name,
        run_dir=str(relative_to_run(run_dir, output_dir)),
        judge_model=provenance.get("judge_model"),
        judge_seconds=_job_seconds(run_dir, now, resumed, judged_now),
        judge_seconds_now=now,
        wall_seconds=float(summary.get("wall_seconds") or 0.0),
        tokens=int(tokens.get("spent") or 0),
        cost=tokens.get("cost"),
        unpriced_models=list(tokens.get("unpriced_models") or []),
        pairs_judged_now=judged_now,
        pairs_resumed=resumed,
    )


def judge_cells(
    grid: JudgeEvalConfig,
    benchmarks: list[Benchmark],
    backends: dict[str, Backend] | None = None,
    progress: Progress | None = None,
) -> tuple[list[CellRun], dict[tuple[str, str], dict[str, JudgedSample]]]:
    """Run the judge stage for every cell and benchmark; the judged samples by (cell, bench).

    `backends` maps a judge's name to a backend to use for it (the caller's to close); other
    single-model judges get one backend each, built here on first use and closed at the end.
    """
    for bench in benchmarks:
        write_pairs(grid.output_dir, bench)
    configs = {
        (cell.name, bench.name): pipeline_config(grid, cell, bench)
        for cell in grid.cells()
        for bench in benchmarks
    }
    for config in configs.values():  # every output is checked before the first model loads
        check_run_outputs(config)
    runs: list[CellRun] = []
    judged: dict[tuple[str, str], dict[str, JudgedSample]] = {}
    given = dict(backends or {})
    held: dict[str, Backend] = {}  # the one judge model built here and in use now
    try:
        for cell in grid.cells():
            backend = _backend_for(grid, cell, given, held)
            for bench in benchmarks:
                config = configs[cell.name, bench.name]
                if progress:
                    progress(f"judging {bench.name} with {cell.name}")
                result = run_pipeline(config, judge_backend=backend)
                run_dir = Path(config.output_dir)
                runs.append(_cell_run(cell, bench, run_dir, result.summary, grid.output_dir))
                judged[cell.name, bench.name] = {
                    j.prompt_id: j for j in iter_judged(run_dir / "judgments")
                }
    finally:
        _release(held)
    return runs, judged


def _release(held: dict[str, Backend]) -> None:
    for backend in held.values():
        backend.close()
    held.clear()


def _backend_for(
    grid: JudgeEvalConfig, cell: Cell, given: dict[str, Backend], held: dict[str, Backend]
) -> Backend | None:
    """The backend object a cell's runs share, or None (the runner builds it from the spec).

    Cells come grouped by judge, so the model built for one judge is closed when the next
    judge's cells start: one engine in memory at a time.
    """
    name = cell.judge.label()
    if name in given:
        return given[name]
    if cell.judge.backend is None or grid.executor.kind != "local":
        return None
    if name not in held:
        _release(held)
        held[name] = make_backend(cell.judge.backend)
    return held[name]
