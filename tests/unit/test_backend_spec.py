"""BackendSpec validation and the make_backend chooser (engine-free kinds only)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from cai.backends import BackendSpec, make_backend
from cai.backends.base import BackendError, GenerationParams
from cai.cache import CachedBackend


def test_spec_defaults_and_url_parsing():
    spec = BackendSpec()
    assert spec.kind == "vllm" and spec.model == "smollm2-135m-instruct"
    assert spec.cache_path is None and spec.max_concurrency == 16
    spec = BackendSpec(kind="openai", base_urls="http://a:1/v1, http://b:2/v1")
    assert spec.base_urls == ["http://a:1/v1", "http://b:2/v1"]


def test_spec_carries_revision_and_timeouts():
    spec = BackendSpec(model="org/model", revision="v2", timeout_s=30, connect_timeout_s=2)
    assert (spec.revision, spec.timeout_s, spec.connect_timeout_s) == ("v2", 30, 2)
    assert BackendSpec().revision is None and BackendSpec().read_timeout_s is None
    with pytest.raises(ValidationError):
        BackendSpec(read_timeout_s=0)


def test_serve_passes_the_revision_to_vllm():
    from cai.serving import ServerOptions

    cmd = ServerOptions(model="org/model", revision="abc123").command(8000)
    assert cmd[cmd.index("--revision") + 1] == "abc123"
    assert "--revision" not in ServerOptions(model="m").command(8000)


def test_spec_rejects_unknown_fields_and_kinds():
    with pytest.raises(ValidationError):
        BackendSpec(kind="llamacpp")
    with pytest.raises(ValidationError):
        BackendSpec(modle="x")
    with pytest.raises(ValidationError):
        BackendSpec(max_concurrency=0)


def test_scripted_backend_through_the_cache(tmp_path):
    spec = BackendSpec(kind="scripted", model="t", cache_path=str(tmp_path / "c.sqlite"))
    backend = make_backend(spec)
    assert isinstance(backend, CachedBackend) and backend.model_id == "scripted:t"
    convs = [[{"role": "user", "content": "x"}]]
    first = backend.generate_chat(convs, GenerationParams(seed=1))
    assert make_backend(spec).generate_chat(convs, GenerationParams(seed=1)) == first


def test_openai_kind_needs_urls():
    with pytest.raises(BackendError, match="needs base_urls"):
        make_backend(BackendSpec(kind="openai"))
