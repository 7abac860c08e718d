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
