"""Dispatch: sending work to workers with spare capacity, retries first, then new input.

:mod:`.admission` decides who may get how much; this module carries it out against the ledger,
the worker set and the backend, and keeps a reader in the background (:mod:`.input_thread`)
supplied with its limit: what the workers could take at once beyond what was handed out, never
past the window. A batch is cut from whatever the input has given, up to the batch size, so a slow
input never makes items wait for a batch to fill: the batch size follows the input rate as well as
the task time. The run's :class:`~.budget.ByteBudget` bounds it all in bytes as well.

Under ``max_per_second`` hand-overs are paced, so that items do not pile up in workers: every
hand-over takes the token of the run's :class:`~.rate_limit.RateLimiter`, and goes only to a worker
that has reported itself ready. An item given to a worker that is still starting would wait there
and start when the worker is up, together with the items the ready workers were given meanwhile: a
burst, whatever the pace of the hand-overs. (The starts themselves are spaced by the workers'
:class:`~.rate_limit.StartGate`, where the pool gives them one: a worker wakes up after a delay of
its own.) When the token is not due, or no ready worker has room while some worker is still
starting, :attr:`Dispatch.paced_until` tells the run how long it may wait before looking again (a
worker's ready report ends the wait sooner).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from .._backends.base import Backend
from .admission import Admission
from .budget import ByteBudget
from .feeder import Feeder, InputThread
from .ledger import Ledger, Msg
from .rate_limit import RateLimiter
from .release import Release
from .worker_set import WorkerSet

__all__ = ["Dispatch"]

#: a token due within this many seconds is waited for by a sleep in :meth:`Dispatch._paced`
_FINE_WAIT = 0.002

#: how much of the caller's lateness a hand-over to workers behind a start gate may make up for
_MAKE_UP = 0.002


def _in_event_loop() -> bool:
    """Whether this thread runs an event loop (which a sleep would block)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class Dispatch:
    """Fills workers for one run; it holds the run's parts, never the run itself."""

    def __init__(
        self,
        admission: Admission,
        ledger: Ledger,
        workers: WorkerSet,
        feeder: Feeder | InputThread,
        release: Release,
        backend: Backend,
        budget: ByteBudget,
    ) -> None:
        self.admission = admission
        self.ledger = ledger
        self.workers = workers
        self.feeder = feeder
        self.release = release
        self.backend = backend
        self.budget = budget
        self.clock: Callable[[], float] = backend.clock
        rate = admission.max_per_second
        # Workers that take their starts from the pool's StartGate space them exactly, whatever
        # the hand-overs do: the hand-overs may then make up for the caller's late wake-ups (a
        # few milliseconds at most, so that an item never waits long in a worker for its start).
        gated = any(spec.start_gate is not None for spec in workers.specs)
        self.limiter = None if rate is None else RateLimiter(rate, _MAKE_UP if gated else 0.0)
        #: when to look again, if the rate limit held an item back (the token is not due, or the
        #: only workers with room are still starting); else None
        self.paced_until: float | None = None

    def consumed(self) -> int:
        """Results the consumer has taken so far."""
        return self.release.released - len(self.release.ready)

    def fill(self) -> None:
        """Send work to workers with spare capacity: retries first, then new input."""
        admission, feeder = self.admission, self.feeder
        if feeder.fatal is not None:
            raise feeder.fatal  # e.g. SystemExit from the input: at once, as in the caller
        credit = admission.credit()
        cap = self.budget.batch_cap()  # big items: small batches, and windows to match
        window = admission.window(credit, cap)
        guard = admission.guards_overdue(credit)
        busy_for = self.workers.busy_for(self.clock(), self.ledger.in_flight.values()) if guard else None
        self.paced_until = None
        try:
            self._fill(credit, window, busy_for)
        finally:
            if feeder.streams:
                limit = admission.read_limit(credit, window, feeder.pulled, self.consumed(), cap)
                fit = self.budget.items_that_fit(self._held())
                if fit is not None:
                    limit = min(limit, feeder.pulled + feeder.buffered() + fit)
                feeder.allow(limit)

    def _held(self) -> float:
        """Bytes held now (see :class:`~.budget.ByteBudget`)."""
        ledger, feeder = self.ledger, self.feeder
        results = feeder.pulled - self.consumed() - ledger.items_in_flight - len(ledger.retry)
        return self.budget.held(ledger.bytes_in_flight, feeder.buffered(), max(0, results))

    def _fill(self, credit: int, window: int | None, busy_for: dict[int, float] | None) -> None:
        admission, ledger, workers, feeder, budget = (
            self.admission, self.ledger, self.workers, self.feeder, self.budget
        )
        bounded_in_bytes = budget.limit is not None
        loads = ledger.held if admission.counts_items else ledger.loads
        while True:
            paced = self.limiter is not None
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
                batch, pos = ledger.retry.popleft()
                self._send(*ledger.dispatch(worker, batch, [pos], self.clock()))
                continue
            if feeder.done:
                return
            room = None if window is None else window - (feeder.pulled - self.consumed())
            if room is not None and room <= 0:
                return
            left = credit - loads[worker] if admission.counts_items else None
            size = admission.batch_size(feeder.remaining(), workers.quota_left(worker), room, left)
            if bounded_in_bytes:
                size = budget.batch_items(size, self._held(), feeder.buffered())
                if size <= 0:
                    return  # the budget is full: wait for results to be consumed
            first = feeder.pulled
            # Whatever has been read, up to a batch: a slow input never makes items wait for more.
            items = feeder.take(size)
            if not items:
                return  # the input has nothing yet (its reader wakes the wait), or it ended
            batch = ledger.open_batch(range(first, first + len(items)), items)
            self._send(*ledger.dispatch(worker, batch, None, self.clock()))

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
        assert self.limiter is not None
        quota = self.workers.quota
        for w, ready in enumerate(self.workers.ready_at):
            if ready is None and loads[w] < credit and (quota is None or quota[w] > 0):
                self.paced_until = self.clock() + self.limiter.interval
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
        assert self.limiter is not None
        now = self.clock()
        due = self.limiter.next_at(now)
        fine = due > now and self.clock is time.monotonic and not _in_event_loop()
        if fine and due - now <= _FINE_WAIT:
            time.sleep(due - now)
            now = self.clock()
            due = self.limiter.next_at(now)
        if due > now:
            # Look again a little early, for the sleep above to take the last stretch.
            self.paced_until = max(now, due - _FINE_WAIT) if fine else due
            return True
        return False

    def _send(self, msg_id: int, msg: Msg) -> None:
        if self.limiter is not None:
            self.limiter.try_acquire(self.clock())
        items = msg.items()
        self.workers.spend_quota(msg.worker, len(items))
        nbytes = self.backend.send(msg.worker, msg_id, msg.indices(), items)
        if self.budget.limit is not None:
            nbytes = self.budget.measure_items(items, nbytes)
        self.ledger.sent(msg, nbytes)
