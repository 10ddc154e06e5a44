"""Writing and reading SL-CAI datasets: SFT rows and revised-vs-initial preference pairs.

A dataset is a directory: `save_to_disk` output (a DatasetDict with a `train` split and, under
the `split` guard policy, a `flagged` split), or one `<split>.parquet` / `<split>.jsonl` file
per split. The same reader loads all three, so `cai train sft` takes whichever was written.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Literal

from cai.errors import CaiError
from cai.files import clear_dataset_dir
from cai.records import PreferenceRow, stable_id

DatasetFormat = Literal["disk", "parquet", "jsonl"]
FORMATS: tuple[str, ...] = ("disk", "parquet", "jsonl")

#: Flags that make a revised-vs-initial pair meaningless (nothing better to prefer).
NO_PAIR_FLAGS = frozenset({"empty_revision", "unchanged_revision", "generation_failed"})


class DatasetReadError(CaiError, ValueError):
    """A path does not hold an SFT or preference dataset that cai wrote or can read."""


def write_splits(
    splits: dict[str, list[dict[str, Any]]],
    directory: str | Path,
    fmt: DatasetFormat = "disk",
    card: str | None = None,
    schema_example: dict[str, Any] | None = None,
) -> Path:
    """Write each split (empty ones other than `train` are skipped) and an optional README card.

    An empty `train` split still gets its columns (from another split's rows or from
    `schema_example`), so readers see a valid, empty dataset rather than a broken one.
    """
    from datasets import DatasetDict

    if fmt not in FORMATS:
        raise ValueError(f"unknown dataset format {fmt!r}; choose one of {', '.join(FORMATS)}.")
    directory = Path(directory)
    clear_dataset_dir(directory)
    directory.mkdir(parents=True, exist_ok=True)
    kept = {name: rows for name, rows in splits.items() if rows or name == "train"}
    example = next((rows[0] for rows in splits.values() if rows), schema_example)
    datasets = {name: _dataset(rows, example) for name, rows in kept.items()}
    if fmt == "disk":
        # An empty split needs one explicit shard, or datasets writes no file and cannot load it.
        shards = {name: 1 for name, dataset in datasets.items() if len(dataset) == 0}
        DatasetDict(datasets).save_to_disk(str(directory), num_shards=shards)
    else:
        for name, dataset in datasets.items():
            target = directory / f"{name}.{fmt}"
            if fmt == "parquet":
                dataset.to_parquet(str(target))
            else:
                with target.open("w", encoding="utf-8") as handle:
                    for row in kept[name]:
                        handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    if card:
        (directory / "README.md").write_text(card, encoding="utf-8")
    return directory


def _dataset(rows: list[dict[str, Any]], example: dict[str, Any] | None):
    from datasets import Dataset

    if rows or example is None:
        return Dataset.from_list(rows)
    features = Dataset.from_list([example]).features
    return Dataset.from_dict({name: [] for name in features}, features=features)


def load_split(path: str | Path, split: str = "train"):
    """A `datasets.Dataset` from a directory written by `write_splits`, or from one file."""
    import datasets

    path = Path(path)
    if not path.exists():
        raise DatasetReadError(f"{path}: no such dataset. Run `cai revise` first, or fix the path.")
    if path.is_file():
        kind = {".jsonl": "json", ".json": "json", ".parquet": "parquet"}.get(path.suffix.lower())
        if kind is None:
            raise DatasetReadError(
                f"{path}: unknown dataset file type; use .jsonl, .parquet or a dataset directory."
            )
        return _load_file(path, kind)
    if (path / "dataset_dict.json").is_file() or (path / "dataset_info.json").is_file():
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if split not in loaded:
                raise DatasetReadError(
                    f"{path}: no split {split!r} (splits: {', '.join(loaded)}). Choose one with --split."
                )
            return loaded[split]
        return loaded
    for suffix, kind in ((".parquet", "parquet"), (".jsonl", "json")):
        candidate = path / f"{split}{suffix}"
        if candidate.is_file():
            return _load_file(candidate, kind)
    found = sorted(p.name for p in path.iterdir())
    raise DatasetReadError(
        f"{path}: no {split!r} split here (found: {', '.join(found) or 'nothing'}). Expected a "
        f"save_to_disk directory or {split}.parquet / {split}.jsonl."
    )


def _load_file(path: Path, kind: str):
    """One JSONL or Parquet file as a Dataset; empty files give empty datasets, not errors."""
    import datasets

    if kind == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        if table.num_rows == 0:
            return datasets.Dataset(datasets.table.InMemoryTable(table))
    elif path.stat().st_size == 0:
        return datasets.Dataset.from_list([])
    return datasets.load_dataset(kind, data_files=str(path), split="train")


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
