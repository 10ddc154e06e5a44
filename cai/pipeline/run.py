"""The one runner: lock, check every stage, write the resolved config, run, summarise.

`cai run`, `cai sample`, `cai judge` and `cai revise` all run here, so they share the lock,
the token budget, the run files (`config.resolved.yaml`, `summary.json`, `logs/`) and the
shape of the summary.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from cai.backends.base import Backend
from cai.budget import TokensReport
from cai.config import RESOLVED_CONFIG
from cai.files import DirectoryLock, atomic_write_json
from cai.pipeline.config import SUMMARY_FILE, PipelineConfig, save_resolved_config
from cai.pipeline.context import RunContext
from cai.pipeline.stages import STAGES, check_run_outputs, check_stage
from cai.stages.summary import shown_from


class PipelineResult(BaseModel):
    output_dir: str
    dataset: str | None
    summary: dict[str, Any]
    stopped: str | None = None
    """Why the run stopped before its last stage (the token budget), as one line."""


def _backend_calls(backend: Backend) -> dict[str, Any] | None:
    stats = getattr(backend, "stats", None)
    if stats is None:
        return None
    if isinstance(stats, BaseModel):
        return stats.model_dump(mode="json")
    if isinstance(stats, dict):
        return dict(stats)
    return {k: v for k, v in vars(stats).items() if not k.startswith("_")}


def _discard_run_files(output_dir: Path) -> None:
    """--overwrite: the old summary and config describe data about to be replaced."""
    for name in (SUMMARY_FILE, RESOLVED_CONFIG):
        (output_dir / name).unlink(missing_ok=True)


def run_pipeline(
    config: PipelineConfig,
    *,
    policy_backend: Backend | None = None,
    judge_backend: Backend | None = None,
    save_config: Callable[[Path], object] | None = None,
) -> PipelineResult:
    """Run the configured stages; pass backends to reuse engines you already hold.

    Order: refuse an output directory that is an input or lies inside one, lock it, check
    every stage's inputs and settings (no model is loaded, nothing is written), then write the
    resolved config, run, and write the summary.
    `save_config(output_dir)` writes the resolved config in the shape the command read it
    (default: the pipeline config).
    """
    started = time.monotonic()
    check_run_outputs(config)
    output_dir = Path(config.output_dir)
    with DirectoryLock(output_dir):
        ctx = RunContext(
            config, output_dir, policy_backend=policy_backend, judge_backend=judge_backend
        )
        for name in config.stages:
            check_stage(STAGES[name], ctx)
        if config.overwrite:
            _discard_run_files(output_dir)
        (save_config or (lambda out: save_resolved_config(config, out)))(output_dir)
        try:
            stages = _run_stages(ctx)
            calls = _model_calls(ctx)
        finally:
            ctx.close()
        summary: dict[str, Any] = {
            "name": config.name,
            "stages": stages,
            "model_calls": calls,
            "wall_seconds": round(time.monotonic() - started, 3),
        }
        if ctx.provenance is not None:
            summary["provenance"] = ctx.provenance
        labels = stages.get("preferences", {}).get("rows_written")
        summary["tokens"] = ctx.tokens(labels).model_dump(mode="json")
        if ctx.stopped:
            summary["stopped"] = ctx.stopped
        atomic_write_json(output_dir / SUMMARY_FILE, summary)
    dataset = stages.get("preferences", {}).get("dataset")
    if dataset is not None:
        dataset = str(output_dir / dataset)
    return PipelineResult(
        output_dir=str(output_dir), dataset=dataset, summary=summary, stopped=ctx.stopped
    )


def _model_calls(ctx: RunContext) -> dict[str, Any]:
    calls = {}
    if ctx.policy_backend is not None:
        calls["policy"] = _backend_calls(ctx.policy_backend)
    if ctx.judge_backend is not None and ctx.judge_backend is not ctx.policy_backend:
        calls["judge"] = _backend_calls(ctx.judge_backend)
    return calls


def _run_stages(ctx: RunContext) -> dict[str, Any]:
    """Each stage in turn; a stage the token budget stopped is the last one run."""
    out = {}
    for name in ctx.config.stages:
        out[name] = STAGES[name].run(ctx).model_dump(mode="json")
        if ctx.stopped:
            break
    return out


def format_summary(result: PipelineResult) -> str:
    """The human-readable end-of-run report (paths as the user can open them)."""
    shown = shown_from(result.output_dir)
    s = result.summary
    lines = [f"{s['name']}: done in {s['wall_seconds']:.1f} s"]
    made = []
    for name, data in s["stages"].items():
        typed = STAGES[name].summary.model_validate(data)
        lines += [f"  {line}" for line in typed.lines(shown)]
        requests = typed.requests_made()
        if requests:
            made.append(requests)
    if made:
        lines.append("  model requests this run: " + ", ".join(made))
    for role, calls in (s.get("model_calls") or {}).items():
        if calls:
            sent, served = calls.get("misses", 0), calls.get("hits", 0)
            lines.append(
                f"  {role} call cache: {sent} sent to the model, {served} served from cache"
            )
    if s.get("tokens"):
        lines += TokensReport.model_validate(s["tokens"]).lines()
    if "sample" in s["stages"] and "judge" not in s["stages"] and not result.stopped:
        lines.append(f"samples: {shown(s['stages']['sample'].get('samples_dir'))}")
    if result.dataset:
        lines.append(f"dataset: {result.dataset}")
    if result.stopped:
        lines.append(result.stopped)
    return "\n".join(lines)
