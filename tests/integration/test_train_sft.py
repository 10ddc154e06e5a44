"""`cai train sft` on the tiny model: a few CPU steps, checkpoints, resume, reload."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from cai.cli.app import app
from cai.pipeline import run_revise
from cai.stages.revise import ReviseConfig

pytestmark = pytest.mark.slow


def _dataset(tmp_path):
    """A real `cai revise` output (scripted policy: the data's source is not under test here)."""
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "".join(f'{{"prompt": "how do i stay safe at work {i}"}}\n' for i in range(8))
    )
    config = ReviseConfig(
        prompts=str(prompts),
        out=str(tmp_path / "revised"),
        backend={"kind": "scripted"},
        rounds=1,
        max_examples=0,
        guards={"policy": "keep"},
    )
    return run_revise(config).sft_path


def _weights(directory):
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    return model, {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, after: dict) -> int:
    import torch

    return sum(1 for k in before if not torch.equal(before[k], after[k]))


def test_full_sft_trains_checkpoints_resumes_and_reloads(tmp_path, tiny_model_dir):
    dataset = _dataset(tmp_path)
    out = tmp_path / "policy"
    runner = CliRunner()
    base = [
        "train", "sft", "--model", str(tiny_model_dir), "--dataset", str(dataset),
        "--output-dir", str(out), "--batch-size", "4", "--learning-rate", "1e-3",
        "--set", "save_steps=2", "--set", "logging_steps=1", "--set", "max_length=64",
    ]  # fmt: skip
    first = runner.invoke(app, [*base, "--max-steps", "2"])
    assert first.exit_code == 0, first.output
    assert "trained 2 steps on 8 rows" in first.output
    assert (out / "checkpoint-2").is_dir()

    second = runner.invoke(app, [*base, "--max-steps", "3", "--resume"])
    assert second.exit_code == 0, second.output
    assert "trained 3 steps" in second.output
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    losses = [e["loss"] for e in state["log_history"] if "loss" in e]
    assert len(losses) == 3 and all(loss > 0 for loss in losses)

    _, base_weights = _weights(tiny_model_dir)
    model, trained = _weights(out)
    assert _changed(base_weights, trained) > 0
    tokens = model(**_tokens(out)).logits
    assert tokens.shape[-1] == model.config.vocab_size
    card = (out / "README.md").read_text()
    assert "3 steps" in card and "resumed from" in card and "checkpoint-2" in card
    assert "max_length: 64" in (out / "config.resolved.yaml").read_text()


def _tokens(directory):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(directory))("please help", return_tensors="pt")


def test_lora_sft_merges_into_a_plain_model(tmp_path, tiny_model_dir):
    pytest.importorskip("peft")
    dataset = _dataset(tmp_path)
    out = tmp_path / "lora"
    result = CliRunner().invoke(
        app,
        [
            "train", "sft", "--model", str(tiny_model_dir), "--dataset", str(dataset),
            "--output-dir", str(out), "--max-steps", "2", "--lora", "--learning-rate", "1e-2",
            "--set", "lora.r=4", "--set", "max_length=64", "--set", "save_steps=100",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert not (out / "adapter_config.json").exists()  # merged: a plain model directory
    _, base_weights = _weights(tiny_model_dir)
    _, merged = _weights(out)
    assert set(merged) == set(base_weights)
    assert _changed(base_weights, merged) > 0
    assert "LoRA (r=4" in (out / "README.md").read_text()


def test_bad_dataset_is_a_clear_error(tmp_path, tiny_model_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"text": "no messages here"}\n')
    result = CliRunner().invoke(
        app,
        ["train", "sft", "--model", str(tiny_model_dir), "--dataset", str(bad),
         "--output-dir", str(tmp_path / "o"), "--max-steps", "1"],
    )  # fmt: skip
    assert result.exit_code == 2
    assert "no 'messages' column" in result.output
