"""The one rule for who closes a backend: whoever built it.

A function that takes an optional backend uses `backend_for(spec, given)`: with a backend
given, the caller keeps it (and closes it); without, one is built from `spec` here and closed
when the block ends, also on errors. Closing a vLLM backend built from a spec releases this
user's share of its engine (`cai.backends.shared`): the engine stops with its last user.

`RoleHandover` serves roles that use models one after another (a policy, then a baseline,
then a judge): the next role's backend is made before the previous one is closed when it
starts lazily (vLLM), so roles naming the same model and settings keep one engine; an engine
that loads when it is made (transformers) is made only after the previous one is closed, so
two never sit in memory at once.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from cai.backends import make_backend
from cai.backends.base import Backend


@contextmanager
def backend_for(spec, given: Backend | None = None) -> Iterator[Backend]:
    """`given` as is, or a backend built from `spec` (a BackendSpec) and closed on exit."""
    if given is not None:
        yield given
        return

    built = make_backend(spec)
    try:
        yield built
    finally:
        built.close()


def starts_lazily(spec) -> bool:
    """Whether `make_backend(spec)` returns without loading a model (vLLM starts on first use)."""
    return getattr(spec, "kind", None) == "vllm"


class RoleHandover:
    """Backends for roles used in turn; each built here is closed once the next exists."""

    def __init__(self) -> None:
        self._held: Backend | None = None

    def next(self, spec, given: Backend | None = None) -> Backend:
        """The next role's backend: `given` as is, or one built from `spec` (a BackendSpec)."""
        if given is not None:
            return given

        if not starts_lazily(spec):
            self.close()
        built = make_backend(spec)
        self.close()
        self._held = built
        return built

    def close(self) -> None:
        held, self._held = self._held, None
        if held is not None:
            held.close()

    def __enter__(self) -> RoleHandover:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
