"""No worker outlives its pool, and nothing hangs.

In-process tests cover runs that end early (``break``, an exception in the loop body, a dropped
iterator, ``with pool(items)``, ``close()``), worker reuse between calls and the one-run-at-a-time
rule. Scenarios that end the interpreter (end of script, ``sys.exit``, an unhandled exception,
Ctrl-C) run as scripts in a subprocess.

Worker pids come from ``pool.worker_pids`` (processes); thread workers are found by name.
Tasks given a negative item block for up to 60 s, so a worker still alive after the pool should
have stopped it is caught by the deadline of :func:`_still_running`.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mtasklite_like import MtaskliteLikeError, Pool, WorkerDiedError
from tests.helpers import pid_running

BACKENDS: dict[str, dict[str, Any]] = {
    "processes": {"start_method": "fork"},
    "threads": {"use_threads": True},
}
# One quick item, then items that block: after the first result both workers are busy.
ITEMS = [0] + [-1] * 10
# Enough margin over the default 0.5 s join_timeout (+0.5 s for terminate) to stop the workers.
GONE_WITHIN = 2.0


# -- helpers -------------------------------------------------------------------------------------


def _still_running(pids: list[int], within: float = GONE_WITHIN) -> list[int]:
    """Wait until every pid has ended or ``within`` seconds passed; return those still running."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if pid_running(p)]
        if not alive or time.monotonic() >= deadline:
            return alive
        time.sleep(0.02)


def _threads_still_running(threads: list[threading.Thread], within: float = GONE_WITHIN) -> list[str]:
    deadline = time.monotonic() + within
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))
    return [t.name for t in threads if t.is_alive()]


class _Task:
    """``x >= 0``: return ``(2 * x, pid, thread id)`` at once; ``x == -2``: raise ValueError;
    other ``x < 0``: block up to 60 s first.

    Thread workers are released by ``release.set()`` (the test fixture does it at teardown); in a
    process worker the event is a copy nobody sets, so the task really blocks until killed.
    """

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started: list[int] = []  # filled by thread workers only (processes have their own copy)
        self.threads: set[threading.Thread] = set()

    def __call__(self, x: int) -> tuple[int, int, int]:
        self.started.append(x)
        self.threads.add(threading.current_thread())
        if x == -2:
            raise ValueError("task rejected item -2")
        if x < 0:
            self.release.wait(60)
        return (2 * x, os.getpid(), threading.get_ident())


@pytest.fixture
def task() -> Iterator[_Task]:
    t = _Task()
    yield t
    t.release.set()


class _Workers:
    """The workers of a pool, found while a run is going: pids, or threads started since creation."""

    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._before = set(threading.enumerate())
        self.pids: list[int] = []
        self.threads: list[threading.Thread] = []

    def capture(self, pool: Pool) -> float:
        """Find the workers now; return the time, from which the stop that follows is measured."""
        if self.backend == "processes":
            assert pool.workers_alive, "no workers while a run is going"
            self.pids = [p for p in pool.worker_pids if p is not None]
            assert len(self.pids) == 2
            assert os.getpid() not in self.pids
            assert all(pid_running(p) for p in self.pids), "workers are not running"
        else:
            self.threads = [
                t for t in threading.enumerate()
                if t not in self._before and t.name.startswith("mtasklite_like-worker")
            ]
            assert len(self.threads) == 2
        return time.monotonic()

    def assert_stopped_now(self, task: _Task) -> None:
        """Right after the action that stops a run: processes are gone. The action did not wait for
        the blocked tasks (60 s, past the test's timeout), which still block.

        (Threads cannot be killed: they are checked by ``assert_gone`` once their task is released.)
        """
        assert not task.release.is_set()
        if self.backend == "processes":
            self.assert_gone(task)

    def assert_gone(self, task: _Task, within: float = GONE_WITHIN) -> None:
        if self.backend == "processes":
            assert _still_running(self.pids, within) == [], "worker processes outlived the run"
        else:
            # A thread cannot be killed: once its blocking task is released it must end.
            task.release.set()
            assert _threads_still_running(self.threads, within) == [], "worker threads kept running"


def _pool(task: _Task, backend: str, **kwargs: Any) -> Pool:
    return Pool(task, n_jobs=2, chunk_size=1, **BACKENDS[backend], **kwargs)


def _maybe_with(pool: Pool, managed: bool) -> contextlib.AbstractContextManager[Any]:
    return pool if managed else contextlib.nullcontext(pool)


class _ConsumerError(Exception):
    pass


both_backends = pytest.mark.parametrize("backend", ["processes", "threads"])
managed_or_not = pytest.mark.parametrize("managed", [True, False], ids=["with-pool", "no-with"])


# -- runs that end early ---------------------------------------------------------------------------


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_break_stops_workers(task: _Task, backend: str, managed: bool) -> None:
    workers = _Workers(backend)
    pool = _pool(task, backend)
    with _maybe_with(pool, managed):
        for value in pool(ITEMS):
            first = value
            workers.capture(pool)
            break
        # Checked inside the `with`: the break alone must stop the workers busy with the input.
        workers.assert_stopped_now(task)
    assert first[0] == 0
    workers.assert_gone(task)


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_exception_in_loop_body_stops_workers(task: _Task, backend: str, managed: bool) -> None:
    workers = _Workers(backend)
    pool = _pool(task, backend)
    with pytest.raises(_ConsumerError), _maybe_with(pool, managed):
        for _ in pool(ITEMS):
            workers.capture(pool)
            raise _ConsumerError("the loop body failed")
    workers.assert_stopped_now(task)
    workers.assert_gone(task)


@pytest.mark.timeout(20)
@both_backends
def test_dropping_half_consumed_iterator_stops_workers(task: _Task, backend: str) -> None:
    workers = _Workers(backend)
    pool = _pool(task, backend)
    it = pool(ITEMS)
    assert next(it)[0] == 0
    workers.capture(pool)
    del it
    workers.assert_stopped_now(task)
    if backend == "processes":
        assert not pool.workers_alive
    workers.assert_gone(task)


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_with_result_iterator_exited_early(task: _Task, backend: str, managed: bool) -> None:
    workers = _Workers(backend)
    pool = _pool(task, backend)
    with _maybe_with(pool, managed):
        with pool(ITEMS) as results:
            assert next(results)[0] == 0
            workers.capture(pool)
        # `results` is still referenced here: it is the `with` exit, not garbage collection, that acts.
        workers.assert_stopped_now(task)
        assert repr(results).endswith("finished>")
        with pytest.raises(StopIteration):
            next(results)
    workers.assert_gone(task)


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_close_mid_run_then_call_again(task: _Task, backend: str, managed: bool) -> None:
    workers = _Workers(backend)
    pool = _pool(task, backend)
    with _maybe_with(pool, managed):
        it = pool(ITEMS)
        assert next(it)[0] == 0
        workers.capture(pool)
        pool.close()
        workers.assert_stopped_now(task)
        # The closed run yields nothing more (it ends, or says it was closed) and does not hang.
        with pytest.raises((StopIteration, MtaskliteLikeError, RuntimeError)):
            next(it)
        # The pool restarts workers for the next call and gives every result, in order.
        known_threads = set(task.threads)
        out = list(pool(range(12)))
        assert [v for v, _, _ in out] == [2 * x for x in range(12)]
        if backend == "processes":
            new_pids = {p for _, p, _ in out}
            assert not new_pids & set(workers.pids), "results came from the closed workers"
            assert os.getpid() not in new_pids
        else:
            fresh = task.threads - known_threads
            assert fresh, "no new worker threads after close()"
            assert not fresh & set(workers.threads)
    workers.assert_gone(task)
    if backend == "processes":
        assert _still_running(list(new_pids)) == []


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_task_error_stops_busy_workers_at_once(task: _Task, backend: str, managed: bool) -> None:
    # Item 1 blocks a worker; item 2 fails on the other: unordered, 'immediate' must not wait for
    # item 1. (Ordered, item 1's result comes before item 2's error, so it is waited for:
    # tests/test_item_errors.py and tests/test_engine_fake.py check that order.)
    workers = _Workers(backend)
    pool = _pool(task, backend, is_unordered=True)
    got = []
    with _maybe_with(pool, managed):
        it = pool([0, -1, -2, -1, -1, -1])
        got.append(next(it)[0])
        workers.capture(pool)
        with pytest.raises(ValueError, match="task rejected item -2"):
            got.extend(v for v, _, _ in it)
        workers.assert_stopped_now(task)
    assert got == [0]
    workers.assert_gone(task)


@pytest.mark.timeout(20)
def test_killed_worker_is_reported_and_the_other_stopped(task: _Task) -> None:
    workers = _Workers("processes")
    pool = _pool(task, "processes")
    it = pool(ITEMS)
    assert next(it)[0] == 0
    workers.capture(pool)
    victim, other = workers.pids
    os.kill(victim, signal.SIGKILL)
    with pytest.raises(WorkerDiedError) as info:  # the other worker's task blocks past the timeout
        next(it)
    assert info.value.pid == victim
    assert "SIGKILL" in str(info.value)
    assert _still_running([other]) == [], "the surviving worker was left running"
    # The pool recovers: the next call starts new workers.
    assert [v for v, _, _ in pool(range(4))] == [0, 2, 4, 6]


# -- workers kept or stopped between calls -------------------------------------------------------


@pytest.mark.timeout(20)
@both_backends
def test_with_pool_reuses_workers_then_stops_them(task: _Task, backend: str) -> None:
    before = set(threading.enumerate())
    with _pool(task, backend) as pool:
        first = list(pool(range(20)))
        kept_pids = list(pool.worker_pids) if backend == "processes" else []
        threads_1 = {t for t in task.threads if t not in before}
        second = list(pool(range(20, 40)))
        threads_2 = {t for t in task.threads if t not in before}
        assert [v for v, _, _ in first] == [2 * x for x in range(20)]
        assert [v for v, _, _ in second] == [2 * x for x in range(20, 40)]
        if backend == "processes":
            assert list(pool.worker_pids) == kept_pids
            assert {p for _, p, _ in first} == {p for _, p, _ in second} == set(kept_pids)
            assert all(pid_running(p) for p in kept_pids), "workers ended between calls"
        else:
            assert len(threads_1) == 2 and threads_2 == threads_1
            assert {i for _, _, i in first} == {i for _, _, i in second}
            assert all(t.is_alive() for t in threads_1), "worker threads ended between calls"
    if backend == "processes":
        assert _still_running(kept_pids) == []
    else:
        assert _threads_still_running(list(threads_1)) == []


@pytest.mark.timeout(20)
@both_backends
def test_pool_without_with_stops_workers_after_each_run(task: _Task, backend: str) -> None:
    pool = _pool(task, backend)
    seen_pids: list[set[int]] = []
    seen_threads: list[set[threading.Thread]] = []
    for start in (0, 20):
        before = set(task.threads)
        out = list(pool(range(start, start + 20)))
        assert [v for v, _, _ in out] == [2 * x for x in range(start, start + 20)]
        assert not pool.workers_alive, "the pool kept its workers after an unmanaged run"
        if backend == "processes":
            pids = {p for _, p, _ in out}
            assert os.getpid() not in pids
            assert _still_running(list(pids)) == []
            seen_pids.append(pids)
        else:
            threads = task.threads - before
            assert threads
            assert _threads_still_running(list(threads)) == []
            seen_threads.append(threads)
    if backend == "processes":
        assert not seen_pids[0] & seen_pids[1]
    else:
        assert not seen_threads[0] & seen_threads[1]


# -- one run at a time -----------------------------------------------------------------------------


@pytest.mark.timeout(20)
@both_backends
@managed_or_not
def test_second_iterator_while_first_unfinished_is_refused(task: _Task, backend: str, managed: bool) -> None:
    pool = _pool(task, backend)
    with _maybe_with(pool, managed):
        first = pool(range(10))
        assert next(first)[0] == 0
        second = pool(range(5))
        with pytest.raises(RuntimeError) as info:
            next(second)
        message = str(info.value)
        assert "busy with another result iterator" in message
        assert "close()" in message and "second Pool" in message
        # The refusal did not disturb the first run.
        assert [v for v, _, _ in first] == [2 * x for x in range(1, 10)]
        # Once the first is done, a new iterator runs.
        assert [v for v, _, _ in pool(range(5))] == [0, 2, 4, 6, 8]


@pytest.mark.timeout(20)
def test_refused_iterator_is_not_silently_empty_later(task: _Task) -> None:
    pool = _pool(task, "processes")
    first = pool(range(6))
    next(first)
    second = pool(range(5))
    with pytest.raises(RuntimeError, match="busy"):
        next(second)
    assert len(list(first)) == 5
    try:
        rest = [v for v, _, _ in second]
    except RuntimeError:
        return  # refusing again is fine too; silently yielding nothing is not
    assert rest == [0, 2, 4, 6, 8], "the refused iterator lost all its results without an error"


@pytest.mark.timeout(20)
@pytest.mark.parametrize("case", ["busy", "thread-task-error"])
def test_errors_from_next_carry_no_internal_context(task: _Task, case: str) -> None:
    """An error raised by next() must not chain the iterator's internal IndexError as its context.

    Regression: ``__next__`` used to call ``next_slow()`` inside ``except IndexError:``, so the
    'busy' RuntimeError, Ctrl-C, WorkerDiedError and thread workers' task errors all printed
    "IndexError: pop from an empty deque ... During handling of the above exception" first.
    """
    if case == "busy":
        pool = _pool(task, "processes")
        first = pool(range(4))
        next(first)
        with pytest.raises(RuntimeError) as info:
            next(pool(range(4)))
        first.close()
    else:
        def reject(x: int) -> int:
            raise ValueError(f"rejected {x}")

        with pytest.raises(ValueError) as info:
            list(Pool(reject, n_jobs=2, use_threads=True)(range(4)))
    exc = info.value
    assert exc.__context__ is None or exc.__suppress_context__, repr(exc.__context__)


@pytest.mark.timeout(20)
def test_abandoned_thread_worker_starts_no_new_item(task: _Task) -> None:
    """A thread cannot be killed, but once its run is stopped it must not start queued items.

    Regression: the stop marker used to wait behind the batches a thread already held, so after
    its blocking task ended the thread ran every queued item, whose results nobody reads.
    """
    workers = _Workers("threads")
    # Each worker holds two batches: one running (blocked), one queued behind it.
    pool = _pool(task, "threads", chunk_prefill_ratio=2)
    it = pool(ITEMS)
    assert next(it)[0] == 0
    workers.capture(pool)
    deadline = time.monotonic() + 5
    while len(task.started) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert len(task.started) == 3, task.started  # item 0, then one blocking item per worker
    it.close()
    task.release.set()
    assert _threads_still_running(workers.threads) == []
    assert len(task.started) == 3, f"items started after the run was closed: {task.started}"


# -- interpreter exit (scripts) ---------------------------------------------------------------------

_EXIT_SCRIPT = """\
import atexit
import json
import os
import sys

WORKERS = []


def _pid_running(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            return [ln.split()[1] for ln in f if ln.startswith("State:")] != ["Z"]
    except OSError:
        return False


def _last_check():
    # Registered before mtasklite_like is imported, so atexit runs it after every other handler.
    print("ALIVE_AT_EXIT " + json.dumps([p for p in WORKERS if _pid_running(p)]), flush=True)


atexit.register(_last_check)

import signal
import threading
import time

# Python keeps SIGINT ignored when it inherits it ignored (a background job of a shell script):
# install the usual handler, as an interactive run would have it.
signal.signal(signal.SIGINT, signal.default_int_handler)

from mtasklite_like import Pool


def task(x):
    if x < 0:
        time.sleep(60)
    return x


def show_workers(pool):
    if pool.use_threads:
        names = [t.name for t in threading.enumerate() if t.name.startswith("mtasklite_like-worker")]
        assert len(names) == 2, names
    else:
        WORKERS[:] = pool.worker_pids
    print("PIDS " + json.dumps(WORKERS), flush=True)


pool = Pool(task, n_jobs=2, chunk_size=1, **OPTIONS)
"""

_EXIT_ENDINGS = {
    # take one result and fall off the end of the script: `it` and `pool` are still referenced
    "end": """
it = pool([0] + [-1] * 10)
print("FIRST", next(it), flush=True)
show_workers(pool)
""",
    "sys-exit": """
for r in pool([0] + [-1] * 10):
    show_workers(pool)
    sys.exit(3)
""",
    "exception": """
for r in pool([0] + [-1] * 10):
    show_workers(pool)
    raise LookupError("the consumer gave up on " + str(r))
""",
    # Ctrl-C: the test sends SIGINT to the script's process group once it prints "ready"
    "sigint": """
for r in pool([0] + [-1] * 10):
    show_workers(pool)
    print("ready", flush=True)
""",
}


def _wait_until_blocked(pid: int, within: float = 10.0) -> None:
    """Wait until the main thread of ``pid`` sleeps in the kernel (its wchan is a wait function)."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/wchan") as f:
                wchan = f.read().strip()
        except OSError:
            return  # no /proc: nothing better to wait on
        if wchan not in ("", "0"):
            return
        time.sleep(0.005)
    raise AssertionError(f"process {pid} never blocked")


def _write_exit_script(tmp_path: Path, backend: str, ending: str) -> Path:
    script = tmp_path / f"exit_{ending}_{backend}.py"
    source = _EXIT_SCRIPT.replace("**OPTIONS", "**" + repr(BACKENDS[backend])) + textwrap.dedent(
        _EXIT_ENDINGS[ending]
    )
    script.write_text(source)
    return script


def _parse_line(stdout: str, tag: str) -> Any:
    lines = [ln for ln in stdout.splitlines() if ln.startswith(tag + " ")]
    assert len(lines) == 1, f"expected one {tag} line in:\n{stdout}"
    return json.loads(lines[0][len(tag) + 1:])


def _kill_leftovers(pids: list[int]) -> None:
    """Do not leave stray workers behind when a test fails (they are this test's own processes)."""
    for pid in _still_running(pids, 0):
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)


@pytest.mark.timeout(30)
@both_backends
@pytest.mark.parametrize(
    ("ending", "code"), [("end", 0), ("sys-exit", 3), ("exception", 1)], ids=["end", "sys-exit", "exception"]
)
def test_interpreter_exit_stops_workers(tmp_path: Path, backend: str, ending: str, code: int) -> None:
    script = _write_exit_script(tmp_path, backend, ending)
    # The script's workers block 60 s: exiting within the 20 s timeout means exit stopped them.
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=20
    )
    pids = _parse_line(proc.stdout, "PIDS")
    try:
        assert proc.returncode == code, proc.stderr
        if backend == "processes":
            assert len(pids) == 2
            assert _parse_line(proc.stdout, "ALIVE_AT_EXIT") == [], "workers still ran at the end of exit"
            assert _still_running(pids) == []
        assert "Exception ignored" not in proc.stderr, proc.stderr
        if ending == "exception":
            # One traceback, the consumer's: it points at the raising line of the script.
            assert proc.stderr.count("Traceback (most recent call last)") == 1, proc.stderr
            assert proc.stderr.count("LookupError: the consumer gave up on 0") == 1, proc.stderr
            assert 'raise LookupError("the consumer gave up on " + str(r))' in proc.stderr
        else:
            assert "Traceback" not in proc.stderr, proc.stderr
    finally:
        _kill_leftovers(pids)


@pytest.mark.timeout(30)
@both_backends
def test_keyboard_interrupt_stops_everything(tmp_path: Path, backend: str) -> None:
    script = _write_exit_script(tmp_path, backend, "sigint")
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    pids: list[int] = []
    try:
        assert proc.stdout is not None
        head = []
        for line in proc.stdout:
            head.append(line)
            if line.startswith("PIDS "):
                pids = json.loads(line[5:])
            if line.strip() == "ready":
                break
        assert head and head[-1].strip() == "ready", "".join(head)
        _wait_until_blocked(proc.pid)  # the loop waits in next() on the 60 s tasks
        os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole group
        # the tasks block 60 s: an exit within the deadline means Ctrl-C stopped them
        out, err = proc.communicate(timeout=15)
        assert proc.returncode != 0
        assert err.count("KeyboardInterrupt") == 1, err
        assert err.count("Traceback (most recent call last)") == 1, err
        assert "IndexError" not in err and "During handling" not in err, err
        if backend == "processes":
            assert len(pids) == 2
            assert _parse_line(out, "ALIVE_AT_EXIT") == []
            assert _still_running(pids) == []
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        _kill_leftovers(pids)
