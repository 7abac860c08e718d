"""Soak tests: 200 000 items through a pool whose tasks fail and whose workers die at random.

Run them with ``python -m pytest -m slow tests/test_soak.py`` (the default run excludes ``slow``).

The task raises ``ValueError`` for a random 1 % of calls and (processes only) ends its worker with
``os._exit(1)`` for a random 0.05 % of calls. The draw is per call, from a generator seeded per
process, so a retried item usually succeeds. With ``retries=1`` an item fails for good only when
two attempts fail, about 1 % of 1 % of the items: final failures must be rare, and every one of
them must name its item and record both attempts. The parent's memory must stay flat.
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

import multiprocess
import pytest

from mtasklite_like import Pool, WorkerDiedError, is_exception

pytestmark = pytest.mark.slow

N_ITEMS = 200_000
FAIL_RATE = 0.01
DEATH_RATE = 0.0005
RSS_EVERY = 20_000
RSS_GROWTH_LIMIT = 30 * 1024 * 1024

# Counters shared with forked workers (inherited, not pickled): how many faults were injected.
# Made by each test before its pool starts.
_INJECTED: dict[str, Any] = {}
_RNG: dict[int, random.Random] = {}


def _rng() -> random.Random:
    """A generator of this process's own (a forked worker must not replay its parent's draws)."""
    pid = os.getpid()
    rng = _RNG.get(pid)
    if rng is None:
        rng = _RNG[pid] = random.Random(pid ^ time.time_ns())
    return rng


def _bump(name: str) -> None:
    counter = _INJECTED[name]
    with counter.get_lock():
        counter.value += 1


def flaky_task(x: int) -> int:
    draw = _rng().random()
    if draw < DEATH_RATE:
        _bump("deaths")
        os._exit(1)
    if draw < DEATH_RATE + FAIL_RATE:
        _bump("errors")
        raise ValueError(f"random failure of item {x}")
    return 2 * x


def flaky_no_death(x: int) -> int:
    if _rng().random() < FAIL_RATE:
        _bump("errors")
        raise ValueError(f"random failure of item {x}")
    return 2 * x


def _rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def _soak(pool: Pool, *, deaths: bool) -> None:
    ctx = multiprocess.get_context("fork")
    _INJECTED.update(errors=ctx.Value("q", 0), deaths=ctx.Value("q", 0))
    final: list[BaseException] = []
    samples: list[int] = []
    count = 0
    t0 = time.monotonic()
    for index, result in enumerate(pool(range(N_ITEMS))):
        count += 1
        if is_exception(result):
            final.append(result)
            # the error names its own item ...
            if isinstance(result, WorkerDiedError):
                assert deaths, f"a worker died in a run without deaths: {result!r}"
                assert result.indices == [index] and result.items == [index], (index, result)
            else:
                assert type(result) is ValueError, (index, result)
                assert result.args == (f"random failure of item {index}",), (index, result)
            # ... and both of its attempts (retries=1)
            assert getattr(result, "attempts", None) == 2, (index, result)
            previous = result.previous_errors
            assert len(previous) == 1 and isinstance(previous[0], (ValueError, WorkerDiedError)), previous
        else:
            assert result == 2 * index, (index, result)
        if count % RSS_EVERY == 0:
            samples.append(_rss())
    elapsed = time.monotonic() - t0
    injected_errors = _INJECTED["errors"].value
    injected_deaths = _INJECTED["deaths"].value
    print(
        f"\n{N_ITEMS} items in {elapsed:.1f} s: {injected_errors} errors and {injected_deaths} deaths "
        f"injected, {len(final)} final failures; RSS samples (MB): {[round(s / 2**20, 1) for s in samples]}"
    )

    assert count == N_ITEMS
    # The faults were really injected (about 1 % and 0.05 % of the ~202 000 calls).
    assert injected_errors > N_ITEMS * FAIL_RATE / 2
    if deaths:
        assert injected_deaths > N_ITEMS * DEATH_RATE / 3
    # An item fails for good only if its retry fails too: about 1 % of the failed first attempts.
    # Without retries (or if a death charged an attempt to every item its worker held) this would
    # be about 1 % of all items.
    assert len(final) <= max(10, 0.05 * (injected_errors + injected_deaths)), len(final)
    assert len(final) < N_ITEMS * 0.001
    # Memory is flat: results are streamed, nothing accumulates per item in the parent.
    assert len(samples) == N_ITEMS // RSS_EVERY
    growth = samples[-1] - samples[1]
    assert growth < RSS_GROWTH_LIMIT, f"RSS grew by {growth / 2**20:.1f} MB: {samples}"


@pytest.mark.timeout(300)
def test_soak_processes_with_errors_and_deaths():
    pool = Pool(
        flaky_task, 2, exception_behavior="ignore", on_worker_death="restart", retries=1, start_method="fork"
    )
    _soak(pool, deaths=True)
    assert _children_gone_within(5.0), multiprocess.active_children()


@pytest.mark.timeout(300)
def test_soak_threads_with_errors():
    pool = Pool(flaky_no_death, 2, use_threads=True, exception_behavior="ignore", retries=1)
    _soak(pool, deaths=False)


def _children_gone_within(seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while multiprocess.active_children():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True
