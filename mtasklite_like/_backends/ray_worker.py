"""What each Ray actor runs: it builds the worker's object in its constructor, then runs batches.

The class here is plain Python; the backend turns it into a Ray actor class (``ray.remote``) when
it first needs one, so importing this module never imports Ray. Every method returns a message
(``messages``: ``ActorReady`` or ``InitFailed``, ``ActorDone`` or ``ActorDied``) that the caller
dispatches on (see ``ray.py``); nothing is raised to Ray on purpose, so Ray's error wrappers are
met only when the actor itself dies.

- *Construction* never raises: an exception in the initializer, the environment or the object's
  ``__init__`` is kept, with its traceback text, and :meth:`RayWorker.ready` reports it, so it
  reaches the caller as the original exception (a ``WorkerInitError`` whose cause it is).
- *Results and exceptions* are checked before they are returned: a result or an exception that
  cannot be pickled fails its item alone (``TaskPicklingError``) instead of failing the call.
  The same pickling pass, with large buffers left out of band (not copied), measures the size of
  what is returned.
- *Which item was running.* The actor writes the batch and position of each item it starts into
  a small shared-memory segment the caller made for it. When the actor dies, the caller reads
  it, so the death is reported against that item only. An actor on another machine cannot map
  the segment: there the batch it was running is known, not the position.
- *Progress from inside a task* (``mtasklite_like.progress``) goes into the same segment, where
  the caller reads it (``RayBackend.fractions``); an actor on another machine reports none.
- ``SystemExit`` or ``KeyboardInterrupt`` raised by a task ends the worker, as it would end a
  process: the actor reports it against the item, and the caller replaces the actor.
- *Log records* (``forward_logs``): records emitted in the actor, and its warnings, are kept and
  returned with the answer of the call that follows (``ActorReady``, ``ActorDone``, ``ActorDied``),
  so they reach the caller with their batch; those of an actor that dies mid-batch are lost.
- *A memory limit* (``max_worker_memory``): the actor measures itself as a process worker does
  (``_memory.limit``); once over, it answers the batch with the items it ran and says it retires
  (``ActorDone.retire``). Calls queued behind return at once without running anything (the caller
  has given their items to other workers), and the caller replaces the actor.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import time
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import TaskPicklingError
from .._logs.forward import CallerLogging, Held, forward
from .._memory.limit import OwnLimit
from .._worker.context import SLOTS, WorkerContext, enter
from .._worker.run import (
    WorkerSpec,
    build_worker_callable,
    fail_unpicklable,
    pack_exception,
    run_batch,
    run_batch_limited,
)
from .messages import ActorDied, ActorDone, ActorReady, InitFailed

__all__ = ["PROGRESS_SIZE", "RayWorker", "Unsendable", "measure"]

#: the progress segment: the running batch id and the position in it, then progress reported
#: from inside tasks (int64 each; see ``_worker.context``)
PROGRESS_SIZE = 8 * SLOTS


class Unsendable:
    """Stands in a batch for an item that could not be pickled; the worker fails that item."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def measure(obj: Any) -> int:
    """Bytes ``obj`` pickles to, large buffers (NumPy arrays, ...) counted but not copied.

    Raises when neither the standard pickler nor cloudpickle (what Ray uses) can pickle it.
    """
    size = 0

    def count(buf: pickle.PickleBuffer) -> bool:
        nonlocal size
        size += buf.raw().nbytes
        return False  # out of band: the pickle keeps a reference, the data is not copied

    try:
        data = pickle.dumps(obj, 5, buffer_callback=count)
    except Exception:
        size = 0
        from ray import cloudpickle  # only on the fallback path, and only inside Ray

        data = cloudpickle.dumps(obj, 5, buffer_callback=count)  # type: ignore[no-untyped-call]
    return len(data) + size


class _Progress:
    """The caller's progress segment for this actor, mapped here: ``[0]`` the running batch id,
    ``[1]`` its position.

    The caller creates the segment (``multiprocessing.shared_memory``, so that its resource tracker
    removes it even if the caller is SIGKILLed) and removes it when the actor goes; the actor only
    writes into it. On another machine the name does not exist and the actor runs without one.
    """

    def __init__(self, name: str) -> None:
        fd = os.open(os.path.join("/dev/shm", name), os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, PROGRESS_SIZE)
        finally:
            os.close(fd)
        self.view = memoryview(self._map).cast("q")

    def close(self) -> None:
        self.view.release()
        self._map.close()


class RayWorker:
    """One worker: its object is built here, once; each call runs one batch on it."""

    def __init__(
        self, spec: WorkerSpec, progress: str | None = None, logs: CallerLogging | None = None
    ) -> None:
        self._index = spec.index
        self._call: Callable[[Any], Any] | None = None
        self._progress: _Progress | None = None
        self._positions: Any = [-1] * SLOTS
        #: why the object could not be built (None: it was)
        self._init_failed: InitFailed | None = None
        #: log records kept for the next answer (``forward_logs``; None: not forwarded)
        self._logs: Held | None = None
        if logs is not None:  # before the initializer: its records are forwarded too
            self._logs = Held(spec.index)
            forward(logs, spec.index, self._logs.put, detach=False)
        building = time.perf_counter()
        self._limit = None if spec.memory_limit is None else OwnLimit(spec.memory_limit)
        #: set once the actor is over its memory limit: (its memory, its peak)
        self._retired: tuple[int, int | None] | None = None
        try:
            self._call = build_worker_callable(spec, own_process=True)
        except BaseException as exc:
            self._init_failed = InitFailed(*pack_exception(exc, f"worker {spec.index}"))
            return
        if progress is not None:
            with contextlib.suppress(OSError, ValueError):  # not on the caller's machine
                self._progress = _Progress(progress)
                self._positions = self._progress.view
        self._context = WorkerContext(spec.index, self._positions)
        enter(self._context, own_process=True)
        self._free_since = time.perf_counter()
        self._init_s = self._free_since - building

    def ready(self) -> ActorReady | InitFailed:
        """``ActorReady`` (this process's pid, and whether it writes the caller's progress segment),
        or ``InitFailed`` with the exception that kept the object from being built."""
        if self._init_failed is not None:
            return self._init_failed
        return ActorReady(os.getpid(), self._progress is not None, self._init_s, logs=self._take_logs())

    def run(
        self, batch_id: int, indices: Sequence[int], items: list[Any], unsendable: bool
    ) -> ActorDone | ActorDied:
        """Run one batch: ``ActorDone`` (results, failures as ``(position, exception, traceback
        text)``, seconds, result bytes); or ``ActorDied`` when a task raised ``SystemExit``,
        ``KeyboardInterrupt`` or another ``BaseException``."""
        call = self._call
        if call is None:  # never sent work before ready() answered ActorReady; defensive
            raise RuntimeError("this worker failed to start")
        if self._retired is not None:
            return ActorDone([], [], 0.0, 0, self._retired, logs=self._take_logs())  # its items run elsewhere
        if unsendable:
            call = _failing_unsendable(call)
        progress = self._positions
        progress[1] = -1  # first: a death in between must not pair this batch with an old position
        progress[0] = batch_id
        self._context.begin(batch_id, indices)
        t0 = time.perf_counter()
        waited = t0 - self._free_since
        over = None
        try:
            if self._limit is None:
                results, failures = run_batch(call, items, progress)
            else:
                results, failures, over = run_batch_limited(call, items, progress, self._limit)
        except BaseException as exc:
            cause = f"the task raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            position = progress[1]
            where = f"item #{indices[position]}" if 0 <= position < len(indices) else "a task"
            return ActorDied(position, cause, *pack_exception(exc, where), logs=self._take_logs())
        elapsed = time.perf_counter() - t0
        packed = [(pos, *pack_exception(exc, f"item #{indices[pos]}")) for pos, exc in failures]
        try:
            nbytes = measure(results) if not packed else measure((results, packed))
        except Exception:
            nbytes = _drop_unpicklable(indices, results, packed)
        if over is not None and self._limit is not None:
            self._retired = (over, self._limit.peak())
        self._free_since = time.perf_counter()
        return ActorDone(results, packed, elapsed, nbytes, self._retired, waited, logs=self._take_logs())

    def _take_logs(self) -> list[tuple[Any, ...]]:
        """The log records emitted since the last answer, which this answer carries."""
        return [] if self._logs is None else self._logs.take()

    def close(self) -> None:
        """Unmap the progress segment (called when the pool stops this actor politely; the caller
        removes the segment)."""
        progress, self._progress = self._progress, None
        if progress is not None:
            self._positions = [-1] * SLOTS
            self._context.slots = self._positions
            with contextlib.suppress(Exception):
                progress.close()


def _drop_unpicklable(
    indices: Sequence[int], results: list[Any], packed: list[tuple[int, BaseException, str]]
) -> int:
    """Fail, in place, the items whose result cannot be pickled; return the size of the rest."""
    fail_unpicklable(indices, results, packed, measure)
    return measure((results, packed))


def _failing_unsendable(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(item: Any) -> Any:
        if type(item) is Unsendable:
            raise TaskPicklingError(item.message)
        return call(item)

    return checked
