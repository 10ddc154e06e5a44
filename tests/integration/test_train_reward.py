"""The soft-label reward trainer on the tiny reward model: it learns, it reports, it resumes."""

from __future__ import annotations

import json
import random

import pytest

from cai.records import PreferenceRow, stable_id
from cai.testing.tiny import _WORDS

pytestmark = pytest.mark.slow

FEATURE = "safe"
WORDS = [w for w in _WORDS if w not in ("safe", "unsafe")]


def _rows(n: int, seed: int, source_every: int = 4) -> list[dict]:
    """The chosen answer contains FEATURE somewhere; length and everything else are random."""
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        prompt = [{"role": "user", "content": " ".join(rng.choice(WORDS) for _ in range(6))}]
        good = [rng.choice(WORDS) for _ in range(8)]
        good.insert(rng.randrange(len(good) + 1), FEATURE)
        bad = [rng.choice(WORDS) for _ in range(8)]
        bad.insert(rng.randrange(len(bad) + 1), rng.choice(WORDS))  # same length as good
        human = i % source_every == 0
        row = PreferenceRow(
            prompt=prompt,
            chosen=[{"role": "assistant", "content": " ".join(good)}],
            rejected=[{"role": "assistant", "content": " ".join(bad)}],
            prompt_id=stable_id(prompt),
            pair_id=stable_id(prompt, i),
            prob_chosen=1.0 if human else rng.uniform(0.6, 1.0),
            n_judgments=0 if human else 4,
            orders_agree=None if human else True,
            principles=[] if human else ["harmless"],
            source="human" if human else "ai",
            method="human-import" if human else "pairwise",
        )
        rows.append(row.model_dump())
    return rows


def _write(path, rows):
    with path.open("w") as handle:
        for row in rows:
            handle.write(json.dumps(row) + "\n")
    return str(path)


def test_soft_label_reward_model_learns_the_deciding_feature(tiny_reward_dir, tmp_path):
    from cai.train.reward import RewardTrainConfig, train_reward_model
    from cai.train.reward_scorer import RewardModelScorer

    train = _write(tmp_path / "train.jsonl", _rows(128, seed=0))
    human = _write(tmp_path / "human.jsonl", _rows(64, seed=1, source_every=1))
    config = RewardTrainConfig(
        model=str(tiny_reward_dir),
        output_dir=str(tmp_path / "rm"),
        train_data=train,
        human_eval_data=human,
        source_weights={"ai": 1.0, "human": 2.0},
        learning_rate=2e-3,
        num_train_epochs=2,
        per_device_train_batch_size=16,
        save_steps=1000,
        dtype="float32",
    )
    before = RewardModelScorer(str(tiny_reward_dir))
    from cai.tables import load_table
    from cai.train.reward import preference_accuracy

    held_out = load_table(human)
    untrained = preference_accuracy(before, held_out)["accuracy"]

    result = train_reward_model(config)
    assert result.global_step == 16  # 128 rows / 16 per batch x 2 epochs
    assert result.metrics["human_accuracy"] >= max(0.9, untrained + 0.2)
    assert result.metrics["human_n"] == 64

    # the saved model scores like the trained one, independently reloaded
    saved = RewardModelScorer(str(tmp_path / "rm"))
    assert preference_accuracy(saved, held_out)["accuracy"] >= 0.9
    card = (tmp_path / "rm" / "README.md").read_text()
    assert "rows_by_source" in card and "human_accuracy" in card
    facts = json.loads((tmp_path / "rm" / "cai_training.json").read_text())
    assert facts["rows_by_source"] == {"human": 32, "ai": 96}
    assert (tmp_path / "rm" / "config.resolved.yaml").is_file()


def test_reward_training_resumes_from_its_checkpoint_via_the_cli(tiny_reward_dir, tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app

    train = _write(tmp_path / "train.jsonl", _rows(64, seed=2))
    (tmp_path / "rm.yaml").write_text(
        f"model: {tiny_reward_dir}\n"
        f"train_data: {train}\n"
        f"output_dir: {tmp_path / 'out'}\n"
        "per_device_train_batch_size: 8\n"
        "save_steps: 3\n"
        "logging_steps: 1\n"
        "dtype: float32\n"
        "learning_rate: 0.001\n"
    )
    runner = CliRunner()
    first = runner.invoke(
        app, ["train", "reward", "-c", str(tmp_path / "rm.yaml"), "--max-steps", "3"]
    )
    assert first.exit_code == 0, first.output
    assert (tmp_path / "out" / "checkpoint-3").is_dir()
    second = runner.invoke(
        app,
        ["train", "reward", "-c", str(tmp_path / "rm.yaml"), "--max-steps", "5", "--resume"],
    )
    assert second.exit_code == 0, second.output
    assert "trained 5 steps" in second.output
    facts = json.loads((tmp_path / "out" / "cai_training.json").read_text())
    assert facts["resumed_from"].endswith("checkpoint-3")
    state = json.loads((tmp_path / "out" / "checkpoint-5" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    # one log line per step after resuming: steps 4 and 5 only, not a restart from 1
    assert [e["step"] for e in state["log_history"] if "loss" in e][-2:] == [4, 5]

    bad = runner.invoke(
        app, ["train", "reward", "-c", str(tmp_path / "rm.yaml"), "--set", "labels=fuzzy"]
    )
    assert bad.exit_code == 2 and "labels" in bad.output


def test_soft_labels_shrug_off_unsure_wrong_labels_that_hard_labels_learn(
    tiny_reward_dir, tmp_path
):
    """35% of AI labels point the wrong way but the judge was unsure (p in 0.5-0.6)."""
    from cai.train.reward import RewardTrainConfig, train_reward_model

    rng = random.Random(5)
    rows = _rows(192, seed=0, source_every=10**9)
    for row in rows:
        if rng.random() < 0.35:
            row["chosen"], row["rejected"] = row["rejected"], row["chosen"]
            row["prob_chosen"] = rng.uniform(0.5, 0.6)
        else:
            row["prob_chosen"] = rng.uniform(0.85, 1.0)
    train = _write(tmp_path / "noisy.jsonl", rows)
    human = _write(tmp_path / "human.jsonl", _rows(64, seed=1, source_every=1))
    accuracy = {}
    for labels in ("soft", "hard"):
        result = train_reward_model(
            RewardTrainConfig(
                model=str(tiny_reward_dir),
                output_dir=str(tmp_path / labels),
                train_data=train,
                human_eval_data=human,
                labels=labels,
                learning_rate=2e-3,
                num_train_epochs=2,
                per_device_train_batch_size=16,
                save_steps=1000,
                dtype="float32",
            )
        )
        accuracy[labels] = result.metrics["human_accuracy"]
    assert accuracy["soft"] >= 0.95
    assert accuracy["soft"] > accuracy["hard"], accuracy


def test_collator_carries_targets_and_weights_and_pickles():
    import pickle

    from cai.train.reward_trainer import SoftPreferenceCollator

    collator = pickle.loads(pickle.dumps(SoftPreferenceCollator(pad_token_id=0)))
    batch = collator(
        [
            {
                "chosen_ids": [5, 6, 7],
                "rejected_ids": [8],
                "prob_chosen": 0.7,
                "sample_weight": 2.0,
            },
            {"chosen_ids": [9], "rejected_ids": [3, 4], "prob_chosen": 1.0, "sample_weight": 1.0},
        ]
    )
    assert batch["input_ids"].tolist() == [[5, 6, 7], [9, 0, 0], [8, 0, 0], [3, 4, 0]]
    assert batch["prob_chosen"].tolist() == pytest.approx([0.7, 1.0])
    assert batch["sample_weight"].tolist() == [2.0, 1.0]
