"""Streaming inputs: finished results reach the consumer while the input is blocked.

Every wait here is on an event or has a deadline; the sources say when they block, and the tests
release them only after checking what was delivered meanwhile.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import os
import selectors
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mtasklite_like import Pool
from tests.helpers import pid_running, square
from tests.streaming_helpers import DEADLINE, BlockingSource, after_file, sleep_ms, stamped

pytestmark = pytest.mark.timeout(60)

ORDERS = pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])


def _take(results, n):
    return [next(results) for _ in range(n)]


# -- results flow while the input blocks -----------------------------------------------------------------


@ORDERS
def test_results_flow_while_the_input_blocks(backend, unordered, tmp_path):
    flag = tmp_path / "blocked"
    # Item 2's task ends only once the source is blocked, so its result arrives while it is.
    src = BlockingSource(
        head=[(None, 0), (None, 1), (str(flag), 2)], tail=[(None, i) for i in (3, 4, 5)], flag_file=flag
    )
    with Pool(after_file, 2, is_unordered=unordered, **backend) as pool:
        results = pool(src)
        got = _take(results, 3)
        # Every result of what the source gave, delivered while it is still blocked.
        assert src.blocked.is_set() and src.read == 3
        assert (sorted(got) if unordered else got) == [0, 1, 2]
        src.release()
        rest = list(results)
    assert (sorted(rest) if unordered else rest) == [3, 4, 5]


def test_ordered_mode_delivers_up_to_the_first_unfinished_item(backend, tmp_path):
    go = tmp_path / "go"
    flag = tmp_path / "blocked"
    # Item 1 finishes only when the test says so; item 3 only once the source is blocked.
    src = BlockingSource(
        head=[(None, 0), (str(go), 1), (None, 2), (str(flag), 3)], tail=[(None, 4)], flag_file=flag
    )
    with Pool(after_file, 2, **backend) as pool:
        results = pool(src)
        assert next(results) == 0  # delivered while item 1 is unfinished
        go.touch()
        assert _take(results, 3) == [1, 2, 3]  # in order, while the source is blocked
        assert src.blocked.is_set() and src.read == 4
        src.release()
        assert list(results) == [4]


@ORDERS
def test_each_result_comes_before_the_next_item_is_read(backend, unordered):
    """A lock-step source gives item i+1 only once result i has been delivered: a pool that waited
    for more input (to fill a batch, say) before delivering would never finish."""
    delivered = [threading.Event() for _ in range(12)]

    def lock_step():
        for i in range(12):
            if i and not delivered[i - 1].wait(DEADLINE):
                raise TimeoutError(f"result {i - 1} was not delivered before item {i} was needed")
            yield i

    with Pool(square, 2, is_unordered=unordered, **backend) as pool:
        for i, r in enumerate(pool(lock_step())):
            assert r == i * i
            delivered[i].set()


@pytest.mark.timeout(30)
def test_a_slow_source_is_served_as_each_item_arrives(backend):
    """A slow source (2 ms an item) in lock step, 100 items: each result must be delivered before the
    next item is read. A pool that waited for input to pile up would never finish, and one that
    noticed new items only at a periodic poll (1 s, say) would not finish within the test's timeout."""
    delivered = [threading.Event() for _ in range(100)]

    def slow_lock_step():
        for i in range(100):
            if i and not delivered[i - 1].wait(DEADLINE):
                raise TimeoutError(f"result {i - 1} was not delivered before item {i} was needed")
            time.sleep(0.002)
            yield i, 0.0

    with Pool(stamped, 2, **backend) as pool:
        for i, (value, _) in enumerate(pool(slow_lock_step())):
            assert value == i
            delivered[i].set()


# -- bounds ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("unordered", "chunk_size", "bound"), [(False, 1, 32), (True, 1, 4), (False, None, 2 * 2 * 4096 * 2)]
)
def test_the_background_reader_never_reads_beyond_the_window(backend, unordered, chunk_size, bound):
    consumed = [0]
    ahead = [0]

    def counting():
        for i in range(3000):
            ahead[0] = max(ahead[0], i + 1 - consumed[0])  # items read, minus those consumed
            yield (0.0005 if chunk_size else 0.0, i)

    options = {"is_unordered": unordered, "chunk_size": chunk_size, "input_thread": True, **backend}
    with Pool(sleep_ms, 2, **options) as pool:
        for _ in pool(counting()):
            consumed[0] += 1
    assert consumed[0] == 3000
    # chunk_size=1: 2 workers x 2 items (x8 ordered slack); default: 2 x 2 x 4096 x 2
    assert ahead[0] <= bound, ahead[0]


def test_a_stalled_consumer_stops_the_background_reader(backend):
    src = BlockingSource(head=list(range(100)), tail=[])
    with Pool(square, 2, input_thread=True, chunk_size=1, **backend) as pool:
        results = pool(iter(src))
        assert next(results) == 0
        read = src.read
        # The consumer does something else; the reader only reads while the engine runs.
        stalled = threading.Event()
        stalled.wait(0.2)
        assert src.read == read < 100
        src.release()
        assert list(results) == [i * i for i in range(1, 100)]


# -- stopping while the input blocks ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["close", "break"])
def test_stopping_while_the_input_blocks_does_not_wait_for_it(backend, how, tmp_path):
    flag = tmp_path / "blocked"
    # Item 1's task finishes only once the source is blocked, so its result arrives while it is.
    src = BlockingSource(
        head=[(None, 0), (str(flag), 1)], tail=[(None, i) for i in range(2, 1000)], flag_file=flag
    )
    pool = Pool(after_file, 2, chunk_size=1, **backend)
    results = pool(src)
    if how == "close":
        assert _take(results, 2) == [0, 1]
        assert src.blocked.is_set()
        results.close()
    else:
        for r in results:
            if r == 1:
                assert src.blocked.is_set()
                break
        del results
    # The pool stopped its workers without waiting for the source, which stays blocked until the
    # release below (waiting for it would hang until the test's timeout).
    assert not pool.workers_alive
    # The source stays blocked in the reader thread until it returns. Then the read in progress ends
    # (within the window), its items are dropped, and the generator is closed (its finally runs).
    assert not src.closed.is_set()
    src.release()
    assert src.closed.wait(DEADLINE)
    assert 3 <= src.read <= 2 + 32, src.read


def test_an_input_error_after_a_block_comes_after_the_results(backend):
    def failing():
        yield from range(3)
        gate.wait(DEADLINE)
        raise LookupError("the source broke")

    gate = threading.Event()
    with Pool(square, 2, **backend) as pool:
        results = pool(failing())
        assert _take(results, 3) == [0, 1, 4]
        gate.set()
        with pytest.raises(LookupError, match="the source broke"):
            next(results)


def test_the_input_sees_the_callers_context_variables(backend):
    var = contextvars.ContextVar("var", default="unset")
    var.set("caller")

    def source():
        for i in range(3):
            yield (var.get(), i)

    with Pool(sleep_ms, 2, **backend) as pool:
        assert [v for v, _ in pool((0.0, x) for x in source())] == [("caller", i) for i in range(3)]


# -- inputs bound to their thread ------------------------------------------------------------------------


def _db():
    conn = sqlite3.connect(":memory:")
    conn.execute("create table t (x integer)")
    conn.executemany("insert into t values (?)", [(i,) for i in range(50)])
    return conn


def test_a_sqlite3_cursor_is_read_in_the_callers_thread(backend):
    conn = _db()
    with Pool(square, 2, argument_type="args", **backend) as pool:
        assert list(pool(conn.execute("select x from t order by x"))) == [i * i for i in range(50)]


def test_an_input_bound_to_its_thread_fails_with_a_hint_and_works_with_input_thread_false(backend):
    conn = _db()
    with Pool(square, 2, **backend) as pool:
        rows = (x for (x,) in conn.execute("select x from t order by x"))
        with pytest.raises(sqlite3.ProgrammingError, match="thread") as info:
            list(pool(rows))
        if sys.version_info >= (3, 11):
            assert "input_thread=False" in "".join(info.value.__notes__)
        rows = (x for (x,) in conn.execute("select x from t order by x"))
        assert list(Pool(square, 2, input_thread=False, **backend)(rows)) == [i * i for i in range(50)]


def test_input_thread_is_checked():
    with pytest.raises(TypeError, match="input_thread must be True, False or None"):
        Pool(square, 2, input_thread="yes")
    assert Pool(square, 2, input_thread=False).options.input_thread is False


# -- Ctrl-C while the input blocks -----------------------------------------------------------------------

_CTRL_C_SCRIPT = """\
import json
import os
import signal
import sys
import threading

signal.signal(signal.SIGINT, signal.default_int_handler)

from mtasklite_like import Pool


def say(line):
    # Two threads report here: the input thread (BLOCKED) and the consumer (RESULT, WAITING).
    # print() writes its arguments, separators and end with separate writes, and another thread's
    # output can land between them ("BLOCKEDRESULT 1"), so the test would never see its marker.
    # One write(2) of less than PIPE_BUF bytes to a pipe is never interleaved with another.
    os.write(1, (line + "\\n").encode())


def square(x):
    return x * x


def source():
    yield from range(4)
    say("BLOCKED")
    threading.Event().wait()  # a source with nothing more, ever


pool = Pool(square, 2, **OPTIONS)
results = pool(source())
count = [0]


def waiting():  # called while the consumer waits inside next()
    if count[0] == 4:
        count[0] += 1
        say("WAITING " + json.dumps(pool.worker_pids))


results.heartbeat = waiting
for r in results:
    count[0] += 1
    say(f"RESULT {r}")
"""


def _stdout_lines_until(
    proc: subprocess.Popen, done: Callable[[list[str]], bool], within: float
) -> list[str]:
    """The lines ``proc`` writes to its stdout until ``done(lines)`` is true, or it closes its stdout.

    Waits at most ``within`` seconds, then fails showing what came, rather than blocking on a pipe
    until the test's timeout. Reads the file descriptor itself, so that ``communicate()`` later gets
    the rest.
    """
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    lines: list[str] = []
    partial = b""
    deadline = time.monotonic() + within
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_READ)
        while not done(lines):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"no expected output within {within} s; stdout so far: {[*lines, partial]}")
            if not selector.select(left):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break  # the script ended: the caller's checks say what is missing
            *complete, partial = (partial + chunk).split(b"\n")
            lines += [ln.decode().strip() for ln in complete]
    return lines


def _blocked_and_waiting(lines: list[str]) -> bool:
    return "BLOCKED" in lines and any(ln.startswith("WAITING ") for ln in lines)


@pytest.mark.timeout(30)
def test_ctrl_c_while_the_input_blocks(tmp_path: Path, backend: dict) -> None:
    script = tmp_path / "ctrl_c.py"
    script.write_text(textwrap.dedent(_CTRL_C_SCRIPT).replace("**OPTIONS", "**" + repr(backend)))
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, start_new_session=True,
    )
    pids: list[int] = []
    try:
        # Until the source is blocked and the loop waits for result 5.
        lines = _stdout_lines_until(proc, _blocked_and_waiting, within=10.0)
        for line in lines:
            if line.startswith("WAITING "):
                pids = json.loads(line[len("WAITING "):])
        # Every result was delivered while the source was blocked, and the loop waits in next().
        assert [ln for ln in lines if ln.startswith("RESULT")] == [f"RESULT {i * i}" for i in range(4)]
        os.killpg(proc.pid, signal.SIGINT)  # like Ctrl-C in a terminal: the whole group
        _, err = proc.communicate(timeout=15)
        assert proc.returncode != 0
        assert err.count("KeyboardInterrupt") == 1, err
        assert err.count("Traceback (most recent call last)") == 1, err
        deadline = time.monotonic() + 5.0
        while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not [p for p in pids if pid_running(p)], "workers outlived the interrupted caller"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        for pid in pids:
            with contextlib.suppress(OSError):
                if pid_running(pid):
                    os.kill(pid, signal.SIGKILL)
