"""One error policy for every command: cai's errors are one line (exit 2), bugs keep a traceback."""

from __future__ import annotations

import pytest
import typer
from typer.testing import CliRunner

from cai.cli.app import app
from cai.cli.errors import guard_all
from cai.debug import set_debug
from cai.errors import CaiError, InputError


def _toy_app() -> typer.Typer:
    toy = typer.Typer()

    @toy.command()
    def bad_input() -> None:
        raise InputError("not a prompt", file="p.jsonl", row=3, key="prompt", fix="Fix row 3.")

    @toy.command()
    def bug() -> None:
        raise ZeroDivisionError("boom")

    @toy.command()
    def bad_option() -> None:
        raise typer.BadParameter("must be SOURCE=WEIGHT", param_hint="--weight")

    guard_all(toy)
    return toy


def test_a_cai_error_is_one_line_with_where_and_fix_and_exit_2():
    set_debug(False)
    result = CliRunner().invoke(_toy_app(), ["bad-input"])
    assert result.exit_code == 2
    assert result.output.strip() == "error: p.jsonl row 3: prompt: not a prompt. Fix row 3."
    assert "Traceback" not in result.output


def test_debug_shows_the_traceback_of_a_cai_error():
    set_debug(True)
    try:
        result = CliRunner().invoke(_toy_app(), ["bad-input"])
    finally:
        set_debug(False)
    assert result.exit_code == 2
    assert "Traceback" in result.output and "error: p.jsonl row 3" in result.output


def test_an_unexpected_exception_keeps_its_traceback_and_says_how_to_report_it():
    result = CliRunner().invoke(_toy_app(), ["bug"])
    assert result.exit_code == 1
    assert "Traceback" in result.output and "ZeroDivisionError: boom" in result.output
    assert "this is a bug in cai" in result.output


def test_a_usage_error_raised_inside_a_command_stays_a_usage_error():
    result = CliRunner().invoke(_toy_app(), ["bad-option"])
    assert result.exit_code == 2
    assert "must be SOURCE=WEIGHT" in result.output and "Traceback" not in result.output


def test_every_registered_command_is_guarded():
    def commands(typer_app):
        for info in typer_app.registered_commands:
            yield info.callback
        for group in typer_app.registered_groups:
            yield from commands(group.typer_instance)

    callbacks = list(commands(app))
    assert len(callbacks) > 20
    assert all(getattr(cb, "_cai_guarded", False) for cb in callbacks)


def test_error_fields_survive_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(InputError("m", file="f", line=2, key="k", fix="x")))
    assert isinstance(err, CaiError) and (err.file, err.line, err.key) == ("f", 2, "k")
    assert str(err) == "f:2: k: m. x"


TRAINERS = ["sft", "reward", "dpo", "kto", "orpo", "grpo", "rloo", "ppo"]


@pytest.mark.parametrize("trainer", TRAINERS)
def test_every_trainer_says_how_to_pull_an_embedded_model(trainer, tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    args = ["train", trainer, "--model", "smollm2-135m-instruct", "--out", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: model: embedded model 'smollm2-135m-instruct'")
    assert "Run `cai models pull smollm2-135m-instruct`" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("trainer", ["dpo", "ppo"])
def test_a_model_name_that_names_nothing_fails_before_anything_loads(trainer, tmp_path):
    args = ["train", trainer, "--model", "no-such-model", "--output-dir", str(tmp_path / "o")]
    result = CliRunner().invoke(app, args)  # --output-dir: the hidden spelling of --out
    assert result.exit_code == 2, result.output
    assert "'no-such-model' is not a local directory, an embedded model" in result.output
    assert "a hub id" in result.output and "Traceback" not in result.output


def test_output_dir_is_a_hidden_alias_of_out():
    for command in (["train", "dpo"], ["eval", "winrate"]):
        result = CliRunner().invoke(app, [*command, "--help"])
        assert "--out" in result.output and "--output-dir" not in result.output


def test_the_command_line_imports_no_heavy_library():
    import subprocess
    import sys

    code = "import sys, cai.cli.app; print(' '.join(sorted(sys.modules)))"
    loaded = set(
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.split()
    )
    heavy = {"torch", "vllm", "trl", "ray", "transformers", "datasets"}
    assert not heavy & loaded


def test_trainer_flags_set_their_settings_keys():
    from cai.cli.settings_command import settings_command
    from cai.cli.train import ONLINE_FLAGS, PPO_FLAGS, REWARD_FLAGS

    seen = []
    toy = typer.Typer()
    for name, flags in (("reward", REWARD_FLAGS), ("ppo", PPO_FLAGS), ("grpo", ONLINE_FLAGS)):
        toy.command(name)(settings_command(flags, lambda *args: seen.append(args), name))
    runner = CliRunner()
    args = ["reward", "--source-weight", "human=2", "--epochs", "2", "-o", "o", "--set", "a=1"]
    assert runner.invoke(toy, args).exit_code == 0
    assert seen[-1] == (
        None,
        {"source_weights.human": 2, "num_train_epochs": 2.0, "output_dir": "o"},
        ["a=1"],
    )
    assert runner.invoke(toy, ["ppo", "--reward-model", "rm", "--output-dir", "p"]).exit_code == 0
    assert seen[-1][1] == {"reward": {"kind": "model", "path": "rm"}, "output_dir": "p"}
    assert runner.invoke(toy, ["grpo", "--reward-model", "a", "--reward-model", "b"]).exit_code == 0
    assert seen[-1][1] == {"reward_models": ["a", "b"]}
