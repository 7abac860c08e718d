"""The thread backend: workers are daemon threads of the caller's process.

Items and results are handed over as Python objects through in-memory queues, never pickled.
Each worker thread builds its own object from its spec, so a ``@delayed_init`` shell passed to
several workers still gives one object per thread.

A thread cannot be killed. When a run is abandoned, or a task overruns ``task_timeout``, the
thread is abandoned: it finishes its current task in the background (it is a daemon, so it never
blocks exit), starts nothing new, and whatever it reports afterwards is dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

from .._worker.context import SLOTS, WorkerContext, enter
from .._worker.coroutines import serve_coroutines
from .._worker.progress import fraction_of
from .._worker.run import WorkerSpec, build_worker_callable, run_batch
from .base import Backend, BatchDone, Capabilities, Event, WorkerDied, WorkerInitFailed, WorkerReady
from .messages import RunBatch, Stop

__all__ = ["ThreadBackend"]

#: put in a worker's inbox after its batches (``RunBatch``, handed over as they are) to end it
_STOP = Stop()
#: put in the outbox by ``wake``: ends a wait in ``recv`` without being an event
_WAKE: Any = object()


class _Sink:
    """Where an abandoned thread's reports go: nowhere."""

    @staticmethod
    def put(_event: Any) -> None:
        pass


_SINK = _Sink()


class _Slot:
    """One worker thread's line to the pool, cut when the thread is abandoned."""

    __slots__ = ("abandoned", "inbox", "outbox", "progress", "thread")

    def __init__(self, outbox: queue.SimpleQueue[Event]) -> None:
        self.inbox: queue.SimpleQueue[RunBatch | Stop] = queue.SimpleQueue()
        self.outbox: Any = outbox
        self.abandoned = False
        #: (batch id, position) of the item running, then progress from inside tasks (see
        #: ``_worker.context``)
        self.progress = [-1] * SLOTS
        self.thread: threading.Thread | None = None

    def abandon(self) -> None:
        self.abandoned = True
        self.outbox = _SINK
        self.inbox.put(_STOP)


def _thread_main(spec: WorkerSpec, slot: _Slot) -> None:
    if spec.concurrency:
        _coroutine_thread_main(spec, slot)
        return
    index = spec.index
    # Before the object is built: what its initializer logs names its worker too (``_logs``).
    context = WorkerContext(index, slot.progress)
    enter(context, own_process=False)
    building = time.perf_counter()
    try:
        call = build_worker_callable(spec, own_process=False)
    except BaseException as exc:
        slot.outbox.put(WorkerInitFailed(index, exc))
        return
    # Drop the spec: the shell's cached state, if any, is not this thread's to keep alive.
    del spec
    free_since = time.perf_counter()
    slot.outbox.put(WorkerReady(index, free_since - building, time.monotonic()))
    inbox = slot.inbox
    while True:
        msg = inbox.get()
        # The stop marker queues behind batches already given to this thread; once abandoned, those
        # batches must not start, since nobody will read their results.
        if type(msg) is not RunBatch or slot.abandoned:
            return
        batch_id, items = msg.batch_id, msg.items
        progress = slot.progress
        progress[1] = -1  # first, so a death never pairs this batch with an old position
        progress[0] = batch_id
        context.begin(batch_id, msg.indices)
        t0 = time.perf_counter()
        waited = t0 - free_since
        try:
            results, failures = run_batch(call, items, progress)
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt raised by a task: the thread ends, as a process would.
            cause = f"the task raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            slot.outbox.put(WorkerDied(index, cause, running=(progress[0], progress[1]), error=exc))
            return
        free_since = time.perf_counter()
        slot.outbox.put(BatchDone(index, batch_id, results, failures, free_since - t0, waited=waited))


def _coroutine_thread_main(spec: WorkerSpec, slot: _Slot) -> None:
    """A coroutine worker: its own event loop in this thread (see ``_worker.coroutines``)."""
    index = spec.index
    building = time.perf_counter()

    def next_message() -> tuple[int, Sequence[int], list[Any]] | None:
        msg = slot.inbox.get()
        if type(msg) is not RunBatch or slot.abandoned:
            return None
        # A coroutine worker names an item that overran task_timeout by its input index.
        return msg.batch_id, msg.indices, msg.items

    def done(batch_id: int, indices: Sequence[int], results: list[Any],
             failures: list[tuple[int, BaseException]], elapsed: float) -> None:
        slot.outbox.put(BatchDone(index, batch_id, results, failures, elapsed))

    try:
        serve_coroutines(
            spec,
            own_process=False,
            next_message=next_message,
            ready=lambda: slot.outbox.put(
                WorkerReady(index, time.perf_counter() - building, time.monotonic())
            ),
            init_failed=lambda exc: slot.outbox.put(WorkerInitFailed(index, exc)),
            done=done,
            progress=slot.progress,
            name=f"{threading.current_thread().name}-inbox",
        )
    except BaseException as exc:
        cause = f"the task raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
        slot.outbox.put(WorkerDied(index, cause, running=(slot.progress[0], slot.progress[1]), error=exc))


class ThreadBackend(Backend):
    # A stuck thread can be abandoned (the run goes on) but not killed.
    capabilities: ClassVar[Capabilities] = Capabilities(
        kills_tasks=False, wakes=True, polls=True, coroutines=True
    )

    def __init__(self, specs: list[WorkerSpec], name: str = "mtasklite_like") -> None:
        super().__init__(len(specs))
        self._specs = specs
        self._name = name
        self._outbox: queue.SimpleQueue[Event] = queue.SimpleQueue()
        self._slots: list[_Slot] = []
        self._alive = False

    def start(self) -> None:
        self._alive = True
        self._slots = [self._start_one(spec) for spec in self._specs]

    def _start_one(self, spec: WorkerSpec) -> _Slot:
        slot = _Slot(self._outbox)
        slot.thread = threading.Thread(
            target=_thread_main, args=(spec, slot), name=f"{self._name}-worker-{spec.index}", daemon=True
        )
        slot.thread.start()
        return slot

    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        old = self._slots[worker]
        if kill:
            old.abandon()
        else:
            # The worker is idle, so the stop marker is the next thing it reads.
            old.inbox.put(_STOP)
            if old.thread is not None:
                old.thread.join(1.0)
        self._slots[worker] = self._start_one(self._specs[worker])

    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        self._slots[worker].inbox.put(RunBatch(batch_id, indices, items))
        return 0  # handed over as objects, never serialised

    def recv(self, timeout: float | None) -> list[Event]:
        try:
            first = self._outbox.get(timeout=timeout)
        except queue.Empty:
            return []
        events = self.poll()
        if first is not _WAKE:
            events.insert(0, first)
        return events

    def poll(self) -> list[Event]:
        events: list[Event] = []
        get = self._outbox.get_nowait
        while True:
            try:
                events.append(get())
            except queue.Empty:
                break
        if _WAKE in events:
            events = [e for e in events if e is not _WAKE]
        return events

    def wake(self) -> None:
        self._outbox.put(_WAKE)

    def fractions(self) -> float:
        return sum(fraction_of(slot.progress) for slot in self._slots)

    def stop(self, grace: float) -> None:
        if not self._alive:
            return
        self._alive = False
        slots, self._slots = self._slots, []
        for slot in slots:
            slot.abandon()
        deadline = time.monotonic() + max(grace, 0.0)
        for slot in slots:
            if slot.thread is not None:
                slot.thread.join(max(0.0, deadline - time.monotonic()))
        # Threads still running are abandoned mid-task (see the module docstring).

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def threads(self) -> list[threading.Thread | None]:
        """The current worker threads, in worker order."""
        return [s.thread for s in self._slots]
