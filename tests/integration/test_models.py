"""The embedded default model for real: pulled explicitly from PyPI, converted once, then used by name."""

from __future__ import annotations

import json
import time
from importlib import metadata

import pytest

from cai.backends import backend_spec, make_backend
from cai.backends.base import ChoiceRequest, GenerationParams

pytestmark = pytest.mark.slow


def test_pull_convert_and_use_the_default_model(tmp_path, monkeypatch):
    from cai.model_names import (
        EMBEDDED,
        MANIFEST,
        ModelPullError,
        find_packaged_gguf,
        list_models,
        local_model_dir,
        model_identity,
        pull,
        sha256_file,
    )

    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    # Without a terminal, an unpulled name is never installed behind the user's back.
    with pytest.raises(ModelPullError, match="cai models pull smollm2-135m-instruct"):
        make_backend(backend_spec(kind="transformers", device="cpu"))
    started = time.monotonic()
    pull("smollm2-135m-instruct")
    converted = time.monotonic()
    backend = make_backend(backend_spec(kind="transformers", device="cpu"))
    target = local_model_dir("smollm2-135m-instruct")
    assert (target / MANIFEST).is_file() and (target / "model.safetensors").is_file()
    assert list_models()[0].pulled
    entry = EMBEDDED["smollm2-135m-instruct"]
    manifest = json.loads((target / MANIFEST).read_text())
    assert manifest["package_version"] == entry.version == metadata.version(entry.package)
    gguf = find_packaged_gguf(entry.package, entry.gguf_name)
    assert gguf is not None and sha256_file(gguf) == manifest["gguf_sha256"] == entry.gguf_sha256
    identity = model_identity(str(target))
    assert identity.startswith("smollm2-135m-instruct#") and str(tmp_path) not in identity
    assert backend.model_id == f"transformers:{identity}:float32"

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
    make_backend(backend_spec(kind="transformers", device="cpu"))
    print(f"pull+convert {converted - started:.1f}s, reuse {time.monotonic() - again:.1f}s")
    assert time.monotonic() - again < converted - started
