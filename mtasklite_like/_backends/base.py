"""The interface between the pool front and the machinery that runs workers.

A backend starts ``n_workers`` workers from their specs, sends a batch of items to a named worker,
hands back what workers report as events, and stops. It knows nothing of input order, windows or
exception modes; the front (``_run.py``) knows nothing of threads, processes or pipes.

Every batch is addressed to one worker, so the front always knows which items each worker holds:
that is what lets a worker's death be reported against its items.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

__all__ = ["Backend", "BatchDone", "Event", "WorkerDied", "WorkerInitFailed", "WorkerReady"]


class Event:
    """Something a worker reported."""

    __slots__ = ("worker",)

    def __init__(self, worker: int) -> None:
        self.worker = worker


class BatchDone(Event):
    """A batch finished: its results in item order, the failed positions, and the compute time."""

    __slots__ = ("batch_id", "elapsed", "failures", "results")

    def __init__(
        self,
        worker: int,
        batch_id: int,
        results: list[Any],
        failures: list[tuple[int, BaseException]],
        elapsed: float,
    ) -> None:
        super().__init__(worker)
        self.batch_id = batch_id
        self.results = results
        self.failures = failures
        self.elapsed = elapsed


class WorkerReady(Event):
    """A worker has built its object and takes items from now on (task deadlines start here)."""

    __slots__ = ()


class WorkerInitFailed(Event):
    """A worker could not start: building its object, its initializer or its environment raised."""

    __slots__ = ("error",)

    def __init__(self, worker: int, error: BaseException) -> None:
        super().__init__(worker)
        self.error = error


class WorkerDied(Event):
    """A worker ended without being asked to; everything it reported before is already delivered.

    ``running`` is ``(batch_id, position)`` of the item it had started last, when known.
    """

    __slots__ = ("cause", "exitcode", "pid", "running")

    def __init__(
        self,
        worker: int,
        pid: int | None,
        exitcode: int | None,
        cause: str,
        running: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(worker)
        self.pid = pid
        self.exitcode = exitcode
        self.cause = cause
        self.running = running


class Backend(ABC):
    """Runs workers. One instance serves one pool until ``stop``; it is not reused after that."""

    #: whether the front should batch items (False for the in-caller backend, which has no
    #: transport to amortise and must stay strictly lazy)
    batches: bool = True

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers

    @abstractmethod
    def start(self) -> None:
        """Start every worker. Their objects are built in the workers, not here."""

    @abstractmethod
    def send(self, worker: int, batch_id: int, first_index: int, items: list[Any]) -> None:
        """Give a batch to one worker. ``first_index`` is the input index of ``items[0]``."""

    @abstractmethod
    def recv(self, timeout: float | None) -> list[Event]:
        """Wait up to ``timeout`` seconds (None: forever) and return what workers reported."""

    @abstractmethod
    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        """Start a fresh worker from the same spec in place of ``worker`` (its object is rebuilt).

        Without ``kill`` the old worker is idle and is asked to finish; with ``kill`` it is dead or
        stuck in a task: a process is killed, a thread is abandoned (it cannot be killed). Nothing
        the old worker reports afterwards reaches ``recv``.
        """

    @abstractmethod
    def stop(self, grace: float) -> None:
        """Stop every worker, allowing ``grace`` seconds to finish; force what is left.

        Idempotent, callable from a finalizer, never raises and never waits much past ``grace``.
        """

    @property
    @abstractmethod
    def alive(self) -> bool:
        """True between ``start`` and ``stop``."""
