"""Input order, completion order, pipelining, and the bounded read-ahead window."""

from __future__ import annotations

import os
import random
import threading
import time

import pytest

from mtasklite_like import Pool
from tests.helpers import sleep_then_return, square

pytestmark = pytest.mark.timeout(60)


class CountingInput:
    """An unsized input that records how many items the pool has pulled from it."""

    def __init__(self, n, make=lambda i: i):
        self.n = n
        self.pulled = 0
        self.make = make
        self.lock = threading.Lock()

    def __iter__(self):
        for i in range(self.n):
            with self.lock:
                self.pulled += 1
            yield self.make(i)


def last_once_the_others_are_received(x):
    """``(folder, value, others)``: wait until the consumer has noted ``others`` results in
    ``folder`` (any worker sees it: threads, processes, Ray actors on this machine), then return
    ``value``; ``("gave up", value)`` if it has not within 30 s. Without ``others``, take 20 ms and
    return ``value``. A warm-up item ``(seconds, value)`` sleeps, then returns ``value``."""
    if len(x) == 2:
        return sleep_then_return(x)
    folder, value, others = x
    if not others:
        time.sleep(0.02)  # slow enough that items travel one by one
        return value
    deadline = time.monotonic() + 30.0
    while len(os.listdir(folder)) < others:
        if time.monotonic() > deadline:
            return ("gave up", value)
        time.sleep(0.002)
    return value


def after_the_others(x):
    """``(folder, value, others)``: wait until ``others`` items have noted themselves done in
    ``folder``, then return ``value``, or ``("gave up", value)`` after 30 s. Without ``others``,
    take 10 ms, note this item done and return ``value``. A warm-up item ``(seconds, value)``
    sleeps, then returns ``value``."""
    if len(x) == 2:
        return sleep_then_return(x)
    folder, value, others = x
    if not others:
        time.sleep(0.01)
        open(os.path.join(folder, f"done-{value}"), "w").close()
        return value
    deadline = time.monotonic() + 30.0
    while len(os.listdir(folder)) < others:
        if time.monotonic() > deadline:
            return ("gave up", value)
        time.sleep(0.002)
    return value


def _note_read(folder, item):
    """Add one to the count of items read, in ``folder`` (one byte each), and return ``item``."""
    with open(os.path.join(folder, "read"), "ab") as f:
        f.write(b".")
    return item


def after_reads(x):
    """``(reads, value, folder)``: wait until ``reads`` items have been noted read in ``folder``,
    then return ``value``, or ``("gave up", value)`` after 30 s. A warm-up or plain item
    ``(seconds, value)`` sleeps, then returns ``value``."""
    if len(x) == 2:
        return sleep_then_return(x)
    reads, value, folder = x
    path = os.path.join(folder, "read")
    deadline = time.monotonic() + 30.0
    while not os.path.exists(path) or os.path.getsize(path) < reads:
        if time.monotonic() > deadline:
            return ("gave up", value)
        time.sleep(0.002)
    return value


def started(pool, n):
    """Run one slow item per worker, so every worker is up before what a test measures (starting
    a Ray actor takes up to a second, and one started late is not what these tests are about)."""
    assert list(pool([(0.2, -1)] * n)) == [-1] * n
    return pool


def test_ordered_output_matches_input_order(backend, n_jobs):
    rng = random.Random(n_jobs)
    items = [(rng.random() * 0.004, i) for i in range(120)]
    assert list(Pool(sleep_then_return, n_jobs, **backend)(items)) == list(range(120))


def test_unordered_output_is_completion_order(backend, tmp_path):
    # Item 0 finishes only once the consumer has received the 19 others: results must come out as
    # they finish (an ordered output would hold them behind item 0 for ever), and nothing may wait
    # behind item 0 on its worker.
    items = [(str(tmp_path), 0, 19)] + [(str(tmp_path), i, 0) for i in range(1, 20)]
    results = []
    with Pool(last_once_the_others_are_received, 2, is_unordered=True, **backend) as pool:
        for r in started(pool, 2)(items):
            results.append(r)
            (tmp_path / f"received-{r}").touch()
    assert ("gave up", 0) not in results, f"item 0 waited in vain: the consumer received {results}"
    assert sorted(results) == list(range(20))
    assert results[-1] == 0


def test_slow_item_does_not_stall_other_workers_in_ordered_mode(backend, tmp_path):
    # One slow head item; every other item fits in the read-ahead window (3 workers x 1 item x 8)
    # and must be processed while it runs (no barrier per chunk): the head item ends only once the
    # 19 others are done.
    items = [(str(tmp_path), 0, 19)] + [(str(tmp_path), i, 0) for i in range(1, 20)]
    with Pool(after_the_others, 3, **backend) as pool:
        assert list(started(pool, 3)(items)) == list(range(20))


@pytest.mark.parametrize("ordered", [True, False])
def test_bounded_read_ahead_with_a_stalled_consumer(backend, ordered):
    src = CountingInput(10_000, make=lambda i: (0.001, i))
    pool = Pool(sleep_then_return, 2, chunk_size=1, is_unordered=not ordered, **backend)
    results = pool(src)
    max_ahead = 0
    for consumed, _ in enumerate(results, start=1):
        max_ahead = max(max_ahead, src.pulled - consumed)
        if consumed == 50:
            pulled = src.pulled
            # the consumer stalls; the pool must not read further meanwhile
            time.sleep(0.3)
            assert src.pulled == pulled
        if consumed == 200:
            break
    results.close()
    # window: 2 workers x 2 items (uniform 1 ms tasks may queue a second item) x 1 item per
    # batch (chunk_size=1), with x8 slack when ordered
    assert max_ahead <= (32 if ordered else 4)
    assert src.pulled < 300


@pytest.mark.parametrize("bounded", [True, False])
def test_unbounded_reads_ahead_more(backend, bounded, tmp_path):
    # A slow head item holds back the ordered release. Bounded, the other worker may run at most
    # the window ahead (2 workers x 2 items x 1 per batch x 8 ordered slack = 32 items) while the
    # head item takes 0.5 s; unbounded, it keeps reading and running the input: the head item ends
    # only once 100 items have been read.
    folder = str(tmp_path)
    head = (0.5, 0) if bounded else (100, 0, folder)
    src = CountingInput(500, make=lambda i: _note_read(folder, head if i == 0 else (0.001, i)))
    with Pool(after_reads, 2, bounded=bounded, chunk_size=1, **backend) as pool:
        results = started(pool, 2)(src)
        first = next(results)  # returns once the head item is done
        ahead = src.pulled - 1
        assert first == 0, f"unbounded read only {ahead} items ahead while the head item waited 30 s"
        if bounded:
            assert ahead <= 32
        else:
            assert ahead >= 99
        assert list(results) == list(range(1, 500))


def test_immediate_mode_stops_reading_input(backend):
    def maybe_fail(x):
        if x == 5:
            raise RuntimeError("stop here")
        return x

    src = CountingInput(1_000_000)
    with pytest.raises(RuntimeError, match="stop here"):
        list(Pool(maybe_fail, 2, **backend)(src))
    # At most the read-ahead window (2 workers x 2 batches x 4096 x 2 in ordered mode) plus a
    # batch: a worker that starts late may let the other read that far before item 5's failure
    # arrives; never the rest of the million.
    assert src.pulled <= 2 * 2 * 4096 * 2 + 4096


def _rss_bytes():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


@pytest.mark.skipif(not __import__("os").path.exists("/proc/self/status"), reason="needs /proc")
@pytest.mark.timeout(120)
def test_three_million_item_generator_streams_in_constant_memory(backend):
    # The read-ahead window grows with the batches but stays bounded, and the caller's memory stays
    # flat: anything kept per item costs at least 24 bytes (a pointer and the smallest object), which
    # 3 million items would turn into more than 69 MiB.
    src = CountingInput(3_000_000)
    n = 0
    peak_ahead = 0
    start_rss = peak_rss = _rss_bytes()
    for _ in Pool(square, 2, **backend)(src):
        n += 1
        if n % 1000 == 0:
            peak_ahead = max(peak_ahead, src.pulled - n)
            if n % 100_000 == 0:
                peak_rss = max(peak_rss, _rss_bytes())
    assert n == 3_000_000
    # default batches are at most 4096 items: 2 workers x 2 batches x 4096 x 2 (ordered slack)
    assert peak_ahead <= 2 * 2 * 4096 * 2
    assert peak_rss - start_rss < 50 * 2**20


def test_an_input_too_long_for_len_streams_as_unsized(backend):
    # len(range(2**70)) raises OverflowError: the input is then treated as unsized, not refused.
    results = Pool(square, 2, **backend)(range(2**70))
    with pytest.raises(TypeError, match="no len"):
        len(results)
    assert [next(results) for _ in range(5)] == [0, 1, 4, 9, 16]
    results.close()


def test_length_hint_counts_what_is_left(backend):
    import operator

    results = Pool(square, 2, **backend)(list(range(10)))
    assert operator.length_hint(results) == 10
    for _ in range(4):
        next(results)
    assert operator.length_hint(results) == 6
    assert list(results) == [x * x for x in range(4, 10)]
    assert operator.length_hint(results) == 0
