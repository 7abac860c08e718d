"""Dispatch: sending work to workers with spare capacity, retries first, then new input.

:mod:`._admission` decides who may get how much; this module carries it out against the ledger,
the worker set and the backend, and keeps a reader in the background (:mod:`._input_thread`)
supplied with its limit: what the workers could take at once beyond what was handed out, never
past the window. A batch is cut from whatever the input has given, up to the batch size, so a slow
input never makes items wait for a batch to fill: the batch size follows the input rate as well as
the task time. The run's :class:`~._budget.ByteBudget` bounds it all in bytes as well.

Under ``max_per_second`` every hand-over takes a token from the run's :class:`~._rate_limit.RateLimiter`;
when none is due, :attr:`Dispatch.paced_until` tells the run how long to wait.
"""

from __future__ import annotations

from collections.abc import Callable

from ._admission import Admission
from ._backends.base import Backend
from ._budget import ByteBudget
from ._feeder import Feeder, InputThread
from ._ledger import Ledger, Msg
from ._rate_limit import RateLimiter
from ._release import Release
from ._worker_set import WorkerSet

__all__ = ["Dispatch"]


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
        self.limiter = None if rate is None else RateLimiter(rate)
        #: when the next item may be handed over, if the rate limit held one back; else None
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
        """Bytes held now (see :class:`~._budget.ByteBudget`)."""
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
            worker = admission.pick_worker(loads, credit, workers.quota, busy_for)
            if worker < 0:
                return
            if self.limiter is not None and (ledger.retry or not feeder.done) and self._paced():
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

    def _paced(self) -> bool:
        """True (and ``paced_until`` set) when the rate limit holds the next hand-over back."""
        assert self.limiter is not None
        now = self.clock()
        due = self.limiter.next_at(now)
        if due > now:
            self.paced_until = due
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
