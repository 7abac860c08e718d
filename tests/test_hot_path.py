"""The consumer's hot path: results handed over a batch at a time, with nothing lost or reordered
when ``for`` loops, ``next()``, ``take_ready()``, ``len()`` and ``async for`` share one iterator."""

from __future__ import annotations

import asyncio
import sys

import pytest

from mtasklite_like import Pool
from mtasklite_like.threads import pqdm
from tests.helpers import square

pytestmark = pytest.mark.timeout(60)

N = 20_000


def python_calls_while(fn, *, where):
    """Run ``fn()``; return its value and how many Python functions of files whose path contains
    ``where`` were called meanwhile (generators resumed count as calls)."""
    calls = 0

    def profile(frame, event, arg):
        nonlocal calls
        if event == "call" and where in frame.f_code.co_filename:
            calls += 1

    sys.setprofile(profile)
    try:
        value = fn()
    finally:
        sys.setprofile(None)
    return value, calls


@pytest.mark.parametrize("use_threads", [True, False])
def test_a_for_loop_costs_no_python_call_per_result(use_threads):
    with Pool(square, n_jobs=2, use_threads=use_threads) as pool:
        results = pool(range(N))
        out, calls = python_calls_while(lambda: list(results), where="mtasklite_like")
    assert out == [x * x for x in range(N)]
    # The engine runs per batch (some 40 calls each); a call per result would add N.
    assert calls < N / 2, calls


def test_pqdm_streaming_costs_no_python_call_per_result():
    def run():  # the lazy pqdm of the mtasklite drop-in: results stream
        return [value for value in pqdm(range(N), square, n_jobs=2, disable=True)]

    out, calls = python_calls_while(run, where="mtasklite_like")
    assert out == [x * x for x in range(N)]
    assert calls < N / 2, calls


def test_journaled_for_loop_costs_no_python_call_per_result(tmp_path):
    with Pool(square, n_jobs=2, use_threads=True, journal=str(tmp_path / "run")) as pool:
        results = pool(range(N))
        out, calls = python_calls_while(lambda: list(results), where="mtasklite_like")
    assert out == [x * x for x in range(N)]
    assert calls < N / 2, calls


@pytest.mark.parametrize("use_threads", [True, False])
def test_next_take_ready_and_loops_share_what_a_loop_left(use_threads):
    with Pool(square, n_jobs=2, use_threads=use_threads) as pool:
        results = pool(range(N))
        assert len(results) == N
        got = [next(results) for _ in range(3)]
        for value in results:
            got.append(value)
            if len(got) == 100:
                break  # the loop has taken a whole chunk, most of it unread
        assert len(results) == N - 100  # what the loop left is not counted as consumed
        got.append(next(results))
        got.extend(results.take_ready())
        for value in results:  # a second loop reads on
            got.append(value)
            if len(got) == N // 2:
                break
        got.extend(results)
        assert len(results) == 0
    assert got == [x * x for x in range(N)]


def test_async_for_reads_what_a_for_loop_left():
    async def main():
        with Pool(square, n_jobs=2, use_threads=True) as pool:
            results = pool(range(N))
            got = []
            for value in results:
                got.append(value)
                if len(got) == 10:
                    break
            async for value in results:
                got.append(value)
            return got

    assert asyncio.run(main()) == [x * x for x in range(N)]


def test_dropping_the_iterator_during_a_loop_does_not_stop_it():
    with Pool(square, n_jobs=2) as pool:
        # The loop holds the only reference to the results (a for loop over pool(...)).
        total = 0
        count = 0
        for value in pool(range(N)):
            total += value
            count += 1
    assert count == N
    assert total == sum(x * x for x in range(N))


def test_errors_still_come_after_the_results_before_them():
    def fail_at_5000(x):
        if x == 5000:
            raise ValueError("5000")
        return x

    with Pool(fail_at_5000, n_jobs=2, use_threads=True) as pool:
        got = []
        with pytest.raises(ValueError, match="5000"):
            for value in pool(range(N)):
                got.append(value)
    assert got == list(range(5000))


def bursts(n_bursts, size, pause):
    """An unsized source that gives ``size`` items at once, then nothing for ``pause`` seconds."""
    import time

    for b in range(n_bursts):
        yield from range(b * size, (b + 1) * size)
        time.sleep(pause)


def two_ms(x):
    import time

    time.sleep(0.002)
    return x


def test_a_burst_from_a_waiting_input_is_spread_item_by_item():
    # 2 ms tasks travel five to a batch (about 10 ms of work) while the workers are the limit;
    # when the workers wait for the input, each item travels alone, so no result of a burst
    # waits for the other items of its batch.
    with Pool(two_ms, n_jobs=2, use_threads=True) as pool:
        warm = pool(range(40))
        assert list(warm) == list(range(40))
        assert warm.stats().batch_max >= 4  # the sizer has learnt the task time
        results = pool(bursts(6, 8, 0.05))
        assert list(results) == list(range(48))
        stats = results.stats()
    # (the first burst may come before the run has waited for its input: a batch of two there)
    assert stats.batch_count >= 40 and stats.batch_max <= 2, (stats.batch_count, stats.batch_max)


@pytest.mark.parametrize("n_read", [1, 2, 3, 5, 8, 13, 100])
def test_pqdm_partly_streamed_then_used_as_a_list_loses_nothing(n_read):
    import io

    for source in (iter(range(300)), range(300)):  # unsized: the rest only; sized: everything
        result = pqdm(source, square, n_jobs=2, file=io.StringIO())
        stream = iter(result)
        assert [next(stream) for _ in range(n_read)] == [x * x for x in range(n_read)]
        first = 0 if isinstance(source, range) else n_read
        assert result == [x * x for x in range(first, 300)]
        assert result.tqdm_obj.n == 300  # every result counted once on the bar
