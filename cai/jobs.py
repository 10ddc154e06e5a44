"""Chunked, resumable stage runner: a kill, a rerun or a changed input never mixes results.

Items stream in a deterministic order and are processed in fixed-size chunks. Each chunk's
resume identity has two parts:
- the job's **settings fingerprint** (model identity, seed, constitution and template hashes,
  parameters), kept in `job.json`: a rerun with different settings is refused with the names
  of the changed keys and the two ways forward (`--overwrite`, or a new `--out`);
- the chunk's **input digest**, a hash of the content of the items in it (prompt ids and
  texts, or the samples a judge chunk is built from), kept in the chunk's file name
  `chunks/NNNNNNNN-<digest>.jsonl`. Name and content are committed by one atomic rename.

On a rerun a chunk is reused only when its index *and* input digest match; a chunk whose
inputs changed is recomputed, and chunks past the new end are dropped, so the result equals a
fresh run on the new inputs (model calls already made come from the call cache). Digests
chain stage to stage because a stage's items are the previous stage's rows.

Chunks are processed in this process or by an executor (`cai.executors`: a pool of Ray
actors, for instance); either way this process alone commits them, so the files are the same.

`job.json` records whether the last run finished and which chunk files make up the result;
`iter_results` reads exactly those and refuses an unfinished job, so a later stage never reads
a half-written one. The work directory is locked while a job is open.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, Protocol, TypeVar

from cai.errors import CaiError
from cai.files import DirectoryLock, atomic_write_json, atomic_write_lines, atomic_write_text

T = TypeVar("T")
JOB_FILE = "job.json"
_CHUNK_NAME = re.compile(r"^(\d{8})(?:-([0-9a-f]{16}))?\.jsonl$")


class JobConfigMismatchError(CaiError, RuntimeError):
    """The work directory holds a job made with different settings."""


class JobIncompleteError(CaiError, RuntimeError):
    """A stage's results are read before the stage finished."""


@dataclass
class JobStats:
    items_total: int = 0
    items_done_before: int = 0
    items_processed: int = 0
    chunks_committed: int = 0
    chunks_dropped: int = 0
    seconds: float = 0.0
    executor: Any = None
    """The executor's report (`cai.executors.ExecutorReport`), when one ran the chunks."""
    stopped: bool = False
    """The gate refused a chunk: the job stopped at a chunk boundary, unfinished."""


class ChunkGate(Protocol):
    """Decides whether the next uncommitted chunk may start (a token budget, for instance)."""

    def admit(self, size: int) -> bool:
        """May a chunk of `size` items start? False stops the job before it."""
        ...

    def done(self, path: Path, size: int) -> None:
        """A chunk of `size` items is committed at `path` (now, or by an earlier run)."""
        ...


@dataclass(frozen=True)
class EncodedRows:
    """A chunk's rows already encoded as the JSONL text a commit writes (`encode_rows`).

    Workers in other processes encode their rows where they run, so the single writer only
    writes text: it neither decodes nor re-encodes them. The bytes are the same either way.
    """

    text: str
    count: int


def encode_rows(rows: Iterable[dict[str, Any]]) -> EncodedRows:
    """Rows as the exact JSONL text `atomic_write_lines` writes for them."""
    lines = [json.dumps(row, ensure_ascii=False) + "\n" for row in rows]
    return EncodedRows("".join(lines), len(lines))


class ChunkExecutor(Protocol):
    """What `ChunkedJob.run` needs of an executor session (see `cai.executors`)."""

    def map(
        self, chunks: Iterable[tuple[int, list[Any]]]
    ) -> Iterator[tuple[int, list[dict[str, Any]] | EncodedRows]]: ...


class _InProcess:
    """`process` as an executor: each chunk here, in order."""

    def __init__(self, process: Callable[[list[Any]], list[dict[str, Any]]]) -> None:
        self.process = process

    def map(
        self, chunks: Iterable[tuple[int, list[Any]]]
    ) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        for index, chunk in chunks:
            yield index, self.process(chunk)


def _canonical(value: Any) -> Any:
    return json.loads(json.dumps(value, sort_keys=True, default=str))


def item_content(item: Any) -> Any:
    """What identifies an item's content: a pydantic model's JSON dump, or the value itself."""
    dump = getattr(item, "model_dump", None)
    return dump(mode="json") if callable(dump) else item


def chunk_digest(items: Iterable[Any]) -> str:
    """A 16-hex-digit hash of the content of a chunk's items, in order."""
    digest = hashlib.sha256()
    for item in items:
        blob = json.dumps(item_content(item), sort_keys=True, ensure_ascii=False, default=str)
        digest.update(blob.encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()[:16]


def changed_keys(old: dict[str, Any], new: dict[str, Any], prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two fingerprints (nested dicts walked)."""
    out = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += changed_keys(a, b, f"{prefix}{key}.")
        else:
            out.append(f"{prefix}{key}")
    return out


def read_job_file(work_dir: str | Path) -> dict[str, Any] | None:
    """The parsed job.json of a work directory, None when there is none."""
    path = Path(work_dir) / JOB_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise JobConfigMismatchError(
            f"cannot read the job record ({err})",
            file=path,
            fix="The directory was damaged outside cai; rerun with --overwrite to start the "
            "stage again, or use another --out.",
        ) from err
    if not isinstance(data, dict) or not isinstance(data.get("fingerprint"), dict):
        raise JobConfigMismatchError(
            "is not a cai job record",
            file=path,
            fix="Rerun with --overwrite to start the stage again, or use another --out.",
        )
    return data


def check_fingerprint(
    work_dir: str | Path,
    fingerprint: dict[str, Any],
    chunk_size: int,
    ignore: Iterable[str] = (),
) -> None:
    """Refuse (before any work) when `work_dir` holds a job with other settings.

    `ignore` names top-level keys not known yet (e.g. a model identity that needs the engine);
    the job checks them again when it opens.
    """
    existing = read_job_file(work_dir)
    if existing is None:
        return
    skip = set(ignore)
    old = {k: v for k, v in existing["fingerprint"].items() if k not in skip}
    new = {k: v for k, v in _canonical(fingerprint).items() if k not in skip}
    changed = changed_keys(old, new)
    if existing.get("chunk_size") != chunk_size:
        changed.append("chunk_size")
    if changed:
        raise JobConfigMismatchError(
            f"holds results made with different settings (changed: {', '.join(changed)}); "
            "resuming would mix them",
            file=work_dir,
            fix="Restore those settings to resume, pass --overwrite to discard the old results, "
            "or write to a new directory with --out.",
        )


def _chunk_files(chunks_dir: Path) -> dict[int, list[Path]]:
    """Committed chunk files by index (an index may have stale files from older inputs)."""
    found: dict[int, list[Path]] = {}
    if chunks_dir.is_dir():
        for path in chunks_dir.iterdir():
            match = _CHUNK_NAME.match(path.name)
            if match:
                found.setdefault(int(match.group(1)), []).append(path)
    return found


class ChunkedJob:
    """One stage's resumable work directory; use as a context manager (it holds a lock)."""

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
        self.fingerprint = _canonical(fingerprint)
        self._lock = DirectoryLock(self.work_dir, "stage directory").acquire()
        try:
            self._open(overwrite)
        except BaseException:
            self._lock.release()
            raise

    def _open(self, overwrite: bool) -> None:
        if overwrite:
            for files in _chunk_files(self.chunks_dir).values():
                for path in files:
                    path.unlink()
            (self.work_dir / JOB_FILE).unlink(missing_ok=True)
        else:
            check_fingerprint(self.work_dir, self.fingerprint, self.chunk_size)
        self.chunks_dir.mkdir(parents=True, exist_ok=True)
        existing = read_job_file(self.work_dir)
        self._complete = existing.get("complete") if existing else None
        if existing is None:
            self._write_meta(None)

    def _write_meta(self, complete: dict[str, Any] | None) -> None:
        meta = {
            "fingerprint": self.fingerprint,
            "chunk_size": self.chunk_size,
            "complete": complete,
        }
        atomic_write_json(self.work_dir / JOB_FILE, meta)
        self._complete = complete

    # context management -----------------------------------------------------------------------
    def close(self) -> None:
        self._lock.release()

    def __enter__(self) -> ChunkedJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # running ----------------------------------------------------------------------------------
    def _chunk_path(self, index: int, digest: str) -> Path:
        return self.chunks_dir / f"{index:08d}-{digest}.jsonl"

    @staticmethod
    def _commit(path: Path, rows: list[dict[str, Any]] | EncodedRows) -> None:
        """Name and content of one chunk, in one atomic rename."""
        if isinstance(rows, EncodedRows):
            atomic_write_text(path, rows.text)
        else:
            atomic_write_lines(path, rows)

    def run(
        self,
        items: Iterable[T],
        process: Callable[[list[T]], list[dict[str, Any]]] | None = None,
        total: int | None = None,
        desc: str = "working",
        unit: str = "item",
        executor: ChunkExecutor | None = None,
        gate: ChunkGate | None = None,
    ) -> JobStats:
        """Process every chunk of `items` not already committed for the same inputs.

        The chunks are processed by `process` in this process, or by `executor` (an
        `ExecutorSession` of `cai.executors`: anything whose `map` takes `(index, chunk)`
        pairs and yields `(index, rows)` in the same order, rows as dicts or
        `EncodedRows`). Chunks already committed for the same input digest are skipped
        before dispatch; every other chunk is committed here, by this process alone, as its
        rows come back. A `gate` that refuses a chunk stops the job there: chunks already
        in flight are committed, the job stays unfinished (a rerun resumes) and the stats
        say `stopped`.
        """
        from tqdm.auto import tqdm

        if (process is None) == (executor is None):
            raise TypeError("ChunkedJob.run needs exactly one of `process` or `executor`")
        if executor is None:
            assert process is not None
            executor = _InProcess(process)
        started = time.monotonic()
        if self._complete is not None:
            self._write_meta(None)  # results are in flux until this run finishes
        label = getattr(executor, "label", "")
        bar = tqdm(
            total=total,
            desc=f"{desc} [{label}]" if label else desc,
            unit=unit,
            dynamic_ncols=True,
            smoothing=0.1,
        )
        sweep = _Sweep(self, _chunk_files(self.chunks_dir), JobStats(items_total=total or 0), bar)
        sweep.gate = gate
        for index, rows in executor.map(sweep.to_process(items)):
            sweep.commit(index, rows)
        bar.close()
        stats = sweep.stats
        if sweep.stopped and not sweep.pending:
            stats.stopped = True
        elif sweep.pending or not sweep.drained:
            raise RuntimeError(
                f"the executor stopped early (no rows for chunk(s) {sorted(sweep.pending)})"
            )
        else:
            stats.chunks_dropped = sweep.drop_past_end()
        stats.items_total = stats.items_done_before + stats.items_processed
        if not stats.stopped:
            self._write_meta({"chunks": sweep.names, "items": stats.items_total})
        stats.seconds = time.monotonic() - started
        report = getattr(executor, "report", None)
        stats.executor = report() if callable(report) else None
        return stats

    def iter_results(self) -> Iterator[dict[str, Any]]:
        """Every row of the finished job, in input order."""
        return iter_job_results(self.work_dir)


@dataclass
class _Sweep:
    """One pass of `ChunkedJob.run` over the items: which chunks are already committed (and
    counted), which are in flight, and which files of earlier runs no longer match an input."""

    job: ChunkedJob
    existing: dict[int, list[Path]]
    stats: JobStats
    bar: Any
    gate: ChunkGate | None = None
    names: list[str] = field(default_factory=list)
    pending: dict[int, tuple[Path, list[Path], int]] = field(default_factory=dict)
    drained: bool = False
    stopped: bool = False

    def to_process(self, items: Iterable[Any]) -> Iterator[tuple[int, list[Any]]]:
        """The chunks not committed yet; committed ones are counted and passed over."""
        iterator = iter(items)
        index = 0
        while True:
            chunk = list(islice(iterator, self.job.chunk_size))
            if not chunk:
                self.drained = True
                return
            path = self.job._chunk_path(index, chunk_digest(chunk))
            stale = [p for p in self.existing.get(index, []) if p != path]
            self.names.append(path.name)
            if path.is_file():
                self.stats.items_done_before += len(chunk)
                _unlink_all(stale)  # written for inputs that changed since
                self.bar.update(len(chunk))
                if self.gate is not None:
                    self.gate.done(path, len(chunk))
            elif self.gate is not None and not self.gate.admit(len(chunk)):
                self.stopped = True
                return
            else:
                self.pending[index] = (path, stale, len(chunk))
                yield index, chunk
            index += 1

    def commit(self, index: int, rows: list[dict[str, Any]] | EncodedRows) -> None:
        """Commit one processed chunk, by this process alone, and retire its stale files."""
        if index not in self.pending:
            raise RuntimeError(f"the executor returned chunk {index} twice or unasked")
        path, stale, size = self.pending.pop(index)
        self.job._commit(path, rows)
        self.stats.items_processed += size
        self.stats.chunks_committed += 1
        _unlink_all(stale)  # written for inputs that changed since
        self.bar.update(size)
        if self.gate is not None:
            self.gate.done(path, size)

    def drop_past_end(self) -> int:
        """Delete chunks beyond the (possibly shorter) new input; returns how many."""
        past_end = [i for i in self.existing if i >= len(self.names)]
        for index in past_end:
            _unlink_all(self.existing[index])
        return len(past_end)


def _unlink_all(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def job_is_complete(work_dir: str | Path) -> bool:
    meta = read_job_file(work_dir)
    return bool(meta and meta.get("complete"))


def job_fingerprint(work_dir: str | Path) -> dict[str, Any] | None:
    meta = read_job_file(work_dir)
    return meta["fingerprint"] if meta else None


def finished_chunk_files(work_dir: str | Path) -> list[Path]:
    """The chunk files of a finished job, in order ([] while it is unfinished)."""
    meta = read_job_file(work_dir)
    if not meta or not meta.get("complete"):
        return []
    return [Path(work_dir) / "chunks" / name for name in meta["complete"].get("chunks", [])]


def job_item_count(work_dir: str | Path) -> int:
    meta = read_job_file(work_dir)
    if not meta or not meta.get("complete"):
        return 0
    return int(meta["complete"].get("items", 0))


def iter_job_results(work_dir: str | Path, what: str = "stage") -> Iterator[dict[str, Any]]:
    """The rows of a finished job, reading exactly the chunk files its last run committed."""
    work_dir = Path(work_dir)
    meta = read_job_file(work_dir)
    if meta is None:
        raise JobIncompleteError(
            f"holds no {what} results (no {JOB_FILE})",
            file=work_dir,
            fix=f"Run the {what} stage first, or point at the directory it wrote.",
        )
    complete = meta.get("complete")
    if not complete:
        raise JobIncompleteError(
            f"the {what} stage that writes here has not finished (interrupted, or running now)",
            file=work_dir,
            fix=f"Rerun the {what} stage (the same command resumes it) before using its results.",
        )
    for name in complete.get("chunks", []):
        path = work_dir / "chunks" / name
        try:
            handle = path.open(encoding="utf-8")
        except FileNotFoundError as err:
            raise JobIncompleteError(
                f"chunk {name} of the finished {what} stage is missing",
                file=work_dir,
                fix="The directory was changed outside cai; rerun the stage with --overwrite.",
            ) from err
        with handle:
            for number, line in enumerate(handle, 1):
                if line.strip():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError as err:
                        raise JobIncompleteError(
                            f"damaged chunk file ({err.msg})",
                            file=path,
                            line=number,
                            fix="Delete that chunk file and rerun the stage to recompute it.",
                        ) from err
