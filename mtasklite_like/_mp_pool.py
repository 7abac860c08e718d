"""The machinery behind ``mtasklite_like.multiprocessing.Pool``: every call is one stream of items.

The standard library's pool runs different functions on the same worker processes, while a
``mtasklite_like.Pool`` binds one function to its workers and lets one run hold them at a time.
The bridge is a worker that is a dispatcher: each item is ``(position, function, arguments,
how to call)``, and the worker returns ``(position, result)``. Every call the user makes
(``map``, ``apply_async``, an ``imap`` iterator, ...) becomes a :class:`Job` that contributes items
to a single stream, and one background thread (the *driver*) consumes one unordered engine run
over that stream, handing each outcome to its job by position. So the pool's workers serve every
call at once, jobs never wait for each other's runs, and the engine keeps its guarantees: a dead
worker fails the item it was running (``WorkerDiedError``) instead of losing it.

The stream reads jobs first in, first out, as the standard library's task queue does, with one
difference: an ``imap`` job may be at most a bounded number of results ahead of its consumer (its
*credit*), so an endless input is read lazily; while it is at its bound, later jobs go first. The
engine runs in ``'ignore'`` mode, so a failing task is one more outcome (its exception, renamed
to the job's own position) rather than the end of the run; a failure of the whole run (workers
that cannot start, ``on_worker_death='raise'``) fails the jobs that had items in flight.

Lifecycle: the driver starts with the first job and ends when no job has items left to give and
nothing is in flight; the engine pool stays entered (workers kept) until ``close()`` has let every
job finish, or ``terminate()``. Outcomes of ``apply_async``/``map_async`` are delivered in the
driver's thread, callbacks included, as the standard library's result thread does.
"""

from __future__ import annotations

import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

from ._errors import MtaskliteLikeError, WorkerDiedError, name_item
from ._pool import Pool as EnginePool

__all__ = [
    "APPLY",
    "ONE",
    "STAR",
    "ApplyJob",
    "Core",
    "Job",
    "MapJob",
    "PoolTerminatedError",
    "StreamJob",
    "dispatch",
]

#: how a payload becomes the call's arguments: ``f(x)``, ``f(*x)``, ``f(*args, **kwargs)``
ONE, STAR, APPLY = 0, 1, 2

#: the pool's states, as in the standard library
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class PoolTerminatedError(MtaskliteLikeError):
    """``terminate()`` (or leaving ``with Pool(...)``) stopped the pool before this task finished.

    The standard library leaves such results pending for ever (``get()`` without a timeout
    hangs); here they fail with this error.
    """


def dispatch(task: tuple[Any, ...]) -> tuple[int, Any]:
    """What every worker runs: call the item's function on its arguments, tag the result with the
    item's position in the stream (outcomes come back in completion order).

    An item is ``(position, function, x)`` for ``function(x)``, the most common call, or
    ``(position, function, arguments, how)`` for the others (``STAR``, ``APPLY``).
    """
    if len(task) == 3:
        pos, func, payload = task
        return pos, func(payload)
    pos, func, payload, mode = task
    if mode == STAR:
        return pos, func(*payload)
    args, kwargs = payload
    return pos, func(*args, **kwargs)


class _Terminated(BaseException):
    """Raised in the driver's run (through the heartbeat) to stop it at once."""


#: how many seconds of results an ``imap`` iterator may be ahead of its consumer
AHEAD_SECONDS = 0.25
#: how often the pace of an ``imap`` iterator's results is measured, in seconds
_PACE_WINDOW = 0.1
#: the most items pulled from one job's input at once
_MAX_CHUNK = 1024
#: an input that gives items faster than this per item may be read in larger chunks
_FAST_SECONDS_PER_ITEM = 20e-6
_IN_MEMORY_ITERATORS: tuple[type, ...] = (type(iter([])), type(iter(())), type(iter(range(0))))


def _raise_later(error: BaseException) -> Iterator[Any]:
    """A source that raises ``error`` when next read (it was read for a run that ended)."""
    raise error
    yield  # a generator


#: what runs outside the lock once an outcome is recorded (a job's callback and its event)
Later = Callable[[], None]


class Job:
    """One call's share of the stream: where its items come from, how far they went.

    The core's lock guards every field; the hooks below are called with it held and return what
    must run after it is released (user callbacks), or None.
    """

    def __init__(
        self,
        core: Core,
        func: Callable[..., Any],
        source: Iterator[Any],
        mode: int,
        *,
        length: int | None = None,
        credit: int | None = None,
    ) -> None:
        self.core = core
        self.func = func
        self.mode = mode
        self.source = source
        #: payloads pulled for a run that ended before they were sent: they go first next time
        self.back: list[Any] = []
        self.pulling = False
        self.pulled = 0
        self.exhausted = False
        self.length = length
        self.received = 0
        #: how many results may be pulled but not yet taken by the consumer (None: no bound)
        self.credit = credit
        self.taken = 0
        self.over = False
        #: the job reached its credit and waits for the consumer (see ``feedable``)
        self.full = False
        #: items pulled at once (see ``pull``): large from the start for an input in memory
        self.chunk = _MAX_CHUNK if isinstance(source, _IN_MEMORY_ITERATORS) else 1

    def feedable(self) -> bool:
        """Items may be pulled now: input left, nobody pulling, within the credit."""
        if self.exhausted or self.pulling:
            return False
        credit = self.credit
        if credit is None:
            return True
        ahead = self.pulled - self.taken
        if self.full:
            # At its bound, the job waits until the consumer has taken half of it, so that the
            # input is read in chunks rather than one item per result taken.
            if ahead > credit // 2:
                return False
            self.full = False
        elif ahead >= credit:
            self.full = True
            return False
        return True

    def room(self) -> int:
        """How many items to pull now: the chunk, within the credit and the known length."""
        n = self.chunk
        if self.credit is not None:
            n = min(n, self.credit - (self.pulled - self.taken))
        if self.length is not None:
            n = min(n, self.length - self.pulled)
        return max(n, 1)

    def pull(self, n: int) -> tuple[list[Any], bool, BaseException | None]:
        """Up to ``n`` payloads from the source (no lock held: it may run user code or wait);
        whether it ended, and what it raised."""
        payloads: list[Any] = []
        end = False
        error: BaseException | None = None
        start = time.perf_counter()
        try:
            if n == 1:
                payloads.append(next(self.source))
            else:
                payloads.extend(islice(self.source, n))
                end = len(payloads) < n
        except StopIteration:
            end = True
        except BaseException as exc:
            error = exc
        if len(payloads) == n and time.perf_counter() - start < n * _FAST_SECONDS_PER_ITEM:
            self.chunk = min(self.chunk * 4, _MAX_CHUNK)
        else:
            self.chunk = 1
        return payloads, end, error

    def item_of(self, payload: Any) -> Any:
        """The user's item for a payload, as an error names it."""
        return payload[0] if self.mode == APPLY else payload

    # -- hooks (lock held) --------------------------------------------------------------------------

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        """Item ``index`` finished: its result (``ok``) or its exception."""
        raise NotImplementedError

    def input_ended(self) -> Later | None:
        """The source is exhausted: ``length`` is now known."""
        return None

    def input_failed(self, index: int, error: BaseException) -> Later | None:
        """The source raised while giving item ``index``."""
        raise NotImplementedError

    def break_off(self, error: BaseException) -> Later | None:
        """The job cannot go on (the pool was terminated, or its run failed)."""
        raise NotImplementedError


class _ResultJob(Job):
    """A job whose outcome is one value: ``apply_async`` and ``map_async``."""

    def __init__(
        self,
        core: Core,
        func: Callable[..., Any],
        source: Iterator[Any],
        mode: int,
        length: int,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
    ) -> None:
        super().__init__(core, func, source, mode, length=length)
        self.event = threading.Event()
        self.success: bool | None = None
        self.value: Any = None
        self.callback = callback
        self.error_callback = error_callback

    def _settle(self, success: bool, value: Any) -> Later:
        """Record the outcome; return what runs it out: the callback, then the event (so ``get()``
        returns after the callback, as in the standard library)."""
        self.over = True
        self.exhausted = True
        self.success, self.value = success, value
        callback = self.callback if success else self.error_callback
        self.callback = self.error_callback = None

        def later() -> None:
            if callback is not None:
                try:
                    callback(value)
                except BaseException:
                    # The standard library's result thread dies here and the pool hangs; ours
                    # reports the error and goes on.
                    print(f"Exception in the callback {callback!r} of a pool task:", file=sys.stderr)
                    traceback.print_exc()
            self.event.set()

        return later

    def break_off(self, error: BaseException) -> Later | None:
        return None if self.over else self._settle(False, error)

    def input_failed(self, index: int, error: BaseException) -> Later | None:
        return self.break_off(error)  # not reached: the source is a list or a single call


class ApplyJob(_ResultJob):
    """``apply_async``: one call; its result or exception is the outcome."""

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        return None if self.over else self._settle(ok, value)


class MapJob(_ResultJob):
    """``map_async``/``starmap_async``: a list of results in input order, or the first failure.

    As in the standard library, the outcome waits for every item, so every task has run when
    ``get()`` returns or raises; the error raised is that of the first failing item in input order.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        assert self.length is not None
        self.results: list[Any] = [None] * self.length
        self.first_failure: tuple[int, BaseException] | None = None

    def input_ended(self) -> Later | None:
        if self.length != 0 or self.over:
            return None
        # An empty input: ready at once with [], and (as in the standard library) no callback.
        self.over = True
        self.success, self.value = True, []
        self.callback = self.error_callback = None
        return self.event.set

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        if self.over:
            return None
        if ok:
            self.results[index] = value
        elif self.first_failure is None or index < self.first_failure[0]:
            self.first_failure = (index, value)
        self.received += 1
        if self.received < len(self.results):
            return None
        if self.first_failure is not None:
            self.results = []
            return self._settle(False, self.first_failure[1])
        results, self.results = self.results, []
        return self._settle(True, results)


class StreamJob(Job):
    """``imap``/``imap_unordered``: outcomes wait in a buffer until the consumer takes them.

    How far the input is read ahead of the consumer (the credit) follows the pace of the
    results: about :data:`AHEAD_SECONDS` of them, at least ``least`` (a few per worker, so slow
    tasks keep every worker busy) and at most ``most``. Fast tasks thus travel in large batches,
    and large or slow results are few in memory.
    """

    def __init__(
        self, core: Core, func: Callable[..., Any], source: Iterator[Any], mode: int, *, ordered: bool,
        least: int, most: int,
    ) -> None:
        super().__init__(core, func, source, mode, credit=least)
        self.ordered = ordered
        self.least = least
        self.most = most
        self.cond = threading.Condition(core.lock)
        #: ordered: outcomes by index; unordered: outcomes in arrival order
        self.by_index: dict[int, tuple[bool, Any]] = {}
        self.arrived: deque[tuple[bool, Any]] = deque()
        self.broken: BaseException | None = None
        self._window_start = time.monotonic()
        self._window_count = 0

    def paced(self, count: int, now: float) -> None:
        """``count`` outcomes just arrived: adjust the credit to the measured pace (lock held)."""
        self._window_count += count
        elapsed = now - self._window_start
        if elapsed < _PACE_WINDOW:
            return
        if self.credit is not None:  # None after close(): the input is read to its end
            pace = self._window_count / elapsed
            self.credit = max(self.least, min(self.most, int(pace * AHEAD_SECONDS)))
        self._window_start = now
        self._window_count = 0

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        if self.over:
            return None
        if self.ordered:
            self.by_index[index] = (ok, value)
        else:
            self.arrived.append((ok, value))
        self.received += 1
        self._check_over()
        touched = self.core.touched  # the consumer is woken once per batch of outcomes
        touched[self] = touched.get(self, 0) + 1
        return None

    def input_ended(self) -> Later | None:
        self._check_over()
        self.cond.notify_all()
        return None

    def input_failed(self, index: int, error: BaseException) -> Later | None:
        # As in the standard library: the input's exception takes the next position, then the
        # iteration ends after it.
        self.exhausted = True
        self.length = index + 1
        self.pulled = index + 1
        later = self.deliver(index, False, error)
        self.cond.notify_all()
        return later

    def break_off(self, error: BaseException) -> Later | None:
        if not self.over:
            self.broken = error
            self.over = self.exhausted = True
            self.cond.notify_all()
        return None

    def _check_over(self) -> None:
        if self.exhausted and self.length is not None and self.received >= self.length:
            self.over = True

    def next(self, timeout: float | None) -> Any:
        """The next outcome for the consumer: its result, its exception raised, StopIteration at
        the end, ``multiprocessing.TimeoutError`` after ``timeout`` seconds without one."""
        from multiprocessing import TimeoutError as MpTimeoutError

        core = self.core
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            while True:
                outcome = self._take()
                if outcome is not None:
                    break
                if self.broken is not None:
                    error, self.broken = self.broken, None
                    self.length = self.taken  # nothing comes after a broken job's error
                    raise error
                if self.over or (self.length is not None and self.taken >= self.length):
                    raise StopIteration
                core.check_may_wait("the next result of imap()")
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise MpTimeoutError
                self.cond.wait(remaining)
            self.taken += 1
            if self.full and self.credit is not None and self.pulled - self.taken == self.credit // 2:
                core.feed.notify_all()  # it waited at its bound: the stream may pull again
        ok, value = outcome
        if ok:
            return value
        raise value

    def _take(self) -> tuple[bool, Any] | None:
        if self.ordered:
            return self.by_index.pop(self.taken, None)
        return self.arrived.popleft() if self.arrived else None


_ITEM_NUMBER = "input item #{}"


def _rename(error: BaseException, pos: int, index: int, item: Any) -> None:
    """An error named by its stream position gets the position in its own call instead, and a
    death names the call's item rather than the stream's task."""
    if isinstance(error, WorkerDiedError) and error.indices == [pos]:
        error.indices = [index]
        error.items = [item]
    if pos == index:
        return
    name_item(error, index)
    if isinstance(error, MtaskliteLikeError) and error.args and isinstance(error.args[0], str):
        text = re.sub(rf"input item #{pos}\b", _ITEM_NUMBER.format(index), error.args[0])
        error.args = (text, *error.args[1:])


class Core:
    """The stream of every call's items through one engine pool, and the thread that drives it."""

    def __init__(self, engine: EnginePool[Any]) -> None:
        self.engine = engine
        self.lock = threading.Lock()
        self.feed = threading.Condition(self.lock)  # the stream waits here for items to give
        self.state = RUN
        #: jobs whose input is not exhausted, first in first out
        self.jobs: deque[Job] = deque()
        #: jobs without their outcome yet
        self.open: set[Job] = set()
        #: stream position -> (job, position in the job) for items pulled and not answered
        self.inflight: dict[int, tuple[Job, int]] = {}
        self.next_pos = 0
        self.run_id = 0
        self.driver: threading.Thread | None = None
        self.stopped = False
        #: stream jobs given outcomes by the batch being routed: their consumers are woken after it
        self.touched: dict[StreamJob, int] = {}

    # -- the caller's side ----------------------------------------------------------------------------

    def check_running(self) -> None:
        if self.state != RUN:
            raise ValueError("Pool not running")

    def check_may_wait(self, what: str) -> None:
        """Refuse a wait that would block the driver on itself (a callback waiting for a task)."""
        if threading.current_thread() is self.driver:
            raise RuntimeError(
                f"waiting for {what} inside a callback of this pool would wait for ever: callbacks "
                "run in the thread that delivers every result of the pool; wait outside the callback"
            )

    def submit(self, job: Job) -> None:
        with self.lock:
            self.check_running()
            if job.length == 0:
                job.exhausted = True
                later = job.input_ended()
            else:
                self.open.add(job)
                self.jobs.append(job)
                self._kick()
                later = None
        if later is not None:
            later()

    def _kick(self) -> None:
        """Start the driver if it is not running, else tell the stream there is more (lock held)."""
        if self.driver is None:
            driver = threading.Thread(target=self._drive, name="mtasklite_like-multiprocessing", daemon=True)
            self.driver = driver
            driver.start()
        else:
            self.feed.notify_all()

    def cancel(self, job: Job) -> None:
        """An ``imap`` iterator was dropped: read nothing more of its input."""
        with self.lock:
            job.exhausted = job.over = True
            self.open.discard(job)
            self.feed.notify_all()

    def close(self) -> None:
        with self.lock:
            if self.state != RUN:
                return
            self.state = CLOSE
            # join() waits for every task: open imap iterators are read to their end.
            for job in self.jobs:
                job.credit = None
            self.feed.notify_all()
            finished = self.driver is None
        if finished:
            self._stop_engine()

    def terminate(self) -> None:
        with self.lock:
            self.state = TERMINATE
            self.feed.notify_all()
            driver = self.driver
        if driver is not None and driver is not threading.current_thread():
            driver.join()  # the heartbeat stops its run within 0.2 s
        self._break_all(PoolTerminatedError("the pool was terminated before this task finished"))
        self._stop_engine()

    def join(self) -> None:
        with self.lock:
            if self.state == RUN:
                raise ValueError("Pool is still running")
            self.check_may_wait("the pool's tasks (join())")
            driver = self.driver
        if driver is not None:
            driver.join()  # after close() it ends once every task is done, and stops the workers
        self._stop_engine()

    def _stop_engine(self) -> None:
        with self.lock:
            if self.stopped:
                return
            self.stopped = True
        self.engine.__exit__(None, None, None)

    def _break_all(self, error: BaseException) -> None:
        with self.lock:
            jobs, self.open = list(self.open), set()
            self.jobs.clear()
            self.inflight.clear()
            laters = [job.break_off(error) for job in jobs]
        for later in laters:
            if later is not None:
                later()

    # -- the driver -----------------------------------------------------------------------------------

    def _drive(self) -> None:
        closed = False
        try:
            while True:
                with self.lock:
                    if self.state == TERMINATE or not self._has_input():
                        # Decided under the lock, so a job submitted from now on starts a new driver.
                        self.driver = None
                        closed = self.state == CLOSE
                        break
                    self.run_id += 1
                    run_id = self.run_id
                    # Positions are the engine's input indices, which count from 0 in each run.
                    self.next_pos = 0
                self._one_run(run_id)
        except BaseException:
            with self.lock:
                self.driver = None
            raise
        if closed:
            self._stop_engine()  # close(): the workers exit once every task is done

    def _has_input(self) -> bool:
        """Whether any job has items left to give (lock held); drops finished jobs at the front."""
        jobs = self.jobs
        while jobs and jobs[0].exhausted and not jobs[0].back:
            jobs.popleft()
        return any(not job.exhausted or job.back for job in jobs)

    def _heartbeat(self) -> None:
        if self.state == TERMINATE:
            raise _Terminated

    def _one_run(self, run_id: int) -> None:
        results = self.engine(self._stream(run_id))
        results.heartbeat = self._heartbeat
        error: BaseException | None = None
        try:
            for first in results:
                self._route([first, *results.take_ready()])
        except _Terminated:
            error = None
        except BaseException as exc:
            error = exc
        finally:
            results.close()
            with self.lock:
                self.run_id += 1  # a stream still waiting for this run gives up
                self.feed.notify_all()
                lost = list(self.inflight.values())
                self.inflight.clear()
                laters = []
                if error is None and lost and self.state != TERMINATE:
                    error = RuntimeError(
                        "mtasklite_like internal error: a run of the pool ended with items unanswered"
                    )
                if error is not None:
                    # The run failed as a whole: each job with an item in it fails with its error.
                    for job in {id(job): job for job, _ in lost}.values():
                        self.open.discard(job)
                        laters.append(job.break_off(error))
            for later in laters:
                if later is not None:
                    later()

    def _route(self, outcomes: list[Any]) -> None:
        """Hand each outcome of the run to its job; then run what completed jobs must run."""
        laters = []
        run_error: BaseException | None = None
        with self.lock:
            inflight = self.inflight
            for outcome in outcomes:
                if type(outcome) is tuple:
                    pos, value = outcome
                    ok = True
                else:
                    pos, value, ok = getattr(outcome, "input_index", None), outcome, False
                    if pos not in inflight:
                        run_error = outcome  # not an item's failure: the run's own
                        continue
                job, index = inflight.pop(pos)
                if not ok:
                    items = getattr(value, "items", None)
                    payload = items[0][2] if isinstance(value, WorkerDiedError) and items else None
                    _rename(value, pos, index, job.item_of(payload) if payload is not None else None)
                later = job.deliver(index, ok, value)
                if job.over:
                    self.open.discard(job)
                if later is not None:
                    laters.append(later)
            if not inflight:
                self.feed.notify_all()  # the stream may end now
            touched = self.touched
            if touched:
                now = time.monotonic()
                for stream_job, count in touched.items():
                    stream_job.paced(count, now)
                    stream_job.cond.notify_all()
                touched.clear()
        for later in laters:
            later()
        if run_error is not None:
            raise run_error

    def _stream(self, run_id: int) -> Iterator[tuple[Any, ...]]:
        """The items of every job, read by the engine's input thread.

        Items are pulled from a job's input in chunks, and registered under one lock per chunk:
        the chunk grows while the input gives items fast (a list, a quick generator) and is one
        item while it is slow, so a slow input's items are handed over as they come.
        """
        lock = self.lock
        while True:
            with lock:
                while True:
                    if self.run_id != run_id or self.state == TERMINATE:
                        return
                    job = self._feedable()
                    if job is not None:
                        break
                    if not self.inflight and not self._has_input():
                        return
                    self.feed.wait()
                job.pulling = True
                payloads, job.back = job.back, []
                room = job.room()
            end = False
            error: BaseException | None = None
            if not payloads:
                payloads, end, error = job.pull(room)
            tasks = []
            later = None
            with lock:
                job.pulling = False
                if self.run_id != run_id:
                    job.back = payloads + job.back
                    if end:
                        job.source = iter(())
                    elif error is not None:
                        job.source = _raise_later(error)
                    self.feed.notify_all()
                    return
                if job.over:
                    continue  # broken or dropped meanwhile
                func, mode, index, pos = job.func, job.mode, job.pulled, self.next_pos
                inflight = self.inflight
                for payload in payloads:
                    inflight[pos] = (job, index)
                    tasks.append((pos, func, payload) if mode == ONE else (pos, func, payload, mode))
                    pos += 1
                    index += 1
                self.next_pos = pos
                job.pulled = index
                if job.length is not None and index >= job.length:
                    job.exhausted = True  # sized: no need to ask the source for its end
                elif end:
                    job.exhausted = True
                    job.length = index
                    later = job.input_ended()
                elif error is not None:
                    later = job.input_failed(index, error)
                if job.over:
                    self.open.discard(job)
            if later is not None:
                later()
            yield from tasks

    def _feedable(self) -> Job | None:
        """The first job, in submission order, that may give an item now (lock held)."""
        jobs = self.jobs
        while jobs and jobs[0].exhausted and not jobs[0].back:
            jobs.popleft()
        for job in jobs:
            if job.back and not job.pulling:
                return job
            if job.feedable():
                return job
        return None
