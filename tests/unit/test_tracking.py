"""`report_to` and the trackers (`cai.train.tracking`): checked names, nothing by default,
and the loop's one run per loop read back from real TensorBoard event files."""

from __future__ import annotations

from pathlib import Path

import pytest

from cai.loop.publish import LoopTracker
from cai.loop.report import RoundRow
from cai.train.config import TrainCommon
from cai.train.preference import RunConfig
from cai.train.tracking import (
    TRACKERS,
    TrackerError,
    TrackerRun,
    flat_config,
    normalize_report_to,
    trl_report_to,
)


def _scalars(logdir: Path) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the TensorBoard event files under `logdir`, read with tensorboard."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    found: dict[str, list[tuple[int, float]]] = {}
    runs = {event.parent for event in logdir.rglob("events.out.tfevents.*")}
    assert runs, f"no event files under {logdir}"
    for run in runs:
        events = EventAccumulator(str(run))
        events.Reload()
        for tag in events.Tags()["scalars"]:
            found.setdefault(tag, []).extend((e.step, e.value) for e in events.Scalars(tag))
    return found


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, []),
        ("none", []),
        ([], []),
        ("tensorboard", ["tensorboard"]),
        (["TensorBoard, none", "tensorboard"], ["tensorboard"]),
    ],
)
def test_report_to_names(given, expected):
    assert normalize_report_to(given) == expected


def test_nothing_is_reported_unless_asked():
    config = RunConfig(model="m", output_dir="out")
    assert config.report_to == [] and config.push_to_hub is None
    assert config.trl_kwargs()["report_to"] == "none"  # never the libraries' own default
    assert trl_report_to(["tensorboard"]) == ["tensorboard"]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("all", "every tracker that happens to be installed"),
        ("wandbb", "unknown tracker 'wandbb'"),
    ],
)
def test_bad_report_to_is_refused_on_load(given, says):
    with pytest.raises(ValueError, match=says):
        TrainCommon(model="m", output_dir="o", report_to=[given])


def test_a_tracker_that_is_not_installed_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(TRACKERS, "mlflow", ("cai_test_no_such_package",))
    with pytest.raises(TrackerError, match="pip install cai_test_no_such_package"):
        normalize_report_to(["mlflow"])


def test_flat_config_keeps_only_what_trackers_take():
    flat = flat_config({"a": {"b": 1, "c": None}, "l": [1, 2], "s": "x", "t": True})
    assert flat == {"a.b": 1, "a.c": "none", "l": "[1, 2]", "s": "x", "t": True}


def _row(r: int, win: float) -> RoundRow:
    return RoundRow(
        round=r,
        pairs=8,
        train_rows=8 * r,
        human_overrides=0,
        win_vs_previous=win,
        win_vs_previous_ci=(win - 0.2, win + 0.1),
        win_vs_start=win,
        win_vs_start_ci=None,
        mean_reward=None,
        kl=None,
        mean_response_words=12.5,
        stage_seconds={"label": 30.0, "policy": 12.0},
    )


def test_the_loop_logs_one_run_with_a_round_axis_to_tensorboard(tmp_path):
    from cai.loop.config import LoopConfig

    config = LoopConfig.model_validate(
        {
            "name": "tb-loop",
            "prompts": {"path": "p.jsonl"},
            "policy": {"kind": "transformers", "model": "m"},
            "judge_backend": {"kind": "scripted", "model": "judge"},
            "eval": {"prompts": "e.jsonl"},
            "report_to": "tensorboard",
        }
    )
    tracker = LoopTracker(config, tmp_path)
    tracker.log_rows([_row(1, 0.6)])
    tracker.log_rows([_row(1, 0.6), _row(2, 0.7)])  # round 1 is not logged twice
    tracker.finish()

    scalars = _scalars(tmp_path / "runs")
    assert scalars["win_vs_previous/rate"] == [(1, pytest.approx(0.6)), (2, pytest.approx(0.7))]
    assert [v for _, v in scalars["win_vs_previous/ci_low"]] == pytest.approx([0.4, 0.5])
    assert [v for _, v in scalars["win_vs_previous/ci_high"]] == pytest.approx([0.7, 0.8])
    assert scalars["train_rows"] == [(1, 8.0), (2, 16.0)]
    assert scalars["time/round_s"] == [(1, 42.0), (2, 42.0)]
    assert "win_vs_start/ci_low" not in scalars  # no interval: nothing plotted, nothing faked
    assert "mean_reward" not in scalars
    # the run's settings, as accelerate's TensorBoard tracker stores them
    hparams = list((tmp_path / "runs").rglob("hparams.yml"))
    assert len(hparams) == 1 and "name: tb-loop" in hparams[0].read_text()


def test_a_tracker_run_needs_no_tracker(tmp_path):
    with TrackerRun([], tmp_path, "p", "r", {"a": 1}) as run:
        run.log({"x": 1.0}, step=1)
    assert not (tmp_path / "runs").exists()
