"""Coroutine workers: one event loop per worker, up to ``concurrency`` items in flight on it.

A plain worker runs its batches one after the other. A coroutine worker (an ``async def``
function, or a ``@delayed_init`` object whose ``__call__`` is ``async def``) keeps receiving
batches while the coroutines of earlier ones are still running: a thread of the worker blocks on
the backend's inbox and hands each batch over to the loop (``call_soon_threadsafe``), where its
items wait in one queue, in arrival order, for one of the ``concurrency`` slots. A batch is
reported, like any other, once all its items have ended, so ordering, exception modes, retries and
the ledger work unchanged; the engine lets such a worker hold about ``concurrency`` items plus a
little read-ahead (``_engine.admission``).

What the worker reports as a batch's compute time is the sum of its items' durations divided by
``concurrency``: the share of the worker's capacity the batch used. The batch sizer reads it as
time per item, so fast coroutines travel in large batches and slow ones in small ones, as for
plain functions.

Object life cycle
    The worker's object is built inside the running loop (its constructor may create an HTTP
    session, which needs one), once per worker. When the worker is asked to stop, pending
    coroutines are cancelled, then the object's ``async def aclose()`` is awaited if it has one.

``max_per_second``
    The engine hands items over one at a time at the rate, but a hand-over is not a start: an item
    waits for the loop (busy with another coroutine's step, or blocked) and for the thread that
    passes batches in, and items that arrived an interval apart can start together. So, when the
    pool gives its workers a :class:`~.._engine.rate_limit.StartGate` (``spec.start_gate``), each item's
    coroutine first takes its start from the gate, at the moment it would run its first step,
    waiting on the loop (``asyncio.sleep``) while it is not due: the starts keep their distance as
    the coroutines see them, across the workers of the pool.

``task_timeout``
    Each item has its own deadline, from when it starts: past it, its coroutine is cancelled and
    the item fails with :class:`~._errors.TaskTimeoutError` while the others go on. The engine's
    own deadline (``RunOptions.watchdog_timeout``) only catches a loop that is blocked.

``max_worker_memory``
    Once an item ends with the worker's own memory over its limit (looked at, at most once a
    millisecond, as items end), the worker starts no item of a batch it has not begun, finishes
    the batches it has begun, then retires (``retire``): the engine runs the batches it did not
    begin elsewhere and starts a fresh worker. Its object's ``aclose()`` is awaited as at any stop.

Deaths
    ``progress`` names the item whose coroutine runs a step, each time one does (a thin wrapper
    around the coroutine), so a worker that dies in a coroutine (``os._exit``, a crash in an
    extension) is reported against that item, as a plain worker's death is against the item it ran;
    one killed from outside while its loop waits is reported against the item that ran last. A
    coroutine raising ``SystemExit`` or ``KeyboardInterrupt`` ends the worker as it would end a
    plain one.

Progress reported from tasks (``mtasklite_like.progress``)
    Each item's coroutine reports its own fraction; the worker keeps them by item on its context
    and shares their sum with the caller, and an item's fraction goes when it ends (see
    ``_worker.progress``). Nothing is done per item until some task of the worker has reported.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator, MutableSequence, Sequence
from typing import Any

from .._engine.rate_limit import StartGate
from .._errors import TaskTimeoutError
from .._memory.limit import OwnLimit
from .context import RUNNING, SLOTS, WorkerContext, enter
from .progress import item_ended
from .run import WorkerSpec, build_worker_object, make_caller

__all__ = ["FailedItem", "serve_coroutines"]

Failures = list[tuple[int, BaseException]]


class FailedItem:
    """Stands in a batch for an item that could not be delivered; the item fails with ``error``."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Tracked(Coroutine[Any, Any, Any]):
    """A coroutine that writes its item's position into ``progress`` before each of its steps."""

    __slots__ = ("_coro", "_id", "_pos", "_progress")

    def __init__(self, coro: Coroutine[Any, Any, Any], progress: MutableSequence[int], batch_id: int,
                 pos: int) -> None:
        self._coro = coro
        self._progress = progress
        self._id = batch_id
        self._pos = pos

    def _mark(self) -> None:
        progress = self._progress
        progress[1] = -1  # first, so a death in between never pairs this batch with another position
        progress[0] = self._id
        progress[1] = self._pos

    def send(self, value: Any) -> Any:
        self._mark()
        return self._coro.send(value)

    def throw(self, typ: Any, val: Any = None, tb: Any = None) -> Any:
        self._mark()
        if val is None and tb is None:
            return self._coro.throw(typ)
        return self._coro.throw(typ, val, tb)  # pragma: no cover - the old three-argument form

    def close(self) -> None:
        self._coro.close()

    def __await__(self) -> Generator[Any, None, Any]:
        return self

    def __iter__(self) -> _Tracked:
        return self

    def __next__(self) -> Any:
        return self.send(None)

    def __repr__(self) -> str:
        return repr(self._coro)


#: seconds by which the loop's timers may fire late (its wait for events counts in whole ms)
_LOOP_TICK = 0.001


async def _after_start(gate: StartGate, coro: Coroutine[Any, Any, Any]) -> Any:
    """Run ``coro`` once the gate gives it a start: its first step follows the gate at once.

    A timer of the loop may fire up to a millisecond late, and a start made late is never made
    up for (the rate would be lower by as much, for every item that waited): so the wait sleeps
    through all but the last millisecond, then yields the loop to the other coroutines until
    the start is due.
    """
    try:
        while (delay := gate.try_start()) > 0:
            await asyncio.sleep(delay - _LOOP_TICK if delay > _LOOP_TICK else 0)
    except BaseException:
        coro.close()  # cancelled before it started (a timeout, the worker stopping)
        raise
    return await coro


class _Batch:
    __slots__ = ("busy", "failures", "id", "indices", "pending", "results", "started")

    def __init__(self, batch_id: int, indices: Sequence[int], n: int) -> None:
        self.id = batch_id
        self.indices = indices
        self.results: list[Any] = [None] * n
        self.failures: Failures = []
        self.pending = n
        self.busy = 0.0  # seconds its items ran, added up
        self.started = False  # an item of it has started


class _Runner:
    """The loop side of one worker: a queue of items, ``concurrency`` slots, per-item deadlines."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        call: Callable[[Any], Any],
        concurrency: int,
        timeout: float | None,
        done: Callable[[int, Sequence[int], list[Any], Failures, float], None],
        progress: MutableSequence[int] | None,
        gate: StartGate | None = None,
        limit: OwnLimit | None = None,
        retire: Callable[[int, int | None], None] | None = None,
        context: WorkerContext | None = None,
    ) -> None:
        self.loop = loop
        self.context = context
        self.gate = gate
        self.call = call
        self.concurrency = concurrency
        self.free = concurrency
        self.timeout = timeout
        self.done = done
        self.progress = progress
        self.waiting: deque[tuple[_Batch, int, Any]] = deque()
        #: running item -> (batch, position, start time, deadline handle)
        self.running: dict[asyncio.Future[Any], tuple[_Batch, int, float, asyncio.TimerHandle | None]] = {}
        self.expired: set[asyncio.Future[Any]] = set()
        self.stopping = False
        self.stopped: asyncio.Future[None] = loop.create_future()
        #: the worker's memory limit, what to call when it is over, and the memory measured then
        self.limit = limit
        self.retire = retire
        self.retiring: int | None = None

    # -- batches in, results out ---------------------------------------------------------------

    def receive(self, message: Any) -> None:
        """A batch from the backend (called on the loop), or None: stop."""
        if message is None:
            if not self.stopped.done():
                self.stopped.set_result(None)
            return
        if self.stopping or self.retiring is not None:
            return  # retiring: the engine runs what it did not begin elsewhere
        batch_id, indices, items = message
        batch = _Batch(batch_id, indices, len(items))
        if self.context is not None:
            self.context.batches[batch_id] = indices
        if not items:
            self._report(batch)
            return
        self.waiting.extend((batch, pos, item) for pos, item in enumerate(items))
        self._pump()

    def _report(self, batch: _Batch) -> None:
        if self.context is not None:
            self.context.batches.pop(batch.id, None)
        batch.failures.sort(key=lambda f: f[0])
        self.done(batch.id, batch.indices, batch.results, batch.failures, batch.busy / self.concurrency)

    def _pump(self) -> None:
        """Start waiting items while slots are free."""
        waiting = self.waiting
        while self.free and waiting and not self.stopping:
            self._start(*waiting.popleft())
        if self.retiring is not None and not self.running and not waiting and not self.stopping:
            self.stopping = True
            assert self.retire is not None
            self.retire(self.retiring, self.limit.peak() if self.limit is not None else None)
            if not self.stopped.done():
                self.stopped.set_result(None)

    # -- one item --------------------------------------------------------------------------------

    def _start(self, batch: _Batch, pos: int, item: Any) -> None:
        progress = self.progress
        if progress is not None:
            # The position first, so a death in between never pairs this batch with an old one.
            progress[1] = -1
            progress[0] = batch.id
            progress[1] = pos
        started = time.perf_counter()
        batch.started = True
        if type(item) is FailedItem:
            self._end(batch, pos, started, error=item.error)
            return
        try:
            awaitable = self.call(item)
        except Exception as exc:  # raised before the first await (a wrong argument, say)
            self._end(batch, pos, started, error=exc)
            return
        if not inspect.isawaitable(awaitable):
            self._end(batch, pos, started, value=awaitable)  # a plain value: nothing to await
            return
        if self.gate is not None and inspect.iscoroutine(awaitable):
            awaitable = _after_start(self.gate, awaitable)
        if progress is not None and inspect.iscoroutine(awaitable):
            awaitable = _Tracked(awaitable, progress, batch.id, pos)
        # The task copies the current context: its coroutine knows its item (``_worker.context``).
        token = RUNNING.set((batch.id, pos))
        try:
            task = asyncio.ensure_future(awaitable, loop=self.loop)
        finally:
            RUNNING.reset(token)
        self.free -= 1
        handle = None if self.timeout is None else self.loop.call_later(self.timeout, self._expire, task)
        self.running[task] = (batch, pos, started, handle)
        task.add_done_callback(self._task_done)

    def _expire(self, task: asyncio.Future[Any]) -> None:
        if not task.done():
            self.expired.add(task)
            task.cancel()

    def _task_done(self, task: asyncio.Future[Any]) -> None:
        entry = self.running.pop(task, None)
        if entry is None:
            return
        batch, pos, started, handle = entry
        context = self.context
        if context is not None and context.fractions:
            item_ended(context, (batch.id, pos))  # before its batch can be reported
        if handle is not None:
            handle.cancel()
        self.free += 1
        if self.stopping:
            return  # cancelled because the worker stops: nobody reads the batch any more
        if task in self.expired:
            self.expired.discard(task)
            error: BaseException = TaskTimeoutError(
                f"input item #{batch.indices[pos]} ran longer than task_timeout={self.timeout} s; "
                "its coroutine was cancelled"
            )
            self._end(batch, pos, started, error=error)
        elif task.cancelled():
            # Cancelled by someone else than the pool (the coroutine cancelled itself, say).
            self._end(batch, pos, started, error=asyncio.CancelledError(
                f"the coroutine of input item #{batch.indices[pos]} was cancelled"
            ))
        else:
            exc = task.exception()
            if exc is None:
                self._end(batch, pos, started, value=task.result())
            else:
                self._end(batch, pos, started, error=exc)
        self._pump()

    def _end(self, batch: _Batch, pos: int, started: float, *, value: Any = None,
             error: BaseException | None = None) -> None:
        batch.busy += time.perf_counter() - started
        if error is None:
            batch.results[pos] = value
        else:
            batch.failures.append((pos, error))
        batch.pending -= 1
        if batch.pending == 0:
            self._report(batch)
        limit = self.limit
        if limit is not None and self.retiring is None and time.perf_counter() >= limit.next_at:
            over = limit.over()
            if over is not None:
                # Finish the batches begun (each is answered whole), begin no other.
                self.retiring = over
                self.waiting = deque(w for w in self.waiting if w[0].started)

    # -- stopping --------------------------------------------------------------------------------

    async def stop(self) -> None:
        """Cancel every pending coroutine (waiting items are dropped) and wait for them to end."""
        self.stopping = True
        self.waiting.clear()
        tasks = list(self.running)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=1.0)

    def name_fatal_item(self) -> None:
        """A coroutine raised SystemExit or KeyboardInterrupt, which ends the worker: name its item."""
        progress = self.progress
        if progress is None:
            return
        for task, (batch, pos, _, _) in self.running.items():
            if task.done() and not task.cancelled() and task.exception() is not None:
                progress[1] = -1
                progress[0] = batch.id
                progress[1] = pos
                return


def serve_coroutines(
    spec: WorkerSpec,
    *,
    own_process: bool,
    next_message: Callable[[], Any],
    ready: Callable[[], None],
    init_failed: Callable[[BaseException], None],
    done: Callable[[int, Sequence[int], list[Any], Failures, float], None],
    progress: MutableSequence[int] | None,
    name: str,
    retire: Callable[[int, int | None], None] | None = None,
) -> None:
    """Run a coroutine worker in the calling thread until ``next_message()`` returns None.

    ``next_message`` blocks until the backend gives a batch ``(batch id, input indices, items)``,
    or None to stop; it is called in a thread of its own (``name``). ``ready`` or ``init_failed``
    is called once the worker's object is built (or could not be); ``done(batch id, indices,
    results, failures, compute seconds)`` once per batch, on the loop's thread. A coroutine that
    raises ``SystemExit`` or ``KeyboardInterrupt`` ends the worker: the exception propagates.
    With ``spec.memory_limit``, ``retire(memory, peak)`` is called when the worker retires, after
    which this returns (see the module docstring).
    """
    loop = asyncio.new_event_loop()
    runner: list[_Runner] = []
    try:
        loop.run_until_complete(_main(spec, own_process, loop, next_message, ready, init_failed, done,
                                      progress, name, runner, retire))
    except (SystemExit, KeyboardInterrupt):
        if runner:
            runner[0].name_fatal_item()
            runner[0].stopping = True  # the worker ends: its batches are reported as its death
        # Cancelling the other coroutines runs steps of theirs: keep the fatal item named.
        fatal = None if progress is None else (progress[0], progress[1])
        _close_loop(loop)
        if progress is not None and fatal is not None:
            progress[1] = -1
            progress[0], progress[1] = fatal
        raise
    else:
        _close_loop(loop)


async def _main(
    spec: WorkerSpec,
    own_process: bool,
    loop: asyncio.AbstractEventLoop,
    next_message: Callable[[], Any],
    ready: Callable[[], None],
    init_failed: Callable[[BaseException], None],
    done: Callable[[int, Sequence[int], list[Any], Failures, float], None],
    progress: MutableSequence[int] | None,
    name: str,
    runner_out: list[_Runner],
    retire: Callable[[int, int | None], None] | None = None,
) -> None:
    try:
        # Inside the running loop: the object's constructor may need one (an HTTP session).
        obj = build_worker_object(spec, own_process=own_process)
        call = make_caller(obj, spec.argument_type)
    except BaseException as exc:
        init_failed(exc)
        return
    ready()
    # The pool's start gate under max_per_second (None without a limit).
    gate: StartGate | None = spec.start_gate
    limit = None if spec.memory_limit is None or retire is None else OwnLimit(spec.memory_limit)
    context = WorkerContext(spec.index, progress if progress is not None else [-1] * SLOTS)
    context.fractions = {}  # several items at once: progress is kept per item (``_worker.progress``)
    enter(context, own_process=own_process)
    runner = _Runner(loop, call, max(1, spec.concurrency), spec.task_timeout, done, progress, gate, limit,
                     retire, context)
    runner_out.append(runner)
    threading.Thread(target=_bridge, args=(next_message, loop, runner), name=name, daemon=True).start()
    try:
        await runner.stopped
    finally:
        await runner.stop()
        await _aclose(obj)


def _bridge(next_message: Callable[[], Any], loop: asyncio.AbstractEventLoop, runner: _Runner) -> None:
    """Hand the backend's batches to the loop, in order, until told to stop."""
    while True:
        try:
            message = next_message()
        except BaseException:
            message = None
        try:
            loop.call_soon_threadsafe(runner.receive, message)
        except RuntimeError:
            return  # the loop is closed: the worker has ended
        if message is None:
            return


async def _aclose(obj: Any) -> None:
    """Await the object's ``aclose()`` if it has one; a failure there is printed, not raised."""
    aclose = getattr(obj, "aclose", None)
    if aclose is None or not callable(aclose):
        return
    try:
        result = aclose()
        if inspect.isawaitable(result):
            await result
    except Exception as exc:
        import sys
        import traceback

        print(f"mtasklite_like worker: aclose() of {type(obj).__name__} raised:", file=sys.stderr)
        traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the loop (after a fatal exception, say), then close it."""
    try:
        left = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in left:
            task.cancel()
        if left:
            loop.run_until_complete(asyncio.wait(left, timeout=1.0))
        loop.run_until_complete(loop.shutdown_asyncgens())
    except BaseException:
        pass
    finally:
        loop.close()
