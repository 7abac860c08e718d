"""One pass of an input through the pool: the run loop, and the filling of workers it drives.

Data flow (each box a module of this package; the run is driven by the consumer's ``next()``)::

    caller's iterable
        |  feeder.py: read in the caller, or by input_thread.py in the background, never past
        |  the window (admission.py) nor the byte budget (budget.py)
        v
    Run.fill  -- admission.py: which worker, how big a batch (batching.py), how far to read;
        |        rate_limit.py: the pace of hand-overs under max_per_second
        |  ledger.open_batch / ledger.dispatch: every item in exactly one batch, every batch
        |  held by one named worker
        v
    Backend.send(worker, batch id, indices, items)        _backends/: threads, processes, Ray
        |                                                  _worker/: what each worker runs
        v
    Backend.recv / poll -> events: BatchDone, BatchUnreadable, WorkerReady, WorkerDied, ...
        |  ledger.record: outcomes by position; retries queued;
        |  faults.py: deaths and overruns settled item by item; worker_set.py: quotas, deadlines
        v
    release.py: complete batches in input order (or as they finish); the run's sink (a journal)
        |  sees each one first; the exception mode is applied
        v
    ready queue -> ResultIterator.__next__ (results.py), async for (async_results.py)

A ``next()`` that finds no result ready fills the workers with spare capacity, then waits for
what they report and settles it, until a result is ready. The input thread reads only while the
engine runs and wakes the wait for reports (``Backend.wake``) when items arrive, so a blocked input
never holds back finished results. When the consumer stalls, workers finish what they hold and
wait; the input is never read further than the window. A consumer that must never block (``async
for`` in an event loop's thread) calls :meth:`Run.step_nowait` first and leaves the waiting to a
helper thread (see ``async_results``). See docs/architecture.md, docs/streaming.md and
docs/fault_tolerance.md.

Filling: a batch is cut from whatever the input has given, up to the batch size, so a slow input
never makes items wait for a batch to fill: the batch size follows the input rate as well as the
task time. The reader in the background is given its limit: what the workers could take at once
beyond what was handed out, never past the window.

Under ``max_per_second`` hand-overs are paced, so that items do not pile up in workers: every
hand-over takes the token of the run's :class:`~.rate_limit.RateLimiter`, and goes only to a worker
that has reported itself ready. An item given to a worker that is still starting would wait there
and start when the worker is up, together with the items the ready workers were given meanwhile: a
burst, whatever the pace of the hand-overs. (The starts themselves are spaced by the workers'
:class:`~.rate_limit.StartGate`, where the pool gives them one: a worker wakes up after a delay of
its own.) When the token is not due, or no ready worker has room while some worker is still
starting, :attr:`Run.paced_until` tells the run how long it may wait before looking again (a
worker's ready report ends the wait sooner).
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from operator import length_hint
from typing import Any

from .._backends.base import (
    Backend,
    BatchDone,
    BatchUnreadable,
    Event,
    WorkerDied,
    WorkerInitFailed,
    WorkerLog,
    WorkerReady,
    WorkerRetired,
)
from .._errors import DeferredExceptions, MemoryPressureError
from .._logs.reemit import reemit
from .._memory.pressure import LOOK_SECONDS, PressureGate
from .._memory.watch import MemoryKill
from .._options import RunOptions
from . import faults as _faults
from .admission import Admission
from .budget import ByteBudget
from .feeder import Feeder, InputThread, make_feeder
from .ledger import Ledger, Msg
from .rate_limit import RateLimiter
from .release import Release, Sink
from .stats import RunStats
from .worker_set import WorkerSet

__all__ = ["HEARTBEAT_SECONDS", "Run"]

#: how long one wait for worker reports lasts before the engine looks around again
_POLL_SECONDS = 1.0
#: the longest wait between two calls of a run's heartbeat
HEARTBEAT_SECONDS = 0.2
#: how often to look for input read in the background, with a backend that cannot be woken
_UNWOKEN_POLL_SECONDS = 0.005
#: a token due within this many seconds is waited for by a sleep in :meth:`Run._paced`
_FINE_WAIT = 0.002
#: how much of the caller's lateness a hand-over to workers behind a start gate may make up for
_MAKE_UP = 0.002
#: how long after the input last kept workers waiting the run counts as limited by its input
#: (batches of about ``BatchSizer.INPUT_BOUND_SECONDS`` of work, for results that come back sooner)
_INPUT_BOUND_FOR = 0.25


def _in_event_loop() -> bool:
    """Whether this thread runs an event loop (which a sleep would block)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


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
        self._feeder: Feeder | InputThread = make_feeder(
            iterable, False if choice is None and alone else choice
        )
        self.total = self._feeder.total
        self.release = Release(ordered=options.ordered, mode=options.exception_behavior, sink=sink)
        self.ready = self.release.ready
        #: results taken out of ``ready`` in one piece by a ``for`` loop over the result iterator
        #: and not read yet (an iterator over them; None: none); see ``ResultIterator.__iter__``
        self.unread: Iterator[Any] | None = None
        self.started = False
        self.finished = False
        self._backend: Backend | None = None  # the worker set's backend, while the run holds it
        self._clock: Callable[[], float] = time.monotonic  # the backend's clock, once started
        self._ledger = Ledger(workers.n_workers, options.retries)
        #: what the run spends its time on (``results.stats()``); counted per batch, never per item
        self.stats = RunStats(workers.n_workers, clock=lambda: self._clock())
        #: the last fill found the input with nothing to give (the run then waits for it)
        self._starved = False
        #: when a fill last found the input with nothing to give (None: never): for a while after,
        #: the input limits the run, and batches stay small (see ``_INPUT_BOUND_FOR``)
        self._starved_at: float | None = None
        self._admission: Admission | None = None  # made at the start: it needs the backend's capabilities
        self._budget = ByteBudget(options.memory_budget)
        #: closed while the machine is short of memory (min_available_memory); None: no such check
        self._pressure = None if options.min_available_memory is None else PressureGate(
            options.min_available_memory, options.memory_pause_timeout
        )
        self._pending_error: BaseException | None = None
        # Workers that take their starts from the pool's StartGate space them exactly, whatever
        # the hand-overs do: the hand-overs may then make up for the caller's late wake-ups (a
        # few milliseconds at most, so that an item never waits long in a worker for its start).
        gated = any(spec.start_gate is not None for spec in workers.specs)
        rate = options.max_per_second
        self._limiter = None if rate is None else RateLimiter(rate, _MAKE_UP if gated else 0.0)
        #: when to look again, if the rate limit held an item back (the token is not due, or the
        #: only workers with room are still starting); else None
        self.paced_until: float | None = None
        #: the backend can be woken from another thread (else the input is polled)
        self._wakes = False
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
        stats = self.stats
        stats.entered(self._clock())
        try:
            return self._drive()
        finally:
            self._feeder.close_gate()  # the input is read only while the engine runs
            stats.left(self._clock())

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
            if self.finished:
                return bool(self.ready)
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
        if isinstance(event, WorkerLog):
            return True
        return isinstance(event, WorkerReady) and self.options.init_timeout is None

    def close(self) -> None:
        """Stop the run now; workers still busy with its items are stopped too."""
        if not self.finished:
            self._finish(clean=False)

    @property
    def consumed(self) -> int:
        """Results the consumer has taken so far."""
        unread = self.unread
        return self.release.released - len(self.ready) - (0 if unread is None else length_hint(unread))

    def put_back_unread(self) -> None:
        """Return what a ``for`` loop took out of ``ready`` and did not read to the front of it."""
        unread, self.unread = self.unread, None
        if unread is not None:
            self.ready.extendleft(reversed(list(unread)))

    # -- the loop -------------------------------------------------------------------------------

    def _start(self) -> None:
        # A reader in the background starts on the first items while the workers start.
        self._feeder.start(self.workers.n_workers)
        backend = self.workers.acquire(self)
        sink = self.release.sink
        backend.raw_results = sink is not None and sink.wants_raw  # for this run only
        backend.task_heartbeat = weakref.WeakMethod(self._heartbeat_in_task)  # (a weak one: see there)
        self._feeder.wake_with(backend.wake)
        self._backend = backend
        self.started = True
        self._clock = backend.clock
        self._last_heartbeat = self._clock()
        self._admission = Admission(self.options, backend.capabilities, backend.n_workers, self.total)
        workers = self.workers
        up = [ready is not None for ready in workers.ready_at]
        # The run began when it started its workers (their start-up is the run's time too).
        starting = [at for at, ready in zip(workers.started_at, up) if not ready]
        self.stats.start(min([self._clock(), *starting]), up)
        self.workers.on_replace = self.stats.gone
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
        if self.finished:
            return  # the fill ended the run (memory stayed short with nothing in flight)
        paced = self.paced_until  # the rate limit or memory pressure holds work back until then
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
        elif self._starved:
            # Workers have room and the input has nothing yet: this wait is the input's.
            began = self._clock()
            events = backend.recv(wait)
            self.stats.input_wait(began, self._clock())
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
            self._fill_workers()

    # -- filling workers ------------------------------------------------------------------------

    def _fill_workers(self) -> None:
        """Send work to workers with spare capacity: retries first, then new input."""
        admission, feeder = self._admission, self._feeder
        assert admission is not None
        if feeder.fatal is not None:
            raise feeder.fatal  # e.g. SystemExit from the input: at once, as in the caller
        if feeder.done and not self._ledger.retry:
            # Nothing is left to send (the common case at the end of a short run): no sums to make.
            self.paced_until = None
            self._starved = False
            return
        if self._pressure is not None and self._held_back():
            return
        credit = admission.credit()
        cap = self._budget.batch_cap()  # big items: small batches, and windows to match
        window = admission.window(credit, cap)
        guard = admission.guards_overdue(credit)
        busy_for = self.workers.busy_for(self._clock(), self._ledger.in_flight.values()) if guard else None
        self.paced_until = None
        self._starved = False
        try:
            self._hand_out(credit, window, busy_for)
        finally:
            if feeder.streams:
                limit = admission.read_limit(credit, window, feeder.pulled, self.consumed, cap)
                fit = self._budget.items_that_fit(self._bytes_held())
                if fit is not None:
                    limit = min(limit, feeder.pulled + feeder.buffered() + fit)
                feeder.allow(limit)

    def _held_back(self) -> bool:
        """True while the machine is short of memory and work is left: nothing is read or sent, and
        the run looks again shortly (``paced_until``)."""
        pressure, ledger, feeder = self._pressure, self._ledger, self._feeder
        assert pressure is not None
        now = self._clock()
        if not (ledger.retry or not feeder.done) or not pressure.closed(now):
            return False
        self.paced_until = now + LOOK_SECONDS
        feeder.close_gate()  # the reader in the background reads nothing more meanwhile
        try:
            pressure.idle(now, not ledger.in_flight)
        except MemoryPressureError as error:
            self._fail(error)
        return True

    def snapshot(self) -> RunStats:
        """The run's statistics, brought up to date (what the release and the ledger counted, and
        the workers' memory peaks)."""
        stats = self.stats
        stats.items = self.release.released
        stats.failed = self.release.failure_count
        stats.retried = self._ledger.retried
        for worker, peak in zip(stats.workers, self.workers.memory.peaks):
            worker.peak_rss = peak
        return stats

    @property
    def status(self) -> str | None:
        """What the run is held back by, in a few words for a progress bar (None: nothing)."""
        return None if self._pressure is None else self._pressure.status

    @property
    def partial(self) -> float:
        """The fractions of the items in flight that their tasks reported, added up (any thread)."""
        backend = self._backend
        return 0.0 if backend is None else backend.fractions()

    def _heartbeat_in_task(self) -> None:
        """A task running in the caller's thread reported progress: the heartbeat, if one is due.
        The backend outlives the run, so it refers to this method weakly (``task_heartbeat``)."""
        heartbeat = self.heartbeat
        if heartbeat is not None:
            now = self._clock()
            if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                self._last_heartbeat = now
                heartbeat()

    def _bytes_held(self) -> float:
        """Bytes held now (see :class:`~.budget.ByteBudget`)."""
        ledger, feeder = self._ledger, self._feeder
        results = feeder.pulled - self.consumed - ledger.items_in_flight - len(ledger.retry)
        return self._budget.held(ledger.bytes_in_flight, feeder.buffered(), max(0, results))

    def _hand_out(self, credit: int, window: int | None, busy_for: dict[int, float] | None) -> None:
        """Send work to workers with spare capacity: retries first, then new input."""
        admission, ledger, workers, feeder, budget = (
            self._admission, self._ledger, self.workers, self._feeder, self._budget
        )
        assert admission is not None
        bounded_in_bytes = budget.limit is not None
        loads = ledger.held if admission.counts_items else ledger.loads
        while True:
            paced = self._limiter is not None
            quota = self._ready_quota() if paced else workers.quota
            worker = admission.pick_worker(loads, credit, quota, busy_for)
            if worker < 0:
                if paced and (ledger.retry or not feeder.done):
                    self._wait_for_ready(loads, credit)
                return
            if paced and (ledger.retry or not feeder.done) and self._paced():
                return
            if ledger.retry:
                # A retried item travels alone, so an item that kills its worker cannot take
                # innocent neighbours down with it a second time.
                batch, pos = ledger.next_retry()
                self._send(*ledger.dispatch(worker, batch, [pos], self._clock()))
                continue
            if feeder.done:
                return
            room = None if window is None else window - (feeder.pulled - self.consumed)
            if room is not None and room <= 0:
                return
            left = credit - loads[worker] if admission.counts_items else None
            starved_at = self._starved_at
            input_bound = starved_at is not None and self._clock() - starved_at < _INPUT_BOUND_FOR
            size = admission.batch_size(feeder.remaining(), workers.quota_left(worker), room, left,
                                        input_bound=input_bound)
            if bounded_in_bytes:
                size = budget.batch_items(size, self._bytes_held(), feeder.buffered())
                if size <= 0:
                    return  # the budget is full: wait for results to be consumed
            first = feeder.pulled
            # Whatever has been read, up to a batch: a slow input never makes items wait for more.
            began = self._clock()
            items = feeder.take(size)
            self.stats.input_wait(began, self._clock())  # (reading it in the caller)
            if not items:
                self._starved = not feeder.done
                if self._starved:
                    self._starved_at = self._clock()
                return  # the input has nothing yet (its reader wakes the wait), or it ended
            batch = ledger.open_batch(range(first, first + len(items)), items)
            self._send(*ledger.dispatch(worker, batch, None, self._clock()))

    def _ready_quota(self) -> list[int]:
        """Items each worker may take under pacing: none while it is still starting (an item it
        got now would start only when it is up, in a burst with the items handed over meanwhile),
        else its remaining quota (unlimited: 1, as each paced message holds one item)."""
        quota = self.workers.quota
        return [
            0 if ready is None else (1 if quota is None else quota[w])
            for w, ready in enumerate(self.workers.ready_at)
        ]

    def _wait_for_ready(self, loads: list[int], credit: int) -> None:
        """No ready worker has room: if one that is still starting has, have the run look again
        (its ready report wakes the wait sooner), so a run whose workers are all starting waits
        instead of looking finished."""
        assert self._limiter is not None
        quota = self.workers.quota
        for w, ready in enumerate(self.workers.ready_at):
            if ready is None and loads[w] < credit and (quota is None or quota[w] > 0):
                self.paced_until = self._clock() + self._limiter.interval
                return

    def _paced(self) -> bool:
        """True (and ``paced_until`` set) when the rate limit holds the next hand-over back.

        The token is due one interval after the last hand-over, however late that was (or a little
        sooner, for workers behind a start gate), so every late wake-up lowers the long-run rate.
        So the run is told to look again a couple of
        milliseconds early, and the last stretch is waited for here, with a sleep (tens of
        microseconds late), rather than by the run's wait for reports (a few tenths of a
        millisecond late, up to a whole one for process workers, whose wait counts in whole
        milliseconds). Only on the real clock, and never in an event loop's thread (``async
        for`` moves the run on there, and must not block it).
        """
        assert self._limiter is not None
        now = self._clock()
        due = self._limiter.next_at(now)
        fine = due > now and self._clock is time.monotonic and not _in_event_loop()
        if fine and due - now <= _FINE_WAIT:
            time.sleep(due - now)
            now = self._clock()
            due = self._limiter.next_at(now)
        if due > now:
            # Look again a little early, for the sleep above to take the last stretch.
            self.paced_until = max(now, due - _FINE_WAIT) if fine else due
            return True
        return False

    def _send(self, msg_id: int, msg: Msg) -> None:
        if self._limiter is not None:
            self._limiter.try_acquire(self._clock())
        items = msg.items()
        self.workers.spend_quota(msg.worker, len(items))
        assert self._backend is not None
        began = self._clock()
        nbytes = self._backend.send(msg.worker, msg_id, msg.indices(), items)
        now = self._clock()
        self.stats.sent(msg.worker, len(items), nbytes, now - began, now)
        if self._budget.limit is not None:
            nbytes = self._budget.measure_items(items, nbytes)
        self._ledger.sent(msg, nbytes)


    # -- reports --------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        if isinstance(event, BatchDone):
            self._on_done(event)
        elif isinstance(event, WorkerLog):
            reemit(event.record)  # a worker's log record, in the caller's logging (_logs)
        elif isinstance(event, WorkerReady):
            now = self._clock()
            took = self.workers.mark_ready(event.worker, now)
            # (when the worker says it was ready, if it can: the caller may have been busy since)
            at = event.at if event.at is not None and self._clock is time.monotonic else now
            self.stats.worker_ready(event.worker, at, event.init_s, took - (now - at),
                                    not self._ledger.loads[event.worker])
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
        elif isinstance(event, WorkerRetired):
            self._on_retired(event)

    def _on_done(self, event: BatchDone) -> None:
        msg = self._ledger.pop(event.batch_id)
        if msg is None:
            return  # from a worker replaced since: its items were already accounted for
        self.workers.progress_made()
        self.workers.memory.after_batch(event.worker, self._clock())
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
        worker = event.worker
        self.stats.answered(worker, len(event.results), len(event.failures), event.elapsed, event.waited,
                            event.nbytes, msg.sent_at, self._clock(), not self._ledger.loads[worker])
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
            self.workers.replace(worker, kill=False, reason="max_tasks")
        self._settle([msg])

    def _on_retired(self, event: WorkerRetired) -> None:
        """The worker went over max_worker_memory and ended in order, after answering the batch it
        ran: what it still held runs elsewhere, free of charge, and a fresh worker takes its place."""
        held = self._ledger.take(event.worker)
        for _, msg in held:
            for pos in msg.item_positions():
                self._ledger.requeue(msg.batch, pos)
        self.workers.retire(event.worker, event.memory, event.peak)
        self._settle([m for _, m in held])

    def _on_death(self, event: WorkerDied) -> None:
        restart = self.options.restart_on_death
        why = self.workers.memory.explain(event.worker, event.pid, event.exitcode)
        kill = why if isinstance(why, MemoryKill) else None
        if kill is not None:
            event.cause = f"killed by the pool: its own memory crossed kill_worker_memory ({event.cause})"
        elif why is not None:
            event.cause = f"{event.cause}, {why}"
        held, error = _faults.settle_death(event, self._ledger, self.workers, restart=restart, memory=kill)
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
        stats = self.stats
        if stats.started_at is not None and stats.ended_at is None:
            stats.finish(self._clock())
            self.snapshot()
            self.workers.stats_done(stats)
        self._feeder.stop()
        self._ledger.clear()
        self.release.clear()
        if self.started:
            self._backend = None
            self.workers.release(self, clean=clean)
