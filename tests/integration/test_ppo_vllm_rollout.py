"""The vLLM rollout engine on the shared engine: seeded sampling, EOS bookkeeping, and weight
sync (the engine then generates what the synced policy generates; the originals are restored)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from cai.train.ppo.rollout import VLLMRollout  # noqa: E402

pytestmark = pytest.mark.vllm


def _greedy_hf(policy, queries, n):
    out = []
    for query in queries:
        ids = torch.tensor([query])
        gen = policy.generate(
            ids, attention_mask=torch.ones_like(ids), do_sample=False, max_new_tokens=n
        )
        out.append(gen[0, len(query) :].tolist())
    return out


def test_vllm_rollout_samples_and_syncs_weights(vllm_engine, tiny_model_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rollout = VLLMRollout(vllm_engine, tokenizer)
    queries = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], add_generation_prompt=True
        )["input_ids"]
        for text in ("tell me about water", "how do people help a friend")
    ]

    first = rollout.generate(queries, max_new_tokens=8, temperature=1.0, seed=3)
    again = rollout.generate(queries, max_new_tokens=8, temperature=1.0, seed=3)
    assert first.response_ids == again.response_ids
    assert first.query_ids == queries
    for tokens, done in zip(first.response_ids, first.finished, strict=True):
        assert 1 <= len(tokens) <= 8
        assert done == (tokens[-1] == tokenizer.eos_token_id)
        assert done or len(tokens) == 8

    original = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    changed = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        head = changed.lm_head.weight
        # new argmaxes, with margins so wide that float differences between engines cannot flip them
        head.copy_(1000.0 * (head + 0.5 * torch.randn(head.shape, generator=gen)))
    greedy_before = rollout.generate(queries, 8, temperature=1e-6, seed=0).response_ids
    try:
        rollout.sync_weights(changed)
        greedy_synced = rollout.generate(queries, 8, temperature=1e-6, seed=0).response_ids
        expected = _greedy_hf(changed, queries, 8)
        assert [g[: len(s)] for g, s in zip(expected, greedy_synced, strict=True)] == greedy_synced
        assert greedy_synced != greedy_before
    finally:
        rollout.sync_weights(original)  # the engine is shared with other tests
    assert rollout.generate(queries, 8, temperature=1e-6, seed=0).response_ids == greedy_before
    assert rollout.generate(queries, 8, temperature=1.0, seed=3).response_ids == first.response_ids
    assert rollout.synced_versions == 2


def test_trainer_rolls_out_with_vllm_and_syncs_after_every_step(
    vllm_engine, tiny_model_dir, tmp_path
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from cai.train.ppo.config import PPOConfig
    from cai.train.ppo.logging import read_metrics
    from cai.train.ppo.rewards import TokenFractionReward
    from cai.train.ppo.trainer import PPOTrainer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    rollout = VLLMRollout(vllm_engine, tokenizer)
    config = PPOConfig(
        model=str(tiny_model_dir),
        output_dir=str(tmp_path / "run"),
        steps=2,
        batch_size=4,
        mini_batch_size=4,
        ppo_epochs=1,
        max_new_tokens=6,
        learning_rate=1e-3,
        save_final_model=False,
        plot=False,
        progress=False,
    )
    prompts = [[{"role": "user", "content": f"say something kind {i}"}] for i in range(4)]
    reward = TokenFractionReward(list(range(0, len(tokenizer), 4)), {tokenizer.eos_token_id})
    try:
        result = PPOTrainer(config, reward, prompts, rollout_engine=rollout).train()
        rows = read_metrics(result.metrics_path)
        assert [r["step"] for r in rows] == [1, 2]
        assert rollout.synced_versions == 2
        # one epoch, one minibatch: the update starts exactly at the rollout policy (ratio 1),
        # so nothing can be clipped on the first and only pass
        assert all(r["policy/clip_fraction"] == 0.0 for r in rows)
        assert all(1 <= r["response/length"] <= 6 for r in rows)
    finally:
        rollout.sync_weights(AutoModelForCausalLM.from_pretrained(tiny_model_dir))
