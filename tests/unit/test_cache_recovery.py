"""The call cache on damaged and unusable files (real SQLite files, real corruption), and what
it refuses to store: answers that record an error, batches that raised, short batches."""

from __future__ import annotations

import math
import os
import shutil
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest

from cai.backends.base import (
    Backend,
    ChoiceRequest,
    ChoiceScore,
    Generation,
    GenerationParams,
)
from cai.backends.cached import CachedBackend
from cai.backends.scripted import ScriptedBackend
from cai.cache import CacheError, CallCache

PARAMS = GenerationParams(seed=0)


def _convs(n: int, start: int = 0) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"prompt {i}"}] for i in range(start, start + n)]


def _healthy_cache(path: Path, entries: int = 2000) -> bytes:
    """A real cache file with `entries` rows, checkpointed into the main file; its bytes."""
    cache = CallCache(path)
    cache.put_many("m", "chat", [(f"key-{i}", "x" * 300) for i in range(entries)])
    cache.close()
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    return path.read_bytes()


def _moved(path: Path) -> list[Path]:
    return sorted(path.parent.glob(f"{path.name}.corrupt-*[0-9]"))


def _assert_moved_with_warning(path: Path, stderr: str, original: bytes) -> None:
    [moved] = _moved(path)
    assert moved.read_bytes() == original  # moved, not rewritten or deleted
    assert str(path) in stderr and str(moved) in stderr
    assert "corrupt" in stderr and "cai cache clear" in stderr


def _make_immutable(path: Path) -> None:
    """Make a file impossible to write or rename, for root too (chmod does not stop root)."""
    if os.geteuid() != 0:
        path.chmod(0o444)
        path.parent.chmod(0o555)
        return
    result = subprocess.run(["chattr", "+i", str(path)], capture_output=True, check=False)
    if result.returncode != 0:
        pytest.skip(
            "running as root on a filesystem without chattr +i: cannot make a file read-only"
        )


def _make_mutable(path: Path) -> None:
    if os.geteuid() != 0:
        path.parent.chmod(0o755)
        path.chmod(0o644)
    else:
        subprocess.run(["chattr", "-i", str(path)], check=False)


# corrupt files are moved aside -----------------------------------------------------------


@pytest.mark.parametrize(
    "damage",
    ["garbage", "text", "first_half", "header_only"],
)
def test_a_corrupt_file_is_moved_aside_and_the_run_continues(tmp_path, capfd, damage):
    path = tmp_path / "calls.sqlite"
    healthy = _healthy_cache(tmp_path / "healthy.sqlite")
    damaged = {
        "garbage": os.urandom(8192),
        "text": b'{"this": "is a JSON file, not SQLite"}\n' * 50,
        "first_half": healthy[: len(healthy) // 2],
        "header_only": healthy[:50],
    }[damage]
    path.write_bytes(damaged)

    inner = ScriptedBackend()
    cached = CachedBackend(inner, CallCache(path))
    out = cached.generate_chat(_convs(3), PARAMS)

    _assert_moved_with_warning(path, capfd.readouterr().err, damaged)
    assert len(out) == 3 and inner.calls["generate"] == 3
    assert CallCache(path).summary().entries == 3  # the fresh cache at the same path works


def test_damage_found_in_the_middle_of_a_run_is_recovered(tmp_path, capfd):
    """Garbage inside the table's pages: the file opens, the first full scan finds it."""
    path = tmp_path / "calls.sqlite"
    data = bytearray(_healthy_cache(path))
    data[4096 * 3 : 4096 * 3 + 2000] = os.urandom(2000)
    path.write_bytes(bytes(data))

    cache = CallCache(path)  # opens: the first page is intact
    assert cache.summary().entries == 0  # the scan hit the damage: moved, fresh, empty
    _assert_moved_with_warning(path, capfd.readouterr().err, bytes(data))
    cache.put_many("m", "chat", [("k", "v")])
    assert cache.get_many(["k"]) == {"k": "v"}


def test_the_damaged_files_write_ahead_log_is_not_replayed_into_the_new_cache(tmp_path, capfd):
    """A valid log left beside a damaged file must not leak old rows into the fresh cache."""
    source = tmp_path / "source.sqlite"
    _healthy_cache(source, entries=5)
    writer = CallCache(source)
    writer.put_many("m", "chat", [(f"logged-{i}", "y") for i in range(50)])  # in the WAL only
    path = tmp_path / "calls.sqlite"
    shutil.copy(f"{source}-wal", f"{path}-wal")
    writer.close()
    path.write_bytes(os.urandom(8192))

    cache = CallCache(path)
    assert cache.summary().entries == 0 and cache.get_many(["logged-1"]) == {}
    cache.put_many("m", "chat", [("k", "v")])
    assert CallCache(path).get_many(["k", "logged-1"]) == {"k": "v"}
    assert "corrupt" in capfd.readouterr().err and len(_moved(path)) == 1


def test_two_damaged_files_in_the_same_second_get_distinct_names(tmp_path, capfd):
    path = tmp_path / "calls.sqlite"
    for _ in range(2):
        path.write_bytes(os.urandom(4096))
        CallCache(path).close()
    assert len(list(tmp_path.glob("calls.sqlite.corrupt-*"))) >= 2
    capfd.readouterr()


# unusable files are reported, not touched ------------------------------------------------


def test_a_corrupt_file_that_cannot_be_moved_is_a_clear_error(tmp_path):
    folder = tmp_path / "locked-dir"
    folder.mkdir()
    path = folder / "calls.sqlite"
    path.write_bytes(os.urandom(4096))
    _make_immutable(path)
    try:
        with pytest.raises(CacheError) as err:
            CallCache(path)
    finally:
        _make_mutable(path)
    message = str(err.value)
    assert str(path) in message and "could not be moved aside" in message
    assert "rm " in message or "cache_path" in message
    assert not _moved(path)


def test_a_read_only_cache_still_answers_and_refuses_writes_clearly(tmp_path):
    folder = tmp_path / "ro"
    folder.mkdir()
    path = folder / "calls.sqlite"
    _healthy_cache(path, entries=5)
    _make_immutable(path)
    try:
        cache = CallCache(path)
        assert cache.summary().entries == 5
        with pytest.raises(CacheError, match="cannot be written") as err:
            cache.put_many("m", "chat", [("k", "v")])
        cache.close()
    finally:
        _make_mutable(path)
    assert str(path) in str(err.value) and "writable" in str(err.value)
    assert not _moved(path)


def test_a_locked_cache_is_a_clear_error_after_the_busy_timeout(tmp_path):
    path = tmp_path / "calls.sqlite"
    _healthy_cache(path, entries=5)
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    try:
        cache = CallCache(path, busy_timeout_s=0.3)
        started = time.monotonic()
        with pytest.raises(CacheError, match="locked by another process") as err:
            cache.put_many("m", "chat", [("k", "v")])
        elapsed = time.monotonic() - started
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert str(path) in str(err.value) and elapsed < 3 * 0.3 + 1
    assert CallCache(path).summary().entries == 5  # nothing was moved or lost


def test_another_programs_database_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "app.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE users (name TEXT)")
    conn.execute("INSERT INTO users VALUES ('ada')")
    conn.commit()
    conn.close()
    before = path.read_bytes()
    with pytest.raises(CacheError, match="not a cai call cache") as err:
        CallCache(path)
    assert "users" in str(err.value) and str(path) in str(err.value)
    assert path.read_bytes() == before and not _moved(path)


def test_a_directory_at_the_cache_path_is_a_clear_error(tmp_path):
    path = tmp_path / "calls.sqlite"
    path.mkdir()
    with pytest.raises(CacheError, match="cannot open the call cache") as err:
        CallCache(path)
    assert str(path) in str(err.value) and path.is_dir()


# what is never stored --------------------------------------------------------------------


class _FlakyBackend(Backend):
    """Answers with an engine error for prompts containing 'bad', raises for 'boom'."""

    model_id = "flaky"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def generate_chat(self, conversations, params):
        out = []
        for conv in conversations:
            text = conv[-1]["content"]
            self.seen.append(text)
            if "boom" in text:
                raise RuntimeError("engine crashed")
            reason = "error" if "bad" in text else "stop"
            out.append(Generation(texts=[f"answer {text}"], finish_reasons=[reason]))
        return out

    def generate_text(self, prompts, params):
        return [Generation(texts=["x"], finish_reasons=["stop"]) for _ in prompts[:-1]]

    def score_choices(self, requests):
        return [
            ChoiceScore(choices=list(r.choices), logprobs=[math.nan, -1.0], probs=[math.nan, 1.0])
            if r.text == "nan"
            else ChoiceScore.from_logprobs(r.choices, [-1.0, -2.0])
            for r in requests
        ]


def _user(*texts: str) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": t}] for t in texts]


def test_answers_that_record_an_error_are_returned_but_not_stored(tmp_path):
    inner = _FlakyBackend()
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"))
    first = cached.generate_chat(_user("good", "bad"), PARAMS)
    assert [g.finish_reasons for g in first] == [["stop"], ["error"]]
    assert cached.stats.failed == 1 and cached.cache.summary().entries == 1

    inner.seen.clear()
    cached.generate_chat(_user("good", "bad"), PARAMS)
    assert inner.seen == ["bad"]  # only the failed one is asked again


def test_a_batch_that_raises_stores_nothing_of_its_chunk(tmp_path):
    inner = _FlakyBackend()
    cached = CachedBackend(inner, CallCache(tmp_path / "c.sqlite"), chunk_size=2)
    with pytest.raises(RuntimeError, match="engine crashed"):
        cached.generate_chat(_user("a", "b", "c", "boom"), PARAMS)
    assert cached.cache.summary().entries == 2  # the first chunk committed, the second not
    inner.seen.clear()
    with pytest.raises(RuntimeError):
        cached.generate_chat(_user("a", "b", "c", "boom"), PARAMS)
    assert inner.seen == ["c", "boom"]


def test_a_short_answer_list_stores_nothing(tmp_path):
    cached = CachedBackend(_FlakyBackend(), CallCache(tmp_path / "c.sqlite"))
    with pytest.raises(RuntimeError, match="returned 1 results for 2 requests"):
        cached.generate_text(["a", "b"], PARAMS)
    assert cached.cache.summary().entries == 0


def test_scores_with_nan_are_not_stored(tmp_path):
    cached = CachedBackend(_FlakyBackend(), CallCache(tmp_path / "c.sqlite"))
    scores = cached.score_choices([ChoiceRequest(text="ok"), ChoiceRequest(text="nan")])
    assert not scores[0].failed and scores[1].failed
    assert cached.cache.summary().entries == 1 and cached.stats.failed == 1


def test_a_stored_row_that_no_longer_parses_is_a_miss(tmp_path):
    path = tmp_path / "c.sqlite"
    inner = ScriptedBackend()
    cached = CachedBackend(inner, CallCache(path))
    cached.generate_chat(_convs(2), PARAMS)
    conn = sqlite3.connect(path)
    conn.execute("UPDATE calls SET result = '{\"texts\": 3'")
    conn.commit()
    conn.close()
    again = CachedBackend(inner, CallCache(path))
    out = again.generate_chat(_convs(2), PARAMS)
    assert (again.stats.hits, again.stats.misses) == (0, 2) and len(out) == 2
    assert CachedBackend(inner, CallCache(path)).generate_chat(_convs(2), PARAMS) == out


def test_copying_a_healthy_cache_keeps_it_usable(tmp_path):
    """The recovery never fires on a healthy file (no false alarms)."""
    source = tmp_path / "a.sqlite"
    _healthy_cache(source, entries=10)
    copy = tmp_path / "b.sqlite"
    shutil.copy(source, copy)
    assert CallCache(copy).summary().entries == 10
    assert not list(tmp_path.glob("*.corrupt-*"))
