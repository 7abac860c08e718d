"""Thread-only objects (``threading.Lock``, ``Event``, ``queue.Queue``, ...) and process workers.

A copy of such an object in another process is a new, unconnected one: a lock that excludes
nobody, a queue nobody else reads. The standard pickler refuses them; so does this package, on
every route to a process worker, with a ``TypeError`` that names the object and what to use:

- an item: that item alone fails (``TaskPicklingError``), the others run;
- a worker's argument (``functools.partial``, closure variable, default value), a ``@delayed_init``
  argument, ``initargs``: the pool refuses it when it is built, under every start method (under
  ``fork`` nothing is pickled, so the pool looks at those routes itself);
- a result: that item fails.

Threads never pickle, and keep sharing the caller's objects.
"""

from __future__ import annotations

import functools
import os
import pickle
import queue
import threading
from typing import Any

import dill
import multiprocess
import pytest

from mtasklite_like import Pool, TaskPicklingError, delayed_init, is_exception
from mtasklite_like._backends.serialize import dumps, dumps_oob, loads, loads_oob
from mtasklite_like.mapreduce import parallelize

pytestmark = pytest.mark.timeout(60)

#: every thread-only kind: how to make one, the name messages use, and the Manager method to use instead
KINDS = [
    (threading.Lock, "threading.Lock", "Lock"),
    (threading.RLock, "threading.RLock", "RLock"),
    (threading.Condition, "threading.Condition", "Condition"),
    (threading.Semaphore, "threading.Semaphore", "Semaphore"),
    (threading.BoundedSemaphore, "threading.BoundedSemaphore", "BoundedSemaphore"),
    (threading.Event, "threading.Event", "Event"),
    (lambda: threading.Barrier(2), "threading.Barrier", "Barrier"),
    (queue.Queue, "queue.Queue", "Queue"),
    (queue.LifoQueue, "queue.LifoQueue", "Queue"),
    (queue.PriorityQueue, "queue.PriorityQueue", "Queue"),
    (queue.SimpleQueue, "queue.SimpleQueue", "Queue"),
]
KIND_IDS = [name for _, name, _ in KINDS]


def type_name(x: Any) -> str:
    return type(x).__name__


def takes_lock(*args: Any, lock: Any = None) -> Any:
    """Returns the item: the last positional argument."""
    return args[-1]


def add_under(lock: Any, path: str, x: int) -> int:
    """Adds 1 to the number in ``path`` under ``lock`` (a lost update means the lock excluded
    nobody); returns the worker's pid."""
    with lock:
        with open(path) as f:
            value = int(f.read())
        with open(path, "w") as f:
            f.write(str(value + 1))
    return os.getpid()


def no_op(*args: Any) -> None:
    pass


@delayed_init
class Guarded:
    def __init__(self, lock: Any = None, *, other: Any = None) -> None:
        self.lock = other if lock is None else lock

    def __call__(self, x: int) -> int:
        with self.lock:
            return x


class OwnLock:
    """A callable object with a lock of its own, guarding its own counter."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls = 0

    def __call__(self, x: int) -> int:
        with self.lock:
            self.calls += 1
        return x


def closing_over(obj: Any) -> Any:
    def work(x: int = 0) -> int:
        with obj:
            return x

    return work


# -- the serialiser ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "name", "method"), KINDS, ids=KIND_IDS)
def test_the_dill_fallback_refuses_thread_only_objects_and_names_them(make, name, method):
    obj = make()
    for message in ({"x": [obj]}, lambda: obj):  # data, and a closure only dill can pickle
        with pytest.raises(TypeError) as info:  # as the standard pickler raises
            dumps(message)
        assert info.value.obj is obj  # type: ignore[attr-defined]
        text = str(info.value)
        assert name in text and f"multiprocess.Manager().{method}()" in text and "use_threads=True" in text
        with pytest.raises(TypeError, match=name):
            dumps_oob([message, b"x" * 100_000])  # the out-of-band route falls back the same way


def test_lambdas_closures_and_main_code_still_go_through_dill():
    offset = 5
    closure = lambda x: x + offset  # noqa: E731 - a closure, which only dill pickles
    assert loads(dumps(closure))(1) == 6
    assert loads(dumps(closure, main_by_value=True))(2) == 7
    data, buffers = dumps_oob([closure, bytearray(100_000)])
    got = loads_oob(data, [bytearray(b) for b in buffers or []])
    assert got[0](3) == 8 and len(got[1]) == 100_000


def test_the_fallback_writes_what_dill_writes():
    from mtasklite_like._backends.serialize import _dill_dumps

    offset = 5

    class Local:
        def __init__(self) -> None:
            self.f = lambda x: x + offset

    for obj in (lambda x: x + offset, Local(), {"k": [Local, closing_over(offset)]}):
        assert _dill_dumps(obj) == dill.dumps(obj, pickle.HIGHEST_PROTOCOL, byref=False, recurse=True)


def test_plain_data_still_takes_the_standard_pickler_untouched():
    data = {"a": [1, 2.5, "x", (None, True)], "b": b"bytes"}
    assert dumps(data) == pickle.dumps(data, pickle.HIGHEST_PROTOCOL)


def test_a_subclass_made_for_processes_is_not_refused():
    # multiprocess.Barrier subclasses threading.Barrier; it is made to be shared by processes.
    barrier = multiprocess.get_context("fork").Barrier(2)
    Pool(functools.partial(takes_lock, lock=barrier), 2)


# -- items -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("make", "name", "method"), KINDS[:1] + KINDS[5:6] + KINDS[7:8], ids=KIND_IDS[:1]
                         + KIND_IDS[5:6] + KIND_IDS[7:8])
def test_an_item_holding_one_fails_that_item_alone(make, name, method):
    items = [1, {"guard": make()}, 3, 4]
    results = list(Pool(type_name, 2, exception_behavior="ignore")(items))
    assert results[0] == results[2] == results[3] == "int"
    assert is_exception(results[1]) and isinstance(results[1], TaskPicklingError)
    assert isinstance(results[1], TypeError)  # as the standard library's "cannot pickle" error
    assert "input item #1" in str(results[1])
    assert name in str(results[1]) and f"Manager().{method}()" in str(results[1])


def test_a_result_holding_one_fails_that_item_alone():
    pool = Pool(lambda x: threading.Lock() if x == 1 else x, 2, exception_behavior="ignore")
    results = list(pool(range(3)))
    assert results[0] == 0 and results[2] == 2
    assert isinstance(results[1], TaskPicklingError) and "threading.Lock" in str(results[1])


# -- worker arguments: refused when the pool is built --------------------------------------------------

LOCK = threading.Lock()
ROUTES = {
    "partial argument": (functools.partial(takes_lock, 0, LOCK), {},
                         "the worker > functools.partial argument #1"),
    "partial keyword": (functools.partial(takes_lock, lock=LOCK), {}, "functools.partial keyword 'lock'"),
    "inside a list": (functools.partial(takes_lock, lock=[1, {"k": LOCK}]), {},
                      "functools.partial keyword 'lock'[1]['k']"),
    "closure": (closing_over(LOCK), {}, "the worker > closure variable 'obj'"),
    "default value": (lambda x, guard=LOCK: x, {}, "default of parameter 'guard'"),
    "delayed_init argument": (Guarded(LOCK), {}, "@delayed_init argument #0"),
    "delayed_init keyword": (Guarded(other=LOCK), {}, "@delayed_init keyword 'other'"),
    "initargs": (takes_lock, {"initializer": no_op, "initargs": ("x", LOCK)}, "initargs[1]"),
    "initializer closure": (takes_lock, {"initializer": closing_over(LOCK)}, "the initializer > closure"),
    "list of workers": ([takes_lock, functools.partial(takes_lock, lock=LOCK)], {}, "worker #1 of the list"),
}


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
@pytest.mark.parametrize("route", list(ROUTES))
def test_a_worker_argument_is_refused_when_the_pool_is_built(route, start_method):
    worker, options, where = ROUTES[route]
    n_jobs = len(worker) if isinstance(worker, list) else 2
    with pytest.raises(TypeError) as info:
        Pool(worker, n_jobs, start_method=start_method, **options)
    text = str(info.value)
    assert where in text and "threading.Lock" in text
    assert "multiprocess.Manager().Lock()" in text and "use_threads=True" in text


def test_parallelize_refuses_it_too():
    with pytest.raises(TypeError, match="closure variable 'obj'"):
        parallelize(closing_over(LOCK), 2, reduction="flatten")


def test_threads_and_the_caller_keep_sharing_the_callers_objects():
    # Nothing is pickled: the same lock object reaches every worker, in every route.
    seen: list[Any] = []

    def note(x: int, lock: Any) -> int:
        seen.append(lock)
        return x

    for route in ROUTES.values():
        worker, options, _ = route
        n_jobs = len(worker) if isinstance(worker, list) else 2
        assert list(Pool(worker, n_jobs, use_threads=True, **options)(range(4))) == [0, 1, 2, 3]
    assert list(Pool(functools.partial(note, lock=LOCK), 3, use_threads=True)(range(6))) == list(range(6))
    assert list(Pool(functools.partial(note, lock=LOCK), 1)(range(3))) == [0, 1, 2]  # in the caller
    assert all(lock is LOCK for lock in seen)


def test_an_object_with_a_lock_of_its_own_is_copied_with_it_under_fork():
    # Each worker process gets the object and the state its lock guards together: sound. Other
    # start methods pickle the object, and refuse it (pointing at @delayed_init).
    worker = OwnLock()
    assert list(Pool(worker, 2, start_method="fork")(range(10))) == list(range(10))
    with pytest.raises(TypeError, match=r"holds a threading.Lock inside.*@delayed_init"):
        Pool(worker, 2, start_method="spawn")


def test_the_suggested_manager_lock_is_shared_by_the_workers(tmp_path):
    counter = tmp_path / "counter"
    counter.write_text("0")
    with multiprocess.Manager() as manager:
        lock = manager.Lock()
        task = functools.partial(add_under, lock, str(counter))
        pids = set(Pool(task, 2, chunk_size=1)(range(40)))
    assert counter.read_text() == "40"
    assert os.getpid() not in pids  # the tasks ran in the worker processes
