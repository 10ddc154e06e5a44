"""Safe writes inside an output directory: atomic files, a per-directory lock, guarded clears.

Three rules every writer in cai follows, so a kill, a second process or a foreign file never
costs data:
- a file appears whole or not at all: written to a uniquely named temporary file beside it,
  fsynced, renamed over the target, and the directory fsynced so the rename survives a crash;
- one process at a time writes an output directory (`DirectoryLock`, an `flock` that the
  kernel releases when the process dies, so a SIGKILL never leaves a stale lock);
- cai deletes only what it wrote: a directory is cleared only when every entry in it is
  something cai's own writers produce (`clear_dataset_dir`), otherwise the user is asked.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from cai.errors import OutputDirError

LOCK_NAME = ".cai.lock"


def fsync_dir(directory: Path) -> None:
    """Make a rename or new entry in `directory` durable (no-op where unsupported)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temp_beside(path: Path, suffix: str = ".tmp") -> tuple[int, Path]:
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    return fd, Path(name)


@contextmanager
def _atomic_file(path: str | Path) -> Iterator[TextIO]:
    """A text handle whose content replaces `path` whole when the block ends without error
    (unique temp name, fsync, rename, fsync dir); on an error the temp file goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _temp_beside(path)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write `text` to `path` atomically."""
    with _atomic_file(path) as handle:
        handle.write(text)
    return Path(path)


def atomic_write_json(path: str | Path, data: Any) -> Path:
    return atomic_write_text(path, json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")


def atomic_write_lines(path: str | Path, rows: Iterable[dict[str, Any]]) -> Path:
    """Write rows as JSONL atomically."""
    with _atomic_file(path) as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    return Path(path)


def temp_path_beside(path: str | Path) -> Path:
    """A fresh, unique, not-yet-existing path next to `path` (for writers that need a name)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))


def remove_path(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


# ---- the lock ---------------------------------------------------------------------------------
class DirectoryLock:
    """An exclusive, non-blocking lock on a directory for the life of one run.

    The lock file keeps the holder's pid so the second run can say who holds it. `flock` locks
    belong to the open file, so the kernel drops them when the holder exits or is killed.
    """

    def __init__(self, directory: str | Path, what: str = "output directory") -> None:
        self.directory = Path(directory)
        self.what = what
        self._fd: int | None = None

    def acquire(self) -> DirectoryLock:
        import fcntl

        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise OutputDirError(
                f"this {self.what} or a folder above it is an existing file",
                file=self.directory,
                fix="Choose another --out: a new directory, or one cai wrote before.",
            ) from None
        path = self.directory / LOCK_NAME
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise OutputDirError(
                f"this {self.what} is in use by another cai process (pid {holder})",
                file=self.directory,
                fix="Wait for that run to finish (or stop it), or write to another directory "
                "with --out.",
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            import fcntl

            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> DirectoryLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


# ---- guarded clears --------------------------------------------------------------------------
#: Entries that `datasets.save_to_disk`, cai's dataset writers and cards produce.
_DATASET_FILES = {"dataset_dict.json", "dataset_info.json", "state.json", "README.md"}


def _written_by_dataset_writer(entry: Path) -> bool:
    name = entry.name
    if entry.is_dir():
        return (entry / "dataset_info.json").is_file() or (entry / "state.json").is_file()
    return (
        name in _DATASET_FILES
        or (name.startswith("data-") and name.endswith(".arrow"))
        or name.endswith((".parquet", ".jsonl"))
    )


def clear_dataset_dir(directory: str | Path) -> None:
    """Remove a dataset directory cai wrote, so a rewrite never mixes two datasets.

    Refuses (and deletes nothing) when the directory holds anything a dataset writer does not
    produce: that file is the user's, and cai never deletes what it did not write.
    """
    directory = Path(directory)
    if not directory.exists() and not directory.is_symlink():
        return
    if not directory.is_dir() or directory.is_symlink():
        raise OutputDirError(
            "a file is in the way where cai writes a dataset directory",
            file=directory,
            fix="Move or rename it, or choose another output directory.",
        )
    foreign = sorted(e.name for e in directory.iterdir() if not _written_by_dataset_writer(e))
    if foreign:
        raise OutputDirError(
            f"holds {', '.join(repr(f) for f in foreign[:5])}"
            f"{' and more' if len(foreign) > 5 else ''}, which cai did not write; cai will "
            "not delete it to replace the dataset",
            file=directory,
            fix="Move those files elsewhere, or choose a new output directory with --out.",
        )
    shutil.rmtree(directory)


def replace_dataset(tmp: Path, destination: Path) -> None:
    """Move a finished dataset (file or directory) at `tmp` into place at `destination`."""
    if destination.is_dir() and not destination.is_symlink():
        clear_dataset_dir(destination)
    elif destination.exists() and tmp.is_dir():
        raise OutputDirError(
            "a file is in the way where cai writes a dataset directory",
            file=destination,
            fix="Move or rename it, or choose another output directory.",
        )
    os.replace(tmp, destination)
    fsync_dir(destination.parent)


def is_inside(path: str | Path, directory: str | Path) -> bool:
    """Whether `path` is `directory` or lies under it (after resolving symlinks)."""
    try:
        Path(path).resolve().relative_to(Path(directory).resolve())
    except ValueError:
        return False
    return True


def relative_to_run(path: str | Path | None, run_dir: str | Path) -> str | None:
    """A path as written into files of a run: relative to the run directory, never absolute.

    Dataset cards, summaries and resolved configs travel (pushed to a hub, shared); absolute
    local paths would leak home and temp directories and break on another machine.
    """
    if path is None:
        return None
    text = str(path)
    candidate = Path(text).expanduser()
    if not candidate.is_absolute() and not candidate.exists():
        return text  # a name (bundled constitution, hub id), not a local path
    return os.path.relpath(candidate.resolve(), Path(run_dir).resolve())
