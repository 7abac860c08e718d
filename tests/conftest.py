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
