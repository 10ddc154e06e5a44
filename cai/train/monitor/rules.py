"""The monitor's warnings: trends over the last checks and drift past thresholds."""

from __future__ import annotations

from dataclasses import dataclass

from cai.train.monitor.config import MonitorConfig
from cai.train.monitor.metrics import slope


@dataclass(frozen=True)
class Alarm:
    kind: str
    """reward_judge_divergence | length | boilerplate (the names `stop_on` takes)."""
    message: str


def trends(history: list[dict], window: int) -> dict[str, float | None]:
    """Least-squares slopes per check of the reward and the win rate over the last `window`
    checks (None until two checks with values exist)."""
    recent = history[-window:]
    out: dict[str, float | None] = {}
    for key, name in (("reward_mean", "reward_trend"), ("win_rate", "win_rate_trend")):
        values = [row.get(key) for row in recent]
        values = [v for v in values if v is not None]
        out[name] = slope(values) if len(values) >= 2 else None
    return out


def divergence(history: list[dict], config: MonitorConfig) -> Alarm | None:
    """Reward rises while the judge's win rate falls over the last `window` checks.

    "Rises": the reward's least-squares slope per check is above `min_reward_slope`; "falls":
    the win rate's slope is below -`min_win_rate_slope`. Needs `window` checks, every one of
    them with both a reward and a win rate.
    """
    recent = history[-config.window :]
    if len(recent) < config.window:
        return None
    rewards = [row.get("reward_mean") for row in recent]
    wins = [row.get("win_rate") for row in recent]
    if any(v is None for v in rewards + wins):
        return None
    reward_slope, win_slope = slope(rewards), slope(wins)
    if reward_slope > config.min_reward_slope and win_slope < -config.min_win_rate_slope:
        return Alarm(
            "reward_judge_divergence",
            f"reward rises ({reward_slope:+.4g} per check) while the judge's win rate falls "
            f"({win_slope:+.4g} per check) over the last {config.window} checks: the policy may "
            "be exploiting the reward",
        )
    return None


def alarms(history: list[dict], config: MonitorConfig) -> list[Alarm]:
    """Every warning the latest check (history[-1]) raises."""
    found = []
    diverging = divergence(history, config)
    if diverging is not None:
        found.append(diverging)
    row = history[-1]
    ratio = row.get("length_ratio")
    if ratio is not None and ratio > config.max_length_ratio:
        found.append(
            Alarm(
                "length",
                f"responses are {ratio:.2f}x the reference's length "
                f"(max_length_ratio {config.max_length_ratio})",
            )
        )
    share = row.get("boilerplate", 0.0)
    if share > config.max_boilerplate:
        found.append(
            Alarm(
                "boilerplate",
                f"{share:.0%} of responses repeat {row.get('boilerplate_phrase')!r} "
                f"(max_boilerplate {config.max_boilerplate})",
            )
        )
    return found
