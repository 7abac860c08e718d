"""Large buffers between the caller and process workers: out of band, both ways, nothing lost.

Round trips compare what comes back with what went in; the transport's own tests check that large
buffers really leave the pickle and that the reported sizes count them.
"""

from __future__ import annotations

import pickle
import subprocess
import sys
import textwrap

import pytest

from mtasklite_like import DeferredExceptions, Pool, TaskTimeoutError, WorkerDiedError
from mtasklite_like._backends.base import BatchDone
from mtasklite_like._backends.processes import ProcessBackend
from mtasklite_like._backends.serialize import OOB_THRESHOLD, dumps_oob, loads_oob
from mtasklite_like._worker.run import WorkerSpec
from tests import zerocopy_helpers as zh

np = pytest.importorskip("numpy")

MIB = 1 << 20
BIG = OOB_THRESHOLD * 3


def _same(a, b):
    if isinstance(a, np.ndarray):
        return type(b) is np.ndarray and a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, memoryview):
        return type(b) is memoryview and a.format == b.format and a.shape == b.shape and a == b
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, dict):
        return type(b) is dict and a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _samples():
    rng = np.random.default_rng(0)
    grid = rng.random((600, 500))
    return [
        bytes(range(256)) * (BIG // 256),
        bytearray(b"x" * BIG),
        memoryview(b"y" * BIG),
        memoryview(bytearray(b"small")),
        memoryview(np.arange(BIG // 4, dtype=np.int32)).cast("B").cast("i", (BIG // 256, 64)),
        grid,                                             # C-contiguous float64
        np.asfortranarray(grid.astype(np.float32)),      # Fortran order
        grid[::3, ::2],                                   # not contiguous
        rng.integers(0, 255, BIG, dtype=np.uint8),
        rng.integers(-5, 5, (BIG // 8,), dtype=np.int64),
        np.zeros(BIG // 2, dtype=np.complex64),
        np.arange(10, dtype=np.int16),                    # small array, in band
        (b"z" * BIG, {"k": [bytearray(BIG), grid]}, [grid[:2]]),
        {"name": "img", "pixels": np.ones((256, 256, 3), dtype=np.uint8)},
        7, "seven", None,
    ]


def _spec(fn):
    return WorkerSpec(0, fn, "single_arg")


# -- serialisation ----------------------------------------------------------------------------------


def test_small_messages_are_plain_pickles():
    data, buffers = dumps_oob((1, [0, 1], [1, "a", b"b" * 100, np.arange(3)], False))
    assert buffers is None
    assert pickle.loads(data)[0] == 1


@pytest.mark.parametrize("obj", [np.ones(BIG // 8), bytearray(BIG), memoryview(bytearray(BIG)),
                                 bytes(range(256)) * (BIG // 256), [1, (2, {"a": bytearray(BIG)})],
                                 [7, b"x" * BIG, "small"]])
def test_large_buffers_leave_the_pickle(obj):
    data, buffers = dumps_oob(obj)
    assert buffers is not None and sum(b.nbytes for b in buffers) >= BIG
    assert len(data) < OOB_THRESHOLD
    received = [bytearray(b) for b in buffers]
    assert _same(obj, loads_oob(data, received))


def test_received_bytes_are_bytes():
    payload = bytes(range(256)) * (BIG // 256)
    data, buffers = dumps_oob([payload, b"small"])
    out = loads_oob(data, [bytearray(b) for b in buffers or []])
    assert type(out[0]) is bytes and out == [payload, b"small"]


def test_out_of_band_views_are_the_objects_memory():
    array = np.arange(BIG // 8, dtype=np.float64)
    _, buffers = dumps_oob([array])
    assert buffers is not None
    assert np.shares_memory(np.frombuffer(buffers[0], dtype=np.float64), array)


def test_received_bytearray_is_the_buffer_itself():
    data, buffers = dumps_oob([bytearray(BIG)])
    received = [bytearray(b) for b in buffers or []]
    assert loads_oob(data, received)[0] is received[0]


# -- through process workers ------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_round_trip_both_directions_equal_to_input():
    items = _samples()
    with Pool(zh.identity, 2) as pool:
        out = list(pool(items))
    assert len(out) == len(items)
    for a, b in zip(items, out):
        assert _same(a, b), type(a)


@pytest.mark.timeout(60)
def test_big_and_small_mixed_in_one_batch_report_their_full_size():
    backend = ProcessBackend([_spec(zh.identity)])
    backend.start()
    try:
        items = _samples()
        sent = backend.send(0, 0, list(range(len(items))), items)
        assert sent >= 10 * BIG  # out-of-band buffers are counted
        done = None
        while done is None:
            done = next((e for e in backend.recv(30) if isinstance(e, BatchDone)), None)
        assert not done.failures
        assert done.nbytes >= 10 * BIG
        for a, b in zip(items, done.results):
            assert _same(a, b), type(a)
    finally:
        backend.stop(2.0)


@pytest.mark.timeout(60)
def test_an_item_bigger_than_any_threshold_and_a_big_result():
    huge = np.random.default_rng(1).random(40 * MIB // 8)
    with Pool(zh.identity, 2) as pool:
        (back,) = list(pool([huge]))
        assert np.array_equal(back, huge)
    results = list(Pool(zh.big_result, 2)([3, 0, 1]))
    assert [len(r) for r in results] == [3 * MIB, 0, MIB]
    assert all(type(r) is bytearray and r == b"r" * len(r) for r in results)


@pytest.mark.timeout(60)
def test_order_kept_with_big_items_ordered_and_unordered():
    items = [bytes([i]) * (BIG + i * 1000) for i in range(40)]
    assert list(Pool(zh.identity, 2)(items)) == items
    assert sorted(Pool(zh.identity, 2, is_unordered=True)(items)) == sorted(items)


@pytest.mark.timeout(60)
def test_exception_modes_unchanged_with_big_items():
    items = [(b"F" if i % 5 == 0 else b"o") + bytes(BIG) for i in range(12)]
    out = list(Pool(zh.fail_on_marked, 2, exception_behavior="ignore")(items))
    for item, res in zip(items, out):
        if item[:1] == b"F":
            assert isinstance(res, ValueError)
        else:
            assert res == item[::-1]
    with pytest.raises(DeferredExceptions) as info:
        list(Pool(zh.fail_on_marked, 2, exception_behavior="deferred")(items))
    assert len(info.value.exceptions) == 3
    with pytest.raises(ValueError, match="marked item"):
        list(Pool(zh.fail_on_marked, 2)(items))


@pytest.mark.timeout(60)
def test_worker_death_and_restart_with_big_items():
    items = [(b"K" if i == 4 else b"o") + bytes(BIG) for i in range(10)]
    out = list(Pool(zh.die_on_marked, 2, exception_behavior="ignore", on_worker_death="restart")(items))
    assert isinstance(out[4], WorkerDiedError)
    assert [r for i, r in enumerate(out) if i != 4] == [len(x) for i, x in enumerate(items) if i != 4]
    with pytest.raises(WorkerDiedError):
        list(Pool(zh.die_on_marked, 2)(items))


@pytest.mark.timeout(60)
def test_task_timeout_with_big_items():
    items = [(b"H" if i == 2 else b"o") + bytes(BIG) for i in range(6)]
    out = list(Pool(zh.hang_on_marked, 2, task_timeout=1.0, exception_behavior="ignore")(items))
    assert isinstance(out[2], TaskTimeoutError)
    assert [r for i, r in enumerate(out) if i != 2] == [len(x) for i, x in enumerate(items) if i != 2]


@pytest.mark.timeout(60)
def test_numpy_not_imported_for_a_bytes_workload():
    script = textwrap.dedent("""
        import sys
        from mtasklite_like import Pool
        from tests import zerocopy_helpers as zh
        items = [bytes(300_000), bytearray(300_000), memoryview(bytearray(200_000)), b"s"]
        out = list(Pool(zh.describe, 2)(items))
        assert [o[:2] for o in out] == [("bytes", 300_000), ("bytearray", 300_000),
                                        ("memoryview", 200_000), ("bytes", 1)], out
        assert not any(o[2] for o in out), "numpy imported in a worker"
        assert "numpy" not in sys.modules, "numpy imported in the caller"
        print("ok")
    """)
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=50)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def _size_or_value(x):
    return len(x) if isinstance(x, bytes) else x


def test_large_and_small_messages_to_a_worker_keep_their_order():
    # Large messages are written by a thread of their own; a small one sent meanwhile to the same
    # worker must follow them, never cut into one.
    mib = 1 << 20
    items = [bytes(mib + i) if i % 3 == 0 else i for i in range(60)]
    with Pool(_size_or_value, n_jobs=2, chunk_size=1) as pool:
        assert list(pool(items)) == [mib + i if i % 3 == 0 else i for i in range(60)]
        # and again on the same workers, with batches of small items between the large ones
        assert list(pool(x for x in items)) == [mib + i if i % 3 == 0 else i for i in range(60)]
