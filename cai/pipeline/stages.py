"""The constant stage table, and the check of what each stage declares it reads and writes.

A stage is one file in `cai/stages/` (settings, worker and recipe, identity, check, run,
summary, inputs and outputs) exporting a `Stage`; this table lists them by name. Before any
stage starts or any model loads, the runner calls `check_stage` for every listed stage: its
outputs must lie inside the run directory, each input an earlier stage of the run does not
make must already be there, and then the stage's own check runs (settings of results already
in the directory, its constitution and templates), so a doomed run fails in seconds and
writes nothing.
"""

from __future__ import annotations

from pathlib import Path
from types import MappingProxyType

from cai.config import ConfigError
from cai.files import is_inside
from cai.paths import check_run_paths, refuse_output_onto_input, settings_inputs
from cai.pipeline.config import STAGE_NAMES, PipelineConfig
from cai.pipeline.context import RunContext
from cai.stages import judge, preferences, revise, sample
from cai.stages.base import Stage

STAGES: MappingProxyType[str, Stage] = MappingProxyType(
    {stage.name: stage for stage in (sample.STAGE, judge.STAGE, preferences.STAGE, revise.STAGE)}
)
assert tuple(STAGES) == STAGE_NAMES


def check_stage(stage: Stage, ctx: RunContext) -> None:
    """The stage's declared outputs and inputs, then its own check (nothing is written)."""
    for output in stage.writes:
        path = output.path(ctx)
        if not is_inside(path, ctx.output_dir):
            raise ConfigError(
                f"the {stage.name} stage would write into {path}, outside the output "
                f"directory {ctx.output_dir}; a run writes only inside its own directory",
                key=output.key,
                fix=output.fix,
            )
    for needed in stage.reads:
        if needed.made_by in ctx.config.stages or needed.name in ctx.counts:
            continue
        count = needed.check(ctx)
        if count is not None:
            ctx.counts[needed.name] = count
    stage.check(ctx)


def check_run_outputs(config: PipelineConfig) -> None:
    """Before a run locks or writes anything: its output directory is none of its inputs (nor
    inside one), and no input lies where a stage writes, since a stage replaces what is there
    (`overwrite`, a rewritten dataset). `samples` names an output when the sample stage runs."""
    check_run_paths(config)
    skip = ("samples",) if "sample" in config.stages else ()
    inputs = settings_inputs(config, skip=skip)
    ctx = RunContext(config, Path(config.output_dir))
    for name in config.stages:
        for output in STAGES[name].writes:
            refuse_output_onto_input(
                {f"the {name} stage's output": output.path(ctx)},
                inputs,
                replaces=True,
                fix=f"Move that input elsewhere, or choose another --out ({output.key}).",
            )
