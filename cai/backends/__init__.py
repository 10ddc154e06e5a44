"""The one place that turns a backend description into a Backend.

Everything that calls a model takes a `BackendSpec` (from a config file or CLI flags) and
asks `make_backend` for the engine; no stage imports an engine module itself.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from cai.backends.base import (
    Backend,
    BackendError,
    ChoiceRequest,
    ChoiceScore,
    ContextOverflowError,
    Generation,
    GenerationParams,
    Message,
)
from cai.backends.cached import CachedBackend
from cai.backends.scripted import ScriptedBackend
from cai.backends.specs import (
    AnySpec,
    BackendKind,
    BackendSpec,
    OpenAISpec,
    ScriptedSpec,
    TransformersSpec,
    VLLMSpec,
    backend_spec,
    parse_backend_spec,
)
from cai.backends.transformers_local import TransformersBackend
from cai.backends.vllm_offline import shared_vllm_backend
from cai.cache import CallCache
from cai.model_names import resolve_model
from cai.platform import is_vllm_cpu_build


def eager_default(setting: bool | None) -> bool:
    """The one default for every command: eager on vLLM's CPU build unless said otherwise."""
    if setting is not None:
        return setting

    return is_vllm_cpu_build()


def _local_dtype(dtype: str) -> str:
    """'auto' means float32 for local engines: bf16 quantises log-probs into ~0.06 steps."""
    return "float32" if dtype == "auto" else dtype


def _local(spec: VLLMSpec | TransformersSpec) -> dict[str, Any]:
    """The settings every in-process engine takes the same way."""
    return dict(
        model=resolve_model(spec.model),
        revision=spec.revision,
        dtype=_local_dtype(spec.dtype),
        show_progress=spec.show_progress,
    )


def _vllm(spec: VLLMSpec) -> Backend:
    # the engine starts on first use, one per model and settings (cai.backends.shared)
    return shared_vllm_backend(
        **_local(spec),
        max_model_len=spec.max_model_len,
        tensor_parallel_size=spec.tensor_parallel_size,
        pipeline_parallel_size=spec.pipeline_parallel_size,
        enforce_eager=eager_default(spec.enforce_eager),
        gpu_memory_utilization=spec.gpu_memory_utilization,
        seed=spec.seed,
    )


def _openai(spec: OpenAISpec) -> Backend:
    from cai.backends.http_limits import endpoint_limits
    from cai.backends.openai_server import OpenAIServerBackend

    if not spec.base_urls:
        raise BackendError(
            "an openai backend needs base_urls",
            key="base_urls",
            fix="Give the server's /v1 URL, e.g. ['http://127.0.0.1:8000/v1'] (start one "
            "with `cai serve MODEL`)",
        )
    return OpenAIServerBackend(
        base_urls=spec.base_urls,
        model=spec.served_model_name or spec.model,
        api_key_env=spec.api_key_env,
        max_concurrency=spec.max_concurrency,
        timeout_s=spec.timeout_s,
        connect_timeout_s=spec.connect_timeout_s,
        read_timeout_s=spec.read_timeout_s,
        outage_timeout_s=spec.outage_timeout_s,
        max_retries=spec.max_retries,
        show_progress=spec.show_progress,
        limits=endpoint_limits(spec),
        transport=spec.transport,
        client_tokenizer=spec.client_tokenizer,
    )


def _transformers(spec: TransformersSpec) -> Backend:
    return TransformersBackend(**_local(spec), device=spec.device)


def _scripted(spec: ScriptedSpec) -> Backend:
    return ScriptedBackend(model_id=f"scripted:{spec.model}")


_BUILDERS: dict[type, Callable[[Any], Backend]] = {
    VLLMSpec: _vllm,
    OpenAISpec: _openai,
    TransformersSpec: _transformers,
    ScriptedSpec: _scripted,
}


def make_backend(spec: BackendSpec) -> Backend:
    """Build the backend `spec` describes, wrapped in the call cache when cache_path is set."""
    spec = parse_backend_spec(spec)  # a mapping is checked here; a spec passes as it is
    backend = _BUILDERS[type(spec)](spec)
    if spec.cache_path:
        backend = CachedBackend(backend, CallCache(spec.cache_path))
    return backend


__all__ = [
    "AnySpec",
    "Backend",
    "BackendError",
    "BackendKind",
    "BackendSpec",
    "ChoiceRequest",
    "ChoiceScore",
    "ContextOverflowError",
    "Generation",
    "GenerationParams",
    "Message",
    "OpenAISpec",
    "ScriptedSpec",
    "TransformersSpec",
    "VLLMSpec",
    "backend_spec",
    "make_backend",
    "parse_backend_spec",
]
