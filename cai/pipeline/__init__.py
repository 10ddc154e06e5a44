"""`cai run pipeline.yaml`: sample -> judge -> preference dataset (and revise) from one file.

    config.py     the settings (one pydantic model) and how they load and are saved
    context.py    what one run's stages share (paths, backends built on first use, tokens)
    stages.py     the constant stage table and the check of each stage's inputs and outputs
    run.py        the one runner: lock -> check every stage -> resolved config -> run -> summary
    revise.py     `cai revise`: the revise stage alone through the runner

Each stage is one file in `cai/stages/`.

Layout of `output_dir`:
  samples/            resumable sampling job (one Sample per prompt)
  judgments/          resumable judging job (one judged record per prompt)
  preferences/        the dataset (or preferences.parquet / preferences.jsonl) + card
  filtered.jsonl      every pair that was not written, with its reason
  revise/             SL-CAI chains and SFT data, when `revise` is a stage
  config.resolved.yaml, summary.json
"""

from cai.pipeline.config import (
    STAGE_NAMES,
    PipelineConfig,
    PromptSource,
    load_pipeline_config,
    save_resolved_config,
)
from cai.pipeline.context import RunContext
from cai.pipeline.revise import revise_config_saver, revise_pipeline, run_revise
from cai.pipeline.run import PipelineResult, format_summary, run_pipeline
from cai.pipeline.stages import STAGES
from cai.stages.base import Stage

__all__ = [
    "STAGES",
    "STAGE_NAMES",
    "PipelineConfig",
    "PipelineResult",
    "PromptSource",
    "RunContext",
    "Stage",
    "format_summary",
    "load_pipeline_config",
    "revise_config_saver",
    "revise_pipeline",
    "run_pipeline",
    "run_revise",
    "save_resolved_config",
]
