"""The labelling half of a round: its prompts, `cai run` on policy r, and its training data."""

from __future__ import annotations

from typing import Any

from cai.files import atomic_write_lines
from cai.human.storage import read_preference_rows
from cai.loop.context import RoundContext
from cai.loop.data import (
    apply_human_labels,
    mix_rounds,
    prompt_slice,
    read_human_labels,
    require_rows,
    round_copies,
)
from cai.pipeline import PipelineConfig, run_pipeline


def prompts_stage(ctx: RoundContext) -> dict[str, Any]:
    """Write the round's prompt slice (a file of its own: the round's input, kept with it)."""
    rows = prompt_slice(ctx.config, ctx.round_no)
    path = atomic_write_lines(ctx.dir / "prompts.jsonl", rows)
    return {"path": ctx.rel(path), "prompts": len(rows)}


def pipeline_settings(ctx: RoundContext) -> dict[str, Any]:
    """The `cai run` settings of round r: policy r samples, the loop's judge labels.

    The sampling seed moves with the round (seed + r - 1), so a policy that did not change
    still gives fresh samples rather than the same ones again.
    """
    config = ctx.config
    sample = config.sample.model_dump(mode="json")
    sample["seed"] = config.sample.seed + ctx.round_no - 1
    return {
        "name": f"{config.name}-round-{ctx.round_no}",
        "output_dir": str(ctx.dir),
        "stages": ["sample", "judge", "preferences"],
        "prompts": {"path": str(ctx.path(ctx.result("prompts")["path"]))},
        "constitution": config.constitution,
        "templates": config.templates,
        "policy": ctx.backend_dict(ctx.policy_in),
        "judge_backend": config.judge_backend.model_dump(mode="json"),
        "sample": sample,
        "judge": config.judge.model_dump(mode="json"),
        "preferences": config.preferences.model_dump(mode="json"),
        "chunk_size": config.chunk_size,
    }


def label_stage(ctx: RoundContext) -> dict[str, Any]:
    """`cai run` (sample -> judge -> preferences) into rounds/<r>/; it resumes by chunks."""
    pipeline = PipelineConfig.model_validate(pipeline_settings(ctx))
    result = run_pipeline(pipeline, judge_backend=ctx.judge_backend)
    prefs = result.summary["stages"]["preferences"]
    sampled = result.summary["stages"]["sample"]
    return {
        "dataset": ctx.rel(result.dataset) if result.dataset else None,
        "pairs": prefs["rows_written"],
        "filtered": prefs.get("filtered", {}),
        "responses": sampled["responses"],
    }


def data_stage(ctx: RoundContext) -> dict[str, Any]:
    """This round's pairs (human labels override AI ones) and the mix of rounds it trains on."""
    dataset = ctx.result("label")["dataset"]
    ai_rows = read_preference_rows(ctx.path(dataset), required=False) if dataset else []
    human = read_human_labels(ctx.config.human_labels) if ctx.config.human_labels else []
    rows, counts = apply_human_labels(ai_rows, human, ctx.round_no)
    pairs_path = atomic_write_lines(ctx.dir / "data" / "pairs.jsonl", rows)
    copies = round_copies(ctx.config.data, ctx.round_no)
    by_round = {ctx.round_no: rows}
    for k in copies:
        if k != ctx.round_no:
            by_round[k] = _round_pairs(ctx, k)
    train = mix_rounds(by_round, copies)
    train_path = ctx.dir / "data" / "train.jsonl"
    require_rows(train, ctx.round_no, ctx.dir)
    atomic_write_lines(train_path, train)
    return {
        "pairs": len(rows),
        "pairs_path": ctx.rel(pairs_path),
        "train_rows": len(train),
        "train_path": ctx.rel(train_path),
        "round_copies": {str(k): v for k, v in copies.items()},
        **counts,
    }


def _round_pairs(ctx: RoundContext, round_no: int) -> list[dict[str, Any]]:
    import json

    path = ctx.path(ctx.result("data", round_no)["pairs_path"])
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]
