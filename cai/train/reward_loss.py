"""The soft-label reward loss on torch tensors.

A module of its own so that the trainer (`cai.train.reward_trainer`, which imports TRL) and
anything that checks the loss by hand share one definition without importing TRL.
"""

from __future__ import annotations

import torch.nn.functional as F


def soft_label_loss(r_chosen, r_rejected, prob_chosen, weights=None):
    """Mean of weight * BCE(sigmoid(r_chosen - r_rejected), prob_chosen).

    Weights scale each row's share of the mean (they are not renormalised per batch), so a
    human row of weight 2 counts twice an AI row of weight 1 whatever the batch holds.
    """
    per_row = F.binary_cross_entropy_with_logits(
        r_chosen - r_rejected, prob_chosen.to(r_chosen.dtype), reduction="none"
    )
    if weights is not None:
        per_row = per_row * weights.to(per_row.dtype)
    return per_row.mean()
