"""The in-caller backend (``n_jobs=1``): items run in the caller's thread, one at a time.

Nothing is pickled, no thread or process exists, and a debugger or a profiler sees the task's
frames directly. Results and exceptions go through the same front as the other backends, so the
exception modes, ordering and laziness behave exactly as with real workers.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

from .._worker.context import SLOTS, WorkerContext, enter, leave
from .._worker.progress import fraction_of
from .._worker.run import WorkerSpec, build_worker_callable, run_batch
from .base import Backend, BatchDone, Capabilities, Event, WorkerInitFailed, WorkerReady

__all__ = ["InlineBackend"]

_monotonic = time.monotonic


class InlineBackend(Backend):
    # Tasks run in the caller: one at a time, and nothing can interrupt them.
    capabilities: ClassVar[Capabilities] = Capabilities(
        batches=False, interrupts_tasks=False, kills_tasks=False, wakes=True
    )

    def __init__(self, spec: WorkerSpec) -> None:
        super().__init__(1)
        self._spec = spec
        self._call: Callable[[Any], Any] | None = None
        self._queue: deque[tuple[int, Sequence[int], list[Any]]] = deque()
        #: what the task's code sees of its worker (``_worker.context``), in the caller's thread
        self._context = WorkerContext(0, [-1] * SLOTS)
        self._context.tick = self._tick  # a long task's progress reports keep the caller's bar moving
        self._next_tick = 0.0
        self._events: list[Event] = []
        self._alive = False
        self._woken = threading.Event()
        self._free_since = 0.0  # when the caller last finished an item for this worker

    def start(self) -> None:
        self._alive = True
        building = time.perf_counter()
        try:
            self._call = build_worker_callable(self._spec, own_process=False)
        except Exception as exc:
            self._events.append(WorkerInitFailed(0, exc))
        else:
            self._free_since = time.perf_counter()
            self._events.append(WorkerReady(0, self._free_since - building, time.monotonic()))

    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        self._queue.append((batch_id, indices, items))
        return 0

    def recv(self, timeout: float | None) -> list[Event]:
        if self._events:
            events, self._events = self._events, []
            return events
        if not self._queue or self._call is None:
            # Nothing to run: wait for input read in the background (see Backend.wake).
            if timeout is None or timeout > 0:
                self._woken.wait(timeout)
            self._woken.clear()
            return []
        batch_id, indices, items = self._queue.popleft()
        context = self._context
        context.begin(batch_id, indices)
        slots = context.slots
        slots[1] = -1
        slots[0] = batch_id
        enter(context, own_process=False)
        t0 = time.perf_counter()
        try:
            results, failures = run_batch(self._call, items, slots)
        finally:
            leave(own_process=False)
        waited, self._free_since = t0 - self._free_since, time.perf_counter()
        return [BatchDone(0, batch_id, results, failures, self._free_since - t0, waited=waited)]

    def wake(self) -> None:
        self._woken.set()

    def fractions(self) -> float:
        return fraction_of(self._context.slots)

    def _tick(self) -> None:
        """A task reported progress: the run's heartbeat, if one is due (see ``task_heartbeat``).
        Looked at every 20 ms at most, since a task may report in a tight loop."""
        now = _monotonic()
        if now < self._next_tick:
            return
        self._next_tick = now + 0.02
        ref = self.task_heartbeat
        beat = None if ref is None else ref()
        if beat is not None:
            beat()

    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        self._call = None
        self._queue.clear()
        self.start()

    def stop(self, grace: float) -> None:
        self._alive = False
        self._queue.clear()
        # Break a reference to the user's object so its resources are released with the pool.
        self._call = None

    @property
    def alive(self) -> bool:
        return self._alive
