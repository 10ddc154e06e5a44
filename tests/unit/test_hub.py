"""A name that could only be on the hub fails in seconds when the hub cannot be asked."""

import socket

import pytest

from cai.hub import hub_unavailable
from cai.model_names import ModelPullError, resolve_model
from cai.tables import InputFormatError, iter_rows


@pytest.fixture
def closed_hub(monkeypatch, tmp_path):
    """HF_ENDPOINT pointed at a local port nothing listens on, as on a machine with no network."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    for flag in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(flag, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    monkeypatch.chdir(tmp_path)
    return port


def test_an_unreachable_hub_is_named_with_its_host(closed_hub):
    why = hub_unavailable()
    assert why is not None and f"127.0.0.1:{closed_hub} cannot be reached" in why


def test_the_offline_flag_is_respected_without_a_connection(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://host.invalid")
    assert hub_unavailable() == "HF_HUB_OFFLINE is set, so the hub is not asked"


def test_a_model_name_that_names_nothing_says_the_three_things_it_tried(closed_hub):
    with pytest.raises(ModelPullError) as info:
        resolve_model("no-such-org/no-such-model")
    text = str(info.value)
    assert "not a local directory, an embedded model" in text and "hub cache" in text
    assert f"127.0.0.1:{closed_hub} cannot be reached" in text


def test_a_dataset_name_that_is_no_file_fails_without_asking_datasets(closed_hub):
    with pytest.raises(InputFormatError) as info:
        next(iter_rows("someone/no-such-dataset"))
    text = str(info.value)
    assert text.startswith("someone/no-such-dataset: no such file or directory")
    assert f"127.0.0.1:{closed_hub} cannot be reached" in text
