"""BackendSpec: one settings model per kind, checked when a config loads; make_backend's choice."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from cai.backends import (
    BackendSpec,
    OpenAISpec,
    ScriptedSpec,
    TransformersSpec,
    VLLMSpec,
    backend_spec,
    make_backend,
)
from cai.backends.base import BackendError, GenerationParams
from cai.backends.cached import CachedBackend
from cai.config import ConfigError, load_config


class _Settings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    policy: BackendSpec = Field(default_factory=VLLMSpec)
    judge_backend: BackendSpec | None = None


def _load(tmp_path, text: str) -> _Settings:
    path = tmp_path / "settings.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(_Settings, path)


def test_spec_defaults_and_url_parsing():
    spec = backend_spec()
    assert isinstance(spec, VLLMSpec) and spec.kind == "vllm"
    assert spec.model == "smollm2-135m-instruct" and spec.cache_path is None
    spec = backend_spec(kind="openai", base_urls="http://a:1/v1, http://b:2/v1")
    assert isinstance(spec, OpenAISpec) and spec.max_concurrency == 16
    assert spec.base_urls == ["http://a:1/v1", "http://b:2/v1"]
    assert isinstance(backend_spec(kind="transformers"), TransformersSpec)
    assert isinstance(backend_spec(kind="scripted", model="t"), ScriptedSpec)


def test_spec_carries_revision_and_timeouts():
    spec = backend_spec(model="org/model", revision="v2")
    assert spec.revision == "v2" and backend_spec().revision is None
    spec = backend_spec(kind="openai", timeout_s=30, connect_timeout_s=2)
    assert (spec.timeout_s, spec.connect_timeout_s, spec.read_timeout_s) == (30, 2, None)
    with pytest.raises(ValidationError):
        backend_spec(kind="openai", read_timeout_s=0)


def test_serve_passes_the_revision_to_vllm():
    from cai.serving import ServerOptions

    cmd = ServerOptions(model="org/model", revision="abc123").command(8000)
    assert cmd[cmd.index("--revision") + 1] == "abc123"
    assert "--revision" not in ServerOptions(model="m").command(8000)


def test_each_kind_takes_only_its_own_settings():
    assert list(ScriptedSpec.model_fields) == ["kind", "model", "cache_path"]
    with pytest.raises(ValidationError, match="base_urls is not a setting of kind vllm"):
        backend_spec(kind="vllm", base_urls=["http://a:1/v1"])
    with pytest.raises(ValidationError, match="device is not a setting of kind openai"):
        backend_spec(kind="openai", device="cuda")
    with pytest.raises(ValidationError, match="unknown backend kind 'llamacpp'"):
        backend_spec(kind="llamacpp")
    with pytest.raises(ValidationError, match="unknown setting of kind vllm"):
        backend_spec(modle="x")
    with pytest.raises(ValidationError, match="greater than or equal to 1"):
        backend_spec(kind="openai", max_concurrency=0)


def test_a_setting_of_another_kind_is_a_load_error_naming_kind_setting_and_fix(tmp_path):
    text = "policy:\n  kind: vllm\n  model: m\n  base_urls: [http://a:1/v1]\n"
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, text)
    message = str(err.value)
    assert message.startswith(
        f"{tmp_path / 'settings.yaml'}:4: policy.base_urls: base_urls is not a setting of kind "
        "vllm (it belongs to kind openai). Set kind: openai if that is the backend you mean, "
        "or remove base_urls. Settings of kind vllm: kind, model, cache_path, revision,"
    )
    assert err.value.key == "policy.base_urls" and err.value.line == 4


def test_an_unknown_kind_and_a_misspelt_setting_are_load_errors(tmp_path):
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "policy: {model: m}\njudge_backend:\n  kind: nope\n")
    assert (err.value.key, err.value.line) == ("judge_backend.kind", 3)
    assert "unknown backend kind 'nope'. Use one of: vllm, openai, transformers, scripted" in str(
        err.value
    )
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "policy:\n  kind: openai\n  base_url: http://a:1/v1\n")
    assert (err.value.key, err.value.line) == ("policy.base_url", 3)
    assert "unknown setting of kind openai. Did you mean `base_urls`?" in str(err.value)
    with pytest.raises(ConfigError) as err:
        _load(tmp_path, "policy: smollm2\n")
    assert "a backend is a mapping of settings, not a str" in str(err.value)


def test_no_kind_means_vllm_and_files_listing_every_setting_still_load(tmp_path):
    assert _load(tmp_path, "policy: {model: m}\n").policy == VLLMSpec(model="m")
    # what config.resolved.yaml held when one model carried every kind's settings
    old = (
        "policy:\n  kind: scripted\n  model: m\n  revision: null\n  base_urls: []\n"
        "  api_key_env: OPENAI_API_KEY\n  dtype: auto\n  tensor_parallel_size: 1\n"
        "  timeout_s: 120\n  outage_timeout_s: 600.0\n  device: auto\n  seed: 0\n"
        "  cache_path: calls.sqlite\n  show_progress: false\n"
    )
    spec = _load(tmp_path, old).policy
    assert spec == ScriptedSpec(model="m", cache_path="calls.sqlite")
    with pytest.raises(ConfigError, match="seed is not a setting of kind scripted"):
        _load(tmp_path, old.replace("seed: 0", "seed: 3"))


def test_specs_round_trip_through_their_dump():
    settings = _Settings(
        policy=backend_spec(kind="openai", base_urls=["http://a:1/v1"], max_retries=2),
        judge_backend={"kind": "transformers", "device": "cpu"},
    )
    dumped = settings.model_dump(mode="json")
    assert dumped["judge_backend"] == {
        "kind": "transformers",
        "model": "smollm2-135m-instruct",
        "cache_path": None,
        "revision": None,
        "dtype": "auto",
        "show_progress": False,
        "device": "cpu",
    }
    assert _Settings.model_validate(dumped) == settings


def test_scripted_backend_through_the_cache(tmp_path):
    spec = backend_spec(kind="scripted", model="t", cache_path=str(tmp_path / "c.sqlite"))
    backend = make_backend(spec)
    assert isinstance(backend, CachedBackend) and backend.model_id == "scripted:t"
    convs = [[{"role": "user", "content": "x"}]]
    first = backend.generate_chat(convs, GenerationParams(seed=1))
    again = make_backend({"kind": "scripted", "model": "t", "cache_path": spec.cache_path})
    assert again.generate_chat(convs, GenerationParams(seed=1)) == first
    assert again.stats.hits == 1 and again.stats.misses == 0


def test_openai_kind_needs_urls():
    with pytest.raises(BackendError, match="needs base_urls"):
        make_backend(backend_spec(kind="openai"))


def test_the_win_rate_judge_is_checked_when_the_settings_load(tmp_path):
    from cai.evaluate import WinRateConfig

    path = tmp_path / "winrate.yaml"
    path.write_text(
        "prompts: p.jsonl\noutput_dir: out\npolicy: {kind: scripted}\nbaseline: {kind: scripted}\n"
        "judge:\n  kind: openai\n  device: cuda\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as err:
        load_config(WinRateConfig, path)
    assert (err.value.key, err.value.line) == ("judge.device", 7)
    assert "device is not a setting of kind openai (it belongs to kind transformers)" in str(
        err.value
    )
