"""The shared YAML + options + --set loader every trainer uses."""

from __future__ import annotations

import pytest
import yaml

from cai.train.config import (
    ConfigError,
    TrainCommon,
    load_config,
    parse_override,
    save_config,
)


class DemoConfig(TrainCommon):
    dataset: str
    max_length: int = 512


def _write(tmp_path, text: str):
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_yaml_then_options_then_overrides(tmp_path):
    path = _write(
        tmp_path,
        "model: /m\noutput_dir: /o\ndataset: d\nlearning_rate: 1.0e-4\nlora:\n  r: 4\n",
    )
    config = load_config(
        DemoConfig,
        path,
        options={"learning_rate": 3e-4, "max_steps": None, "lora.enabled": True},
        overrides=["max_length=128", "lora.r=8", "report_to=[tensorboard]", "resume=true"],
    )
    assert config.learning_rate == 3e-4  # option beats YAML
    assert config.max_steps == -1  # None means "not given"
    assert config.lora.enabled is True and config.lora.r == 8  # --set beats YAML
    assert config.max_length == 128
    assert config.report_to == ["tensorboard"]
    assert config.resume is True


def test_parse_override_types_values():
    assert parse_override("a.b=3") == (["a", "b"], 3)
    assert parse_override("x=hello world") == (["x"], "hello world")
    assert parse_override("flag=false") == (["flag"], False)
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("no-equals-sign")
    with pytest.raises(ConfigError, match="key=value"):
        parse_override("a..b=1")


def test_unknown_key_names_the_key_and_the_known_ones(tmp_path):
    path = _write(tmp_path, "model: m\noutput_dir: o\ndataset: d\nlearnin_rate: 1\n")
    with pytest.raises(ConfigError) as info:
        load_config(DemoConfig, path)
    message = str(info.value)
    assert "learnin_rate" in message and "learning_rate" in message and str(path) in message


def test_missing_required_setting(tmp_path):
    with pytest.raises(ConfigError, match="dataset: required"):
        load_config(DemoConfig, None, options={"model": "m", "output_dir": "o"})


def test_bad_yaml_points_at_the_line(tmp_path):
    path = _write(tmp_path, "model: m\noutput_dir: [unclosed\ndataset: d\n")
    with pytest.raises(ConfigError, match=r"config\.yaml:\d+:\d+: not valid YAML"):
        load_config(DemoConfig, path)


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(DemoConfig, _write(tmp_path, "- a\n- b\n"))


def test_override_into_a_scalar_is_refused():
    with pytest.raises(ConfigError, match="is a int, not a mapping"):
        load_config(
            DemoConfig,
            None,
            options={"model": "m", "output_dir": "o", "dataset": "d"},
            overrides=["max_length=5", "max_length.x=1"],
        )


def test_saved_config_round_trips(tmp_path):
    config = load_config(
        DemoConfig, None, options={"model": "m", "output_dir": "o", "dataset": "d", "lora.r": 2}
    )
    saved = save_config(config, tmp_path / "run")
    assert saved.name == "config.resolved.yaml"
    assert load_config(DemoConfig, saved) == config
    assert yaml.safe_load(saved.read_text())["lora"]["r"] == 2


def test_resume_settings(tmp_path):
    from cai.train.config import resolve_resume

    assert resolve_resume(False, tmp_path) is None
    assert resolve_resume("auto", tmp_path) is None
    with pytest.raises(ConfigError, match="holds no checkpoint"):
        resolve_resume(True, tmp_path)
    for step in (2, 10, 9):
        (tmp_path / f"checkpoint-{step}").mkdir()
    (tmp_path / "checkpoint-final").mkdir()
    assert resolve_resume(True, tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume("auto", tmp_path) == str(tmp_path / "checkpoint-10")
    assert resolve_resume(str(tmp_path / "checkpoint-2"), tmp_path) == str(
        tmp_path / "checkpoint-2"
    )
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        resolve_resume(str(tmp_path / "missing"), tmp_path)


def test_precision_flags():
    from cai.train.config import precision_flags

    assert precision_flags("bfloat16") == {"bf16": True, "fp16": False}
    assert precision_flags("float16") == {"bf16": False, "fp16": True}
    assert precision_flags("float32") == {"bf16": False, "fp16": False}
    with pytest.raises(ConfigError, match="use auto, float32"):
        precision_flags("fp8")
