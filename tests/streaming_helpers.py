"""Module-level tasks and sources for the streaming and nested-pool tests."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from mtasklite_like import Pool
from tests.helpers import square

#: no test waits longer than this for anything: a wait that runs out is a failure, not a hang
DEADLINE = 20.0


def sleep_ms(item: tuple[float, int]) -> tuple[int, float]:
    """Sleep ``item[0]`` seconds; return the value and when the worker finished."""
    seconds, value = item
    time.sleep(seconds)
    return value, time.monotonic()


def stamped(item: tuple[int, float]) -> tuple[int, float]:
    """A 1 ms task that passes the item's timestamp through."""
    time.sleep(0.001)
    return item


def after_file(item: tuple[str | None, int]) -> int:
    """Wait until the file ``item[0]`` exists (if one is named), then return ``item[1]``."""
    path, value = item
    deadline = time.monotonic() + DEADLINE
    while path is not None and not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} was never created")
        time.sleep(0.005)
    return value


class BlockingSource:
    """Yields ``head``, then blocks until :meth:`release` (or ``DEADLINE``), then yields ``tail``.

    ``blocked`` is set once the source is blocked; ``closed`` once the generator has been closed or
    has ended (its ``finally`` ran); ``read`` counts the items it gave.
    """

    def __init__(self, head: list[object], tail: list[object], flag_file: Path | None = None) -> None:
        self.head, self.tail = head, tail
        self.flag_file = flag_file  # created once the source is blocked, for tasks in processes
        self.blocked = threading.Event()
        self.closed = threading.Event()
        self._gate = threading.Event()
        self.read = 0

    def release(self) -> None:
        self._gate.set()

    def __iter__(self) -> Iterator[object]:
        try:
            for item in self.head:
                self.read += 1
                yield item
            self.blocked.set()
            if self.flag_file is not None:
                self.flag_file.touch()
            if not self._gate.wait(DEADLINE):
                raise TimeoutError("the test never released the source")
            for item in self.tail:
                self.read += 1
                yield item
        finally:
            self.closed.set()


# -- nested pools -------------------------------------------------------------------------------


def inner_sum(n: int) -> int:
    """A task that runs a process pool of its own."""
    with Pool(square, 2) as pool:
        return sum(pool(range(n)))


def outer_sum(n: int) -> int:
    """A task whose pool's tasks run pools of their own: two levels of nesting."""
    with Pool(inner_sum, 2) as pool:
        return sum(pool([n, n + 1]))


def inner_in_threads(n: int) -> int:
    with Pool(square, 2, use_threads=True) as pool:
        return sum(pool(range(n)))


def _write_atomically(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text)
    tmp.rename(path)


def write_pid_and_block(path: str) -> int:
    """Write this process's pid to ``path``, then block (until killed)."""
    _write_atomically(Path(path), str(os.getpid()))
    time.sleep(600)
    return 0


def outer_reports_and_blocks(folder: str) -> int:
    """Write this worker's pid, then run a pool whose two workers write theirs and block."""
    where = Path(folder)
    _write_atomically(where / "outer.pid", str(os.getpid()))
    with Pool(write_pid_and_block, 2) as pool:
        return sum(pool([str(where / "inner0.pid"), str(where / "inner1.pid")]))


def read_pids(folder: Path, names: list[str], within: float = DEADLINE) -> dict[str, int]:
    """Wait until every ``name`` has been written in ``folder``; return the pids."""
    deadline = time.monotonic() + within
    while True:
        paths = [folder / n for n in names]
        if all(p.exists() for p in paths):
            return {n: int(p.read_text()) for n, p in zip(names, paths)}
        if time.monotonic() > deadline:
            missing = [n for n, p in zip(names, paths) if not p.exists()]
            raise TimeoutError(f"not written within {within} s: {missing}")
        time.sleep(0.01)


def pool_in_foreign_daemon(_x: int) -> str:
    """Run inside a ``multiprocess.Pool`` worker (daemonic): our process pool must refuse clearly."""
    try:
        with Pool(square, 2) as pool:
            list(pool(range(3)))
    except RuntimeError as exc:
        return str(exc)
    return "started"


def stdlib_pool_sum(n: int) -> int:
    """A task that uses the standard library's process pool, as joblib or a data loader would."""
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2) as pool:
        return sum(pool.map(square, range(n)))
