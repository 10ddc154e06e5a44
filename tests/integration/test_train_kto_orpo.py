"""KTO and ORPO wrappers run real TRL steps on CPU with the tiny model built by the tests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cai.testing.data import write_random_preferences

pytestmark = pytest.mark.slow


def _weights(directory):
    from safetensors.torch import load_file

    return load_file(str(directory / "model.safetensors"))


def _changed(before, after_dir) -> bool:
    after = _weights(after_dir)
    return any(not (before[k] == after[k]).all() for k in before)


def _facts(directory) -> dict:
    return json.loads((directory / "cai_training.json").read_text())


def _common(model_dir, out):
    return {
        "model": str(model_dir),
        "output_dir": str(out),
        "max_steps": 2,
        "per_device_train_batch_size": 4,
        "save_steps": 2,
        "logging_steps": 1,
        "learning_rate": 1e-3,
        "dtype": "float32",
    }


def test_kto_splits_cai_preference_pairs_and_resumes(tiny_model_dir, tmp_path):
    from cai.train.kto import KTOTrainConfig, train_kto

    data = write_random_preferences(tmp_path / "prefs.jsonl", n=4)
    config = KTOTrainConfig(train_data=data, **_common(tiny_model_dir, tmp_path / "kto"))
    result = train_kto(config)
    assert result.global_step == 2 and "loss" in result.metrics
    assert "kl" in result.metrics  # the KL reference point KTO takes from the other answers
    assert _changed(_weights(tiny_model_dir), tmp_path / "kto")
    assert (tmp_path / "kto" / "checkpoint-2").is_dir()
    facts = _facts(tmp_path / "kto")
    assert facts["labels"] == {"desirable": 4, "undesirable": 4}  # 4 pairs -> 8 answers
    assert facts["unpaired_from_pairs"]["n_pairs"] == 4
    assert "\n# KTO policy\n" in (tmp_path / "kto" / "README.md").read_text()
    resumed = train_kto(config.model_copy(update={"max_steps": 3, "resume": True}))
    assert resumed.global_step == 3 and resumed.resumed_from.endswith("checkpoint-2")


def test_kto_trains_on_imported_thumbs_as_written(tiny_model_dir, tmp_path):
    """Thumbs up/down rows -> `import_human` -> the unpaired file `train_kto` reads as is."""
    from cai.human.imports import import_human
    from cai.tables import write_table
    from cai.train.kto import KTOTrainConfig, train_kto

    thumbs = tmp_path / "thumbs.jsonl"
    votes = [
        ("Name a colour.", "Blue.", "up"),
        ("Name a colour.", "Seven.", "down"),
        ("Say hi.", "Hello there!", "👍"),
        ("Say hi.", "No.", "👎"),
        ("Add 2 and 2.", "4", "up"),
        ("Add 2 and 2.", "5", "down"),
    ]
    thumbs.write_text(
        "".join(json.dumps({"prompt": p, "response": r, "thumbs": t}) + "\n" for p, r, t in votes)
    )
    rows, report = import_human(thumbs)
    assert report.format == "single" and report.n_imported == 6
    data = write_table(rows, tmp_path / "unpaired.jsonl")
    config = KTOTrainConfig(train_data=str(data), **_common(tiny_model_dir, tmp_path / "kto"))
    result = train_kto(config)
    assert result.global_step == 2
    assert _changed(_weights(tiny_model_dir), tmp_path / "kto")
    facts = _facts(tmp_path / "kto")
    assert facts["labels"] == {"desirable": 3, "undesirable": 3}
    assert "unpaired_from_pairs" not in facts


def test_orpo_trains_without_a_reference_and_drops_ties(tiny_model_dir, tmp_path):
    from cai.train.orpo import ORPOTrainConfig, train_orpo

    data = tmp_path / "prefs.jsonl"
    write_random_preferences(data, n=4)
    tie = json.loads(data.read_text().splitlines()[0])
    tie.update(prob_chosen=0.5, pair_id="tie")
    with data.open("a") as handle:
        handle.write(json.dumps(tie) + "\n")
    config = ORPOTrainConfig(
        train_data=str(data), beta=0.5, **_common(tiny_model_dir, tmp_path / "orpo")
    )
    result = train_orpo(config)
    metrics = result.metrics
    assert result.global_step == 2
    # ORPO's loss: the chosen answers' NLL minus beta x mean log sigmoid(log odds ratio)
    expected = metrics["nll_loss"] - 0.5 * metrics["log_odds_ratio"]
    assert metrics["loss"] == pytest.approx(expected, abs=1e-3)
    assert _changed(_weights(tiny_model_dir), tmp_path / "orpo")
    assert (tmp_path / "orpo" / "checkpoint-2").is_dir()
    facts = _facts(tmp_path / "orpo")
    assert facts["pairs"] == 4 and facts["ties_dropped"] == 1
    assert "\n# ORPO policy\n" in (tmp_path / "orpo" / "README.md").read_text()


@pytest.mark.parametrize("method", ["kto", "orpo"])
def test_cli_trains_from_the_example_config_with_overrides(method, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from cai.cli.app import app

    example = Path(__file__).resolve().parents[2] / "examples" / f"train_{method}.yaml"
    data = write_random_preferences(tmp_path / "prefs.jsonl", n=2)
    out = tmp_path / method
    args = ["train", method, "-c", str(example), "--model", str(tiny_model_dir), "--data", data]
    args += ["-o", str(out), "--max-steps", "1", "--batch-size", "2", "--set", "dtype=float32"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"trained 1 steps -> {out}" in result.output
    assert _facts(out)["config"]["per_device_train_batch_size"] == 2  # the flag beat the YAML
    assert (out / "config.resolved.yaml").is_file() and (out / "model.safetensors").is_file()
