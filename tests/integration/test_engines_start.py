"""The first real tests: the tiny model runs in vLLM's offline engine and behind its server."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.vllm


def test_offline_engine_generates(vllm_engine):
    from vllm import SamplingParams

    outputs = vllm_engine.generate(
        ["Explain why honesty matters."], SamplingParams(n=2, max_tokens=8, temperature=1.0, seed=3)
    )
    completions = outputs[0].outputs
    assert len(completions) == 2
    assert all(len(c.token_ids) > 0 for c in completions)


def test_server_answers_and_stops(vllm_server):
    models = httpx.get(f"{vllm_server.base_url}/models", timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["tiny"]
    reply = httpx.post(
        f"{vllm_server.base_url}/chat/completions",
        json={
            "model": "tiny",
            "messages": [{"role": "user", "content": "Say hello."}],
            "max_tokens": 5,
            "temperature": 0,
        },
        timeout=60,
    ).json()
    assert reply["choices"][0]["message"]["content"] is not None
    assert reply["usage"]["completion_tokens"] >= 1
