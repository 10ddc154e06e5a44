"""PPO-ptx on the tiny policy: mixing the SFT loss into PPO keeps the policy's likelihood of
held-out SFT rows, at a reward close to plain PPO's.

Reward: share of response tokens whose id is a multiple of 4 (ppo_setup.token_share_reward).
SFT rows: "the answer is" + 8 words from a small vocabulary, after a random 5-word question;
the held-out rows come from the same generator with another seed. Checked over seeds 0, 1, 2
(16 steps, ptx_coef 0.05): without ptx the held-out mean log-likelihood per token fell by
0.5-1.2 nats; with ptx it rose by 2.9-3.2 nats; the last-5-step mean reward differed from
plain PPO's by 0.04-0.08 (0.49-0.54 with ptx, 0.50-0.57 without, from about 0.25).
"""

from __future__ import annotations

import json
import random

import pytest

torch = pytest.importorskip("torch")

from ppo_setup import PROMPTS, tiny_ppo_config, token_share_reward  # noqa: E402

from cai.train.ppo.logging import read_metrics  # noqa: E402
from cai.train.ppo.ptx import completion_logprobs, read_sft_pairs, tokenize_pairs  # noqa: E402
from cai.train.ppo.trainer import PPOTrainer  # noqa: E402

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("single_torch_thread")]


def _write_sft(path, n, seed):
    from cai.testing.tiny import _WORDS

    rng = random.Random(seed)
    lines = []
    for _ in range(n):
        question = " ".join(rng.choice(_WORDS) for _ in range(5))
        answer = "the answer is " + " ".join(rng.choice(_WORDS[:40]) for _ in range(8))
        messages = [
            {"role": "user", "content": question},
            {"role": "assistant", "content": answer},
        ]
        lines.append(json.dumps({"messages": messages}) + "\n")
    path.write_text("".join(lines))
    return path


def _heldout_loglik(trainer, path) -> float:
    """Mean log-likelihood per completion token of the held-out rows under the policy."""
    rows = tokenize_pairs(read_sft_pairs(str(path)), trainer.tokenizer, trainer._encode_prompt, 512)
    with torch.no_grad():
        logprobs, mask, _ = completion_logprobs(
            trainer.model,
            rows,
            list(range(len(rows.prompts))),
            trainer.tokenizer.pad_token_id,
            "cpu",
        )
    return ((logprobs * mask).sum() / mask.sum()).item()


def _run(model_dir, out, sft, heldout, ptx_coef):
    from transformers import AutoTokenizer

    reward = token_share_reward(AutoTokenizer.from_pretrained(model_dir))
    config = tiny_ppo_config(
        model_dir,
        out,
        steps=16,
        ptx_coef=ptx_coef,
        ptx_dataset=str(sft) if ptx_coef else None,
        ptx_batch_size=16,
    )
    trainer = PPOTrainer(config, reward, PROMPTS)
    before = _heldout_loglik(trainer, heldout)
    result = trainer.train()
    rows = read_metrics(result.metrics_path)
    return before, _heldout_loglik(trainer, heldout), rows


def test_ptx_keeps_the_sft_likelihood_at_a_similar_reward(tiny_model_dir, tmp_path):
    sft = _write_sft(tmp_path / "sft.jsonl", 64, seed=1)
    heldout = _write_sft(tmp_path / "heldout.jsonl", 32, seed=2)
    start, plain_end, plain = _run(tiny_model_dir, tmp_path / "plain", sft, heldout, 0.0)
    start_ptx, ptx_end, mixed = _run(tiny_model_dir, tmp_path / "ptx", sft, heldout, 0.05)
    assert start_ptx == pytest.approx(start)

    plain_drop, ptx_drop = start - plain_end, start - ptx_end
    assert plain_drop > 0.2, f"plain PPO should move away from the SFT rows: {plain_drop:.3f}"
    assert ptx_drop < plain_drop - 1.0, f"ptx drop {ptx_drop:.3f} vs plain {plain_drop:.3f}"

    def last5(rows):
        return sum(r["reward/mean"] for r in rows[-5:]) / 5

    assert last5(plain) > plain[0]["reward/mean"] + 0.15  # both runs learn the reward
    assert last5(mixed) > mixed[0]["reward/mean"] + 0.15
    assert abs(last5(mixed) - last5(plain)) < 0.1, (last5(mixed), last5(plain))
    assert all("ptx/loss" in r and r["ptx/loss"] > 0 for r in mixed)
    assert all("ptx/loss" not in r for r in plain)
    assert mixed[-1]["ptx/loss"] < mixed[0]["ptx/loss"]
