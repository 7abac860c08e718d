"""The fault matrix: every fault x backend x order x exception mode x sized/unsized input.

One item (FAULTY) of each input misbehaves; for every combination the run must end (hard
timeout), account for each input item exactly once or raise an error that names the faulty
item, and leave no child process behind (on Ray: no actor process).

On Ray every fault runs in every exception mode, with the order and the kind of input rotating
from fault to fault, so that each fault meets both orders and each mode all four pairings (each
actor costs more to start than a process: the full grid would take minutes).
"""

from __future__ import annotations

import ctypes
import functools
import os
import signal
import sys
import threading
import time

import pytest

from mtasklite_like import (
    DeferredExceptions,
    Pool,
    TaskPicklingError,
    TaskTimeoutError,
    WorkerDiedError,
    is_exception,
)
from tests.helpers import pid_running

N = 12
FAULTY = 5
TIMEOUT = 0.5
#: what a stuck task waits for: set when its test ends, so that a thread it ran in ends then (a
#: process or an actor it ran in must have been killed by task_timeout long before the fallback)
RELEASE = threading.Event()
#: stuck tasks that returned (in this process: on threads)
RETURNED: list[int] = []


class NeedsTwoArgs(Exception):
    """Pickles, but cannot be rebuilt from its args: unpickling it in the parent would fail."""

    def __init__(self, a, b):
        super().__init__(f"{a}/{b}")


def task(fault, x):
    if x == FAULTY:
        if fault == "exception":
            raise ValueError(f"item {x} failed")
        if fault == "os_exit":
            os._exit(1)
        if fault == "sys_exit":
            sys.exit(1)
        if fault == "sigkill":
            os.kill(os.getpid(), signal.SIGKILL)
        if fault == "segfault":
            ctypes.string_at(0)
        if fault == "keyboard_interrupt":
            raise KeyboardInterrupt
        if fault == "timeout":
            RELEASE.wait(20)
            RETURNED.append(x)
        if fault == "unpicklable_result":
            return (i for i in range(3))
        if fault == "unpicklable_exception":
            raise NeedsTwoArgs("a", "b")
    return 2 * x


#: fault -> (error type the faulty item gets, backends where it applies)
FAULTS = {
    "exception": (ValueError, ("processes", "threads")),
    "os_exit": (WorkerDiedError, ("processes",)),
    "sys_exit": (WorkerDiedError, ("processes", "threads")),
    "sigkill": (WorkerDiedError, ("processes",)),
    "segfault": (WorkerDiedError, ("processes",)),
    "keyboard_interrupt": (WorkerDiedError, ("processes", "threads")),
    "timeout": (TaskTimeoutError, ("processes", "threads")),
    "unpicklable_result": (TaskPicklingError, ("processes",)),
    "unpicklable_argument": (TaskPicklingError, ("processes",)),
    "unpicklable_exception": (TaskPicklingError, ("processes",)),
}
DEATHS = {"os_exit", "sys_exit", "sigkill", "segfault", "keyboard_interrupt"}

CASES = [
    pytest.param(fault, backend, id=f"{fault}-{backend}")
    for fault, (_, backends) in FAULTS.items()
    for backend in backends
]


def _inputs(fault, sized):
    poison = fault == "unpicklable_argument"
    items = [(i for i in range(2)) if (poison and x == FAULTY) else x for x in range(N)]
    return items if sized else iter(items)


def _names_faulty_item(err):
    if isinstance(err, WorkerDiedError):
        return FAULTY in err.indices
    return f"#{FAULTY}" in str(err) or f"item {FAULTY}" in str(err)


def _children(pid):
    """Live (non-zombie) child processes of ``pid``."""
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/status") as f:
                fields = dict(line.rstrip("\n").split(":\t", 1) for line in f if ":\t" in line)
        except OSError:
            continue
        if fields.get("PPid") == str(pid) and not fields.get("State", "").startswith("Z"):
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if b"resource_tracker" in f.read():
                        continue  # multiprocessing's tracker: lives as long as this process
            except OSError:
                continue
            out.append(int(entry))
    return out


@pytest.fixture(autouse=True)
def release_stuck_tasks():
    RELEASE.clear()
    RETURNED.clear()
    yield
    RELEASE.set()


@pytest.fixture(autouse=True)
def no_leftover_children():
    # Children that were there before the test (a local Ray's own services) are not its workers.
    before = set(_children(os.getpid()))
    yield
    deadline = time.monotonic() + 5
    while set(_children(os.getpid())) - before and time.monotonic() < deadline:
        time.sleep(0.05)
    assert set(_children(os.getpid())) - before == set(), "worker processes outlived the pool"


@pytest.mark.timeout(30)
@pytest.mark.skipif(not os.path.exists("/proc"), reason="needs /proc")
@pytest.mark.parametrize("sized", [True, False], ids=["sized", "unsized"])
@pytest.mark.parametrize("ordered", [True, False], ids=["ordered", "unordered"])
@pytest.mark.parametrize("mode", ["ignore", "immediate", "deferred"])
@pytest.mark.parametrize(("fault", "backend"), CASES)
def test_fault(fault, backend, mode, ordered, sized):
    _check_fault(fault, {"use_threads": backend == "threads"}, mode, ordered, sized)


RAY_CASES = [
    pytest.param(
        fault, mode, ordered, sized,
        id=f"{fault}-{mode}-{'ordered' if ordered else 'unordered'}-{'sized' if sized else 'unsized'}",
    )
    for k, fault in enumerate(FAULTS)
    for m, mode in enumerate(("ignore", "immediate", "deferred"))
    for ordered, sized in [((k + m) % 2 == 0, (k // 2 + m) % 2 == 0)]
]


@pytest.mark.ray
@pytest.mark.timeout(30)
@pytest.mark.parametrize(("fault", "mode", "ordered", "sized"), RAY_CASES)
def test_fault_on_ray(ray_session, fault, mode, ordered, sized):
    actors = _check_fault(fault, {"backend": "ray"}, mode, ordered, sized)
    # Every actor of the pool, the replaced ones included, has ended.
    deadline = time.monotonic() + 5
    while any(pid_running(p) for p in actors) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not [p for p in actors if pid_running(p)], "actors outlived the pool"


def _check_fault(fault, backend, mode, ordered, sized):
    """Run the faulty input and check the outcome; return every worker pid seen during the run."""
    error_type, _ = FAULTS[fault]
    pool = Pool(
        functools.partial(task, fault),
        2,
        exception_behavior=mode,
        is_unordered=not ordered,
        task_timeout=TIMEOUT if fault == "timeout" else None,
        join_timeout=0.2,
        **backend,
    )
    seen = []
    pids = set()
    try:
        for r in pool(_inputs(fault, sized)):
            seen.append(r)
            pids.update(p for p in pool.worker_pids if p)
    except Exception as exc:
        raised = exc
    else:
        raised = None
    # A stuck task is not waited for: the run ended while it was still stuck.
    assert RETURNED == []

    values = [r for r in seen if not is_exception(r)]
    errors = [r for r in seen if is_exception(r)]
    # Nothing twice, nothing invented.
    assert len(values) == len(set(values))
    assert set(values) <= {2 * x for x in range(N) if x != FAULTY}
    if ordered:
        assert values == sorted(values)

    death_raises = fault in DEATHS and mode != "ignore"  # the default on_worker_death
    if mode == "immediate" or death_raises:
        # The run stops at the fault with an error that names the item.
        assert isinstance(raised, error_type), raised
        assert _names_faulty_item(raised), raised
        assert errors == []
        return pids

    # 'ignore' and 'deferred': every item comes out exactly once, the faulty one as its error.
    assert len(seen) == N
    assert len(errors) == 1 and isinstance(errors[0], error_type)
    assert _names_faulty_item(errors[0])
    assert sorted(values) == [2 * x for x in range(N) if x != FAULTY]
    if ordered:
        assert seen.index(errors[0]) == FAULTY
    if mode == "ignore":
        assert raised is None
    else:
        assert isinstance(raised, DeferredExceptions)
        assert raised.exceptions == errors
    return pids


@pytest.mark.timeout(30)
@pytest.mark.parametrize("mode", ["immediate", "deferred"])
@pytest.mark.parametrize("fault", sorted(DEATHS))
def test_death_with_restart_in_raising_modes(fault, mode):
    """With on_worker_death='restart' a death is the item's own error in every mode."""
    pool = Pool(functools.partial(task, fault), 2, exception_behavior=mode, on_worker_death="restart")
    seen = []
    with pytest.raises((WorkerDiedError, DeferredExceptions)) as info:
        for r in pool(range(N)):
            seen.append(r)
    if mode == "immediate":
        assert isinstance(info.value, WorkerDiedError) and FAULTY in info.value.indices
    else:
        assert len(seen) == N
        (err,) = info.value.exceptions
        assert isinstance(err, WorkerDiedError) and err.indices == [FAULTY]
        assert seen[FAULTY] is err


@pytest.mark.timeout(30)
@pytest.mark.parametrize("fault", ["os_exit", "sigkill", "segfault"])
def test_death_is_detected_while_the_other_worker_is_busy(fault):
    def slow_then_fault(x):
        if x == 0:
            return task(fault, FAULTY)
        time.sleep(60)  # the other worker is busy past the test's timeout: only the death ends the run

    with pytest.raises(WorkerDiedError) as info:
        list(Pool(slow_then_fault, 2, join_timeout=0.1)(range(2)))
    err = info.value
    assert err.pid and err.worker_index in (0, 1)
    assert err.indices == [0]
    expected = {"os_exit": "exit code 1", "sigkill": "SIGKILL", "segfault": "SIGSEGV"}[fault]
    assert expected in str(err)
