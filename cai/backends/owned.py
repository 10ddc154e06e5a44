"""The one rule for who closes a backend: whoever built it.

A function that takes an optional backend uses `backend_for(spec, given)`: with a backend
given, the caller keeps it (and closes it); without, one is built from `spec` here and closed
when the block ends, also on errors.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cai.backends.base import Backend


@contextmanager
def backend_for(spec, given: Backend | None = None) -> Iterator[Backend]:
    """`given` as is, or a backend built from `spec` (a BackendSpec) and closed on exit."""
    if given is not None:
        yield given
        return
    from cai.backends import make_backend

    built = make_backend(spec)
    try:
        yield built
    finally:
        built.close()
