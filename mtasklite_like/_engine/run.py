"""One pass of an input through the pool: the loop that ties the engine's parts together.

The run is driven by the consumer: each ``next()`` that finds no result ready sends batches to
workers with spare capacity (:mod:`.admission` decides who gets how much), then waits for what
workers report and settles it: results and failures into the :mod:`.ledger`, complete batches
through :mod:`.release` to the consumer, deaths and deadlines through the :mod:`.worker_set`
and :mod:`.faults`. The input comes from the :mod:`.feeder`: read in the caller, or in a
background thread that reads only while the engine runs and wakes its wait for reports
(``Backend.wake``) when items arrive, so a blocked input never holds back finished results. When
the consumer stalls, workers finish what they hold and wait; the input is never read further than
the window. A consumer that must never block (``async for`` in an event loop's thread) calls
:meth:`Run.step_nowait` first and leaves the waiting to a helper thread (see ``async_results``).
See docs/architecture.md, docs/streaming.md and docs/fault_tolerance.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from .._backends.base import (
    Backend,
    BatchDone,
    BatchUnreadable,
    Event,
    WorkerDied,
    WorkerInitFailed,
    WorkerReady,
)
from .._errors import DeferredExceptions
from .._options import RunOptions
from . import faults as _faults
from .admission import Admission
from .budget import ByteBudget
from .dispatch import Dispatch
from .feeder import make_feeder
from .ledger import Ledger, Msg
from .release import Release, Sink
from .worker_set import WorkerSet

__all__ = ["HEARTBEAT_SECONDS", "Run"]

#: how long one wait for worker reports lasts before the engine looks around again
_POLL_SECONDS = 1.0
#: the longest wait between two calls of a run's heartbeat
HEARTBEAT_SECONDS = 0.2
#: how often to look for input read in the background, with a backend that cannot be woken
_UNWOKEN_POLL_SECONDS = 0.005


class Run:
    """The engine of one result iterator. It never refers back to the iterator, so dropping the
    iterator triggers its finalizer, which stops this run."""

    def __init__(
        self, options: RunOptions, workers: WorkerSet, iterable: Iterable[Any], sink: Sink | None = None
    ) -> None:
        self.options = options
        self.workers = workers
        choice = options.input_thread
        # Items run in the caller one at a time: nothing could be delivered during a blocked read.
        alone = workers.backend_name == "inline"
        self._feeder = make_feeder(iterable, False if choice is None and alone else choice)
        self.total = self._feeder.total
        self.release = Release(ordered=options.ordered, mode=options.exception_behavior, sink=sink)
        self.ready = self.release.ready
        self.started = False
        self.finished = False
        self._backend: Backend | None = None
        self._ledger = Ledger(workers.n_workers, options.retries)
        self._admission: Admission | None = None
        self._dispatch: Dispatch | None = None
        self._pending_error: BaseException | None = None
        #: called at least every HEARTBEAT_SECONDS while the consumer waits (a progress bar
        #: refreshes its clock with it); None: nothing to call
        self.heartbeat: Callable[[], None] | None = None
        self._last_heartbeat = 0.0
        #: step_nowait may run: the backend polls and taking input never waits (set at the start)
        self._steps_nowait = False
        #: reports step_nowait took but left to the next waiting step, in the order they came
        self._held: list[Event] = []
        #: what step_nowait raised, for the next waiting step to raise after stopping the run
        self._held_error: BaseException | None = None

    # -- consumer side --------------------------------------------------------------------------

    def next_slow(self) -> Any:
        """Produce the next result when none is ready: drive the pool until one is."""
        try:
            return self._drive()
        finally:
            self._feeder.close_gate()  # the input is read only while the engine runs

    def _drive(self) -> Any:
        while True:
            if self.ready:
                return self.ready.popleft()
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self.finished:
                raise StopIteration
            if not self.started:
                # Outside the try below: a refused start (the pool is busy with another run)
                # leaves this run untouched, so it can start once the other one is done.
                self._start()
            try:
                self._step()
            except BaseException:
                # Ctrl-C while waiting, or an internal failure: never leave workers behind.
                self.close()
                raise

    def step_nowait(self) -> bool:
        """Move the run on without waiting, and say whether a result is ready.

        For a consumer in an event loop's thread, which must not block: most of the time the
        next batch has already arrived when the ready results run out, and taking it here saves
        handing the engine to a helper thread and back (two thread wake-ups). Only what cannot
        block is done: reports are taken with ``Backend.poll`` and input only from a reader that
        never waits; a report that needs more than bookkeeping (a failure, a death, a spent quota,
        an overrun) is held, with every report after it, for the next :meth:`next_slow`, which
        also completes the run, checks deadlines and raises what this step raised.
        """
        if not self._steps_nowait or self.finished or self._held or self._held_error is not None:
            return bool(self.ready)
        backend = self._backend
        assert backend is not None
        try:
            self._fill()
            events = backend.poll()
            for i, event in enumerate(events):
                if not self._settles_at_once(event):
                    self._held = events[i:]
                    break
                self._handle(event)
            self._fill()
        except BaseException as exc:  # raised by the next next_slow, after it stops the run
            self._held_error = exc
        finally:
            self._feeder.close_gate()
        return bool(self.ready)

    def _settles_at_once(self, event: Event) -> bool:
        """The report needs nothing but bookkeeping: no worker is started, stopped or waited for."""
        if isinstance(event, BatchDone):
            timeout = self.options.watchdog_timeout
            return (
                not event.failures
                and self.workers.quota is None
                and (timeout is None or event.elapsed <= timeout)
            )
        return isinstance(event, WorkerReady) and self.options.init_timeout is None

    def close(self) -> None:
        """Stop the run now; workers still busy with its items are stopped too."""
        if not self.finished:
            self._finish(clean=False)

    @property
    def consumed(self) -> int:
        """Results the consumer has taken so far."""
        return self.release.released - len(self.ready)

    # -- the loop -------------------------------------------------------------------------------

    def _start(self) -> None:
        # A reader in the background starts on the first items while the workers start.
        self._feeder.start(self.workers.n_workers)
        backend = self.workers.acquire(self)
        sink = self.release.sink
        backend.raw_results = sink is not None and sink.wants_raw  # for this run only
        self._feeder.wake_with(backend.wake)
        self._backend = backend
        self.started = True
        self._clock = backend.clock
        self._last_heartbeat = self._clock()
        admission = Admission(self.options, backend.capabilities, backend.n_workers, self.total)
        self._admission = admission
        self._budget = ByteBudget(self.options.memory_budget)
        self._dispatch = Dispatch(
            admission, self._ledger, self.workers, self._feeder, self.release, backend, self._budget
        )
        self._wakes = backend.capabilities.wakes
        self._steps_nowait = backend.capabilities.polls and self._feeder.instant

    def _step(self) -> None:
        backend = self._backend
        assert backend is not None
        if self._held_error is not None:
            error, self._held_error = self._held_error, None
            raise error  # _drive stops the run, then raises it on
        feeder = self._feeder
        self._fill()
        assert self._dispatch is not None
        paced = self._dispatch.paced_until  # the rate limit holds an item back until then
        if self._ledger.idle() and paced is None and (feeder.done or not feeder.streams):
            if not feeder.done:
                raise RuntimeError("mtasklite_like internal error: nothing in flight and input not done")
            self._complete()
            return
        deadline = self.workers.next_deadline(
            self._ledger.in_flight.values(), self.options.watchdog_timeout, self.options.init_timeout
        )
        if paced is not None:
            deadline = paced if deadline is None else min(deadline, paced)
        wait = _POLL_SECONDS if deadline is None else min(_POLL_SECONDS, max(0.0, deadline - self._clock()))
        if self.heartbeat is not None:
            wait = min(wait, HEARTBEAT_SECONDS)
        if feeder.streams and not feeder.done:
            # Items read in the background wake the wait; look anyway when they may not.
            poll = feeder.poll_interval() if self._wakes else _UNWOKEN_POLL_SECONDS
            wait = wait if poll is None else min(wait, poll)
        if self._held:
            events, self._held = [*self._held, *backend.recv(0)], []
        else:
            events = backend.recv(wait)
        if self.heartbeat is not None:
            now = self._clock()
            if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                self._last_heartbeat = now
                self.heartbeat()
        for event in events:
            self._handle(event)
            if self.finished:
                return
        if self.options.task_timeout is not None or self.options.init_timeout is not None:
            self._check_deadlines()
        self._fill()

    def _fill(self) -> None:
        if not self.finished:
            assert self._dispatch is not None
            self._dispatch.fill()

    # -- reports --------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        if isinstance(event, BatchDone):
            self._on_done(event)
        elif isinstance(event, WorkerReady):
            took = self.workers.mark_ready(event.worker, self._clock())
            limit = self.options.init_timeout
            if limit is not None and took > limit:
                # Ready, but late: with n_jobs=1 the object is built in the caller, where nothing
                # can interrupt it, so the overrun is found here.
                self._fail(_faults.init_timeout_error(event.worker, limit))
        elif isinstance(event, WorkerInitFailed):
            self._fail(_faults.init_failed_error(event.worker, event.error))
        elif isinstance(event, WorkerDied):
            self._on_death(event)
        elif isinstance(event, BatchUnreadable):
            self._on_unreadable(event)

    def _on_done(self, event: BatchDone) -> None:
        msg = self._ledger.pop(event.batch_id)
        if msg is None:
            return  # from a worker replaced since: its items were already accounted for
        self.workers.progress_made()
        assert self._admission is not None
        self._admission.observe(len(event.results), event.elapsed)
        self._budget.measure_results(event.results, event.nbytes)
        failures: Iterable[tuple[int, BaseException]] = event.failures
        timeout = self.options.watchdog_timeout
        if timeout is not None and event.elapsed > timeout:
            # The item overran but finished before its deadline was checked (the caller was busy
            # elsewhere, or n_jobs=1 where nothing can interrupt a task): same outcome as a kill.
            overrun = _faults.overrun_error
            failures = [(k, overrun(i, timeout, event.elapsed)) for k, i in enumerate(msg.indices())]
        self._ledger.record(msg, event.results, failures, event.raw)
        self._answered(msg)

    def _on_unreadable(self, event: BatchUnreadable) -> None:
        msg = self._ledger.pop(event.batch_id)
        if msg is None:
            return
        positions = msg.item_positions()
        if len(positions) == 1:
            # Alone, the item is the one that cannot cross: the unpickling error is its failure.
            self._ledger.fail(msg.batch, positions[0], event.error)
        else:
            # Which item is at fault is unknown: each travels again alone, free of charge.
            for pos in positions:
                self._ledger.requeue(msg.batch, pos)
        self._answered(msg)

    def _answered(self, msg: Msg) -> None:
        """After the ledger took a worker's answer to ``msg``: recycle the worker if its quota is
        spent, and release what the answer made releasable."""
        worker = msg.worker
        if self.workers.quota_spent(worker) and not self._ledger.loads[worker]:
            # The worker has done its share and holds nothing: replace it with a fresh one.
            self.workers.replace(worker, kill=False)
        self._settle([msg])

    def _on_death(self, event: WorkerDied) -> None:
        restart = self.options.restart_on_death
        held, error = _faults.settle_death(event, self._ledger, self.workers, restart=restart)
        if error is not None:
            self._fail(error)
        else:
            self._settle(held)

    def _check_deadlines(self) -> None:
        now, limit = self._clock(), self.options.init_timeout
        if limit is not None:
            late = self.workers.init_overdue(now, limit)
            if late is not None:
                self._fail(_faults.init_timeout_error(late, limit))
                return
        timeout = self.options.watchdog_timeout
        if timeout is not None and self.workers.capabilities.interrupts_tasks:
            self._settle(_faults.settle_overdue(now, timeout, self._ledger, self.workers))

    # -- ending ---------------------------------------------------------------------------------

    def _settle(self, msgs: list[Msg]) -> None:
        """Release what the news about these messages' batches made releasable."""
        seen: set[int] = set()
        for msg in msgs:
            batch = msg.batch
            if self.finished or batch.id in seen:
                continue
            seen.add(batch.id)
            error = self.release.settle(batch)
            if error is not None:
                self._fail(error)

    def _fail(self, error: BaseException) -> None:
        """Stop the run; ``error`` is raised once the results already released are consumed."""
        self._pending_error = error
        self._finish(clean=False)

    def _complete(self) -> None:
        """Everything was pulled, processed and released: end the run."""
        if self._feeder.error is not None:
            self._pending_error = self._feeder.error
        elif self.release.deferred:
            self._pending_error = DeferredExceptions(*self.release.deferred)
        self._finish(clean=True)

    def _finish(self, *, clean: bool) -> None:
        self.finished = True
        self._feeder.stop()
        self._ledger.in_flight.clear()
        self._ledger.retry.clear()
        self.release.clear()
        if self.started:
            self._backend = None
            self.workers.release(self, clean=clean)
