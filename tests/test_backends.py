"""Backend-specific guarantees: threads never pickle; processes pickle with a dill fallback."""

from __future__ import annotations

import os
import threading

import pytest

from mtasklite_like import Pool
from tests.helpers import square

pytestmark = pytest.mark.timeout(60)


class Unpicklable:
    """Refuses every pickler, so any pickling attempt fails loudly."""

    def __init__(self, value):
        self.value = value
        self.lock = threading.Lock()

    def __reduce__(self):
        raise TypeError("Unpicklable was pickled")


def test_threads_never_pickle_items_results_or_workers():
    def task(item):
        return Unpicklable(item.value * 2)

    class Worker:
        def __reduce__(self):
            raise TypeError("the worker was pickled")

        def __call__(self, item):
            return task(item)

    items = [Unpicklable(i) for i in range(50)]
    for worker in (task, Worker()):
        results = list(Pool(worker, 3, use_threads=True)(items))
        assert [r.value for r in results] == [2 * i for i in range(50)]
    # identity is preserved: items are handed over, not copied
    assert list(Pool(lambda x: x, 2, use_threads=True)(items))[7] is items[7]


def test_processes_run_lambdas_and_closures():
    k = 5
    assert list(Pool(lambda x: x + k, 2)(range(5))) == [5, 6, 7, 8, 9]


def test_process_workers_are_other_processes():
    pids = set(Pool(lambda _: os.getpid(), 2, chunk_size=1)(range(40)))
    assert os.getpid() not in pids and 1 <= len(pids) <= 2


def test_exited_flag_follows_the_with_block(backend):
    with Pool(square, 2, **backend) as pool:
        assert list(pool(range(3))) == [0, 1, 4]
        assert pool.exited is False
    assert pool.exited is True
    # a closed pool can be called again: workers start afresh
    assert list(pool(range(3))) == [0, 1, 4]


def test_with_on_the_result_iterator_closes_an_unmanaged_pool(backend):
    pool = Pool(square, 2, **backend)
    with pool(range(10)) as results:
        assert next(results) == 0
    assert pool.exited is True


def test_start_method_validation():
    with pytest.raises(ValueError, match="unknown start_method 'threads'"):
        Pool(square, 2, start_method="threads")
    with pytest.raises(ValueError, match="applies to process workers"):
        Pool(square, 2, use_threads=True, start_method="spawn")


class _RecordingProgress(list):
    """Stands for the shared slots (batch id, position, then progress from tasks: see
    ``_worker.context``) and records every write in order."""

    def __init__(self):
        from mtasklite_like._worker.context import SLOTS

        super().__init__([-1] * SLOTS)
        self.writes = []

    def __setitem__(self, key, value):
        self.writes.append((key, value))
        super().__setitem__(key, value)


def test_workers_reset_the_running_position_before_naming_a_new_batch():
    # A death between the two writes must never pair the new batch with the old batch's position.
    import queue

    from mtasklite_like._backends.messages import RunBatch, Stop
    from mtasklite_like._backends.processes import _serve

    inbox = queue.SimpleQueue()
    inbox.put(RunBatch(7, range(0, 3), [1, 2, 3], False, False))
    inbox.put(RunBatch(8, range(3, 5), [4, 5], False, True))
    inbox.put(Stop())
    progress = _RecordingProgress()
    _serve(square, inbox, lambda data: None, progress)
    assert progress.writes[:2] == [(1, -1), (0, 7)]
    start_of_8 = progress.writes.index((0, 8))
    assert progress.writes[start_of_8 - 1] == (1, -1)


def test_thread_workers_reset_the_running_position_before_naming_a_new_batch():
    import queue

    from mtasklite_like._backends.messages import RunBatch, Stop
    from mtasklite_like._backends.threads import _Slot, _thread_main
    from mtasklite_like._worker.run import WorkerSpec

    slot = _Slot(queue.SimpleQueue())
    slot.progress = _RecordingProgress()
    slot.inbox.put(RunBatch(3, range(0, 2), [1, 2]))
    slot.inbox.put(RunBatch(4, range(2, 3), [3]))
    slot.inbox.put(Stop())
    _thread_main(WorkerSpec(0, square, "single_arg"), slot)
    writes = slot.progress.writes
    assert writes[:2] == [(1, -1), (0, 3)]
    assert writes[writes.index((0, 4)) - 1] == (1, -1)


def test_every_capability_flag_is_read_outside_the_backends():
    # The engine adapts to a backend's Capabilities and to nothing else (see _backends/base.py): a
    # flag that no code outside the backends reads promises something nothing does.
    import dataclasses
    from pathlib import Path

    import mtasklite_like
    from mtasklite_like._backends import Capabilities

    package = Path(mtasklite_like.__file__).parent
    outside = [p for p in package.rglob("*.py") if "_backends" not in p.relative_to(package).parts]
    sources = "\n".join(path.read_text() for path in outside)
    unread = [f.name for f in dataclasses.fields(Capabilities) if f".{f.name}" not in sources]
    assert unread == []


def test_every_pipe_message_round_trips_and_shows_its_batch_before_unpickling():
    import pickle

    from mtasklite_like._backends import messages as m
    from mtasklite_like._backends.wire import leading_fields

    error = ValueError("x")
    samples = [
        m.RunBatch(7, range(2), [1, 2], True, False), m.Stop(), m.Ready(), m.InitFailed(error, "tb"),
        m.Done(8, [1, None], [(1, error, "tb")], 0.5), m.DoneRaw(9, b"raw", 0.25),
        m.Unreadable(10, error, "tb"), m.Fatal(error, "tb"),
    ]
    for msg in samples:
        data = pickle.dumps(m.to_wire(msg), pickle.HIGHEST_PROTOCOL)
        back = m.from_wire(pickle.loads(data))
        assert type(back) is type(msg)
        assert repr(back) == repr(msg)  # the same fields, in order
        batch_id = getattr(msg, "batch_id", None)
        assert leading_fields(data, (type(msg),), 1) == (None if batch_id is None else (batch_id,))
    done = pickle.dumps(m.to_wire(samples[4]))
    assert leading_fields(done, (m.Done, m.DoneRaw), 1) == (8,)
    assert leading_fields(done, (m.RunBatch,), 1) is None  # another kind: not a batch to run
