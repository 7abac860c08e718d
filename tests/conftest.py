"""Shared fixtures: every behaviour test runs on each backend."""

from __future__ import annotations

import pytest

#: keyword arguments that select a backend; n_jobs=1 runs in the caller
BACKENDS = {
    "threads": {"use_threads": True},
    "processes": {"use_threads": False},
}


@pytest.fixture(params=sorted(BACKENDS))
def backend(request: pytest.FixtureRequest) -> dict:
    """Pool keyword arguments for one backend (threads or processes)."""
    return dict(BACKENDS[request.param])


@pytest.fixture(params=[1, 2, 3, 4])
def n_jobs(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(autouse=True)
def no_worker_thread_outlives_its_test():
    """Each test leaves no worker thread behind: a stuck task it abandoned must have been released.

    Later tests fork worker processes, and forking while stray threads run is unsafe (Python 3.12+
    warns about it); so a test that abandons a thread must release it, and this checks it did.
    """
    import threading
    import time

    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        left = [
            t for t in threading.enumerate()
            if t not in before and t.name.startswith("mtasklite_like-worker") and t.is_alive()
        ]
        if not left or time.monotonic() >= deadline:
            break
        left[0].join(max(0.0, deadline - time.monotonic()))
    assert not left, f"worker threads outlived the test: {[t.name for t in left]}"
