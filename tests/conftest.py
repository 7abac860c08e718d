"""Shared fixtures: every behaviour test runs on each backend.

The ``backend`` fixture gives ``Pool`` keyword arguments for one backend: processes and threads.
Ray runs in the integration tests only (``tests/integration``, the ``integration`` extra): a module
there that sets ``ON_RAY = True`` imports the tests of one module of ``RAY_MODULES`` and runs their
backend-generic tests on Ray alone, against one local Ray started for the whole test run (lazily, by
the first test that needs it) and shut down at the end; tests marked ``ray`` are moved to the end of
the run, so that no process is forked while Ray's threads run in the test process. A test marked
``no_ray(reason)`` stays off Ray. On Ray, ``n_jobs`` takes fewer values: each worker is an actor,
and actors cost more to start than processes. A test marked ``ray`` outside ``tests/integration``
is left out of the run (deselected): ``tests/integration`` runs it.
"""

from __future__ import annotations

import os

import pytest

#: keyword arguments that select a backend; n_jobs=1 runs in the caller (processes, threads)
BACKENDS = {
    "threads": {"use_threads": True},
    "processes": {"use_threads": False},
    "ray": {"use_threads": False, "backend": "ray"},
}
#: test modules whose backend-generic tests also run on Ray (from a module of tests/integration)
RAY_MODULES = {"test_order_and_bounds", "test_exceptions", "test_delayed_init", "test_item_errors"}
#: n_jobs=1 runs in the caller; 2 is the smallest pool, 3 an odd one (a worker holds more than its share)
N_JOBS = {"threads": [1, 2, 3], "processes": [1, 2, 3], "ray": [1, 3]}
#: where the integration tests live: Ray, the docs site, the notebooks, the peers beside ours
INTEGRATION = os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration")

#: the test Ray: 2 CPUs, no dashboard, a small object store; two simulated GPUs and a custom
#: resource, so per-worker resources and Ray's CUDA_VISIBLE_DEVICES can be tested without a GPU
RAY_INIT = {
    "num_cpus": 2,
    "num_gpus": 2,
    "resources": {"mtl_slot": 2},
    "include_dashboard": False,
    "object_store_memory": 100 * 2**20,
    "log_to_driver": False,
}
#: set for every Ray the tests start: no usage report, no token (it would break `ray start` + address)
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "ray: runs on the test run's local Ray (moved to the end of the run)")
    config.addinivalue_line("markers", "no_ray(reason): a backend-generic test that does not run on Ray")


def _backends(metafunc: pytest.Metafunc) -> list[str]:
    """The backends a test runs on: processes and threads; in a module with ``ON_RAY = True``, Ray
    alone, for the backend-generic tests of ``RAY_MODULES`` that are not marked ``no_ray``."""
    if not getattr(metafunc.module, "ON_RAY", False):
        return ["processes", "threads"]
    home = metafunc.function.__module__.rsplit(".", 1)[-1]  # the module the test was written in
    if home in RAY_MODULES and metafunc.definition.get_closest_marker("no_ray") is None:
        return ["ray"]
    return []


def _given(metafunc: pytest.Metafunc) -> set[str]:
    """Argument names a test parametrizes itself."""
    names: set[str] = set()
    for mark in metafunc.definition.iter_markers("parametrize"):
        argnames = mark.args[0]
        if isinstance(argnames, str):
            argnames = argnames.split(",")
        names.update(n.strip() for n in argnames)
    return names


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    given = _given(metafunc)
    wants = {n for n in ("backend", "n_jobs") if n in metafunc.fixturenames and n not in given}
    if "backend" not in wants:
        if "n_jobs" in wants:
            metafunc.parametrize("n_jobs", N_JOBS["processes"], indirect=True)
        return
    names = _backends(metafunc)
    marks = {"ray": [pytest.mark.ray]}
    if "n_jobs" in wants:
        metafunc.parametrize(
            ("backend", "n_jobs"),
            [pytest.param(b, n, id=f"{b}-{n}", marks=marks.get(b, [])) for b in names for n in N_JOBS[b]],
            indirect=True,
        )
    else:
        metafunc.parametrize(
            "backend", [pytest.param(b, id=b, marks=marks.get(b, [])) for b in names], indirect=True
        )


def _left_out(item: pytest.Item) -> bool:
    """Ray tests outside tests/integration, and tests of an ``ON_RAY`` module that are not on Ray
    (they run with their own module)."""
    on_ray = item.get_closest_marker("ray") is not None
    if getattr(getattr(item, "module", None), "ON_RAY", False):
        return not on_ray
    return on_ray and not str(item.path).startswith(INTEGRATION + os.sep)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    left_out = [item for item in items if _left_out(item)]
    if left_out:
        config.hook.pytest_deselected(items=left_out)
        items[:] = [item for item in items if not _left_out(item)]
    # Ray last: its threads then never run in a process that later tests fork.
    items.sort(key=lambda item: item.get_closest_marker("ray") is not None)


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> dict:
    """Pool keyword arguments for one backend (threads, processes, and Ray where it applies)."""
    if request.param == "ray":
        request.getfixturevalue("ray_session")
    return dict(BACKENDS[request.param])


@pytest.fixture
def n_jobs(request: pytest.FixtureRequest) -> int:
    return request.param


@pytest.fixture(scope="session")
def ray_session():
    """The test run's local Ray, started on first use and shut down at the end of the run."""
    ray = pytest.importorskip("ray")
    for key, value in RAY_ENV.items():
        os.environ.setdefault(key, value)
    started = not ray.is_initialized()
    if started:
        ray.init(**RAY_INIT)
    yield ray
    if started:
        ray.shutdown()


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
