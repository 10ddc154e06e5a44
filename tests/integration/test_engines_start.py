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


def test_server_stop_frees_the_port(tiny_model_dir):
    """A second, short-lived server: start, query /health, stop, and the port is released."""
    from cai.serving import ServerOptions, VLLMServer, free_port

    port = free_port()
    server = VLLMServer(
        ServerOptions(
            model=str(tiny_model_dir),
            port=port,
            dtype="float32",
            max_model_len=512,
            enforce_eager=True,
        )
    )
    with server:
        assert httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200
    assert server.process.poll() is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
