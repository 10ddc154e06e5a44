"""`cai eval winrate`: judged win rate of a policy against a baseline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cai.cli.options import BackendOpt, ConstitutionOpt, LimitOpt
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


def register(app: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
