"""Batching behaviour: sizes adapt to task time, chunk_size caps them, order and bounds hold.

These tests check decisions, not speed (speed lives in benchmarks/).
"""

from __future__ import annotations

import itertools
import time

import pytest

from mtasklite_like import Pool
from mtasklite_like._backends.threads import ThreadBackend
from mtasklite_like._engine.batching import BatchSizer

pytestmark = pytest.mark.timeout(60)


def test_tiny_tasks_grow_geometrically_to_the_cap():
    sizer = BatchSizer(2)
    sizes = [sizer.size()]
    for _ in range(10):
        n = sizer.size()
        sizer.observe(n, n * 1e-7)  # 0.1 us per item
        sizes.append(sizer.size())
    assert sizes[0] == 1
    assert all(b <= a * BatchSizer.GROWTH for a, b in itertools.pairwise(sizes))
    assert sizes[-1] == BatchSizer.DEFAULT_MAX


def test_slow_tasks_stay_single():
    sizer = BatchSizer(2)
    for _ in range(10):
        sizer.observe(1, 0.05)
    assert sizer.size() == 1


def test_size_targets_the_batch_duration():
    sizer = BatchSizer(2)
    for _ in range(20):
        n = sizer.size()
        sizer.observe(n, n * 1e-4)  # 0.1 ms per item: ~100 items make 10 ms
    assert 50 <= sizer.size() <= 200


def test_user_chunk_size_caps_the_batch():
    sizer = BatchSizer(2, max_size=7)
    for _ in range(10):
        sizer.observe(sizer.size(), 1e-9)
    assert sizer.size() == 7


def test_tail_of_a_sized_input_is_split_among_workers():
    sizer = BatchSizer(4)
    for _ in range(10):
        sizer.observe(sizer.size(), 1e-9)
    assert sizer.size(remaining=160) == 10  # 160 / (4 batches x 4 workers)
    assert sizer.size(remaining=3) == 1


def test_uniformity_and_overdue():
    sizer = BatchSizer(2)
    for _ in range(7):
        sizer.observe(1, 0.01)
    assert not sizer.uniform  # too few samples
    sizer.observe(1, 0.01)
    assert sizer.uniform
    assert not sizer.overdue(0.011)
    assert sizer.overdue(0.05)
    mixed = BatchSizer(2)
    for seconds in [0.2, 0.01, 0.01, 0.2, 0.01, 0.2, 0.01, 0.01, 0.2, 0.01]:
        mixed.observe(1, seconds)
    assert not mixed.uniform


class _Recorder:
    """Wraps ThreadBackend.send to record the size of every batch sent."""

    def __init__(self, monkeypatch):
        self.sizes: list[int] = []
        original = ThreadBackend.send

        def send(backend, worker, batch_id, first_index, items):
            self.sizes.append(len(items))
            return original(backend, worker, batch_id, first_index, items)

        monkeypatch.setattr(ThreadBackend, "send", send)


@pytest.mark.parametrize("sized", [True, False])
def test_pool_batches_tiny_tasks(monkeypatch, sized):
    rec = _Recorder(monkeypatch)
    data = range(200_000)
    out = list(Pool(abs, 2, use_threads=True)(data if sized else iter(data)))
    assert out == list(data)
    assert rec.sizes[0] == 1  # the first batches are unmeasured, hence small
    assert max(rec.sizes) >= 256
    assert len(rec.sizes) < 2_000  # far fewer messages than items
    assert sum(rec.sizes) == 200_000


def test_pool_sends_slow_tasks_one_by_one(monkeypatch):
    rec = _Recorder(monkeypatch)

    def slow(x):
        time.sleep(0.005)
        return x

    assert list(Pool(slow, 2, use_threads=True)(range(60))) == list(range(60))
    assert set(rec.sizes) == {1}


def test_pool_respects_chunk_size(monkeypatch):
    rec = _Recorder(monkeypatch)
    assert list(Pool(abs, 2, use_threads=True, chunk_size=5)(range(10_000))) == list(range(10_000))
    assert max(rec.sizes) == 5


def test_order_holds_while_batch_sizes_change(backend):
    def varying(x):
        if x % 1000 < 5:
            time.sleep(0.002)  # bursts of slow items shrink the batches again
        return x

    data = range(20_000)
    assert list(Pool(varying, 2, **backend)(iter(data))) == list(data)
