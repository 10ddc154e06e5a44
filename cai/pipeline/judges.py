"""The judge a run's judge stage uses: one judge model, a recipe for Ray actors, or a panel.

A panel builds one backend per member through `make_backend` (so each has its own engine
settings and call cache) and closes the ones it built when the stage ends; a member whose
spec is the policy's reuses the policy engine, as a single judge does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Any

from cai.pipeline.config import PipelineConfigError
from cai.pipeline.context import RunContext

if TYPE_CHECKING:
    from cai.executors.recipes import JudgeRecipe
    from cai.judge.compare import PairwiseJudge
    from cai.judge.panel import PanelJudge


def panel_fingerprint(ctx: RunContext) -> dict[str, Any] | None:
    """The panel's part of the judging fingerprint, from the config (None: one judge)."""
    from cai.judge.panel import member_names, panel_settings

    specs = ctx.config.judge_backends
    if specs is None:
        return None
    return panel_settings(member_names([s.model for s in specs]), ctx.config.panel)


def check_panel(ctx: RunContext) -> None:
    """A panel runs its members in this process: refuse Ray and passed-in judge backends."""
    if ctx.config.judge_backends is None:
        return
    if not ctx.runs_here:
        raise PipelineConfigError(
            "a judge panel (judge_backends) runs in this process; the ray executor builds "
            "one judge backend per actor",
            key="executor.kind",
            fix="Use executor.kind: local for a panel, or one judge model (judge_backend) "
            "with Ray.",
        )
    if ctx.judge_backend is not None:
        raise PipelineConfigError(
            "a judge backend was passed to run_pipeline, but the config lists a panel "
            "(judge_backends)",
            key="judge_backends",
            fix="Pass no judge_backend object (each member is built from its spec), or drop "
            "judge_backends.",
        )


@contextmanager
def stage_judge(
    ctx: RunContext, constitution, templates
) -> Iterator[PairwiseJudge | PanelJudge | JudgeRecipe]:
    """The judge for this run's judge stage; backends built for a panel close on exit."""
    from cai.executors.recipes import JudgeRecipe
    from cai.judge.compare import PairwiseJudge

    config = ctx.config
    if config.judge_backends is None:
        if ctx.runs_here:
            yield PairwiseJudge(ctx.judge(), constitution, templates, config.judge)
        else:  # built inside each actor from this recipe
            spec = config.judge_backend
            spec = config.policy if spec is None or spec == config.policy else spec
            yield JudgeRecipe.from_parts(spec, constitution, templates, config.judge)
        return
    from cai.backends import make_backend
    from cai.judge.panel import PanelJudge, member_names

    specs = config.judge_backends
    with ExitStack() as stack:
        named = []
        for name, spec in zip(member_names([s.model for s in specs]), specs, strict=True):
            if spec == config.policy:
                backend = ctx.policy()
            else:
                backend = make_backend(spec)
                stack.callback(backend.close)
            named.append((name, PairwiseJudge(backend, constitution, templates, config.judge)))
        yield PanelJudge.from_judges(named, config.panel)


def panel_agreement(ctx: RunContext):
    """Each panel member's agreement with the panel over every judged pair (None: no panel)."""
    if ctx.config.judge_backends is None:
        return None
    from cai.judge.panel import member_agreement
    from cai.judge.stage import iter_judged

    judgments = []
    for judged in iter_judged(ctx.judgments_dir):
        if judged.pair is not None:
            judgments.append(judged.pair)
        if judged.ranking is not None:
            judgments.extend(j for _, _, j in judged.ranking.pairs)
    return member_agreement(judgments)
