"""`cai loop` with the policy sampled by a real vLLM engine: two rounds on the tiny model, so
round 2's engine loads the policy that round 1's DPO step saved.

The judge is the scripted backend with content-dependent scores, passed in (its arithmetic is
tested elsewhere); the eval answers come from transformers (`eval.backend`), so the test starts
one vLLM engine per round and no more.
"""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml

from cai.backends.base import ChoiceRequest
from cai.backends.scripted import ScriptedBackend

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def content_score(request: ChoiceRequest) -> list[float]:
    text = "".join(m["content"] for m in request.messages) + request.assistant_prefix
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[0] / 64, digest[1] / 64]


def test_two_rounds_sampled_with_vllm(tmp_path, tiny_model_dir, tiny_reward_dir):
    from cai.loop import load_loop_config, run_loop

    with (tmp_path / "prompts.jsonl").open("w") as handle:
        for i in range(8):
            handle.write(json.dumps({"prompt": f"Question {i}: what is a kind reply?"}) + "\n")
    train = {"max_steps": 2, "per_device_train_batch_size": 4, "learning_rate": 5e-3}
    settings = {
        "rounds": 2,
        "prompts": {"path": "prompts.jsonl", "per_round": 4},
        "policy": {
            "kind": "vllm",
            "model": str(tiny_model_dir),
            "dtype": "float32",
            "max_model_len": 512,
        },
        "judge_backend": {"kind": "scripted", "model": "content"},
        "sample": {"n": 2, "max_tokens": 8},
        "judge": {"principles_per_pair": 1},
        "preferences": {"format": "jsonl"},
        "reward_model": {"model": str(tiny_reward_dir), "train": {**train, "learning_rate": 1e-4}},
        "policy_step": {"method": "dpo", "train": train},
        "eval": {"prompts": "prompts.jsonl", "limit": 4, "max_tokens": 8,
                 "backend": {"kind": "transformers"}},
    }  # fmt: skip
    path = tmp_path / "loop.yaml"
    path.write_text(yaml.safe_dump(settings))
    config = load_loop_config(path, [f"output_dir={tmp_path / 'run'}"])
    judge = ScriptedBackend(score=content_score, model_id="scripted-content")
    result = run_loop(config, judge_backend=judge)

    out = tmp_path / "run"
    assert [row.round for row in result.rounds] == [1, 2]
    models = []
    for r in (1, 2):
        chunks = sorted((out / "rounds" / str(r) / "samples" / "chunks").glob("*.jsonl"))
        rows = [json.loads(line) for chunk in chunks for line in chunk.read_text().splitlines()]
        assert len(rows) == 4 and all(len(row["responses"]) == 2 for row in rows)
        models.append(rows[0]["policy_model"])
    assert all(model.startswith("vllm:") for model in models), models
    assert models[0] != models[1]  # round 2 sampled the policy round 1 trained
    assert result.final_policy.endswith("rounds/2/policy")
    assert result.rounds[1].train_rows == result.rounds[0].pairs + result.rounds[1].pairs
