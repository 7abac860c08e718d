"""``max_per_second``: one start every ``1 / rate`` seconds at most, across the whole pool.

The promise is about starts as the tasks see them: in any window of ``w`` seconds at most
``rate * w + 1`` items start. That is the same as saying that two starts are never closer than one
interval, so pacing is a bucket of exactly one token, refilled one interval after it was taken (not
one interval after it was due):

- a start that happens late (the caller was busy, a wait woke late) pushes the next one back by as
  much; keeping to a fixed schedule instead would let the next item follow the late one within less
  than an interval, which is a burst as the tasks see it;
- an idle pool never saves tokens up: after a pause one item starts, the next one interval later.

The price is that the long-run rate is slightly under the one asked for, by the lateness of each
wake-up (tens of microseconds to a millisecond per item): a limit is a ceiling, never a target to
catch up with.

Two layers apply it:

- :class:`RateLimiter`, in the caller (``dispatch``): hand-overs are paced, and go only to a worker
  that is ready and can start the item at once (one item per message, no more items per worker
  than it runs at a time: see ``admission``), so items do not pile up in workers waiting to start.
- :class:`StartGate`, in the workers, right before a task is called: a hand-over is not a start,
  since a thread or a process wakes up after a delay that varies by milliseconds on a busy machine,
  enough for two items handed over one interval apart to start closer than that. The gate is the
  same one-token bucket, shared by every worker of the pool through a small file (a process of
  its own reads the same monotonic clock), so the starts themselves keep the promise. It serves
  workers on this machine: threads, processes, the caller itself.
"""

from __future__ import annotations

import math
import os
import struct
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["RateLimiter", "StartGate", "check_rate", "start_gate"]


def check_rate(value: object) -> float | None:
    """``max_per_second`` as a float > 0, or None; anything else is refused with what to pass."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(
            f"max_per_second must be a number of items per second > 0 (e.g. 10 or 0.5), or None for "
            f"no limit; not {value!r}"
        )
    return float(value)


class RateLimiter:
    """At most one start per ``1 / per_second`` seconds: a bucket of one token, never banked.

    The caller passes its own clock readings, so a simulated clock works as well as a real one.
    """

    __slots__ = ("_next", "interval", "make_up")

    def __init__(self, per_second: float, make_up: float = 0.0) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be > 0, not {per_second!r}")
        self.interval = 1.0 / per_second
        #: how much lateness (s) the next token may make up for; 0 keeps every two an interval apart
        self.make_up = make_up
        self._next: float | None = None  # when the next item may start

    def try_acquire(self, now: float) -> bool:
        """Take the token if it is due at ``now``; False (nothing taken) when it is due later.

        The next token is due one interval after ``now``, the moment this one was taken, so no two
        acquisitions are ever closer than one interval, however late this one came. With
        ``make_up``, the next is due up to that much sooner when this one came late: for hand-overs
        that a :class:`StartGate` in the workers spaces again, so that the late wake-ups of the
        caller do not add up.
        """
        due = self._next
        if due is not None and now < due:
            return False
        self._next = (now if due is None else max(due, now - self.make_up)) + self.interval
        return True

    def next_at(self, now: float) -> float:
        """When the next token is due (``now`` if one is due already)."""
        due = self._next
        return now if due is None or due <= now else due


# -- the gate in the workers -----------------------------------------------------------------------

_SLOT = struct.Struct("d")  # the file holds one double: when the next start is due (monotonic s)

#: the margin (s) the gate adds to each interval for the steps between its stamp and the start;
#: see StartGate._slack
_SLACK = 50e-6

#: guards the creation of a process's handles on a gate; replaced in a forked child, where a lock
#: held by another thread of the parent at the fork would stay locked forever
_HANDLES_LOCK = threading.Lock()


def _fresh_lock_after_fork() -> None:
    global _HANDLES_LOCK
    _HANDLES_LOCK = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_fresh_lock_after_fork)


def _gate_dir() -> str:
    """Where gate files go: memory (``/dev/shm``) where there is one, else the temporary directory."""
    shm = "/dev/shm"
    return shm if os.path.isdir(shm) and os.access(shm, os.W_OK | os.X_OK) else tempfile.gettempdir()


def _remove(path: str, owner: int) -> None:
    """Remove the gate's file, from the process that made it only (a forked child inherits the
    finalizer that calls this, and must leave the file to the pool that still uses it)."""
    if os.getpid() == owner:
        try:
            os.unlink(path)
        except OSError:
            pass


class StartGate:
    """One start per ``1 / per_second`` seconds across every worker that shares it.

    ``try_start()`` takes the start if it is due (and makes the next one due one interval later),
    else says how long to wait; ``wait()`` blocks until it took one; ``gated(call)`` wraps a task
    so that every call waits first. The state is one double in a small file, locked with
    ``flock`` while it is read and written (microseconds; nobody sleeps holding it), so threads,
    forked, spawned and forkserver processes all share it: the gate pickles as the file's path.
    The file is removed when the gate that made it is collected, at the latest at exit.
    """

    def __init__(self, per_second: float) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be > 0, not {per_second!r}")
        self.interval = 1.0 / per_second
        fd, self.path = tempfile.mkstemp(prefix="mtasklite_like-pace-", dir=_gate_dir())
        try:
            os.write(fd, _SLOT.pack(-math.inf))
        finally:
            os.close(fd)
        self._handles: tuple[int, int, threading.Lock] | None = None  # (pid, fd, thread lock)
        weakref.finalize(self, _remove, self.path, os.getpid())

    def __getstate__(self) -> tuple[str, float]:
        return self.path, self.interval

    def __setstate__(self, state: tuple[str, float]) -> None:
        self.path, self.interval = state
        self._handles = None

    def _open(self) -> tuple[int, threading.Lock]:
        """This process's descriptor on the file, and the lock its threads take turns with.

        ``flock`` excludes descriptors, not threads: threads of one process share one descriptor
        and a lock; a forked child opens its own descriptor (the inherited one is the parent's, and
        would not exclude the parent's other children)."""
        handles = self._handles
        pid = os.getpid()
        if handles is not None and handles[0] == pid:
            return handles[1], handles[2]
        with _HANDLES_LOCK:
            handles = self._handles
            if handles is None or handles[0] != pid:
                handles = (pid, os.open(self.path, os.O_RDWR | getattr(os, "O_CLOEXEC", 0)), threading.Lock())
                self._handles = handles
        return handles[1], handles[2]

    def try_start(self) -> float:
        """Take the start if it is due now and return 0.0; else return the seconds until it is due
        (nothing taken: ask again then, since another worker may take it first).

        The caller's task is meant to start right after this returns 0.0. If this thread was held
        up after the start was stamped (releasing the lock let another thread run, or the system
        paused this one), the next start is pushed back to one interval after the moment this
        returns, so the task's own view of its start stays an interval from the next one.
        """
        fd, lock = self._open()
        stamp = time.monotonic()
        wait = self._update(fd, lock, stamp, take=True)
        if wait > 0:
            return wait
        # Half the slack at most since the stamp: the other half covers the steps from here to the
        # task's first line.
        while (now := time.monotonic()) - stamp > self._slack / 2:
            self._update(fd, lock, now, take=False)
            stamp = now
        return 0.0

    @property
    def _slack(self) -> float:
        """How long after its stamp a start may happen unnoticed. The next start is due this much
        more than one interval after the stamp, so that the steps between the stamp and the start
        (the gate's own bookkeeping, the call of the task: microseconds) never bring two starts
        closer than an interval; a longer delay in the gate is noticed, and the next start pushed
        back. At most a hundredth of the interval, so the rate loses at most 1 %."""
        return min(_SLACK, self.interval / 100)

    def _update(self, fd: int, lock: threading.Lock, now: float, *, take: bool) -> float:
        """Under the lock. ``take``: if the start is due at ``now``, take it (the next is due one
        interval and the slack later) and return 0.0, else return the seconds until it is due.
        Otherwise: a start taken earlier really happens at ``now``; push the next one back to
        match, if it is due sooner. Returns 0.0."""
        import fcntl

        with lock:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                due: float = _SLOT.unpack(os.pread(fd, _SLOT.size, 0))[0]
                if take and now < due:
                    return due - now
                following = now + self.interval + self._slack
                if following > due:
                    os.pwrite(fd, _SLOT.pack(following), 0)
                return 0.0
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)

    def wait(self) -> None:
        """Block until this caller took a start."""
        while (delay := self.try_start()) > 0:
            time.sleep(delay)

    def gated(self, call: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """``call``, waiting for a start before each call."""
        wait = self.wait

        def gated_call(item: Any) -> Any:
            wait()
            return call(item)

        return gated_call


def start_gate(per_second: float | None) -> StartGate | None:
    """A gate for ``max_per_second=per_second``, or None without a limit or without ``flock``
    (Windows: there the hand-overs alone are paced)."""
    if per_second is None or sys.platform == "win32":
        return None
    return StartGate(per_second)
