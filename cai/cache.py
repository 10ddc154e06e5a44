"""A content-addressed SQLite cache of model calls: resume after a crash, never pay twice.

The key of one call is sha256(model identity + call kind + the full request + the sampling
parameters, including n and seed). `cai.backends.cached.CachedBackend` looks every item of a
batch up, sends only the misses to the engine, in chunks, and commits each chunk's results in
one transaction: a run killed with SIGKILL loses only the chunk in flight, and a rerun of a
finished job makes no model calls at all. WAL mode lets several processes read while one
writes. An unseeded sampling call is cached like any other: a rerun returns the same
samples, which is what resuming means; use a different seed to draw new ones.

Only successful answers are stored: a call that raised, and an answer that records an
engine error (`Generation.failed`, `ChoiceScore.failed`), is made again on the next run.

The cache is only a cache, so a damaged file must never stop a run: a file SQLite reports
as corrupt or as not a database is renamed to `<name>.corrupt-<timestamp>` (a warning on
stderr says so) and an empty cache takes its place. A file that is healthy but unusable
(read-only, locked by another process for longer than the busy timeout, a directory) is
left alone and reported as a `CacheError` that names it and the fix.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel

from cai.errors import CaiError
from cai.model_names import cai_home

T = TypeVar("T")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    key TEXT PRIMARY KEY,
    model_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    result TEXT NOT NULL,
    created REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_model ON calls (model_id, kind);
"""
_COLUMNS = {"key", "model_id", "kind", "result", "created"}

# SQLite primary result codes (https://sqlite.org/rescode.html).
_CORRUPT_CODES = {11, 26}  # SQLITE_CORRUPT, SQLITE_NOTADB
_LOCKED_CODES = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED
_READONLY_CODES = {3, 8, 23}  # SQLITE_PERM, SQLITE_READONLY, SQLITE_AUTH
_CANTOPEN, _IOERR, _FULL = 14, 10, 13


class CacheError(CaiError, RuntimeError):
    """The call cache file cannot be used as it is (read-only, locked, not a file, ...)."""


def call_key(model_id: str, kind: str, request: Any, params: Any = None) -> str:
    """The content address of one call."""
    payload = json.dumps(
        {"model": model_id, "kind": kind, "request": request, "params": params},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(payload.encode()).hexdigest()


def _retry_while_locked(action: Callable[[], Any], seconds: float = 60.0) -> None:
    deadline = time.monotonic() + seconds
    delay = 0.01
    while True:
        try:
            action()
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def _error_code(err: sqlite3.Error) -> int | None:
    """The primary SQLite result code of an error, when SQLite gave one."""
    code = getattr(err, "sqlite_errorcode", None)
    return None if code is None else code & 0xFF


def is_corrupt(err: sqlite3.Error) -> bool:
    """True when SQLite says the file is damaged or is not a database at all."""
    code = _error_code(err)
    if code is not None:
        return code in _CORRUPT_CODES
    text = str(err).lower()
    return "not a database" in text or "malformed" in text


def _file_id(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _close_quietly(conn: sqlite3.Connection | None) -> None:
    if conn is None:
        return
    with contextlib.suppress(sqlite3.Error):  # a damaged database may refuse; it is discarded
        conn.close()


class CacheSummary(BaseModel):
    """What `cai cache stats` prints."""

    path: str
    entries: int
    size_bytes: int
    by_model: dict[str, dict[str, int]]


class CallCache:
    """The SQLite store. Safe for threads of one process and for several processes.

    `busy_timeout_s` is how long a write waits for another process's write lock before the
    cache reports itself locked.
    """

    def __init__(self, path: str | Path, busy_timeout_s: float = 60.0) -> None:
        self.path = Path(path).expanduser()
        self.busy_timeout_s = busy_timeout_s
        self._in_memory = str(path) == ":memory:"
        self._lock = threading.Lock()
        self._file_id: tuple[int, int] | None = None
        self._conn: sqlite3.Connection | None = None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise CacheError(
                f"cannot create the directory of the call cache ({err.strerror})",
                file=self.path,
                fix="Set cache_path to a file in a writable directory",
            ) from err
        try:
            self._conn = self._open()
        except sqlite3.Error as err:
            self._discard_damaged(err)
            self._conn = self._open_fresh()

    # opening and recovery ----------------------------------------------------------------
    def _open(self) -> sqlite3.Connection:
        """Connect, check that the file is a cai cache, switch to WAL and create the schema."""
        self._file_id = _file_id(self.path)
        conn = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_s,
            isolation_level=None,
            check_same_thread=False,
        )
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_s * 1000)}")
            self._check_is_cache(conn)
            # Switching to WAL and creating the schema need a lock that SQLite does not wait
            # for (no busy handler), so two processes opening a new cache at once must retry.
            _retry_while_locked(
                lambda: conn.execute("PRAGMA journal_mode = WAL"), self.busy_timeout_s
            )
            conn.execute("PRAGMA synchronous = NORMAL")
            _retry_while_locked(lambda: conn.executescript(_SCHEMA), self.busy_timeout_s)
            conn.execute("SELECT key, result FROM calls LIMIT 1").fetchall()
        except BaseException:
            _close_quietly(conn)
            raise
        self._file_id = self._file_id or _file_id(self.path)
        return conn

    def _check_is_cache(self, conn: sqlite3.Connection) -> None:
        """Refuse another program's SQLite database instead of adding a table to it."""
        query = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
        tables = {row[0] for row in conn.execute(query)} - {"calls"}
        columns = {row[1] for row in conn.execute("PRAGMA table_info(calls)")}
        if tables or (columns and not columns >= _COLUMNS):
            raise CacheError(
                "this SQLite database is not a cai call cache (it holds "
                f"{', '.join(sorted(tables)) or 'another calls table'})",
                file=self.path,
                fix="Set cache_path to another file; cai does not write into other databases",
            )

    def _open_fresh(self) -> sqlite3.Connection:
        """Open the empty cache that replaces a damaged one; any failure now is final."""
        try:
            return self._open()
        except sqlite3.Error as err:
            self._raise_unusable(err)
            raise  # pragma: no cover - _raise_unusable always raises

    def _discard_damaged(self, err: sqlite3.Error) -> None:
        """Move a corrupt cache aside (and warn); raise CacheError for any other failure."""
        if self._in_memory or not is_corrupt(err):
            self._raise_unusable(err)
        _close_quietly(self._conn)
        self._conn = None
        moved = self._move_aside(err)
        if moved is not None:
            print(
                f"warning: {self.path}: the call cache is corrupt ({err}); moved it to "
                f"{moved} and started an empty cache, so earlier calls will be made again. "
                "Delete the moved file when you no longer need it; `cai cache clear` empties "
                "a cache.",
                file=sys.stderr,
                flush=True,
            )

    def _move_aside(self, err: sqlite3.Error) -> Path | None:
        """Rename the damaged file to `<name>.corrupt-<timestamp>`; None if already gone.

        Another process may have moved it and created a fresh cache in the meantime; that
        new file (a different inode) is left alone.
        """
        if self._file_id is None or _file_id(self.path) != self._file_id:
            return None
        target = self._corrupt_name()
        try:
            os.rename(self.path, target)
        except FileNotFoundError:
            return None
        except OSError as move_err:
            raise CacheError(
                f"the call cache is corrupt ({err}) and could not be moved aside "
                f"({move_err.strerror})",
                file=self.path,
                fix=f"Delete it (`rm '{self.path}'`) or set cache_path to another file",
            ) from err
        # The write-ahead log belongs to the damaged file: keep it beside it, never let the
        # new cache replay it. The shared-memory index is rebuilt from the log on demand.
        wal = Path(f"{self.path}-wal")
        if wal.exists():
            try:
                os.rename(wal, f"{target}-wal")
            except OSError:
                wal.unlink(missing_ok=True)
        Path(f"{self.path}-shm").unlink(missing_ok=True)
        return target

    def _corrupt_name(self) -> Path:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        count = 1
        while target.exists():
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{count}")
            count += 1
        return target

    def _raise_unusable(self, err: sqlite3.Error) -> None:
        """Raise the CacheError for a file SQLite cannot use, or `err` itself when unknown."""
        error = self._unusable(err)
        if error is None:
            raise err
        raise error from err

    def _unusable(self, err: sqlite3.Error) -> CacheError | None:
        """The CacheError for a cache file that SQLite cannot use; None if `err` is unknown."""
        code = _error_code(err)
        where = self.path
        if code in _LOCKED_CODES:
            return CacheError(
                f"the call cache stayed locked by another process for "
                f"{self.busy_timeout_s:g} s ({err})",
                file=where,
                fix="Wait for the other cai run to finish (or close the program holding it), "
                "or set cache_path to another file",
            )
        if code in _READONLY_CODES:
            return CacheError(
                f"the call cache cannot be written ({err})",
                file=where,
                fix="Make the file and its directory writable (chmod u+w), or set cache_path "
                "to a writable file",
            )
        if code == _CANTOPEN:
            return CacheError(
                f"cannot open the call cache ({err})",
                file=where,
                fix="The path must be a file (not a directory) in a writable directory; or "
                "set cache_path to another file",
            )
        if code in (_IOERR, _FULL):
            return CacheError(
                f"the call cache could not be read or written ({err})",
                file=where,
                fix="Check the disk (space, errors); if the file is damaged, delete it",
            )
        if is_corrupt(err):
            return CacheError(
                f"the call cache is corrupt ({err})",
                file=where,
                fix=f"Delete it (`rm '{where}'`) or set cache_path to another file",
            )
        return None

    def _run(self, operation: Callable[[sqlite3.Connection], T]) -> T:
        """Run one database operation; on a corrupt file, move it aside and run it again."""
        with self._lock:
            if self._conn is None:
                raise RuntimeError(f"{self.path}: the call cache was used after close()")
            try:
                return operation(self._conn)
            except sqlite3.Error as err:
                self._discard_damaged(err)
                self._conn = self._open_fresh()
            try:
                return operation(self._conn)
            except sqlite3.Error as err:
                self._raise_unusable(err)
                raise  # pragma: no cover - _raise_unusable always raises

    # operations -------------------------------------------------------------------------
    def get_many(self, keys: Sequence[str]) -> dict[str, str]:
        unique = list(dict.fromkeys(keys))

        def read(conn: sqlite3.Connection) -> dict[str, str]:
            found: dict[str, str] = {}
            for start in range(0, len(unique), 500):
                chunk = unique[start : start + 500]
                marks = ",".join("?" * len(chunk))
                rows = conn.execute(f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk)
                found.update(rows.fetchall())
            return found

        return self._run(read)

    def put_many(self, model_id: str, kind: str, items: Sequence[tuple[str, str]]) -> None:
        """Store (key, result) pairs in one transaction."""
        now = time.time()
        rows = [(key, model_id, kind, result, now) for key, result in items]

        def write(conn: sqlite3.Connection) -> None:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.executemany(
                    "INSERT OR REPLACE INTO calls (key, model_id, kind, result, created) "
                    "VALUES (?, ?, ?, ?, ?)",
                    rows,
                )
            except BaseException:
                with contextlib.suppress(sqlite3.Error):  # a damaged file may refuse it
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

        self._run(write)

    def summary(self) -> CacheSummary:
        rows = self._run(
            lambda conn: conn.execute(
                "SELECT model_id, kind, COUNT(*) FROM calls GROUP BY model_id, kind"
            ).fetchall()
        )
        by_model: dict[str, dict[str, int]] = {}
        for model_id, kind, count in rows:
            by_model.setdefault(model_id, {})[kind] = count
        size = sum(
            p.stat().st_size
            for p in (self.path, Path(f"{self.path}-wal"), Path(f"{self.path}-shm"))
            if p.exists()
        )
        return CacheSummary(
            path=str(self.path),
            entries=sum(sum(k.values()) for k in by_model.values()),
            size_bytes=size,
            by_model=by_model,
        )

    def clear(self, model_id: str | None = None) -> int:
        """Delete every entry (or those of one model); returns how many were removed."""

        def delete(conn: sqlite3.Connection) -> int:
            if model_id is None:
                cursor = conn.execute("DELETE FROM calls")
            else:
                cursor = conn.execute("DELETE FROM calls WHERE model_id = ?", (model_id,))
            removed = cursor.rowcount
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            return removed

        return self._run(delete)

    def close(self) -> None:
        with self._lock:
            _close_quietly(self._conn)
            self._conn = None


def default_cache_path() -> Path:
    return cai_home() / "calls.sqlite"
