"""SFT rows for PPO-ptx: the language-modelling term InstructGPT mixes into every update.

Rows come from an SFT dataset (the `cai revise` sft/ output with a `messages` column, or any
table with `prompt` and `completion` columns), are tokenised once as [prompt | completion + EOS]
and drawn by a seeded reshuffle per pass, indexed by the global optimiser-step number: a
resumed run draws exactly the batches the uninterrupted run would have drawn, with no state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from cai.tables import InputFormatError, load_table
from cai.train.monitor.sampling import pack
from cai.train.ppo.core import logprobs_from_logits
from cai.train.sft import prepare_rows


@dataclass
class PtxRows:
    prompts: list[list[int]]
    completions: list[list[int]]


def _conversation(value, where: str, index: int, column: str) -> list[dict]:
    if isinstance(value, str):
        return [{"role": "user" if column == "prompt" else "assistant", "content": value}]
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        return [{"role": str(m["role"]), "content": str(m["content"])} for m in value]
    raise InputFormatError(
        f"row {index}: {column!r} must be text or a list of chat messages",
        file=where,
        fix="Use the sft/ directory `cai revise` writes, or prompt/completion text columns.",
    )


def read_sft_pairs(path: str, split: str = "train") -> list[tuple[list[dict], str]]:
    """(prompt messages, completion text) per row, every row checked (`cai.train.sft`)."""

    dataset = load_table(path, split, allow_empty=False)
    columns = dataset.column_names
    if "messages" in columns:
        dataset = prepare_rows(dataset, "messages", "completion")
    elif not {"prompt", "completion"} <= set(columns):
        raise InputFormatError(
            f"an SFT dataset needs a 'messages' column or 'prompt' and 'completion' columns "
            f"(columns: {', '.join(columns)})",
            file=path,
            fix="Point ptx_dataset at the sft/ directory written by `cai revise`.",
        )
    pairs = []
    for index, row in enumerate(dataset):
        prompt = _conversation(row["prompt"], path, index, "prompt")
        completion = _conversation(row["completion"], path, index, "completion")
        pairs.append((prompt, completion[-1]["content"]))
    return pairs


def tokenize_pairs(pairs, tokenizer, encode_prompt, max_completion_tokens: int) -> PtxRows:
    """Prompt ids as PPO encodes its prompts; completion ids end with EOS, as a rollout does."""
    prompts, completions = [], []
    for prompt, completion in pairs:
        ids = tokenizer(completion, add_special_tokens=False)["input_ids"]
        prompts.append(encode_prompt(prompt))
        completions.append([*ids[: max_completion_tokens - 1], tokenizer.eos_token_id])
    return PtxRows(prompts, completions)


def ptx_indices(
    n_rows: int, update: int, batch: int, rank: int, world: int, seed: int
) -> list[int]:
    """This process's rows for global optimiser update `update` (0-based): positions
    [update * batch * world + rank * batch, + batch) of an endless sequence of seeded
    permutations, one per pass over the rows."""
    first = update * batch * world + rank * batch
    out = []
    for position in range(first, first + batch):
        epoch, offset = divmod(position, n_rows)
        gen = torch.Generator().manual_seed(seed * 100_019 + epoch)
        out.append(int(torch.randperm(n_rows, generator=gen)[offset]))
    return out


def completion_logprobs(model, rows: PtxRows, indices: list[int], pad_id: int, device):
    """(log-probs [B, T], completion mask [B, T], values [B, T]) of the chosen rows under the
    actor-critic at temperature 1 (the model's own likelihood)."""

    ids, att, mask, start = pack(
        [rows.prompts[i] for i in indices], [rows.completions[i] for i in indices], pad_id
    )
    ids, att, mask = ids.to(device), att.to(device), mask.to(device)
    logits, values = model(ids, att, start, 1.0)
    return logprobs_from_logits(logits, ids[:, start:]), mask, values
