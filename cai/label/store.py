"""The labelling database: one SQLite file in WAL mode holding the pairs, the raters, who was
given which pair (and on which side response A was shown), and every answer.

Durability: every write is one `BEGIN IMMEDIATE` transaction committed with
`synchronous=FULL` before the HTTP response goes out, so an answer the page showed as saved
survives a kill -9 of the server (or a power cut). Restarting on the same file resumes each
rater at their first unanswered pair.

Concurrency: one connection per thread; writers queue on SQLite's lock (busy timeout 10 s),
readers never block. A partial unique index allows one live (not undone) answer per rater
and pair, so two tabs of the same rater cannot both answer a pair: the second answer is
refused (`AnswerConflict("already_answered")`) and the first one is kept. Undo marks an
answer undone (it stays in the table, for the audit trail) and puts the pair back at the
front of the rater's queue.

Tokens: each rater has a random token (their personal link); the admin token and the secret
that signs CSRF tokens are kept in the `meta` table. The file is created readable by its
owner only (0600), since the tokens are in it.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cai.errors import CaiError, InputError
from cai.label import assign
from cai.label.items import Item, prob_a_from_first

SCHEMA_VERSION = 1
CHOICES = ("a", "b", "tie", "both_bad", "skip")
SCREEN_CHOICES = ("left", "right", "tie", "both_bad", "skip")
MAX_REASON = 500
RATER_NAME = re.compile(r"^[\w.@+-]{1,64}$")

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


class RaterNameError(InputError):
    """A rater name cannot be used."""


class AnswerConflict(Exception):
    """An answer the store refuses: `kind` is "already_answered", "not_assigned" or
    "bad_choice"; `message` is shown to the rater as is."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True)
class Settings:
    per_pair: int
    overlap: float
    seed: int
    claim_minutes: float


@dataclass(frozen=True)
class Rater:
    rater_id: str
    token: str
    created_at: float


@dataclass(frozen=True)
class Pending:
    """A pair waiting for a rater's answer, and on which side they see response A."""

    idx: int
    seq: int
    item: Item
    left_side: str
    overlap: bool


def screen_to_choice(screen: str, left_side: str) -> str:
    """A choice as the rater saw it (left / right / ...) in the pair's own terms (a / b / ...)."""
    if screen == "left":
        return left_side
    if screen == "right":
        return "b" if left_side == "a" else "a"
    return screen


def choice_to_screen(choice: str, left_side: str) -> str:
    if choice in ("a", "b"):
        return "left" if choice == left_side else "right"
    return choice


def check_rater_name(name: str) -> str:
    name = name.strip()
    if not RATER_NAME.match(name):
        raise RaterNameError(
            f"rater name {name!r} cannot be used",
            key="NAME",
            fix="Use 1-64 letters, digits, '.', '_', '-', '+' or '@' (no spaces); the name is "
            "the rater_id written to the export.",
        )
    return name


def _item(row: sqlite3.Row) -> Item:
    return Item(
        item_id=row["item_id"],
        prompt=json.loads(row["prompt"]),
        response_a=row["response_a"],
        response_b=row["response_b"],
        principle=row["principle"],
        ai_prob_a=row["ai_prob_a"],
    )


class LabelStore:
    """The labelling database at `path` (created with `create=True`, else it must exist)."""

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

    # ---- items -------------------------------------------------------------------------------
    def add_items(self, items: list[Item], source: str | None = None) -> tuple[int, int]:
        """Add the pairs not in the database yet (the overlap set is drawn among them with
        the current settings); returns (added, already there). AI labels of known pairs are
        updated when the new file carries them."""
        settings = self.settings()
        now = time.time()
        with self.write() as db:
            known = {r[0] for r in db.execute("SELECT item_id FROM items")}
            new = [item for item in items if item.item_id not in known]
            overlap = assign.overlap_ids((i.item_id for i in new), settings.overlap, settings.seed)
            db.executemany(
                "INSERT INTO items(item_id, prompt, response_a, response_b, principle, "
                "ai_prob_a, overlap, source, added_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        i.item_id,
                        json.dumps(i.prompt, ensure_ascii=False),
                        i.response_a,
                        i.response_b,
                        i.principle,
                        i.ai_prob_a,
                        int(i.item_id in overlap),
                        source,
                        now,
                    )
                    for i in new
                ],
            )
            db.executemany(
                "UPDATE items SET ai_prob_a = ? WHERE item_id = ?",
                [
                    (i.ai_prob_a, i.item_id)
                    for i in items
                    if i.item_id in known and i.ai_prob_a is not None
                ],
            )
        return len(new), len(items) - len(new)

    def set_ai_labels(self, p_first: dict[str, float]) -> int:
        """Attach AI labels ({pair_key: P(alphabetically first response wins)}); returns how
        many pairs of the database got one."""
        matched = 0
        with self.write() as db:
            rows = db.execute("SELECT idx, item_id, response_a, response_b FROM items").fetchall()
            for row in rows:
                p = p_first.get(row["item_id"])
                if p is None:
                    continue
                matched += 1
                db.execute(
                    "UPDATE items SET ai_prob_a = ? WHERE idx = ?",
                    (prob_a_from_first(row["response_a"], row["response_b"], p), row["idx"]),
                )
        return matched

    def item_counts(self) -> dict[str, int]:
        row = (
            self.connection()
            .execute("SELECT COUNT(*), COALESCE(SUM(overlap), 0), COUNT(ai_prob_a) FROM items")
            .fetchone()
        )
        return {"items": row[0], "overlap": row[1], "with_ai": row[2]}

    def items(self) -> list[tuple[int, Item, bool]]:
        rows = self.connection().execute("SELECT * FROM items ORDER BY idx").fetchall()
        return [(row["idx"], _item(row), bool(row["overlap"])) for row in rows]

    # ---- raters ------------------------------------------------------------------------------
    def add_rater(self, name: str) -> tuple[Rater, bool]:
        """The rater called `name`, created (with a new token) when missing."""
        name = check_rater_name(name)
        with self.write() as db:
            row = db.execute("SELECT * FROM raters WHERE rater_id = ?", (name,)).fetchone()
            if row is not None:
                return Rater(row["rater_id"], row["token"], row["created_at"]), False
            rater = Rater(name, secrets.token_urlsafe(18), time.time())
            db.execute(
                "INSERT INTO raters(rater_id, token, created_at) VALUES (?, ?, ?)",
                (rater.rater_id, rater.token, rater.created_at),
            )
        return rater, True

    def raters(self) -> list[Rater]:
        rows = self.connection().execute("SELECT * FROM raters ORDER BY created_at, rater_id")
        return [Rater(r["rater_id"], r["token"], r["created_at"]) for r in rows]

    def rater_by_token(self, token: str) -> Rater | None:
        if not token or len(token) > 200:
            return None
        row = self.connection().execute("SELECT * FROM raters WHERE token = ?", (token,)).fetchone()
        if row is None or not secrets.compare_digest(row["token"], token):
            return None
        return Rater(row["rater_id"], row["token"], row["created_at"])

    # ---- labelling ---------------------------------------------------------------------------
    def _pending(self, db: sqlite3.Connection, rater_id: str) -> list[sqlite3.Row]:
        return db.execute(
            """
            SELECT s.seq, s.left_side, i.* FROM assignments s
            JOIN items i ON i.idx = s.item_idx
            LEFT JOIN answers a
              ON a.rater_id = s.rater_id AND a.item_idx = s.item_idx AND a.undone_at IS NULL
            WHERE s.rater_id = ? AND a.answer_id IS NULL
            ORDER BY s.seq
            """,
            (rater_id,),
        ).fetchall()

    def queue(self, rater_id: str, n: int = 2, now: float | None = None) -> list[Pending]:
        """The rater's next `n` pairs (the first is the one to show), assigning new pairs
        when fewer than `n` are waiting."""
        now = time.time() if now is None else now
        with self.write() as db:
            return self._fill(db, rater_id, n, now)

    def _fill(self, db: sqlite3.Connection, rater_id: str, n: int, now: float) -> list[Pending]:
        """Inside a write transaction: the first `n` waiting pairs, assigning new ones."""
        settings = self.settings()
        stale = now - settings.claim_minutes * 60
        rows = self._pending(db, rater_id)
        while len(rows) < n:
            idx = assign.pick_next(db, rater_id, settings.per_pair, settings.seed, stale)
            if idx is None:
                break
            item_id = db.execute("SELECT item_id FROM items WHERE idx = ?", (idx,)).fetchone()[0]
            seq = db.execute(
                "SELECT COALESCE(MAX(seq), 0) + 1 FROM assignments WHERE rater_id = ?",
                (rater_id,),
            ).fetchone()[0]
            db.execute(
                "INSERT INTO assignments(rater_id, item_idx, seq, left_side, assigned_at) "
                "VALUES (?, ?, ?, ?, ?)",
                (rater_id, idx, seq, assign.left_side(settings.seed, rater_id, item_id), now),
            )
            rows = self._pending(db, rater_id)
        return [
            Pending(r["idx"], r["seq"], _item(r), r["left_side"], bool(r["overlap"]))
            for r in rows[:n]
        ]

    def pending(self, rater_id: str, item_id: str) -> Pending:
        """One pair waiting in this rater's queue."""
        rows = [r for r in self._pending(self.connection(), rater_id) if r["item_id"] == item_id]
        if not rows:
            raise KeyError(item_id)
        r = rows[0]
        return Pending(r["idx"], r["seq"], _item(r), r["left_side"], bool(r["overlap"]))

    def answer(
        self,
        rater_id: str,
        item_id: str,
        screen_choice: str,
        reason: str | None = None,
        seconds: float | None = None,
        now: float | None = None,
        refill: int = 0,
    ) -> dict[str, Any]:
        """Commit one answer (`screen_choice`: left / right / tie / both_bad / skip, as the
        rater saw the pair). Raises AnswerConflict when the pair is not this rater's or is
        already answered (the first answer is kept). With `refill`, the rater's next
        `refill` pairs are assigned in the same transaction (one commit) and returned as
        "queue"."""
        if screen_choice not in SCREEN_CHOICES:
            raise AnswerConflict(
                "bad_choice", f"unknown choice {screen_choice!r}; use {', '.join(SCREEN_CHOICES)}"
            )
        now = time.time() if now is None else now
        reason = " ".join((reason or "").split())[:MAX_REASON] or None
        if seconds is not None:
            seconds = min(max(float(seconds), 0.0), 86400.0)
        with self.write() as db:
            row = db.execute(
                "SELECT s.item_idx, s.left_side FROM assignments s JOIN items i "
                "ON i.idx = s.item_idx WHERE s.rater_id = ? AND i.item_id = ?",
                (rater_id, item_id),
            ).fetchone()
            if row is None:
                raise AnswerConflict(
                    "not_assigned", "This pair is not in your queue; reload the page."
                )
            choice = screen_to_choice(screen_choice, row["left_side"])
            try:
                cursor = db.execute(
                    "INSERT INTO answers(rater_id, item_idx, choice, left_side, reason, seconds, "
                    "answered_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (rater_id, row["item_idx"], choice, row["left_side"], reason, seconds, now),
                )
            except sqlite3.IntegrityError:
                raise AnswerConflict(
                    "already_answered",
                    "You already answered this pair (in another tab or window); your first "
                    "answer is kept. Showing your next pair.",
                ) from None
            queue = self._fill(db, rater_id, refill, now) if refill else []
        return {
            "answer_id": cursor.lastrowid,
            "item_id": item_id,
            "choice": choice,
            "queue": queue,
        }

    def undo(self, rater_id: str, now: float | None = None) -> dict[str, Any] | None:
        """Undo the rater's last live answer; returns what it was (in screen terms), or None
        when there is nothing to undo. The pair becomes the next one shown."""
        now = time.time() if now is None else now
        with self.write() as db:
            row = db.execute(
                "SELECT a.answer_id, a.choice, a.left_side, a.reason, i.item_id FROM answers a "
                "JOIN items i ON i.idx = a.item_idx "
                "WHERE a.rater_id = ? AND a.undone_at IS NULL "
                "ORDER BY a.answer_id DESC LIMIT 1",
                (rater_id,),
            ).fetchone()
            if row is None:
                return None
            db.execute("UPDATE answers SET undone_at = ? WHERE answer_id = ?", (now, row[0]))
        return {
            "item_id": row["item_id"],
            "choice": choice_to_screen(row["choice"], row["left_side"]),
            "reason": row["reason"] or "",
        }

    def can_undo(self, rater_id: str) -> bool:
        row = (
            self.connection()
            .execute(
                "SELECT 1 FROM answers WHERE rater_id = ? AND undone_at IS NULL LIMIT 1",
                (rater_id,),
            )
            .fetchone()
        )
        return row is not None

    def progress(self, rater_id: str, now: float | None = None) -> dict[str, int]:
        """done: live answers; remaining: waiting pairs plus pairs that may still come."""
        now = time.time() if now is None else now
        settings = self.settings()
        db = self.connection()
        done = db.execute(
            "SELECT COUNT(*) FROM answers WHERE rater_id = ? AND undone_at IS NULL", (rater_id,)
        ).fetchone()[0]
        pending = len(self._pending(db, rater_id))
        overlap, regular = assign.candidates(
            db, rater_id, settings.per_pair, settings.seed, now - settings.claim_minutes * 60
        )
        remaining = pending + len(overlap) + len(regular)
        return {"done": done, "remaining": remaining, "total": done + remaining}

    # ---- reading answers ---------------------------------------------------------------------
    def live_answers(self) -> list[dict[str, Any]]:
        """Every live answer (skips included) with its pair, oldest first."""
        rows = (
            self.connection()
            .execute(
                """
            SELECT a.answer_id, a.rater_id, a.choice, a.left_side, a.reason, a.seconds,
                   a.answered_at, s.seq, i.*
            FROM answers a
            JOIN items i ON i.idx = a.item_idx
            JOIN assignments s ON s.rater_id = a.rater_id AND s.item_idx = a.item_idx
            WHERE a.undone_at IS NULL
            ORDER BY a.answered_at, a.answer_id
            """
            )
            .fetchall()
        )
        return [
            {
                "answer_id": r["answer_id"],
                "rater_id": r["rater_id"],
                "choice": r["choice"],
                "left_side": r["left_side"],
                "reason": r["reason"],
                "seconds": r["seconds"],
                "answered_at": r["answered_at"],
                "overlap": bool(r["overlap"]),
                "item": _item(r),
            }
            for r in rows
        ]

    def assignment_counts(self) -> dict[str, dict[str, int]]:
        """{rater_id: {"assigned": n, "pending": n}}."""
        out: dict[str, dict[str, int]] = {}
        for rater in self.raters():
            assigned = (
                self.connection()
                .execute("SELECT COUNT(*) FROM assignments WHERE rater_id = ?", (rater.rater_id,))
                .fetchone()[0]
            )
            out[rater.rater_id] = {
                "assigned": assigned,
                "pending": len(self._pending(self.connection(), rater.rater_id)),
            }
        return out
