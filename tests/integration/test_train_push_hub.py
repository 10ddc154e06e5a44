"""`cai train ... --push-to-hub REPO --private --report-to tensorboard` end to end, with the
real huggingface_hub client talking to a local fake of the Hub API (`cai.testing.fake_hub`):
the repository is created private, the model and its card arrive byte for byte, what is
local only stays behind, and the run's curves are in TensorBoard event files."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from cai.cli.app import app
from cai.testing.data import write_random_preferences
from cai.testing.fake_hub import FakeHub

pytestmark = pytest.mark.slow

TOKEN = "hf_test_write_token"
ABSOLUTE = re.compile(r"(?:^|[\s`'\"(\[])(?:~/|/)[^\s/]+/")


@pytest.fixture
def hub(monkeypatch):
    """The fake Hub as the endpoint, a token the fake insists on, and no offline flag."""
    with FakeHub(require_token=TOKEN) as fake:
        monkeypatch.setenv("HF_ENDPOINT", fake.url)
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        for name in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
            monkeypatch.delenv(name, raising=False)
        yield fake


@pytest.fixture
def licensed_model(tmp_path, tiny_model_dir):
    """The tiny model with a card whose license the trained model's card must copy."""
    base = tmp_path / "base"
    shutil.copytree(tiny_model_dir, base)
    (base / "README.md").write_text("---\nlicense: mit\n---\n# tiny base\n")
    return base


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    for run in {event.parent for event in logdir.rglob("events.out.tfevents.*")}:
        events = EventAccumulator(str(run))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return found


def _check_upload(hub: FakeHub, repo_id: str, folder: Path) -> str:
    """The repository is private and holds the folder's model files and card, unchanged."""
    repo = hub.repos[repo_id]
    assert repo.private and repo.repo_type == "model"
    assert {"README.md", "config.json", "model.safetensors"} <= set(repo.files)
    for name, data in repo.files.items():
        assert (folder / name).read_bytes() == data, name
    assert not any(
        name == "cai_training.json" or name.startswith(("checkpoint-", "checkpoints/", "logs/"))
        for name in repo.files
    ), sorted(repo.files)
    assert all(call.authorization == f"Bearer {TOKEN}" for call in hub.calls)
    card = repo.files["README.md"].decode()
    assert "license: mit" in card
    assert not ABSOLUTE.search(card), ABSOLUTE.search(card)
    return card


def test_dpo_pushes_model_and_card_and_logs_to_tensorboard(hub, licensed_model, tmp_path):
    data = write_random_preferences(tmp_path / "prefs.jsonl", n=8, seed=1)
    out = tmp_path / "dpo"
    result = CliRunner().invoke(
        app,
        [
            "train", "dpo", "--model", str(licensed_model), "--data", data, "-o", str(out),
            "--max-steps", "2", "--batch-size", "4", "--report-to", "tensorboard",
            "--push-to-hub", "cai-test/tiny-dpo", "--private",
            "--set", "logging_steps=1", "--set", "dtype=float32", "--set", "save_steps=1",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert (out / "checkpoint-2").is_dir()  # saved locally, left out of the push
    card = _check_upload(hub, "cai-test/tiny-dpo", out)
    assert "DPO (TRL DPOTrainer)" in card and "preference pairs: `prefs.jsonl` (8 rows)" in card
    assert "ai 8 (100%)" in card

    scalars = _scalars(out / "runs")
    assert [step for step, _ in scalars["train/loss"]] == [1, 2]


def test_ppo_pushes_the_final_policy_and_logs_every_step(
    hub, licensed_model, tiny_reward_dir, tmp_path
):
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": f"river {i}"}) + "\n" for i in range(4)))
    config = tmp_path / "ppo.yaml"
    config.write_text(
        yaml.safe_dump(
            {"batch_size": 2, "mini_batch_size": 2, "ppo_epochs": 1, "max_new_tokens": 4}
            | {"progress": False, "plot": False, "save_every": 0, "seed": 0}
        )
    )
    out = tmp_path / "ppo"
    result = CliRunner().invoke(
        app,
        [
            "train", "ppo", "-c", str(config), "--model", str(licensed_model),
            "--prompts", str(prompts), "--reward-model", str(tiny_reward_dir), "-o", str(out),
            "--steps", "2", "--report-to", "tensorboard",
            "--push-to-hub", "cai-test/tiny-ppo", "--private",
        ],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    card = _check_upload(hub, "cai-test/tiny-ppo", out / "final")
    assert "PPO (cai's own, on accelerate)" in card and "prompts: `prompts.jsonl` (4 rows)" in card
    assert "trained for 2 steps" in card

    scalars = _scalars(out / "runs")
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    for key in ("reward/mean", "kl/mean"):
        assert scalars[key] == [(r["step"], pytest.approx(r[key])) for r in logged]
    assert list((out / "runs").rglob("hparams.yml")), "the run's settings are logged"


def test_a_rejected_token_is_one_clear_error(hub, tmp_path, monkeypatch):
    from cai.train.push import PushError, push_model

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# m\n")
    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    with pytest.raises(PushError, match="hf auth login"):
        push_model(folder, "cai-test/denied")
    assert "cai-test/denied" not in hub.repos
