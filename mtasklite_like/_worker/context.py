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
from collections.abc import Callable, MutableSequence, Sequence

__all__ = ["QUICK", "RUNNING", "SLOTS", "WorkerContext", "current", "enter", "leave"]

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

    __slots__ = ("batches", "fraction_sum", "fractions", "slots", "tagged", "tick", "worker")

    def __init__(self, worker: int, slots: MutableSequence[int]) -> None:
        self.worker = worker
        #: shared with the caller (see the module docstring); at least :data:`SLOTS` long
        self.slots = slots
        #: input indices of the batches being run, by batch id
        self.batches: dict[int, Sequence[int]] = {}
        #: a coroutine worker's progress reported from its running items, in millionths, by
        #: ``(batch id, position)``, and their sum; None in a worker that runs one item at a time
        #: (see ``_worker.progress``)
        self.fractions: dict[tuple[int, int], int] | None = None
        self.fraction_sum = 0
        #: the position, in the batch begun last, of the item whose progress ``slots[2:4]`` name
        #: (-1: none yet), so that a report of the same item writes the fraction alone
        self.tagged = -1
        #: called after each progress report when the task runs in the caller's thread (``n_jobs=1``),
        #: which cannot call the run's heartbeat meanwhile; None elsewhere
        self.tick: Callable[[], None] | None = None

    def begin(self, batch_id: int, indices: Sequence[int]) -> None:
        """A plain worker starts a batch (it runs one at a time: the previous one is over)."""
        self.batches = {batch_id: indices}
        self.tagged = -1

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


class _ThreadContext(threading.local):
    #: the calling thread's context; a class default, so that a thread without one finds None at
    #: the cost of an attribute lookup (``getattr`` with a default raises and catches inside)
    context: WorkerContext | None = None


_process: WorkerContext | None = None
_threads = _ThreadContext()
#: the same context again, where a context variable reaches the calling code (the thread that
#: entered it, and what it starts with a copy of its context): the quickest lookup, for
#: ``_worker.progress``, which falls back on the two above (the items of a coroutine worker)
QUICK: contextvars.ContextVar[WorkerContext | None] = contextvars.ContextVar(
    "mtasklite_like_worker", default=None
)


def enter(context: WorkerContext, *, own_process: bool) -> None:
    """Make ``context`` the one :func:`current` finds: for the whole process (a process worker, a
    Ray actor) or for the calling thread only (a thread worker, the caller under ``n_jobs=1``)."""
    global _process
    if own_process:
        _process = context
        # A process forked by a thread that ran a worker (the caller under ``n_jobs=1``, say) starts
        # with that thread's context: it is not this process's.
        _threads.context = None
    else:
        _threads.context = context
    QUICK.set(context)


def leave(*, own_process: bool) -> None:
    """Forget the context :func:`enter` set (a thread worker or the caller's run is over)."""
    global _process
    if own_process:
        _process = None
    else:
        _threads.context = None
    QUICK.set(None)


def current() -> WorkerContext | None:
    """The context of the worker running the calling code, or None outside workers."""
    context = _threads.context
    return context if context is not None else _process
