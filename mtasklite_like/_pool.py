"""``Pool``: the front users see. It validates options, owns the workers, and hands out runs.

The pool knows nothing of threads or processes: it builds one :class:`~._worker.WorkerSpec` per
worker and asks a backend to run them. Workers start lazily on the first ``next()`` of a result
iterator. Inside ``with Pool(...) as pool`` they stay up between calls, so a model built by a
``@delayed_init`` object is built once for many inputs; without ``with``, each run stops its
workers when it ends. A run that ends early (``break``, an error, ``close()``) always stops the
workers, since they may be busy with items nobody will read.
"""

from __future__ import annotations

import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from types import TracebackType
from typing import Any

from ._backends.base import Backend
from ._delayed import DelayedObject, is_delayed_factory
from ._journal import check_journal_options, journaled_run
from ._run import ResultIterator, _Run
from ._serialize import dumps
from ._worker import WorkerSpec
from .constants import ArgumentPassing, ExceptionBehaviour, WorkerDeath

__all__ = ["Pool"]

_ARGUMENT_TYPES = {
    None: ArgumentPassing.AS_SINGLE_ARG,
    "direct": ArgumentPassing.AS_SINGLE_ARG,
    ArgumentPassing.AS_SINGLE_ARG: ArgumentPassing.AS_SINGLE_ARG,
    ArgumentPassing.AS_ARGS: ArgumentPassing.AS_ARGS,
    ArgumentPassing.AS_KWARGS: ArgumentPassing.AS_KWARGS,
}
_EXCEPTION_BEHAVIOURS = (ExceptionBehaviour.IGNORE, ExceptionBehaviour.IMMEDIATE, ExceptionBehaviour.DEFERRED)

#: seconds busy workers get to finish when a run is abandoned, before they are killed
DEFAULT_JOIN_TIMEOUT = 0.5


def _default_n_jobs(use_threads: bool) -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    # Threads mostly wait on I/O, so more of them than cores pays off (as in ThreadPoolExecutor).
    return min(32, cpus + 4) if use_threads else cpus


def _coerce_count(value: Any, name: str) -> int:
    """``max(int(value), 1)``, as the replaced API does, with an error that says what to pass."""
    if isinstance(value, bool):
        raise TypeError(f"{name} must be a whole number such as 4, not {value!r}")
    try:
        return max(int(value), 1)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a whole number such as 4, not {value!r}") from None


def _check_seconds(value: Any, name: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValueError(f"{name} must be a number of seconds > 0 (or None), not {value!r}")
    return float(value)


def _has_call(cls: type) -> bool:
    return any("__call__" in vars(k) for k in cls.__mro__ if k is not object)


def _check_worker(worker: Any, where: str) -> None:
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


def _check_env(env: Any, where: str) -> dict[str, str]:
    if not isinstance(env, Mapping):
        raise TypeError(f"{where} must be a dict of environment variables, not {type(env).__name__}")
    for key, value in env.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"{where}: environment variables are strings; got {key!r}: {value!r} "
                f"(write e.g. {{'CUDA_VISIBLE_DEVICES': '0'}})"
            )
    return dict(env)


class _BackendSlot:
    """Holds the pool's current backend, so a finalizer can stop it without referring to the pool."""

    __slots__ = ("backend", "grace")

    def __init__(self, grace: float) -> None:
        self.backend: Backend | None = None
        self.grace = grace

    def stop(self) -> None:
        backend, self.backend = self.backend, None
        if backend is not None:
            backend.stop(self.grace)


class Pool:
    """A pool of workers that maps a function or stateful object over an iterable, lazily.

    ``pool(iterable)`` returns a :class:`ResultIterator`. The signature and defaults match the
    ``mtasklite`` package; options after ``*`` are this package's own.

    Args:
        worker_or_worker_arr: the callable each worker runs (function, lambda, ``functools.partial``,
            bound method, callable object, builtin), a ``@delayed_init`` object built inside each
            worker, or a list of them, one per worker.
        n_jobs: number of workers; ``max(int(n_jobs), 1)``. Optional with a list of workers (must
            then equal its length). ``None`` with one worker: the number of CPUs (processes) or
            ``min(32, CPUs + 4)`` (threads). With 1, items run in the caller (easy debugging).
        argument_type: ``'single_arg'`` (``f(x)``; also ``None`` or ``'direct'``), ``'args'``
            (``f(*x)``) or ``'kwargs'`` (``f(**x)``).
        exception_behavior: ``'immediate'`` (raise the first failure and stop), ``'ignore'`` (yield
            the exception object as the result) or ``'deferred'`` (yield exceptions, raise them all
            at the end as :class:`~mtasklite_like.DeferredExceptions`).
        bounded: read the input at most a small window ahead of the consumer (constant memory).
        chunk_size: the largest number of items sent to a worker in one batch (batches otherwise
            adapt to the measured task time).
        chunk_prefill_ratio: how many batches each worker may hold at once. By default 2 (one running,
            one waiting, so a worker never idles between batches) for tasks fast enough to travel in
            batches, and 1 for slow tasks, so that no item waits behind a slow one.
        is_unordered: yield results as they finish instead of in input order.
        use_threads: run workers as threads of this process instead of processes.
        task_timeout: seconds an item may run. A process worker past it is killed and replaced, a
            thread worker is abandoned (it cannot be killed) and replaced, and the item gets
            :class:`~mtasklite_like.TaskTimeoutError` (a ``TimeoutError``). Each worker then holds
            one item at a time. With ``n_jobs=1`` an overrun is reported when the task ends.
        join_timeout: seconds busy workers get to finish when a run is stopped early, before they
            are killed (default 0.5).
        exception_behaviour: British spelling of ``exception_behavior``.
        start_method: ``'fork'``, ``'spawn'`` or ``'forkserver'`` for process workers (default: the
            platform's).
        worker_env: environment variables set in each worker before its object is built: one dict
            for all workers or a list with one dict per worker (e.g. ``CUDA_VISIBLE_DEVICES``).
            Threads share one environment, so for them the values are set only while each
            worker's object is being built.
        initializer, initargs: ``initializer(*initargs)`` runs once in each worker before its
            object is built, as in ``concurrent.futures``.
        max_tasks_per_worker: replace a worker by a fresh one (its object rebuilt, its
            initializer run again) after it has processed this many items; a remedy for memory
            leaks in task code (``max_tasks_per_child`` in ``concurrent.futures``).
        on_worker_death: ``'raise'``: a worker that dies (crash, ``os._exit``, a signal, the OOM
            killer) raises :class:`~mtasklite_like.WorkerDiedError` naming it and the items it
            held. ``'restart'``: the worker is replaced and each item it held gets a
            ``WorkerDiedError`` result (or is retried). Default: ``'restart'`` under ``'ignore'``,
            ``'raise'`` otherwise.
        retries: run an item that failed (exception, death, timeout) again, up to this many times;
            the final error records ``.attempts`` and ``.previous_errors``.
        init_timeout: seconds a worker may take to start (initializer and object construction)
            before the run fails with :class:`~mtasklite_like.WorkerInitError`.
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
    """

    def __init__(
        self,
        worker_or_worker_arr: Any,
        n_jobs: int | None = None,
        argument_type: str | None = ArgumentPassing.AS_SINGLE_ARG,
        exception_behavior: str = ExceptionBehaviour.IMMEDIATE,
        bounded: bool = True,
        chunk_size: int | None = None,
        chunk_prefill_ratio: int | None = None,
        is_unordered: bool = False,
        use_threads: bool = False,
        task_timeout: float | None = None,
        join_timeout: float | None = None,
        *,
        exception_behaviour: str | None = None,
        start_method: str | None = None,
        worker_env: Mapping[str, str] | Sequence[Mapping[str, str]] | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Iterable[Any] = (),
        max_tasks_per_worker: int | None = None,
        on_worker_death: str | None = None,
        retries: int = 0,
        init_timeout: float | None = None,
        journal: str | os.PathLike[str] | None = None,
        journal_key: Callable[[Any], Any] | None = None,
        journal_fresh: bool = False,
        journal_keep_failures: bool = False,
        journal_results: bool = True,
        save_callback: Callable[[list[Any], list[Any]], Any] | None = None,
        save_batch: int | None = None,
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
            argument_type = _ARGUMENT_TYPES[argument_type]
        except (KeyError, TypeError):
            raise ValueError(
                f"unknown argument_type {argument_type!r}; use 'single_arg' (f(x)), 'args' (f(*x)) "
                "or 'kwargs' (f(**x))"
            ) from None

        # -- workers --------------------------------------------------------------------------------
        if isinstance(worker_or_worker_arr, (list, tuple)):
            workers = list(worker_or_worker_arr)
            if not workers:
                raise ValueError("the list of workers is empty; give at least one worker")
            if n_jobs is not None and _coerce_count(n_jobs, "n_jobs") != len(workers):
                raise ValueError(
                    f"n_jobs={n_jobs!r} does not match the {len(workers)} workers in the list; "
                    "leave n_jobs as None or make it equal to the list's length"
                )
            for i, w in enumerate(workers):
                _check_worker(w, f"worker #{i} of the list")
        else:
            _check_worker(worker_or_worker_arr, "the worker")
            count = _default_n_jobs(use_threads) if n_jobs is None else _coerce_count(n_jobs, "n_jobs")
            workers = [worker_or_worker_arr] * count
        self.num_workers = len(workers)

        # -- options --------------------------------------------------------------------------------
        self.chunk_size = None if chunk_size is None else _coerce_count(chunk_size, "chunk_size")
        self.chunk_prefill_ratio = (
            None if chunk_prefill_ratio is None else _coerce_count(chunk_prefill_ratio, "chunk_prefill_ratio")
        )
        if join_timeout is None:
            join_timeout = DEFAULT_JOIN_TIMEOUT
        elif not isinstance(join_timeout, (int, float)) or join_timeout < 0:
            raise ValueError(f"join_timeout must be a number of seconds >= 0, not {join_timeout!r}")
        task_timeout = _check_seconds(task_timeout, "task_timeout")
        init_timeout = _check_seconds(init_timeout, "init_timeout")
        if on_worker_death not in (None, WorkerDeath.RAISE, WorkerDeath.RESTART):
            raise ValueError(f"unknown on_worker_death {on_worker_death!r}; use 'raise' or 'restart'")
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"retries must be a whole number >= 0, not {retries!r}")
        if start_method is not None:
            if use_threads:
                raise ValueError("start_method applies to process workers; drop it or set use_threads=False")
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
        self.max_tasks_per_worker = max_tasks_per_worker

        if worker_env is None:
            envs: list[dict[str, str]] = [{} for _ in workers]
        elif isinstance(worker_env, Mapping):
            envs = [_check_env(worker_env, "worker_env")] * len(workers)
        elif isinstance(worker_env, (list, tuple)):
            if len(worker_env) != len(workers):
                raise ValueError(
                    f"worker_env has {len(worker_env)} dicts for {len(workers)} workers; give one dict "
                    "per worker, or a single dict for all"
                )
            envs = [_check_env(e, f"worker_env[{i}]") for i, e in enumerate(worker_env)]
        else:
            raise TypeError(f"worker_env must be a dict or a list of dicts, not {type(worker_env).__name__}")

        self.argument_type = argument_type
        self.exception_behavior = exception_behavior
        self.bounded = bool(bounded)
        self.is_unordered = bool(is_unordered)
        self.use_threads = bool(use_threads)
        self.task_timeout = task_timeout
        self.init_timeout = init_timeout
        self.on_worker_death = on_worker_death
        self.retries = retries
        self.join_timeout = float(join_timeout)
        self.start_method = start_method
        self.exited = False
        self._journal = check_journal_options(
            journal, journal_key, journal_fresh, journal_keep_failures, journal_results, save_callback,
            save_batch,
        )

        self._specs = [
            WorkerSpec(i, w, argument_type, envs[i], initializer, initargs) for i, w in enumerate(workers)
        ]
        if not self.use_threads and self.num_workers > 1:
            self._check_picklable()

        self._slot = _BackendSlot(self.join_timeout)
        # Stop the workers when the pool is garbage-collected, or at interpreter exit.
        self._finalizer = weakref.finalize(self, self._slot.stop)
        self._active_run: weakref.ref[_Run] | None = None
        self._quota: list[int] | None = None
        # When each worker of the current backend started and when it reported itself ready.
        # They live as long as the workers, which may serve several runs.
        self._started_at: list[float] = []
        self._ready_at: list[float | None] = []
        self._managed = False

    # -- public ---------------------------------------------------------------------------------------

    @property
    def exception_behaviour(self) -> str:
        """British spelling of :attr:`exception_behavior`."""
        return self.exception_behavior

    @property
    def n_jobs(self) -> int:
        return self.num_workers

    def __call__(self, input_iterable: Iterable[Any]) -> ResultIterator[Any]:
        """Return a lazy iterator of the results of the workers over ``input_iterable``
        (a :class:`~mtasklite_like.JournaledIterator` when the pool has a journal or save_callback)."""
        if not hasattr(input_iterable, "__iter__") and not hasattr(input_iterable, "__getitem__"):
            raise TypeError(f"the pool's input must be iterable, not {type(input_iterable).__name__}")
        if self._journal is not None:
            return journaled_run(self, input_iterable, self._journal)  # type: ignore[return-value]
        return ResultIterator(self, input_iterable)

    def close(self) -> None:
        """Stop the workers (a run in progress is stopped too). The pool may be called again later."""
        run = self._active_run() if self._active_run is not None else None
        if run is not None:
            run.close()
        self._slot.stop()
        self.exited = True

    def __enter__(self) -> Pool:
        self._managed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._managed = False
        self.close()

    def __repr__(self) -> str:
        kind = "inline" if self.num_workers == 1 else ("threads" if self.use_threads else "processes")
        return f"<mtasklite_like.Pool {self.num_workers} worker(s), {kind}>"

    # -- for the run ------------------------------------------------------------------------------------

    def _acquire_backend(self, run: _Run) -> Backend:
        current = self._active_run() if self._active_run is not None else None
        if current is not None and current is not run and not current.finished:
            raise RuntimeError(
                "this Pool is still busy with another result iterator; exhaust it or call its close() "
                "before starting a new one (or use a second Pool)"
            )
        self._active_run = weakref.ref(run)
        backend = self._slot.backend
        if backend is None or not backend.alive:
            backend = self._make_backend()
            # Items each worker may still take before it is replaced (max_tasks_per_worker).
            limit = self.max_tasks_per_worker
            self._quota = None if limit is None else [limit] * backend.n_workers
            self._started_at = [time.monotonic()] * backend.n_workers
            self._ready_at = [None] * backend.n_workers
            self._slot.backend = backend
            self.exited = False
            try:
                backend.start()
            except BaseException:
                self._slot.stop()
                raise
        return backend

    def _release_backend(self, run: _Run, *, clean: bool) -> None:
        current = self._active_run() if self._active_run is not None else None
        if current is run:
            self._active_run = None
        if not clean or not self._managed:
            self._slot.stop()

    def _close_if_unmanaged(self) -> None:
        if not self._managed:
            self.close()

    def _make_backend(self) -> Backend:
        if self.num_workers == 1:
            from ._backends.inline import InlineBackend

            return InlineBackend(self._specs[0])
        if self.use_threads:
            from ._backends.threads import ThreadBackend

            return ThreadBackend(self._specs)
        from ._backends.processes import ProcessBackend

        return ProcessBackend(self._specs, self.start_method)

    def _check_picklable(self) -> None:
        """Fail now, not in a worker, when a start method that pickles cannot pickle a worker."""
        import multiprocess

        method = multiprocess.get_context(self.start_method).get_start_method()
        if method == "fork":
            return
        seen: set[int] = set()
        for spec in self._specs:
            if id(spec.worker) in seen:
                continue
            seen.add(id(spec.worker))
            try:
                dumps(spec)
            except Exception as exc:
                raise TypeError(
                    f"worker #{spec.index} ({spec.worker!r:.80}) cannot be pickled to start a process with "
                    f"the {method!r} start method: {type(exc).__name__}: {exc}. Define it at module level, "
                    "use start_method='fork', or use threads (use_threads=True)"
                ) from exc
