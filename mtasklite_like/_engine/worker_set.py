"""The worker set: a pool's workers across runs, and what is known of their health.

A pool owns one :class:`WorkerSet`. It creates the backend lazily when a run first needs workers,
keeps it between runs inside ``with Pool(...)`` (so objects built by workers live across calls),
and stops it when a run ends otherwise. Only one run may hold the workers at a time.

Health is per worker and outlives runs like the workers do: when each started and when it reported
itself ready (init and task deadlines run from these), how many items it may still take before it
is replaced (``max_tasks_per_worker``), deaths in a row that no item can be blamed for, and what
is known of its memory (``_memory.watch``: samples, peaks, recycling and kill counts, the
``kill_worker_memory`` ceiling), which lasts as long as the pool.

The set never refers to the pool, so the pool's finalizer can stop it.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable
from typing import Any

from .._backends import BackendOptions, make_backend
from .._backends.base import Backend, Capabilities
from .._memory.watch import MemoryWatch
from .._worker.run import WorkerSpec
from .ledger import Msg
from .stats import RunStats

__all__ = ["WorkerSet"]

#: a pool adds up the statistics of its finished runs once this many have ended (or when asked),
#: and at once after a run of more than ``_FOLD_BATCHES`` batches
_FOLD = 32
_FOLD_BATCHES = 4


class WorkerSet:
    """Workers of one pool: their backend, start and ready times, quotas and death count."""

    def __init__(
        self,
        specs: list[WorkerSpec],
        backend_name: str,
        *,
        start_method: str | None,
        grace: float,
        options: BackendOptions | None = None,
        max_tasks_per_worker: int | None,
        kill_worker_memory: int | None = None,
    ) -> None:
        self.specs = specs
        self.backend_name = backend_name
        self.start_method = start_method
        self.options = options
        self.grace = grace
        self.max_tasks = max_tasks_per_worker
        #: keep the workers between runs (inside ``with Pool(...)``)
        self.keep = False
        self.backend: Backend | None = None
        self.started_at: list[float] = []
        self.ready_at: list[float | None] = []
        #: items each worker may still take before it is replaced; None: no limit
        self.quota: list[int] | None = None
        self.deaths_in_a_row = 0
        self._holder: weakref.ref[Any] | None = None
        #: the statistics of the runs that have ended, added up (``Pool.stats()``; see stats_total)
        self._stats_total = RunStats.total([])
        #: finished runs not yet added to ``stats_total``: adding up takes some 15 us, which a run of
        #: one item should not pay; done when asked for, or every ``_FOLD`` runs
        self._stats_done: list[RunStats] = []
        #: told of every replacement (worker, reason) by the run holding the workers
        self.on_replace: Callable[[int, str], None] | None = None
        #: what is known of the workers' memory, for the pool's life
        self.memory = MemoryWatch(
            len(specs), max_worker_memory=specs[0].memory_limit if specs else None,
            kill_worker_memory=kill_worker_memory,
        )

    @property
    def n_workers(self) -> int:
        return len(self.specs)

    @property
    def alive(self) -> bool:
        return self.backend is not None and self.backend.alive

    # -- runs -------------------------------------------------------------------------------------

    def acquire(self, run: Any) -> Backend:
        """Give ``run`` the workers, starting them if needed; refuse while another run holds them."""
        holder = self._holder() if self._holder is not None else None
        if holder is not None and holder is not run and not holder.finished:
            raise RuntimeError(
                "this Pool is still busy with another result iterator; exhaust it or call its close() "
                "before starting a new one (or use a second Pool)"
            )
        self._holder = weakref.ref(run)
        backend = self.backend
        if backend is None or not backend.alive:
            backend = make_backend(self.backend_name, self.specs, self.start_method, self.options)
            if self.specs[0].concurrency and not backend.capabilities.coroutines:
                backend.stop(0.0)
                raise TypeError(
                    f"the {self.backend_name!r} backend cannot run coroutine workers (async def); use "
                    "backend='threads' or 'processes', or give a plain function"
                )
            if self.specs[0].memory_limit is not None and not backend.capabilities.retires:
                backend.stop(0.0)
                raise ValueError(
                    f"the {self.backend_name!r} backend cannot replace a worker alone when its memory "
                    "grows (max_worker_memory); use backend='processes' (or 'ray')"
                )
            now = backend.clock()
            n = backend.n_workers
            self.quota = None if self.max_tasks is None else [self.max_tasks] * n
            self.started_at = [now] * n
            self.ready_at = [None] * n
            self.deaths_in_a_row = 0
            self.backend = backend
            try:
                backend.start()
            except BaseException:
                self.stop()
                raise
            if self.memory.kill_limit is not None and not backend.pids:
                self.stop()
                raise ValueError(
                    f"kill_worker_memory watches worker processes, and the {self.backend_name!r} backend "
                    "reports none; use backend='processes'"
                )
            self.memory.attach(lambda: backend.pids)
        return backend

    def release(self, run: Any, *, clean: bool) -> None:
        """``run`` is over. Workers stay for the next run only after a clean end inside ``with``."""
        holder = self._holder() if self._holder is not None else None
        if holder is run:
            self._holder = None
            self.on_replace = None
        if not clean or not self.keep:
            self.stop()

    def holder(self) -> Any:
        """The run holding the workers, if any."""
        return self._holder() if self._holder is not None else None

    def stop(self) -> None:
        """Stop the workers (idempotent; safe from a finalizer)."""
        backend, self.backend = self.backend, None
        if backend is not None:
            self.memory.detach()
            backend.stop(self.grace)

    # -- health -----------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        assert self.backend is not None
        return self.backend.capabilities

    def mark_ready(self, worker: int, now: float) -> float:
        """The worker reported itself ready; return how long it took to start."""
        self.ready_at[worker] = now
        return now - self.started_at[worker]

    def task_started(self, worker: int, sent_at: float) -> float | None:
        """When a task sent at ``sent_at`` started (it cannot start before the worker is ready)."""
        ready = self.ready_at[worker]
        return None if ready is None else max(sent_at, ready)

    def busy_for(self, now: float, msgs: Iterable[Msg]) -> dict[int, float]:
        """For each busy worker, how long it has (probably) been on its current task."""
        since: dict[int, float] = {}
        for msg in msgs:
            started = self.task_started(msg.worker, msg.sent_at)
            start = msg.sent_at if started is None else started
            since[msg.worker] = max(since.get(msg.worker, 0.0), now - start)
        return since

    def next_deadline(
        self, msgs: Iterable[Msg], task_timeout: float | None, init_timeout: float | None
    ) -> float | None:
        """The earliest moment a running task or a starting worker runs out of time, if any."""
        deadlines = []
        if task_timeout is not None and self.capabilities.interrupts_tasks:
            for msg in msgs:
                started = self.task_started(msg.worker, msg.sent_at)
                if started is not None:
                    deadlines.append(started + task_timeout)
        if init_timeout is not None:
            starting = [self.started_at[w] for w, r in enumerate(self.ready_at) if r is None]
            if starting:
                deadlines.append(min(starting) + init_timeout)
        return min(deadlines, default=None)

    def init_overdue(self, now: float, timeout: float) -> int | None:
        """A worker that has been starting for longer than ``timeout``, if any."""
        for w, ready in enumerate(self.ready_at):
            if ready is None and now - self.started_at[w] > timeout:
                return w
        return None

    def quota_left(self, worker: int) -> int | None:
        return None if self.quota is None else self.quota[worker]

    def spend_quota(self, worker: int, n_items: int) -> None:
        if self.quota is not None:
            self.quota[worker] -= n_items

    def quota_spent(self, worker: int) -> bool:
        return self.quota is not None and self.quota[worker] <= 0

    def stats_done(self, stats: RunStats) -> None:
        """A run ended: its statistics count in the pool's."""
        self._stats_done.append(stats)
        if stats.batch_count > _FOLD_BATCHES or len(self._stats_done) >= _FOLD:
            self._fold()  # (a long run's timeline is not kept waiting)

    @property
    def stats_total(self) -> RunStats:
        """The statistics of the pool's finished runs, added up."""
        self._fold()
        return self._stats_total

    def _fold(self) -> None:
        done, self._stats_done = self._stats_done, []
        for stats in done:
            self._stats_total.add(stats)

    def replace(self, worker: int, *, kill: bool, reason: str = "death") -> None:
        """Start a fresh worker in place of ``worker``: its times and quota start anew. ``reason``
        goes to the statistics (``death``, ``timeout``, ``memory``, ``memory kill``, ``max_tasks``)."""
        if self.on_replace is not None:
            self.on_replace(worker, reason)
        backend = self.backend
        assert backend is not None
        backend.replace_worker(worker, kill=kill)
        self.started_at[worker] = backend.clock()
        self.ready_at[worker] = None
        if self.quota is not None and self.max_tasks is not None:
            self.quota[worker] = self.max_tasks

    def retire(self, worker: int, memory: int, peak: int | None) -> None:
        """``worker`` retired over its memory limit: count it and start a fresh one in its place."""
        self.memory.retired(worker, memory, peak)
        self.replace(worker, kill=False, reason="memory")

    def death_unblamed(self) -> int:
        """Count a death no item can be blamed for; return how many happened in a row."""
        self.deaths_in_a_row += 1
        return self.deaths_in_a_row

    def progress_made(self) -> None:
        """A worker finished a batch: the deaths-in-a-row count starts over."""
        self.deaths_in_a_row = 0
