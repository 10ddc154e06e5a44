"""`cai train ppo` end to end on the tiny models: reward model, separate critic, saved policy."""

from __future__ import annotations

import json

import pytest
import yaml

torch = pytest.importorskip("torch")

from typer.testing import CliRunner  # noqa: E402

from cai.cli.app import app  # noqa: E402
from cai.train.ppo.logging import read_metrics  # noqa: E402


@pytest.fixture()
def one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _write_inputs(tmp_path, **settings):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(json.dumps({"prompt": f"tell me about water number {i}"}) + "\n" for i in range(6))
    )
    config = tmp_path / "ppo.yaml"
    config.write_text(yaml.safe_dump(settings))
    return prompts, config


def test_cli_trains_against_a_reward_model_with_a_separate_critic(
    tiny_model_dir, tiny_reward_dir, tmp_path, one_torch_thread
):
    prompts, config = _write_inputs(
        tmp_path,
        value_model="separate",
        critic_init=str(tiny_reward_dir),
        batch_size=4,
        mini_batch_size=2,
        ppo_epochs=2,
        max_new_tokens=6,
        learning_rate=1e-4,
        progress=False,
        save_every=1,
    )
    out = tmp_path / "run"
    args = ["train", "ppo", "-c", str(config), "--model", str(tiny_model_dir)]
    args += ["--prompts", str(prompts), "--reward-model", str(tiny_reward_dir)]
    args += ["-o", str(out), "--steps", "2", "--set", "kl_coef=0.1"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "ppo: 2 steps" in result.output

    rows = read_metrics(out / "metrics.jsonl")
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["kl/coef"] == 0.1 for r in rows)
    saved = yaml.safe_load((out / "config.resolved.yaml").read_text())
    assert saved["reward"] == {
        "kind": "model",
        "path": str(tiny_reward_dir),
        "batch_size": 16,
        "max_length": 1024,
    }
    assert saved["value_model"] == "separate"
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000001", "step-000002"]
    assert (out / "metrics.png").stat().st_size > 1000

    from transformers import AutoModelForCausalLM

    trained = AutoModelForCausalLM.from_pretrained(out / "final")
    start = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    moved = [
        name
        for (name, a), (_, b) in zip(
            trained.named_parameters(), start.named_parameters(), strict=True
        )
        if not torch.equal(a, b)
    ]
    assert moved, "PPO changed no policy weight"
    assert (out / "final" / "value_head.pt").exists()

    again = CliRunner().invoke(app, [*args, "--no-resume"])
    assert again.exit_code == 2
    assert "already holds a PPO run" in again.output


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"kl_coeff": 0.1}, "kl_coeff: unknown setting"),
        ({"batch_size": 6, "mini_batch_size": 4}, "multiple of mini_batch_size"),
    ],
)
def test_cli_reports_config_mistakes(tiny_model_dir, tmp_path, settings, message):
    prompts, config = _write_inputs(tmp_path, **settings)
    args = ["train", "ppo", "-c", str(config), "--model", str(tiny_model_dir)]
    result = CliRunner().invoke(app, [*args, "--prompts", str(prompts)])
    assert result.exit_code == 2
    assert message in result.output
