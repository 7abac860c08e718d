"""The interface between the run engine and the machinery that runs workers.

A backend starts ``n_workers`` workers from their specs, sends a batch of items to a named worker,
hands back what workers report as events, and stops. It knows nothing of input order, windows or
exception modes; the engine knows nothing of threads, processes or pipes, only a backend's
:class:`Capabilities`.

Every batch is addressed to one worker, so the engine always knows which items each worker holds:
that is what lets a worker's death be reported against its items.

The engine waits in one place only, ``recv``. Input read in a background thread (see
``_engine.input_thread``) must be able to cut that wait short, so a backend implements :meth:`Backend.wake`
and says so with ``Capabilities.wakes``; the engine then sleeps until a report *or* an item
arrives. A backend that cannot be woken still works: the engine then looks at the input every few
milliseconds while it waits for some.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

__all__ = [
    "Backend",
    "BatchDone",
    "BatchUnreadable",
    "Capabilities",
    "Event",
    "WorkerDied",
    "WorkerInitFailed",
    "WorkerLog",
    "WorkerReady",
    "WorkerRetired",
]


@dataclass(frozen=True)
class Capabilities:
    """What a backend can do; the engine adapts to these flags and to nothing else.

    Attributes:
        batches: items may travel several to a message. False for the in-caller backend, which has
            no transport to amortise and must stay strictly lazy (one item at a time).
        interrupts_tasks: ``replace_worker(kill=True)`` frees the run from a task that is still
            running, so a ``task_timeout`` can be enforced while the task runs. False when tasks run
            in the caller.
        kills_tasks: the interrupted task really stops (a process is killed); False when it is only
            abandoned and finishes in the background (a thread cannot be killed).
        wakes: :meth:`Backend.wake` cuts a ``recv`` short (see the module docstring).
        polls: :meth:`Backend.poll` takes what workers reported without waiting.
        coroutines: runs coroutine workers (``WorkerSpec.concurrency``; see ``_worker.coroutines``).
        retires: workers measure their own memory and retire past ``WorkerSpec.memory_limit``
            (``max_worker_memory``), reported as ``WorkerRetired``; False where they cannot be
            replaced alone (threads share one process).

    Which item a dead worker was running, and its pid, are told by each death itself
    (``WorkerDied.running``, ``WorkerDied.pid``: None when not known, which can vary from one death
    to the next on one backend), and the workers' pids by ``Backend.pids`` (empty when they have
    none), so no flag announces them.
    """

    batches: bool = True
    interrupts_tasks: bool = True
    kills_tasks: bool = True
    wakes: bool = False
    polls: bool = False
    coroutines: bool = False
    retires: bool = False


class Event:
    """Something a worker reported."""

    __slots__ = ("worker",)

    def __init__(self, worker: int) -> None:
        self.worker = worker


class BatchDone(Event):
    """A batch finished: its results in item order, the failed positions, the compute time, and the
    size in bytes of the message that carried it (0 when nothing was serialised). ``raw``: the
    results list as the worker pickled it, when the run asked for it (``Backend.raw_results``) and
    the batch had no failures; None otherwise. ``waited``: the seconds the worker waited for this
    batch, from the end of its previous one (or from when it was ready), as the worker measured
    them; None where not measured (the statistics then estimate it in the caller)."""

    __slots__ = ("batch_id", "elapsed", "failures", "nbytes", "raw", "results", "waited")

    def __init__(
        self,
        worker: int,
        batch_id: int,
        results: list[Any],
        failures: Sequence[tuple[int, BaseException]],
        elapsed: float,
        nbytes: int = 0,
        raw: bytes | None = None,
        waited: float | None = None,
    ) -> None:
        super().__init__(worker)
        self.batch_id = batch_id
        self.results = results
        self.failures = failures
        self.elapsed = elapsed
        self.nbytes = nbytes
        self.raw = raw
        self.waited = waited


class BatchUnreadable(Event):
    """A batch that could not be unpickled on the other side: its items in the worker, or its
    results in the caller. ``error`` is the unpickling error (with the worker's traceback as its
    ``__cause__`` when it was raised there). The worker goes on with its next batch.

    The engine splits such a batch into items that travel alone, free of charge; an item that
    already travelled alone gets ``error`` as its failure. So one item that cannot cross fails by
    itself, with the real cause, and the rest of its batch runs.
    """

    __slots__ = ("batch_id", "error")

    def __init__(self, worker: int, batch_id: int, error: BaseException) -> None:
        super().__init__(worker)
        self.batch_id = batch_id
        self.error = error


class WorkerReady(Event):
    """A worker has built its object and takes items from now on (task deadlines start here).
    ``init_s``: the seconds building it took, as the worker measured them; ``at``: when it was
    ready, on ``time.monotonic`` of this machine (which every process of it shares), where the
    worker runs on it (None: not measured)."""

    __slots__ = ("at", "init_s")

    def __init__(self, worker: int, init_s: float | None = None, at: float | None = None) -> None:
        super().__init__(worker)
        self.init_s = init_s
        self.at = at


class WorkerInitFailed(Event):
    """A worker could not start: building its object, its initializer or its environment raised."""

    __slots__ = ("error",)

    def __init__(self, worker: int, error: BaseException) -> None:
        super().__init__(worker)
        self.error = error


class WorkerLog(Event):
    """A log record the worker emitted, or a warning it issued, in its plain form
    (``_logs.records``); the engine hands it to the caller's logging at once (``_logs.reemit``).
    Backends whose workers run in the caller's process report none: their records are the
    caller's already."""

    __slots__ = ("record",)

    def __init__(self, worker: int, record: tuple[Any, ...]) -> None:
        super().__init__(worker)
        self.record = record


class WorkerRetired(Event):
    """The worker went over its memory limit (``max_worker_memory``) and ended in order: what it
    reported before is delivered, and it runs nothing it still held. ``memory``: the worker's own
    memory when it retired; ``peak``: its largest resident size (None: not known). The engine
    replaces it (``replace_worker(kill=False)``)."""

    __slots__ = ("memory", "peak")

    def __init__(self, worker: int, memory: int, peak: int | None = None) -> None:
        super().__init__(worker)
        self.memory = memory
        self.peak = peak


class WorkerDied(Event):
    """A worker ended without being asked to; everything it reported before is already delivered.

    ``cause`` says how, in words (``"killed by SIGKILL"``, ``"the task raised SystemExit"``).
    ``pid`` and ``exitcode`` are set by backends whose workers are processes. ``running`` is
    ``(batch_id, position)`` of the item it had started last, when the backend knows it.
    ``error``: the exception that ended the worker when a task raised one that a worker does not
    survive (``SystemExit``, ``KeyboardInterrupt``, other ``BaseException``), with the worker's
    traceback as its ``__cause__`` where it crossed from another process; None otherwise.
    """

    __slots__ = ("cause", "error", "exitcode", "pid", "running")

    def __init__(
        self,
        worker: int,
        cause: str,
        *,
        pid: int | None = None,
        exitcode: int | None = None,
        running: tuple[int, int] | None = None,
        error: BaseException | None = None,
    ) -> None:
        super().__init__(worker)
        self.cause = cause
        self.pid = pid
        self.exitcode = exitcode
        self.running = running
        self.error = error


class Backend(ABC):
    """Runs workers. One instance serves one pool until ``stop``; it is not reused after that."""

    capabilities: ClassVar[Capabilities] = Capabilities()
    #: set by a run that keeps the workers' pickled results (a journaled run writes them as they
    #: are instead of pickling the results again); backends that pickle nothing ignore it
    raw_results: bool = False
    #: set by the run that holds the backend: a weak reference to what a task's progress report
    #: (``mtasklite_like.progress``) calls when the task runs in the caller's thread, which cannot
    #: call the run's heartbeat meanwhile; backends whose tasks run elsewhere ignore it
    task_heartbeat: Callable[[], Callable[[], None] | None] | None = None

    #: the clock the engine measures deadlines with; a simulated backend brings its own
    clock: Callable[[], float] = staticmethod(time.monotonic)

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers

    @abstractmethod
    def start(self) -> None:
        """Start every worker. Their objects are built in the workers, not here."""

    @abstractmethod
    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        """Give a batch to one worker; ``indices`` are the input positions of ``items``.

        Returns the number of bytes the batch was serialised to (0 when nothing was serialised).
        """

    @abstractmethod
    def recv(self, timeout: float | None) -> list[Event]:
        """Wait up to ``timeout`` seconds (None: forever) and return what workers reported."""

    def poll(self) -> list[Event]:
        """What workers have reported already, without waiting: for a consumer that must not block
        (an ``async for`` in an event loop's thread). Deaths are left to :meth:`recv`, which settles
        them (that can take a while); a backend that implements this sets ``Capabilities.polls``.
        """
        return []

    def wake(self) -> None:  # noqa: B027 - optional: a backend that cannot be woken is polled
        """Make the ``recv`` in progress in another thread return now, with whatever workers have
        reported (possibly nothing); when no ``recv`` is in progress, the next one returns at once.

        Called from the thread that reads the input, when items arrive while the engine waits for
        input. Thread-safe, never blocks, never raises, and harmless after ``stop``. A backend that
        implements it sets ``Capabilities.wakes``; this default does nothing.
        """

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

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the current workers, in worker order (empty when workers have none)."""
        return []

    def fractions(self) -> float:
        """The progress tasks reported from inside (``mtasklite_like.progress``): the fractions of
        the items the workers run now, added up over the workers (0.0 when none did, or where they
        cannot be read). Called from the caller, possibly from another thread than the engine's;
        never blocks. This default reads none."""
        return 0.0
