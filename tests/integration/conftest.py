"""Fixtures shared by some integration tests (the session-wide ones are in tests/conftest.py)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="module")
def single_torch_thread():
    """The tiny model's matrices are too small for intra-op threads to pay: one thread is as fast
    on an idle machine and many times faster on a busy one (restored after the module).
    Modules opt in with `pytest.mark.usefixtures("single_torch_thread")`."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
