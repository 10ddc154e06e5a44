"""The TRL classes behind `cai train reward`: a collator and a trainer for soft labels.

A module of its own so that importing `cai.train.reward` (configs, data preparation) stays
free of torch and TRL; these classes are ordinary module-level classes, so they pickle (for
dataloader workers under spawn) like any other.
"""

from __future__ import annotations

from typing import Any

import torch
from trl import RewardTrainer
from trl.trainer.reward_trainer import DataCollatorForPreference

from cai.records import PROB_COLUMN, ROW_COLUMN, WEIGHT_COLUMN
from cai.train.distributed import DataLog
from cai.train.reward_loss import soft_label_loss

_EXTRA_COLUMNS = (PROB_COLUMN, WEIGHT_COLUMN, ROW_COLUMN, "margin")


class SoftPreferenceCollator(DataCollatorForPreference):
    """TRL's collator plus the per-row target probability and weight (and, for the debug data
    log, the row numbers)."""

    def torch_call(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        stripped = [{k: v for k, v in e.items() if k not in _EXTRA_COLUMNS} for e in examples]
        out = super().torch_call(stripped)
        out[PROB_COLUMN] = torch.tensor(
            [float(e.get(PROB_COLUMN, 1.0)) for e in examples], dtype=torch.float32
        )
        out[WEIGHT_COLUMN] = torch.tensor(
            [float(e.get(WEIGHT_COLUMN, 1.0)) for e in examples], dtype=torch.float32
        )
        if examples and ROW_COLUMN in examples[0]:
            out[ROW_COLUMN] = torch.tensor([int(e[ROW_COLUMN]) for e in examples])
        return out


class SoftLabelRewardTrainer(RewardTrainer):
    """RewardTrainer whose loss is the weighted BCE against `prob_chosen`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.data_collator, SoftPreferenceCollator):
            self.data_collator = SoftPreferenceCollator(
                pad_token_id=self.processing_class.pad_token_id,
                pad_to_multiple_of=self.args.pad_to_multiple_of,
            )
        self.data_log = DataLog(self.args.output_dir, self.args.process_index)

    def _set_signature_columns_if_needed(self):
        if self._signature_columns is None:
            self._signature_columns = [
                "chosen_ids",
                "rejected_ids",
                PROB_COLUMN,
                WEIGHT_COLUMN,
                ROW_COLUMN,
            ]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        mode = "train" if self.model.training else "eval"
        rows = inputs.get(ROW_COLUMN)
        if rows is not None and mode == "train":
            self.data_log.batch(self.state.global_step + 1, rows.tolist())
        batch = {
            k: v for k, v in inputs.items() if k not in (PROB_COLUMN, WEIGHT_COLUMN, ROW_COLUMN)
        }
        batch["use_cache"] = False
        outputs = model(**batch)
        r_chosen, r_rejected = torch.chunk(outputs.logits.squeeze(-1), chunks=2)
        n = r_chosen.shape[0]
        prob = inputs.get(PROB_COLUMN)
        prob = torch.ones(n, device=r_chosen.device) if prob is None else prob
        weights = inputs.get(WEIGHT_COLUMN)
        loss = soft_label_loss(r_chosen, r_rejected, prob, weights)
        if self.args.center_rewards_coefficient is not None:
            loss = loss + self.args.center_rewards_coefficient * torch.mean(
                (r_chosen + r_rejected) ** 2
            )
        if mode == "train":
            tokens = self.accelerator.gather_for_metrics(batch["attention_mask"].sum()).sum()
            self._total_train_tokens += tokens.item() // self._tp_size
        self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
        with torch.no_grad():
            rewards = self.accelerator.gather(outputs.logits)
            self._metrics[mode]["mean_reward"].append(rewards.mean().item())
            diff = r_chosen - r_rejected
            decided = prob != 0.5
            agree = ((diff > 0) == (prob > 0.5)).float()
            accuracy = agree[decided].mean() if decided.any() else agree.new_tensor(0.5)
            accuracy = self.accelerator.gather_for_metrics(accuracy).mean().item()
            self._metrics[mode]["accuracy"].append(accuracy)
            margin = self.accelerator.gather_for_metrics(diff.mean()).mean().item()
            self._metrics[mode]["margin"].append(margin)
        return (loss, outputs) if return_outputs else loss
