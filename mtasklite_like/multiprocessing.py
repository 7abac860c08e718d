"""A drop-in for ``multiprocessing.Pool``: change the import, keep the code.

``from multiprocessing import Pool`` becomes ``from mtasklite_like.multiprocessing import Pool``.
The constructor (``processes``, ``initializer``, ``initargs``, ``maxtasksperchild``, ``context``),
the methods (``map``, ``imap``, ``imap_unordered``, ``starmap``, ``apply`` and their ``_async``
forms with ``callback``/``error_callback``, ``close``, ``join``, ``terminate``, ``with``) and
their results are those of the standard library: ``map`` returns a list in input order,
``AsyncResult.get(timeout)`` raises ``multiprocessing.TimeoutError`` when the time runs out, a
task's exception is raised in the caller with its own type, a closed pool refuses work with
``ValueError("Pool not running")``, and leaving ``with`` terminates the pool.

What is better than there:

- a worker that dies (``os._exit``, a segfault, the OOM killer) fails the task it was running
  with [`WorkerDiedError`][mtasklite_like.WorkerDiedError] and is replaced; the standard library's
  ``map`` waits for that task for ever. A failing ``initializer`` raises
  [`WorkerInitError`][mtasklite_like.WorkerInitError] instead of restarting workers for ever;
- ``imap`` and ``imap_unordered`` read their input lazily, a bounded number of results ahead of
  the consumer, so an endless generator works in constant memory (the standard library reads
  the whole input at once);
- functions travel with ``dill`` when ``pickle`` refuses them: lambdas, closures and functions
  defined in ``__main__`` or a notebook work with every start method;
- ``terminate()`` fails the tasks it cuts short with
  [`PoolTerminatedError`][mtasklite_like.multiprocessing.PoolTerminatedError] (the standard
  library leaves their ``get()`` waiting for ever).

Any keyword option of [`mtasklite_like.Pool`][mtasklite_like.Pool] may be added after the standard
arguments (``task_timeout=``, ``retries=``, ``worker_env=``, ``use_threads=True``, ...); it applies to
every call. ``chunksize`` cuts the input into chunks as there (``map`` picks about four per worker
when it is None): a chunk is one task for a worker, so many small tasks cost about what they cost
there. Unlike there, every item of a chunk runs even after another failed, so each has its own
result or exception; a worker that dies during a chunk fails each of its items with
``WorkerDiedError``. With ``task_timeout=`` or ``retries=``, which apply to a task, every item is a
task of its own. ``TimeoutError`` and ``cpu_count`` are importable from here too (the standard
library's own). See docs/migration/multiprocessing.md.
"""

from __future__ import annotations

import dataclasses
import weakref
from collections.abc import Callable, Iterable, Iterator, Mapping
from multiprocessing import TimeoutError as TimeoutError  # re-exported, the standard library's own
from multiprocessing import cpu_count as cpu_count
from types import MappingProxyType, TracebackType
from typing import Any

from ._dropins.mp_pool import (
    APPLY,
    ONE,
    STAR,
    ApplyJob,
    Core,
    Failed,
    MapJob,
    PoolTerminatedError,
    StreamJob,
    dispatch,
)
from ._options import PoolConfig
from ._pool import Pool as _EnginePool

__all__ = [
    "ApplyResult",
    "AsyncResult",
    "IMapIterator",
    "IMapUnorderedIterator",
    "MapResult",
    "Pool",
    "PoolTerminatedError",
]

_NO_KWDS: Mapping[str, Any] = MappingProxyType({})

#: results an ``imap`` iterator may always be ahead of its consumer, per worker and unit of
#: ``chunksize``; more while results come fast (about a quarter of a second of them)
IMAP_AHEAD_PER_WORKER = 8
#: the most results an ``imap`` iterator is ever ahead of its consumer
IMAP_AHEAD_MOST = 1 << 17

#: options of ``mtasklite_like.Pool`` this layer sets itself, and what to use instead
_OWN_OPTIONS = {
    "worker_or_worker_arr": "pass the function to map(), apply_async(), ... instead",
    "n_jobs": "use processes=",
    "argument_type": "use starmap() for tuples of arguments, apply(func, args, kwds) for one call",
    "exception_behavior": "a task's exception is raised by map() and get(), as in multiprocessing",
    "exception_behaviour": "a task's exception is raised by map() and get(), as in multiprocessing",
    "is_unordered": "use imap_unordered()",
    "max_tasks_per_worker": "use maxtasksperchild=",
    "input_thread": "inputs are read in the pool's own thread",
    "journal": "use mtasklite_like.Pool(function, journal=...) for a resumable run",
    "journal_key": "use mtasklite_like.Pool(function, journal=...) for a resumable run",
    "journal_fresh": "use mtasklite_like.Pool(function, journal=...) for a resumable run",
    "journal_keep_failures": "use mtasklite_like.Pool(function, journal=...) for a resumable run",
    "journal_results": "use mtasklite_like.Pool(function, journal=...) for a resumable run",
    "save_callback": "use callback= of map_async()",
    "save_batch": "use callback= of map_async()",
}


def _check_func(func: Any, method: str) -> None:
    if not callable(func):
        raise TypeError(
            f"{method}: the function must be callable, not {type(func).__name__} {func!r:.60}; the "
            f"call is pool.{method}(function, ...)"
        )


def _check_chunksize(chunksize: Any, allow_none: bool) -> int:
    if chunksize is None and allow_none:
        return 1
    if isinstance(chunksize, bool) or not isinstance(chunksize, int):
        raise TypeError(f"chunksize must be a whole number >= 1{' or None' if allow_none else ''}, "
                        f"not {chunksize!r:.40}")
    if chunksize < 1:
        raise ValueError(f"Chunksize must be 1+, not {chunksize!r}")
    return chunksize


class AsyncResult:
    """The outcome of ``apply_async`` (and, as [`MapResult`][mtasklite_like.multiprocessing.MapResult],
    of ``map_async``/``starmap_async``), as in ``multiprocessing.pool.AsyncResult``."""

    def __init__(self, job: ApplyJob | MapJob) -> None:
        self._job = job

    def ready(self) -> bool:
        """Whether the call has completed (its callback, if any, has run)."""
        return self._job.event.is_set()

    def successful(self) -> bool:
        """Whether the call completed without raising; ``ValueError`` if it is not ready yet."""
        if not self.ready():
            raise ValueError(f"{self!r} not ready")
        return bool(self._job.success)

    def wait(self, timeout: float | None = None) -> None:
        """Wait until the result is ready, or ``timeout`` seconds have passed."""
        if not self._job.event.is_set():
            self._job.core.check_may_wait("a task's result")
            self._job.event.wait(timeout)

    def get(self, timeout: float | None = None) -> Any:
        """The result; the task's exception is raised instead if it failed, and
        ``multiprocessing.TimeoutError`` if it is not ready within ``timeout`` seconds."""
        self.wait(timeout)
        job = self._job
        if not job.event.is_set():
            raise TimeoutError
        if job.success:
            return job.value
        raise job.value


#: the standard library's name for the result of ``apply_async``
ApplyResult = AsyncResult


class MapResult(AsyncResult):
    """The outcome of ``map_async``/``starmap_async``: ``get()`` returns the list of results in
    input order, or raises the exception of the first failing item (after every item ran)."""


class IMapIterator:
    """The results of ``imap``, in input order, as they come; ``next(timeout)`` as in the
    standard library. A failing item raises its exception; iterating again goes on after it.

    The input is read at most a bounded number of results ahead of what was taken (more for a
    larger ``chunksize``), in chunks of ``chunksize`` items; dropping the iterator stops reading it.
    """

    def __init__(self, job: StreamJob) -> None:
        self._job = job
        self._ready = job.ready
        self._finalizer = weakref.finalize(self, job.core.cancel, job)

    def __iter__(self) -> IMapIterator:
        return self

    def __next__(self) -> Any:
        # StreamJob.next, inlined: this runs once per result, and most results are waiting.
        try:
            value = self._ready.popleft()
        except IndexError:
            value = self._job.wait_next(None)
        if type(value) is Failed:
            raise value.error
        return value

    def next(self, timeout: float | None = None) -> Any:
        """The next result; ``multiprocessing.TimeoutError`` if none comes within ``timeout`` s."""
        return self._job.next(timeout)


class IMapUnorderedIterator(IMapIterator):
    """The results of ``imap_unordered``, in the order they finish."""


class Pool:
    """A pool of worker processes with the API of ``multiprocessing.Pool``, on the engine of
    [`mtasklite_like.Pool`][mtasklite_like.Pool].

    Args:
        processes: the number of workers; None: the CPUs this process may use.
        initializer: ``initializer(*initargs)`` runs once in each worker when it starts.
        initargs: the arguments of ``initializer``.
        maxtasksperchild: replace a worker by a fresh one after this many tasks (None: never).
        context: a ``multiprocessing`` context (``get_context("spawn")``): its start method is used.
        **options: any keyword option of [`mtasklite_like.Pool`][mtasklite_like.Pool] (``task_timeout``,
            ``retries``, ``worker_env``, ``use_threads``, ``start_method``, ``memory_budget``, ...),
            for every call; the options this class sets itself are refused with what to use.

    All calls share the workers: ``apply_async`` calls, ``map`` calls from several threads and
    open ``imap`` iterators run side by side, in the order they were made, as in the standard
    library. Callbacks run in the pool's result thread, one at a time; a callback must not wait
    for another task of the pool (that is refused with ``RuntimeError``).
    """

    def __init__(
        self,
        processes: int | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        maxtasksperchild: int | None = None,
        context: Any = None,
        **options: Any,
    ) -> None:
        if processes is not None:
            if isinstance(processes, bool) or not isinstance(processes, int):
                raise TypeError(f"processes must be a whole number such as 4, or None, not {processes!r:.40}")
            if processes < 1:
                raise ValueError(f"Number of processes must be at least 1, not {processes}")
        refused = [name for name in options if name in _OWN_OPTIONS]
        if refused:
            name = refused[0]
            raise TypeError(
                f"mtasklite_like.multiprocessing.Pool sets {name}= itself; {_OWN_OPTIONS[name]}"
            )
        if context is not None:
            if not hasattr(context, "get_start_method"):
                raise TypeError(
                    "context must be a multiprocessing context such as multiprocessing.get_context('spawn'), "
                    f"not {type(context).__name__}"
                )
            if options.get("start_method") is not None:
                raise TypeError("pass either context= or start_method=, not both")
            options["start_method"] = context.get_start_method()
        config = PoolConfig.build(
            dispatch,
            processes,
            "single_arg",
            "ignore",
            is_unordered=True,
            input_thread=True,
            initializer=initializer,
            initargs=initargs,
            max_tasks_per_worker=maxtasksperchild,
            **options,
        )
        # processes=1 means one worker process, as in the standard library (a pool started to
        # isolate a task, or to recycle it with maxtasksperchild=1), where mtasklite_like.Pool
        # would run its single worker in the caller.
        engine: _EnginePool[Any] = _EnginePool.from_config(dataclasses.replace(config, inline_alone=False))
        engine.__enter__()
        self._processes = engine.num_workers
        self._core = Core(engine)
        # Dropped without close(), or at interpreter exit: stop the workers, fail what is pending.
        self._finalizer = weakref.finalize(self, self._core.terminate)

    # -- calls ----------------------------------------------------------------------------------------

    def apply(
        self, func: Callable[..., Any], args: Iterable[Any] = (), kwds: Mapping[str, Any] = _NO_KWDS
    ) -> Any:
        """``func(*args, **kwds)`` in a worker; its result (its exception is raised here)."""
        return self.apply_async(func, args, kwds).get()

    def apply_async(
        self,
        func: Callable[..., Any],
        args: Iterable[Any] = (),
        kwds: Mapping[str, Any] = _NO_KWDS,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> AsyncResult:
        """Start ``func(*args, **kwds)`` in a worker and return its
        [`AsyncResult`][mtasklite_like.multiprocessing.AsyncResult] at once. ``callback(result)`` or
        ``error_callback(exception)`` runs when it completes."""
        _check_func(func, "apply_async")
        self._core.check_running()
        payload = (tuple(args), dict(kwds))
        job = ApplyJob(self._core, func, iter((payload,)), APPLY, 1, callback, error_callback)
        self._core.submit(job)
        return AsyncResult(job)

    def map(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int | None = None
    ) -> list[Any]:
        """``[func(x) for x in iterable]`` in the workers, in input order; the first failing item's
        exception is raised (after every item ran)."""
        return self._map_async(func, iterable, ONE, chunksize, None, None, "map").get()  # type: ignore[no-any-return]

    def map_async(
        self,
        func: Callable[[Any], Any],
        iterable: Iterable[Any],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        """``map`` that returns a [`MapResult`][mtasklite_like.multiprocessing.MapResult] at once."""
        return self._map_async(func, iterable, ONE, chunksize, callback, error_callback, "map_async")

    def starmap(
        self, func: Callable[..., Any], iterable: Iterable[Iterable[Any]], chunksize: int | None = None
    ) -> list[Any]:
        """``[func(*args) for args in iterable]`` in the workers, in input order."""
        return self._map_async(func, iterable, STAR, chunksize, None, None, "starmap").get()  # type: ignore[no-any-return]

    def starmap_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Iterable[Any]],
        chunksize: int | None = None,
        callback: Callable[[Any], Any] | None = None,
        error_callback: Callable[[BaseException], Any] | None = None,
    ) -> MapResult:
        """``starmap`` that returns a [`MapResult`][mtasklite_like.multiprocessing.MapResult] at once."""
        return self._map_async(func, iterable, STAR, chunksize, callback, error_callback, "starmap_async")

    def imap(self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1) -> IMapIterator:
        """An iterator of ``func(x)`` for each ``x`` of ``iterable``, in input order, read lazily."""
        return IMapIterator(self._stream(func, iterable, chunksize, ordered=True, method="imap"))

    def imap_unordered(
        self, func: Callable[[Any], Any], iterable: Iterable[Any], chunksize: int = 1
    ) -> IMapUnorderedIterator:
        """As ``imap``, with the results in the order they finish."""
        job = self._stream(func, iterable, chunksize, ordered=False, method="imap_unordered")
        return IMapUnorderedIterator(job)

    def _map_async(
        self,
        func: Callable[..., Any],
        iterable: Iterable[Any],
        mode: int,
        chunksize: int | None,
        callback: Callable[[Any], Any] | None,
        error_callback: Callable[[BaseException], Any] | None,
        method: str,
    ) -> MapResult:
        _check_func(func, method)
        self._core.check_running()
        size = _check_chunksize(chunksize, allow_none=True)
        items = iterable if isinstance(iterable, (list, tuple, range)) else list(iterable)  # eager, as there
        if chunksize is None:
            # The standard library's rule: about four chunks per worker.
            size, extra = divmod(len(items), self._processes * 4)
            size += 1 if extra else 0
        job = MapJob(self._core, func, iter(items), mode, len(items), callback, error_callback)
        if size > 1 and self._core.may_chunk:
            job.chunksize, job.seq = size, items
        self._core.submit(job)
        return MapResult(job)

    def _stream(
        self, func: Callable[..., Any], iterable: Iterable[Any], chunksize: int, *, ordered: bool, method: str
    ) -> StreamJob:
        _check_func(func, method)
        self._core.check_running()
        size = _check_chunksize(chunksize, allow_none=False)
        source: Iterator[Any] = iter(iterable)
        least = IMAP_AHEAD_PER_WORKER * self._processes * size
        job = StreamJob(
            self._core, func, source, ONE, ordered=ordered, least=least, most=IMAP_AHEAD_MOST,
            chunksize=size if self._core.may_chunk else 1,
        )
        self._core.submit(job)
        return job

    # -- lifecycle ------------------------------------------------------------------------------------

    def close(self) -> None:
        """Accept no more calls; the workers exit once every call made so far has completed."""
        self._core.close()

    def terminate(self) -> None:
        """Stop the workers now; calls not completed fail with
        [`PoolTerminatedError`][mtasklite_like.multiprocessing.PoolTerminatedError]."""
        self._finalizer()

    def join(self) -> None:
        """Wait for the workers to exit; call [`close`][mtasklite_like.multiprocessing.Pool.close]
        or [`terminate`][mtasklite_like.multiprocessing.Pool.terminate] first."""
        self._core.join()

    def __enter__(self) -> Pool:
        self._core.check_running()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.terminate()  # as the standard library does: pending work is abandoned

    def __reduce__(self) -> Any:
        raise NotImplementedError("pool objects cannot be passed between processes or pickled")

    def __repr__(self) -> str:
        return f"<mtasklite_like.multiprocessing.Pool state={self._core.state} pool_size={self._processes}>"
