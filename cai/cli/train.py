"""`cai train`: one group; each trainer adds its command from its own module."""

from __future__ import annotations

import importlib

import typer

train_app = typer.Typer(
    help="Fine-tune policies and reward models from YAML configs with CLI overrides.",
    no_args_is_help=True,
)

#: Modules that each define `register(train_app)`; ones not written yet are skipped.
COMMAND_MODULES: tuple[str, ...] = (
    "cai.cli.train_sft",
    "cai.cli.train_reward",
    "cai.cli.train_pref",
    "cai.cli.train_ppo",
)

_registered = False


def _register_commands() -> None:
    global _registered
    if _registered:
        return
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(train_app)
    _registered = True


def register(app: typer.Typer) -> None:
    _register_commands()
    app.add_typer(train_app, name="train")
