"""Reading the input in a background thread, so that finished results flow while the input waits.

A generator over a socket, a pipe, a queue or a crawler's frontier can block for seconds. Read in
the consumer's thread, that blocked ``next()`` would hold back every result already finished.
:class:`InputThread` reads it in a daemon thread instead, into a buffer the engine takes from
without ever waiting; the engine waits on the backend alone, and the thread interrupts that wait
(``Backend.wake``) when items arrive while the engine is waiting for input.

Bounds are the same as in the caller:

- *the gate*: the thread reads only while the engine runs, that is while the consumer is inside
  ``next()``. A stalled consumer stops the reading, as it stops the workers.
- *the limit*: the engine sets how many items may have been read in all (the window), and the
  thread never reads past it.

A read that is blocked cannot be interrupted. When the run ends (``break``, ``close()``, an error,
Ctrl-C) the thread is told to stop and the run does not wait for it: a source blocked at that
moment stays blocked in the daemon thread, the item it eventually returns is dropped, nothing more
is read, and the thread ends (dropping its reference to the iterator, which closes a generator).

Cost on fast sources: items are read by C code in chunks that grow while reads are fast
(``list.extend(islice(...))``), and one at a time while the source is slow, so that the first item
after a pause is handed over at once. A chunk that stalls part-way (at the end of a burst) puts its
first items in the buffer without a wake-up; while the engine waits for input during such a chunk,
it looks at the buffer every few milliseconds (:meth:`InputThread.poll_interval`).
"""

from __future__ import annotations

import contextvars
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

__all__ = ["InputThread"]

#: the largest number of items read in one go
_MAX_CHUNK = 4096
#: reads faster than this per item count as fast: the next read may take more items at once
_FAST_SECONDS_PER_ITEM = 20e-6
_THREAD_HINT = (
    "the input is read in a background thread (so that results flow while it waits); an input that "
    "must be read in the thread that created it needs Pool(..., input_thread=False)"
)

#: how long a fork waits for input threads to finish the read they are in (see _before_fork)
_FORK_WAIT = 0.5
#: the input threads of this process that are running, and those a fork in progress holds still
_RUNNING: weakref.WeakSet[InputThread] = weakref.WeakSet()
_HELD: list[InputThread] = []


def _before_fork() -> None:
    """Before this process forks (a worker starting, or any other ``os.fork``): wait, up to
    ``_FORK_WAIT`` in all, until no input thread is inside the input's ``next()``, and keep them
    out of it until the fork is done.

    A child process gets copies of the locks the parent's threads held at the fork, held forever:
    an input that was importing a module (``import numpy`` on its first array) leaves that
    module's import lock held in a worker forked just then, and the worker hangs the first time it
    imports the module itself, to unpickle an item. Reads are short (a chunk is read at once only
    while items come fast), so the wait is too; an input that stays inside ``next()`` longer (a
    slow source) is not waited for past the limit, and a fork from an input thread itself never
    waits for its own read.
    """
    deadline = time.monotonic() + _FORK_WAIT
    me = threading.current_thread()
    for reader in list(_RUNNING):
        if reader._thread is me:
            continue
        if reader._reading.acquire(timeout=max(0.0, deadline - time.monotonic())):
            _HELD.append(reader)


def _after_fork() -> None:
    while _HELD:
        _HELD.pop()._reading.release()


def _after_fork_in_child() -> None:
    """The child has none of the parent's input threads: forget them (a lock one of them held,
    when the fork did not wait for it, stays held in the child, and must not make its own forks
    wait)."""
    _after_fork()
    _RUNNING.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_before_fork, after_in_parent=_after_fork, after_in_child=_after_fork_in_child)


class InputThread:
    """The input, read ahead in a daemon thread within the gate and the limit (see the module)."""

    streams = True
    instant = True  # taking items never waits: the thread reads, the engine takes what is there

    def __init__(self, iterator: Iterator[Any], total: int | None) -> None:
        self.total = total
        self._it: Iterator[Any] | None = iterator
        # A list: the thread appends to it (one item, or ``extend`` one by one from C), the engine
        # takes a slice from the front; each operation is atomic under the GIL.
        self._buf: list[Any] = []
        self._count_lock = threading.Lock()  # keeps ``len(buffer) + pulled`` consistent
        self._cond = threading.Condition(threading.Lock())
        self.pulled = 0  # items handed to the engine
        self.read = 0  # items read from the input
        self.error: BaseException | None = None  # an Exception the input raised: after its results
        self.fatal: BaseException | None = None  # any other BaseException: raised at once
        self._limit = 0
        self._open = False
        self._stopped = False
        self._exhausted = False
        self._want = False
        self._chunk_started: float | None = None
        self._wake: Callable[[], None] = _nothing
        self._thread: threading.Thread | None = None
        #: held by the thread while it is inside the input's ``next()``, and by a fork (see
        #: ``_before_fork``)
        self._reading = threading.Lock()

    # -- engine side ----------------------------------------------------------------------------

    def start(self, first: int) -> None:
        """Start reading, up to ``first`` items until the engine sets the limit (idempotent)."""
        if self._thread is not None:
            return
        self.allow(first)
        context = contextvars.copy_context()  # the input sees the caller's context variables
        self._thread = threading.Thread(
            target=context.run, args=(self._run,), name="mtasklite_like-input", daemon=True
        )
        _RUNNING.add(self)
        self._thread.start()

    def wake_with(self, wake: Callable[[], None]) -> None:
        """``wake`` cuts the engine's wait for reports short (``Backend.wake``)."""
        self._wake = wake
        if self._want and (self._buf or self._exhausted):
            wake()  # something came while the workers were starting

    @property
    def done(self) -> bool:
        """Nothing more will come: the input ended and its items were all taken, or it was stopped."""
        return self._stopped or (self._exhausted and not self._buf)

    def remaining(self) -> int | None:
        return None if self.total is None else self.total - self.pulled

    def allow(self, limit: int) -> None:
        """Open the gate, and let the thread read up to ``limit`` items in all."""
        if self._open and limit <= self._limit:
            return
        with self._cond:
            self._open = True
            self._limit = max(self._limit, limit)
            self._cond.notify()

    def close_gate(self) -> None:
        """The engine hands control back to the consumer: read nothing more until it returns."""
        self._open = False

    def buffered(self) -> int:
        """Items read and not yet taken by the engine."""
        return len(self._buf)

    def take(self, n: int) -> list[Any]:
        """Up to ``n`` items already read, without waiting. Taking none asks for a wake-up when the
        next item arrives (or the input ends)."""
        buf = self._buf
        with self._count_lock:
            k = min(n, len(buf))
            if k == 0:
                self._want = True
                k = min(n, len(buf))  # an item may have landed before the thread saw the request
                if k == 0:
                    return []
                self._want = False
            items = buf[:k]
            del buf[:k]
            self.pulled += k
        return items

    def poll_interval(self) -> float | None:
        """How long the engine may wait for reports before looking at the buffer again, when items
        may land without a wake-up (a chunk read is stalled part-way); None: wait to be woken."""
        started = self._chunk_started
        if started is None or not self._want:
            return None
        return min(0.02, max(0.001, (time.perf_counter() - started) / 4))

    def stop(self) -> None:
        """Read nothing more. A read in progress is not waited for (see the module docstring)."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._buf.clear()

    # -- the thread -----------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            self._main()
        finally:
            _RUNNING.discard(self)

    def _main(self) -> None:
        it, self._it = self._it, None
        assert it is not None
        cond, buf = self._cond, self._buf
        chunk = 1
        clock = time.perf_counter
        while True:
            with cond:
                while not self._stopped and not (self._open and self.read < self._limit):
                    cond.wait()
                if self._stopped:
                    return
                n = min(chunk, self._limit - self.read)
            start = clock()
            got = 0
            try:
                with self._reading:
                    got, n = self._read(it, n, start)
            except StopIteration:
                self._exhausted = True
            except Exception as exc:
                if "thread" in str(exc) and hasattr(exc, "add_note"):
                    exc.add_note(_THREAD_HINT)
                self.error = exc
                self._exhausted = True
            except BaseException as exc:  # SystemExit, or a KeyboardInterrupt raised by the input
                self.fatal = exc
                self._exhausted = True
            if got < n:
                self._exhausted = True
            if self._stopped:
                buf.clear()
                return
            if self._want and (buf or self._exhausted):
                self._want = False
                self._wake()
            if self._exhausted:
                return
            fast = clock() - start < got * _FAST_SECONDS_PER_ITEM
            chunk = min(chunk * 4, _MAX_CHUNK) if fast else 1

    def _read(self, it: Iterator[Any], n: int, start: float) -> tuple[int, int]:
        """Read up to ``n`` items into the buffer; return how many came, and how many were asked."""
        buf = self._buf
        if n > 1:
            # Announce the chunk before looking at the engine's request: either the engine sees the
            # chunk (and looks at the buffer while it waits), or this sees the request.
            self._chunk_started = start
            if self._want:
                n = 1  # the engine waits for input: hand each item over as it comes
        if n == 1:
            self._chunk_started = None
            buf.append(next(it))
            self.read += 1
            return 1, 1
        with self._count_lock:
            base = len(buf) + self.pulled
        try:
            buf.extend(islice(it, n))
        finally:
            self._chunk_started = None
            with self._count_lock:
                got = len(buf) + self.pulled - base
            self.read += got
        return got, n


def _nothing() -> None:
    pass
