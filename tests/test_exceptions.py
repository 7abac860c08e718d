"""Exception modes (ignore / immediate / deferred), remote tracebacks, and a failing input."""

from __future__ import annotations

import os
import threading
import time

import pytest

from mtasklite_like import (
    DeferredExceptions,
    MtaskliteLikeError,
    Pool,
    RemoteTraceback,
    TaskPicklingError,
    WorkerDiedError,
    is_exception,
)
from tests.helpers import fail_odd, fail_on_3, remote_workers, square

pytestmark = pytest.mark.timeout(60)


def _check_traceback(exc, backend, jobs, func_name):
    """Process and Ray workers attach the worker's traceback text as __cause__; others keep
    __traceback__."""
    if remote_workers(backend, jobs):
        assert isinstance(exc.__cause__, RemoteTraceback)
        assert func_name in str(exc.__cause__)
        assert "Traceback (most recent call last)" in str(exc.__cause__)
    else:
        assert exc.__traceback__ is not None


@pytest.mark.parametrize("ordered", [True, False])
def test_ignore_yields_the_exception_in_place(backend, n_jobs, ordered):
    results = list(Pool(fail_on_3, n_jobs, exception_behavior="ignore", is_unordered=not ordered, **backend)(
        range(8)
    ))
    assert len(results) == 8
    errors = [r for r in results if is_exception(r)]
    assert len(errors) == 1 and isinstance(errors[0], ValueError)
    assert str(errors[0]) == "item 3 is bad"
    _check_traceback(errors[0], backend, n_jobs, "fail_on_3")
    if ordered:
        assert results[:3] == [0, 1, 2] and results[4:] == [4, 5, 6, 7]
        assert results[3] is errors[0]


def test_ignore_with_many_failures_on_unsized_input(backend, n_jobs):
    results = list(Pool(fail_odd, n_jobs, exception_behavior="ignore", **backend)(iter(range(500))))
    assert [r for r in results if not is_exception(r)] == list(range(0, 500, 2))
    assert [r.args[0] for r in results if is_exception(r)] == list(range(1, 500, 2))


def test_immediate_raises_the_original_exception(backend, n_jobs):
    pool = Pool(fail_on_3, n_jobs, **backend)
    seen = []
    with pytest.raises(ValueError, match="item 3 is bad") as info:
        for r in pool(range(100)):
            seen.append(r)
    _check_traceback(info.value, backend, n_jobs, "fail_on_3")
    # Ordered and prompt: a prefix of the results before the failure (those still running when it
    # arrived are not waited for), never a result after it. In the caller, exactly the prefix.
    assert seen == list(range(len(seen))) and len(seen) <= 3
    if n_jobs == 1:
        assert seen == [0, 1, 2]


@pytest.mark.no_ray("the task closes over a threading.Event; tests/test_ray.py has the Ray version")
@pytest.mark.timeout(30)
def test_immediate_does_not_wait_for_long_tasks_in_flight(backend):
    # item 0 blocks for 60 s on one worker, past the test's timeout; item 1 fails on the other one
    # at once. Unordered, the failure is raised at once. (Ordered, item 0's result comes first, so
    # the run waits for it: tests/test_engine_fake.py checks that order, and that nothing after the
    # failure is waited for.)
    items = [(60, 0), "boom"]
    # Set at the end, so an abandoned thread ends too; a process worker sleeps until it is killed
    # (a thread event cannot go to processes: it would be copied, and is refused).
    release = threading.Event() if backend["use_threads"] else None

    def task(x):
        if x == "boom":
            raise LookupError("fails fast")
        seconds, value = x
        if release is None:
            time.sleep(seconds)
        else:
            release.wait(seconds)
        return value

    try:
        with pytest.raises(LookupError, match="fails fast"):
            list(Pool(task, 2, join_timeout=0.2, is_unordered=True, **backend)(items))
    finally:
        if release is not None:
            release.set()


def test_immediate_can_be_caught_and_the_pool_reused(backend):
    with Pool(fail_on_3, 2, **backend) as pool:
        with pytest.raises(ValueError):
            list(pool(range(10)))
        assert list(pool([0, 1, 2])) == [0, 1, 2]


@pytest.mark.parametrize("ordered", [True, False])
def test_deferred_yields_then_raises_all(backend, n_jobs, ordered):
    pool = Pool(fail_odd, n_jobs, exception_behavior="deferred", is_unordered=not ordered, **backend)
    seen = []
    with pytest.raises(DeferredExceptions) as info:
        for r in pool(range(10)):
            seen.append(r)
    err = info.value
    assert len(seen) == 10  # every item came out before the raise
    assert isinstance(err, Exception) and isinstance(err, MtaskliteLikeError)
    assert all(isinstance(e, KeyError) for e in err.args)
    assert list(err.args) == err.exceptions
    assert sorted(e.args[0] for e in err.args) == [1, 3, 5, 7, 9]
    assert [e for e in seen if is_exception(e)] == err.exceptions
    if ordered:
        assert [e.args[0] for e in err.args] == [1, 3, 5, 7, 9]
    for e in err.args:
        _check_traceback(e, backend, n_jobs, "fail_odd")


def test_deferred_without_failures_raises_nothing(backend, n_jobs):
    assert list(Pool(square, n_jobs, exception_behavior="deferred", **backend)(range(5))) == [0, 1, 4, 9, 16]


def test_deferred_args_match_exception_star_excs():
    excs = [ValueError(1), KeyError(2)]
    assert DeferredExceptions(*excs).args == Exception(*excs).args


def _failing_input(n_good):
    yield from range(n_good)
    raise OSError("the input file is truncated")


@pytest.mark.parametrize("mode", ["ignore", "immediate", "deferred"])
def test_failing_input_iterator(backend, n_jobs, mode):
    seen = []
    with pytest.raises(OSError, match="truncated"):
        for r in Pool(square, n_jobs, exception_behavior=mode, **backend)(_failing_input(25)):
            seen.append(r)
    assert seen == [x * x for x in range(25)]


def _die_on_5(x):
    if x == 5:
        os._exit(3)
    return x


def test_dead_worker_is_reported_not_hung():
    with pytest.raises(WorkerDiedError) as info:  # a hang fails at the test's timeout
        list(Pool(_die_on_5, 2, chunk_size=1)(range(20)))
    err = info.value
    assert err.exitcode == 3 and err.pid and 5 in err.indices
    assert "exit code 3" in str(err) and "#5" in str(err)


def _unpicklable_result(x):
    if x == 2:
        return (i for i in range(3))  # a generator cannot be pickled
    return x


def test_unpicklable_result_fails_only_its_item():
    results = list(Pool(_unpicklable_result, 2, exception_behavior="ignore")(range(6)))
    assert [r for r in results if not is_exception(r)] == [0, 1, 3, 4, 5]
    assert isinstance(results[2], TaskPicklingError)
    assert "item #2" in str(results[2]) and "generator" in str(results[2])


def test_unpicklable_item_fails_only_its_item():
    items = [1, (i for i in range(2)), 3]  # no pickler handles a live generator
    results = list(Pool(lambda x: 7, 2, exception_behavior="ignore")(items))
    assert results[0] == 7 and results[2] == 7
    assert isinstance(results[1], TaskPicklingError)
    assert "input item #1" in str(results[1])


class NeedsTwoArgs(Exception):
    def __init__(self, a, b):
        super().__init__(f"{a}-{b}")


def _raise_unpicklable_exception(x):
    if x == 1:
        raise NeedsTwoArgs("x", "y")
    return x


def test_exception_that_cannot_be_unpickled_becomes_a_clear_error():
    results = list(Pool(_raise_unpicklable_exception, 2, exception_behavior="ignore")(range(3)))
    assert results[0] == 0 and results[2] == 2
    err = results[1]
    assert isinstance(err, TaskPicklingError)
    assert "NeedsTwoArgs" in str(err) and "item #1" in str(err)
    assert "_raise_unpicklable_exception" in str(err.__cause__)
