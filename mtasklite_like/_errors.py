"""The package's exception types.

Every error the pool raises on its own account derives from :class:`MtaskliteLikeError`, so callers
can tell the pool's complaints from the exceptions their own tasks raise.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

__all__ = [
    "DeferredExceptions",
    "JournalError",
    "JournalMismatchError",
    "JournalPicklingError",
    "JournalWarning",
    "MemoryPressureError",
    "MemoryPressureWarning",
    "MtaskliteLikeError",
    "RemoteTraceback",
    "TaskPicklingError",
    "TaskTimeoutError",
    "WorkerDiedError",
    "WorkerInitError",
    "WorkerMemoryError",
]


def name_item(exc: BaseException, index: int) -> None:
    """Mark ``exc`` as the failure of input item ``index`` (its 0-based position in the input).

    Every exception a run yields or raises for an item goes through here: task exceptions, results
    or items that could not be unpickled, deaths and timeouts. The position is set as the
    attribute ``input_index`` (readable on every Python version) and, on Python 3.11+, added as a
    note that reads ``input item #3``, printed under the traceback. An exception object that does
    not take attributes keeps only the note.
    """
    old = getattr(exc, "input_index", None)
    if old == index:
        return  # already named (the same object failed twice, say): one note is enough
    try:
        exc.input_index = index  # type: ignore[attr-defined]
    except AttributeError:
        pass
    note = f"input item #{index}"
    notes = getattr(exc, "__notes__", None)
    if old is not None and isinstance(notes, list) and f"input item #{old}" in notes:
        # Renamed by a layer whose input is not the engine's (a resumed journaled run feeds the
        # engine only unfinished items): the position in the caller's input replaces the old one.
        notes[notes.index(f"input item #{old}")] = note
    elif hasattr(exc, "add_note"):
        exc.add_note(note)


class MtaskliteLikeError(Exception):
    """Base class of the errors raised by the pool itself."""


class RemoteTraceback(Exception):
    """Carries the formatted traceback of an exception raised in another process.

    It is attached as ``__cause__`` of the re-raised exception, so the worker's traceback is printed
    above the caller's one ("The above exception was the direct cause of ...").
    """

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


class WorkerInitError(MtaskliteLikeError):
    """A worker failed to start: its ``@delayed_init`` object, initializer or environment raised.

    ``__cause__`` is the original exception (for process workers, with the worker's traceback as its
    own ``__cause__``). Raised from the result iterator whatever the exception behaviour, because no
    item can be processed by a worker that does not exist.
    """

    def __init__(self, message: str, worker_index: int | None = None) -> None:
        super().__init__(message)
        self.worker_index = worker_index


class WorkerDiedError(MtaskliteLikeError):
    """A worker process ended while it held items (a crash, ``os._exit``, a signal, the OOM killer).

    Attributes say which worker, its pid, how it ended, and the input indices and items it held.
    """

    def __init__(
        self,
        message: str,
        *,
        worker_index: int | None = None,
        pid: int | None = None,
        exitcode: int | None = None,
        indices: Sequence[int] = (),
        items: Sequence[Any] = (),
    ) -> None:
        super().__init__(message)
        self.worker_index = worker_index
        self.pid = pid
        self.exitcode = exitcode
        self.indices = list(indices)
        self.items = list(items)


class WorkerMemoryError(WorkerDiedError):
    """The item made its worker cross ``kill_worker_memory``: the pool killed the worker mid-task
    (before the kernel's OOM killer would choose a victim) and replaced it. Retries apply.

    ``memory`` is the worker's own memory measured, ``limit`` the ceiling, both in bytes.
    """

    def __init__(self, message: str, *, memory: int, limit: int, **worker: Any) -> None:
        super().__init__(message, **worker)
        self.memory = memory
        self.limit = limit


class MemoryPressureError(MtaskliteLikeError):
    """The memory available to the pool stayed below ``min_available_memory`` with no work in
    flight for ``memory_pause_timeout`` seconds: nothing the run could do would free it."""


class MemoryPressureWarning(RuntimeWarning):
    """The run paused (or resumed) reading input and starting batches, because the memory
    available to the pool went below (or came back above) ``min_available_memory``. Issued once
    per run for the pause, once for the resumption (a ``RuntimeWarning``: shown by default)."""


class TaskTimeoutError(MtaskliteLikeError, TimeoutError):
    """An item ran longer than ``task_timeout``; its worker was killed (a thread: abandoned) and
    replaced. Also an instance of the built-in ``TimeoutError``."""


class TaskPicklingError(MtaskliteLikeError, TypeError):
    """An item, a result or an exception could not be pickled to cross between processes.

    Only the item concerned gets this error; the rest of the run is unaffected. Also an instance of
    the built-in ``TypeError``, which is what the standard library raises for an object that cannot
    be pickled (``cannot pickle '_thread.lock' object``), so ``except TypeError:`` written for it
    keeps working.
    """


class DeferredExceptions(MtaskliteLikeError):
    """Raised at the end of a run in ``'deferred'`` mode when tasks failed.

    ``.args`` holds the task exceptions in the order their failed results were yielded: input order
    for an ordered run, completion order for an unordered one (``is_unordered=True``). Code written
    for ``Exception(*excs)`` keeps working; ``.exceptions`` is the same list.
    """

    def __init__(self, *exceptions: BaseException) -> None:
        super().__init__(*exceptions)

    @property
    def exceptions(self) -> list[BaseException]:
        """The collected exceptions, in the order they were yielded (the same as ``.args``)."""
        return list(self.args)

    def __str__(self) -> str:
        n = len(self.args)
        kinds = sorted({type(e).__name__ for e in self.args})
        first = f"; first: {self.args[0]!r}" if self.args else ""
        return f"{n} task(s) failed ({', '.join(kinds)}){first}"


# -- journaled runs (the classes stored journals name: keep them here) ----------------------------


class JournalError(MtaskliteLikeError):
    """The run directory or its journal cannot be used: not writable, shared with other users,
    locked by another run, not a journal of this library, or damaged."""


class JournalMismatchError(JournalError):
    """The journal in the run directory was written for another function, kind of key or input."""


class JournalPicklingError(TaskPicklingError):
    """An item's result could not be pickled into the journal. The item counts as failed (under
    ``'immediate'`` this is raised); ``journal_results=False`` stores only that items finished."""


class JournalWarning(RuntimeWarning):
    """Something in the journal was dropped on purpose: a record torn by a crash."""
