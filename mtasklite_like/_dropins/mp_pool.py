"""The machinery behind ``mtasklite_like.multiprocessing.Pool``: every call is one stream of items.

The standard library's pool runs different functions on the same worker processes, while a
``mtasklite_like.Pool`` binds one function to its workers and lets one run hold them at a time.
The bridge is a worker that is a dispatcher: each item is ``(position, function, arguments,
how to call)``, and the worker returns ``(position, result)``; or, for a *chunk* (several payloads
of one call travelling as one item, as the standard library's ``chunksize`` makes them),
``(position, results, failures)``, each element run on its own so that each has its own outcome.
Every call the user makes
(``map``, ``apply_async``, an ``imap`` iterator, ...) becomes a :class:`Job` that contributes items
to a single stream, and one background thread (the *driver*) consumes one unordered engine run
over that stream, handing each outcome to its job by position. So the pool's workers serve every
call at once, jobs never wait for each other's runs, and the engine keeps its guarantees: a dead
worker fails the item it was running (``WorkerDiedError``) instead of losing it; for a chunk,
every element of the chunk (the error names the chunk's first element).

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

import copy
import re
import sys
import threading
import time
import traceback
from collections import deque
from collections.abc import Callable, Iterator
from itertools import islice, starmap
from typing import Any

from .._errors import MtaskliteLikeError, RemoteTraceback, WorkerDiedError, name_item
from .._pool import Pool as EnginePool

__all__ = [
    "APPLY",
    "CHUNK",
    "ONE",
    "PACK",
    "STAR",
    "ApplyJob",
    "Core",
    "Elements",
    "Failed",
    "Job",
    "MapJob",
    "PoolTerminatedError",
    "StreamJob",
    "dispatch",
    "run_chunk",
    "to_wire",
]

#: how a payload becomes the call's arguments: ``f(x)``, ``f(*x)``, ``f(*args, **kwargs)``
ONE, STAR, APPLY = 0, 1, 2
#: flags added to ``ONE``/``STAR``: the item is a chunk (a sequence of payloads), and its
#: elements' exceptions must be made ready to cross to another process (see ``run_chunk``)
CHUNK, PACK = 4, 8

#: the pool's states, as in the standard library
RUN, CLOSE, TERMINATE = "RUN", "CLOSE", "TERMINATE"


class PoolTerminatedError(MtaskliteLikeError):
    """``terminate()`` (or leaving ``with Pool(...)``) stopped the pool before this task finished.

    The standard library leaves such results pending for ever (``get()`` without a timeout
    hangs); here they fail with this error.
    """


def dispatch(task: tuple[Any, ...]) -> tuple[Any, ...]:
    """What every worker runs: call the item's function on its arguments, tag the result with the
    item's position in the stream (outcomes come back in completion order).

    An item is ``(position, function, x)`` for ``function(x)``, the most common call,
    ``(position, function, arguments, how)`` for the others (``STAR``, ``APPLY``), or a chunk
    ``(position, function, payloads, how | CHUNK)``, run by :func:`run_chunk`.
    """
    if len(task) == 3:
        pos, func, payload = task
        return pos, func(payload)
    pos, func, payload, mode = task
    if mode == STAR:
        return pos, func(*payload)
    if mode == APPLY:
        args, kwargs = payload
        return pos, func(*args, **kwargs)
    return run_chunk(pos, func, payload, mode)


#: an element's failure inside a chunk: its index in the chunk, the exception, and the worker's
#: traceback text (None where the exception did not cross a process and keeps its own traceback)
ChunkFailure = tuple[int, BaseException, "str | None"]


def run_chunk(
    pos: int, func: Callable[..., Any], payloads: Any, mode: int
) -> tuple[int, list[Any], list[ChunkFailure] | None]:
    """Run ``func`` on every payload of a chunk; ``(position, results, failures)``.

    Each element is run even after another failed, so every element has its own outcome (the
    standard library fails the rest of a chunk with its first error); a failed element holds
    ``None`` in ``results``. Only ``Exception`` is caught, as the engine does: ``SystemExit`` and
    ``KeyboardInterrupt`` end the worker, which the engine reports as a death of the whole chunk.
    With ``PACK`` an exception is replaced by a ``TaskPicklingError`` if it cannot be pickled
    (which would otherwise fail the whole chunk's result) and its traceback comes as text.

    The elements run in one C-level loop (``list.extend`` of ``map``); after a failure, the loop
    goes on from the next element of the same iterator.
    """
    results: list[Any] = []
    failures: list[ChunkFailure] | None = None
    elements = iter(payloads)
    calls = starmap(func, elements) if mode & STAR else map(func, elements)
    while True:
        try:
            results.extend(calls)
            return pos, to_wire(results) if mode & PACK else results, failures
        except Exception as exc:
            if failures is None:
                failures = []
            if mode & PACK:
                from .._worker.run import pack_exception

                packed, tb = pack_exception(exc, f"chunk element #{len(results)}")
                failures.append((len(results), packed, tb))
            else:
                failures.append((len(results), exc, None))
            results.append(None)


class Elements(list):  # type: ignore[type-arg]
    """A chunk's payloads or results on their way between the caller and a worker.

    A plain ``list`` would do, but the engine searches the lists and tuples of every large message
    for large ``bytes`` to send out of band, one element at a time in Python: for a chunk of
    thousands of numbers that search cost more than the chunk's work. A chunk whose first element
    is a scalar (or a tuple of scalars) travels as this type, which the search does not enter;
    one that starts with anything else stays a list, so large buffers keep travelling out of band.
    """

    __slots__ = ()


_SCALARS = frozenset({int, float, complex, bool, str, type(None)})


def to_wire(elements: list[Any]) -> list[Any]:
    """``elements`` as a chunk travels: an :class:`Elements` if its first element is a scalar or
    a tuple of scalars (nothing inside to send out of band), else the list itself."""
    if elements:
        first = elements[0]
        kind = type(first)
        if kind in _SCALARS or (kind is tuple and all(type(x) in _SCALARS for x in first)):
            return Elements(elements)
    return elements


def _note_chunk(error: BaseException, index: int, count: int) -> None:
    """Say on a chunk's failure as a whole (a death, say) which items it cost."""
    if count > 1 and hasattr(error, "add_note"):
        error.add_note(
            f"the chunk of input items #{index} to #{index + count - 1} failed as a whole: "
            "each of them fails with this error"
        )


class Failed:
    """An element's exception in a stream job's buffer of outcomes (a private type, so that no
    result of the user's can be taken for one)."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _error_for_element(error: BaseException, index: int) -> BaseException:
    """The failure of a whole chunk, for one of its later elements: a copy named by ``index``
    (the same object where it cannot be copied)."""
    try:
        twin = copy.copy(error)
    except Exception:
        return error
    notes = getattr(error, "__notes__", None)
    if isinstance(notes, list):
        old = getattr(error, "input_index", None)
        twin.__notes__ = [n for n in notes if n != f"input item #{old}"]  # type: ignore[attr-defined]
    twin.__dict__.pop("input_index", None)
    twin.__cause__ = error.__cause__
    name_item(twin, index)
    return twin


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
        chunksize: int = 1,
        seq: Any = None,
    ) -> None:
        self.core = core
        self.func = func
        self.mode = mode
        self.source = source
        #: payloads per engine item: above 1, items are chunks (``mode | CHUNK``)
        self.chunksize = chunksize
        #: the whole input, when it is a sequence in memory: pulled by slicing, not item by item
        self.seq = seq
        #: payloads pulled for a run that ended before they were sent: they go first next time
        self.back: list[Any] = []
        self.pulling = False
        self.pulled = 0
        self.exhausted = False
        self.length = length
        self.received = 0
        #: how many results may be pulled but not yet taken by the consumer (None: no bound)
        self.credit = credit
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

    @property
    def taken(self) -> int:
        """How many outcomes the consumer has taken (a stream job counts them)."""
        return 0

    def room(self) -> int:
        """How many items to pull now: the chunk, within the credit, whole chunks of
        ``chunksize``, within the known length."""
        n = self.chunk
        if self.credit is not None:
            n = min(n, self.credit - (self.pulled - self.taken))
        size = self.chunksize
        if size > 1:
            n = max(n - n % size, size)
        if self.length is not None:
            n = min(n, self.length - self.pulled)
        return max(n, 1)

    def pull(self, n: int) -> tuple[list[Any], bool, BaseException | None]:
        """Up to ``n`` payloads from the source (no lock held: it may run user code or wait);
        whether it ended, and what it raised."""
        if self.seq is not None:
            first = self.pulled
            part = self.seq[first:first + n]
            return part if isinstance(part, list) else list(part), first + n >= len(self.seq), None
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

    def deliver_chunk(
        self, index: int, results: list[Any], failures: list[tuple[int, BaseException]] | None
    ) -> Later | None:
        """The chunk of items from ``index`` ran: ``results`` (``None`` where an element failed)
        and the failures, ``(position in the chunk, exception named by its index)``."""
        raise NotImplementedError

    def fail_chunk(self, index: int, count: int, error: BaseException, payloads: Any) -> Later | None:
        """The ``count`` items from ``index`` failed as one engine item (a death, say): ``error``
        is named by item ``index``. ``payloads`` is the chunk (None for a single item)."""
        if count == 1:
            return self.deliver(index, False, error)
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

    def _failed(self, index: int, error: BaseException) -> None:
        if self.first_failure is None or index < self.first_failure[0]:
            self.first_failure = (index, error)

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        if self.over:
            return None
        if ok:
            self.results[index] = value
        else:
            self._failed(index, value)
        return self._received(1)

    def deliver_chunk(
        self, index: int, results: list[Any], failures: list[tuple[int, BaseException]] | None
    ) -> Later | None:
        if self.over:
            return None
        self.results[index:index + len(results)] = results
        if failures:
            k, error = failures[0]  # in chunk order: the first is the chunk's earliest
            self._failed(index + k, error)
        return self._received(len(results))

    def fail_chunk(self, index: int, count: int, error: BaseException, payloads: Any) -> Later | None:
        if self.over:
            return None
        _note_chunk(error, index, count)
        self._failed(index, error)  # only the first failure in input order is ever raised
        return self._received(count)

    def _received(self, count: int) -> Later | None:
        self.received += count
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

    Outcomes the consumer may take now (the next ones in input order, for ``imap``) wait in
    ``ready``, a deque the consumer pops without the lock: each result costs it one ``popleft``
    (a failure is a :class:`Failed` there). ``imap``'s outcomes that came early wait in
    ``by_index``, by the index of their first element, until those before them have come.
    """

    def __init__(
        self, core: Core, func: Callable[..., Any], source: Iterator[Any], mode: int, *, ordered: bool,
        least: int, most: int, chunksize: int = 1,
    ) -> None:
        super().__init__(core, func, source, mode, credit=least, chunksize=chunksize)
        self.ordered = ordered
        self.least = least
        self.most = most
        self.cond = threading.Condition(core.lock)
        #: outcomes the consumer may take, in the order it takes them
        self.ready: deque[Any] = deque()
        #: how many outcomes were put in ``ready`` so far
        self.readied = 0
        #: ordered: outcomes that came before those ahead of them, by the index of the first
        self.by_index: dict[int, list[Any]] = {}
        self.broken: BaseException | None = None
        self._window_start = time.monotonic()
        self._window_count = 0

    @property
    def taken(self) -> int:
        return self.readied - len(self.ready)

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

    def _arrived(self, index: int, values: list[Any]) -> None:
        """Outcomes of the items from ``index`` (results, or ``Failed``) came (lock held)."""
        if self.ordered and index != self.readied:
            self.by_index[index] = values
        else:
            self.ready.extend(values)
            self.readied += len(values)
            if self.ordered and self.by_index:
                by_index, ready = self.by_index, self.ready
                while True:
                    following = by_index.pop(self.readied, None)
                    if following is None:
                        break
                    ready.extend(following)
                    self.readied += len(following)
        self.received += len(values)
        self._check_over()
        touched = self.core.touched  # the consumer is woken once per batch of outcomes
        touched[self] = touched.get(self, 0) + len(values)

    def deliver(self, index: int, ok: bool, value: Any) -> Later | None:
        if not self.over:
            self._arrived(index, [value if ok else Failed(value)])
        return None

    def deliver_chunk(
        self, index: int, results: list[Any], failures: list[tuple[int, BaseException]] | None
    ) -> Later | None:
        if self.over:
            return None
        if failures:
            for k, error in failures:
                results[k] = Failed(error)
        self._arrived(index, results)
        return None

    def fail_chunk(self, index: int, count: int, error: BaseException, payloads: Any) -> Later | None:
        if self.over:
            return None
        # Each element gets its own outcome: the error for the first, a copy named by its own
        # index (and, for a death, holding its own item) for each of the others.
        _note_chunk(error, index, count)
        values: list[Any] = [Failed(error)]
        for k in range(1, count):
            twin = _error_for_element(error, index + k)
            if isinstance(twin, WorkerDiedError) and twin is not error:
                twin.indices = [index + k]
                twin.items = [self.item_of(payloads[k])] if payloads is not None else []
            values.append(Failed(twin))
        self._arrived(index, values)
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
        try:
            value = self.ready.popleft()
        except IndexError:
            value = self.wait_next(timeout)
        if type(value) is Failed:
            raise value.error
        return value

    def wait_next(self, timeout: float | None) -> Any:
        """``next`` once ``ready`` was found empty: wait for an outcome, under the lock."""
        from multiprocessing import TimeoutError as MpTimeoutError

        core = self.core
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.cond:
            if self.full:
                core.feed.notify_all()  # it waits at its bound: the consumer took what it could
            while True:
                if self.ready:
                    return self.ready.popleft()
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
        # Reentrant: an ``imap`` iterator's finalizer (``cancel``) takes it, and the garbage
        # collector may run that finalizer in any thread at any allocation, including in this
        # thread while it holds the lock (routing outcomes, say).
        self.lock = threading.RLock()
        self.feed = threading.Condition(self.lock)  # the stream waits here for items to give
        self.state = RUN
        #: jobs whose input is not exhausted, first in first out
        self.jobs: deque[Job] = deque()
        #: jobs without their outcome yet
        self.open: set[Job] = set()
        #: stream position -> (job, position in the job, the chunk's payloads or None for a single
        #: item) for items pulled and not answered
        self.inflight: dict[int, tuple[Job, int, Any]] = {}
        #: calls may travel in chunks: not when each item has its own time limit or retries,
        #: which the engine applies to an engine item (a whole chunk)
        self.may_chunk = engine.task_timeout is None and engine.retries == 0
        #: chunks must make their elements' exceptions ready to cross a process (see ``run_chunk``)
        self.pack = PACK if not (engine.use_threads or engine.config.runs_inline) else 0
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
                    for job in {id(job): job for job, _, _ in lost}.values():
                        self.open.discard(job)
                        laters.append(job.break_off(error))
            for later in laters:
                if later is not None:
                    later()

    def _route(self, outcomes: list[Any]) -> None:
        """Hand each outcome of the run to its job; then run what completed jobs must run.

        A chunk's outcome goes to its job in one step (a slice of a map's list, one ``extend`` of
        a stream job's buffer); its elements' exceptions are named by their index in the call
        and get the worker's traceback as their cause, as the engine does for single items.
        """
        laters = []
        run_error: BaseException | None = None
        with self.lock:
            inflight = self.inflight
            for outcome in outcomes:
                if type(outcome) is tuple:
                    if len(outcome) == 2:
                        pos, value = outcome
                        job, index, _ = inflight.pop(pos)
                        later = job.deliver(index, True, value)
                    else:
                        pos, results, failures = outcome
                        job, index, _ = inflight.pop(pos)
                        named = None
                        if failures:
                            named = []
                            for k, error, tb in failures:
                                if tb is not None:
                                    error.__cause__ = RemoteTraceback(tb)
                                name_item(error, index + k)
                                named.append((k, error))
                        later = job.deliver_chunk(index, results, named)
                else:
                    pos = getattr(outcome, "input_index", None)
                    if pos not in inflight:
                        run_error = outcome  # not an item's failure: the run's own
                        continue
                    job, index, payloads = inflight.pop(pos)
                    count = 1 if payloads is None else len(payloads)
                    item = None
                    if isinstance(outcome, WorkerDiedError) and outcome.items:
                        item = job.item_of(outcome.items[0][2] if payloads is None else payloads[0])
                    _rename(outcome, pos, index, item)
                    later = job.fail_chunk(index, count, outcome, payloads)
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
                    if stream_job.full:
                        self.feed.notify_all()  # its consumer may have taken enough meanwhile
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
            tasks: list[tuple[Any, ...]] = []
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
                size = job.chunksize
                if size > 1:
                    # Whole chunks, and a shorter last one where the input ends.
                    mode |= CHUNK | self.pack
                    for start in range(0, len(payloads), size):
                        part = payloads[start:start + size]
                        inflight[pos] = (job, index, part)
                        tasks.append((pos, func, to_wire(part) if self.pack else part, mode))
                        pos += 1
                        index += len(part)
                else:
                    for payload in payloads:
                        inflight[pos] = (job, index, None)
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
