"""The model card every trainer writes (`cai.train.cards`): what the model was aligned with,
and no local path anywhere in it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from cai.constitution import load_constitution
from cai.records import PreferenceRow, stable_id
from cai.train.cards import (
    CardInputs,
    ModelCard,
    base_license,
    build_card,
    dataset_facts,
    public_model_name,
    scrub_paths,
    write_model_card,
)
from cai.train.preference import DPOTrainConfig

# A path that starts a line, follows a space, quote, backtick or bracket: /x/y or ~/x.
ABSOLUTE = re.compile(r"(?:^|[\s`'\"(\[])(?:~/|/)[^\s/]+/")


def _base_model(tmp_path: Path) -> Path:
    """A base model directory as a hub snapshot would hold it: config and a licensed card."""
    base = tmp_path / "models" / "base-lm"
    base.mkdir(parents=True)
    (base / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (base / "README.md").write_text("---\nlicense: MIT\nlanguage: [en]\n---\n# base\n")
    return base


def _preferences(tmp_path: Path, judge: Path) -> Path:
    """12 pairs, 9 AI-labelled and 3 human, judged by a local model against `default`, with
    the dataset card `cai run` writes beside a JSONL file."""
    constitution = load_constitution("default")
    path = tmp_path / "data" / "prefs.jsonl"
    path.parent.mkdir()
    with path.open("w") as handle:
        for i in range(12):
            prompt = [{"role": "user", "content": f"question {i}"}]
            row = PreferenceRow(
                prompt=prompt,
                chosen=[{"role": "assistant", "content": f"good {i}"}],
                rejected=[{"role": "assistant", "content": f"bad {i}"}],
                prompt_id=stable_id(prompt),
                pair_id=stable_id(prompt, i),
                prob_chosen=0.8,
                judge_model=str(judge),
                constitution_name=constitution.name,
                constitution_hash=constitution.content_hash,
                source="human" if i % 4 == 0 else "ai",
            )
            handle.write(row.model_dump_json() + "\n")
    (tmp_path / "data" / "prefs.jsonl.README.md").write_text(
        "---\ntags: [cai]\n---\n# helpful-harmless prefs\n\n## Provenance\n"
        f"- judge model: `{judge}`\n- constitution: `default`\n\n## Counts\n- rows written: 12\n"
    )
    return path


def test_card_says_what_the_model_was_aligned_with_and_names_no_local_path(tmp_path):
    base = _base_model(tmp_path)
    judge = tmp_path / "models" / "judge-7b"
    judge.mkdir()
    (judge / "cai_model.json").write_text(json.dumps({"name": "judge-7b-embedded"}))
    data = _preferences(tmp_path, judge)
    out = tmp_path / "runs" / "dpo"
    config = DPOTrainConfig(
        model=str(base), train_data=str(data), output_dir=str(out), beta=0.2, max_steps=3
    )
    inputs = CardInputs(
        method="DPO (TRL DPOTrainer)",
        settings=("beta", "loss_type"),
        data=[dataset_facts(data)],
        tags=["dpo"],
    )
    card = build_card(
        config,
        "DPO policy",
        inputs,
        {"train/loss": 0.61},
        steps=3,
        processes=2,
        resumed_from=str(out / "checkpoint-2"),
    )
    path = write_model_card(out, card, {"base_model": str(base)})
    text = path.read_text()

    meta = yaml.safe_load(text.split("---")[1])
    assert meta["license"] == "mit"  # copied from the base model's card
    assert "cai" in meta["tags"] and "dpo" in meta["tags"]
    assert "base_model" not in meta  # a local directory is not a hub id the Hub could link
    assert "`base-lm`" in text
    assert "DPO (TRL DPOTrainer)" in text and "- beta: `0.2`" in text
    assert "trained for 3 steps on 2 process(es); resumed from: checkpoint-2" in text
    # the data: its name, size, AI/human mix and its own card
    assert "preference pairs: `prefs.jsonl` (12 rows)" in text
    assert "ai 9 (75%), human 3 (25%)" in text
    assert '"helpful-harmless prefs"' in text
    # the constitution with its version and text, and the judge by its public name
    constitution = load_constitution("default")
    assert f"`default`, version {constitution.version}" in text
    first = constitution.principles[0]
    assert f"**{first.id}**: {' '.join(str(first.comparison_question).split())}" in text
    assert "`judge-7b-embedded`" in text
    assert "| train/loss | 0.61 |" in text
    # no local path, in the text or the front matter
    assert str(tmp_path) not in text
    assert not ABSOLUTE.search(text), ABSOLUTE.search(text)
    facts = json.loads((out / "cai_training.json").read_text())
    assert facts["base_model_name"] == "base-lm" and facts["license"] == "mit"


def test_loop_round_table_and_unknown_constitution(tmp_path):
    card = ModelCard(
        title="Loop policy",
        method="cai loop: 2 rounds of DPO",
        base_model="HuggingFaceTB/SmolLM2-135M-Instruct",
        rounds_table="| round | win |\n|---|---|\n| 1 | 0.6 |\n",
        notes={"notes": f"read from {tmp_path}/rounds/2/policy"},
    )
    text = card.render()
    assert yaml.safe_load(text.split("---")[1])["base_model"] == (
        "HuggingFaceTB/SmolLM2-135M-Instruct"
    )
    assert "## Loop rounds" in text and "| 1 | 0.6 |" in text
    assert "constitution: none recorded" in text
    assert str(tmp_path) not in text and "read from policy" in text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("at /root/.cache/cai/models/x today", "at x today"),
        ("`~/data/prefs.jsonl`", "`prefs.jsonl`"),
        ("see https://huggingface.co/org/model", "see https://huggingface.co/org/model"),
        ("a 1/2 chance and/or more", "a 1/2 chance and/or more"),
        ("(/tmp/run/out/)", "(out)"),
    ],
)
def test_scrub_paths(text, expected):
    assert scrub_paths(text) == expected


def test_public_names_and_license(tmp_path):
    snapshot = tmp_path / "hub" / "models--org--tiny" / "snapshots" / "abc123"
    snapshot.mkdir(parents=True)
    assert public_model_name(snapshot) == "org/tiny"
    assert public_model_name("org/remote-model") == "org/remote-model"
    trained = tmp_path / "rounds" / "1" / "policy"
    trained.mkdir(parents=True)
    (trained / "cai_training.json").write_text(json.dumps({"base_model_name": "org/tiny"}))
    assert public_model_name(trained) == "1/policy (trained from org/tiny)"
    assert base_license(snapshot) is None
    (snapshot / "config.json").write_text(json.dumps({"license": "Apache-2.0"}))
    assert base_license(snapshot) == "apache-2.0"


def test_the_loop_card_goes_to_the_final_policy_once(tmp_path):
    from cai.loop.config import LoopConfig
    from cai.loop.publish import publish_final_policy
    from cai.loop.report import RoundRow

    start = _base_model(tmp_path)
    judge = tmp_path / "models" / "judge"
    judge.mkdir()
    final = tmp_path / "run" / "rounds" / "2" / "policy"
    final.mkdir(parents=True)
    data = _preferences(tmp_path, judge)
    config = LoopConfig.model_validate(
        {
            "name": "card-loop",
            "prompts": {"path": "p.jsonl"},
            "policy": {"kind": "transformers", "model": str(start)},
            "judge_backend": {"kind": "scripted", "model": "judge"},
            "eval": {"prompts": "e.jsonl"},
        }
    )
    rows = [
        RoundRow(
            round=r,
            pairs=6,
            train_rows=6 * r,
            human_overrides=0,
            win_vs_previous=0.5 + r / 10,
            win_vs_previous_ci=(0.4, 0.9),
            win_vs_start=0.5 + r / 10,
            win_vs_start_ci=(0.4, 0.9),
            mean_reward=0.1,
            kl=None,
            mean_response_words=20.0,
            stage_seconds={"label": 60.0, "policy": 30.0, "eval": 90.0},
        )
        for r in (1, 2)
    ]
    publish_final_policy(config, str(start), str(final), rows, data)
    text = (final / "README.md").read_text()
    assert "# card-loop: policy after 2 round(s)" in text
    assert "cai loop: 2 round(s) of sample -> judge -> DPO" in text
    assert "## Loop rounds" in text and "| 2 | 6 | 12 | 0 | 0.700 [0.400, 0.900]" in text
    assert "| 2 | 60.0 | 30.0 | 90.0 | 180.0 |" in text  # seconds per stage and per round
    assert "license: mit" in text and "`default`, version" in text
    assert str(tmp_path) not in text and not ABSOLUTE.search(text)
    # a rerun with the same rounds writes nothing; the starting policy is never written to
    written = (final / "README.md").stat().st_mtime_ns
    publish_final_policy(config, str(start), str(final), rows, data)
    assert (final / "README.md").stat().st_mtime_ns == written
    publish_final_policy(config, str(start), str(start), rows, data)
    assert (start / "README.md").read_text().startswith("---\nlicense: MIT")
