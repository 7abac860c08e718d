"""The memory budget: a run holds a bounded number of bytes, whatever the size of its items."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time

import multiprocess
import pytest

from mtasklite_like import Pool
from mtasklite_like._engine.budget import estimate_size
from tests.fake_backend import FakeBackend, Step, run_step

pytestmark = pytest.mark.timeout(60)

MiB = 1 << 20


def megabytes(n: int, pulled: list[int]):
    """``n`` fresh 1 MiB bytes objects, counting how many were pulled."""
    block = bytes(MiB)
    for i in range(n):
        pulled[0] += 1
        yield block[:-1] + bytes([i % 256])


def size_of(b: bytes) -> int:
    return len(b)


def reverse(b: bytes) -> bytes:
    return b[::-1]


def test_budget_is_validated():
    with pytest.raises(ValueError, match="memory_budget must be a number of bytes"):
        Pool(size_of, 2, memory_budget=0)
    with pytest.raises(ValueError, match="memory_budget must be a number of bytes"):
        Pool(size_of, 2, memory_budget=True)
    assert Pool(size_of, 2).memory_budget == 32 * MiB
    assert Pool(size_of, 2, memory_budget=None).options.memory_budget is None


def test_estimates_follow_the_buffers():
    assert estimate_size(bytes(MiB)) >= MiB
    assert estimate_size(bytearray(MiB)) >= MiB
    assert estimate_size(memoryview(bytes(MiB))) >= MiB
    assert estimate_size((bytes(MiB), bytes(MiB))) >= 2 * MiB
    assert estimate_size([bytes(1000)] * 1000) >= 1000 * 1000
    assert estimate_size({"a": bytes(MiB)}) >= MiB
    assert estimate_size(12345) < 100


@pytest.mark.parametrize("ordered", [True, False])
def test_read_ahead_is_bounded_in_bytes(backend, ordered):
    # 1 MiB items, 1 MiB results and an 8 MiB budget: whatever the item window would allow, the run
    # holds about 8 items or results beyond what the consumer took (plus one being read, and the
    # one that may overshoot). (With tiny results, items whose results are ready hold no bytes, so
    # the run may read further ahead: that is bounded by the item window.)
    pulled = [0]
    pool = Pool(reverse, 2, memory_budget=8 * MiB, is_unordered=not ordered, **backend)
    results = pool(megabytes(200, pulled))
    most_ahead = 0
    for consumed, r in enumerate(results, start=1):
        assert len(r) == MiB
        most_ahead = max(most_ahead, pulled[0] - consumed)
        if consumed == 20:
            time.sleep(0.2)  # the stall under test: the pool must not read on meanwhile
            most_ahead = max(most_ahead, pulled[0] - consumed)
    assert consumed == 200
    assert most_ahead <= 8 + 3, most_ahead
    # without a byte budget, the item window alone lets far more be read ahead
    pulled = [0]
    unbounded = Pool(size_of, 2, memory_budget=None, is_unordered=not ordered, **backend)
    results = unbounded(megabytes(200, pulled))
    next(results)
    deadline = time.monotonic() + 10
    while pulled[0] < 30 and time.monotonic() < deadline:
        next(results)
    results.close()
    assert pulled[0] >= 30


def test_results_waiting_in_the_caller_are_bounded_in_bytes():
    # Results of 1 MiB that nobody consumes: the workers stop once the budget is full.
    done = multiprocess.get_context("fork").Value("i", 0)

    def echo(b: bytes) -> bytes:
        with done.get_lock():
            done.value += 1
        return b

    pulled = [0]
    results = Pool(echo, 2, memory_budget=8 * MiB, start_method="fork")(megabytes(200, pulled))
    assert len(next(results)) == MiB
    deadline = time.monotonic() + 1.0
    last = -1
    while time.monotonic() < deadline:  # a stalled consumer: what finishes meanwhile is bounded
        time.sleep(0.05)
        if done.value == last:
            break
        last = done.value
    assert done.value - 1 <= 8 + 3, done.value
    assert sum(1 for _ in results) == 199


@pytest.mark.parametrize("bounded", [True, False])
def test_an_item_bigger_than_the_budget_goes_alone(backend, bounded):
    items = [bytes([i]) * (3 * MiB) for i in range(6)]
    out = list(Pool(reverse, 2, memory_budget=MiB, bounded=bounded, **backend)(items))
    assert out == [b[::-1] for b in items]


def test_tiny_items_keep_large_batches():
    # tasks of 0.1 µs: batches grow to the sizer's maximum, as without a budget
    list(Pool(run_step, 2, backend="fake")(Step(i, seconds=1e-7) for i in range(100_000)))
    sizes = [len(indices) for _, indices in FakeBackend.made[-1].sent]
    assert max(sizes) >= 4096


def test_big_items_travel_in_small_batches():
    items = [Step(bytes(300 * 1024), seconds=1e-7) for _ in range(300)]
    list(Pool(run_step, 2, backend="fake")(items))
    sizes = [len(indices) for _, indices in FakeBackend.made[-1].sent]
    assert max(sizes) <= 4, max(sizes)  # about 1 MiB per batch


_RSS_SCRIPT = """
import sys
from mtasklite_like import Pool


def rss(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field):
                return int(line.split()[1]) * 1024


def megabytes(n):
    block = bytes(1 << 20)
    for i in range(n):
        yield block[:-1] + bytes([i % 256])


def reverse(b):
    return b[::-1]


class Sized:
    # a sized input whose items are made as they are read: len() is known, nothing is held

    def __len__(self):
        return 400

    def __iter__(self):
        return megabytes(400)


if __name__ == "__main__":
    task = len if sys.argv[1] == "len" else reverse
    items = Sized() if sys.argv[3] == "sized" else megabytes(400)
    before = rss("VmRSS:")
    with Pool(task, 2, use_threads=sys.argv[2] == "threads") as pool:
        n = sum(1 for _ in pool(items))
    assert n == 400
    print((rss("VmHWM:") - before) >> 20)
"""


@pytest.mark.parametrize("source", ["generator", "sized"])
@pytest.mark.parametrize("task", ["len", "echo"])
@pytest.mark.parametrize("kind", ["processes", "threads"])
def test_the_callers_memory_stays_bounded_with_big_items(tmp_path, task, kind, source):
    script = tmp_path / "rss.py"
    script.write_text(textwrap.dedent(_RSS_SCRIPT))
    proc = subprocess.run(
        [sys.executable, str(script), task, kind, source], capture_output=True, text=True, timeout=50
    )
    assert proc.returncode == 0, proc.stderr
    growth = int(proc.stdout.strip())
    assert growth <= 128, f"the caller grew by {growth} MiB for 400 x 1 MiB items"


def test_threads_count_estimated_bytes():
    # Threads serialise nothing: their sizes are estimated, and bound the run all the same.
    pulled = [0]
    release = threading.Event()

    def hold(b: bytes) -> int:
        release.wait(5)
        return len(b)

    results = Pool(hold, 2, use_threads=True, memory_budget=4 * MiB)(megabytes(50, pulled))
    try:
        t = threading.Timer(0.3, release.set)
        t.start()
        assert next(results) == MiB
        assert pulled[0] <= 4 + 3, pulled[0]
    finally:
        release.set()
    assert sum(1 for _ in results) == 49
