"""``ResultIterator``: what ``pool(iterable)`` returns, and the small API wrappers build on."""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from itertools import chain
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from .._options import RunOptions
from .async_results import (
    GENERATORS_RESUME_FASTER,
    AsyncDriver,
    AsyncInput,
    async_results,
    check_not_in_running_loop,
)
from .handover import chunks, take_all
from .release import Sink
from .run import Run
from .stats import RunStats
from .worker_set import WorkerSet

if TYPE_CHECKING:
    from .._pool import Pool

__all__ = ["ResultIterator"]

R = TypeVar("R")


class _Stopper:
    """What stops a run, for the iterator's finalizer: it must not refer to the iterator."""

    __slots__ = ("async_input", "driver", "run")

    def __init__(self, run: Run, async_input: AsyncInput | None) -> None:
        self.run = run
        self.async_input = async_input
        self.driver: AsyncDriver | None = None

    def close(self) -> None:
        if self.driver is not None:
            self.driver.close()  # the run may be in the helper's hands right now
        else:
            self.run.close()
        if self.async_input is not None:
            self.async_input.close()


class ResultIterator(Generic[R]):
    """Lazy results of ``pool(iterable)``: an iterator, a context manager, sized for sized input.

    Leaving the ``with`` block, calling [`close`][mtasklite_like.ResultIterator.close], or dropping the last
    reference stops the workers still busy with this input. ``parent_obj`` is the pool.

    It is also an async iterator: ``async for result in pool(items)`` inside an event loop never blocks the
    loop (see docs/async.md); ``async with`` and [`aclose`][mtasklite_like.ResultIterator.aclose] stop it
    without blocking.

    For progress displays and wrappers: [`total`][mtasklite_like.ResultIterator.total],
    [`failure_count`][mtasklite_like.ResultIterator.failure_count],
    [`finished`][mtasklite_like.ResultIterator.finished],
    [`take_ready`][mtasklite_like.ResultIterator.take_ready],
    [`heartbeat`][mtasklite_like.ResultIterator.heartbeat] and
    [`partial`][mtasklite_like.ResultIterator.partial].
    """

    def __init__(
        self,
        pool: Pool[Any],
        options: RunOptions,
        workers: WorkerSet,
        iterable: Iterable[Any],
        sink: Sink | None = None,
    ) -> None:
        self.parent_obj = pool
        async_input = iterable if isinstance(iterable, AsyncInput) else None
        run = Run(options, workers, iterable, sink)
        self._run = run
        self._ready = run.ready
        self._async_input = async_input
        #: why a blocking wait inside a running event loop is refused (None: it is allowed)
        self._loop_guard = (
            "runs coroutine workers" if options.concurrency
            else "reads an async iterable" if async_input is not None else None
        )
        self._stopper = _Stopper(run, async_input)
        # Stops the run when this iterator is garbage-collected (e.g. after ``break`` in a for loop
        # over ``pool(items)``), and at interpreter exit. The callback must not refer to ``self``.
        self._finalizer = weakref.finalize(self, self._stopper.close)

    def __iter__(self) -> Iterator[R]:
        """The results, for a ``for`` loop (or ``list()``): each batch's results are handed over
        in C (``itertools.chain`` over a list of them), so reading a result costs no Python call.

        ``next()`` on this object and every loop over it read the same results: whatever a loop
        left unread (after ``break``) comes first for the next reader.
        """
        run = self._run
        return chain.from_iterable(chunks(self, run, self._ready, run.next_slow, self._loop_guard))

    def __next__(self) -> R:
        unread = self._run.unread
        if unread is not None:
            for value in unread:  # what a for loop over this iterator left
                return value  # type: ignore[no-any-return]
            self._run.unread = None
        # Not a try/except IndexError: an exception raised by next_slow() inside the handler
        # would carry the IndexError as its __context__ and print it above the real traceback.
        ready = self._ready
        if ready:
            return ready.popleft()  # type: ignore[no-any-return]
        if self._loop_guard is not None:
            check_not_in_running_loop(self._loop_guard)
        return self._run.next_slow()  # type: ignore[no-any-return]

    # -- async iteration --------------------------------------------------------------------------

    def __aiter__(self) -> AsyncIterator[R]:
        self._run.put_back_unread()  # what a for loop left unread comes first
        if GENERATORS_RESUME_FASTER:
            return async_results(self._ready, self._anext_slow)  # the same, faster (see there)
        return self

    async def __anext__(self) -> R:
        ready = self._ready
        if ready:
            return ready.popleft()  # type: ignore[no-any-return]
        return await self._anext_slow()

    async def _anext_slow(self) -> R:
        """No result ready: the engine runs in the helper thread while this coroutine waits."""
        stopper = self._stopper
        driver = stopper.driver
        loop = asyncio.get_running_loop()
        if driver is not None and driver.pending is not None:
            if not driver.pending.cancelled():
                raise RuntimeError(
                    "another task is already waiting for the next result of this iterator; iterate a "
                    "result iterator from one task at a time"
                )
            # An earlier call was cancelled while the engine worked for it: take what it produces.
            await driver.resolved(loop)
            if self._ready:
                return self._ready.popleft()  # type: ignore[no-any-return]
        if driver is not None and driver.left_error is not None:
            error, driver.left_error = driver.left_error, None
            raise error
        run = self._run
        if run.finished:
            try:
                return run.next_slow()  # type: ignore[no-any-return]  # never waits once finished
            except StopIteration:
                raise StopAsyncIteration from None
        if run.started and (driver is None or not driver.busy) and run.step_nowait():
            return self._ready.popleft()  # type: ignore[no-any-return]  # no hand-over needed
        if self._async_input is not None and self._async_input.loop is None and not run.started:
            self._async_input.loop = loop  # the source's __anext__ runs on this loop
        if driver is None:
            driver = stopper.driver = AsyncDriver(run, self._ready)
        found, value = await driver.next_result(loop)
        if not found:
            raise StopAsyncIteration
        return value  # type: ignore[no-any-return]

    async def aclose(self) -> None:
        """Stop now, like [`close`][mtasklite_like.ResultIterator.close], without blocking the event loop: the
        workers are stopped from a helper thread while this coroutine waits."""
        stopper = self._stopper
        if self._run.finished or (stopper.driver is None and not self._run.started):
            stopper.close()  # nothing is running: closing cannot block
            return
        if stopper.driver is None:
            stopper.driver = AsyncDriver(self._run, self._ready)
        await stopper.driver.close_later(asyncio.get_running_loop())
        stopper.close()

    async def __aenter__(self) -> ResultIterator[R]:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
        # The ``async with pool(items)`` block owns a pool that is not itself in a ``with`` block.
        if not self.parent_obj.managed:
            self.parent_obj.close()  # the run is over: nothing is left to wait for

    # -- for wrappers and progress displays -----------------------------------------------------

    @property
    def total(self) -> int | None:
        """The number of input items when the input has a length, else None."""
        return self._run.total

    @property
    def failure_count(self) -> int:
        """Failed items delivered so far (or about to be: released, not yet read)."""
        return self._run.release.failure_count

    @property
    def finished(self) -> bool:
        """True once the run has ended (every result released, an error, or ``close()``)."""
        return self._run.finished

    @property
    def started(self) -> bool:
        """True once the first ``next()`` has started the workers."""
        return self._run.started

    def take_ready(self) -> list[R]:
        """Take every result that is already available, without waiting (possibly none).

        A consumer that handles results in bulk (a progress bar counting them) saves a call per
        item; ``next()`` is still what waits for the next result.
        """
        return take_all(self._run, self._ready)

    def stats(self) -> RunStats:
        """What this run has spent its time on so far, per worker and in total: items, failures,
        time in tasks and waiting, start-up, bytes each way, and what limited it
        (``print(results.stats())`` for a table, ``.to_dict()`` for JSON; see docs/observability.md)."""
        return self._run.snapshot()

    @property
    def status(self) -> str | None:
        """What holds the run back now, in a few words for a progress bar (``"paused: 1.2 GiB free <
        2 GiB"`` while memory is short, see ``min_available_memory``), or None."""
        return self._run.status

    @property
    def partial(self) -> float:
        """How much of the items in flight is done, as their tasks reported it with
        [`progress`][mtasklite_like.progress]: their fractions, added up (``0.0`` when no task
        reports, and before the run starts or once it ends).

        A progress bar shows ``results taken + partial`` (``12.4/100``). Safe to read from any
        thread, and cheap (a few shared integers per worker), but meant to be read a few times a
        second, not per item. An item's fraction counts from its report until it ends; workers of
        a Ray actor on another machine than the caller report none (see docs/observability.md).
        """
        return self._run.partial

    @property
    def heartbeat(self) -> Callable[[], None] | None:
        """Called at least every 0.2 s while the consumer waits for a result (e.g. a bar's refresh)."""
        return self._run.heartbeat

    @heartbeat.setter
    def heartbeat(self, callback: Callable[[], None] | None) -> None:
        self._run.heartbeat = callback

    # -- sizes ----------------------------------------------------------------------------------

    def __len__(self) -> int:
        """The number of results still to come: the input's length before the first ``next()``.

        Only for sized input (``TypeError`` otherwise); :attr:`total` is the input's length.
        """
        total = self._run.total
        if total is None:
            raise TypeError("the input of this result iterator has no len(); pass a sized input or a total")
        return max(0, total - self._run.consumed)

    def __length_hint__(self) -> int:
        """Results still to come (``operator.length_hint``); 0 when unknown."""
        total = self._run.total
        return 0 if total is None else max(0, total - self._run.consumed)

    # -- stopping -------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop now: workers busy with this input are stopped, results not yet read are dropped."""
        self._stopper.close()

    def __enter__(self) -> ResultIterator[R]:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stopper.close()
        # The ``with pool(items)`` block owns a pool that is not itself in a ``with`` block.
        if not self.parent_obj.managed:
            self.parent_obj.close()

    def __repr__(self) -> str:
        state = "finished" if self._run.finished else "running"
        return f"<ResultIterator of {self.parent_obj!r}, {state}>"
