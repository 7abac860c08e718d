"""``Pool``: the front users see. It validates options, owns the workers, and hands out runs.

The pool knows nothing of threads or processes: its options are one frozen, checked
:class:`~._options.PoolConfig`, from which it derives one :class:`~._worker.run.WorkerSpec` per
worker and the :class:`~._options.RunOptions` every run obeys, and it keeps a
:class:`~._engine.worker_set.WorkerSet` that starts a backend when a run first needs workers.
Layers (the journal, the drop-ins) run a pool with its whole configuration, never a copy of some
options. Inside
``with Pool(...) as pool`` the workers stay up between calls, so a model built by a
``@delayed_init`` object is built once for many inputs; without ``with``, each run stops its
workers when it ends. A run that ends early (``break``, an error, ``close()``) always stops the
workers, since they may be busy with items nobody will read.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import AsyncIterable, Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Literal, NoReturn, TypeVar

from ._engine.async_results import wrap_async_input
from ._engine.budget import DEFAULT_BUDGET
from ._engine.release import Sink
from ._engine.results import ResultIterator
from ._engine.stats import RunStats
from ._engine.worker_set import WorkerSet
from ._journal import journaled_run
from ._logs.records import install_record_factory
from ._memory.units import Threshold
from ._memory.watch import WorkerMemory
from ._options import (
    ArgumentType,
    BackendName,
    ExceptionMode,
    OnWorkerDeath,
    PoolConfig,
    RunOptions,
)
from ._worker.run import WorkerSpec

__all__ = ["Pool"]

R = TypeVar("R")

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
        max_worker_memory: bytes (or a string such as ``"2GiB"``) of its own memory past which a
            process worker is replaced: it finishes the item that took it over (the result is
            kept), then a fresh worker (its object rebuilt) takes its place, and what it held
            runs elsewhere. A remedy for workers whose memory creeps up item by item. Processes
            and Ray; refused for threads. See docs/memory.md.
        kill_worker_memory: a hard ceiling, same units: a worker that crosses it mid-task is killed
            at once and replaced, and its item fails with
            [`WorkerMemoryError`][mtasklite_like.WorkerMemoryError] (retries apply), instead of the
            kernel's OOM killer choosing a victim. Process workers on this machine.
        min_available_memory: while the memory available to the pool (its cgroup's room under a
            limit, else the system's available memory) is below this, in bytes, a string such as
            ``"4GiB"`` or a share such as ``"10%"``, no input is read and no batch is started; work
            in flight finishes, and the run resumes when memory is back. Any backend.
        memory_pause_timeout: seconds such a pause may last with nothing in flight before the run
            fails with [`MemoryPressureError`][mtasklite_like.MemoryPressureError] (default 300).
        forward_logs: ``logging`` records emitted in process workers and Ray actors are handed to
            your loggers, with your levels, filters and handlers, as they are emitted (Ray: with
            their batch), and their warnings are issued again here, naming the worker and item
            (default True). Every record gets ``worker`` and ``item`` attributes (None outside
            workers), so a format string may name ``%(worker)s %(item)s``. False leaves workers'
            logging alone. See docs/observability.md.

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
        max_worker_memory: int | str | None = None,
        kill_worker_memory: int | str | None = None,
        min_available_memory: int | str | None = None,
        memory_pause_timeout: float | None = None,
        forward_logs: bool = True,
    ) -> None:
        self._setup(
            PoolConfig.build(
                worker_or_worker_arr, n_jobs, argument_type, exception_behavior, bounded, chunk_size,
                chunk_prefill_ratio, is_unordered, use_threads, task_timeout, join_timeout,
                exception_behaviour=exception_behaviour, start_method=start_method, worker_env=worker_env,
                initializer=initializer, initargs=initargs, max_tasks_per_worker=max_tasks_per_worker,
                on_worker_death=on_worker_death, retries=retries, init_timeout=init_timeout,
                backend=backend, backend_options=backend_options, address=address,
                input_thread=input_thread, memory_budget=memory_budget, journal=journal,
                journal_key=journal_key, journal_fresh=journal_fresh,
                journal_keep_failures=journal_keep_failures, journal_results=journal_results,
                save_callback=save_callback, save_batch=save_batch, concurrency=concurrency,
                max_per_second=max_per_second, max_worker_memory=max_worker_memory,
                kill_worker_memory=kill_worker_memory, min_available_memory=min_available_memory,
                memory_pause_timeout=memory_pause_timeout, forward_logs=forward_logs, stacklevel=3,
            )
        )

    @classmethod
    def from_config(cls, config: PoolConfig) -> Pool[Any]:
        """A pool with the configuration ``config`` (another pool's ``config``, or one derived from
        it with ``dataclasses.replace``): how layers build a pool like the user's, never by
        copying options one by one."""
        pool: Pool[Any] = cls.__new__(cls)
        pool._setup(config)
        return pool

    def _setup(self, config: PoolConfig) -> None:
        self._config = config
        if config.forward_logs:
            install_record_factory()  # every record, the caller's too, has `worker` and `item`
        self._options = config.run_options()
        self._closed = False
        self._workers = WorkerSet(
            config.worker_specs(),
            "inline" if config.runs_inline else config.backend,
            start_method=config.start_method,
            options=config.backend_options,
            grace=config.join_timeout,
            max_tasks_per_worker=config.max_tasks_per_worker,
            kill_worker_memory=config.kill_worker_memory,
        )
        # Stop the workers when the pool is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._workers.stop)

    # -- the configuration, read-only (mtasklite's attribute names) -----------------------------------

    @property
    def config(self) -> PoolConfig:
        """Every option of this pool, checked and frozen; ``dataclasses.replace(pool.config, ...)``
        and ``Pool.from_config`` make a pool like this one."""
        return self._config

    @property
    def num_workers(self) -> int:
        """The number of workers."""
        return self._config.num_workers

    @property
    def concurrency(self) -> int:
        """Items each worker runs at once: 0 for plain functions (see docs/async.md)."""
        return self._config.concurrency

    @property
    def max_per_second(self) -> float | None:
        """The most items started per second across the pool, or None."""
        return self._config.max_per_second

    @property
    def chunk_size(self) -> int | None:
        """The largest batch given to a worker at once, or None (batches adapt to the task time)."""
        return self._config.chunk_size

    @property
    def chunk_prefill_ratio(self) -> int | None:
        """Batches a worker may hold at once, or None (1 or 2, by the task time)."""
        return self._config.chunk_prefill_ratio

    @property
    def max_tasks_per_worker(self) -> int | None:
        """Items a worker runs before it is replaced by a fresh one, or None."""
        return self._config.max_tasks_per_worker

    @property
    def argument_type(self) -> ArgumentType:
        """How an item is passed: ``'single_arg'`` (``f(x)``), ``'args'`` or ``'kwargs'``."""
        return self._config.argument_type

    @property
    def exception_behavior(self) -> ExceptionMode:
        """``'immediate'``, ``'ignore'`` or ``'deferred'``: what a failed item does to a run."""
        return self._config.exception_behavior

    @property
    def bounded(self) -> bool:
        """Whether the input is read at most a window ahead of the consumer."""
        return self._config.bounded

    @property
    def is_unordered(self) -> bool:
        """Whether results come as they finish (else in input order)."""
        return self._config.is_unordered

    @property
    def use_threads(self) -> bool:
        """Whether the workers are threads of this process."""
        return self._config.use_threads

    @property
    def backend(self) -> str:
        """Where the workers run: ``'processes'``, ``'threads'``, ``'ray'`` or a registered name."""
        return self._config.backend

    @property
    def task_timeout(self) -> float | None:
        """Seconds an item may run, or None."""
        return self._config.task_timeout

    @property
    def init_timeout(self) -> float | None:
        """Seconds a worker may take to start, or None."""
        return self._config.init_timeout

    @property
    def on_worker_death(self) -> OnWorkerDeath | None:
        """``'raise'``, ``'restart'``, or None (by the exception mode)."""
        return self._config.on_worker_death

    @property
    def retries(self) -> int:
        """How many more times a failed item runs."""
        return self._config.retries

    @property
    def join_timeout(self) -> float:
        """Seconds busy workers get to finish when a run is stopped early."""
        return self._config.join_timeout

    @property
    def start_method(self) -> str | None:
        """The process start method, or None for the platform's."""
        return self._config.start_method

    @property
    def memory_budget(self) -> int | None:
        """Bytes a run may hold besides your data, or None (bounded in items only)."""
        return self._config.memory_budget

    @property
    def max_worker_memory(self) -> int | None:
        """Bytes of its own memory past which a worker is replaced after its item, or None."""
        return self._config.max_worker_memory

    @property
    def kill_worker_memory(self) -> int | None:
        """Bytes of its own memory past which a worker is killed mid-task, or None."""
        return self._config.kill_worker_memory

    @property
    def min_available_memory(self) -> Threshold | None:
        """The memory that must stay available for new work to start, or None."""
        return self._config.min_available_memory

    @property
    def memory_pause_timeout(self) -> float:
        """Seconds a pause for memory may last with nothing in flight before the run fails."""
        return self._config.memory_pause_timeout

    @property
    def forward_logs(self) -> bool:
        """Whether workers' log records and warnings reach the caller's logging."""
        return self._config.forward_logs

    def stats(self) -> RunStats:
        """The statistics of every run of this pool, added up (the run in progress included): per
        worker and in total; see ``ResultIterator.stats`` and docs/observability.md."""
        runs = [self._workers.stats_total]
        holder = self._workers.holder()
        if holder is not None and not holder.finished:
            runs.append(holder.snapshot())
        total = RunStats.total(runs)
        for worker, peak in zip(total.workers, self._workers.memory.peaks):
            worker.peak_rss = peak
        return total

    def worker_memory(self) -> list[WorkerMemory]:
        """What is known of each worker's memory: its process id and resident size now, the
        largest resident size seen in its place (recycled processes included), and how many times
        it was recycled (``max_worker_memory``) or killed (``kill_worker_memory``). Sizes are None
        where not known (threads, a pool whose workers are not running)."""
        return self._workers.memory.report()

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
        if self._config.journal is not None:
            return journaled_run(self, items, self._config.journal)  # type: ignore[return-value]
        return self._start(items)

    def _start(self, items: Iterable[Any], sink: Sink | None = None) -> ResultIterator[R]:
        """An ordinary run over ``items``; ``sink`` sees each batch as it is released (a layer
        such as the journal takes the run's results there, before the consumer does)."""
        return ResultIterator(self, self._options, self._workers, items, sink)

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
