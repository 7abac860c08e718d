"""Edge cases of the fault-tolerance machinery: restarts, retries, task and init timeouts.

Every test checks the guarantees that must survive whatever goes wrong: each input item comes out
exactly once (as its result or as an error naming it), in input order when the output is ordered,
every run ends, and no worker process outlives its pool.

Process tests use ``start_method='fork'``, so tasks may take a :class:`multiprocess` barrier or a
directory through ``functools.partial``. A task that must run once and then succeed, or record its
pid, does it with files in ``tmp_path`` (shared by threads and forked processes alike). Stuck thread
tasks wait on an event that the ``release`` fixture sets at teardown, so no thread outlives its
test by more than a moment.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import signal
import threading
import time
from typing import Any

import multiprocess
import pytest

from mtasklite_like import (
    DeferredExceptions,
    Pool,
    TaskTimeoutError,
    WorkerDiedError,
    WorkerInitError,
    delayed_init,
    is_exception,
)
from tests.helpers import pid_running

pytestmark = pytest.mark.timeout(30)

BACKENDS: dict[str, dict[str, Any]] = {
    "processes": {"start_method": "fork"},
    "threads": {"use_threads": True},
}
#: seconds stopped workers get to disappear (join_timeout 0.5 s + terminate 0.5 s + margin)
GONE_WITHIN = 3.0


# -- helpers ---------------------------------------------------------------------------------------


@pytest.fixture(params=sorted(BACKENDS))
def kind(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def release():
    """An event stuck thread tasks wait on; set at teardown so that abandoned threads end."""
    event = threading.Event()
    yield event
    event.set()


def _first_attempt(tmp: str, key: Any) -> bool:
    """True the first time it is called with ``key`` (in any thread or forked process)."""
    try:
        fd = os.open(os.path.join(tmp, f"attempt-{key}"), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.close(fd)
    return True


def _note_pid(tmp: str) -> None:
    with open(os.path.join(tmp, f"pid-{os.getpid()}"), "a"):
        pass


def _noted_pids(tmp: str) -> list[int]:
    return [int(name[4:]) for name in os.listdir(tmp) if name.startswith("pid-")]


def _assert_no_leftovers(pids: list[int] | set[int], within: float = GONE_WITHIN) -> None:
    """Every pid has ended and no ``multiprocess`` child is alive, within ``within`` seconds."""
    pids = [p for p in pids if p != os.getpid()]
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if pid_running(p)]
        children = multiprocess.active_children()
        if not alive and not children:
            return
        if time.monotonic() >= deadline:
            raise AssertionError(f"left running after the pool: pids {alive}, children {children}")
        time.sleep(0.02)


def _outcome(r: Any) -> Any:
    """A compact view of one result, for assertion messages."""
    if is_exception(r):
        return (type(r).__name__, getattr(r, "indices", None), getattr(r, "attempts", None))
    return r


def _assert_names_itself(error: BaseException, index: int, item: Any = None) -> None:
    """A WorkerDiedError in the place of item ``index`` names that item and no other."""
    assert isinstance(error, WorkerDiedError), (index, error)
    assert error.indices == [index], (index, error.indices)
    assert error.items == [index if item is None else item], (index, error.items)


# -- tasks (module level: fork inherits them, threads call them) -----------------------------------


def _count_done(tmp: str) -> None:
    """Add one to a counter shared by threads and forked processes (one byte per item done)."""
    fd = os.open(os.path.join(tmp, "done"), os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, b".")
    finally:
        os.close(fd)


def _done_count(tmp: str) -> int:
    path = os.path.join(tmp, "done")
    return os.path.getsize(path) if os.path.exists(path) else 0


def _wait_for_count(tmp: str, n: int, within: float) -> int:
    """Wait until ``n`` items are done, ``within`` seconds at most; return how many are."""
    deadline = time.monotonic() + within
    while (done := _done_count(tmp)) < n and time.monotonic() < deadline:
        time.sleep(0.002)
    return done


def fail_head_once(tmp: str, later: int, x: int) -> int:
    """Item 0 fails on its first attempt once ``later`` other items are done (noting how many were,
    in ``head-failed-after``), and succeeds on its retry; the wait gives up after 15 s."""
    if x == 0 and _first_attempt(tmp, 0):
        done = _wait_for_count(tmp, later, within=15.0)
        with open(os.path.join(tmp, "head-failed-after"), "w") as f:
            f.write(str(done))
        raise ValueError("item 0, first attempt")
    if x != 0:
        _count_done(tmp)
    return 2 * x


def die_on(killers: frozenset, tmp: str, x: int) -> int:
    _note_pid(tmp)
    if x in killers:
        os._exit(7)
    return 2 * x


def count_and_die(runs: Any, killer: int, tmp: str, x: int) -> int:
    """Counts runs; dies (once, in one worker) on the first item from ``killer`` on that is not the
    first of its batch (batch boundaries follow timing), which it records in ``tmp``."""
    from mtasklite_like._worker.context import current

    runs[x] += 1
    context = current()
    if x >= killer and context is not None and context.running()[1] > 0 and _claim(tmp, "killer", x):
        _note_pid(tmp)
        # Wait until the other worker has run 200 items pulled after this batch: the caller has then
        # refilled this worker too, so its next batch waits behind this one when it dies.
        deadline = time.monotonic() + 5.0
        while sum(1 for j in range(x + 1, len(runs)) if runs[j]) < 200 and time.monotonic() < deadline:
            time.sleep(0.001)
        os._exit(7)
    if x % 100 == 0:
        _note_pid(tmp)
    return 2 * x


def _claim(tmp: str, name: str, value: int) -> bool:
    """True for the first caller only, across processes; records ``value`` under ``name``."""
    try:
        fd = os.open(os.path.join(tmp, name), os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        return False
    os.write(fd, str(value).encode())
    os.close(fd)
    return True


def die_once_on(killers: frozenset, tmp: str, x: int) -> int:
    if x in killers and _first_attempt(tmp, x):
        os._exit(7)
    return 2 * x


def die_together(barrier: Any, n: int, tmp: str, x: int) -> int:
    _note_pid(tmp)
    if x < n:
        try:
            barrier.wait(5)
        except threading.BrokenBarrierError:
            pass
        os._exit(9)
    return 2 * x


def pid_and_value(killer: int, x: int) -> tuple[int, int]:
    if x == killer:
        os._exit(3)
    return os.getpid(), x


def slow_then_die(killer: int, x: int) -> int:
    """Item ``killer`` kills its worker; the items after it take 30 s (longer than the test may)."""
    if x == killer:
        os._exit(3)
    time.sleep(0.01 if x < killer else 30)
    return x


def sleep_for(tmp: str, x: float) -> float:
    """Sleeps ``x`` seconds (a stuck item in processes, which are killed)."""
    _note_pid(tmp)
    if x >= 10:
        with open(os.path.join(tmp, f"stuck-{os.getpid()}"), "a"):
            pass
    time.sleep(x)
    return x


def wait_for(release: threading.Event, x: float) -> Any:
    """Waits up to ``x`` seconds for ``release`` (a stuck item in threads, which are abandoned)."""
    if x and not release.wait(x):
        return "LATE"
    return x


def fail_then_block(tmp: str, release: threading.Event | None, x: int) -> int:
    """Item 0 fails on its first attempt; its retry blocks. Other items take a little time."""
    _note_pid(tmp)
    if x == 0:
        if _first_attempt(tmp, 0):
            raise ValueError("first attempt")
        _first_attempt(tmp, "retry-started")
        if release is None:
            time.sleep(30)
        else:
            release.wait(30)
        return -1
    time.sleep(0.002)
    return x


def fail_n_times(n: int, tmp: str, x: int) -> int:
    if x == 4:
        for k in range(n):
            if _first_attempt(tmp, f"{x}-{k}"):
                raise KeyError(f"item {x}, attempt {k + 1}")
    return x


def exit_thread_on(killer: int, x: int) -> int:
    if x == killer:
        raise SystemExit(4)
    return x


@delayed_init
class SegfaultAtInit:
    def __init__(self, tmp: str):
        _note_pid(tmp)
        os.kill(os.getpid(), signal.SIGSEGV)

    def __call__(self, x):
        return x


@delayed_init
class SleepyInit:
    """Takes ``seconds`` to build: sleeps in a process, waits for ``release`` in a thread."""

    def __init__(self, tmp: str, seconds: float, release: threading.Event | None = None):
        _note_pid(tmp)
        if release is None:
            time.sleep(seconds)
        else:
            release.wait(seconds)

    def __call__(self, x):
        return x


@delayed_init
class SlowInitDyingTask:
    """0.2 s to build; items that are multiples of 5 kill the worker, which is then rebuilt."""

    def __init__(self):
        time.sleep(0.2)

    def __call__(self, x):
        if x % 5 == 4:
            os._exit(1)
        return x


# -- retries and order ---------------------------------------------------------------------------


@pytest.mark.parametrize("ordered", [True, False])
def test_retried_head_item_is_released_in_place(kind, ordered, tmp_path):
    # Item 0 fails once 10 later items are done, and succeeds on its retry. One item per batch and
    # one batch per worker (chunk_size=1, chunk_prefill_ratio=1): nothing waits behind item 0 on its
    # worker, and the read-ahead window (15 items past item 0 when ordered) holds the 10 it waits for.
    pool = Pool(
        functools.partial(fail_head_once, str(tmp_path), 10), 2, exception_behavior="ignore", retries=1,
        is_unordered=not ordered, chunk_size=1, chunk_prefill_ratio=1, **BACKENDS[kind],
    )
    results = list(pool(range(500)))
    if ordered:
        assert results == [2 * x for x in range(500)]
    else:
        assert sorted(results) == [2 * x for x in range(500)]
    assert (tmp_path / "attempt-0").exists(), "item 0 really failed once"
    assert int((tmp_path / "head-failed-after").read_text()) >= 10, "item 0 failed after 10 later items"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("mode", ["ignore", "immediate", "deferred"])
@pytest.mark.parametrize("fails", [1, 2])
def test_retries_in_each_exception_mode(kind, mode, fails, tmp_path):
    # Item 4 fails ``fails`` times; with retries=1 one failure is masked, two are final.
    pool = Pool(
        functools.partial(fail_n_times, fails, str(tmp_path)), 2, exception_behavior=mode, retries=1,
        **BACKENDS[kind],
    )
    seen: list[Any] = []
    if fails == 1:
        assert list(pool(range(10))) == list(range(10))
        return
    expected_raise = {"immediate": KeyError, "deferred": DeferredExceptions, "ignore": None}[mode]
    if expected_raise is None:
        seen = list(pool(range(10)))
    else:
        with pytest.raises(expected_raise) as info:
            for r in pool(range(10)):
                seen.append(r)
    if mode == "immediate":
        error = info.value
        assert seen == list(range(len(seen))) and len(seen) <= 4
    else:
        assert [r for r in seen if not is_exception(r)] == [x for x in range(10) if x != 4]
        error = seen[4]
        if mode == "deferred":
            assert info.value.exceptions == [error]
    assert isinstance(error, KeyError) and error.args == ("item 4, attempt 2",)
    assert error.attempts == 2
    assert [e.args for e in error.previous_errors] == [("item 4, attempt 1",)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ordered", [True, False])
def test_deaths_on_first_attempt_are_all_retried_exactly_once(ordered, tmp_path):
    # Fast items in growing batches; every 500th item kills its worker on its first attempt only.
    killers = frozenset(range(250, 5000, 500))
    pool = Pool(
        functools.partial(die_once_on, killers, str(tmp_path)), 2, exception_behavior="ignore",
        retries=1, is_unordered=not ordered, chunk_prefill_ratio=2, start_method="fork",
    )
    results = list(pool(range(5000)))
    if ordered:
        assert results == [2 * x for x in range(5000)]
    else:
        assert sorted(results) == [2 * x for x in range(5000)]
    assert all((tmp_path / f"attempt-{k}").exists() for k in killers), "every killer really killed"
    _assert_no_leftovers([])


# -- deaths --------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("ordered", [True, False])
def test_death_while_holding_two_batches(ordered, tmp_path):
    # Fast tasks, batches of 100, two batches per worker: the killer dies in the middle of its batch
    # (the first item from 1550 on that is not the first of its batch) while the next batch waits
    # behind it. Items that ran before it in its batch lost their results with the worker, and items
    # behind it never started: all of them must still come out exactly once, with their values.
    # Only the killer gets a WorkerDiedError, naming it alone.
    n, threshold = 3000, 1550
    runs = multiprocess.get_context("fork").RawArray("i", n)
    pool = Pool(
        functools.partial(count_and_die, runs, threshold, str(tmp_path)), 2, exception_behavior="ignore",
        chunk_size=100, chunk_prefill_ratio=2, is_unordered=not ordered, start_method="fork",
    )
    outcomes: dict[int, Any] = {}
    for position, r in enumerate(pool(range(n))):
        if is_exception(r):
            assert isinstance(r, WorkerDiedError), r
            index = r.indices[0] if r.indices else None
        else:
            index = r // 2
            assert r == 2 * index
        if ordered:
            assert index == position, (position, _outcome(r))
        assert index not in outcomes, f"item {index} came out twice"
        outcomes[index] = r
    assert sorted(outcomes) == list(range(n))
    killer = int((tmp_path / "killer").read_text())
    error = outcomes.pop(killer)
    _assert_names_itself(error, killer)
    assert error.exitcode == 7 and error.worker_index in (0, 1) and error.pid is not None
    assert outcomes == {x: 2 * x for x in range(n) if x != killer}
    assert runs[killer] == 1
    # the scenario happened: the killer was not first in its batch, so items run before it lost
    # their results with the worker and ran a second time
    assert any(runs[x] == 2 for x in range(killer)), "the killer was the first item of its batch"
    _assert_no_leftovers(_noted_pids(str(tmp_path)))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("retries", [0, 1])
def test_every_worker_dies_at_once(retries, tmp_path):
    # Items 0..2 go one to each of 3 workers, which all die together (a barrier); with a retry
    # they all die together a second time.
    ctx = multiprocess.get_context("fork")
    barrier = ctx.Barrier(3)
    pool = Pool(
        functools.partial(die_together, barrier, 3, str(tmp_path)), 3, exception_behavior="ignore",
        retries=retries, start_method="fork",
    )
    results = list(pool(range(20)))
    assert len(results) == 20
    for index in range(3):
        _assert_names_itself(results[index], index)
        assert getattr(results[index], "attempts", 1) == retries + 1
    assert results[3:] == [2 * x for x in range(3, 20)]
    _assert_no_leftovers(_noted_pids(str(tmp_path)))


@pytest.mark.timeout(20)
@pytest.mark.parametrize("killer", [0, 10, 19])
def test_item_that_always_kills_its_worker_uses_all_its_retries(killer, tmp_path):
    pool = Pool(
        functools.partial(die_on, frozenset([killer]), str(tmp_path)), 2, exception_behavior="ignore",
        retries=2, start_method="fork",
    )
    results = list(pool(range(20)))
    assert [r for i, r in enumerate(results) if i != killer] == [2 * x for x in range(20) if x != killer]
    error = results[killer]
    _assert_names_itself(error, killer)
    assert error.attempts == 3
    assert len(error.previous_errors) == 2
    for earlier in error.previous_errors:
        _assert_names_itself(earlier, killer)
    # three attempts, three different worker processes, all gone
    assert len({error.pid, *(e.pid for e in error.previous_errors)}) == 3
    _assert_no_leftovers(_noted_pids(str(tmp_path)))


@pytest.mark.timeout(20)
def test_item_that_always_kills_its_worker_with_many_retries(tmp_path):
    # retries=8: 9 deaths of the same item, a known culprit each time (it runs alone). Regression:
    # the 'workers keep dying' guard (more than max(3, 2 * n_jobs) deaths in a row) used to count
    # these deaths, so the run raised WorkerDiedError and dropped the finished results of 1 and 2.
    pool = Pool(
        functools.partial(die_on, frozenset([0]), str(tmp_path)), 2, exception_behavior="ignore",
        retries=8, start_method="fork",
    )
    try:
        results = list(pool(range(3)))
    finally:
        _assert_no_leftovers(_noted_pids(str(tmp_path)))
    assert results[1:] == [2, 4]
    _assert_names_itself(results[0], 0)
    assert results[0].attempts == 9


@pytest.mark.timeout(20)
@pytest.mark.parametrize("retries", [0, 2])
def test_worker_that_segfaults_at_init_ends_the_run_with_an_error(retries, tmp_path):
    # Every worker dies before it is ready, forever, and the input is endless: 'restart' must give
    # up with an error rather than restart workers (and yield deaths) for ever.
    pool = Pool(
        SegfaultAtInit(str(tmp_path)), 2, exception_behavior="ignore", on_worker_death="restart",
        retries=retries, start_method="fork",
    )
    seen: list[Any] = []
    with pytest.raises(WorkerDiedError) as info:
        for r in pool(itertools.count()):
            seen.append(r)
            assert len(seen) < 1000, "still restarting workers that never start"
    assert info.value.exitcode == -signal.SIGSEGV
    # what came out before the error are deaths, each naming its own item, in order
    for index, r in enumerate(seen):
        _assert_names_itself(r, index)
        assert r.exitcode == -signal.SIGSEGV
    pids = _noted_pids(str(tmp_path))
    assert len(pids) >= 2
    _assert_no_leftovers(pids)


@pytest.mark.timeout(20)
def test_keep_dying_error_does_not_advise_what_is_already_set(tmp_path):
    pool = Pool(
        SegfaultAtInit(str(tmp_path)), 2, exception_behavior="ignore", on_worker_death="restart",
        start_method="fork",
    )
    with pytest.raises(WorkerDiedError, match="keep dying") as info:
        list(pool(range(100)))
    _assert_no_leftovers(_noted_pids(str(tmp_path)))
    assert "on_worker_death='restart'" not in str(info.value), str(info.value)


@pytest.mark.timeout(20)
def test_deferred_with_deaths_under_restart(tmp_path):
    pool = Pool(
        functools.partial(die_on, frozenset([3, 7]), str(tmp_path)), 2, exception_behavior="deferred",
        on_worker_death="restart", start_method="fork",
    )
    seen: list[Any] = []
    with pytest.raises(DeferredExceptions) as info:
        for r in pool(range(12)):
            seen.append(r)
    assert len(seen) == 12
    assert [r for i, r in enumerate(seen) if i not in (3, 7)] == [2 * x for x in range(12) if x not in (3, 7)]
    _assert_names_itself(seen[3], 3)
    _assert_names_itself(seen[7], 7)
    # the very objects that were yielded, in input order
    assert info.value.exceptions == [seen[3], seen[7]]
    assert info.value.exceptions[0] is seen[3] and info.value.exceptions[1] is seen[7]
    _assert_no_leftovers(_noted_pids(str(tmp_path)))


@pytest.mark.timeout(20)
def test_immediate_with_restart_raises_the_death_promptly():
    # The items after item 5 take 30 s each, past the test's timeout: the death of item 5 must end
    # the run at once, without waiting for them.
    pool = Pool(functools.partial(slow_then_die, 5), 2, on_worker_death="restart", start_method="fork")
    seen: list[Any] = []
    with pytest.raises(WorkerDiedError) as info:
        for r in pool(range(400)):
            seen.append(r)
    # a prefix of what precedes the failure, never anything after it
    assert seen == list(range(len(seen))) and len(seen) <= 5
    _assert_names_itself(info.value, 5)
    assert info.value.exitcode == 3
    _assert_no_leftovers([info.value.pid])


@pytest.mark.timeout(20)
def test_immediate_with_restart_and_a_retry_hides_a_single_death(tmp_path):
    pool = Pool(
        functools.partial(die_once_on, frozenset([5]), str(tmp_path)), 2, on_worker_death="restart",
        retries=1, start_method="fork",
    )
    assert list(pool(range(50))) == [2 * x for x in range(50)]
    assert (tmp_path / "attempt-5").exists()


@pytest.mark.timeout(20)
def test_thread_worker_ended_by_systemexit_is_restarted():
    task = functools.partial(exit_thread_on, 3)
    pool = Pool(task, 2, use_threads=True, exception_behavior="ignore", retries=1)
    results = list(pool(range(10)))
    assert [r for i, r in enumerate(results) if i != 3] == [x for x in range(10) if x != 3]
    _assert_names_itself(results[3], 3)
    assert results[3].attempts == 2


@pytest.mark.timeout(20)
@pytest.mark.parametrize("retries", [0, 1])
def test_max_tasks_per_worker_with_a_death(retries):
    limit, killer = 3, 7
    pool = Pool(
        functools.partial(pid_and_value, killer), 2, exception_behavior="ignore", retries=retries,
        max_tasks_per_worker=limit, start_method="fork",
    )
    results = list(pool(range(40)))
    assert len(results) == 40
    _assert_names_itself(results[killer], killer)
    assert getattr(results[killer], "attempts", 1) == retries + 1
    values = [r for i, r in enumerate(results) if i != killer]
    assert [x for _, x in values] == [x for x in range(40) if x != killer]
    # each process ran at most ``limit`` items, the fatal one included
    per_pid = collections.Counter(pid for pid, _ in values)
    attempts = [results[killer], *getattr(results[killer], "previous_errors", [])]
    per_pid.update(e.pid for e in attempts)
    assert len(attempts) == retries + 1 and len({e.pid for e in attempts}) == len(attempts)
    assert max(per_pid.values()) <= limit, per_pid
    assert len(per_pid) >= -(-40 // limit)
    _assert_no_leftovers(set(per_pid))


# -- timeouts ------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", ["processes", "threads"])
def test_init_timeout_with_an_init_that_sleeps_30_s(backend, tmp_path, release):
    init_timeout = 0.5
    worker = SleepyInit(str(tmp_path), 30, release if backend == "threads" else None)
    pool = Pool(worker, 2, init_timeout=init_timeout, **BACKENDS[backend])
    t0 = time.monotonic()
    with pytest.raises(WorkerInitError, match="init_timeout"):
        list(pool(range(10)))
    # not before init_timeout; and long before the 30 s init ends (past the test's timeout)
    assert init_timeout <= time.monotonic() - t0
    if backend == "processes":
        pids = _noted_pids(str(tmp_path))
        assert len(pids) == 2
        _assert_no_leftovers(pids)


@pytest.mark.timeout(20)
def test_init_timeout_runs_from_each_worker_start():
    # Each build takes 0.2 s and workers are rebuilt after every 5th item (a death): the run lasts
    # well over init_timeout, but no single start does.
    t0 = time.monotonic()
    results = list(Pool(SlowInitDyingTask(), 2, exception_behavior="ignore", init_timeout=0.8,
                        start_method="fork")(range(30)))
    assert time.monotonic() - t0 > 0.8
    assert len(results) == 30
    for x, r in enumerate(results):
        if x % 5 == 4:
            _assert_names_itself(r, x)
        else:
            assert r == x


@pytest.mark.timeout(20)
def test_task_timeout_threads_abandons_the_stuck_thread(release):
    # Item 3 never finishes on its own; when the consumer sees its TaskTimeoutError it lets the
    # abandoned thread finish with the result "LATE". Later items are still being read and run
    # after that, so a late result that leaked into the run would show.
    stuck_threads: list[threading.Thread] = []

    def task(x):
        if x == 3:
            stuck_threads.append(threading.current_thread())
            release.wait(20)
            return "LATE"
        return x

    pool = Pool(task, 2, use_threads=True, task_timeout=0.3, exception_behavior="ignore")
    results = []
    for r in pool(range(200)):
        results.append(r)
        if isinstance(r, TaskTimeoutError):
            assert len(results) == 4
            assert not release.is_set()  # reported while the task was still stuck
            release.set()
            stuck_threads[0].join(5)
            assert not stuck_threads[0].is_alive()
    assert len(stuck_threads) == 1, "the timed-out item was not run again"
    assert "LATE" not in results
    assert len(results) == 200
    error = results[3]
    assert isinstance(error, TaskTimeoutError) and isinstance(error, TimeoutError)
    assert "#3" in str(error)
    assert results[:3] + results[4:] == [x for x in range(200) if x != 3]


@pytest.mark.timeout(20)
def test_task_timeout_processes_kills_the_stuck_worker(tmp_path):
    # Item 2 sleeps 30 s. Its worker must be killed when the item times out, while the run goes on
    # (the later items take 2 s in all), not only when the pool stops.
    tmp = str(tmp_path)
    pool = Pool(
        functools.partial(sleep_for, tmp), 2, task_timeout=0.3, exception_behavior="ignore",
        start_method="fork",
    )
    items = [0.0, 0.0, 30.0] + [0.01] * 150
    results = []
    stuck_pid = None
    for r in pool(items):
        results.append(r)
        if isinstance(r, TaskTimeoutError):
            assert len(results) == 3
            [stuck_pid] = [int(name[6:]) for name in os.listdir(tmp) if name.startswith("stuck-")]
            # The consumer holds the run here: only a kill at the timeout ends the 30 s item now.
            deadline = time.monotonic() + 10.0
            while pid_running(stuck_pid):
                assert time.monotonic() < deadline, "the stuck worker was not killed at its timeout"
                time.sleep(0.01)
            assert len(results) < len(items) - 100, "the run was not still going"
    assert stuck_pid is not None
    assert len(results) == len(items)
    assert isinstance(results[2], TaskTimeoutError)
    assert results[:2] + results[3:] == [0.0, 0.0] + [0.01] * 150
    _assert_no_leftovers(_noted_pids(tmp))


@pytest.mark.timeout(20)
def test_task_timeout_with_n_jobs_1_is_reported_after_the_fact(tmp_path):
    pool = Pool(functools.partial(sleep_for, str(tmp_path)), 1, task_timeout=0.2, exception_behavior="ignore")
    t0 = time.monotonic()
    results = list(pool([0.0, 0.5, 0.0]))
    assert time.monotonic() - t0 >= 0.5, "the task ran to its end: nothing interrupts it in the caller"
    assert results[0] == 0.0 and results[2] == 0.0
    assert isinstance(results[1], TaskTimeoutError), results
    assert "#1" in str(results[1])


@pytest.mark.timeout(20)
@pytest.mark.parametrize("backend", ["processes", "threads", "inline"])
def test_task_timeout_with_a_retry_times_out_twice(backend, tmp_path, release):
    timeout = 0.3
    if backend == "threads":
        pool = Pool(functools.partial(wait_for, release), 2, use_threads=True, task_timeout=timeout,
                    retries=1, exception_behavior="ignore")
        stuck = 30.0
    elif backend == "processes":
        pool = Pool(functools.partial(sleep_for, str(tmp_path)), 2, task_timeout=timeout, retries=1,
                    exception_behavior="ignore", start_method="fork")
        stuck = 30.0
    else:
        pool = Pool(functools.partial(sleep_for, str(tmp_path)), 1, task_timeout=timeout, retries=1,
                    exception_behavior="ignore")
        stuck = 0.5
    items = [0.0, stuck, 0.0, 0.0]
    t0 = time.monotonic()
    results = list(pool(items))
    elapsed = time.monotonic() - t0
    if backend == "inline":
        # nothing interrupts a task in the caller: both attempts ran to their end
        assert 2 * stuck <= elapsed
    else:
        # both attempts timed out: long before one 30 s attempt ends (past the test's timeout)
        assert 2 * timeout <= elapsed
    assert results[0] == results[2] == results[3] == 0.0
    error = results[1]
    assert isinstance(error, TaskTimeoutError)
    assert error.attempts == 2
    assert len(error.previous_errors) == 1 and isinstance(error.previous_errors[0], TaskTimeoutError)
    if backend == "processes":
        _assert_no_leftovers(_noted_pids(str(tmp_path)))


# -- stopping --------------------------------------------------------------------------------------


@pytest.mark.timeout(20)
def test_break_while_an_item_is_being_retried(kind, tmp_path, release):
    # Item 0 fails; its retry blocks (30 s). The consumer breaks while the retry runs.
    tmp = str(tmp_path)
    pool = Pool(
        functools.partial(fail_then_block, tmp, release if kind == "threads" else None), 2,
        exception_behavior="ignore", retries=1, is_unordered=True, **BACKENDS[kind],
    )
    seen: list[Any] = []
    deadline = time.monotonic() + 10
    for r in pool(range(3000)):
        seen.append(r)
        if (tmp_path / "attempt-retry-started").exists():
            break
        assert time.monotonic() < deadline, "the retry of item 0 never started"
    t_break = time.monotonic()
    assert seen and 0 not in seen and -1 not in seen
    assert len(set(seen)) == len(seen)
    assert not any(is_exception(r) for r in seen)
    if kind == "processes":
        pids = _noted_pids(tmp)
        _assert_no_leftovers(pids)
        assert time.monotonic() - t_break < GONE_WITHIN
    # the pool is usable again
    with pool:
        assert sorted(pool(range(1, 20))) == list(range(1, 20))


@pytest.mark.timeout(20)
def test_pool_reused_after_deaths_and_timeouts(kind, tmp_path, release):
    # Events from replaced or abandoned workers of a run must never reach the next run.
    tmp = str(tmp_path)
    task = functools.partial(wait_for, release) if kind == "threads" else functools.partial(sleep_for, tmp)
    with Pool(task, 2, task_timeout=0.3, exception_behavior="ignore", **BACKENDS[kind]) as pool:
        first = list(pool([0.0, 20.0, 0.0, 0.0]))
        assert isinstance(first[1], TaskTimeoutError)
        assert first[:1] + first[2:] == [0.0, 0.0, 0.0]
        release.set()
        for _ in range(3):
            assert list(pool([0.0] * 30)) == [0.0] * 30
    if kind == "processes":
        _assert_no_leftovers(_noted_pids(tmp))


@pytest.mark.timeout(20)
def test_init_timeout_in_the_second_run_of_a_pool(kind, tmp_path):
    # Regression: each run marked every worker "not ready", but workers kept by `with` had reported
    # ready to the first run, so the second run failed with a spurious WorkerInitError.
    task = functools.partial(sleep_for, str(tmp_path))
    with Pool(task, 2, init_timeout=0.5, **BACKENDS[kind]) as pool:
        assert list(pool([0.0, 0.0])) == [0.0, 0.0]
        assert list(pool([0.3] * 6)) == [0.3] * 6


@pytest.mark.timeout(20)
def test_task_timeout_in_the_second_run_of_a_pool(kind, tmp_path, release):
    # Regression: deadlines run from a worker's ready time, which a second run of a pool kept by
    # `with` never learnt, so its stuck items were neither killed nor reported.
    if kind == "threads":
        task = functools.partial(wait_for, release)
    else:
        task = functools.partial(sleep_for, str(tmp_path))
    with Pool(task, 2, task_timeout=0.3, exception_behavior="ignore", **BACKENDS[kind]) as pool:
        assert list(pool([0.0, 0.0])) == [0.0, 0.0]
        # item 0 is stuck past the test's timeout: only its deadline ends it
        results = list(pool([30.0, 0.0, 0.0]))
        assert isinstance(results[0], TaskTimeoutError), results


@pytest.mark.timeout(20)
def test_task_timeout_applies_while_the_consumer_is_busy(kind, tmp_path):
    # Item 1 takes 1 s with task_timeout=0.3; the consumer spends 1.5 s on the first result, so
    # nobody checks the deadline until the item has finished. Regression: its late result was
    # accepted (n_jobs=1 always reported such an overrun after the fact).
    pool = Pool(
        functools.partial(sleep_for, str(tmp_path)), 2, task_timeout=0.3, exception_behavior="ignore",
        is_unordered=True, **BACKENDS[kind],
    )
    results = []
    for r in pool([0.0, 1.0]):
        results.append(r)
        if len(results) == 1:
            time.sleep(1.5)  # the consumer's own work on the first result: the stall under test
    assert len(results) == 2 and results[0] == 0.0
    assert isinstance(results[1], TaskTimeoutError), results


@pytest.mark.timeout(20)
def test_init_timeout_with_n_jobs_1_is_reported_after_the_build():
    # In the caller nothing can interrupt __init__; the overrun is reported once it returns.
    @delayed_init
    class SlowInit:
        def __init__(self):
            time.sleep(0.6)

        def __call__(self, x):
            return x

    with pytest.raises(WorkerInitError, match=r"init_timeout=0\.2"):
        list(Pool(SlowInit(), 1, init_timeout=0.2, exception_behavior="ignore")(range(3)))
