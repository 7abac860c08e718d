"""@delayed_init: objects built inside each worker, once, with per-worker arguments and state."""

from __future__ import annotations

import contextlib
import os
import pickle
import threading

import pytest

from mtasklite_like import (
    DelayedObject,
    ExceptionBehaviour,
    Pool,
    WorkerInitError,
    delayed_init,
)
from tests.helpers import BrokenInit, Counter, boom_in_init_helper, remote_workers, square

pytestmark = pytest.mark.timeout(60)

MODES = [ExceptionBehaviour.IGNORE, ExceptionBehaviour.IMMEDIATE, ExceptionBehaviour.DEFERRED]


def test_shell_stores_arguments_and_builds_nothing():
    built = []

    @delayed_init
    class Model:
        def __init__(self, a, b=2):
            built.append((a, b))

        def __call__(self, x):
            return x

    shell = Model(1, b=3)
    assert built == []
    assert isinstance(shell, DelayedObject)
    assert shell.args == (1,) and shell.kwargs == {"b": 3}
    assert "Model(1, b=3)" in repr(shell)
    obj = shell.build()
    assert built == [(1, 3)]
    assert isinstance(obj, Model)
    assert shell.build() is not obj  # build() makes a new object each time


def test_isinstance_and_class_attributes_work_on_the_shell():
    shell = Counter(0)
    assert isinstance(shell, Counter)
    assert isinstance(shell.build(), Counter)
    assert not isinstance(square, Counter)
    assert Counter.describe() == "counter"
    assert Counter.built == 0
    assert Counter.__name__ == "Counter"


def test_calling_the_shell_builds_once_and_calls():
    shell = Counter(9)
    first = shell(1)
    second = shell(2)
    assert first[3] == second[3]  # same object
    assert (first[4], second[4]) == (1, 2)


def test_shell_pickles_without_its_object():
    shell = Counter(4, offset=1)
    shell(0)  # builds a cached object, which must not travel
    copy = pickle.loads(pickle.dumps(shell))
    assert isinstance(copy, Counter)
    assert copy.args == (4,) and copy.kwargs == {"offset": 1}
    assert copy(10)[4] == 1  # a fresh object: first call


def test_decorating_a_non_class_fails():
    with pytest.raises(TypeError, match="decorates a class"):
        delayed_init(square)


@pytest.mark.parametrize("jobs", [2, 3, 4])
def test_each_worker_builds_its_own_object_once_and_keeps_state(backend, jobs):
    shells = [Counter(i) for i in range(jobs)]
    results = list(Pool(shells, **backend)(range(200)))
    assert [r[5] for r in results] == list(range(200))
    by_worker: dict[int, list[int]] = {}
    for worker_id, pid, tid, _obj, calls, _ in results:
        by_worker.setdefault(worker_id, []).append(calls)
        # built inside the worker, never in the caller
        if backend["use_threads"]:
            assert pid == os.getpid() and tid != threading.get_ident()
        else:
            assert pid != os.getpid()
    for calls in by_worker.values():
        # one object per worker, state carried across items: call counts run 1, 2, 3, ...
        assert sorted(calls) == list(range(1, len(calls) + 1))
    ids = {(r[0], r[1], r[2], r[3]) for r in results}
    assert len(ids) == len(by_worker)  # exactly one object per worker seen


def test_one_shell_for_all_workers_gives_one_object_per_worker(backend):
    shell = Counter(7)
    results = list(Pool(shell, 3, chunk_size=1, **backend)(range(60)))
    where = {(r[1], r[2]) for r in results}
    objects = {(r[1], r[3]) for r in results}
    assert len(where) == len(objects)  # never one object shared by two threads
    assert all(r[0] == 7 for r in results)


def test_same_shell_object_repeated_in_a_list_with_threads():
    shell = Counter(1)
    results = list(Pool([shell, shell, shell], use_threads=True, chunk_size=1)(range(60)))
    per_thread = {}
    for _, _, tid, obj_id, _, _ in results:
        per_thread.setdefault(tid, set()).add(obj_id)
    assert all(len(ids) == 1 for ids in per_thread.values())
    all_ids = set().union(*per_thread.values())
    assert len(all_ids) == len(per_thread)


def test_objects_live_across_calls_of_a_managed_pool(backend):
    with Pool([Counter(0), Counter(1)], **backend) as pool:
        first = list(pool(range(10)))
        second = list(pool(range(10)))
    built_first = {(r[1], r[2], r[3]) for r in first}
    built_second = {(r[1], r[2], r[3]) for r in second}
    assert built_first == built_second  # same objects, not rebuilt
    assert sum(r[4] for r in second) > sum(r[4] for r in first)  # their counters kept going


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("jobs", [1, 2])
def test_init_error_is_raised_in_every_mode(backend, mode, jobs):
    pool = Pool([BrokenInit("no GPU here")] * jobs, exception_behavior=mode, **backend)
    with pytest.raises(WorkerInitError) as info:
        list(pool(range(10)))
    err = info.value
    assert "no GPU here" in str(err)
    assert isinstance(err.__cause__, RuntimeError)
    if remote_workers(backend, jobs):
        # the worker's traceback travels with the original exception
        assert "raise RuntimeError(message)" in str(err.__cause__.__cause__)
    else:
        assert err.__cause__.__traceback__ is not None


@pytest.mark.no_ray("the initializer closes over a lock; tests/test_ray.py has the Ray version")
def test_initializer_runs_once_per_worker_before_items(backend):
    import collections

    log = collections.Counter()
    # A thread lock cannot go to process workers (it would be copied, not shared): it is refused.
    lock = threading.Lock() if backend["use_threads"] else contextlib.nullcontext()

    def init(tag):
        with lock:
            log[tag] += 1
        os.environ["MTL_INIT_TAG"] = tag

    def task(x):
        return os.environ.get("MTL_INIT_TAG"), x

    results = list(Pool(task, 2, initializer=init, initargs=("ready",), **backend)(range(20)))
    assert [r[1] for r in results] == list(range(20))
    assert all(r[0] == "ready" for r in results) or backend["use_threads"]
    if backend["use_threads"]:
        assert log["ready"] == 2


def test_failing_initializer_is_an_init_error(backend):
    with pytest.raises(WorkerInitError, match="initializer failed"):
        pool = Pool(square, 2, initializer=boom_in_init_helper, exception_behavior="ignore", **backend)
        list(pool(range(5)))
