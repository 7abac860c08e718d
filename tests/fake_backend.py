"""A scripted, simulated backend: the engine's logic tested deterministically, in milliseconds.

Workers are simulated in the caller on a virtual clock that only moves inside ``recv``. Each item
runs the worker's real callable (so exception modes see real exceptions), and the item itself says
what else happens when it runs, through the attributes of a :class:`Step`:

- ``seconds``: how long it takes (virtual time; ``math.inf`` hangs);
- ``dies``: on how many of its attempts the worker dies while running it;
- ``dies_after``: on how many of its attempts the worker dies just after it finished, before it
  starts the next item (when it is the last of its batch, the batch's results are delivered
  first: a death between two batches);
- ``hangs``: on how many of its attempts it hangs (then it takes ``seconds`` as usual);
- ``unreadable``: the worker cannot unpickle it: any batch that holds it is reported as
  ``BatchUnreadable`` without running, as the process backend reports it;
- ``grows``: bytes the worker's own memory grows by when it runs the item. A worker with a memory
  limit (``max_worker_memory``) that is over it after an item stops there, as a process worker
  does: it answers the batch with the results it has, then reports ``WorkerRetired`` and runs
  nothing more.

Like the process backend, a batch is reported when all of it has run, so results of items that
ran before a death in the same batch are lost with the worker, and ``WorkerDied.running`` names
the item that was running. Backends are registered as ``'fake'`` (interrupts and kills tasks) and
``'fake-threads'`` (tasks can only be abandoned).

Input read in a background thread is real, not simulated: ``wake()`` ends the current ``recv`` at
the same virtual instant. When nothing is due before a wait's end, ``recv`` first waits up to
``input_wait`` real seconds for such a wake-up (0 by default: virtual time jumps at once).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from mtasklite_like._backends import register_backend
from mtasklite_like._backends.base import (
    Backend,
    BatchDone,
    BatchUnreadable,
    Capabilities,
    Event,
    WorkerDied,
    WorkerInitFailed,
    WorkerReady,
    WorkerRetired,
)
from mtasklite_like._worker.run import WorkerSpec, build_worker_callable

#: default virtual seconds per item
ITEM_SECONDS = 0.001


@dataclass(slots=True)
class Step:
    """One scripted item: its value, and what happens when it runs."""

    value: Any
    seconds: float = ITEM_SECONDS
    raises: BaseException | None = None
    dies: int = 0
    dies_after: int = 0
    hangs: int = 0
    unreadable: bool = False
    grows: int = 0
    attempts: int = 0


def run_step(step: Any) -> Any:
    """The task function for scripted items: the value, or the scripted exception."""
    if isinstance(step, Step):
        if step.raises is not None:
            raise step.raises
        return step.value
    return step


class _Worker:
    def __init__(self, spec: WorkerSpec, now: float, init_seconds: float) -> None:
        self.call: Any = None
        self.init_error: BaseException | None = None
        try:
            self.call = build_worker_callable(spec, own_process=False)
        except Exception as exc:
            self.init_error = exc
        self.ready_at = now + init_seconds
        self.announced = False
        self.queue: deque[tuple[int, list[Any]]] = deque()
        self.free_at = self.ready_at  # when the worker can start its next batch
        self.items_run = 0
        self.limit = spec.memory_limit
        self.memory = 0  # its own memory, grown by the items it ran
        self.retired = False


class FakeBackend(Backend):
    """Simulated workers on a virtual clock (see the module docstring)."""

    #: every backend made, newest last (tests inspect them)
    made: ClassVar[list[FakeBackend]] = []
    #: virtual seconds each worker takes to start
    init_seconds: ClassVar[float] = 0.0
    #: real seconds ``recv`` waits for a wake-up before letting virtual time jump
    input_wait: ClassVar[float] = 0.0
    capabilities: ClassVar[Capabilities] = Capabilities(wakes=True, retires=True)

    def __init__(self, specs: list[WorkerSpec]) -> None:
        super().__init__(len(specs))
        self._specs = specs
        self.now = 0.0
        self.clock = self._clock  # type: ignore[method-assign]
        self._workers: list[_Worker] = []
        self._alive = False
        self.replaced: list[tuple[int, bool]] = []  # (worker, kill) per replacement
        self.sent: list[tuple[int, list[int]]] = []  # (worker, input indices) per message
        self.wakes = 0
        self.retirements = 0
        self._woken = threading.Event()
        FakeBackend.made.append(self)

    def _clock(self) -> float:
        return self.now

    def start(self) -> None:
        self._alive = True
        self._workers = [_Worker(s, self.now, self.init_seconds) for s in self._specs]

    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        self.sent.append((worker, list(indices)))
        w = self._workers[worker]
        if not w.queue:
            w.free_at = max(w.free_at, self.now)
        w.queue.append((batch_id, items))
        return 0

    def _next(self, w: _Worker) -> tuple[float, Event | None, bool]:
        """When this worker next reports, what, and whether it then dies."""
        index = self._workers.index(w)
        if not w.announced:
            if w.init_error is not None:
                return w.ready_at, WorkerInitFailed(index, w.init_error), False
            return w.ready_at, WorkerReady(index), False
        if not w.queue:
            return math.inf, None, False
        batch_id, items = w.queue[0]
        t = w.free_at
        bad = [x for x in items if getattr(x, "unreadable", False)]
        if bad:
            return t, BatchUnreadable(index, batch_id, ValueError(f"cannot unpickle {bad[0].value!r}")), False
        for pos, item in enumerate(items):
            seconds = getattr(item, "seconds", ITEM_SECONDS)
            attempt = getattr(item, "attempts", 0)
            if attempt < getattr(item, "hangs", 0):
                seconds = math.inf
            if attempt < getattr(item, "dies", 0):
                return t, WorkerDied(index, "scripted death", running=(batch_id, pos)), True
            t += seconds
            if attempt < getattr(item, "dies_after", 0):
                # Dead after this item: like the process backend, the shared position still names
                # it (the last item started); after the last one the batch was delivered first.
                return t, WorkerDied(index, "scripted death after an item", running=(batch_id, pos)), True
        return t, None, False

    def _run(self, w: _Worker, dies: bool) -> Event | None:
        """Run the head batch of ``w`` for real (values, exceptions, attempt counts)."""
        assert not w.retired, "a retired worker ran a batch"
        batch_id, items = w.queue.popleft()
        index = self._workers.index(w)
        results: list[Any] = []
        failures: list[tuple[int, BaseException]] = []
        elapsed = 0.0
        for pos, item in enumerate(items):
            dies_after = False
            if isinstance(item, Step):
                item.attempts += 1
                if dies and item.attempts <= item.dies:
                    return None
                dies_after = dies and item.attempts <= item.dies_after
                elapsed += item.seconds
            else:
                elapsed += ITEM_SECONDS
            w.items_run += 1
            try:
                results.append(w.call(item))
            except Exception as exc:
                results.append(None)
                failures.append((pos, exc))
            if dies_after:
                if pos < len(items) - 1:
                    return None  # the results of the batch die with the worker
                break
            w.memory += getattr(item, "grows", 0)
            if w.limit is not None and w.memory > w.limit:
                w.retired = True  # stops after the item that crossed the limit
                break
        w.free_at += elapsed
        return BatchDone(index, batch_id, results, failures, elapsed)

    def wake(self) -> None:
        self._woken.set()

    def recv(self, timeout: float | None) -> list[Event]:
        if self._woken.is_set():  # input arrived: the engine looks at it at this same instant
            self._woken.clear()
            self.wakes += 1
            return []
        horizon = self.now + (math.inf if timeout is None else timeout)
        best: tuple[float, _Worker, Event | None, bool] | None = None
        for w in self._workers:
            t, event, dies = self._next(w)
            if best is None or t < best[0]:
                best = (t, w, event, dies)
        if best is None or best[0] > horizon:
            if self.input_wait and self._woken.wait(self.input_wait):
                self._woken.clear()
                self.wakes += 1
                return []
            if math.isinf(horizon):
                raise AssertionError("the engine waits forever on a backend with nothing to report")
            # Time always moves, as a real clock does, even for a wait too short to change a float.
            self.now = max(horizon, math.nextafter(self.now, math.inf))
            return []
        t, w, event, dies = best
        self.now = max(self.now, t)
        if isinstance(event, BatchUnreadable):
            w.queue.popleft()
            return [event]
        if not w.announced:
            w.announced = True
            if isinstance(event, WorkerInitFailed):
                w.ready_at = w.free_at = math.inf
            else:
                w.free_at = max(w.free_at, self.now)
            return [event] if event is not None else []
        done = self._run(w, dies)
        if w.retired:
            w.queue.clear()
            w.ready_at = w.free_at = math.inf  # ended: reports nothing more
            self.retirements += 1
            assert done is not None
            return [done, WorkerRetired(self._workers.index(w), w.memory)]
        if dies:
            w.queue.clear()
            w.ready_at = w.free_at = math.inf  # dead: reports nothing more
            w.announced = True
            assert event is not None
            return [done, event] if done is not None else [event]
        return [done] if done is not None else []

    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        self.replaced.append((worker, kill))
        old = self._workers[worker]
        if kill and old.queue and old.announced and self.now >= old.free_at:
            # The head batch had started: its items up to the stuck one have had an attempt.
            for item in old.queue[0][1]:
                if isinstance(item, Step):
                    item.attempts += 1
                    if item.attempts <= item.hangs:
                        break
        self._workers[worker] = _Worker(self._specs[worker], self.now, self.init_seconds)

    def stop(self, grace: float) -> None:
        self._alive = False

    @property
    def alive(self) -> bool:
        return self._alive

    def items_run(self) -> int:
        return sum(w.items_run for w in self._workers)


class FakeThreadBackend(FakeBackend):
    """The same, for a backend that can abandon a stuck task but not kill it."""

    capabilities: ClassVar[Capabilities] = Capabilities(kills_tasks=False, wakes=True, retires=True)


register_backend("fake", lambda specs, start_method: FakeBackend(specs))
register_backend("fake-threads", lambda specs, start_method: FakeThreadBackend(specs))
