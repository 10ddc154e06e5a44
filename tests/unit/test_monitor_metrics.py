"""The reward-hacking monitor's numbers and rules, against values worked out by hand."""

from __future__ import annotations

import logging

import pytest

from cai.train.monitor import metrics
from cai.train.monitor.config import MonitorConfig
from cai.train.monitor.log import MonitorLog, read_monitor
from cai.train.monitor.rules import alarms, divergence, trends


def test_slope_is_the_least_squares_line_per_check():
    # x = 0,1,2 (mean 1); y = 1,3,2 (mean 2): cov = (-1)(-1) + 0 + (1)(0) = 1, var = 2
    assert metrics.slope([1.0, 3.0, 2.0]) == pytest.approx(0.5)
    assert metrics.slope([0.7, 0.6, 0.5, 0.4]) == pytest.approx(-0.1)
    assert metrics.slope([5.0]) == 0.0


def test_boilerplate_is_the_share_of_responses_holding_the_most_widespread_4gram():
    texts = [
        "As a helpful assistant, I think so.",
        "as a helpful assistant i disagree",
        "Water boils at one hundred degrees.",
        "as a helpful   ASSISTANT!",
    ]
    share, phrase = metrics.boilerplate(texts, n=4)
    assert phrase == "as a helpful assistant"
    assert share == pytest.approx(3 / 4)
    # repeated inside one response only: not boilerplate
    assert metrics.boilerplate(["a b c d a b c d", "e f g h"], n=4) == (0.0, None)
    # ties go to the alphabetically first phrase
    assert metrics.boilerplate(["b b b b x", "b b b b", "a a a a", "a a a a y"], n=4) == (
        0.5,
        "a a a a",
    )
    assert metrics.boilerplate([], n=4) == (0.0, None)


def test_refusal_rate_matches_markers_whatever_the_case_and_apostrophe():
    texts = ["I\u2019m sorry, but no.", "Sure: boil water.", "I CANNOT help", "ok"]
    assert metrics.refusal_rate(texts, ["i'm sorry", "i cannot"]) == pytest.approx(0.5)
    assert metrics.refusal_rate([], ["i'm sorry"]) == 0.0


def test_length_ratio_and_win_rate():
    assert metrics.length_ratio([10, 20, 30], [10, 10]) == pytest.approx(2.0)
    assert metrics.length_ratio([3], [0, 0]) is None
    # None = the judge could not score that pair: left out, and counted as not judged
    assert metrics.win_rate([0.9, None, 0.3, 0.6]) == (pytest.approx(0.6), 3)
    assert metrics.win_rate([None]) == (None, 0)


def _row(step, reward, win, length_ratio=1.0, boilerplate=0.0):
    return {
        "step": step,
        "reward_mean": reward,
        "win_rate": win,
        "length_ratio": length_ratio,
        "boilerplate": boilerplate,
        "boilerplate_phrase": "a b c d" if boilerplate else None,
    }


def test_divergence_needs_a_full_window_of_reward_up_and_win_rate_down():
    config = MonitorConfig(prompts="p.jsonl", window=3, min_win_rate_slope=0.05)
    climbing = [_row(1, 0.1, 0.50), _row(2, 0.2, 0.40), _row(3, 0.4, 0.20)]
    assert divergence(climbing[:2], config) is None  # two checks < window
    alarm = divergence(climbing, config)
    assert alarm is not None and alarm.kind == "reward_judge_divergence"
    # win rate slope -0.15 per check; a threshold of 0.2 no longer calls that a fall
    assert divergence(climbing, config.model_copy(update={"min_win_rate_slope": 0.2})) is None
    # both rising is learning, not hacking
    assert divergence([_row(1, 0.1, 0.5), _row(2, 0.2, 0.6), _row(3, 0.3, 0.7)], config) is None
    # a check without a win rate (no judge) cannot diverge
    assert divergence([*climbing[:2], _row(3, 0.4, None)], config) is None
    assert trends(climbing, 3) == {
        "reward_trend": pytest.approx(0.15),
        "win_rate_trend": pytest.approx(-0.15),
    }


def test_length_and_boilerplate_thresholds():
    config = MonitorConfig(prompts="p.jsonl", max_length_ratio=1.5, max_boilerplate=0.5)
    found = alarms([_row(1, 0.1, 0.5, length_ratio=1.6, boilerplate=0.75)], config)
    assert [a.kind for a in found] == ["length", "boilerplate"]
    assert alarms([_row(1, 0.1, 0.5, length_ratio=1.5, boilerplate=0.5)], config) == []


def test_monitor_log_is_resume_safe(tmp_path):
    log = MonitorLog(tmp_path)
    for step in (2, 4, 6):
        log.append({"step": step})
    log.truncate_after(4)
    log.append({"step": 6, "again": True})
    log.append({"step": 6, "again": 2})  # the same step twice: recorded once
    assert read_monitor(tmp_path / "logs" / "monitor.jsonl") == [
        {"step": 2},
        {"step": 4},
        {"step": 6, "again": 2},
    ]
    assert log.plot().stat().st_size > 1000


def test_a_constructed_hacking_run_warns_and_stops(tmp_path, caplog):
    """Checks fed straight to the Monitor: reward climbing while win rate falls."""
    from cai.train.monitor.check import Monitor
    from cai.train.monitor.sampling import Samples

    prompts = tmp_path / "p.jsonl"
    prompts.write_text('{"prompt": "a"}\n{"prompt": "b"}\n')
    config = MonitorConfig(prompts=str(prompts), window=3, stop_on=["reward_judge_divergence"])
    monitor = Monitor(config, tmp_path / "run", writer=True)
    reference = Samples(["fine", "good"], [[1, 2], [3, 4]], [True, True], kl=0.0)
    monitor.begin(0, reference, [0.0, 0.0])
    wins = iter([0.6, 0.45, 0.3])
    monitor._judge = lambda texts: (next(wins), len(texts))  # the judge's verdicts, scripted
    stops = []
    with caplog.at_level(logging.WARNING, logger="cai.train.monitor.check"):
        for step, reward in ((10, 0.1), (20, 0.3), (30, 0.6)):
            samples = Samples(["x y", "z"], [[1, 2, 3], [4]], [True, True], kl=0.5)
            stops.append(monitor.check(step, samples, [reward, reward])["stop"])
    assert stops == [[], [], ["reward_judge_divergence"]]
    assert sum("reward rises" in r.message for r in caplog.records) == 1
    rows = read_monitor(tmp_path / "run" / "logs" / "monitor.jsonl")
    assert [r["step"] for r in rows] == [10, 20, 30]
    assert rows[-1]["warnings"][0]["kind"] == "reward_judge_divergence"
    assert rows[-1]["reward_gain"] == pytest.approx(0.6)
    assert rows[-1]["length_ratio"] == pytest.approx(2.0 / 2.0)
    assert rows[-1]["win_rate_trend"] == pytest.approx(-0.15)
