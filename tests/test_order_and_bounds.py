"""Input order, completion order, pipelining, and the bounded read-ahead window."""

from __future__ import annotations

import random
import threading
import time

import pytest

from mtasklite_like import Pool
from tests.helpers import sleep_then_return, square

pytestmark = pytest.mark.timeout(60)


def stamp(x):
    seconds, value = x
    time.sleep(seconds)
    return value, time.monotonic()


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


def started(pool, n):
    """Run one slow item per worker, so every worker is up before what a test measures (starting
    a Ray actor takes up to a second, and one started late is not what these tests are about)."""
    assert list(pool([(0.2, -1)] * n)) == [-1] * n
    return pool


def test_ordered_output_matches_input_order(backend, n_jobs):
    rng = random.Random(n_jobs)
    items = [(rng.random() * 0.004, i) for i in range(120)]
    assert list(Pool(sleep_then_return, n_jobs, **backend)(items)) == list(range(120))


def test_unordered_output_is_completion_order(backend):
    # item 0 is slow; the others (slow enough to travel one by one) all finish long before it
    items = [(1.0, 0)] + [(0.02, i) for i in range(1, 20)]
    with Pool(sleep_then_return, 2, is_unordered=True, **backend) as pool:
        results = list(started(pool, 2)(items))
    assert sorted(results) == list(range(20))
    assert results[-1] == 0
    assert results[0] != 0


def test_slow_item_does_not_stall_other_workers_in_ordered_mode(backend):
    # One slow head item; every other item fits in the read-ahead window (3 workers x 1 item x 8)
    # and must be processed while it runs: no barrier per chunk, no idle worker.
    items = [(1.0, 0)] + [(0.01, i) for i in range(1, 20)]
    with Pool(stamp, 3, **backend) as pool:
        assert [v for v, _ in pool([(0.2, -1)] * 3)] == [-1] * 3  # every worker up first
        results = list(pool(items))
    assert [v for v, _ in results] == list(range(20))
    slow_done = results[0][1]
    assert all(t < slow_done for _, t in results[1:])


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


def test_read_ahead_window_grows_with_batches_but_stays_bounded(backend):
    src = CountingInput(2_000_000)
    consumed = 0
    max_ahead = 0
    for _ in Pool(square, 2, **backend)(src):
        consumed += 1
        if consumed % 1000 == 0:
            max_ahead = max(max_ahead, src.pulled - consumed)
    assert consumed == 2_000_000
    # default batches are at most 4096 items: 2 workers x 2 batches x 4096 x 2 (ordered slack)
    assert max_ahead <= 2 * 2 * 4096 * 2


@pytest.mark.parametrize("bounded", [True, False])
def test_unbounded_reads_ahead_more(backend, bounded):
    # A slow head item holds back the ordered release. Bounded, the other worker may run at most
    # the window ahead (2 workers x 2 items x 1 per batch x 8 ordered slack = 32 items); unbounded,
    # it keeps reading and running the input for as long as the head item takes.
    src = CountingInput(500, make=lambda i: (1.0 if i == 0 else 0.001, i))
    with Pool(sleep_then_return, 2, bounded=bounded, chunk_size=1, **backend) as pool:
        results = started(pool, 2)(src)
        assert next(results) == 0  # returns once the head item is done
        ahead = src.pulled - 1
        if bounded:
            assert ahead <= 32
        else:
            assert ahead > 64, f"unbounded read only {ahead} items ahead while the head item ran for 1 s"
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
def test_ten_million_item_generator_streams_in_constant_memory(backend):
    src = CountingInput(10_000_000)
    n = 0
    peak_ahead = 0
    start_rss = peak_rss = _rss_bytes()
    for _ in Pool(square, 2, **backend)(src):
        n += 1
        if n % 200_000 == 0:
            peak_ahead = max(peak_ahead, src.pulled - n)
            peak_rss = max(peak_rss, _rss_bytes())
    assert n == 10_000_000
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
