"""Async consumption: ``async for result in pool(items)``, and async iterables as input.

The engine is driven by its consumer and waits for workers in a blocking call. An ``async for``
must never block its event loop, so :class:`AsyncDriver` makes that call in a helper thread of the
result iterator: ``__anext__`` takes a ready result at once when there is one (no thread involved,
the common case: results arrive in batches); when none is, it first moves the engine on without
waiting (``Run.step_nowait``: usually the next batch has arrived already), and only then awaits a
future the helper completes with ``call_soon_threadsafe`` once the engine has produced the next
result. The helper starts the
workers too, so even the start never blocks the loop. The consumer still drives the engine, so
the window bounds the input exactly as with a plain ``for``.

Stopping: ``break`` drops the result iterator, whose finalizer stops the run (what the pool does
after a ``break`` in a plain ``for``); ``await results.aclose()`` and ``async with`` stop it from
the helper thread without blocking the loop at all. A run is only ever touched by one thread at a
time: a close asked for while the helper waits for results is made by the helper itself (the
engine's heartbeat, called at least every 0.2 s while it waits, ends the wait). A consumer that is
cancelled while it awaits loses nothing: the result the helper then produces is put back in front
of the ready results.

Async iterables as input (:class:`AsyncInput`) become an ordinary iterator for the engine's input
reader. Consumed by ``async for``, each ``__anext__`` of the source runs on the consumer's loop
(``run_coroutine_threadsafe``), so sources bound to that loop (an ``asyncio.Queue``, a client
session) work; consumed by a plain ``for``, the source runs on an event loop of the reading thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import queue
import sys
import threading
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterable, AsyncIterator, Awaitable, Callable
from typing import Any

__all__ = [
    "GENERATORS_RESUME_FASTER",
    "AsyncDriver",
    "AsyncInput",
    "async_results",
    "check_not_in_running_loop",
    "wrap_async_input",
]

_END: Any = object()


def check_not_in_running_loop(what: str) -> None:
    """Refuse a blocking wait for results in a thread whose event loop is running."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return
    raise RuntimeError(
        f"a plain `for` (or next(), list()) over the results of a pool that {what} was called inside "
        "a running asyncio event loop: waiting here would block that loop until results come. Use "
        "`async for result in pool(items)` (or `await anext(results)`) inside the loop, or iterate "
        "from a thread without an event loop"
    )


# -- async for over the results ------------------------------------------------------------------
#
# ``async for`` asks for every result with ``__anext__``. A coroutine per call (``async def
# __anext__``) costs about 50 ns more per result than a plain ``for`` on CPython 3.10 and 3.11;
# resuming an async generator costs about half that, which over many small results is a tenth of
# the caller's time. From 3.12 on the generator is the slower of the two, so ``__aiter__`` picks by
# version (benchmarks: the async-for row).
#
# A bare async generator will not do: a consumer cancelled while the generator waits for the
# engine (``await wait_for(anext(it), 1)``) ends that generator for good, and the next
# ``anext(it)`` would report the end of the results. So ``async for`` gets a view instead: an
# instance of a class made for that one loop, whose ``__anext__`` is the generator's own (a C
# method, as fast as the generator itself). When the generator ends on an exception, the class is
# pointed at a fresh generator over the same results, so the view goes on where it was, as the
# result iterator does.
#
# Closing: the generator is made without the event loop's async-generator hooks (it never awaits
# while closing), so dropping the view (``break``) closes it at once, which drops the result
# iterator, whose finalizer stops the run: the workers stop right after a ``break``, as they do
# after one in a plain ``for``. With the hooks, asyncio would close it a loop iteration later.

#: resuming an async generator is cheaper than making a coroutine (CPython up to 3.11)
GENERATORS_RESUME_FASTER = sys.version_info < (3, 12)


class _ResultsView:
    """Base of the classes made by :func:`async_results`, one per ``async for``."""

    __slots__ = ()

    def __aiter__(self) -> _ResultsView:
        return self

    def __del__(self) -> None:
        # The class holds the generator and lives in reference cycles of its own (a class always
        # does): let go of the generator, and of the run it holds, now rather than at the next
        # garbage collection.
        with contextlib.suppress(AttributeError):
            del type(self).__anext__  # type: ignore[attr-defined]


def async_results(ready: deque[Any], anext_slow: Callable[[], Awaitable[Any]]) -> AsyncIterator[Any]:
    """What ``async for`` iterates over (see above): results from ``ready``, and from
    ``anext_slow()`` (the result iterator's waiting step) when none is ready."""
    view_type = type("AsyncResults", (_ResultsView,), {"__slots__": ()})
    _start_generator(view_type, ready, anext_slow)
    view: AsyncIterator[Any] = view_type()
    return view


# No closures below: a closure that restarts itself would be a reference cycle holding the result
# iterator (and its run) until a garbage collection; the only cycle, class -> generator -> class,
# is cut by the view's __del__.


def _start_generator(view_type: type, ready: deque[Any], anext_slow: Callable[[], Awaitable[Any]]) -> None:
    generator = _results(view_type, ready, anext_slow)
    hooks = sys.get_asyncgen_hooks()
    sys.set_asyncgen_hooks(firstiter=None, finalizer=None)
    try:
        # Asking for an awaitable (never awaited: the generator does not start) makes the
        # generator take the hooks in force now, none, for good.
        _ = generator.asend(None)
    finally:
        sys.set_asyncgen_hooks(*hooks)
    view_type.__anext__ = generator.__anext__  # type: ignore[attr-defined]


async def _results(
    view_type: type, ready: deque[Any], anext_slow: Callable[[], Awaitable[Any]]
) -> AsyncGenerator[Any, None]:
    while True:
        while ready:
            yield ready.popleft()
        try:
            value = await anext_slow()
        except StopAsyncIteration:
            return
        except GeneratorExit:
            raise  # dropped while it waited: closing
        except BaseException:
            # Cancelled, or the run failed: the view goes on with a fresh generator.
            _start_generator(view_type, ready, anext_slow)
            raise
        yield value


# -- async iterables as input ------------------------------------------------------------------------


class AsyncInput:
    """A plain iterator over an async iterable, read by the pool's input reader (see the module)."""

    def __init__(self, source: AsyncIterable[Any]) -> None:
        self._source = source
        self._iterator: AsyncIterator[Any] | None = None
        #: the consumer's loop, set by ``async for``; None: the reading thread runs a loop of its own
        self.loop: asyncio.AbstractEventLoop | None = None
        self._own_loop: asyncio.AbstractEventLoop | None = None
        self._pending: concurrent.futures.Future[Any] | None = None
        self._closed = False

    def __iter__(self) -> AsyncInput:
        return self

    def __next__(self) -> Any:
        if self._closed:
            raise StopIteration
        loop = self.loop
        if loop is None:
            own = self._own_loop
            if own is None:
                own = self._own_loop = asyncio.new_event_loop()
            try:
                value = own.run_until_complete(self._next())
            except BaseException:
                self._close_own_loop()
                raise
        else:
            future = asyncio.run_coroutine_threadsafe(self._next(), loop)
            self._pending = future
            try:
                value = future.result()
            except concurrent.futures.CancelledError:
                raise StopIteration from None  # closed while waiting for the source
            finally:
                self._pending = None
        if value is _END:
            self._closed = True
            self._close_own_loop()
            raise StopIteration
        return value

    async def _next(self) -> Any:
        if self._iterator is None:
            self._iterator = self._source.__aiter__()
        try:
            return await self._iterator.__anext__()
        except StopAsyncIteration:
            return _END

    def close(self) -> None:
        """The run ended: stop waiting for the source (its pending ``__anext__`` is cancelled)."""
        self._closed = True
        pending = self._pending
        if pending is not None:
            pending.cancel()

    def _close_own_loop(self) -> None:
        own, self._own_loop = self._own_loop, None
        if own is not None and not own.is_running():
            try:
                own.run_until_complete(own.shutdown_asyncgens())
            finally:
                own.close()


def wrap_async_input(source: Any) -> AsyncInput:
    """The pool's input for an async iterable (one with ``__aiter__`` and no ``__iter__``)."""
    return AsyncInput(source)


# -- the engine's blocking step, in a helper thread -------------------------------------------------


class _Closed(Exception):
    """Raised from the engine's heartbeat to end a wait when the iterator is being closed."""


class AsyncDriver:
    """Makes the engine's blocking calls for an async consumer, in a helper thread (see the module).

    It holds the run, never the result iterator, so dropping the iterator still stops the run.
    """

    def __init__(self, run: Any, ready: Any) -> None:
        self._run = run
        self._ready = ready
        self._requests: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        #: the helper is making a call: only the helper touches the run meanwhile (guarded by the lock)
        self._in_call = False
        self._close_requested = False
        #: on the loop: the future of the ``next`` request whose outcome is not delivered yet
        self.pending: asyncio.Future[Any] | None = None
        self._on_resolved: list[asyncio.Future[None]] = []
        #: an error the engine raised while nobody awaited it: raised by the next ``__anext__``
        self.left_error: BaseException | None = None

    # -- the loop's side -------------------------------------------------------------------------

    def next_result(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """A future of ``(True, result)``, ``(False, None)`` at the end, or an exception."""
        future = self._submit(loop, self._run.next_slow)
        self.pending = future
        return future

    def resolved(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[None]:
        """A future done once the pending request's outcome is delivered (or kept, if orphaned)."""
        future: asyncio.Future[None] = loop.create_future()
        if self.pending is None:
            future.set_result(None)
        else:
            self._on_resolved.append(future)
        return future

    @property
    def busy(self) -> bool:
        """The helper has the run (a call asked and not finished): nobody else may touch it."""
        with self._lock:
            return self._in_call

    def close_later(self, loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
        """Close the run in the helper thread; the future completes once it is closed."""
        with self._lock:
            if self._in_call:
                self._close_requested = True  # ends the wait in progress
        return self._submit(loop, self._run.close)

    def _submit(self, loop: asyncio.AbstractEventLoop, call: Callable[[], Any]) -> asyncio.Future[Any]:
        future = loop.create_future()
        with self._lock:
            self._in_call = True  # from now on, a close from elsewhere is left to the helper
            self._requests.put((loop, future, call))
            if self._thread is None:  # none, or it ended with the run: start one
                self._thread = threading.Thread(
                    target=self._main, name="mtasklite_like-async-results", daemon=True
                )
                self._thread.start()
        return future

    def close(self) -> None:
        """Stop the run now, from any thread (a finalizer, ``close()``); never races the helper."""
        with self._lock:
            if self._in_call:
                self._close_requested = True  # the helper closes the run once its call returns
                self._requests.put(None)
                return
            if self._thread is not None:
                self._requests.put(None)
        self._run.close()

    # -- the helper thread -----------------------------------------------------------------------

    def _main(self) -> None:
        while True:
            request = self._requests.get()
            if request is None:
                with self._lock:
                    if self._requests.empty():
                        self._thread = None
                        return
                continue  # asked to end, but a request came since: serve it first
            loop, future, call = request
            run = self._run
            with self._lock:
                self._in_call = True
            user_heartbeat = run.heartbeat
            run.heartbeat = self._heartbeat_with(user_heartbeat)
            try:
                outcome: Any = (True, call())
            except (StopIteration, _Closed):
                outcome = (False, None)
            except BaseException as exc:
                outcome = exc
            finally:
                run.heartbeat = user_heartbeat
            with self._lock:
                closing = self._close_requested
                if not closing:
                    self._in_call = False
            if closing:
                run.close()
                with self._lock:
                    self._in_call = False  # only now may the loop's thread touch the run again
            try:
                loop.call_soon_threadsafe(self._resolve, future, outcome)
            except RuntimeError:
                pass  # the consumer's loop is closed: nobody to tell
            with self._lock:
                # The run is over and nothing else is asked: end; a later request starts a helper.
                if run.finished and self._requests.empty():
                    self._thread = None
                    return

    def _heartbeat_with(self, user: Callable[[], None] | None) -> Callable[[], None]:
        def heartbeat() -> None:
            if self._close_requested:
                raise _Closed
            if user is not None:
                user()

        return heartbeat

    def _resolve(self, future: asyncio.Future[Any], outcome: Any) -> None:
        """On the consumer's loop: hand the outcome over, or keep it if nobody awaits any more."""
        if future is self.pending:
            self.pending = None
        if not future.cancelled():
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)
        elif isinstance(outcome, BaseException):
            # The consumer was cancelled while the helper worked: keep it for the next call.
            self.left_error = outcome
        elif outcome[0]:
            self._ready.appendleft(outcome[1])
        waiters, self._on_resolved = self._on_resolved, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)
