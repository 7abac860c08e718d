"""A pool's configuration, checked in one place and frozen, and what the engine derives from it.

:class:`PoolConfig` holds every option of ``Pool`` in canonical form (a worker per worker, a
backend name, per-worker environments, ...). :meth:`PoolConfig.build` turns what a user passed
into one (each error says what to change); every check of a built configuration runs in its
``__post_init__``, so a configuration derived with ``dataclasses.replace`` (as layers do: the
journal's unordered runs, the ``multiprocessing`` drop-in) is checked again and cannot drop an
option: it carries all of them. The engine never reads the configuration, only the
:class:`RunOptions` and the :class:`~._worker.run.WorkerSpec` objects derived from it. The
``Literal`` aliases name the values each option accepts, for editors and type checkers.
"""

from __future__ import annotations

import functools
import inspect
import operator
import os
import types
import warnings
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from ._backends import BackendOptions, backend_names, check_backend_options
from ._backends.serialize import (
    ThreadObjectError,
    copy_in_a_process,
    dumps,
    main_needs_by_value,
    thread_object_kind,
)
from ._engine.budget import DEFAULT_BUDGET
from ._engine.rate_limit import StartGate, check_rate, start_gate
from ._journal.options import JournalOptions, check_journal_options
from ._memory.source import current as memory_source
from ._memory.units import Threshold, format_bytes, parse_bytes, parse_threshold
from ._worker.delayed import DelayedObject, is_delayed_factory
from ._worker.run import WorkerSpec
from .constants import ArgumentPassing, ExceptionBehaviour, WorkerDeath

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ArgumentType",
    "BackendName",
    "ExceptionMode",
    "OnWorkerDeath",
    "PoolConfig",
    "RunOptions",
    "check_backend",
    "check_budget",
    "check_concurrency",
    "check_count",
    "check_env",
    "check_n_jobs",
    "check_picklable",
    "check_process_arguments",
    "check_seconds",
    "check_worker",
    "default_n_jobs",
    "is_coroutine_worker",
    "per_worker_options",
    "usable_cpus",
    "worker_envs",
]

#: how an item is passed to the worker: ``f(x)``, ``f(*x)``, ``f(**x)``
ArgumentType = Literal["single_arg", "args", "kwargs"]
#: what the result iterator does when a task raises
ExceptionMode = Literal["immediate", "ignore", "deferred"]
#: what the pool does when a worker dies
OnWorkerDeath = Literal["raise", "restart"]
#: where workers run (more can be registered; see ``_backends``)
BackendName = Literal["processes", "threads", "ray"]


@dataclass(frozen=True)
class RunOptions:
    """Everything the engine needs to know about the user's choices, in its own terms.

    Attributes:
        ordered: release results in input order (else in completion order).
        exception_behavior: ``'immediate'``, ``'ignore'`` or ``'deferred'``.
        bounded: read the input at most a window ahead of the consumer.
        chunk_size: the largest batch, or None for the default cap.
        chunk_prefill_ratio: batches a worker may hold, or None to adapt (1 or 2).
        task_timeout: seconds an item may run, or None.
        init_timeout: seconds a worker may take to start, or None.
        restart_on_death: replace a dead worker and go on (else the run fails).
        retries: extra attempts for a failed item.
        max_tasks_per_worker: items a worker processes before it is replaced, or None.
        input_thread: read the input in a background thread (True), in the consumer's thread
            (False), or decide by the input (None; see ``_engine.feeder.make_feeder``).
        memory_budget: bytes the run may hold in items read ahead, batches in flight and results
            not yet consumed (None: bounded in items only); see ``_engine.budget``.
        concurrency: items each worker runs at once, for coroutine workers (``async def``); 0 for
            plain functions, which run one item at a time.
        max_per_second: the most items started per second across the pool, or None.
        min_available_memory: hold new work back while the memory available to the pool is below
            this (``_memory.pressure``), or None.
        memory_pause_timeout: seconds such a pause may last with nothing in flight before the
            run fails.
    """

    ordered: bool = True
    exception_behavior: ExceptionMode = "immediate"
    bounded: bool = True
    chunk_size: int | None = None
    chunk_prefill_ratio: int | None = None
    task_timeout: float | None = None
    init_timeout: float | None = None
    restart_on_death: bool = False
    retries: int = 0
    max_tasks_per_worker: int | None = None
    input_thread: bool | None = None
    memory_budget: int | None = None
    concurrency: int = 0
    max_per_second: float | None = None
    min_available_memory: Threshold | None = None
    memory_pause_timeout: float = 300.0

    @property
    def watchdog_timeout(self) -> float | None:
        """The deadline the engine enforces on a message, from when the worker could start it.

        A plain worker runs one item at a time, so this is ``task_timeout``. A coroutine worker
        enforces ``task_timeout`` itself, per item, by cancelling the coroutine; an item it holds
        waits at most one ``task_timeout`` for a free slot (it never holds more than twice its
        ``concurrency``), then runs at most one more. The engine steps in only past that, plus a
        second of slack: when the worker's event loop is blocked (a coroutine calling a blocking
        function) and cannot cancel anything.
        """
        timeout = self.task_timeout
        if timeout is None or not self.concurrency:
            return timeout
        return 2 * timeout + 1.0


#: items each coroutine worker runs at once when ``concurrency`` is not given
DEFAULT_CONCURRENCY = 16
#: seconds busy workers get to finish when a run is abandoned, before they are killed
DEFAULT_JOIN_TIMEOUT = 0.5
#: seconds a run paused for memory may wait with nothing in flight before it fails
DEFAULT_PAUSE_TIMEOUT = 300.0

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


@dataclass(frozen=True, eq=False)
class PoolConfig:
    """Every option of a ``Pool``, in canonical form; see ``Pool`` for what each one means.

    Built from a user's arguments by ``PoolConfig.build`` (``Pool(...)`` calls it with its own);
    derived from another with ``dataclasses.replace`` (checked again), for instance
    ``Pool.from_config(dataclasses.replace(pool.config, retries=3))``; ``pool.config`` is the
    pool's. Fields that differ from ``Pool``'s arguments: ``workers`` holds
    one callable (or ``@delayed_init`` shell) per worker, and ``listed`` says whether the user gave
    a list; ``backend`` is the backend's name (``use_threads`` is ``backend == 'threads'``);
    ``worker_env`` has one dict per worker; ``backend_options`` holds ``address`` too;
    ``journal`` the journal options (or None); ``concurrency`` is 0 for plain functions.
    ``inline_alone=False`` keeps a single worker out of the caller (the ``multiprocessing`` drop-in:
    its one process must be a process). Memory sizes are bytes, and ``min_available_memory`` a
    ``Threshold`` (bytes, or a share of the memory there is); strings such as ``"2GiB"`` and
    ``"10%"`` given to ``dataclasses.replace`` are read as ``build`` reads them.
    """

    workers: tuple[Any, ...]
    listed: bool = False
    argument_type: ArgumentType = "single_arg"
    exception_behavior: ExceptionMode = "immediate"
    bounded: bool = True
    chunk_size: int | None = None
    chunk_prefill_ratio: int | None = None
    is_unordered: bool = False
    backend: str = "processes"
    task_timeout: float | None = None
    join_timeout: float = DEFAULT_JOIN_TIMEOUT
    start_method: str | None = None
    worker_env: tuple[Mapping[str, str], ...] = ()
    initializer: Callable[..., Any] | None = None
    initargs: tuple[Any, ...] = ()
    max_tasks_per_worker: int | None = None
    on_worker_death: OnWorkerDeath | None = None
    retries: int = 0
    init_timeout: float | None = None
    backend_options: BackendOptions | None = None
    input_thread: bool | None = None
    memory_budget: int | None = DEFAULT_BUDGET
    journal: JournalOptions | None = None
    concurrency: int = 0
    max_per_second: float | None = None
    max_worker_memory: int | None = None
    kill_worker_memory: int | None = None
    min_available_memory: Threshold | None = None
    memory_pause_timeout: float = DEFAULT_PAUSE_TIMEOUT
    forward_logs: bool = True
    inline_alone: bool = True
    #: the start gate every worker of the pool shares (``max_per_second``), made once per pool
    start_gate: StartGate | None = field(default=None, repr=False)

    # -- derived ----------------------------------------------------------------------------------

    @property
    def num_workers(self) -> int:
        """The number of workers."""
        return len(self.workers)

    @property
    def use_threads(self) -> bool:
        """Whether the workers are threads."""
        return self.backend == "threads"

    @property
    def address(self) -> str | None:
        """The cluster to join (``Pool(address=...)``), or None."""
        return None if self.backend_options is None else self.backend_options.address

    @property
    def runs_inline(self) -> bool:
        """A single plain worker on processes or threads runs in the caller. Coroutine workers run
        on an event loop of their own, never in the caller (whose loop, if any, must not be
        blocked), so one of them is a real thread or process too; so is a worker whose memory is
        limited (the caller cannot be replaced)."""
        return (
            self.inline_alone and self.num_workers == 1 and self.backend in _INLINE_WHEN_ALONE
            and not self.concurrency and not self.limits_worker_memory
        )

    @property
    def limits_worker_memory(self) -> bool:
        """Workers are recycled or killed by their memory: each must be a process of its own (a
        single worker does not run in the caller then)."""
        return self.max_worker_memory is not None or self.kill_worker_memory is not None

    def run_options(self) -> RunOptions:
        """What the engine obeys, in its own terms."""
        if self.on_worker_death is None:
            # Under 'ignore' a death is one more per-item error; elsewhere it stops the run.
            restart = self.exception_behavior == ExceptionBehaviour.IGNORE
        else:
            restart = self.on_worker_death == WorkerDeath.RESTART
        return RunOptions(
            ordered=not self.is_unordered,
            exception_behavior=self.exception_behavior,
            bounded=self.bounded,
            chunk_size=self.chunk_size,
            chunk_prefill_ratio=self.chunk_prefill_ratio,
            task_timeout=self.task_timeout,
            init_timeout=self.init_timeout,
            restart_on_death=restart,
            retries=self.retries,
            max_tasks_per_worker=self.max_tasks_per_worker,
            input_thread=self.input_thread,
            memory_budget=self.memory_budget,
            concurrency=self.concurrency,
            max_per_second=self.max_per_second,
            min_available_memory=self.min_available_memory,
            memory_pause_timeout=self.memory_pause_timeout,
        )

    def worker_specs(self) -> list[WorkerSpec]:
        """What each worker runs."""
        # A coroutine worker enforces task_timeout itself, per item (see RunOptions.watchdog_timeout).
        item_timeout = self.task_timeout if self.concurrency else None
        return [
            WorkerSpec(i, w, self.argument_type, dict(self.worker_env[i]), self.initializer, self.initargs,
                       concurrency=self.concurrency, task_timeout=item_timeout, start_gate=self.start_gate,
                       memory_limit=self.max_worker_memory, forward_logs=self.forward_logs)
            for i, w in enumerate(self.workers)
        ]

    # -- building and checking --------------------------------------------------------------------

    @classmethod
    def build(
        cls,
        worker_or_worker_arr: Any,
        n_jobs: Any = None,
        argument_type: Any = "single_arg",
        exception_behavior: Any = "immediate",
        bounded: Any = True,
        chunk_size: Any = None,
        chunk_prefill_ratio: Any = None,
        is_unordered: Any = False,
        use_threads: Any = False,
        task_timeout: Any = None,
        join_timeout: Any = None,
        *,
        exception_behaviour: Any = None,
        start_method: Any = None,
        worker_env: Any = None,
        initializer: Any = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: Any = None,
        on_worker_death: Any = None,
        retries: Any = 0,
        init_timeout: Any = None,
        backend: Any = None,
        backend_options: Any = None,
        address: Any = None,
        input_thread: Any = None,
        memory_budget: Any = DEFAULT_BUDGET,
        journal: Any = None,
        journal_key: Any = None,
        journal_fresh: Any = False,
        journal_keep_failures: Any = False,
        journal_results: Any = True,
        save_callback: Any = None,
        save_batch: Any = None,
        concurrency: Any = None,
        max_per_second: Any = None,
        max_worker_memory: Any = None,
        kill_worker_memory: Any = None,
        min_available_memory: Any = None,
        memory_pause_timeout: Any = None,
        forward_logs: Any = True,
        stacklevel: int = 2,
    ) -> PoolConfig:
        """The configuration ``Pool(...)`` with these arguments has (its signature, one to one).
        Spellings and shorthands are resolved here; the checks run in ``__post_init__``.
        ``stacklevel``: of warnings, counted from the caller of this method."""
        if exception_behaviour is not None:
            if exception_behavior not in (ExceptionBehaviour.IMMEDIATE, exception_behaviour):
                raise ValueError(
                    f"exception_behavior={exception_behavior!r} and exception_behaviour="
                    f"{exception_behaviour!r} disagree; pass only one of the two spellings"
                )
            exception_behavior = exception_behaviour
        try:
            argument_kind = _ARGUMENT_TYPES[argument_type]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown argument_type {argument_type!r}; use 'single_arg' (f(x)), 'args' (f(*x)) "
                "or 'kwargs' (f(**x))"
            ) from None
        backend_name = check_backend(backend, use_threads)
        threads = backend_name == "threads"

        workers: list[Any]
        listed = isinstance(worker_or_worker_arr, (list, tuple))
        if listed:
            workers = list(worker_or_worker_arr)
            if not workers:
                raise ValueError("the list of workers is empty; give at least one worker")
            if n_jobs is not None:
                count = check_n_jobs(n_jobs, threads)
                if count != len(workers):
                    means = "" if count == n_jobs else f" ({count} workers here)"
                    raise ValueError(
                        f"n_jobs={n_jobs!r}{means} does not match the {len(workers)} workers in the "
                        "list; leave n_jobs as None or make it equal to the list's length"
                    )
        else:
            if worker_or_worker_arr is None or (
                isinstance(worker_or_worker_arr, int) and not isinstance(worker_or_worker_arr, bool)
            ):
                raise TypeError(_count_for_a_worker(worker_or_worker_arr))
            check_worker(worker_or_worker_arr, "the worker")
            workers = [worker_or_worker_arr] * check_n_jobs(n_jobs, threads)

        if task_timeout is not None and (chunk_size is not None or chunk_prefill_ratio is not None):
            warnings.warn(
                "with task_timeout each worker holds one item at a time, so chunk_size and "
                "chunk_prefill_ratio are ignored; drop them (or drop task_timeout)",
                UserWarning,
                stacklevel=stacklevel + 1,
            )
        join = check_seconds(join_timeout, "join_timeout", allow_zero=True)
        rate = check_rate(max_per_second)
        # Starts themselves are paced, in the workers (hand-overs alone are not enough: a worker
        # wakes up a varying while after it is handed an item). Threads and processes share a
        # gate; Ray actors on other machines cannot, and are paced by their hand-overs.
        gate = start_gate(rate) if backend_name in ("threads", "processes") else None
        return cls(
            workers=tuple(workers),
            listed=listed,
            argument_type=argument_kind,
            exception_behavior=exception_behavior,
            bounded=bool(bounded),
            chunk_size=None if chunk_size is None else check_count(chunk_size, "chunk_size"),
            chunk_prefill_ratio=(
                None if chunk_prefill_ratio is None
                else check_count(chunk_prefill_ratio, "chunk_prefill_ratio")
            ),
            is_unordered=bool(is_unordered),
            backend=backend_name,
            task_timeout=check_seconds(task_timeout, "task_timeout"),
            join_timeout=DEFAULT_JOIN_TIMEOUT if join is None else join,
            start_method=start_method,
            worker_env=tuple(worker_envs(worker_env, len(workers))),
            initializer=initializer,
            initargs=tuple(initargs),
            max_tasks_per_worker=max_tasks_per_worker,
            on_worker_death=on_worker_death,
            retries=retries,
            init_timeout=check_seconds(init_timeout, "init_timeout"),
            backend_options=per_worker_options(backend_options, address, len(workers)),
            input_thread=input_thread,
            memory_budget=memory_budget,
            journal=check_journal_options(
                journal, journal_key, journal_fresh, journal_keep_failures, journal_results, save_callback,
                save_batch,
            ),
            concurrency=check_concurrency(concurrency, workers),
            max_per_second=rate,
            max_worker_memory=max_worker_memory,
            kill_worker_memory=kill_worker_memory,
            min_available_memory=min_available_memory,
            memory_pause_timeout=(
                DEFAULT_PAUSE_TIMEOUT if memory_pause_timeout is None else memory_pause_timeout
            ),
            forward_logs=forward_logs,
            start_gate=gate,
        )

    def __post_init__(self) -> None:
        """Every check of a configuration, built or derived; each error says what to change."""
        workers = self.workers
        if not workers:
            raise ValueError("the list of workers is empty; give at least one worker")
        if self.listed or len(workers) == 1:
            for i, w in enumerate(workers):
                check_worker(w, f"worker #{i} of the list" if self.listed else "the worker")
        elif any(w is not workers[0] for w in workers):
            raise ValueError("a configuration with different workers per worker must say listed=True")
        else:
            check_worker(workers[0], "the worker")
        coroutines = bool(check_concurrency(None, list(workers)))  # also refuses mixed lists
        concurrency = self.concurrency
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 0 or (
            coroutines != (concurrency > 0)
        ):
            raise ValueError(
                f"concurrency={concurrency!r} does not fit the workers: a whole number >= 1 for coroutine "
                "workers (async def), 0 for plain functions"
            )
        if self.exception_behavior not in _EXCEPTION_BEHAVIOURS:
            raise ValueError(
                f"unknown exception_behavior {self.exception_behavior!r}; use one of "
                f"{', '.join(repr(m) for m in _EXCEPTION_BEHAVIOURS)}"
            )
        if self.argument_type not in ("single_arg", "args", "kwargs"):
            raise ValueError(
                f"unknown argument_type {self.argument_type!r}; use 'single_arg', 'args' or 'kwargs'"
            )
        check_backend(self.backend, False)
        for name in ("task_timeout", "init_timeout"):
            check_seconds(getattr(self, name), name)
        check_seconds(self.join_timeout, "join_timeout", allow_zero=True)
        for name in ("chunk_size", "chunk_prefill_ratio"):
            value = getattr(self, name)
            if value is not None and check_count(value, name) != value:
                raise ValueError(f"{name} must be a whole number >= 1, not {value!r}")
        if self.on_worker_death not in (None, WorkerDeath.RAISE, WorkerDeath.RESTART):
            raise ValueError(f"unknown on_worker_death {self.on_worker_death!r}; use 'raise' or 'restart'")
        retries = self.retries
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        if self.start_method is not None:
            if self.backend != "processes":
                raise ValueError(
                    "start_method applies to process workers; drop it or use the processes backend "
                    "(use_threads=False)"
                )
            import multiprocess

            methods = multiprocess.get_all_start_methods()
            if self.start_method not in methods:
                raise ValueError(
                    f"unknown start_method {self.start_method!r}; this platform offers {methods}"
                )
        if self.initializer is not None and not callable(self.initializer):
            raise TypeError(f"initializer must be callable, not {type(self.initializer).__name__}")
        limit = self.max_tasks_per_worker
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"max_tasks_per_worker must be a whole number >= 1, not {limit!r}")
        if len(self.worker_env) != len(workers):
            raise ValueError(f"worker_env has {len(self.worker_env)} dicts for {len(workers)} workers")
        for i, env in enumerate(self.worker_env):
            check_env(env, f"worker_env[{i}]")
        check_budget(self.memory_budget)
        if self.input_thread is not None and not isinstance(self.input_thread, bool):
            raise TypeError(
                "input_thread must be True, False or None (decide by the input), not "
                f"{self.input_thread!r:.40}"
            )
        check_rate(self.max_per_second)
        if not isinstance(self.forward_logs, bool):
            raise TypeError(
                f"forward_logs must be True (workers' log records and warnings reach the caller's "
                f"logging) or False, not {self.forward_logs!r:.40}"
            )
        self._check_memory_options()
        if self.journal is not None and self.is_unordered and self.concurrency:
            raise ValueError(
                "a journaled run with is_unordered=True wraps the workers in a plain function, which "
                "cannot await a coroutine worker; use an ordered journaled run (is_unordered=False) "
                "with this async def worker"
            )
        options = self.backend_options
        if options is not None and len(options.per_worker) != len(workers):
            raise ValueError(
                f"backend_options has {len(options.per_worker)} dicts for {len(workers)} workers; give one "
                "dict per worker, or a single dict for all"
            )
        specs = self.worker_specs()
        if self.backend == "processes" and not self.runs_inline:
            check_process_arguments(list(workers), self.listed, self.initializer, self.initargs)
            check_picklable(specs, self.start_method)
        check_backend_options(self.backend, options, specs)


    def _check_memory_options(self) -> None:
        """The memory options, read into bytes and thresholds (in place: strings such as "2GiB"
        given to ``dataclasses.replace`` are read here), and checked against the backend."""
        def canonical(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        limit, ceiling = self.max_worker_memory, self.kill_worker_memory
        if limit is not None:
            canonical("max_worker_memory", limit := parse_bytes(limit, "max_worker_memory"))
        if ceiling is not None:
            canonical("kill_worker_memory", ceiling := parse_bytes(ceiling, "kill_worker_memory"))
        if self.min_available_memory is not None:
            threshold = parse_threshold(self.min_available_memory, "min_available_memory")
            canonical("min_available_memory", threshold)
        timeout = check_seconds(self.memory_pause_timeout, "memory_pause_timeout")
        canonical("memory_pause_timeout", timeout if timeout is not None else DEFAULT_PAUSE_TIMEOUT)
        if limit is not None and ceiling is not None and ceiling <= limit:
            raise ValueError(
                f"kill_worker_memory ({format_bytes(ceiling)}) must be above max_worker_memory "
                f"({format_bytes(limit)}): a worker over max_worker_memory retires after its item, and one "
                "that crosses kill_worker_memory is killed mid-task; raise the ceiling or drop one"
            )
        if self.backend == "threads" and (limit is not None or ceiling is not None):
            raise ValueError(
                "max_worker_memory and kill_worker_memory limit worker processes; thread workers share "
                "one process, whose memory no single worker can give back. Use process workers "
                "(use_threads=False), or min_available_memory, which works with threads"
            )
        if self.backend == "ray" and ceiling is not None:
            raise ValueError(
                "kill_worker_memory is enforced by watching worker processes on this machine; Ray actors "
                "may run elsewhere. On Ray use max_worker_memory (each actor measures itself), and "
                "Ray's own memory monitor for a hard ceiling"
            )
        source = memory_source()
        if (limit is not None or ceiling is not None) and source.rss() is None:
            raise ValueError(
                "max_worker_memory and kill_worker_memory need to read processes' memory: /proc (Linux), "
                "or psutil installed (pip install psutil)"
            )
        if self.min_available_memory is not None and source.available() is None:
            raise ValueError(
                "min_available_memory needs to read the memory available: /proc/meminfo (Linux), or "
                "psutil installed (pip install psutil)"
            )


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


def usable_cpus() -> int:
    """The CPUs this process may run on: ``os.process_cpu_count()`` where Python has it (3.13+),
    else the scheduler's affinity mask, else every CPU of the machine (``os.cpu_count()``)."""
    counter = getattr(os, "process_cpu_count", None)
    if counter is not None:
        counted: int | None = counter()
        return counted or 1
    try:
        return len(os.sched_getaffinity(0)) or 1
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def default_n_jobs(use_threads: bool) -> int:
    """Workers when ``n_jobs`` is None: the usable CPUs, or ``min(32, CPUs + 4)`` for threads."""
    cpus = usable_cpus()
    # Threads mostly wait on I/O, so more of them than cores pays off (as in ThreadPoolExecutor).
    return min(32, cpus + 4) if use_threads else cpus


def check_n_jobs(n_jobs: Any, use_threads: bool, name: str = "n_jobs") -> int:
    """The number of workers ``n_jobs`` asks for, with joblib's meaning of negative numbers.

    ``None``: :func:`default_n_jobs`. ``k >= 1``: k workers. ``-1``: one per usable CPU
    (:func:`usable_cpus`), ``-2``: all but one, and so on down to ``-CPUs`` (one worker). ``0`` and
    anything below ``-CPUs`` raise ``ValueError``; anything but a whole number (a float, a string,
    a bool) raises ``TypeError``, rather than being rounded or run in the caller without a word.
    ``name`` is what the messages call the option (the command line says ``--n-jobs``).
    """
    if n_jobs is None:
        return default_n_jobs(use_threads)
    try:
        if isinstance(n_jobs, bool):
            raise TypeError
        count = operator.index(n_jobs)  # int and integer types such as numpy.int64, not floats
    except TypeError:
        hint = ""
        if isinstance(n_jobs, str):
            hint = " (a str: convert it with int(...))"
        elif isinstance(n_jobs, float):
            hint = " (a float: round it, or divide with //)"
        raise TypeError(
            f"{name} must be a whole number of workers such as 4, -1 for one per usable CPU, or None "
            f"for the default; not {type(n_jobs).__name__} {n_jobs!r:.40}{hint}"
        ) from None
    if count >= 1:
        return count
    cpus = usable_cpus()
    if -cpus <= count <= -1:
        return cpus + 1 + count
    raise ValueError(
        f"{name} must be at least 1 (a number of workers), or negative as in joblib: -1 for one "
        f"worker per usable CPU ({cpus} here), -2 for all but one, and so on down to -{cpus}; not {count}"
    )


def check_count(value: Any, name: str) -> int:
    """``max(int(value), 1)``, as the replaced API does, with an error that says what to pass."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number such as 4, not {value!r}")
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a whole number such as 4, not {value!r}") from None


def check_seconds(value: Any, name: str, *, allow_zero: bool = False) -> float | None:
    """A number of seconds (> 0, or >= 0 with ``allow_zero``), or None; booleans are refused."""
    if value is None:
        return None
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not number or not (value >= 0 if allow_zero else value > 0):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a number of seconds {bound} (or None), not {value!r}")
    return float(value)


def check_budget(value: Any) -> int | None:
    """``memory_budget``: a number of bytes >= 1, or None."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(
            f"memory_budget must be a number of bytes such as 64 << 20 (64 MiB), or None for no bound "
            f"in bytes, not {value!r:.40}"
        )
    return value


def check_env(env: Any, where: str) -> dict[str, str]:
    """A worker's environment: a mapping of strings to strings."""
    if not isinstance(env, Mapping):
        raise TypeError(f"{where} must be a dict of environment variables, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{where}: environment variables are strings; got {key!r}: {value!r} "
                f"(write e.g. {{'CUDA_VISIBLE_DEVICES': '0'}})"
            )
    return dict(env)


def _has_call(cls: type) -> bool:
    return any("__call__" in vars(k) for k in cls.__mro__ if k is not object)


def check_worker(worker: Any, where: str) -> None:
    if is_delayed_factory(worker):
        raise TypeError(
            f"{where} is the @delayed_init class {worker.__qualname__} itself; pass an instance such as "
            f"{worker.__qualname__}(...) so that each worker builds its own object"
        )
    if isinstance(worker, DelayedObject):
        if not _has_call(worker.cls):
            raise TypeError(
                f"{where}: @delayed_init class {worker.cls.__qualname__} has no __call__ method; the pool "
                "calls the object built in each worker with every item, so define __call__(self, item)"
            )
        return
    if not callable(worker):
        raise TypeError(
            f"{where} must be callable (a function, lambda, partial, bound method, callable object) or a "
            f"@delayed_init object, not {type(worker).__name__} {worker!r:.80}"
        )


def is_coroutine_worker(worker: Any) -> bool:
    """True for a worker whose calls return coroutines: an ``async def`` function (also through
    ``functools.partial`` or as a bound method), an object whose ``__call__`` is ``async def``,
    or a ``@delayed_init`` shell of such a class."""
    if isinstance(worker, DelayedObject):
        return inspect.iscoroutinefunction(_call_method(worker.cls))
    if inspect.iscoroutinefunction(worker):
        return True
    if inspect.isroutine(worker) or isinstance(worker, type):
        return False
    return inspect.iscoroutinefunction(_call_method(type(worker)))


def _call_method(cls: type) -> Any:
    """The ``__call__`` a class's instances run, or None."""
    for klass in cls.__mro__:
        if klass is not object and "__call__" in vars(klass):
            return vars(klass)["__call__"]
    return None


def check_concurrency(concurrency: Any, workers: list[Any]) -> int:
    """Items each worker runs at once: 0 for plain functions, ``concurrency`` (default
    :data:`DEFAULT_CONCURRENCY`) for coroutine workers. Mixed lists and ``concurrency`` without a
    coroutine worker are refused with what to change."""
    kinds = [is_coroutine_worker(w) for w in workers]
    if any(kinds) and not all(kinds):
        plain = kinds.index(False)
        raise TypeError(
            f"worker #{plain} of the list is a plain function while worker #{kinds.index(True)} is a "
            "coroutine function (async def); give a list of one kind only"
        )
    if concurrency is not None and (
        isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1
    ):
        raise ValueError(
            f"concurrency must be a whole number >= 1 (items each worker runs at once), not {concurrency!r}"
        )
    if not kinds[0]:
        if concurrency is not None:
            raise ValueError(
                f"concurrency={concurrency!r} applies to coroutine workers (async def functions, or "
                f"@delayed_init objects with an async def __call__), and {workers[0]!r:.80} is a plain "
                "function, which runs one item at a time; drop concurrency, or make the worker "
                "async def (use more workers, n_jobs, for plain functions)"
            )
        return 0
    return DEFAULT_CONCURRENCY if concurrency is None else concurrency


def check_backend(backend: str | None, use_threads: bool) -> str:
    if backend is None:
        return "threads" if use_threads else "processes"
    known = backend_names()
    if not isinstance(backend, str) or backend not in known or backend == "inline":
        names = ", ".join(repr(n) for n in known if n != "inline")
        raise ValueError(f"unknown backend {backend!r}; use one of {names}")
    if use_threads and backend != "threads":
        raise ValueError(
            f"use_threads=True asks for threads but backend={backend!r}; pass only one of the two"
        )
    return backend


def worker_envs(worker_env: Any, n: int) -> list[dict[str, str]]:
    if worker_env is None:
        return [{} for _ in range(n)]
    if isinstance(worker_env, Mapping):
        return [check_env(worker_env, "worker_env")] * n
    if isinstance(worker_env, (list, tuple)):
        if len(worker_env) != n:
            raise ValueError(
                f"worker_env has {len(worker_env)} dicts for {n} workers; give one dict per worker, or a "
                "single dict for all"
            )
        return [check_env(e, f"worker_env[{i}]") for i, e in enumerate(worker_env)]
    raise TypeError(f"worker_env must be a dict or a list of dicts, not {type(worker_env).__name__}")


def check_picklable(specs: list[WorkerSpec], start_method: str | None) -> None:
    """Fail now, not in a worker, when a start method that pickles cannot pickle a worker."""
    import multiprocess

    method = multiprocess.get_context(start_method).get_start_method()
    if method == "fork":
        return
    by_value = main_needs_by_value()  # as the process backend will send it
    seen: set[int] = set()
    for spec in specs:
        if id(spec.worker) in seen:
            continue
        seen.add(id(spec.worker))
        try:
            dumps(spec, main_by_value=by_value)
        except ThreadObjectError as exc:
            # Somewhere inside an object (check_process_arguments has looked at the arguments).
            raise TypeError(
                f"worker #{spec.index} ({spec.worker!r:.80}), or its initializer and initargs, holds a "
                f"{exc.kind} inside, to be copied into each process: {exc}. An object that needs a "
                f"{exc.kind} of its own in each worker can be built there instead, by a @delayed_init "
                "class"
            ) from exc
        except Exception as exc:
            raise TypeError(
                f"worker #{spec.index} ({spec.worker!r:.80}) cannot be pickled to start a process with "
                f"the {method!r} start method: {type(exc).__name__}: {exc}. Define it at module level, "
                "use start_method='fork', or use threads (use_threads=True)"
            ) from exc


#: what check_process_arguments looks at, at most: objects in all, elements of one container (the
#: start of a large list is read, not all of it), and steps deep into containers and wrappers
_WALK_LIMIT = 10_000
_WALK_PER_CONTAINER = 1_000
_WALK_DEPTH = 6
#: values that hold nothing: skipped without a look
_ATOMS = frozenset({int, float, complex, bool, str, bytes, bytearray, type(None), range})


def check_process_arguments(
    workers: list[Any], listed: bool, initializer: Any, initargs: tuple[Any, ...]
) -> None:
    """Refuse thread-only objects (``threading.Lock``, ``Event``, ``queue.Queue``, ...) among what
    process workers are given: ``functools.partial`` arguments, closure variables and default
    values of a function, ``@delayed_init`` arguments, ``initargs`` (and lists, tuples, sets and
    dicts of them). Each process would get a separate copy (under ``fork`` without any pickling),
    so a lock shared that way excludes nothing; the ``TypeError`` names it and what to use instead.

    Only those routes are looked at (and what this package's own wrappers of a function pickle to),
    not the attributes of other objects: a callable object with a lock of its own is copied
    together with the state the lock guards, which is sound under ``fork`` (other start methods
    pickle the object, and refuse it there: see ``_backends.serialize``). No object is pickled here, so
    large arguments inherited under ``fork`` cost nothing."""
    seen: set[int] = set()
    for i, worker in enumerate(workers):
        if id(worker) in seen:
            continue
        seen.add(id(worker))
        _refuse_thread_objects(worker, f"worker #{i} of the list" if listed else "the worker")
    _refuse_thread_objects(initializer, "the initializer")
    _refuse_thread_objects(initargs, "initargs")


def _refuse_thread_objects(root: Any, where: str) -> None:
    found = _find_thread_object(root)
    if found is None:
        return
    route, obj = found
    kind, method = thread_object_kind(obj) or ("thread-only object", "Lock")
    steps = (template.format(arg) for template, arg in route)
    place = where + "".join(step if step.startswith("[") else f" > {step}" for step in steps)
    raise TypeError(
        f"cannot give process workers a {kind} ({place}: {obj!r:.60}): {copy_in_a_process(kind)}, "
        f"and each worker would get one of its own. Make it with multiprocess.Manager().{method}(), "
        "which process workers share, or run the workers as threads (use_threads=True)"
    )


#: one step from a value to a part of it, as a template and its argument, formatted only for a message
_Step = tuple[str, Any]


def _find_thread_object(root: Any) -> tuple[tuple[_Step, ...], Any] | None:
    """The first thread-only object reachable from ``root`` through arguments and containers, with
    the steps that lead to it; None when there is none (within the ``_WALK_*`` limits)."""
    stack: list[tuple[Any, tuple[_Step, ...]]] = [(root, ())]
    seen: set[int] = set()
    budget = _WALK_LIMIT
    while stack and budget > 0:
        value, route = stack.pop()
        budget -= 1
        if thread_object_kind(value) is not None:
            return route, value
        if id(value) in seen or len(route) >= _WALK_DEPTH:
            continue
        seen.add(id(value))
        # In reverse, so that the first part is looked at first. A method is looked at through its
        # function, with no step of its own.
        parts = [(step, part) for step, part in _argument_parts(value) if type(part) not in _ATOMS]
        stack.extend((part, route if step is None else (*route, step)) for step, part in reversed(parts))
    return None


def _argument_parts(value: Any) -> Iterator[tuple[_Step | None, Any]]:
    """What ``value`` hands to a worker, as ``(step, part)``."""
    kind = type(value)
    if kind is tuple or kind is list:
        for i, x in enumerate(value[:_WALK_PER_CONTAINER]):
            yield ("[{}]", i), x
    elif kind is dict:
        for (k, x), _ in zip(value.items(), range(_WALK_PER_CONTAINER)):
            yield ("[{!r:.30}]", k), x
    elif kind is set or kind is frozenset:
        for x, _ in zip(value, range(_WALK_PER_CONTAINER)):
            yield ("an element of a {}", kind.__name__), x
    elif isinstance(value, functools.partial):
        for i, x in enumerate(value.args):
            yield ("functools.partial argument #{}", i), x
        for k, x in value.keywords.items():
            yield ("functools.partial keyword {!r}", k), x
        yield ("the function of the functools.partial{}", ""), value.func
    elif isinstance(value, DelayedObject):
        for i, x in enumerate(value.args):
            yield ("@delayed_init argument #{}", i), x
        for k, x in value.kwargs.items():
            yield ("@delayed_init keyword {!r}", k), x
    elif isinstance(value, types.MethodType):
        yield None, value.__func__
    elif kind.__module__.startswith("mtasklite_like.") and "__reduce__" in vars(kind):
        # This package's own wrappers of a user's function (mapreduce's part runner, ...): what
        # they pickle to, which is what they carry of the user's.
        try:
            reduced = value.__reduce__()
        except Exception:  # it cannot be pickled: check_picklable says so where that matters
            return
        if isinstance(reduced, tuple) and len(reduced) > 1:
            for x in reduced[1]:
                yield None, x
            state = reduced[2] if len(reduced) > 2 else None
            if isinstance(state, dict):
                for x in state.values():
                    yield None, x
    elif isinstance(value, types.FunctionType):
        code = value.__code__
        for name, cell in zip(code.co_freevars, value.__closure__ or ()):
            try:
                yield ("closure variable {!r}", name), cell.cell_contents
            except ValueError:  # a cell not filled yet
                pass
        defaults = value.__defaults__ or ()
        names = code.co_varnames[code.co_argcount - len(defaults) : code.co_argcount]
        for name, x in zip(names, defaults):
            yield ("default of parameter {!r}", name), x
        for name, x in (value.__kwdefaults__ or {}).items():
            yield ("default of parameter {!r}", name), x


def per_worker_options(options: Any, address: Any, n: int) -> BackendOptions | None:
    """``Pool(backend_options=..., address=...)`` in worker order: one dict for every worker or a
    list with one dict per worker (None when neither was given). Their content is the backend's to
    check."""
    if options is None and address is None:
        return None
    if address is not None and (not isinstance(address, str) or not address):
        raise TypeError(f"address must be a string such as 'auto' or 'ray://host:10001', not {address!r}")
    if options is None:
        per_worker: list[dict[str, Any]] = [{} for _ in range(n)]
    elif isinstance(options, Mapping):
        per_worker = [_option_dict(options, "backend_options")] * n
    elif isinstance(options, (list, tuple)):
        if len(options) != n:
            raise ValueError(
                f"backend_options has {len(options)} dicts for {n} workers; give one dict per worker, "
                "or a single dict for all"
            )
        per_worker = [_option_dict(o, f"backend_options[{i}]") for i, o in enumerate(options)]
    else:
        raise TypeError(
            "backend_options must be a dict or a list of dicts (one per worker), not "
            f"{type(options).__name__}"
        )
    return BackendOptions(address, tuple(per_worker))


def _option_dict(options: Any, where: str) -> dict[str, Any]:
    if not isinstance(options, Mapping):
        raise TypeError(
            f"{where} must be a dict of options such as {{'num_gpus': 1}}, not {type(options).__name__}"
        )
    for key in options:
        if not isinstance(key, str):
            raise TypeError(f"{where}: option names are strings, not {key!r}")
    return dict(options)
