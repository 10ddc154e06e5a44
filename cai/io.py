"""Reading prompts and writing datasets, streaming so memory stays flat.

Prompts come from JSONL, CSV, Parquet or a dataset saved with `save_to_disk`; each row holds
either a text column (one user turn) or a conversational `messages` column.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.errors import CaiError
from cai.records import PromptRecord, stable_id

TEXT_COLUMNS = ("prompt", "text", "instruction", "question", "input")
MESSAGE_COLUMNS = ("messages", "conversation", "prompt")


class InputFormatError(CaiError, ValueError):
    """A prompts file could not be read as prompts."""


def _iter_rows(path: Path) -> Iterator[dict[str, Any]]:
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        if hasattr(dataset, "keys"):  # a DatasetDict: use its first split
            dataset = dataset[next(iter(dataset.keys()))]
        yield from dataset
        return
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json"):
        with path.open(encoding="utf-8") as handle:
            for number, line in enumerate(handle, 1):
                if not line.strip():
                    continue
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as err:
                    raise InputFormatError(
                        f"{path}:{number}: not valid JSON ({err.msg}). Each line must be one JSON object."
                    ) from err
    elif suffix == ".csv":
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()
    else:
        raise InputFormatError(
            f"{path}: unknown prompts format {suffix!r}. Use .jsonl, .csv, .parquet or a directory "
            "written by datasets' save_to_disk."
        )


def _to_messages(row: dict[str, Any], column: str | None, where: str) -> list[dict[str, str]]:
    if column is not None:
        if column not in row:
            raise InputFormatError(f"{where}: no column {column!r} (columns: {', '.join(row)}).")
        candidates = [column]
    else:
        candidates = [c for c in (*MESSAGE_COLUMNS, *TEXT_COLUMNS) if c in row]
        if not candidates:
            raise InputFormatError(
                f"{where}: no prompt column found (columns: {', '.join(row)}). Name one with "
                f"--prompt-column, or use one of: {', '.join(dict.fromkeys(MESSAGE_COLUMNS + TEXT_COLUMNS))}."
            )
    value = row[candidates[0]]
    if isinstance(value, str):
        if not value.strip():
            raise InputFormatError(f"{where}: the prompt in column {candidates[0]!r} is empty.")
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
        messages = [
            {"role": str(m.get("role")), "content": str(m.get("content", ""))} for m in value
        ]
        while messages and messages[-1]["role"] == "assistant":
            messages.pop()  # a prompt ends at the last user turn
        if not messages or messages[-1]["role"] != "user":
            raise InputFormatError(f"{where}: the conversation has no user turn to answer.")
        return messages
    raise InputFormatError(
        f"{where}: column {candidates[0]!r} must hold a string or a list of "
        "{'role', 'content'} messages."
    )


def iter_prompts(
    path: str | Path, column: str | None = None, limit: int | None = None
) -> Iterator[PromptRecord]:
    """Stream prompts in file order; ids are content hashes, so they are stable across runs."""
    path = Path(path)
    if not path.exists():
        raise InputFormatError(f"{path}: no such file or directory.")
    for number, row in enumerate(_iter_rows(path), 1):
        if limit is not None and number > limit:
            return
        messages = _to_messages(row, column, f"{path} row {number}")
        prompt_id = str(row.get("id") or row.get("prompt_id") or stable_id(messages))
        yield PromptRecord(prompt_id=prompt_id, prompt=messages)


def count_rows(path: str | Path, limit: int | None = None) -> int:
    """Number of prompts (cheap for JSONL and Parquet; for progress bars)."""
    path = Path(path)
    if path.is_dir():
        from datasets import load_from_disk

        dataset = load_from_disk(str(path))
        n = len(dataset[next(iter(dataset.keys()))]) if hasattr(dataset, "keys") else len(dataset)
    elif path.suffix.lower() == ".parquet":
        import pyarrow.parquet as pq

        n = pq.ParquetFile(path).metadata.num_rows
    else:
        with path.open(encoding="utf-8") as handle:
            n = sum(1 for line in handle if line.strip())
        if path.suffix.lower() == ".csv":
            n -= 1
    return min(n, limit) if limit is not None else n
