"""The one place that turns a backend description into a Backend.

Everything that calls a model takes a `BackendSpec` (from a config file or CLI flags) and
asks `make_backend` for the engine; no stage imports an engine module itself.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

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

BackendKind = Literal["vllm", "openai", "transformers", "scripted"]


class BackendSpec(BaseModel):
    """How to reach a model. Unused fields are ignored by kinds they do not apply to."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: BackendKind = "vllm"
    model: str = Field("smollm2-135m-instruct", description="local path or embedded model name")
    revision: str | None = Field(
        None, description="hub revision (branch, tag or commit) when model is a hub id"
    )
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible /v1 URLs")
    api_key_env: str = "OPENAI_API_KEY"
    served_model_name: str | None = None
    dtype: str = "auto"
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool | None = Field(
        None,
        description="skip graph capture; None = auto: on for vLLM's CPU build, where compiling "
        "costs about a minute of warm-up for every engine start, off elsewhere",
    )
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    max_concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(
        120, gt=0, description="total deadline of one HTTP request, retries included"
    )
    connect_timeout_s: float = Field(5, gt=0, description="time to connect to a server")
    read_timeout_s: float | None = Field(
        None, gt=0, description="wait for one attempt's answer (default: what timeout_s leaves)"
    )
    max_retries: int = Field(5, ge=0)
    outage_timeout_s: float = Field(
        600,
        ge=0,
        description="how long requests wait for a server that answered before and went away "
        "(all servers down: crashed or restarting) before the run stops; 0: never wait",
    )
    device: str = "auto"
    seed: int = 0
    cache_path: str | None = None
    show_progress: bool = Field(
        False,
        description="the engine's own progress bar per batch; off by default because every "
        "stage shows one bar of its own",
    )

    @field_validator("base_urls", mode="before")
    @classmethod
    def _urls_as_list(cls, value):
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value


def eager_default(setting: bool | None) -> bool:
    """The one default for every command: eager on vLLM's CPU build unless said otherwise."""
    if setting is not None:
        return setting
    from cai.platform import is_vllm_cpu_build

    return is_vllm_cpu_build()


def _local_dtype(dtype: str) -> str:
    """'auto' means float32 for local engines: bf16 quantises log-probs into ~0.06 steps."""
    return "float32" if dtype == "auto" else dtype


def make_backend(spec: BackendSpec) -> Backend:
    """Build the backend `spec` describes, wrapped in the call cache when cache_path is set."""
    backend: Backend
    if spec.kind == "vllm":
        from cai.backends.vllm_offline import VLLMOfflineBackend
        from cai.models import resolve_model

        backend = VLLMOfflineBackend(
            resolve_model(spec.model),
            revision=spec.revision,
            dtype=_local_dtype(spec.dtype),
            max_model_len=spec.max_model_len,
            tensor_parallel_size=spec.tensor_parallel_size,
            pipeline_parallel_size=spec.pipeline_parallel_size,
            enforce_eager=eager_default(spec.enforce_eager),
            gpu_memory_utilization=spec.gpu_memory_utilization,
            seed=spec.seed,
            show_progress=spec.show_progress,
        )
    elif spec.kind == "openai":
        from cai.backends.openai_server import OpenAIServerBackend

        if not spec.base_urls:
            raise BackendError(
                "BackendSpec(kind='openai') needs base_urls",
                key="base_urls",
                fix="Give the server's /v1 URL, e.g. ['http://127.0.0.1:8000/v1'] (start one "
                "with `cai serve MODEL`)",
            )
        backend = OpenAIServerBackend(
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
        )
    elif spec.kind == "transformers":
        from cai.backends.transformers_local import TransformersBackend
        from cai.models import resolve_model

        backend = TransformersBackend(
            resolve_model(spec.model),
            revision=spec.revision,
            dtype=_local_dtype(spec.dtype),
            device=spec.device,
            show_progress=spec.show_progress,
        )
    elif spec.kind == "scripted":
        from cai.backends.scripted import ScriptedBackend

        backend = ScriptedBackend(model_id=f"scripted:{spec.model}")
    else:  # pragma: no cover - pydantic already rejects other kinds
        raise BackendError(f"Unknown backend kind {spec.kind!r}.")
    if spec.cache_path:
        from cai.cache import CachedBackend, CallCache

        backend = CachedBackend(backend, CallCache(spec.cache_path))
    return backend


__all__ = [
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
    "make_backend",
]
