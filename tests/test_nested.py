"""Pools inside process workers: they work two levels deep, and leave no process behind.

Processes are really killed (SIGKILL, SIGINT to the process group); the tests then poll the pids
with a deadline until they are gone.
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
from pathlib import Path

import multiprocess
import pytest

from mtasklite_like import Pool, WorkerDiedError
from tests.helpers import pid_running
from tests.streaming_helpers import (
    DEADLINE,
    inner_in_threads,
    inner_sum,
    outer_reports_and_blocks,
    outer_sum,
    pool_in_foreign_daemon,
    read_pids,
    stdlib_pool_sum,
)

pytestmark = pytest.mark.timeout(60)

PIDS = ["outer.pid", "inner0.pid", "inner1.pid"]


def _gone(pids, within=10.0):
    """Wait until every pid has ended (or ``within`` seconds passed); return those still running."""
    deadline = time.monotonic() + within
    while True:
        alive = [p for p in pids if pid_running(p)]
        if not alive or time.monotonic() > deadline:
            return alive
        time.sleep(0.02)


def _kill(pids):
    for pid in pids:
        with contextlib.suppress(OSError):
            if pid_running(pid):
                os.kill(pid, signal.SIGKILL)


def _sums(n):
    return sum(x * x for x in range(n))


@pytest.mark.parametrize("start_method", ["fork", "spawn", "forkserver"])
def test_a_pool_inside_a_process_worker(start_method):
    with Pool(inner_sum, 2, start_method=start_method) as pool:
        assert list(pool([10, 20, 30])) == [_sums(10), _sums(20), _sums(30)]


def test_pools_two_levels_deep():
    with Pool(outer_sum, 2) as pool:
        assert list(pool([10, 20, 30])) == [_sums(n) + _sums(n + 1) for n in (10, 20, 30)]


def test_a_thread_pool_inside_a_process_worker_and_a_process_pool_inside_a_thread_worker():
    with Pool(inner_in_threads, 2) as pool:
        assert list(pool([5, 6])) == [_sums(5), _sums(6)]
    with Pool(inner_sum, 2, use_threads=True) as pool:
        assert list(pool([5, 6])) == [_sums(5), _sums(6)]


def test_a_process_pool_inside_a_foreign_daemonic_worker_says_what_to_do():
    with multiprocess.get_context("fork").Pool(1) as foreign:
        message = foreign.apply(pool_in_foreign_daemon, (0,))
    assert "daemonic process" in message and "use_threads=True" in message


def test_killing_an_outer_worker_ends_its_own_workers(tmp_path: Path):
    pool = Pool(outer_reports_and_blocks, 2)
    results = pool([str(tmp_path)])
    caught: list[BaseException] = []

    def consume():
        try:
            list(results)
        except BaseException as exc:
            caught.append(exc)

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    pids = read_pids(tmp_path, PIDS)
    try:
        assert all(pid_running(p) for p in pids.values())
        os.kill(pids["outer.pid"], signal.SIGKILL)
        assert _gone([pids["inner0.pid"], pids["inner1.pid"]]) == [], "inner workers outlived their parent"
        consumer.join(DEADLINE)
        assert not consumer.is_alive()
        assert caught and isinstance(caught[0], WorkerDiedError)
        assert "SIGKILL" in str(caught[0])
    finally:
        _kill(pids.values())
        pool.close()


_NESTED_SCRIPT = """\
import signal
import sys

signal.signal(signal.SIGINT, signal.default_int_handler)

from mtasklite_like import Pool
from tests.streaming_helpers import outer_reports_and_blocks

if __name__ == "__main__":
    pool = Pool(outer_reports_and_blocks, 2)
    for r in pool([sys.argv[1]]):
        pass
"""


@pytest.mark.timeout(40)
@pytest.mark.parametrize("how", ["SIGINT", "SIGKILL"])
def test_no_process_is_left_when_the_caller_is_interrupted_or_killed(tmp_path: Path, how: str):
    script = tmp_path / "nested.py"
    script.write_text(textwrap.dedent(_NESTED_SCRIPT))
    repo = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(repo) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)], cwd=tmp_path, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    pids: dict[str, int] = {}
    try:
        pids = read_pids(tmp_path, PIDS)
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal reaches the whole group
        else:
            os.kill(proc.pid, signal.SIGKILL)  # the caller alone dies: its workers are orphaned
        _, err = proc.communicate(timeout=15)
        if how == "SIGINT":
            assert proc.returncode != 0 and "KeyboardInterrupt" in err, err
        else:
            assert proc.returncode == -signal.SIGKILL
        assert _gone(pids.values()) == [], f"left behind: {json.dumps(pids)}"
    finally:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)
        _kill(pids.values())


def test_a_standard_library_pool_inside_a_process_worker():
    with Pool(stdlib_pool_sum, 2) as pool:
        assert list(pool([10, 20])) == [_sums(10), _sums(20)]
