"""Hugging Face Hub datasets as sources: an `owner/name` that is not a local path is looked
up on the Hub, and every way that fails (offline, missing, private) is one clear error."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cai.hub import hub_unavailable
from cai.tables.rows import InputFormatError, TableRow

_HUB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*")
_TABLE_SUFFIXES = (".jsonl", ".json", ".csv", ".parquet")


def is_hub_id(source: str | Path) -> bool:
    """Whether `source` names a Hugging Face Hub dataset: `owner/name` where neither that
    path nor a local directory `owner` exists, and `name` is not a file name cai reads (a
    missing `runs/prefs` or `data/prefs.jsonl` stays a local path, and fails as one)."""
    text = str(source)
    if not _HUB_ID.fullmatch(text) or ".." in text:
        return False
    path = Path(text)
    return path.suffix.lower() not in _TABLE_SUFFIXES and not path.parent.exists()


def _hub_error(repo_id: str, err: BaseException) -> InputFormatError:
    from datasets.exceptions import DatasetNotFoundError

    text = str(err).strip()
    detail = text.splitlines()[0][:200] if text else type(err).__name__
    if isinstance(err, ConnectionError):
        return InputFormatError(
            f"no such file or directory, and the Hugging Face Hub cannot be reached to look "
            f"it up as a dataset ({detail})",
            file=repo_id,
            fix="Check the path; for a Hub dataset, connect to the network (and unset "
            "HF_HUB_OFFLINE), or download it and point at the local copy.",
        )
    if isinstance(err, DatasetNotFoundError | FileNotFoundError):
        return InputFormatError(
            "no such file or directory, and no such dataset on the Hugging Face Hub",
            file=repo_id,
            fix="Check the path or the Hub dataset id (owner/name); a private dataset needs "
            "a token (HF_TOKEN).",
        )
    return InputFormatError(
        f"the Hugging Face Hub dataset cannot be read ({type(err).__name__}: {detail})",
        file=repo_id,
        fix="Check the dataset id and split, or download it and point at the local copy.",
    )


def hub_dataset(repo_id: str, split: str | None, streaming: bool) -> Any:
    """`split` (default `train`) of a Hub dataset: a `Dataset`, or an `IterableDataset`
    when `streaming`."""
    import datasets

    unavailable = hub_unavailable()
    if unavailable:
        raise _hub_error(repo_id, ConnectionError(unavailable))
    try:
        return datasets.load_dataset(repo_id, split=split or "train", streaming=streaming)
    except Exception as err:  # the Hub fails in many ways (network, auth, missing split)
        raise _hub_error(repo_id, err) from None


def hub_rows(repo_id: str, split: str | None) -> Iterator[TableRow]:
    """Rows of a Hub dataset, streamed."""
    rows = iter(hub_dataset(repo_id, split, streaming=True))
    number = 0
    while True:
        try:
            item = next(rows)
        except StopIteration:
            return
        except Exception as err:  # a network error part-way through the stream
            raise _hub_error(repo_id, err) from None
        number += 1
        yield TableRow(number, dict(item))
