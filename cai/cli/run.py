"""`cai run pipeline.yaml`: sample -> judge -> preference dataset in one command.

Every setting lives in the pipeline config; flags here are typed shortcuts for dotted keys,
applied after the YAML (so flags win), and `--set` overrides win over both. `cai sample`,
`cai judge` and `cai revise` run through the same `execute`.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from cai.cli.options import (
    ActorsOpt,
    BackendOpt,
    BaseUrlOpt,
    CotOpt,
    ExecutorOpt,
    FormatOpt,
    JudgeMethodOpt,
    LimitOpt,
    MinConfidenceOpt,
    OutOpt,
    OverwriteOpt,
    PolicyModelOpt,
    PrinciplesOpt,
    SeedOpt,
    SetOpt,
    TokenBudgetOpt,
)

if TYPE_CHECKING:
    from cai.pipeline import PipelineConfig

BUDGET_STOP_EXIT = 3
"""The exit status of a run the token budget stopped (rerun with a larger budget to go on)."""


#: The flags every labeling command shares, and the settings key each one sets.
_SHARED_FLAGS = (
    ("executor", ExecutorOpt, "executor.kind"),
    ("actors", ActorsOpt, "executor.actors"),
    ("token_budget", TokenBudgetOpt, "budget.max_tokens"),
    ("overwrite", OverwriteOpt, "overwrite"),
)


def labeling_command(command: Callable[..., None]) -> Callable[..., None]:
    """`command` with the flags every labeling command shares added after its own: it gets
    them as `shared` (dotted settings, None = not given) and `overrides` (the --set list)."""
    own = [
        p
        for p in inspect.signature(command, eval_str=True).parameters.values()
        if p.name not in ("shared", "overrides")
    ]
    keyword = inspect.Parameter.KEYWORD_ONLY
    added = [
        inspect.Parameter(name, keyword, default=None, annotation=opt)
        for name, opt, _ in _SHARED_FLAGS
    ]
    added.append(inspect.Parameter("overrides", keyword, default=[], annotation=SetOpt))

    @functools.wraps(command)
    def with_shared(**values: Any) -> None:
        shared = {key: values.pop(name) for name, _, key in _SHARED_FLAGS}
        overrides = list(values.pop("overrides"))
        command(**values, shared=shared, overrides=overrides)

    signature = inspect.Signature(own + added)
    with_shared.__signature__ = signature  # type: ignore[attr-defined]
    # typer reads this signature and these (evaluated) types, not the command's own
    with_shared.__annotations__ = {p.name: p.annotation for p in signature.parameters.values()}
    del with_shared.__wrapped__
    return with_shared


def backend_options(
    prefix: str, model: str | None, backend: str | None, base_url: list[str]
) -> dict[str, Any]:
    """The dotted settings of the --model, --backend and --base-url flags for one backend."""
    return {
        f"{prefix}.model": model,
        f"{prefix}.kind": backend,
        f"{prefix}.base_urls": base_url or None,
    }


def execute(config_path: Path | None, options: dict[str, Any], overrides: list[str]) -> None:
    """Load (file < typed flags < --set), run and report."""
    from cai.pipeline import load_pipeline_config

    run_and_report(load_pipeline_config(config_path, overrides, options))


def run_and_report(
    config: PipelineConfig, save_config: Callable[[Path], object] | None = None
) -> None:
    """Run through the one runner, print its report; exit 3 when the token budget stopped it."""
    from cai.logs import route_library_logs
    from cai.pipeline import format_summary, run_pipeline
    from cai.pipeline.stages import check_run_outputs

    check_run_outputs(config)  # before the logs directory is made inside --out
    log_file = route_library_logs(config.output_dir)
    result = run_pipeline(config, save_config=save_config)
    typer.echo(format_summary(result))
    if log_file is not None:
        typer.echo(f"engine logs: {log_file}")
    if result.stopped:
        raise typer.Exit(BUDGET_STOP_EXIT)


def register(app: typer.Typer) -> None:
    @app.command()
    @labeling_command
    def run(
        pipeline: Path = typer.Argument(..., help="Pipeline YAML (see examples/quickstart.yaml)."),
        out: OutOpt = None,
        prompts: str | None = typer.Option(None, help="Prompts file or save_to_disk directory."),
        limit: LimitOpt = None,
        model: PolicyModelOpt = None,
        backend: BackendOpt = None,
        base_url: BaseUrlOpt = [],  # noqa: B006 - typer reads the default, never mutates it
        judge_model: str | None = typer.Option(None, help="Judge model; default: the policy."),
        n: int | None = typer.Option(None, "--n", help="Responses per prompt."),
        seed: SeedOpt = None,
        principles: PrinciplesOpt = None,
        cot: CotOpt = None,
        method: JudgeMethodOpt = None,
        min_confidence: MinConfidenceOpt = None,
        fmt: FormatOpt = None,
        *,
        shared: dict[str, Any],
        overrides: list[str],
    ) -> None:
        """Run a pipeline file: sample -> judge -> TRL-ready preference dataset (resumable)."""
        options = {
            "output_dir": out,
            "prompts.path": prompts,
            "prompts.limit": limit,
            **backend_options("policy", model, backend, base_url),
            "judge_backend.model": judge_model,
            "sample.n": n,
            "sample.seed": seed,
            "judge.seed": seed,
            "judge.principles_per_pair": principles,
            "judge.chain_of_thought": cot,
            "judge.method": method,
            "preferences.min_confidence": min_confidence,
            "preferences.format": fmt,
            **shared,
        }
        execute(pipeline, options, overrides)
