"""`cai loop` bookkeeping without models: round mixing, human overrides, the stopping rule,
settings checks and the state file's refusal of changed settings."""

from __future__ import annotations

import json

import pytest
import yaml

from cai.config import ConfigError
from cai.loop.config import LoopData, fingerprint, load_loop_config
from cai.loop.data import apply_human_labels, check_pool, mix_rounds, round_copies
from cai.loop.report import RoundRow, gain_is_flat, stop_reason
from cai.loop.state import LoopConfigChangedError, StateFile


def _row(prompt: str, chosen: str, rejected: str, prob: float, source: str = "ai") -> dict:
    return {
        "prompt": [{"role": "user", "content": prompt}],
        "chosen": [{"role": "assistant", "content": chosen}],
        "rejected": [{"role": "assistant", "content": rejected}],
        "prompt_id": prompt,
        "pair_id": "stale",
        "prob_chosen": prob,
        "n_judgments": 4,
        "source": source,
    }


@pytest.mark.parametrize(
    ("data", "round_no", "expected"),
    [
        (LoopData(mix="all"), 3, {1: 1, 2: 1, 3: 1}),
        (LoopData(mix="window", window=2), 3, {2: 1, 3: 1}),
        (LoopData(mix="window", window=5), 2, {1: 1, 2: 1}),
        # weights 0.25, 0.5, 1 -> copies relative to the lightest
        (LoopData(mix="decay", decay=0.5), 3, {1: 1, 2: 2, 3: 4}),
        # weights 0.125 (< 0.2, left out), 0.25, 0.5, 1
        (LoopData(mix="decay", decay=0.5, min_weight=0.2), 4, {2: 1, 3: 2, 4: 4}),
        (LoopData(mix="decay", decay=1.0), 2, {1: 1, 2: 1}),
    ],
)
def test_round_copies_by_hand(data, round_no, expected):
    assert round_copies(data, round_no) == expected


def test_mix_rounds_repeats_rows_oldest_first():
    rows = {1: [{"id": "a"}], 2: [{"id": "b"}, {"id": "c"}], 3: [{"id": "d"}]}
    mixed = mix_rounds(rows, {2: 2, 3: 1})
    assert [r["id"] for r in mixed] == ["b", "c", "b", "c", "d"]


def test_human_label_overrides_the_ai_label_of_the_same_pair():
    ai = [_row("p1", "x", "y", 0.8), _row("p2", "u", "v", 0.7)]
    # a person prefers y over x (the pair of p1 in the other order), and labels a pair no
    # round sampled
    human = [_row("p1", "y", "x", 1.0, "human"), _row("p9", "m", "n", 1.0, "human")]
    rows, counts = apply_human_labels(ai, human, round_no=2)
    assert counts == {
        "human_labels_used": 1,
        "human_labels_unmatched": 1,
        "ai_overridden": 1,
        "ai_conflicts": 1,
    }
    by_prompt = {r["prompt_id"]: r for r in rows}
    assert len(rows) == 2
    assert by_prompt["p1"]["source"] == "human"
    assert by_prompt["p1"]["chosen"][0]["content"] == "y"
    assert by_prompt["p2"]["source"] == "ai" and by_prompt["p2"]["prob_chosen"] == 0.7
    assert {r["round"] for r in rows} == {2}
    assert by_prompt["p1"]["pair_id"] != "stale"  # recomputed from content


def _flat(r: int, ci=(0.4, 0.6)) -> RoundRow:
    return RoundRow(
        round=r, pairs=1, train_rows=1, human_overrides=0,
        win_vs_previous=0.5, win_vs_previous_ci=ci, win_vs_start=0.5, win_vs_start_ci=ci,
        mean_reward=None, kl=None, mean_response_words=None,
    )  # fmt: skip


def test_stopping_rule_needs_patience_flat_rounds_in_a_row():
    gain = _flat(2, (0.55, 0.8))
    assert gain_is_flat(_flat(1)) and not gain_is_flat(gain)
    assert gain_is_flat(_flat(1, (0.3, 0.5)))  # the interval touches 0.5: no measurable gain
    assert stop_reason([_flat(1), gain], patience=1) is None
    assert stop_reason([_flat(1), gain, _flat(3)], patience=2) is None
    reason = stop_reason([gain, _flat(2), _flat(3)], patience=2)
    assert reason is not None and "rounds 2-3" in reason
    assert stop_reason([_flat(1), _flat(2)], patience=None) is None


def _write_config(tmp_path, **extra) -> object:
    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for i in range(5):
            handle.write(json.dumps({"prompt": f"Question {i}?"}) + "\n")
    (tmp_path / "model").mkdir(exist_ok=True)
    data = {
        "rounds": 2,
        "prompts": {"path": "prompts.jsonl", "per_round": 2},
        "policy": {"kind": "transformers", "model": "model"},
        "judge_backend": {"kind": "scripted"},
        "eval": {"prompts": "prompts.jsonl"},
        **extra,
    }
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_paths_resolve_beside_the_file(tmp_path, monkeypatch):
    path = _write_config(tmp_path)
    monkeypatch.chdir(tmp_path.parent)
    config = load_loop_config(path)
    assert config.prompts.path == str(tmp_path / "prompts.jsonl")
    assert config.policy.model == str(tmp_path / "model")
    assert check_pool(config) == 5


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["policy_step.train.max_stepz=2"], "did you mean `max_steps`"),
        (["reward_model={model: m, train: {output_dir: x}}"], "set by the loop"),
        (["policy_step.method=ppo"], "needs a `reward_model:` section"),
        (["policy.kind=scripted"], "must be a local model"),
        (["data.mix=sometimes"], "data.mix"),
        (["prompts.per_round=0"], "per_round"),
    ],
)
def test_bad_settings_name_the_key(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_loop_config(_write_config(tmp_path), overrides)


def test_a_pool_too_small_for_its_slices_is_refused(tmp_path):
    config = load_loop_config(_write_config(tmp_path), ["rounds=3"])  # 3 x 2 > 5 prompts
    with pytest.raises(ConfigError, match=r"fewer than per_round \(2\) x rounds \(3\) = 6"):
        check_pool(config)


def test_state_refuses_changed_settings_but_not_more_rounds(tmp_path):
    path = _write_config(tmp_path)
    config = load_loop_config(path)
    state = StateFile(tmp_path / "run", fingerprint(config))
    state.start(1, "prompts")
    state.finish(1, "prompts", {"prompts": 2})
    more = load_loop_config(path, ["rounds=4", "stop.patience=2"])
    again = StateFile(tmp_path / "run", fingerprint(more))
    assert again.done(1, "prompts") and again.result(1, "prompts") == {"prompts": 2}
    changed = load_loop_config(path, ["sample.n=3", "data.mix=window"])
    with pytest.raises(LoopConfigChangedError, match=r"changed: data\.mix, sample\.n"):
        StateFile(tmp_path / "run", fingerprint(changed))


def test_the_example_loads_and_its_pool_holds_every_slice():
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "loop.yaml"
    config = load_loop_config(example)
    assert config.policy_step.method == "dpo" and config.rounds == 3
    assert check_pool(config) >= config.rounds * config.prompts.per_round
