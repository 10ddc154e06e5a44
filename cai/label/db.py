"""The labelling database file: SQLite in WAL mode, its schema, connections and transactions.

Durability: every write is one `BEGIN IMMEDIATE` transaction committed with
`synchronous=FULL` before the HTTP response goes out, so an answer the page showed as saved
survives a kill -9 of the server (or a power cut).

Concurrency: one connection per thread; writers queue on SQLite's lock (busy timeout 10 s),
readers never block.

Tokens: the admin token and the secret that signs CSRF tokens are kept in the `meta` table,
with the labelling settings. The file is created readable by its owner only (0600), since
the tokens are in it.
"""

from __future__ import annotations

import os
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.errors import CaiError

SCHEMA_VERSION = 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS items (
    idx INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL UNIQUE,
    prompt TEXT NOT NULL,
    response_a TEXT NOT NULL,
    response_b TEXT NOT NULL,
    principle TEXT,
    ai_prob_a REAL,
    overlap INTEGER NOT NULL DEFAULT 0,
    source TEXT,
    added_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS raters (
    rater_id TEXT PRIMARY KEY,
    token TEXT NOT NULL UNIQUE,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS assignments (
    rater_id TEXT NOT NULL REFERENCES raters(rater_id),
    item_idx INTEGER NOT NULL REFERENCES items(idx),
    seq INTEGER NOT NULL,
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')),
    assigned_at REAL NOT NULL,
    PRIMARY KEY (rater_id, item_idx),
    UNIQUE (rater_id, seq)
);
CREATE INDEX IF NOT EXISTS assignments_by_item ON assignments(item_idx);
CREATE TABLE IF NOT EXISTS answers (
    answer_id INTEGER PRIMARY KEY AUTOINCREMENT,
    rater_id TEXT NOT NULL,
    item_idx INTEGER NOT NULL,
    choice TEXT NOT NULL CHECK (choice IN ('a', 'b', 'tie', 'both_bad', 'skip')),
    left_side TEXT NOT NULL CHECK (left_side IN ('a', 'b')),
    reason TEXT,
    seconds REAL,
    answered_at REAL NOT NULL,
    undone_at REAL,
    FOREIGN KEY (rater_id, item_idx) REFERENCES assignments(rater_id, item_idx)
);
CREATE UNIQUE INDEX IF NOT EXISTS one_live_answer
    ON answers(rater_id, item_idx) WHERE undone_at IS NULL;
CREATE INDEX IF NOT EXISTS answers_by_item ON answers(item_idx);
"""

DEFAULTS = {"per_pair": "1", "overlap": "0.1", "seed": "0", "claim_minutes": "30"}


class LabelDbError(CaiError):
    """The labelling database cannot be opened or used."""


@dataclass(frozen=True)
class Settings:
    per_pair: int
    overlap: float
    seed: int
    claim_minutes: float


class LabelDb:
    """The database file at `path` (created with `create=True`, else it must exist)."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        if not self.path.exists():
            if not create:
                raise LabelDbError(
                    "no labelling database here",
                    file=self.path,
                    fix="Check --db; `cai label serve ITEMS --db FILE` creates one.",
                )
            if self.path.parent and not self.path.parent.is_dir():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
            os.close(fd)
        try:
            self._init()
        except sqlite3.DatabaseError as err:
            self.close()
            what = "not a labelling database" if "not a database" in str(err) else "cannot be used"
            raise LabelDbError(
                f"{what} ({err})",
                file=self.path,
                fix="Point --db at a file `cai label serve` created, or at a new path.",
            ) from None

    # ---- connections -------------------------------------------------------------------------
    def connection(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(
                self.path, timeout=10.0, isolation_level=None, check_same_thread=False
            )
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA busy_timeout = 10000")
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA foreign_keys = ON")
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        with self._lock:
            for conn in self._connections:
                with suppress(sqlite3.Error):
                    conn.close()
            self._connections.clear()
        self._local = threading.local()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, committed (durably) when the block ends without error."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def _init(self) -> None:
        conn = self.connection()
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        foreign = tables - {"meta", "items", "raters", "assignments", "answers", "sqlite_sequence"}
        if foreign:
            raise sqlite3.DatabaseError(f"it holds other tables: {', '.join(sorted(foreign))}")
        if "meta" in tables:
            conn.execute("SELECT key, value FROM meta LIMIT 1")  # another program's `meta`?
        mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise sqlite3.DatabaseError(f"cannot switch to WAL mode (got {mode})")
        conn.executescript(SCHEMA)  # idempotent (IF NOT EXISTS); commits on its own
        with self.write() as db:
            version = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if version is None:
                values = {
                    **DEFAULTS,
                    "schema_version": str(SCHEMA_VERSION),
                    "created_at": str(time.time()),
                    "admin_token": secrets.token_urlsafe(18),
                    "csrf_secret": secrets.token_hex(32),
                }
                db.executemany(
                    "INSERT OR IGNORE INTO meta(key, value) VALUES (?, ?)", values.items()
                )
            elif int(version[0]) != SCHEMA_VERSION:
                raise sqlite3.DatabaseError(
                    f"schema version {version[0]}, this cai reads version {SCHEMA_VERSION}"
                )

    # ---- meta and settings -------------------------------------------------------------------
    def meta(self, key: str) -> str | None:
        row = self.connection().execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else row[0]

    def set_meta(self, key: str, value: str) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO meta(key, value) VALUES (?, ?) "
                "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )

    def settings(self) -> Settings:
        return Settings(
            per_pair=int(self.meta("per_pair") or DEFAULTS["per_pair"]),
            overlap=float(self.meta("overlap") or DEFAULTS["overlap"]),
            seed=int(self.meta("seed") or DEFAULTS["seed"]),
            claim_minutes=float(self.meta("claim_minutes") or DEFAULTS["claim_minutes"]),
        )

    def update_settings(self, **values: Any) -> None:
        for key, value in values.items():
            if value is not None:
                if key not in DEFAULTS:
                    raise KeyError(key)
                self.set_meta(key, str(value))

    @property
    def admin_token(self) -> str:
        return self.meta("admin_token") or ""

    @property
    def csrf_secret(self) -> str:
        return self.meta("csrf_secret") or ""
