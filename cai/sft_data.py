"""Writing and reading SL-CAI datasets: SFT rows and revised-vs-initial preference pairs.

A dataset is a directory: `save_to_disk` output (a DatasetDict with a `train` split and, under
the `split` guard policy, a `flagged` split), or one `<split>.parquet` / `<split>.jsonl` file
per split. `cai.tables` writes and reads all three, so `cai train sft` takes whichever
was written. `disk`, the spelling `cai revise` configs accept, means `save_to_disk`.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cai.records import PreferenceRow, stable_id
from cai.tables import FORMATS, DatasetFormat, dataset_from_rows, load_table
from cai.tables import write_splits as _write_splits

__all__ = [
    "FORMATS",
    "NO_PAIR_FLAGS",
    "DatasetFormat",
    "load_split",
    "preference_schema_example",
    "revision_preferences",
    "write_splits",
]

#: Flags that make a revised-vs-initial pair meaningless (nothing better to prefer).
NO_PAIR_FLAGS = frozenset({"empty_revision", "unchanged_revision", "generation_failed"})


def write_splits(
    splits: dict[str, list[dict[str, Any]]],
    directory: str | Path,
    fmt: str = "save_to_disk",
    card: str | None = None,
    schema_example: dict[str, Any] | None = None,
) -> Path:
    """Write each split (empty ones other than `train` are skipped) and an optional README card.

    An empty `train` split still gets its columns (from another split's rows or from
    `schema_example`), so readers see a valid, empty dataset rather than a broken one.
    """
    features = None
    if schema_example is not None and not any(splits.values()):
        features = dataset_from_rows([schema_example]).features
    return _write_splits(splits, directory, fmt, card=card, features=features)


def load_split(path: str | Path, split: str = "train"):
    """A `datasets.Dataset` from a directory written by `write_splits`, or from one file."""
    return load_table(path, split)


def preference_schema_example() -> dict[str, Any]:
    """One placeholder PreferenceRow (its columns), for writing an empty preference dataset."""
    message = [{"role": "user", "content": ""}]
    return PreferenceRow(
        prompt=message, chosen=message, rejected=message, prompt_id="", pair_id="", prob_chosen=1.0
    ).model_dump()


def revision_preferences(
    rows: Iterable[dict[str, Any]], prob_chosen: float = 1.0
) -> tuple[list[dict[str, Any]], int]:
    """Final revision as chosen, initial answer as rejected; (rows, pairs skipped).

    No judge compared the two: `prob_chosen` is an assumption (default 1.0) recorded with
    `n_judgments=0` and `method="revision"`, so these rows are never mistaken for judged ones.
    Rows whose flags leave nothing to prefer (empty, unchanged, failed) are skipped and counted.
    """
    out = []
    skipped = 0
    for row in rows:
        final = row["messages"][-1]["content"]
        if (
            set(row.get("flags") or []) & NO_PAIR_FLAGS
            or final.strip() == row["initial_response"].strip()
        ):
            skipped += 1
            continue
        prompt = row["messages"][:-1]
        pair = PreferenceRow(
            prompt=prompt,
            chosen=[{"role": "assistant", "content": final}],
            rejected=[{"role": "assistant", "content": row["initial_response"]}],
            prompt_id=row["prompt_id"],
            pair_id=stable_id(row["prompt_id"], "revision", final, row["initial_response"]),
            prob_chosen=prob_chosen,
            n_judgments=0,
            orders_agree=None,
            principles=list(row.get("principles") or []),
            judge_model=row.get("policy_model"),
            constitution_name=row.get("constitution_name"),
            constitution_hash=row.get("constitution_hash"),
            source="ai",
            method="revision",
        )
        out.append(pair.model_dump())
    return out, skipped
