"""The monitor inside `cai train ppo`: samples from the live policy and the frozen reference."""

from __future__ import annotations

import contextlib

from cai.train.monitor.check import Monitor, shared_stop
from cai.train.monitor.sampling import Samples, generate_samples, kl_to_reference
from cai.train.ppo.rewards import RewardInputs, checked_scores
from cai.train.ppo.rollout import unwrapped_for_generation


class PPOMonitor:
    """Runs the monitor's checks for a `PPOTrainer` (its `config.monitor` must be set)."""

    def __init__(self, trainer, judge_backend=None) -> None:
        config = trainer.config.monitor
        self.trainer = trainer
        self.config = config
        self.monitor = Monitor(
            config, trainer.config.output_path, trainer.accelerator.is_main_process, judge_backend
        )
        self.query_ids = [trainer._encode_prompt(p) for p in self.monitor.prompts]
        self.max_new_tokens = config.max_new_tokens or trainer.config.max_new_tokens
        self.temperature = config.temperature or trainer.config.temperature

    def begin(self, resumed_step: int) -> None:
        """Answer the monitor prompts once with the reference policy (the same answers on
        every resume: they are seeded)."""
        reference = self.trainer.reference
        samples = self._sample(lambda: contextlib.nullcontext(reference))
        samples.kl = 0.0
        self.monitor.begin(resumed_step, samples, self._scores(samples))

    def check(self, step: int) -> list[str]:
        """One check after `step`; returns the `stop_on` reasons hit (the same on every process)."""

        trainer = self.trainer
        acc = trainer.accelerator

        def policy():
            return unwrapped_for_generation(acc, trainer.model)

        samples = self._sample(policy)
        samples.kl = kl_to_reference(
            policy,
            trainer.reference,
            self.query_ids,
            samples.response_ids,
            trainer.tokenizer.pad_token_id,
            self.temperature,
            acc.device,
            self.config.batch_size,
        )
        row = self.monitor.check(step, samples, self._scores(samples))
        return shared_stop(acc, row["stop"])

    def plot(self):
        return self.monitor.plot()

    def close(self) -> None:
        self.monitor.close()

    def _sample(self, context) -> Samples:
        trainer = self.trainer
        return generate_samples(
            trainer.tokenizer,
            context,
            self.query_ids,
            self.max_new_tokens,
            self.temperature,
            self.config.seed,
            trainer.accelerator.device,
            self.config.batch_size,
        )

    def _scores(self, samples: Samples) -> list[float]:
        reward_fn = self.trainer.reward_fn
        inputs = RewardInputs(
            self.monitor.prompts, samples.texts, samples.response_ids, samples.finished
        )
        return checked_scores(reward_fn(inputs), len(samples.texts), type(reward_fn).__name__)
