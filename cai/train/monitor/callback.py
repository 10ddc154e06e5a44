"""The monitor as a `transformers.TrainerCallback`, for `cai train grpo` / `cai train rloo`.

TRL's trainers own the loop, so the monitor hooks its events: reference answers from the
starting model at `on_train_begin`, a check at every `monitor.every`-th optimiser step, and a
stop that asks the Trainer to save a checkpoint first (`should_save`), so `resume` continues.
"""

from __future__ import annotations

import contextlib

from transformers import TrainerCallback

from cai.errors import InputError
from cai.train.monitor.check import Monitor, shared_stop
from cai.train.monitor.config import MonitorConfig
from cai.train.monitor.sampling import Samples, generate_samples, kl_to_reference
from cai.train.reward_scorer import RewardModelScorer


def online_rewards(trainer, prompts, texts: list[str], prompt_ids) -> list[float | None]:
    """The trainer's configured reward on monitor samples: each reward function (a reward
    model or a callable such as the judge) as TRL calls it, combined with TRL's
    `reward_weights` (a failed score is left out, as TRL leaves out NaN)."""
    from torch import nn

    completions = [[{"role": "assistant", "content": t}] for t in texts]
    weights = [float(w) for w in trainer.reward_weights]
    total: list[float | None] = [None] * len(texts)
    funcs = zip(trainer.reward_funcs, trainer.reward_processing_classes, weights, strict=True)
    for func, processing_class, weight in funcs:
        if isinstance(func, nn.Module):
            scorer = RewardModelScorer(func, processing_class)
            scores = scorer.score([[*p, *c] for p, c in zip(prompts, completions, strict=True)])
        else:
            try:
                scores = func(prompts=prompts, completions=completions, prompt_id=prompt_ids)
            except InputError:  # needs dataset columns the monitor prompts do not have
                continue
        for i, score in enumerate(scores):
            if score is not None and score == score:
                total[i] = (total[i] or 0.0) + weight * float(score)
    return total


class MonitorCallback(TrainerCallback):
    """Runs the monitor inside a TRL GRPO / RLOO trainer."""

    def __init__(
        self,
        config: MonitorConfig,
        trainer,
        reference_model: str,
        max_new_tokens: int,
        temperature: float,
        judge_backend=None,
    ) -> None:
        self.config = config
        self.trainer = trainer
        self.reference_model = reference_model
        self.max_new_tokens = config.max_new_tokens or max_new_tokens
        self.temperature = config.temperature or temperature
        main = trainer.is_world_process_zero()
        self.monitor = Monitor(config, trainer.args.output_dir, main, judge_backend)
        tokenizer = trainer.processing_class
        self.query_ids = [
            tokenizer(
                tokenizer.apply_chat_template(p, add_generation_prompt=True, tokenize=False),
                add_special_tokens=False,
            )["input_ids"]
            for p in self.monitor.prompts
        ]
        self.reference = None
        self.stopped_by: list[str] = []

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        import torch
        from transformers import AutoModelForCausalLM

        policy = self.trainer.accelerator.unwrap_model(model)
        device = next(policy.parameters()).device
        dtype = next(policy.parameters()).dtype
        reference = AutoModelForCausalLM.from_pretrained(self.reference_model, dtype=dtype)
        self.reference = reference.to(device).eval().requires_grad_(False)
        with torch.no_grad():
            samples = self._sample(lambda: contextlib.nullcontext(self.reference), device)
        samples.kl = 0.0
        self.monitor.begin(state.global_step, samples, self._rewards(samples))

    def on_step_end(self, args, state, control, model=None, **kwargs):
        if state.global_step % self.config.every:
            return
        policy = self.trainer.accelerator.unwrap_model(model)
        device = next(policy.parameters()).device
        was_training = policy.training
        policy.eval()
        try:
            samples = self._sample(lambda: contextlib.nullcontext(policy), device)
            samples.kl = kl_to_reference(
                lambda: contextlib.nullcontext(policy),
                self.reference,
                self.query_ids,
                samples.response_ids,
                self.trainer.processing_class.pad_token_id,
                self.temperature,
                device,
                self.config.batch_size,
            )
        finally:
            policy.train(was_training)
        row = self.monitor.check(state.global_step, samples, self._rewards(samples))
        stop = shared_stop(self.trainer.accelerator, row["stop"])
        if stop:
            self.stopped_by = stop
            control.should_save = True
            control.should_training_stop = True

    def on_train_end(self, args, state, control, **kwargs):
        self.monitor.plot()
        self.monitor.close()
        self.reference = None

    def _sample(self, context, device) -> Samples:
        return generate_samples(
            self.trainer.processing_class,
            context,
            self.query_ids,
            self.max_new_tokens,
            self.temperature,
            self.config.seed,
            device,
            self.config.batch_size,
        )

    def _rewards(self, samples: Samples) -> list[float | None]:
        return online_rewards(
            self.trainer, self.monitor.prompts, samples.texts, self.monitor.prompt_ids
        )
