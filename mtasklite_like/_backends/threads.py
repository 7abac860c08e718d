"""The thread backend: workers are daemon threads of the caller's process.

Items and results are handed over as Python objects through in-memory queues, never pickled.
Each worker thread builds its own object from its spec, so a ``@delayed_init`` shell passed to
several workers still gives one object per thread.

A thread cannot be killed: when a run is abandoned, a thread busy in a long task finishes that
task in the background and its result is dropped (it is a daemon, so it never blocks exit).
"""

from __future__ import annotations

import queue
import threading
import time
from typing import Any

from .._worker import WorkerSpec, build_worker_callable, run_batch
from .base import Backend, BatchDone, Event, WorkerDied, WorkerInitFailed

__all__ = ["ThreadBackend"]

_STOP = None


def _thread_main(
    spec: WorkerSpec, inbox: queue.SimpleQueue, outbox: queue.SimpleQueue, stopping: threading.Event
) -> None:
    index = spec.index
    try:
        call = build_worker_callable(spec, own_process=False)
    except BaseException as exc:
        outbox.put(WorkerInitFailed(index, exc))
        return
    # Drop the spec: the shell's cached state, if any, is not this thread's to keep alive.
    del spec
    while True:
        msg = inbox.get()
        # The stop marker queues behind batches already given to this thread; when the run is
        # abandoned those batches must not start, since nobody will read their results.
        if msg is _STOP or stopping.is_set():
            return
        batch_id, items = msg
        t0 = time.perf_counter()
        try:
            results, failures = run_batch(call, items)
        except BaseException as exc:
            # SystemExit or KeyboardInterrupt raised by a task: the thread ends, as a process would.
            outbox.put(WorkerDied(index, None, None, f"the task raised {type(exc).__name__}: {exc}"))
            return
        outbox.put(BatchDone(index, batch_id, results, failures, time.perf_counter() - t0))


class ThreadBackend(Backend):
    def __init__(self, specs: list[WorkerSpec], name: str = "mtasklite_like") -> None:
        super().__init__(len(specs))
        self._specs = specs
        self._name = name
        self._outbox: queue.SimpleQueue = queue.SimpleQueue()
        self._inboxes: list[queue.SimpleQueue] = []
        self._threads: list[threading.Thread] = []
        self._stopping = threading.Event()
        self._alive = False

    def start(self) -> None:
        self._alive = True
        for spec in self._specs:
            inbox, thread = self._start_one(spec)
            self._inboxes.append(inbox)
            self._threads.append(thread)

    def _start_one(self, spec: WorkerSpec) -> tuple[queue.SimpleQueue, threading.Thread]:
        inbox: queue.SimpleQueue = queue.SimpleQueue()
        thread = threading.Thread(
            target=_thread_main,
            args=(spec, inbox, self._outbox, self._stopping),
            name=f"{self._name}-worker-{spec.index}",
            daemon=True,
        )
        thread.start()
        return inbox, thread

    def replace_worker(self, worker: int) -> None:
        # The worker is idle, so the stop marker is the next thing it reads.
        self._inboxes[worker].put(_STOP)
        self._threads[worker].join(1.0)
        self._inboxes[worker], self._threads[worker] = self._start_one(self._specs[worker])

    def send(self, worker: int, batch_id: int, first_index: int, items: list[Any]) -> None:
        self._inboxes[worker].put((batch_id, items))

    def recv(self, timeout: float | None) -> list[Event]:
        try:
            events = [self._outbox.get(timeout=timeout)]
        except queue.Empty:
            return []
        get = self._outbox.get_nowait
        while True:
            try:
                events.append(get())
            except queue.Empty:
                return events

    def stop(self, grace: float) -> None:
        if not self._alive:
            return
        self._alive = False
        self._stopping.set()
        for inbox in self._inboxes:
            inbox.put(_STOP)
        deadline = time.monotonic() + max(grace, 0.0)
        for t in self._threads:
            t.join(max(0.0, deadline - time.monotonic()))
        # Threads still running are abandoned mid-task (see the module docstring); everything
        # they could still report goes into a queue nobody reads.
        self._threads.clear()
        self._inboxes.clear()
        self._outbox = queue.SimpleQueue()

    @property
    def alive(self) -> bool:
        return self._alive
