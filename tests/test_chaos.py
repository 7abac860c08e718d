"""Chaos: worker processes SIGKILLed from outside while a run goes on, at any moment.

A kill from outside (the OOM killer looks the same) lands wherever the worker is: in a task,
between two items of a batch, between two batches, while it waits for work or while it starts.
Whatever the moment, a death costs at most the item that was running: every input index comes out
exactly once (a result or an error naming it), failed items are at most the deaths, and no worker
outlives the run.

The quick test runs in the default suite (15 kills, at most two before the run gets on); the soak, 300k
items with a kill every 150 ms, is in the slow set (``python -m pytest -m slow tests/test_chaos.py``).
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

from mtasklite_like import Pool, WorkerDiedError, is_exception
from tests.helpers import pid_running


def spin(x: int) -> int:
    """A task of a microsecond or so (batches grow, and workers hold two of them)."""
    total = 0
    for k in range(20):
        total += k
    return x


def work(x: int) -> int:
    """A task of some 25 microseconds: 300k of them take seconds on two workers."""
    total = 0
    for k in range(1_000):
        total += k
    return x


class Killer:
    """SIGKILLs a random worker of ``pool`` every ``every`` seconds until stopped; counts the kills
    that reached a live process and remembers every pid it saw.

    With ``progress`` (a count that grows as the run delivers results), at most two kills happen
    without the count growing in between: the run gets on between kills however slow the machine
    is, rather than losing workers faster than they start (which the pool rightly gives up on)."""

    def __init__(
        self, pool: Pool, every: float, seed: int = 0, progress: Callable[[], int] | None = None
    ) -> None:
        self.pool = pool
        self.every = every
        self.progress = progress
        self.kills = 0
        self.seen: set[int] = set()
        self.stop = threading.Event()
        self.enough = threading.Event()  # set once ``wanted`` kills are done
        self.wanted: int | None = None
        self._rng = random.Random(seed)
        self._thread = threading.Thread(target=self._run, name="killer", daemon=True)

    def __enter__(self) -> Killer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        last = -1  # the progress at the last kill
        without = 0  # kills since the progress last grew
        while not self.stop.wait(self.every):
            if self.progress is not None:
                now = self.progress()
                if now > last:
                    last, without = now, 0
                elif without >= 2:
                    continue
            try:
                pids = [p for p in self.pool.worker_pids if p is not None]
            except ValueError:
                continue  # a worker being replaced while we look (its process object closed)
            self.seen.update(pids)
            if not pids:
                continue
            pid = self._rng.choice(pids)
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            self.kills += 1
            without += 1
            if self.wanted is not None and self.kills >= self.wanted:
                self.enough.set()


def _check(results: list[object], n_items: int, kills: int) -> int:
    """Every index exactly once, failures only from deaths and naming their item; returns the
    number of failures."""
    seen = [0] * n_items
    failed = 0
    for r in results:
        if is_exception(r):
            assert isinstance(r, WorkerDiedError), repr(r)
            assert "while running input item" in str(r), str(r)
            index = r.input_index  # type: ignore[attr-defined]
            assert r.indices == [index]
            failed += 1
        else:
            index = r  # type: ignore[assignment]
        seen[index] += 1
    assert all(count == 1 for count in seen), [i for i, c in enumerate(seen) if c != 1][:20]
    assert failed <= kills, (failed, kills)
    return failed


def _gone(pids: set[int], seconds: float) -> list[int]:
    """Pids still running after ``seconds`` (a generous deadline, checked by polling)."""
    deadline = time.monotonic() + seconds
    left = [p for p in pids if pid_running(p)]
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = [p for p in left if pid_running(p)]
    return left


@pytest.mark.timeout(120)
@pytest.mark.parametrize("unordered", [False, True])
def test_workers_killed_at_any_moment_cost_at_most_the_running_item(unordered):
    n_after = 5_000
    pool = Pool(spin, 2, exception_behavior="ignore", on_worker_death="restart", retries=0,
                is_unordered=unordered, start_method="fork")
    received = [0]
    killer = Killer(pool, every=0.02, seed=1 if unordered else 2, progress=lambda: received[0])
    killer.wanted = 15

    def items() -> Iterator[int]:
        # Read until the killer has done its work, then a tail: the run spans every kill.
        i = 0
        while not killer.enough.is_set() and i < 5_000_000:
            yield i
            i += 1
        for _ in range(n_after):
            yield i
            i += 1

    results = []
    with killer:
        for r in pool(items()):
            results.append(r)
            received[0] += 1
    assert killer.kills >= 15
    _check(results, len(results), killer.kills)
    assert not _gone(killer.seen, 10.0)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_chaos_soak_300k_items_a_kill_every_150_ms():
    n_items = 300_000
    pool = Pool(work, 2, exception_behavior="ignore", on_worker_death="restart", retries=0,
                start_method="fork")
    with Killer(pool, every=0.15, seed=3) as killer:
        results = list(pool(range(n_items)))
    assert len(results) == n_items
    failed = _check(results, n_items, killer.kills)
    print(f"\n{n_items} items, {killer.kills} kills, {failed} failed items")
    assert killer.kills > 0
    assert not _gone(killer.seen, 10.0)
