"""Responses to judge, from the tables people already have.

`cai judge` takes, besides a `cai sample` directory:
- cai's own sample rows (`prompt_id`, `prompt` messages, `responses`, `finish_reasons`,
  `policy_model`), e.g. a JSONL exported from a samples directory;
- any table with `prompt` (text or messages) and `responses` (a list of texts);
- a TRL preference dataset (`prompt` / `chosen` / `rejected`, text or conversational, or the
  implicit-prompt form) or an HH-RLHF one (`chosen` / `rejected` transcripts), to relabel.

Whatever the row does not say is filled in and marked as filled: `prompt_id` from the prompt's
content hash, finish reasons `"unknown"`, and the policy model `"unknown:<file name>"`. A row
that cannot be read stops the run before any model loads, with the file and row number.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from cai.errors import InputError
from cai.records import Sample, stable_id

UNKNOWN_FINISH = "unknown"
_CAI_FIELDS = {"prompt_id", "prompt", "responses", "finish_reasons", "policy_model"}


def _fail(path: Path, row: int, message: str) -> InputError:
    return InputError(
        message,
        file=path,
        row=row,
        fix="Each row needs `prompt` (text or messages) with `responses` (a list of texts), "
        "or TRL/HH `chosen` and `rejected` columns.",
    )


def _prompt_messages(value: Any) -> list[dict[str, str]]:
    from cai.human.pairs import prompt_messages

    return prompt_messages(value)


def sample_from_row(row: dict[str, Any], origin: str) -> Sample:
    """One Sample from one row of any supported shape (raises ValueError / CaiError)."""
    if set(row) >= _CAI_FIELDS:
        return Sample.model_validate(row)
    if "responses" in row:
        responses = row["responses"]
        if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
            raise ValueError("`responses` must be a list of texts")
        if "prompt" not in row:
            raise ValueError("a row with `responses` needs a `prompt` column")
        prompt = _prompt_messages(row["prompt"])
        finish = row.get("finish_reasons") or [UNKNOWN_FINISH] * len(responses)
        if len(finish) != len(responses):
            raise ValueError(
                f"{len(finish)} finish_reasons for {len(responses)} responses; give one each "
                "or leave the column out"
            )
    elif "chosen" in row and "rejected" in row:
        from cai.human.imports import CONVERTERS, detect_format

        pair = CONVERTERS[detect_format(row)](row)
        prompt = pair["prompt"]
        responses = [pair["chosen"][-1]["content"], pair["rejected"][-1]["content"]]
        finish = [UNKNOWN_FINISH, UNKNOWN_FINISH]
    else:
        raise ValueError(f"no responses found (columns: {', '.join(map(str, row)) or 'none'})")
    prompt_id = row.get("prompt_id") or row.get("id") or stable_id(prompt)
    return Sample(
        prompt_id=str(prompt_id),
        prompt=prompt,
        responses=list(responses),
        finish_reasons=[str(f) for f in finish],
        policy_model=str(row.get("policy_model") or f"unknown:{origin}"),
        seed=row.get("seed") if isinstance(row.get("seed"), int) else None,
    )


def iter_sample_rows(path: str | Path) -> Iterator[Sample]:
    """Samples from a table file or save_to_disk directory, in file order."""
    from cai.tables import RowError, iter_rows

    path = Path(path)
    if not path.exists():
        raise InputError(
            "no such samples file or directory",
            file=path,
            fix="Point at the output directory of `cai sample`, or at a .jsonl/.csv/.parquet "
            "file or save_to_disk dataset of responses.",
        )
    origin = path.name
    for number, row, _line in iter_rows(path):
        if isinstance(row, RowError):
            raise row
        try:
            yield sample_from_row(row, origin)
        except ValidationError as err:
            first = err.errors()[0]
            key = ".".join(str(p) for p in first["loc"]) or "row"
            raise _fail(path, number, f"{key}: {first['msg']}") from None
        except InputError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError) as err:
            raise _fail(path, number, str(err)) from None


def validate_samples(path: str | Path) -> int:
    """Read every sample once (before a model loads); the count, or the first bad row."""
    return sum(1 for _ in iter_sample_rows(path))
