"""Chunked, resumable stage runner: a kill at any point loses nothing and duplicates nothing.

Items stream in a deterministic order and are processed in fixed-size chunks. Each finished
chunk is committed atomically (written to a temporary file, fsynced, renamed) as
`work_dir/chunks/NNNNNNNN.jsonl`. A rerun skips committed chunks and redoes only the chunk
that was in flight; model calls inside it are served from the call cache where they were
already made. Memory stays flat: only one chunk is held at a time.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


class JobConfigMismatchError(RuntimeError):
    """The work directory holds a job made with different settings."""


@dataclass
class JobStats:
    items_total: int = 0
    items_done_before: int = 0
    items_processed: int = 0
    chunks_committed: int = 0
    seconds: float = 0.0


def _atomic_write_lines(path: Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(tmp, path)


class ChunkedJob:
    """One stage's resumable work directory.

    `fingerprint` is every setting that changes the output (model, seed, constitution hash,
    parameters). A rerun with a different fingerprint refuses to mix results; pass
    `overwrite=True` (CLI `--overwrite`) to start again.
    """

    def __init__(
        self,
        work_dir: str | Path,
        fingerprint: dict[str, Any],
        chunk_size: int = 64,
        overwrite: bool = False,
    ) -> None:
        self.work_dir = Path(work_dir)
        self.chunks_dir = self.work_dir / "chunks"
        self.chunk_size = chunk_size
        self.fingerprint = json.loads(json.dumps(fingerprint, sort_keys=True, default=str))
        meta_path = self.work_dir / "job.json"
        if overwrite and self.chunks_dir.exists():
            for stale in self.chunks_dir.iterdir():
                stale.unlink()
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        meta = {"fingerprint": self.fingerprint, "chunk_size": chunk_size}
        if meta_path.exists() and not overwrite:
            existing = json.loads(meta_path.read_text())
            if existing != meta:
                changed = sorted(
                    k
                    for k in set(existing.get("fingerprint", {})) | set(self.fingerprint)
                    if existing.get("fingerprint", {}).get(k) != self.fingerprint.get(k)
                )
                if existing.get("chunk_size") != chunk_size:
                    changed.append("chunk_size")
                raise JobConfigMismatchError(
                    f"{self.work_dir} holds results made with different settings "
                    f"(changed: {', '.join(changed)}). Resuming would mix them. Use another "
                    "output directory, restore the settings, or pass --overwrite to start again."
                )
        else:
            meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True))

    def _chunk_path(self, index: int) -> Path:
        return self.chunks_dir / f"{index:08d}.jsonl"

    def committed_chunks(self) -> list[int]:
        return sorted(int(p.stem) for p in self.chunks_dir.glob("*.jsonl"))

    def run(
        self,
        items: Iterable[T],
        process: Callable[[list[T]], list[dict[str, Any]]],
        total: int | None = None,
        desc: str = "working",
        unit: str = "item",
    ) -> JobStats:
        """Process every uncommitted chunk of `items` with `process` (a batch function)."""
        from tqdm.auto import tqdm

        started = time.monotonic()
        done = set(self.committed_chunks())
        stats = JobStats(items_total=total or 0)
        iterator = iter(items)
        bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, smoothing=0.1)
        index = 0
        while True:
            chunk = list(islice(iterator, self.chunk_size))
            if not chunk:
                break
            if index in done:
                stats.items_done_before += len(chunk)
                bar.update(len(chunk))
            else:
                rows = process(chunk)
                _atomic_write_lines(self._chunk_path(index), rows)
                stats.items_processed += len(chunk)
                stats.chunks_committed += 1
                bar.update(len(chunk))
            index += 1
        bar.close()
        stats.items_total = stats.items_done_before + stats.items_processed
        stats.seconds = time.monotonic() - started
        return stats

    def iter_results(self) -> Iterator[dict[str, Any]]:
        """Every committed row, in input order."""
        for index in self.committed_chunks():
            with self._chunk_path(index).open(encoding="utf-8") as handle:
                for line in handle:
                    if line.strip():
                        yield json.loads(line)
