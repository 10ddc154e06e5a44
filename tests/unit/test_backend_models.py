"""Embedded model names: resolution, the local registry and cache identities (no download)."""

from __future__ import annotations

import json

import pytest

from cai.models import (
    EMBEDDED,
    MANIFEST,
    ModelPullError,
    find_packaged_gguf,
    list_models,
    local_model_dir,
    model_identity,
    pull,
    resolve_model,
)


@pytest.fixture(autouse=True)
def cai_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


def test_paths_and_unknown_names_pass_through(tmp_path):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("org/some-model") == "org/some-model"


def test_unpulled_embedded_model_without_pull_is_a_clear_error():
    with pytest.raises(ModelPullError, match="cai models pull smollm2-135m-instruct"):
        resolve_model("smollm2-135m-instruct", pull_if_missing=False)


def test_pulled_model_resolves_to_its_directory(cai_home):
    target = local_model_dir("smollm2-135m-instruct")
    assert target == cai_home / "models" / "smollm2-135m-instruct"
    assert [m.pulled for m in list_models()] == [False]
    target.mkdir(parents=True)
    (target / MANIFEST).write_text(json.dumps({"name": "smollm2-135m-instruct"}))
    assert resolve_model("smollm2-135m-instruct", pull_if_missing=False) == str(target)
    assert list_models()[0].pulled and list_models()[0].path == str(target)
    assert "too small to judge" in list_models()[0].description


def test_unknown_embedded_name_lists_the_known_ones():
    with pytest.raises(ModelPullError, match="Known: smollm2-135m-instruct"):
        pull("gpt-17")


def test_missing_package_is_reported_as_absent():
    assert find_packaged_gguf("no-such-distribution-cai", "x.gguf") is None
    assert "smollm2-135m-instruct" in EMBEDDED


def test_model_identity_changes_when_weights_change(tmp_path):
    model = tmp_path / "m"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"1234")
    first = model_identity(str(model))
    assert first == model_identity(str(model)) and first.startswith(str(model.resolve()))
    (model / "model.safetensors").write_bytes(b"123456")
    assert model_identity(str(model)) != first
    assert model_identity("served-name") == "served-name"
