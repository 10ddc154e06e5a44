"""`cai eval winrate`: judged win rate of a policy against a baseline; `cai eval judge`: judge
configurations on the field's judge benchmarks (`cai.judge_eval`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cai.cli.options import (
    BackendOpt,
    BaseUrlOpt,
    ConstitutionOpt,
    LimitOpt,
    OverwriteOpt,
    PrinciplesOpt,
    SeedOpt,
)
from cai.cli.settings_command import Flag, settings_command

eval_app = typer.Typer(
    help="Evaluate policies with the constitutional judge.", no_args_is_help=True
)

_ROLES = ("policy", "baseline", "judge")


def _model(role: str) -> Flag:
    help_text = f"{role.capitalize()} model (directory, embedded name or hub id)."
    return Flag(role, Annotated[str | None, typer.Option(help=help_text)], f"{role}.model")


WINRATE_FLAGS = (
    Flag("prompts", Annotated[str | None, typer.Option(help="Held-out prompts file.")]),
    *(_model(role) for role in _ROLES),
    Flag(
        "backend",
        BackendOpt,
        to_options=lambda kind: {f"{role}.kind": kind for role in _ROLES},
    ),
    Flag("constitution", ConstitutionOpt),
    Flag("limit", LimitOpt),
)


def _winrate(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.config import load_config
    from cai.evaluate import WinRateConfig, run_win_rate
    from cai.logs import route_library_logs
    from cai.paths import check_run_paths

    settings = load_config(WinRateConfig, config, options, overrides, check_models=True)
    check_run_paths(settings)  # before the logs directory is made inside --out
    route_library_logs(settings.output_dir)
    s = run_win_rate(settings).summary
    typer.echo(
        f"win rate {s.win_rate if s.win_rate is None else f'{s.win_rate:.3f}'} "
        f"(CI {s.win_rate_ci}); wins/ties/losses {s.wins}/{s.ties}/{s.losses}; "
        f"failed {s.n_failed} -> {settings.output_dir}"
    )


eval_app.command("winrate")(
    settings_command(
        WINRATE_FLAGS,
        _winrate,
        "Generate with policy and baseline, judge each pair in both orders, report with a CI.",
    )
)


def _judges(models: list[str]) -> dict:
    return {"judges": [{"backend": {"model": m}} for m in models]}


JUDGE_FLAGS = (
    Flag(
        "benchmark",
        Annotated[
            list[str],
            typer.Option(help="Benchmark file, save_to_disk directory or Hub id (repeatable)."),
        ],
        to_options=lambda sources: {"benchmarks": [{"source": s} for s in sources]},
    ),
    Flag(
        "format",
        Annotated[
            str | None,
            typer.Option(
                "--format",
                help="auto | rewardbench | rewardbench2 | rmbench | judgebench | mtbench | hh.",
            ),
        ],
    ),
    Flag(
        "judge",
        Annotated[
            list[str],
            typer.Option(help="Judge model (directory, embedded name or hub id; repeatable)."),
        ],
        to_options=_judges,
    ),
    Flag("backend", BackendOpt, key="judge_kind"),
    Flag("base_url", BaseUrlOpt, key="judge_base_urls"),
    Flag(
        "constitution",
        Annotated[list[str], typer.Option(help="Constitution file or bundled name (repeatable).")],
        key="constitutions",
    ),
    Flag(
        "method",
        Annotated[list[str], typer.Option(help="logprob | cot | verdict (repeatable).")],
        key="methods",
    ),
    Flag("principles", PrinciplesOpt, key="judge.principles_per_pair"),
    Flag("limit", Annotated[int | None, typer.Option(help="Stratified rows per benchmark.")]),
    Flag("seed", SeedOpt),
    Flag("overwrite", OverwriteOpt),
)


def _judge_eval(config: Path | None, options: dict, overrides: list[str]) -> None:
    from cai.config import load_config
    from cai.judge_eval.evaluate import check_paths, run_judge_eval
    from cai.judge_eval.grid import JudgeEvalConfig, apply_judge_kind, resolve_paths
    from cai.logs import route_library_logs

    settings = load_config(
        JudgeEvalConfig, config, apply_judge_kind(options), overrides, check_models=True
    )
    settings = resolve_paths(settings, config)
    check_paths(settings)  # before the logs directory is made inside --out
    route_library_logs(settings.output_dir)
    report = run_judge_eval(settings, progress=typer.echo)
    for cell in report.cells:
        for bench in cell.benchmarks:
            typer.echo(f"{cell.cell} on {bench.benchmark}: {cell.verdicts[bench.benchmark]}")
    typer.echo(f"report: {Path(settings.output_dir) / 'report.md'}")


eval_app.command("judge")(
    settings_command(
        JUDGE_FLAGS,
        _judge_eval,
        "Score judge configurations (judge x constitution x method) on judge benchmarks.",
    )
)


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
