"""The PPO loop on accelerate: rollouts, rewards, advantages, minibatch epochs, checkpoints.

One code path for a laptop CPU and for `accelerate launch` on several GPUs (DDP or DeepSpeed
ZeRO from the accelerate config): devices, wrapping, backward, gradient accumulation,
gathering metrics and checkpoints (with every process's RNG state) all go through the
Accelerator. Each process rolls out its own slice of the prompts; the main process alone writes
metrics, checkpoints' markers, the resolved config and the final model.

N processes with `batch_size` b compute what one process with batch N * b computes: prompts
are sliced from one global order, every response has its own seed (`SeededSampler`), scores
are normalised and advantages whitened over the gathered batch, and losses are token means
over the global minibatch (each micro-batch's sum over tokens divided by the minibatch's token
count across processes). Only the minibatch shuffle is per process: with mini_batch_size <
batch_size a global minibatch is one local minibatch from each process.
"""

from __future__ import annotations

import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import torch

from cai.backends.base import Message
from cai.paths import check_run_paths
from cai.train.config import save_config
from cai.train.distributed import DataLog, check_process_group, one_writer, prepare_launch
from cai.train.monitor.ppo import PPOMonitor
from cai.train.ppo import core
from cai.train.ppo.batch import RolloutBatch, rollout_tensors, score_rollout
from cai.train.ppo.card import write_ppo_card
from cai.train.ppo.checkpoints import TrainerState, latest_checkpoint, save_checkpoint, save_final
from cai.train.ppo.config import PPOConfig
from cai.train.ppo.logging import MetricsLogger, read_metrics
from cai.train.ppo.models import load_actor_critic, load_reference
from cai.train.ppo.ptx import completion_logprobs, ptx_indices, read_sft_pairs, tokenize_pairs
from cai.train.ppo.rewards import (
    RewardFunction,
    RewardInputs,
    build_reward,
    check_judge_reward,
    checked_scores,
)
from cai.train.ppo.rollout import (
    RolloutEngine,
    TransformersRollout,
    VLLMRollout,
    create_colocated_engine,
    unwrapped_for_generation,
)
from cai.train.ppo.setup import (
    PPOSetupError,
    configure_deepspeed,
    load_prompt_messages,
    lr_factor,
)
from cai.train.push import push_if_asked
from cai.train.rewards import JudgeRewardSpec
from cai.train.tracking import accelerator_trackers, finish_accelerator_run, start_accelerator_run


@dataclass
class PPOResult:
    output_dir: Path
    final_model_dir: Path | None
    metrics_path: Path
    plot_path: Path | None
    last_step: int
    resumed_from: int
    monitor_path: Path | None = None
    """output_dir/logs/monitor.jsonl when the monitor ran."""
    monitor_plot: Path | None = None
    stopped_by: list[str] | None = None
    """The monitor's `stop_on` reasons when it stopped the run early (resume continues it)."""


class PPOTrainer:
    """PPO for a causal LM against any RewardFunction."""

    def __init__(
        self,
        config: PPOConfig,
        reward_fn: RewardFunction | None = None,
        prompts: list[list[Message]] | None = None,
        rollout_engine: RolloutEngine | None = None,
        judge_backend=None,
    ) -> None:
        """`judge_backend` replaces the monitor judge's backend (tests, a shared engine)."""
        check_run_paths(config, replaces=True)  # its data and model survive the run
        from accelerate import Accelerator
        from accelerate.utils import set_seed
        from transformers import AutoTokenizer

        self.config = config
        if reward_fn is None:  # the reward's settings are checked before any model loads
            if config.reward is None:
                raise PPOSetupError(
                    "no reward: set `reward:` in the config (model, tokens, python, judge)"
                )
            if isinstance(config.reward, JudgeRewardSpec):
                check_judge_reward(config.reward)
        prepare_launch()
        self.accelerator = Accelerator(
            gradient_accumulation_steps=config.gradient_accumulation_steps,
            mixed_precision=config.mixed_precision,
            **accelerator_trackers(config.report_to, config.output_path),
        )
        check_process_group(self.accelerator.num_processes)
        configure_deepspeed(self.accelerator, config)
        set_seed(config.seed)
        self.data_log = DataLog(config.output_path, self.accelerator.process_index)
        self.tokenizer = AutoTokenizer.from_pretrained(config.model)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        if self.tokenizer.eos_token_id is None:
            raise PPOSetupError(f"{config.model}: the tokenizer has no EOS token; PPO needs one")

        self.prompts = prompts if prompts is not None else load_prompt_messages(config)
        if not self.prompts:
            raise PPOSetupError("the prompt set is empty")
        self.query_ids = [self._encode_prompt(p) for p in self.prompts]
        self.ptx = self._load_ptx()
        self.monitor = None
        if config.monitor is not None:
            self.monitor = PPOMonitor(self, judge_backend)

        device = self.accelerator.device
        self.model = load_actor_critic(
            config.model, config.value_model, config.critic_init, config.dtype
        )
        self.reference = load_reference(config.reference or config.model, config.dtype).to(device)
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(
            params, lr=config.learning_rate, eps=config.adam_eps, weight_decay=config.weight_decay
        )
        total = config.steps * config.optimizer_steps_per_step
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lambda i: lr_factor(i, config.warmup_steps, total, config.lr_schedule)
        )
        self.model, self.optimizer = self.accelerator.prepare(self.model, self.optimizer)
        kl_ctl = (
            core.AdaptiveKLController(config.kl_coef, config.target_kl, config.kl_horizon)
            if config.adaptive_kl
            else core.FixedKLController(config.kl_coef)
        )
        self.kl_ctl = kl_ctl
        self.state = TrainerState(kl_ctl.value)
        self.accelerator.register_for_checkpointing(self.scheduler, self.state)

        self.owned = ExitStack()
        """What this trainer built and closes in `close` (a judge reward's backend)."""
        if reward_fn is None:
            assert config.reward is not None  # checked above
            reward_fn = build_reward(config.reward, self.tokenizer, device, self.owned)
        self.reward_fn = reward_fn
        self.rollout = rollout_engine or self._default_rollout()
        self.logger = MetricsLogger(config.output_path, enabled=self.accelerator.is_main_process)

    def close(self) -> None:
        """Close what this trainer built for itself (a judge reward's backend)."""
        self.owned.close()

    # ------------------------------------------------------------------ setup helpers
    def _encode_prompt(self, messages: list[Message]) -> list[int]:
        text = self.tokenizer.apply_chat_template(
            messages, add_generation_prompt=True, tokenize=False
        )
        ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids[-self.config.max_prompt_tokens :]

    def _load_ptx(self):
        """The SFT rows of PPO-ptx, tokenised (None when ptx_coef is 0)."""
        if not self.config.ptx_coef:
            return None

        pairs = read_sft_pairs(self.config.ptx_dataset, self.config.ptx_split)
        return tokenize_pairs(
            pairs, self.tokenizer, self._encode_prompt, self.config.ptx_max_completion_tokens
        )

    def _default_rollout(self) -> RolloutEngine:
        if self.config.rollout_engine == "vllm":
            longest = max(len(q) for q in self.query_ids) + self.config.max_new_tokens
            llm = create_colocated_engine(
                self.config.model,
                self.config.vllm_gpu_memory_utilization,
                max_model_len=longest,
                seed=self.config.seed,
                dtype="auto",
            )
            return VLLMRollout(llm, self.tokenizer)
        return TransformersRollout(
            self.tokenizer,
            lambda: unwrapped_for_generation(self.accelerator, self.model),
            self.accelerator.device,
        )

    def _prompt_indices(self, step: int) -> list[int]:
        """This process's prompts for `step`: a seeded reshuffle per pass over the data, so a
        resumed run draws exactly what the uninterrupted run would have drawn."""
        n = len(self.prompts)
        per_process = self.config.batch_size
        global_batch = per_process * self.accelerator.num_processes
        first = (step - 1) * global_batch + self.accelerator.process_index * per_process
        out = []
        for position in range(first, first + per_process):
            epoch, offset = divmod(position, n)
            gen = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
            out.append(int(torch.randperm(n, generator=gen)[offset]))
        return out

    def _resume(self) -> int:
        config = self.config
        checkpoint: Path | None = None
        if isinstance(config.resume, str):
            checkpoint = Path(config.resume)
            if not (checkpoint / "DONE").exists():
                raise PPOSetupError(f"{checkpoint}: not a complete PPO checkpoint (no DONE marker)")
        elif config.resume:
            checkpoint = latest_checkpoint(config.output_dir)
        elif self.logger.jsonl.exists() and self.logger.jsonl.stat().st_size:
            raise PPOSetupError(
                f"{config.output_dir} already holds a PPO run; pass --resume to continue it or "
                "choose another output_dir"
            )
        if checkpoint is None:
            self.logger.truncate_after(0)
            return 0
        self.accelerator.load_state(str(checkpoint))
        self.kl_ctl.value = self.state.kl_coef
        self.logger.truncate_after(self.state.step)
        with unwrapped_for_generation(self.accelerator, self.model) as policy:
            self.rollout.sync_weights(policy)
        return self.state.step

    # ------------------------------------------------------------------ the loop
    def train(self, stop_after_steps: int | None = None) -> PPOResult:
        """Run to `config.steps`, or only `stop_after_steps` more steps (time-limited jobs:
        the next call with resume continues from the checkpoint written when stopping).

        The main process holds the output directory's lock for the whole run."""
        acc = self.accelerator
        with one_writer(self.config.output_path, acc.num_processes, acc.is_main_process):
            return self._train(stop_after_steps)

    def _train(self, stop_after_steps: int | None) -> PPOResult:
        from tqdm.auto import tqdm

        config, acc = self.config, self.accelerator
        resumed_from = self._resume()
        if self.monitor is not None:
            self.monitor.begin(resumed_from)
        if acc.is_main_process:
            save_config(config, config.output_path)
        run_name = config.output_path.resolve().name
        start_accelerator_run(acc, "cai-ppo", run_name, config.model_dump(mode="json"))
        last = config.steps
        if stop_after_steps is not None:
            last = min(config.steps, resumed_from + stop_after_steps)
        bar = tqdm(
            total=config.steps,
            initial=resumed_from,
            desc="ppo",
            disable=not (config.progress and acc.is_local_main_process),
        )
        stopped_by: list[str] | None = None
        for step in range(resumed_from + 1, last + 1):
            metrics = self.step(step)
            self.state.step = step
            self.logger.log(metrics)
            acc.log(metrics, step=step)
            bar.update(1)
            bar.set_postfix(reward=f"{metrics['reward/mean']:.3f}", kl=f"{metrics['kl/mean']:.3f}")
            if self.monitor is not None and step % self.monitor.config.every == 0:
                stopped_by = self.monitor.check(step) or None
            if (config.save_every and step % config.save_every == 0) or step == last or stopped_by:
                self.save_checkpoint(step)
            if stopped_by:
                break
        bar.close()
        finished = self.state.step >= config.steps
        final_dir = self.save_final() if config.save_final_model and finished else None
        finish_accelerator_run(acc)
        if final_dir is not None and acc.is_main_process:
            rows = read_metrics(self.logger.jsonl)
            write_ppo_card(config, final_dir, rows, resumed_from, acc.num_processes)
            push_if_asked(final_dir, config.push_to_hub, config.private)
        plot = self.logger.plot() if config.plot else None
        monitor_plot = None
        if self.monitor is not None:
            monitor_plot = self.monitor.plot() if config.plot else None
            self.monitor.close()
        acc.wait_for_everyone()
        return PPOResult(
            output_dir=config.output_path,
            final_model_dir=final_dir,
            metrics_path=self.logger.jsonl,
            plot_path=plot,
            last_step=self.state.step,
            resumed_from=resumed_from,
            monitor_path=self.monitor.monitor.log.path if self.monitor is not None else None,
            monitor_plot=monitor_plot,
            stopped_by=stopped_by,
        )

    def step(self, step: int) -> dict[str, float]:
        """One PPO iteration; returns the metrics logged for it (means over all processes)."""
        config, acc = self.config, self.accelerator
        started = time.perf_counter()
        indices = self._prompt_indices(step)
        self.data_log.batch(step, indices)
        # Response j of the global batch is sampled with seed base + j on whichever process
        # holds it (the engines give query i seed + i), so the split over processes is invisible.
        first = acc.process_index * config.batch_size
        seed = config.seed * 1_000_003 + step * 100_003 + first
        rollout = self.rollout.generate(
            [self.query_ids[i] for i in indices], config.max_new_tokens, config.temperature, seed
        )
        rollout_s = time.perf_counter() - started
        batch = rollout_tensors(rollout, self.tokenizer.pad_token_id, acc.device)
        old_logprobs, old_values, ref_logprobs, entropy = score_rollout(
            self.model, self.reference, batch, config.forward_batch_size, config.temperature
        )

        texts = self.tokenizer.batch_decode(rollout.response_ids, skip_special_tokens=True)
        inputs = RewardInputs(
            [self.prompts[i] for i in indices], texts, rollout.response_ids, rollout.finished
        )
        raw = checked_scores(self.reward_fn(inputs), len(indices), type(self.reward_fn).__name__)
        raw_scores = torch.tensor(raw, dtype=torch.float32, device=acc.device)
        finished = torch.tensor(rollout.finished, dtype=torch.bool, device=acc.device)
        scores = self._normalise(self._penalise(raw_scores, finished))

        mask = batch.mask
        rewards, kl = core.kl_penalty_rewards(
            scores, old_logprobs, ref_logprobs, mask, self.kl_ctl.value
        )
        advantages, returns = core.compute_gae(rewards, old_values, mask, config.gamma, config.lam)
        if config.whiten_advantages:
            advantages = core.masked_whiten(advantages, mask, all_reduce=self._sum_over_processes)

        lr = self.scheduler.get_last_lr()[0]
        stats = self._optimise(step, batch, old_logprobs, old_values, advantages, returns)
        with unwrapped_for_generation(acc, self.model) as policy:
            self.rollout.sync_weights(policy)
        if self.data_log.enabled:
            self.data_log.weights(step, acc.unwrap_model(self.model))

        seq_kl = kl.sum(1)
        kl_coef_used = self.kl_ctl.value
        mean_kl = acc.gather(seq_kl).mean().item()
        self.state.kl_coef = self.kl_ctl.update(mean_kl, config.batch_size * acc.num_processes)

        def gmean(t: torch.Tensor) -> float:
            return acc.gather(t.detach().float().reshape(-1)).mean().item()

        lengths = mask.sum(1)
        ptx = {"ptx/loss": stats["ptx_loss"]} if self.ptx is not None else {}
        return {
            "step": step,
            "reward/mean": gmean(raw_scores),
            "reward/std": acc.gather(raw_scores).std().item() if raw_scores.numel() > 1 else 0.0,
            "reward/penalised_normalised_mean": gmean(scores),
            "kl/mean": mean_kl,
            "kl/coef": kl_coef_used,
            "policy/entropy": gmean(core.masked_mean(entropy, mask, dim=1)),
            "policy/loss": stats["pg_loss"],
            "policy/clip_fraction": stats["pg_clip"],
            "policy/approx_kl": stats["approx_kl"],
            "value/loss": stats["vf_loss"],
            "value/clip_fraction": stats["vf_clip"],
            "value/mean": gmean(core.masked_mean(old_values, mask, dim=1)),
            "advantage/mean": gmean(core.masked_mean(advantages, mask, dim=1)),
            "response/length": gmean(lengths),
            "response/finished": gmean(finished),
            "lr": lr,
            "time/rollout_s": rollout_s,
            "time/step_s": time.perf_counter() - started,
            **ptx,
        }

    # ------------------------------------------------------------------ pieces of a step
    def _penalise(self, scores: torch.Tensor, finished: torch.Tensor) -> torch.Tensor:
        penalty = self.config.missing_eos_penalty
        if penalty:
            scores = torch.where(finished, scores, scores - penalty)
        return scores

    def _normalise(self, scores: torch.Tensor) -> torch.Tensor:
        mode, acc = self.config.reward_normalization, self.accelerator
        if mode == "running":
            self.state.moments.update(acc.gather(scores))
            m = self.state.moments
            scores = (scores - m.mean) / (m.std + 1e-8) if m.count > 1 else scores - m.mean
        elif mode == "batch":
            everything = acc.gather(scores)
            scores = (scores - everything.mean()) / (everything.std(unbiased=False) + 1e-8)
        if self.config.reward_clip is not None:
            scores = scores.clamp(-self.config.reward_clip, self.config.reward_clip)
        return scores

    def _sum_over_processes(self, tensor: torch.Tensor) -> torch.Tensor:
        return self.accelerator.reduce(tensor, reduction="sum")

    def _optimise(
        self, step: int, batch: RolloutBatch, old_logprobs, old_values, advantages, returns
    ):
        """`ppo_epochs` passes of shuffled minibatches. Each micro-batch's losses are its sums
        over tokens divided by the token count of the whole global minibatch (all its
        micro-batches on all processes), scaled back up by the averaging that gradient
        accumulation and data parallelism apply: the gradient of every optimiser step is then
        that of the token mean over the global minibatch, as one process holding it computes.
        With ptx, each optimiser step also takes the token-mean LM loss of its SFT batch the
        same way. The logged statistics are token means over each global minibatch, averaged
        over the optimiser steps."""
        config, acc = self.config, self.accelerator
        n = batch.input_ids.shape[0]
        names = ("pg_loss", "pg_clip", "approx_kl", "vf_loss", "vf_clip", "ptx_loss")
        wide = torch.float32 if acc.device.type == "mps" else torch.float64
        sums = torch.zeros(len(names), dtype=wide, device=acc.device)
        scale = acc.num_processes * config.gradient_accumulation_steps
        updates = 0
        for _ in range(config.ppo_epochs):
            order = torch.randperm(n)
            for mb_lo in range(0, n, config.mini_batch_size):
                minibatch = order[mb_lo : mb_lo + config.mini_batch_size].to(acc.device)
                tokens = self._sum_over_processes(batch.mask[minibatch].sum()).clamp(min=1)
                update = (step - 1) * config.optimizer_steps_per_step + updates
                ptx_parts, ptx_tokens = self._ptx_batch(update)
                for part, mi_lo in enumerate(range(0, len(minibatch), config.micro_batch_size)):
                    rows = minibatch[mi_lo : mi_lo + config.micro_batch_size]
                    with acc.accumulate(self.model):
                        out = self._micro_step(
                            batch,
                            rows,
                            (old_logprobs, old_values, advantages, returns),
                            tokens,
                            scale,
                            (ptx_parts[part], ptx_tokens) if ptx_parts else None,
                        )
                    sums += torch.stack([out[k] for k in names]).to(wide)
                updates += 1
        totals = (self._sum_over_processes(sums) / updates).tolist()
        return dict(zip(names, totals, strict=True))

    def _ptx_batch(self, update: int) -> tuple[list[list[int]], torch.Tensor | None]:
        """This process's SFT rows for global optimiser update `update`, one slice per
        micro-batch, and their completion-token count over all processes."""
        if self.ptx is None:
            return [], None

        config, acc = self.config, self.accelerator
        indices = ptx_indices(
            len(self.ptx.completions),
            update,
            config.ptx_batch_size,
            acc.process_index,
            acc.num_processes,
            config.seed,
        )
        count = sum(len(self.ptx.completions[i]) for i in indices)
        tokens = self._sum_over_processes(torch.tensor(float(count), device=acc.device))
        parts = config.gradient_accumulation_steps
        slices = [indices[k::parts] for k in range(parts)]
        return slices, tokens.clamp(min=1)

    def _micro_step(self, batch, rows, targets, tokens, scale, ptx=None) -> dict[str, torch.Tensor]:
        config, acc = self.config, self.accelerator
        old_logprobs, old_values, advantages, returns = targets
        ids, att = batch.input_ids[rows], batch.attention_mask[rows]
        mask = batch.mask[rows]
        logits, values = self.model(ids, att, batch.start, config.temperature)
        logprobs = core.logprobs_from_logits(logits, ids[:, batch.start :])
        pg = core.policy_loss(
            logprobs, old_logprobs[rows], advantages[rows], mask, config.cliprange, tokens
        )
        vf = core.value_loss(
            values.float(), old_values[rows], returns[rows], mask, config.cliprange_value, tokens
        )
        loss = pg.loss + config.vf_coef * vf.loss
        if config.entropy_coef:
            entropy = core.masked_sum(core.entropy_from_logits(logits), mask) / tokens
            loss = loss - config.entropy_coef * entropy
        ptx_loss = torch.zeros((), device=acc.device)
        if ptx is not None and ptx[0]:
            ptx_loss = self._ptx_loss(*ptx)
            loss = loss + config.ptx_coef * ptx_loss
        acc.backward(loss * scale)
        if acc.sync_gradients and config.max_grad_norm is not None:
            acc.clip_grad_norm_(self.model.parameters(), config.max_grad_norm)
        self.optimizer.step()
        if acc.sync_gradients:
            self.scheduler.step()
        self.optimizer.zero_grad()
        return {
            "pg_loss": pg.loss.detach(),
            "pg_clip": pg.clip_fraction,
            "approx_kl": pg.approx_kl,
            "vf_loss": vf.loss.detach(),
            "vf_clip": vf.clip_fraction,
            "ptx_loss": ptx_loss.detach(),
        }

    def _ptx_loss(self, indices: list[int], tokens: torch.Tensor) -> torch.Tensor:
        """This micro-batch's share of the SFT token-mean negative log-likelihood: its
        completion tokens' summed NLL over the optimiser step's SFT token count."""

        logprobs, mask, _ = completion_logprobs(
            self.model, self.ptx, indices, self.tokenizer.pad_token_id, self.accelerator.device
        )
        return -core.masked_sum(logprobs, mask) / tokens

    # ------------------------------------------------------------------ saving
    def save_checkpoint(self, step: int) -> Path:
        return save_checkpoint(
            self.accelerator, self.config.output_path, step, self.config.keep_checkpoints
        )

    def save_final(self) -> Path:
        return save_final(self.accelerator, self.model, self.tokenizer, self.config.output_path)


def train_ppo(
    config: PPOConfig,
    reward_fn: RewardFunction | None = None,
    prompts: list[list[Message]] | None = None,
) -> PPOResult:
    """Run (or resume) PPO as configured; the entry point of `cai train ppo`."""
    trainer = PPOTrainer(config, reward_fn, prompts)
    try:
        return trainer.train()
    finally:
        trainer.close()
