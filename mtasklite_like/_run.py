"""One pass of an input through the pool: the result iterator and the engine behind it.

The engine is driven by the consumer: each ``next()`` that finds no result ready sends batches
to workers with spare capacity (as far as the read-ahead window allows), then waits for what
workers report. Nothing runs in the background of the caller, so when the consumer stalls,
workers finish what they hold and wait; the input is never read further than the window.

Ordering is per batch: batches are cut from consecutive input items and numbered, finished
batches wait in ``_done`` until every earlier batch is released. A slow item therefore delays
only the release of later results; other workers keep taking batches while the window has room.
"""

from __future__ import annotations

import weakref
from collections import deque
from itertools import islice
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from ._backends.base import BatchDone, Event, WorkerDied, WorkerInitFailed
from ._batching import BatchSizer
from ._errors import DeferredExceptions, WorkerDiedError, WorkerInitError
from .constants import ExceptionBehaviour

if TYPE_CHECKING:
    from types import TracebackType

    from ._backends.base import Backend
    from ._pool import Pool

__all__ = ["ResultIterator"]

R = TypeVar("R")

#: ordered output keeps this many times the in-flight capacity as read-ahead, so workers keep
#: going while an earlier slow item holds back the release of results
_ORDERED_SLACK = 8
#: how long one wait for worker reports lasts before the engine looks around again
_POLL_SECONDS = 1.0


class _InFlight:
    __slots__ = ("first_index", "items", "worker")

    def __init__(self, worker: int, first_index: int, items: list[Any]) -> None:
        self.worker = worker
        self.first_index = first_index
        self.items = items


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
        self._in_flight: dict[int, _InFlight] = {}
        self._loads: list[int] = []
        self._done: dict[int, tuple[list[Any], list[tuple[int, BaseException]]]] = {}
        self._next_release = 0
        self._outstanding = 0  # pulled, not yet released into ``ready``
        # errors
        self.failure_count = 0  # task failures released so far (for progress displays)
        self._deferred: list[BaseException] = []
        self._pending_error: BaseException | None = None

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
        if backend.batches:
            self._fixed_credit = pool.chunk_prefill_ratio
            self._sizer = BatchSizer(n, max_size=pool.chunk_size, total=self.total)
        else:
            self._fixed_credit = 1
            self._sizer = BatchSizer(1, max_size=1, adaptive=False)

    def _credit(self) -> int:
        """How many batches one worker may hold: one running, possibly one waiting behind it.

        A waiting batch keeps a worker busy while the caller is away, which matters for tiny
        tasks; but it waits behind whatever runs, so when tasks are slow enough to travel one by
        one, each worker holds a single item and no item ever waits behind a slow one.
        """
        if self._fixed_credit is not None:
            return self._fixed_credit
        return 1 if self._sizer.size() <= 1 else 2  # type: ignore[union-attr]

    def _window(self, credit: int) -> int | None:
        if not self._bounded:
            return None
        window = len(self._loads) * credit * self._sizer.size()  # type: ignore[union-attr]
        return window * _ORDERED_SLACK if self._ordered and self._backend.batches else window  # type: ignore[union-attr]

    def _step(self) -> None:
        self._fill()
        if not self._in_flight:
            if self._input_done:
                self._complete()
                return
            raise RuntimeError("mtasklite_like internal error: nothing in flight and input not done")
        assert self._backend is not None
        for event in self._backend.recv(_POLL_SECONDS):
            self._handle(event)
            if self.finished:
                return
        self._fill()

    def _fill(self) -> None:
        """Send batches to workers with spare capacity while the window and the input allow."""
        if self._input_done or self.finished:
            return
        backend = self._backend
        sizer = self._sizer
        assert backend is not None and sizer is not None
        loads = self._loads
        quota = self._pool._quota
        credit = self._credit()
        window = self._window(credit)
        while True:
            # The least loaded worker with room for another batch (and items left in its quota).
            worker, best = -1, credit
            for w, load in enumerate(loads):
                if load < best and (quota is None or quota[w] > 0):
                    worker, best = w, load
            if worker < 0:
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
                batch_id = self._next_batch
                self._next_batch += 1
                first = self._pulled
                self._pulled += len(items)
                self._outstanding += len(items)
                self._in_flight[batch_id] = _InFlight(worker, first, items)
                loads[worker] += 1
                if quota is not None:
                    quota[worker] -= len(items)
                backend.send(worker, batch_id, first, items)
            if self._input_done:
                return

    def _handle(self, event: Event) -> None:
        if type(event) is BatchDone:
            entry = self._in_flight.pop(event.batch_id)
            self._loads[entry.worker] -= 1
            quota = self._pool._quota
            if quota is not None and quota[entry.worker] <= 0 and not self._loads[entry.worker]:
                # The worker has done its share and holds nothing: replace it with a fresh one.
                self._backend.replace_worker(entry.worker)  # type: ignore[union-attr]
                quota[entry.worker] = self._pool.max_tasks_per_worker  # type: ignore[assignment]
            self._sizer.observe(len(entry.items), event.elapsed)  # type: ignore[union-attr]
            if not self._ordered:
                self._release(event.results, event.failures)
            elif event.batch_id == self._next_release:
                self._release(event.results, event.failures)
                self._next_release += 1
                done = self._done
                while self._next_release in done and not self.finished:
                    self._release(*done.pop(self._next_release))
                    self._next_release += 1
            elif event.failures and self._mode == ExceptionBehaviour.IMMEDIATE:
                # Do not wait for the earlier batches: 'immediate' means now.
                self._outstanding -= len(event.results)
                self._fail(event.failures[0][1])
            else:
                self._done[event.batch_id] = (event.results, event.failures)
        elif type(event) is WorkerInitFailed:
            error = WorkerInitError(
                f"worker {event.worker} failed to start: {type(event.error).__name__}: {event.error}",
                worker_index=event.worker,
            )
            error.__cause__ = event.error
            self._fail(error)
        elif type(event) is WorkerDied:
            self._fail(self._death_error(event))

    def _release(self, results: list[Any], failures: list[tuple[int, BaseException]]) -> None:
        """Move a finished batch into the ready queue, applying the exception behaviour."""
        self._outstanding -= len(results)
        if failures:
            self.failure_count += len(failures)
            if self._mode == ExceptionBehaviour.IMMEDIATE:
                pos, exc = failures[0]
                self.ready.extend(results[:pos])
                self._fail(exc)
                return
            for pos, exc in failures:
                results[pos] = exc
            if self._mode == ExceptionBehaviour.DEFERRED:
                self._deferred.extend(exc for _, exc in failures)
        self.ready.extend(results)

    def _death_error(self, event: WorkerDied) -> WorkerDiedError:
        held = [b for b in self._in_flight.values() if b.worker == event.worker]
        indices = [b.first_index + i for b in held for i in range(len(b.items))]
        items = [item for b in held for item in b.items]
        shown = ", ".join(f"#{i}: {item!r:.60}" for i, item in zip(indices[:5], items[:5]))
        more = f" and {len(indices) - 5} more" if len(indices) > 5 else ""
        holding = f"while holding input item(s) {shown}{more}" if indices else "while idle"
        return WorkerDiedError(
            f"worker {event.worker} (pid {event.pid}) died unexpectedly ({event.cause}) {holding}",
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
        self._done.clear()
        if self._started:
            self._backend = None
            self._pool._release_backend(self, clean=clean)


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
