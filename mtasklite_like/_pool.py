"""``Pool``: the front users see. It validates options, owns the workers, and hands out runs.

The pool knows nothing of threads or processes: it checks every option up front, builds one
:class:`~._worker.run.WorkerSpec` per worker and a frozen :class:`~._options.RunOptions`, and keeps a
:class:`~._engine.worker_set.WorkerSet` that starts a backend when a run first needs workers. Inside
``with Pool(...) as pool`` the workers stay up between calls, so a model built by a
``@delayed_init`` object is built once for many inputs; without ``with``, each run stops its
workers when it ends. A run that ends early (``break``, an error, ``close()``) always stops the
workers, since they may be busy with items nobody will read.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
import weakref
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, TypeVar

from ._backends import check_backend_options
from ._engine.async_results import wrap_async_input
from ._engine.budget import DEFAULT_BUDGET
from ._engine.rate_limit import check_rate, start_gate
from ._engine.results import ResultIterator
from ._engine.worker_set import WorkerSet
from ._journal import check_journal_options, journaled_run
from ._options import (
    ArgumentType,
    BackendName,
    ExceptionMode,
    OnWorkerDeath,
    RunOptions,
    check_backend,
    check_budget,
    check_concurrency,
    check_count,
    check_n_jobs,
    check_picklable,
    check_process_arguments,
    check_seconds,
    check_worker,
    per_worker_options,
    worker_envs,
)
from ._worker.run import WorkerSpec
from .constants import ArgumentPassing, ExceptionBehaviour, WorkerDeath

__all__ = ["Pool", "plain_run"]

R = TypeVar("R")

_ARGUMENT_TYPES: dict[Any, ArgumentType] = {
    None: "single_arg",
    "direct": "single_arg",
    ArgumentPassing.AS_SINGLE_ARG: "single_arg",
    ArgumentPassing.AS_ARGS: "args",
    ArgumentPassing.AS_KWARGS: "kwargs",
}
_EXCEPTION_BEHAVIOURS = (ExceptionBehaviour.IGNORE, ExceptionBehaviour.IMMEDIATE, ExceptionBehaviour.DEFERRED)
#: backends that run a single worker in the caller instead (nothing to gain from one worker)
_INLINE_WHEN_ALONE = ("processes", "threads")

#: seconds busy workers get to finish when a run is abandoned, before they are killed
DEFAULT_JOIN_TIMEOUT = 0.5


class Pool(Generic[R]):
    """A pool of workers that maps a function or stateful object over an iterable, lazily.

    ``pool(iterable)`` returns a [`ResultIterator`][mtasklite_like.ResultIterator]. The signature and defaults
    match the ``mtasklite`` package; options after ``*`` are this package's own.

    Args:
        worker_or_worker_arr: the callable each worker runs (function, lambda, ``functools.partial``,
            bound method, callable object, builtin), a ``@delayed_init`` object built inside each
            worker, or a list of them, one per worker.
        n_jobs: number of workers, a whole number. ``None`` (default): the number of CPUs this
            process may use (processes) or ``min(32, CPUs + 4)`` (threads). As in joblib, ``-1``
            is one worker per usable CPU, ``-2`` all but one, and so on down to ``-CPUs``. ``0``,
            lower negatives (``ValueError``) and anything but an integer (``TypeError``: ``'2'``,
            ``2.5``, ``True``) are refused. Optional with a list of workers (must then come to its
            length). With 1, items run in the caller (easy debugging).
        argument_type: ``'single_arg'`` (``f(x)``; also ``None`` or ``'direct'``), ``'args'``
            (``f(*x)``) or ``'kwargs'`` (``f(**x)``).
        exception_behavior: ``'immediate'`` (raise the first failure and stop), ``'ignore'`` (yield
            the exception object as the result) or ``'deferred'`` (yield exceptions, raise them all
            at the end as [`DeferredExceptions`][mtasklite_like.DeferredExceptions]).
        bounded: read the input at most a small window ahead of the consumer (constant memory).
        chunk_size: the largest number of items sent to a worker in one batch (batches otherwise
            adapt to the measured task time).
        chunk_prefill_ratio: how many batches each worker may hold at once. By default 2 (one running,
            one waiting, so a worker never idles between batches) for tasks fast enough to travel in
            batches, and 1 for slow tasks, so that no item waits behind a slow one.
        memory_budget: bytes a run may hold besides your data: items read ahead, batches on their
            way to and in the workers, results not yet consumed (default 32 MiB; None: bounded in
            items only). Batches also stop growing at about 1 MiB. An item larger than the budget
            still goes, alone. Process workers measure the bytes they send; threads estimate them.
        is_unordered: yield results as they finish instead of in input order.
        use_threads: run workers as threads of this process instead of processes (the same as
            ``backend='threads'``). Threads share the caller's objects; process workers refuse a
            ``threading.Lock``, ``Event``, ``queue.Queue`` and the like with a ``TypeError``
            (each process would get an unconnected copy; a ``multiprocess`` Manager makes shared
            ones): in a worker's arguments when the pool is built, in an item for that item alone.
        task_timeout: seconds an item may run. A process worker past it is killed and replaced, a
            thread worker is abandoned (it cannot be killed) and replaced, and the item gets
            [`TaskTimeoutError`][mtasklite_like.TaskTimeoutError] (a ``TimeoutError``). Each worker then holds
            one item at a time, so ``chunk_size`` and ``chunk_prefill_ratio`` do not apply (a
            warning says so if they are given). With ``n_jobs=1`` an overrun is reported when the
            task ends.
        join_timeout: seconds busy workers get to finish when a run is stopped early, before they
            are killed (default 0.5).
        exception_behaviour: British spelling of ``exception_behavior``.
        start_method: ``'fork'``, ``'spawn'`` or ``'forkserver'`` for process workers (default: the
            platform's).
        worker_env: environment variables set in each worker before its object is built: one dict
            for all workers or a list with one dict per worker (e.g. ``CUDA_VISIBLE_DEVICES``).
            Threads share one environment, so for them the values are set only while each
            worker's object is being built.
        initializer: ``initializer(*initargs)`` runs once in each worker before its object is
            built, as in ``concurrent.futures``.
        initargs: the arguments of ``initializer``.
        max_tasks_per_worker: replace a worker by a fresh one (its object rebuilt, its
            initializer run again) after it has processed this many items; a remedy for memory
            leaks in task code (``max_tasks_per_child`` in ``concurrent.futures``).
        on_worker_death: ``'raise'``: a worker that dies (crash, ``os._exit``, a signal, the OOM
            killer) raises [`WorkerDiedError`][mtasklite_like.WorkerDiedError] naming it and the items it
            held. ``'restart'``: the worker is replaced and each item it held gets a
            ``WorkerDiedError`` result (or is retried). Default: ``'restart'`` under ``'ignore'``,
            ``'raise'`` otherwise.
        retries: run an item that failed (exception, death, timeout) again, up to this many times;
            the final error records ``.attempts`` and ``.previous_errors``.
        init_timeout: seconds a worker may take to start (initializer and object construction)
            before the run fails with [`WorkerInitError`][mtasklite_like.WorkerInitError].
        backend: where workers run: ``'processes'`` (default), ``'threads'`` or ``'ray'`` (one Ray
            actor per worker, on the machine or on a cluster: see docs/distributed.md; the ``ray``
            extra); more can be registered. With one worker, items run in the caller on processes
            and threads, and on one actor on Ray.
        backend_options: options of each worker for backends that take them: one dict for all
            workers or a list with one dict per worker. On Ray, the actor options
            (``num_cpus``, ``num_gpus``, fractional GPUs, ``resources``, ``memory``, ``runtime_env``,
            ...); a request the cluster cannot meet fails at the start of the run.
        address: the cluster to join (Ray: ``'auto'``, ``'ray://host:10001'``, ...). Default: the
            Ray already initialised in this process, else a local one started with modest defaults.
        input_thread: where the input is read. ``None`` (default): in a background thread when it
            has no ``len()`` (a generator, an iterator, a file, a socket, a queue), so results that
            are finished reach you while it waits for its next item; in your thread when it has one
            (a list, a range: nothing to wait for) or is a ``sqlite3`` cursor. ``True``: always in
            the background. ``False``: always in the thread that iterates the results, as a plain
            ``for`` loop would, for inputs that must be read by the thread that made them; a
            blocked input then holds back finished results. See docs/streaming.md.
        journal: a run directory: results are journaled there as they finish, and calling the
            pool again on the same input with the same directory yields the stored results in
            their place and computes only the rest (see docs/resumable_runs.md). Only trusted,
            private directories: resuming unpickles the journal.
        journal_key: ``item -> key`` naming each item in the journal. Default: the item itself
            for str, bytes and int items, the input position otherwise (safe only when the input
            is the same, in the same order, on every run).
        journal_fresh: discard what the run directory holds and start over.
        journal_keep_failures: items that failed stay failed on resume (their stored exception
            takes their place) instead of being computed again.
        journal_results: False stores only that items finished (for results that cannot or need
            not be pickled); finished items are then skipped on resume, not yielded again.
        save_callback: ``save_callback(results, items)``, called in the caller with batches of
            finished results and their items, one call at a time; with a journal, a batch is
            journaled after its callback returns.
        save_batch: results per ``save_callback`` call (default 100; the last call may get fewer).
        concurrency: for coroutine workers (an ``async def`` function, or a ``@delayed_init`` object
            whose ``__call__`` is ``async def``): how many items each worker runs at once on its
            event loop (default 16). Refused for plain functions. See docs/async.md.
        max_per_second: start at most this many items per second across the whole pool, evenly
            spaced (no bursts); for polite crawling and API quotas. Items then travel one by one.

    ``async for result in pool(items)`` works too, inside a running event loop, and ``items`` may
    then be an async iterable.
    """

    def __init__(
        self,
        worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
        n_jobs: int | None = None,
        argument_type: ArgumentType | Literal["direct"] | None = "single_arg",
        exception_behavior: ExceptionMode = "immediate",
        bounded: bool = True,
        chunk_size: int | None = None,
        chunk_prefill_ratio: int | None = None,
        is_unordered: bool = False,
        use_threads: bool = False,
        task_timeout: float | None = None,
        join_timeout: float | None = None,
        *,
        exception_behaviour: ExceptionMode | None = None,
        start_method: str | None = None,
        worker_env: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: int | None = None,
        on_worker_death: OnWorkerDeath | None = None,
        retries: int = 0,
        init_timeout: float | None = None,
        backend: BackendName | str | None = None,
        backend_options: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None,
        address: str | None = None,
        input_thread: bool | None = None,
        memory_budget: int | None = DEFAULT_BUDGET,
        journal: str | os.PathLike[str] | None = None,
        journal_key: Callable[[Any], Any] | None = None,
        journal_fresh: bool = False,
        journal_keep_failures: bool = False,
        journal_results: bool = True,
        save_callback: Callable[[list[Any], list[Any]], Any] | None = None,
        save_batch: int | None = None,
        concurrency: int | None = None,
        max_per_second: float | None = None,
    ) -> None:
        # -- modes ----------------------------------------------------------------------------------
        if exception_behaviour is not None:
            if exception_behavior not in (ExceptionBehaviour.IMMEDIATE, exception_behaviour):
                raise ValueError(
                    f"exception_behavior={exception_behavior!r} and exception_behaviour="
                    f"{exception_behaviour!r} disagree; pass only one of the two spellings"
                )
            exception_behavior = exception_behaviour
        if exception_behavior not in _EXCEPTION_BEHAVIOURS:
            raise ValueError(
                f"unknown exception_behavior {exception_behavior!r}; use one of "
                f"{', '.join(repr(m) for m in _EXCEPTION_BEHAVIOURS)}"
            )
        try:
            argument_kind = _ARGUMENT_TYPES[argument_type]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown argument_type {argument_type!r}; use 'single_arg' (f(x)), 'args' (f(*x)) "
                "or 'kwargs' (f(**x))"
            ) from None
        backend_name = check_backend(backend, use_threads)
        use_threads = backend_name == "threads"

        # -- workers --------------------------------------------------------------------------------
        workers: list[Any]
        listed = False
        if isinstance(worker_or_worker_arr, (list, tuple)):
            listed = True
            workers = list(worker_or_worker_arr)
            if not workers:
                raise ValueError("the list of workers is empty; give at least one worker")
            if n_jobs is not None:
                count = check_n_jobs(n_jobs, use_threads)
                if count != len(workers):
                    means = "" if count == n_jobs else f" ({count} workers here)"
                    raise ValueError(
                        f"n_jobs={n_jobs!r}{means} does not match the {len(workers)} workers in the "
                        "list; leave n_jobs as None or make it equal to the list's length"
                    )
            for i, w in enumerate(workers):
                check_worker(w, f"worker #{i} of the list")
        else:
            if worker_or_worker_arr is None or (
                isinstance(worker_or_worker_arr, int) and not isinstance(worker_or_worker_arr, bool)
            ):
                raise TypeError(_count_for_a_worker(worker_or_worker_arr))
            check_worker(worker_or_worker_arr, "the worker")
            workers = [worker_or_worker_arr] * check_n_jobs(n_jobs, use_threads)
        self.num_workers = len(workers)
        #: items each worker runs at once: 0 for plain functions (see docs/async.md)
        self.concurrency = check_concurrency(concurrency, workers)
        self.max_per_second = check_rate(max_per_second)

        # -- options --------------------------------------------------------------------------------
        self.chunk_size = None if chunk_size is None else check_count(chunk_size, "chunk_size")
        self.chunk_prefill_ratio = (
            None if chunk_prefill_ratio is None else check_count(chunk_prefill_ratio, "chunk_prefill_ratio")
        )
        join = check_seconds(join_timeout, "join_timeout", allow_zero=True)
        task_timeout = check_seconds(task_timeout, "task_timeout")
        init_timeout = check_seconds(init_timeout, "init_timeout")
        if task_timeout is not None and (chunk_size is not None or chunk_prefill_ratio is not None):
            warnings.warn(
                "with task_timeout each worker holds one item at a time, so chunk_size and "
                "chunk_prefill_ratio are ignored; drop them (or drop task_timeout)",
                UserWarning,
                stacklevel=2,
            )
        if on_worker_death not in (None, WorkerDeath.RAISE, WorkerDeath.RESTART):
            raise ValueError(f"unknown on_worker_death {on_worker_death!r}; use 'raise' or 'restart'")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        if start_method is not None:
            if backend_name != "processes":
                raise ValueError(
                    "start_method applies to process workers; drop it or use the processes backend "
                    "(use_threads=False)"
                )
            import multiprocess

            methods = multiprocess.get_all_start_methods()
            if start_method not in methods:
                raise ValueError(f"unknown start_method {start_method!r}; this platform offers {methods}")
        if initializer is not None and not callable(initializer):
            raise TypeError(f"initializer must be callable, not {type(initializer).__name__}")
        initargs = tuple(initargs)
        if max_tasks_per_worker is not None and (
            isinstance(max_tasks_per_worker, bool)
            or not isinstance(max_tasks_per_worker, int)
            or max_tasks_per_worker < 1
        ):
            raise ValueError(
                f"max_tasks_per_worker must be a whole number >= 1, not {max_tasks_per_worker!r}"
            )
        envs = worker_envs(worker_env, len(workers))
        budget = check_budget(memory_budget)
        if input_thread is not None and not isinstance(input_thread, bool):
            raise TypeError(
                f"input_thread must be True, False or None (decide by the input), not {input_thread!r:.40}"
            )

        self.max_tasks_per_worker = max_tasks_per_worker
        self.argument_type: ArgumentType = argument_kind
        self.exception_behavior: ExceptionMode = exception_behavior
        self.bounded = bool(bounded)
        self.is_unordered = bool(is_unordered)
        self.use_threads = use_threads
        self.backend: str = backend_name
        self.task_timeout = task_timeout
        self.init_timeout = init_timeout
        self.on_worker_death = on_worker_death
        self.retries = retries
        self.join_timeout = DEFAULT_JOIN_TIMEOUT if join is None else join
        self.start_method = start_method
        self.memory_budget = budget
        self._closed = False
        self._journal = check_journal_options(
            journal, journal_key, journal_fresh, journal_keep_failures, journal_results, save_callback,
            save_batch,
        )
        if self._journal is not None and self.is_unordered and self.concurrency:
            raise ValueError(
                "a journaled run with is_unordered=True wraps the workers in a plain function, which "
                "cannot await a coroutine worker; use an ordered journaled run (is_unordered=False) "
                "with this async def worker"
            )

        if on_worker_death is None:
            # Under 'ignore' a death is one more per-item error; elsewhere it stops the run.
            restart = exception_behavior == ExceptionBehaviour.IGNORE
        else:
            restart = on_worker_death == WorkerDeath.RESTART
        self._options = RunOptions(
            ordered=not self.is_unordered,
            exception_behavior=exception_behavior,
            bounded=self.bounded,
            chunk_size=self.chunk_size,
            chunk_prefill_ratio=self.chunk_prefill_ratio,
            task_timeout=task_timeout,
            init_timeout=init_timeout,
            restart_on_death=restart,
            retries=retries,
            max_tasks_per_worker=max_tasks_per_worker,
            input_thread=input_thread,
            memory_budget=budget,
            concurrency=self.concurrency,
            max_per_second=self.max_per_second,
        )
        item_timeout = task_timeout if self.concurrency else None
        # Starts themselves are paced, in the workers (hand-overs alone are not enough: a worker
        # wakes up a varying while after it is handed an item). Threads and processes share a
        # gate; Ray actors on other machines cannot, and are paced by their hand-overs.
        gate = start_gate(self.max_per_second) if backend_name in ("threads", "processes") else None
        specs = [
            WorkerSpec(i, w, argument_kind, envs[i], initializer, initargs, concurrency=self.concurrency,
                       task_timeout=item_timeout, start_gate=gate)
            for i, w in enumerate(workers)
        ]
        # Coroutine workers run on an event loop of their own, never in the caller (whose loop, if
        # any, must not be blocked), so one of them is a real thread or process too.
        alone = self.num_workers == 1 and backend_name in _INLINE_WHEN_ALONE and not self.concurrency
        if backend_name == "processes" and not alone:
            check_process_arguments(workers, listed, initializer, initargs)
            check_picklable(specs, start_method)
        extra = per_worker_options(backend_options, address, self.num_workers)
        check_backend_options(backend_name, extra, specs)
        self._workers = WorkerSet(
            specs,
            "inline" if alone else backend_name,
            start_method=start_method,
            options=extra,
            grace=self.join_timeout,
            max_tasks_per_worker=max_tasks_per_worker,
        )
        # Stop the workers when the pool is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._workers.stop)

    # -- public ---------------------------------------------------------------------------------------

    @property
    def exception_behaviour(self) -> str:
        """British spelling of ``exception_behavior``."""
        return self.exception_behavior

    @property
    def n_jobs(self) -> int:
        """The number of workers (the same as ``num_workers``)."""
        return self.num_workers

    @property
    def options(self) -> RunOptions:
        """The frozen options every run of this pool obeys."""
        return self._options

    @property
    def managed(self) -> bool:
        """True inside ``with pool:``, where workers stay up between calls."""
        return self._workers.keep

    @property
    def worker_specs(self) -> tuple[WorkerSpec, ...]:
        """What each worker runs: its callable or ``@delayed_init`` shell, argument type,
        environment and initializer (layers use it to build a pool like this one)."""
        return tuple(self._workers.specs)

    @property
    def workers_alive(self) -> bool:
        """True while the pool's workers are running (between a run's start and the pool's stop)."""
        return self._workers.alive

    @property
    def worker_pids(self) -> list[int | None]:
        """Process ids of the running workers, in worker order; empty for threads, the caller, or
        when no workers are running."""
        backend = self._workers.backend
        return list(backend.pids) if backend is not None and backend.alive else []

    def __call__(self, input_iterable: Iterable[Any] | AsyncIterable[Any]) -> ResultIterator[R]:
        """Return a lazy iterator of the results of the workers over ``input_iterable``
        (a :class:`~mtasklite_like.JournaledIterator` when the pool has a journal or save_callback).

        The result is also an async iterator (``async for``), and ``input_iterable`` may be an
        async iterable (see docs/async.md)."""
        items: Any = input_iterable
        if hasattr(items, "__aiter__") and not hasattr(items, "__iter__"):
            items = wrap_async_input(items)
        if not hasattr(items, "__iter__") and not hasattr(items, "__getitem__"):
            raise TypeError(
                f"the pool's input must be iterable (or async iterable), not {type(items).__name__}"
            )
        if self._journal is not None:
            return journaled_run(self, items, self._journal, plain_run)  # type: ignore[return-value]
        return plain_run(self, items)

    def close(self) -> None:
        """Stop the workers (a run in progress is stopped too). The pool may be called again later."""
        run = self._workers.holder()
        if run is not None:
            run.close()
        self._workers.stop()
        self._closed = True

    @property
    def exited(self) -> bool:
        """True once [`close`][mtasklite_like.Pool.close] (or leaving ``with``) has stopped the workers, until
        a new run starts them again."""
        return self._closed and not self._workers.alive

    def __enter__(self) -> Pool[R]:
        self._workers.keep = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._workers.keep = False
        self.close()

    async def __aenter__(self) -> Pool[R]:
        """``async with Pool(...) as pool``: as ``with``, for use inside an event loop."""
        return self.__enter__()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        import asyncio

        self._workers.keep = False
        await asyncio.to_thread(self.close)  # stopping workers may take a moment: not on the loop

    def __repr__(self) -> str:
        kind = "inline" if self._workers.backend_name == "inline" else self.backend
        return f"<mtasklite_like.Pool {self.num_workers} worker(s), {kind}>"

    if not TYPE_CHECKING:  # at run time only: type checkers keep reporting unknown attributes

        def __getattr__(self, name: str) -> NoReturn:
            # Only reached for attributes the pool does not have: multiprocessing.Pool's methods
            # get a hint at what to write instead.
            hint = _MULTIPROCESSING_METHODS.get(name)
            if hint is None:
                raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
            raise AttributeError(
                f"Pool has no method {name}(): the pool is called on the items and returns their "
                f"results lazily; {hint}. For code written for multiprocessing.Pool, import Pool from "
                "mtasklite_like.multiprocessing, which has its methods",
                name=name,
                obj=self,
            )


#: what to write in place of multiprocessing.Pool's methods, which this Pool does not have
_MULTIPROCESSING_METHODS = {
    "map": "list(pool(items)) is pool.map(function, items) for the pool's function",
    "imap": "pool(items) is pool.imap(function, items) for the pool's function",
    "imap_unordered": "Pool(function, n, is_unordered=True)(items) is imap_unordered",
    "starmap": "list(Pool(function, n, argument_type='args')(items)) calls function(*item)",
    "map_async": "list(pool(items)) runs them (pool(items) alone streams them as they come)",
    "starmap_async": "Pool(function, n, argument_type='args')(items) calls function(*item)",
    "apply": "Pool(function, n)([x]) runs function(x) on a worker",
    "apply_async": "Pool(function, n)([x]) runs function(x) on a worker",
}


def _count_for_a_worker(count: int | None) -> str:
    """The error for ``Pool(2)`` or ``Pool(None)``: a worker count where the worker goes, as code
    written for ``multiprocessing.Pool(processes)`` has it."""
    n = "" if count is None else f", {count}"
    given = "None" if count is None else f"int {count}"
    return (
        f"the worker must be callable, not {given}: Pool's first argument is the function each "
        f"worker runs, not the number of workers. Write Pool(function{n})(items), "
        f"for instance list(Pool(function{n})(items)) in place of "
        f"Pool({'' if count is None else count}).map(function, items). Code written for "
        "multiprocessing.Pool (with Pool(processes) as p: p.map(f, items)) runs as it is with "
        "`from mtasklite_like.multiprocessing import Pool`"
    )


def plain_run(pool: Pool[R], items: Iterable[Any], keep_raw: bool = False) -> ResultIterator[R]:
    """An ordinary run of ``pool`` over ``items`` (what a journaled run drives underneath);
    ``keep_raw``: keep the workers' pickled results too (``ResultIterator.take_raw``)."""
    options = dataclasses.replace(pool._options, keep_raw_results=True) if keep_raw else pool._options
    return ResultIterator(pool, options, pool._workers, items)
