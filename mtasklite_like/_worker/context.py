"""Where code running in a worker finds out which worker it is in and which input item it runs.

Each worker loop (a process, a thread, a Ray actor, the caller itself under ``n_jobs=1``) makes
one :class:`WorkerContext` when it starts and tells it, per batch, the batch's input indices (one
dict assignment per batch, nothing per item). Which item of the batch runs is read from the
*slots* the backend already shares with the caller for death reports (``slots[0]`` the batch id,
``slots[1]`` the position, written as each item starts), so knowing the item costs nothing more.
The slots after those two belong to progress reported from inside a task (``_worker.progress``).

A coroutine worker runs several items at once on one thread: each item's coroutine carries its own
``(batch id, position)`` in a context variable, set when its task is created, which
:meth:`WorkerContext.item` prefers to the shared slots.

:func:`current` finds the context of the code that calls it: the item's (coroutines), else the
thread's (thread workers, and the caller under ``n_jobs=1``), else the process's (process workers,
Ray actors); None outside any worker.
"""

from __future__ import annotations

import contextvars
import threading
from collections.abc import MutableSequence, Sequence

__all__ = ["RUNNING", "SLOTS", "WorkerContext", "current", "enter", "leave"]

#: how many integers a worker shares with the caller: batch id and position of the running item
#: (death reports), then the batch id, position and fraction (in millionths) of the last progress
#: reported from inside a task (``_worker.progress``)
SLOTS = 5

#: ``(batch id, position)`` of the item whose coroutine runs, in a coroutine worker
RUNNING: contextvars.ContextVar[tuple[int, int] | None] = contextvars.ContextVar(
    "mtasklite_like_running_item", default=None
)


class WorkerContext:
    """One worker's identity and the input indices of the batches it runs."""

    __slots__ = ("batches", "slots", "worker")

    def __init__(self, worker: int, slots: MutableSequence[int]) -> None:
        self.worker = worker
        #: shared with the caller (see the module docstring); at least :data:`SLOTS` long
        self.slots = slots
        #: input indices of the batches being run, by batch id
        self.batches: dict[int, Sequence[int]] = {}

    def begin(self, batch_id: int, indices: Sequence[int]) -> None:
        """A plain worker starts a batch (it runs one at a time: the previous one is over)."""
        self.batches = {batch_id: indices}

    def running(self) -> tuple[int, int]:
        """``(batch id, position)`` of the item the calling code runs (-1 when none)."""
        item = RUNNING.get()
        if item is not None:
            return item
        slots = self.slots
        return slots[0], slots[1]

    def item(self) -> int | None:
        """The input position of the item the calling code runs, or None (between items)."""
        batch_id, position = self.running()
        indices = self.batches.get(batch_id)
        if indices is None or not 0 <= position < len(indices):
            return None
        return indices[position]


_process: WorkerContext | None = None
_threads = threading.local()


def enter(context: WorkerContext, *, own_process: bool) -> None:
    """Make ``context`` the one :func:`current` finds: for the whole process (a process worker, a
    Ray actor) or for the calling thread only (a thread worker, the caller under ``n_jobs=1``)."""
    global _process
    if own_process:
        _process = context
    else:
        _threads.context = context


def leave(*, own_process: bool) -> None:
    """Forget the context :func:`enter` set (a thread worker or the caller's run is over)."""
    global _process
    if own_process:
        _process = None
    else:
        _threads.context = None


def current() -> WorkerContext | None:
    """The context of the worker running the calling code, or None outside workers."""
    context: WorkerContext | None = getattr(_threads, "context", None)
    return context if context is not None else _process
