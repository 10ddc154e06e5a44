"""The tiny-model builder: deterministic, loadable, with a chat template and head_dim >= 32."""

from __future__ import annotations

import hashlib

from cai.testing import TinySpec, build_tiny_causal_lm


def _digest(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_same_seed_same_weights_and_tokenizer(tmp_path):
    a = build_tiny_causal_lm(tmp_path / "a", TinySpec(seed=7))
    b = build_tiny_causal_lm(tmp_path / "b", TinySpec(seed=7))
    c = build_tiny_causal_lm(tmp_path / "c", TinySpec(seed=8))
    assert _digest(a) == _digest(b)
    assert _digest(a) != _digest(c)
    assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()


def test_loads_in_transformers_with_chat_template(tiny_model_dir, tiny_reward_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    text = tok.apply_chat_template(
        [{"role": "user", "content": "hi"}], tokenize=False, add_generation_prompt=True
    )
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    assert model.config.head_dim >= 32
    ids = tok(text, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits
    assert logits.shape == (1, ids.shape[1], len(tok))
    rm = AutoModelForSequenceClassification.from_pretrained(tiny_reward_dir)
    with torch.no_grad():
        assert rm(ids).logits.shape == (1, 1)
