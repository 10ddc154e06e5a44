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
