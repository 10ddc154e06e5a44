"""One monitor check: measure the samples, apply the rules, record the line.

Trainer-neutral: PPO (`ppo.py`) and the TRL callback (`callback.py`) hand it samples and
reward scores; it owns the prompts, the reference answers, the judge and `monitor.jsonl`.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from pathlib import Path

from cai.tables import iter_prompts
from cai.train.monitor import metrics
from cai.train.monitor.config import MonitorConfig
from cai.train.monitor.log import MonitorLog
from cai.train.monitor.rules import alarms, trends
from cai.train.monitor.sampling import Samples
from cai.train.rewards import judge_reward

log = logging.getLogger(__name__)


def open_pairwise_judge(config: MonitorConfig, stack: ExitStack, backend=None):
    """The judge-reward spec in pairwise mode (both answer orders, as the judge does), open
    until `stack` closes; on `backend` when given, else on one built from the spec (and closed
    with the stack). None without `judge:`."""
    if config.judge is None:
        return None

    spec = config.judge.model_copy(update={"mode": "pairwise"})
    return stack.enter_context(judge_reward(spec, backend))


class Monitor:
    """Prompts, reference answers, judge and log of one run's monitor.

    Every process samples (a sharded model must be gathered by all); only the `writer`
    (main process) builds the judge, judges and writes.
    """

    def __init__(
        self, config: MonitorConfig, run_dir: str | Path, writer: bool, judge_backend=None
    ):
        records = list(iter_prompts(config.prompts, config.prompt_column, config.limit))
        self.config = config
        self.prompts = [r.prompt for r in records]
        self.prompt_ids = [r.prompt_id for r in records]
        self.writer = writer
        self.log = MonitorLog(run_dir, enabled=writer)
        self._stack = ExitStack()
        self.judge = open_pairwise_judge(config, self._stack, judge_backend) if writer else None
        self.reference: Samples | None = None
        self.reference_scores: list[float | None] = []

    def begin(self, resumed_step: int, reference: Samples, scores: list[float | None]) -> None:
        """Hold the reference policy's answers; forget checks after the resumed step."""
        self.reference = reference
        self.reference_scores = list(scores)
        self.log.truncate_after(resumed_step)

    def check(self, step: int, samples: Samples, scores: list[float | None]) -> dict:
        """Measure, warn and record one check; the row's `stop` lists the `stop_on` reasons hit
        (empty on processes that do not write)."""
        row = self.measure(step, samples, scores)
        if not self.writer:
            return {**row, "warnings": [], "stop": []}
        history = [*(r for r in self.log.rows() if r["step"] < step), row]
        row.update(trends(history, self.config.window))
        found = alarms(history, self.config)
        for alarm in found:
            log.warning("monitor, step %d: %s", step, alarm.message)
        row["warnings"] = [{"kind": a.kind, "message": a.message} for a in found]
        row["stop"] = sorted({a.kind for a in found} & set(self.config.stop_on))
        self.log.append(row)
        return row

    def measure(self, step: int, samples: Samples, scores: list[float | None]) -> dict:
        reference = self.reference
        if reference is None:
            raise RuntimeError("Monitor.begin must run before the first check")
        win, judged = self._judge(samples.texts)
        share, phrase = metrics.boilerplate(samples.texts, self.config.boilerplate_ngram)
        markers = self.config.refusal_markers
        reward, ref_reward = metrics.mean(scores), metrics.mean(self.reference_scores)
        return {
            "step": step,
            "prompts": len(samples.texts),
            "reward_mean": reward,
            "reference_reward_mean": ref_reward,
            "reward_gain": None if reward is None or ref_reward is None else reward - ref_reward,
            "win_rate": win,
            "judged": judged,
            "judge_failures": len(samples.texts) - judged if self.judge is not None else 0,
            "length_mean": metrics.mean(samples.lengths),
            "reference_length_mean": metrics.mean(reference.lengths),
            "length_ratio": metrics.length_ratio(samples.lengths, reference.lengths),
            "boilerplate": share,
            "boilerplate_phrase": phrase,
            "refusal_rate": metrics.refusal_rate(samples.texts, markers),
            "reference_refusal_rate": metrics.refusal_rate(reference.texts, markers),
            "kl": samples.kl,
        }

    def _judge(self, texts: list[str]) -> tuple[float | None, int]:
        """Debiased P(policy answer beats the reference answer) per prompt, averaged."""
        if self.judge is None or self.reference is None:
            return None, 0
        completions = [[{"role": "assistant", "content": t}] for t in texts]
        probs = self.judge(
            self.prompts,
            completions,
            prompt_id=self.prompt_ids,
            **{self.judge.reference_column: self.reference.texts},
        )
        return metrics.win_rate(probs)

    def plot(self) -> Path | None:
        return self.log.plot()

    def close(self) -> None:
        """Close the judge's backend if the monitor built it."""
        self._stack.close()


def shared_stop(accelerator, stop: list[str]) -> list[str]:
    """The main process's stop decision, on every process."""
    if accelerator is None or accelerator.num_processes == 1:
        return stop
    from accelerate.utils import broadcast_object_list

    box = [stop]
    broadcast_object_list(box, from_process=0)
    return box[0]
