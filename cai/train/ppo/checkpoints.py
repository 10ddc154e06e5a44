"""PPO checkpoints and the final model: what a resumed run reloads, and what a run leaves.

A checkpoint is accelerate's saved state (weights, optimiser, scheduler, every process's RNG
and `TrainerState`) under output_dir/checkpoints/step-NNNNNN, complete once its DONE marker
is written; only the newest `keep_checkpoints` complete ones are kept.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cai.train.ppo import core

CHECKPOINTS = "checkpoints"


class TrainerState:
    """What besides weights, optimiser and RNG a resumed run needs (saved by save_state)."""

    def __init__(self, kl_coef: float) -> None:
        self.step = 0
        self.kl_coef = kl_coef
        self.moments = core.RunningMoments()

    def state_dict(self) -> dict:
        m = self.moments
        return {"step": self.step, "kl_coef": self.kl_coef, "moments": [m.mean, m.var, m.count]}

    def load_state_dict(self, state: dict) -> None:
        self.step = int(state["step"])
        self.kl_coef = float(state["kl_coef"])
        self.moments = core.RunningMoments(*state["moments"])


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    root = Path(output_dir) / CHECKPOINTS
    found = sorted(root.glob("step-*")) if root.is_dir() else []
    complete = [p for p in found if (p / "DONE").exists()]
    return complete[-1] if complete else None


def save_checkpoint(accelerator, output_dir: Path, step: int, keep: int) -> Path:
    """Every process saves its state; the main one marks it DONE and drops older ones."""
    root = output_dir / CHECKPOINTS
    target = root / f"step-{step:06d}"
    accelerator.save_state(str(target))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (target / "DONE").write_text(str(step))
        done = sorted(p for p in root.glob("step-*") if (p / "DONE").exists())
        for old in done[:-keep]:
            shutil.rmtree(old, ignore_errors=True)
    accelerator.wait_for_everyone()
    return target


def save_final(accelerator, model, tokenizer, output_dir: Path) -> Path:
    """The policy as a plain model (loadable by vLLM and transformers), its tokenizer, and the
    value head beside it, in output_dir/final."""
    final = output_dir / "final"
    unwrapped = accelerator.unwrap_model(model)
    state = accelerator.get_state_dict(model)
    if accelerator.is_main_process:
        final.mkdir(parents=True, exist_ok=True)
        policy_state = {k[len("policy.") :]: v for k, v in state.items() if k.startswith("policy.")}
        unwrapped.policy.save_pretrained(final, state_dict=policy_state)
        tokenizer.save_pretrained(final)
        unwrapped.save_value_head(final)
    accelerator.wait_for_everyone()
    return final
