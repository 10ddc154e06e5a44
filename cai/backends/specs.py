"""How to reach a model: one settings model per backend kind, and `BackendSpec`, their union.

Each kind accepts only the settings it uses, so a setting that does nothing for that kind
(`base_urls` on a vllm backend, a misspelt key) is an error when the config loads, naming the
kind, the setting and the fix, instead of being silently ignored. A spec without `kind` is a
vllm spec. A settings file that lists every setting of every kind (as a `config.resolved.yaml`
may) loads: a setting of another kind left at its default says nothing and is dropped. A
command-line flag that changes the kind drops the file's settings of the old kind
(`cai.config.KindSettings`), so `--backend openai` points a file written for vllm at a server.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    TypeAdapter,
    ValidationError,
    WrapValidator,
    field_validator,
)
from pydantic_core import PydanticCustomError

from cai.config import KindSettings
from cai.errors import did_you_mean

DEFAULT_KIND = "vllm"
KINDS = ("vllm", "openai", "transformers", "scripted")
_PROGRESS_HELP = (
    "the engine's own progress bar per batch; off by default because every stage shows one "
    "bar of its own"
)


class _SpecBase(BaseModel):
    """What every kind has: the model to call and the optional call cache in front of it."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    kind: str = Field(DEFAULT_KIND, description="the engine or API: " + ", ".join(KINDS))
    model: str = Field("smollm2-135m-instruct", description="local path or embedded model name")
    cache_path: str | None = Field(None, description="call cache file (SQLite); None = no cache")


class _LocalSpec(_SpecBase):
    """A model loaded in this process."""

    revision: str | None = Field(
        None, description="hub revision (branch, tag or commit) when model is a hub id"
    )
    dtype: str = "auto"
    show_progress: bool = Field(False, description=_PROGRESS_HELP)


class VLLMSpec(_LocalSpec):
    """vLLM's offline engine in this process (the default kind)."""

    kind: Literal["vllm"] = "vllm"
    max_model_len: int | None = None
    tensor_parallel_size: int = Field(1, ge=1)
    pipeline_parallel_size: int = Field(1, ge=1)
    enforce_eager: bool | None = Field(
        None,
        description="skip graph capture; None = auto: on for vLLM's CPU build, where compiling "
        "costs about a minute of warm-up for every engine start, off elsewhere",
    )
    gpu_memory_utilization: float | None = Field(None, gt=0, le=1)
    seed: int = 0


class TransformersSpec(_LocalSpec):
    """transformers' model.generate and forward passes (CPU, MPS, or a GPU without vLLM)."""

    kind: Literal["transformers"] = "transformers"
    device: str = "auto"


class OpenAISpec(_SpecBase):
    """One or more OpenAI-compatible servers (`cai serve`, vLLM's server)."""

    kind: Literal["openai"] = "openai"
    base_urls: list[str] = Field(default_factory=list, description="OpenAI-compatible /v1 URLs")
    api_key_env: str = "OPENAI_API_KEY"
    served_model_name: str | None = None
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
    requests_per_minute: float | None = Field(
        None, gt=0, description="a provider's cap on requests per minute, per server"
    )
    tokens_per_minute: float | None = Field(
        None, gt=0, description="a provider's cap on tokens per minute, per server"
    )
    adaptive_concurrency: bool = Field(
        True,
        description="adapt each server's requests in flight (up to max_concurrency) to how "
        "fast it answers; false keeps max_concurrency in flight per server",
    )
    endpoint_limits: dict[str, dict[str, float | int | bool]] = Field(
        default_factory=dict,
        description="per base URL: max_concurrency, requests_per_minute, tokens_per_minute, "
        "adaptive_concurrency, overriding the settings above for that server",
    )
    client_tokenizer: Literal["auto", "server"] = Field(
        "auto",
        description="auto: when every server is on this machine and serves a local "
        "checkpoint, tokenize scoring prompts here (one request per prompt, the offline "
        "engine's ids); server: ask the server's /tokenize",
    )
    transport: Literal["async", "threads"] = Field(
        "async", description="one event loop (async) or a thread per request in flight"
    )
    show_progress: bool = Field(False, description=_PROGRESS_HELP)

    @field_validator("base_urls", mode="before")
    @classmethod
    def _urls_as_list(cls, value):
        if isinstance(value, str):
            return [u.strip() for u in value.split(",") if u.strip()]
        return value


class ScriptedSpec(_SpecBase):
    """The deterministic fake backend of unit tests; `model` only names it."""

    kind: Literal["scripted"] = "scripted"


SPEC_TYPES: dict[str, type[_SpecBase]] = {
    "vllm": VLLMSpec,
    "openai": OpenAISpec,
    "transformers": TransformersSpec,
    "scripted": ScriptedSpec,
}
BackendKind = Literal["vllm", "openai", "transformers", "scripted"]


def _error(kind: str, message: str, fix: str, loc: tuple = ()) -> ValidationError:
    """A one-problem ValidationError whose `fix` the config loader shows (cai.config)."""
    error = PydanticCustomError(kind, message, {"fix": fix})
    return ValidationError.from_exception_data(
        "BackendSpec", [{"type": error, "loc": loc, "input": None}]
    )


def _owners(name: str) -> list[str]:
    return [kind for kind, spec in SPEC_TYPES.items() if name in spec.model_fields]


def _is_default(name: str, value: Any) -> bool:
    """Whether `value` is the default every kind that has setting `name` gives it."""
    for kind in _owners(name):
        if value != SPEC_TYPES[kind].model_fields[name].get_default(call_default_factory=True):
            return False
    return True


def _foreign_setting(kind: str, name: str) -> ValidationError:
    known = ", ".join(SPEC_TYPES[kind].model_fields)
    owners = _owners(name)
    if owners:
        kinds = " or ".join(owners)
        message = f"{name} is not a setting of kind {kind} (it belongs to kind {kinds})"
        fix = f"Set kind: {owners[0]} if that is the backend you mean, or remove {name}."
    else:
        hint = did_you_mean(name, list(SPEC_TYPES[kind].model_fields))
        message = f"unknown setting of kind {kind}"
        fix = hint[0].upper() + hint[1:].strip() if hint else ""
    return _error(
        "backend_setting", message, f"{fix} Settings of kind {kind}: {known}.".strip(), (name,)
    )


def _checked(data: dict[str, Any]) -> dict[str, Any]:
    """`data` with its kind known and only that kind's settings, or a clear error."""
    kind = data.get("kind") or DEFAULT_KIND
    if kind not in SPEC_TYPES:
        raise _error(
            "backend_kind",
            f"unknown backend kind {kind!r}",
            f"Use one of: {', '.join(SPEC_TYPES)} (no kind means {DEFAULT_KIND}).",
            ("kind",),
        )
    fields = SPEC_TYPES[kind].model_fields
    kept = {"kind": kind}
    for name, value in data.items():
        if name in fields:
            kept[name] = value
        elif not (_owners(name) and _is_default(name, value)):
            raise _foreign_setting(kind, str(name))
    return kept


def _settings_of(kind: str) -> list[str] | None:
    """The settings kind `kind` takes (None for an unknown kind)."""
    spec = SPEC_TYPES.get(kind)
    return None if spec is None else list(spec.model_fields)


def _kind_of(value: Any) -> str | None:
    if isinstance(value, dict):
        return value.get("kind") or DEFAULT_KIND
    return getattr(value, "kind", None)


def _validate(value: Any, handler) -> Any:
    """Check kind and settings first (clear errors), then validate the kind's own model.

    Errors come back without pydantic's union tag in their location, so they point at the
    setting as written (`policy.base_urls`, not `policy.vllm.base_urls`).
    """
    if isinstance(value, dict):
        value = _checked(value)
    elif not isinstance(value, _SpecBase):
        raise _error(
            "backend_type",
            f"a backend is a mapping of settings, not a {type(value).__name__}",
            "Write it as {kind: vllm, model: NAME} (kinds: " + ", ".join(SPEC_TYPES) + ").",
        )
    try:
        return handler(value)
    except ValidationError as err:
        details = []
        for problem in err.errors():
            loc = tuple(problem["loc"])
            if loc and loc[0] in SPEC_TYPES:
                loc = loc[1:]
            detail = {"type": problem["type"], "loc": loc, "input": problem["input"]}
            if "ctx" in problem:
                detail["ctx"] = problem["ctx"]
            details.append(detail)
        raise ValidationError.from_exception_data(err.title, details) from None


BackendSpec = Annotated[
    Annotated[VLLMSpec, Tag("vllm")]
    | Annotated[OpenAISpec, Tag("openai")]
    | Annotated[TransformersSpec, Tag("transformers")]
    | Annotated[ScriptedSpec, Tag("scripted")],
    Discriminator(_kind_of),
    WrapValidator(_validate),
    KindSettings(DEFAULT_KIND, _settings_of),
]
"""How to reach a model: a VLLMSpec, OpenAISpec, TransformersSpec or ScriptedSpec, chosen by
`kind` (default vllm). Use it as a field type; build one with `backend_spec`."""

AnySpec = VLLMSpec | OpenAISpec | TransformersSpec | ScriptedSpec
"""The spec classes themselves, for isinstance checks and return types."""

_ADAPTER: TypeAdapter[Any] = TypeAdapter(BackendSpec)


def parse_backend_spec(data: Any) -> AnySpec:
    """The spec `data` (a mapping, or a spec already) describes; pydantic's error if invalid."""
    return _ADAPTER.validate_python(data)


def backend_spec(**settings: Any) -> AnySpec:
    """`backend_spec(kind="openai", base_urls=[...])`: a spec from keyword settings."""
    return parse_backend_spec(settings)
