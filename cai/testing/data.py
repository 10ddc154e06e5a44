"""Small random datasets in cai's formats, for tests and examples that need rows, not meaning."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from pathlib import Path

from cai.records import PreferenceRow, stable_id
from cai.testing.tiny import _WORDS


def random_sentence(rng: random.Random, n: int = 6) -> str:
    return " ".join(rng.choice(_WORDS) for _ in range(n))


def write_random_prompts(path: str | Path, n: int, seed: int = 1) -> str:
    """A prompts JSONL file (one `prompt` text per line); returns its path."""
    rng = random.Random(seed)
    with Path(path).open("w") as handle:
        for _ in range(n):
            handle.write(json.dumps({"prompt": random_sentence(rng)}) + "\n")
    return str(path)


def write_random_preferences(
    path: str | Path, n: int = 8, seed: int = 0, principles: Sequence[str] = ()
) -> str:
    """A preference JSONL file of cai PreferenceRows with random text; returns its path."""
    rng = random.Random(seed)
    with Path(path).open("w") as handle:
        for i in range(n):
            prompt = [{"role": "user", "content": random_sentence(rng)}]
            row = PreferenceRow(
                prompt=prompt,
                chosen=[{"role": "assistant", "content": random_sentence(rng)}],
                rejected=[{"role": "assistant", "content": random_sentence(rng)}],
                prompt_id=stable_id(prompt),
                pair_id=stable_id(prompt, i),
                prob_chosen=0.8,
                principles=list(principles),
            )
            handle.write(row.model_dump_json() + "\n")
    return str(path)
