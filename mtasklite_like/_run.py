"""One pass of an input through the pool: the result iterator and the engine behind it.

The engine is driven by the consumer: each ``next()`` that finds no result ready sends batches
to workers with spare capacity (as far as the read-ahead window allows), then waits for what
workers report. Nothing runs in the background of the caller, so when the consumer stalls,
workers finish what they hold and wait; the input is never read further than the window.

Ordering is per batch: batches are cut from consecutive input items and numbered, complete
batches wait in ``_waiting`` until every earlier batch is released. A slow item therefore delays
only the release of later results; other workers keep taking batches while the window has room.

Faults are settled per item: a batch counts its items without a final outcome, and a message (what
one worker holds) is a whole batch or single items being retried. A death, a timeout or a task
error settles items one by one (retried, re-sent or failed), and a batch is released once none is
pending. See docs/fault_tolerance.md.
"""

from __future__ import annotations

import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._backends.base import BatchDone, Event, WorkerDied, WorkerInitFailed, WorkerReady
from ._batching import BatchSizer
from ._errors import DeferredExceptions, TaskTimeoutError, WorkerDiedError, WorkerInitError
from .constants import ExceptionBehaviour, WorkerDeath

if TYPE_CHECKING:
    from types import TracebackType

    from ._backends.base import Backend
    from ._pool import Pool

__all__ = ["ResultIterator"]

R = TypeVar("R")

#: ordered output keeps this many times the in-flight capacity as read-ahead, so workers keep
#: going while an earlier slow item holds back the release of results. Batched (fast) items need
#: far less slack than single slow ones, and their window is already large in items.
_ORDERED_SLACK = 8
_ORDERED_SLACK_BATCHED = 2
#: how long one wait for worker reports lasts before the engine looks around again
_POLL_SECONDS = 1.0
#: the longest wait between two calls of a run's heartbeat
HEARTBEAT_SECONDS = 0.2


class _Batch:
    """Consecutive input items, cut together and released together: the unit of ordering.

    ``pending`` counts items without a final outcome (running, or waiting for a retry); the batch
    is complete, and can be released, when it reaches zero.
    """

    __slots__ = ("errors", "first", "history", "id", "items", "pending", "results")

    def __init__(self, batch_id: int, first: int, items: list[Any]) -> None:
        self.id = batch_id
        self.first = first
        self.items = items
        self.results: list[Any] | None = None
        self.errors: dict[int, BaseException] | None = None  # final failures, by position
        self.history: dict[int, list[BaseException]] | None = None  # failed attempts, by position
        self.pending = len(items)


class _Msg:
    """What one worker holds: a whole batch, or single items of a batch being retried."""

    __slots__ = ("batch", "positions", "sent_at", "worker")

    def __init__(self, worker: int, batch: _Batch, positions: list[int] | None, sent_at: float) -> None:
        self.worker = worker
        self.batch = batch
        self.positions = positions  # None: the whole batch
        self.sent_at = sent_at

    def item_positions(self) -> Iterable[int]:
        return range(len(self.batch.items)) if self.positions is None else self.positions


class _Run:
    """The engine of one result iterator. It never refers back to the iterator, so dropping the
    iterator triggers its finalizer, which stops this run."""

    def __init__(self, pool: Pool, iterable: Any) -> None:
        self._pool = pool
        self._iter = iter(iterable)
        try:
            self.total: int | None = len(iterable)
        except TypeError:
            self.total = None
        self.ready: deque[Any] = deque()
        self._ordered = not pool.is_unordered
        self._mode = pool.exception_behavior
        self._bounded = pool.bounded
        self._retries = pool.retries
        self._task_timeout = pool.task_timeout
        self._init_timeout = pool.init_timeout
        death = pool.on_worker_death
        if death is None:
            # Under 'ignore' a death is one more per-item error; elsewhere it stops the run.
            death = WorkerDeath.RESTART if self._mode == ExceptionBehaviour.IGNORE else WorkerDeath.RAISE
        self._restart_on_death = death == WorkerDeath.RESTART
        self._started = False
        self.finished = False
        self._backend: Backend | None = None
        self._fixed_credit: int | None = 1
        self._sizer: BatchSizer | None = None
        # input
        self._pulled = 0
        self._input_done = False
        self._input_error: BaseException | None = None
        # in flight and waiting for release
        self._next_batch = 0
        self._next_msg = 0
        self._in_flight: dict[int, _Msg] = {}
        self._retry: deque[tuple[_Batch, int]] = deque()
        self._loads: list[int] = []
        self._waiting: dict[int, _Batch] = {}  # complete, ordered, behind an earlier batch
        self._next_release = 0
        self._outstanding = 0  # pulled, not yet released into ``ready``
        # worker health; the two lists are the pool's (see _start)
        self._started_at: list[float] = []
        self._ready_at: list[float | None] = []
        self._deaths_in_a_row = 0
        # errors
        self.failure_count = 0  # task failures released so far (for progress displays)
        self._deferred: list[BaseException] = []
        self._pending_error: BaseException | None = None
        #: called at least every HEARTBEAT_SECONDS while the caller waits for results (a progress
        #: bar refreshes its clock with it); None: nothing to call
        self.heartbeat: Callable[[], None] | None = None
        self._last_heartbeat = time.monotonic()

    # -- consumer side ----------------------------------------------------------------------------

    def next_slow(self) -> Any:
        """Produce the next result when none is ready: drive the pool until one is."""
        while True:
            if self.ready:
                return self.ready.popleft()
            if self._pending_error is not None:
                error, self._pending_error = self._pending_error, None
                raise error
            if self.finished:
                raise StopIteration
            if not self._started:
                # Outside the try below: a refused start (the pool is busy with another run)
                # leaves this run untouched, so it can start once the other one is done.
                self._start()
            try:
                self._step()
            except BaseException:
                # Ctrl-C while waiting, or an internal failure: never leave workers behind.
                self.close()
                raise

    def close(self) -> None:
        """Stop the run now; workers still busy with its items are stopped too."""
        if not self.finished:
            self._finish(clean=False)

    # -- engine -------------------------------------------------------------------------------------

    def _start(self) -> None:
        pool = self._pool
        backend = pool._acquire_backend(self)
        self._backend = backend
        self._started = True
        n = backend.n_workers
        self._loads = [0] * n
        # shared with the pool: workers kept between runs keep their start and ready times
        self._started_at = pool._started_at
        self._ready_at = pool._ready_at
        if not backend.batches:
            self._fixed_credit = 1
            self._sizer = BatchSizer(1, max_size=1, adaptive=False)
        elif self._task_timeout is not None:
            # A deadline is per item, and runs from when a worker starts the item: so each worker
            # holds exactly one item, and the parent knows when it started.
            self._fixed_credit = 1
            self._sizer = BatchSizer(n, max_size=1, adaptive=False)
        else:
            self._fixed_credit = pool.chunk_prefill_ratio
            self._sizer = BatchSizer(n, max_size=pool.chunk_size, total=self.total)

    def _credit(self) -> int:
        """How many batches one worker may hold: one running, possibly one waiting behind it.

        A waiting batch saves the round trip to the caller between two batches, which matters for
        tiny tasks and for uniform ones; but it waits behind whatever runs. So when tasks are slow
        enough to travel one by one, a worker holds a second item only while task durations are
        uniform and its current task is not overdue (see ``_fill``); with mixed durations each
        worker holds a single item and no item waits behind a slow one.
        """
        if self._fixed_credit is not None:
            return self._fixed_credit
        sizer = self._sizer
        return 2 if sizer.size() > 1 or sizer.uniform else 1  # type: ignore[union-attr]

    def _window(self, credit: int) -> int | None:
        if not self._bounded:
            return None
        size = self._sizer.size()  # type: ignore[union-attr]
        window = len(self._loads) * credit * size
        if not self._ordered or not self._backend.batches:  # type: ignore[union-attr]
            return window
        return window * (_ORDERED_SLACK if size <= 1 else _ORDERED_SLACK_BATCHED)

    def _step(self) -> None:
        self._fill()
        if not self._in_flight and not self._retry:
            if self._input_done:
                self._complete()
                return
            raise RuntimeError("mtasklite_like internal error: nothing in flight and input not done")
        assert self._backend is not None
        wait = self._wait_seconds()
        if self.heartbeat is not None:
            wait = min(wait, HEARTBEAT_SECONDS)
        events = self._backend.recv(wait)
        if self.heartbeat is not None:
            now = time.monotonic()
            if now - self._last_heartbeat >= HEARTBEAT_SECONDS:
                self._last_heartbeat = now
                self.heartbeat()
        for event in events:
            self._handle(event)
            if self.finished:
                return
        if self._task_timeout is not None or self._init_timeout is not None:
            self._check_deadlines()
        self._fill()

    def _wait_seconds(self) -> float:
        """How long to wait for reports: until the nearest deadline, at most _POLL_SECONDS."""
        wait = _POLL_SECONDS
        now = time.monotonic()
        if self._task_timeout is not None and self._backend.batches:  # type: ignore[union-attr]
            for msg in self._in_flight.values():
                ready = self._ready_at[msg.worker]
                if ready is not None:
                    wait = min(wait, max(msg.sent_at, ready) + self._task_timeout - now)
        if self._init_timeout is not None:
            for w, ready in enumerate(self._ready_at):
                if ready is None:
                    wait = min(wait, self._started_at[w] + self._init_timeout - now)
        return max(wait, 0.0)

    def _fill(self) -> None:
        """Send work to workers with spare capacity: retries first, then new input."""
        if self.finished:
            return
        sizer = self._sizer
        assert sizer is not None
        loads = self._loads
        quota = self._pool._quota
        credit = self._credit()
        window = self._window(credit)
        # Single slow items: never queue one behind a task that is taking unusually long.
        guard = credit > 1 and sizer.size() <= 1 and self._fixed_credit is None
        busy_since = self._busy_since() if guard else None
        now = time.monotonic()
        while True:
            # The least loaded worker with room for another batch (and items left in its quota).
            worker, best = -1, credit
            for w, load in enumerate(loads):
                if load < best and (quota is None or quota[w] > 0):
                    if load and busy_since is not None and sizer.overdue(now - busy_since.get(w, now)):
                        continue
                    worker, best = w, load
            if worker < 0:
                return
            if self._retry:
                # A retried item travels alone, so an item that kills its worker cannot take
                # innocent neighbours down with it a second time.
                batch, pos = self._retry.popleft()
                self._send(worker, batch, [pos])
                continue
            if self._input_done:
                return
            remaining = None if self.total is None else self.total - self._pulled
            size = sizer.size(remaining)
            if quota is not None:
                size = min(size, quota[worker])
            if window is not None:
                room = window - self._outstanding - len(self.ready)
                if room <= 0:
                    return
                size = min(size, room)
            items: list[Any] = []
            try:
                items.extend(islice(self._iter, size))
            except Exception as exc:
                # The input itself failed: what it gave before still runs; the error comes after.
                self._input_error = exc
                self._input_done = True
            else:
                if len(items) < size:
                    self._input_done = True
            if items:
                batch = _Batch(self._next_batch, self._pulled, items)
                self._next_batch += 1
                self._pulled += len(items)
                self._outstanding += len(items)
                self._send(worker, batch, None)

    def _busy_since(self) -> dict[int, float]:
        """For each busy worker, when it (probably) started its current task."""
        since: dict[int, float] = {}
        for msg in self._in_flight.values():
            ready = self._ready_at[msg.worker] or msg.sent_at
            start = max(msg.sent_at, ready)
            if start < since.get(msg.worker, float("inf")):
                since[msg.worker] = start
        return since

    def _send(self, worker: int, batch: _Batch, positions: list[int] | None) -> None:
        if positions is None:
            items, first = batch.items, batch.first
        else:
            items, first = [batch.items[p] for p in positions], batch.first + positions[0]
        msg_id = self._next_msg
        self._next_msg += 1
        self._in_flight[msg_id] = _Msg(worker, batch, positions, time.monotonic())
        self._loads[worker] += 1
        quota = self._pool._quota
        if quota is not None:
            quota[worker] -= len(items)
        self._backend.send(worker, msg_id, first, items)  # type: ignore[union-attr]

    # -- reports --------------------------------------------------------------------------------------

    def _handle(self, event: Event) -> None:
        kind = type(event)
        if kind is BatchDone:
            self._on_done(event)  # type: ignore[arg-type]
        elif kind is WorkerReady:
            now = self._ready_at[event.worker] = time.monotonic()
            if self._init_timeout is not None and now - self._started_at[event.worker] > self._init_timeout:
                # Ready, but late: with n_jobs=1 the object is built in the caller, where nothing
                # can interrupt it, so the overrun is found here.
                self._fail(self._init_timeout_error(event.worker))
        elif kind is WorkerInitFailed:
            error = WorkerInitError(
                f"worker {event.worker} failed to start: {type(event.error).__name__}: {event.error}",
                worker_index=event.worker,
            )
            error.__cause__ = event.error
            self._fail(error)
        elif kind is WorkerDied:
            self._on_death(event)  # type: ignore[arg-type]

    def _on_done(self, event: BatchDone) -> None:
        msg = self._in_flight.pop(event.batch_id, None)
        if msg is None:
            return  # from a worker replaced since: its items were already accounted for
        worker = msg.worker
        self._loads[worker] -= 1
        self._deaths_in_a_row = 0
        batch = msg.batch
        results = event.results
        self._sizer.observe(len(results), event.elapsed)  # type: ignore[union-attr]
        failures = event.failures
        if self._task_timeout is not None and event.elapsed > self._task_timeout:
            # The item overran but finished before its deadline was checked (the caller was busy
            # elsewhere, or n_jobs=1 where nothing can interrupt a task): same outcome as a kill.
            positions = enumerate(msg.item_positions())
            failures = [(k, self._timeout_error(batch, pos, worker, event.elapsed)) for k, pos in positions]
        if msg.positions is None:
            batch.results = results
            batch.pending -= len(results)
            for k, exc in failures:
                self._item_failed(batch, k, exc)
        else:
            if batch.results is None:  # no whole-batch report came back (its worker died)
                batch.results = [None] * len(batch.items)
            for k, pos in enumerate(msg.positions):
                batch.results[pos] = results[k]
            batch.pending -= len(results)
            for k, exc in failures:
                self._item_failed(batch, msg.positions[k], exc)
        quota = self._pool._quota
        if quota is not None and quota[worker] <= 0 and not self._loads[worker]:
            # The worker has done its share and holds nothing: replace it with a fresh one.
            self._replace(worker, kill=False)
        self._settle(batch)

    def _on_death(self, event: WorkerDied) -> None:
        worker = event.worker
        held = self._take_messages(worker)
        if not self._restart_on_death:
            self._fail(self._death_error(event, held))
            return
        culprit = _culprit(event, held)
        # Deaths blamed on an item are bounded by its retries; deaths nobody can be blamed for
        # (a crash while building the object, say) could repeat forever, so they are counted.
        if culprit is None:
            self._deaths_in_a_row += 1
        if self._deaths_in_a_row > max(3, 2 * len(self._loads)):
            error = self._death_error(event, held)
            error.args = (
                f"workers keep dying ({self._deaths_in_a_row} deaths in a row, none while running an "
                "item, none finished a batch); "
                f"the last: {error.args[0]}",
            )
            self._fail(error)
            return
        self._replace(worker, kill=True)
        running_msg, running_k = event.running or (-1, -1)
        if culprit is None:
            # Not known which item was running (it died between items, or before reporting):
            # every item it held is suspect, so each gets the error (or its retries).
            running_msg = None
        what = f"while running input item #{culprit}" if culprit is not None else "between items"
        died = f"worker {worker} (pid {event.pid}) died unexpectedly ({event.cause}) {what}"
        for msg_id, msg in held:
            batch = msg.batch
            for k, pos in enumerate(msg.item_positions()):
                index = batch.first + pos
                if running_msg is not None and not (msg_id == running_msg and k == running_k):
                    # Not the culprit: either never started, or it ran earlier in the same batch
                    # and its result died with the worker. Either way it goes to another worker,
                    # free of charge (a finished result must not be lost; see fault_tolerance.md).
                    self._retry.append((batch, pos))
                    continue
                batch.pending -= 1
                self._item_failed(batch, pos, WorkerDiedError(
                    died,
                    worker_index=worker,
                    pid=event.pid,
                    exitcode=event.exitcode,
                    indices=[index],
                    items=[batch.items[pos]],
                ))
        for batch in {id(m.batch): m.batch for _, m in held}.values():
            self._settle(batch)

    def _check_deadlines(self) -> None:
        now = time.monotonic()
        if self._init_timeout is not None:
            for w, ready in enumerate(self._ready_at):
                if ready is None and now - self._started_at[w] > self._init_timeout:
                    self._fail(self._init_timeout_error(w))
                    return
        timeout = self._task_timeout
        if timeout is None or not self._backend.batches:  # type: ignore[union-attr]
            return
        overdue = {
            m.worker
            for m in self._in_flight.values()
            if self._ready_at[m.worker] is not None
            and now - max(m.sent_at, self._ready_at[m.worker]) >= timeout  # type: ignore[type-var]
        }
        for worker in overdue:
            held = self._take_messages(worker)
            self._replace(worker, kill=True)
            for _, msg in held:
                for pos in msg.item_positions():
                    msg.batch.pending -= 1
                    self._item_failed(msg.batch, pos, self._timeout_error(msg.batch, pos, worker))
            for batch in {id(m.batch): m.batch for _, m in held}.values():
                self._settle(batch)
            if self.finished:
                return

    def _init_timeout_error(self, worker: int) -> WorkerInitError:
        return WorkerInitError(
            f"worker {worker} did not finish starting (initializer and object construction) "
            f"within init_timeout={self._init_timeout} s",
            worker_index=worker,
        )

    def _timeout_error(
        self, batch: _Batch, pos: int, worker: int, elapsed: float | None = None
    ) -> TaskTimeoutError:
        head = f"input item #{batch.first + pos} ran longer than task_timeout={self._task_timeout} s"
        if elapsed is not None:
            return TaskTimeoutError(f"{head}: it finished after {elapsed:.3g} s, and its result was dropped")
        how = "abandoned (a thread cannot be killed)" if self._pool.use_threads else "killed"
        return TaskTimeoutError(f"{head}; worker {worker} was {how} and replaced")

    # -- bookkeeping ------------------------------------------------------------------------------------

    def _take_messages(self, worker: int) -> list[tuple[int, _Msg]]:
        """Remove and return ``(message id, message)`` for what a (dead or stuck) worker holds."""
        held = [(i, m) for i, m in self._in_flight.items() if m.worker == worker]
        for msg_id, _ in held:
            del self._in_flight[msg_id]
        self._loads[worker] = 0
        return held

    def _replace(self, worker: int, *, kill: bool) -> None:
        self._backend.replace_worker(worker, kill=kill)  # type: ignore[union-attr]
        self._started_at[worker] = time.monotonic()
        self._ready_at[worker] = None
        quota = self._pool._quota
        if quota is not None:
            quota[worker] = self._pool.max_tasks_per_worker  # type: ignore[assignment]

    def _item_failed(self, batch: _Batch, pos: int, exc: BaseException) -> None:
        """An item failed: queue it again while it has retries left, else record the failure."""
        if batch.results is None:
            batch.results = [None] * len(batch.items)
        history = batch.history.get(pos, []) if batch.history else []
        if len(history) < self._retries:
            if batch.history is None:
                batch.history = {}
            batch.history[pos] = [*history, exc]
            batch.pending += 1
            self._retry.append((batch, pos))
            return
        if self._retries:
            _record_attempts(exc, history)
        if batch.errors is None:
            batch.errors = {}
        batch.errors[pos] = exc
        batch.results[pos] = exc

    def _settle(self, batch: _Batch) -> None:
        """After a report about ``batch``: release it if complete; raise early in 'immediate' mode."""
        if self.finished:
            return
        if batch.pending == 0:
            self._on_complete(batch)
        elif batch.errors and self._mode == ExceptionBehaviour.IMMEDIATE:
            # Other items of the batch are still running or retrying: 'immediate' means now.
            self._outstanding -= len(batch.items)
            self._fail(batch.errors[min(batch.errors)])

    def _on_complete(self, batch: _Batch) -> None:
        if not self._ordered:
            self._release(batch)
        elif batch.id == self._next_release:
            self._release(batch)
            self._next_release += 1
            waiting = self._waiting
            while self._next_release in waiting and not self.finished:
                self._release(waiting.pop(self._next_release))
                self._next_release += 1
        elif batch.errors and self._mode == ExceptionBehaviour.IMMEDIATE:
            # Do not wait for the earlier batches: 'immediate' means now.
            self._outstanding -= len(batch.items)
            self._fail(batch.errors[min(batch.errors)])
        else:
            self._waiting[batch.id] = batch

    def _release(self, batch: _Batch) -> None:
        """Move a complete batch into the ready queue, applying the exception behaviour."""
        self._outstanding -= len(batch.items)
        results = batch.results
        assert results is not None
        if batch.errors:
            failures = sorted(batch.errors.items())
            self.failure_count += len(failures)
            if self._mode == ExceptionBehaviour.IMMEDIATE:
                pos, exc = failures[0]
                self.ready.extend(results[:pos])
                self._fail(exc)
                return
            if self._mode == ExceptionBehaviour.DEFERRED:
                self._deferred.extend(exc for _, exc in failures)
        self.ready.extend(results)

    def _death_error(self, event: WorkerDied, held: list[tuple[int, _Msg]]) -> WorkerDiedError:
        indices = [m.batch.first + p for _, m in held for p in m.item_positions()]
        items = [m.batch.items[p] for _, m in held for p in m.item_positions()]
        shown = ", ".join(f"#{i}: {item!r:.60}" for i, item in zip(indices[:5], items[:5]))
        more = f" and {len(indices) - 5} more" if len(indices) > 5 else ""
        holding = f"while holding input item(s) {shown}{more}" if indices else "while idle"
        culprit = _culprit(event, held)
        if culprit is not None:
            holding = f"while running input item #{culprit} ({holding})"
        hint = "" if self._restart_on_death else (
            ". Pass on_worker_death='restart' to replace dead workers and go on"
        )
        return WorkerDiedError(
            f"worker {event.worker} (pid {event.pid}) died unexpectedly ({event.cause}) {holding}{hint}",
            worker_index=event.worker,
            pid=event.pid,
            exitcode=event.exitcode,
            indices=indices,
            items=items,
        )

    def _fail(self, error: BaseException) -> None:
        """Stop the run; ``error`` is raised once the results already released are consumed."""
        self._pending_error = error
        self._finish(clean=False)

    def _complete(self) -> None:
        """Everything was pulled, processed and released: end the run."""
        if self._input_error is not None:
            self._pending_error = self._input_error
        elif self._deferred:
            self._pending_error = DeferredExceptions(*self._deferred)
        self._finish(clean=True)

    def _finish(self, *, clean: bool) -> None:
        self.finished = True
        self._input_done = True
        self._in_flight.clear()
        self._waiting.clear()
        self._retry.clear()
        if self._started:
            self._backend = None
            self._pool._release_backend(self, clean=clean)


def _culprit(event: WorkerDied, held: list[tuple[int, _Msg]]) -> int | None:
    """Input index of the item a dead worker was running, when it is known."""
    running_msg, running_k = event.running or (-1, -1)
    for msg_id, msg in held:
        if msg_id == running_msg:
            positions = list(msg.item_positions())
            if 0 <= running_k < len(positions):
                return msg.batch.first + positions[running_k]
    return None


def _record_attempts(exc: BaseException, history: list[BaseException]) -> None:
    """Note on the final error how many attempts failed, and keep the earlier errors."""
    attempts = len(history) + 1
    try:
        exc.attempts = attempts  # type: ignore[attr-defined]
        exc.previous_errors = history  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if hasattr(exc, "add_note"):
        kinds = ", ".join(type(e).__name__ for e in history)
        exc.add_note(f"failed on all {attempts} attempts (earlier: {kinds})")


class ResultIterator(Generic[R]):
    """Lazy results of ``pool(iterable)``: an iterator, a context manager, sized for sized input.

    Leaving the ``with`` block, calling :meth:`close`, or dropping the last reference stops the
    workers still busy with this input. ``parent_obj`` is the pool.
    """

    def __init__(self, pool: Pool, iterable: Any) -> None:
        self.parent_obj = pool
        run = _Run(pool, iterable)
        self._run = run
        self._ready = run.ready
        # Stops the run when this iterator is garbage-collected (e.g. after ``break`` in a for loop
        # over ``pool(items)``), and at interpreter exit. The callback must not refer to ``self``.
        self._finalizer = weakref.finalize(self, run.close)

    def __iter__(self) -> ResultIterator[R]:
        return self

    def __next__(self) -> R:
        # Not a try/except IndexError: an exception raised by next_slow() inside the handler
        # would carry the IndexError as its __context__ and print it above the real traceback.
        ready = self._ready
        if ready:
            return ready.popleft()
        return self._run.next_slow()

    def __len__(self) -> int:
        if self._run.total is None:
            raise TypeError("the input of this result iterator has no len(); pass a sized input or a total")
        return self._run.total

    def __length_hint__(self) -> int:
        return self._run.total or 0

    def close(self) -> None:
        """Stop now: workers busy with this input are stopped, results not yet read are dropped."""
        self._run.close()

    def __enter__(self) -> ResultIterator[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._run.close()
        # The ``with pool(items)`` block owns a pool that is not itself in a ``with`` block.
        self.parent_obj._close_if_unmanaged()

    def __repr__(self) -> str:
        state = "finished" if self._run.finished else "running"
        return f"<ResultIterator of {self.parent_obj!r}, {state}>"
