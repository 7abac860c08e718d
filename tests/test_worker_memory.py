"""Workers' memory, end to end with real processes: recycling, the hard ceiling, kills named.

Recycling is driven deterministically where the assertion needs it: an injected
:class:`~mtasklite_like._memory.source.MemorySource` (inherited by forked workers) reports each
worker's own memory as what its items added to a counter, so the item that crosses the limit is
known. The other tests use real memory: tasks that keep or allocate tens of MiB.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from mtasklite_like import (
    DeferredExceptions,
    MemoryPressureWarning,
    Pool,
    WorkerDiedError,
    WorkerMemoryError,
    delayed_init,
    is_exception,
)
from mtasklite_like._memory.source import MemorySource, ProcSource, use_source
from mtasklite_like._memory.units import format_bytes
from mtasklite_like._memory.watch import MemoryWatch

pytestmark = pytest.mark.timeout(120)

MiB = 1 << 20
_REAL = ProcSource()
#: this process's own memory as the counting source reports it (each forked worker has its copy)
_GROWN = [0]


class CountingSource(MemorySource):
    """A worker's own memory is what its items added to ``_GROWN``; other processes read for real."""

    def rss(self, pid: int | None = None) -> int | None:
        return _GROWN[0] if pid is None or pid == os.getpid() else _REAL.rss(pid)

    def own(self, pid: int | None = None) -> int | None:
        return _GROWN[0] if pid is None or pid == os.getpid() else _REAL.own(pid)

    def peak(self, pid: int | None = None) -> int | None:
        return None if pid is None or pid == os.getpid() else _REAL.peak(pid)

    def available(self) -> tuple[int, int] | None:
        return _REAL.available()


def grow(x: int) -> tuple[int, int, int]:
    """Adds 30 MiB to the worker's counted memory; takes 2 ms, so items are looked at one by one."""
    _GROWN[0] += 30 * MiB
    time.sleep(0.002)
    if x < 0:
        raise ValueError(f"bad {x}")
    return x, os.getpid(), _GROWN[0]


def _check_recycled(out: list[Any], n: int, unordered: bool, failing: tuple[int, ...]) -> None:
    values = [r for r in out if not is_exception(r)]
    got = [v[0] for v in values]
    expected = [i for i in range(n) if i not in failing]
    assert (sorted(got) if unordered else got) == expected
    by_pid: dict[int, list[int]] = {}
    for _, pid, counted in values:
        by_pid.setdefault(pid, []).append(counted)
    # 100 MiB at 30 MiB an item: a worker runs its fourth item (120 MiB) and retires; it never
    # starts a fifth. Failed items count too, so a worker may show fewer results.
    assert len(by_pid) >= n // 4
    assert all(max(c) <= 120 * MiB for c in by_pid.values())


@pytest.mark.parametrize("chunk_size", [None, 4])
@pytest.mark.parametrize("unordered", [False, True])
@pytest.mark.parametrize("mode", ["immediate", "ignore", "deferred"])
def test_recycling_keeps_results_and_order(chunk_size, unordered, mode):
    failing = () if mode == "immediate" else (7, 23)
    items = [-i if i in failing else i for i in range(32)]
    pool = Pool(grow, 2, max_worker_memory=100 * MiB, chunk_size=chunk_size, is_unordered=unordered,
                exception_behavior=mode, start_method="fork")
    out: list[Any] = []
    with use_source(CountingSource()):
        try:
            for r in pool(items):
                out.append(r)
        except DeferredExceptions as exc:
            assert {e.input_index for e in exc.exceptions} == set(failing)
    _check_recycled(out, 32, unordered, failing)
    assert sum(w.recycled for w in pool.worker_memory()) >= 32 // 4 - 2


def test_a_single_worker_with_a_memory_limit_is_a_process():
    # One worker would run in the caller, which cannot be replaced: with a limit it is a process.
    pool = Pool(grow, 1, max_worker_memory=100 * MiB, start_method="fork")
    with use_source(CountingSource()):
        out = list(pool(range(10)))
    assert [x for x, _, _ in out] == list(range(10))
    pids = {pid for _, pid, _ in out}
    assert os.getpid() not in pids and len(pids) >= 3


@delayed_init
class Grower:
    """A worker object that records where it was built and where it was dropped."""

    def __init__(self, log: str) -> None:
        self.log = log
        with open(log, "a") as f:
            f.write(f"built {os.getpid()}\n")

    def __call__(self, x: int) -> tuple[int, int, int]:
        return grow(x)

    def __del__(self) -> None:
        with open(self.log, "a") as f:
            f.write(f"dropped {os.getpid()}\n")


def _log(path: Path) -> dict[str, list[int]]:
    events: dict[str, list[int]] = {"built": [], "dropped": [], "closed": []}
    for line in path.read_text().splitlines():
        word, pid = line.split()
        events[word].append(int(pid))
    return events


def test_recycling_rebuilds_a_delayed_init_object_and_drops_the_old(tmp_path):
    log = tmp_path / "log"
    pool = Pool(Grower(str(log)), 2, max_worker_memory=100 * MiB, start_method="fork")
    with use_source(CountingSource()):
        out = list(pool(range(24)))
    assert [x for x, _, _ in out] == list(range(24))
    events = _log(log)
    used = {pid for _, pid, _ in out}
    assert used <= set(events["built"])
    assert len(events["built"]) == len(set(events["built"]))  # once per process
    # Every worker that retired dropped its object in its own process, before ending.
    retired = {pid for pid in used if sum(1 for _, p, _ in out if p == pid) >= 4}
    assert retired and retired <= set(events["dropped"])


@delayed_init
class AsyncGrower:
    def __init__(self, log: str) -> None:
        self.log = log
        with open(log, "a") as f:
            f.write(f"built {os.getpid()}\n")

    async def __call__(self, x: int) -> tuple[int, int, int]:
        import asyncio

        _GROWN[0] += 30 * MiB
        await asyncio.sleep(0.002)
        return x, os.getpid(), _GROWN[0]

    async def aclose(self) -> None:
        with open(self.log, "a") as f:
            f.write(f"closed {os.getpid()}\n")


@pytest.mark.parametrize("unordered", [False, True])
def test_recycling_async_workers_closes_the_old_object(tmp_path, unordered):
    log = tmp_path / "log"
    pool = Pool(AsyncGrower(str(log)), 2, concurrency=1, max_worker_memory=100 * MiB,
                is_unordered=unordered, start_method="fork")
    with use_source(CountingSource()):
        out = list(pool(range(24)))
    got = [x for x, _, _ in out]
    assert (sorted(got) if unordered else got) == list(range(24))
    events = _log(log)
    used = {pid for _, pid, _ in out}
    assert len(used) >= 24 // 4 - 1
    retired = {pid for pid in used if sum(1 for _, p, _ in out if p == pid) >= 4}
    assert retired and retired <= set(events["closed"])
    # A worker finishes the batches it began, then takes nothing more: at most its fourth item
    # plus the rest of the batch it was in (concurrency=1, so batches are small).
    assert sum(w.recycled for w in pool.worker_memory()) >= 24 // 4 - 2


_KEPT: list[bytearray] = []


def keep(x: int) -> tuple[int, int]:
    """Keeps 24 MiB of real, touched memory per item, never freed."""
    block = bytearray(24 * MiB)
    block[::4096] = b"\x01" * len(range(0, len(block), 4096))
    _KEPT.append(block)
    return x, os.getpid()


def test_real_memory_growth_recycles_workers():
    pool = Pool(keep, 2, max_worker_memory="160MiB")
    out = list(pool(range(40)))
    assert [x for x, _ in out] == list(range(40))
    report = pool.worker_memory()
    assert sum(w.recycled for w in report) >= 2
    assert len({pid for _, pid in out}) >= 4
    # No process of a worker ran far past the limit: 160 MiB of its own, one item's 24 MiB more,
    # plus what it shares with the pool's process (counted in its resident size).
    shared = (_REAL.rss() or 0)
    for w in report:
        assert w.peak is not None and w.peak <= 160 * MiB + 24 * MiB + shared + 16 * MiB, format_bytes(w.peak)


def test_thread_workers_refuse_a_worker_memory_limit():
    with pytest.raises(ValueError, match="thread workers share one process"):
        Pool(keep, 2, use_threads=True, max_worker_memory="1GiB")
    with pytest.raises(ValueError, match="thread workers share one process"):
        Pool(keep, 2, use_threads=True, kill_worker_memory="1GiB")


def test_ray_refuses_the_hard_ceiling():
    # It watches processes on this machine; actors may run elsewhere (max_worker_memory works).
    with pytest.raises(ValueError, match="Ray actors may run elsewhere"):
        Pool(keep, 2, backend="ray", kill_worker_memory="1GiB")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_worker_memory": "2GiB", "kill_worker_memory": "1GiB"}, "must be above max_worker_memory"),
        ({"max_worker_memory": "lots"}, "such as 2 << 30 or '2GiB'"),
        ({"max_worker_memory": 0}, "number of bytes >= 1"),
        ({"min_available_memory": "150%"}, "below 100%"),
        ({"min_available_memory": -1}, "percentage"),
        ({"memory_pause_timeout": 0}, "memory_pause_timeout must be a number of seconds"),
    ],
)
def test_memory_options_say_what_to_change(options, message):
    with pytest.raises((ValueError, TypeError), match=message):
        Pool(keep, 2, **options)


def test_memory_options_in_canonical_form():
    pool = Pool(keep, 2, max_worker_memory="1.5GiB", kill_worker_memory="2G", min_available_memory="10%")
    assert pool.max_worker_memory == 3 << 29 and pool.kill_worker_memory == 2 << 30
    assert str(pool.min_available_memory) == "10%"
    assert pool.memory_pause_timeout == 300.0


# -- the hard ceiling -------------------------------------------------------------------------------


def balloon(x: int) -> int:
    """Item 3 takes 320 MiB of real memory and holds it (until its worker is killed)."""
    if x == 3:
        block = bytearray(320 * MiB)
        block[::4096] = b"\x01" * len(range(0, len(block), 4096))
        time.sleep(60)
    return x


@pytest.mark.parametrize("unordered", [False, True])
def test_the_ceiling_fails_exactly_the_item_that_crossed_it(unordered):
    pool = Pool(balloon, 2, kill_worker_memory="200MiB", exception_behavior="ignore", chunk_size=2,
                is_unordered=unordered)
    out = list(pool(range(10)))
    errors = [r for r in out if isinstance(r, WorkerMemoryError)]
    assert len(errors) == 1
    error = errors[0]
    assert error.input_index == 3 and error.indices == [3]
    assert error.memory > error.limit == 200 * MiB
    assert "kill_worker_memory=200 MiB" in str(error) and "input item #3" in str(error)
    assert isinstance(error, WorkerDiedError) and error.exitcode == -signal.SIGKILL
    values = sorted(r for r in out if not is_exception(r))
    assert values == [i for i in range(10) if i != 3]
    assert sum(w.killed for w in pool.worker_memory()) == 1


def test_the_ceiling_under_immediate_raises_the_items_error():
    # The kill is the pool's own decision, not a crash: under the default on_worker_death the
    # run raises the item's WorkerMemoryError, not a plea to pass on_worker_death='restart'.
    got = []
    with pytest.raises(WorkerMemoryError) as info:
        for r in Pool(balloon, 2, kill_worker_memory="200MiB", chunk_size=1)(range(10)):
            got.append(r)
    assert info.value.input_index == 3
    assert "on_worker_death" not in str(info.value)
    assert got == [0, 1, 2]


def test_the_ceiling_with_a_retry_runs_the_item_again():
    pool = Pool(balloon, 2, kill_worker_memory="200MiB", exception_behavior="ignore", retries=1, chunk_size=1)
    out = list(pool(range(6)))
    error = out[3]
    assert isinstance(error, WorkerMemoryError) and error.attempts == 2
    assert [r for i, r in enumerate(out) if i != 3] == [0, 1, 2, 4, 5]
    assert sum(w.killed for w in pool.worker_memory()) == 2


# -- kills from outside, named -----------------------------------------------------------------------


def wait_to_be_killed(x: Any) -> Any:
    """Item 4 writes its worker's pid where the test waits for it, then waits to be killed."""
    index, flag = x
    if index == 4:
        Path(flag).write_text(str(os.getpid()))
        time.sleep(60)
    return index


class MovingOom(MemorySource):
    """Real readings, and an OOM kill counter the test moves."""

    def __init__(self) -> None:
        self.count = 0

    def rss(self, pid: int | None = None) -> int | None:
        return _REAL.rss(pid)

    def own(self, pid: int | None = None) -> int | None:
        return _REAL.own(pid)

    def oom_kills(self) -> int | None:
        return self.count


def _kill_when_flagged(flag: Path, before_kill: Any = None) -> threading.Thread:
    def run() -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if flag.exists() and flag.read_text():
                if before_kill is not None:
                    before_kill()
                os.kill(int(flag.read_text()), signal.SIGKILL)
                return
            time.sleep(0.01)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("oom", [False, True])
def test_a_sigkill_from_outside_is_named_with_the_oom_hint_only_when_a_counter_moved(tmp_path, oom):
    flag = tmp_path / "pid"
    source = MovingOom()

    def move() -> None:
        if oom:
            source.count += 1

    pool = Pool(wait_to_be_killed, 2, exception_behavior="ignore", chunk_size=1, max_worker_memory="4GiB",
                start_method="fork")
    with use_source(source):
        killer = _kill_when_flagged(flag, move)
        out = list(pool([(i, str(flag)) for i in range(8)]))
        killer.join(5)
    error = out[4]
    assert isinstance(error, WorkerDiedError) and not isinstance(error, WorkerMemoryError)
    text = str(error)
    assert "killed by SIGKILL" in text and "not sent by the pool" in text
    assert "max_worker_memory=4 GiB" in text
    assert ("OOM killer" in text) is oom
    assert [r for i, r in enumerate(out) if i != 4] == [0, 1, 2, 3, 5, 6, 7]


def test_a_death_report_gives_the_last_memory_sample():
    source = MovingOom()
    watch = MemoryWatch(2, kill_worker_memory=None, source=source)
    watch.attach(lambda: [os.getpid(), None])
    watch.after_batch(0, 0.0)
    words = watch.explain(0, os.getpid(), -signal.SIGKILL)
    assert isinstance(words, str)
    assert "its last memory sample:" in words and "OOM" not in words
    assert watch.explain(0, os.getpid(), 1) is None  # not a SIGKILL: nothing to add
    source.count += 1
    assert "OOM killer" in str(watch.explain(1, 12345, -signal.SIGKILL))
    watch.detach()


# -- pressure, with real workers ----------------------------------------------------------------------


class Switch(MemorySource):
    """Memory short while ``short`` is set; records when the pool first saw it short, and when it
    first saw it back."""

    def __init__(self) -> None:
        self.short = threading.Event()
        self.seen_short: float | None = None
        self.seen_back: float | None = None

    def available(self) -> tuple[int, int]:
        now = time.monotonic()
        if self.short.is_set():
            if self.seen_short is None:
                self.seen_short = now
            return 1 * MiB, 1000 * MiB
        if self.seen_short is not None and self.seen_back is None:
            self.seen_back = now
        return 900 * MiB, 1000 * MiB


def stamp(x: int) -> tuple[int, float]:
    started = time.monotonic()
    time.sleep(0.005)
    return x, started


@pytest.mark.parametrize("use_threads", [False, True])
def test_pressure_pauses_real_workers_and_resumes(use_threads):
    source = Switch()
    pool = Pool(stamp, 2, use_threads=use_threads, min_available_memory="10%", chunk_size=1)
    starts: list[float] = []
    with use_source(source), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for x, started in pool(range(60)):
            starts.append(started)
            if x == 10:
                source.short.set()
                # Memory comes back later, whatever the run does meanwhile.
                threading.Timer(0.5, source.short.clear).start()
    assert len(starts) == 60
    assert source.seen_short is not None and source.seen_back is not None
    # Once the pool saw memory short, it sent nothing until it saw it back: what started in
    # between had been sent before, at most two single-item batches per worker.
    during = [t for t in starts if source.seen_short < t < source.seen_back]
    assert len(during) <= 4
    assert [w.category for w in caught].count(MemoryPressureWarning) == 2
