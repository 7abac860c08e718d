"""The options a run obeys, checked once and frozen, and the checks that build them.

``Pool`` validates what the user passed (each error says what to change) and hands every run one
:class:`RunOptions`; no part of the engine reads the pool itself. The ``Literal`` aliases name the
values each option accepts, for editors and type checkers.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from ._backends import BackendOptions, backend_names
from ._delayed import DelayedObject, is_delayed_factory
from ._serialize import dumps
from ._worker import WorkerSpec

__all__ = [
    "DEFAULT_CONCURRENCY",
    "ArgumentType",
    "BackendName",
    "ExceptionMode",
    "OnWorkerDeath",
    "RunOptions",
    "check_backend",
    "check_budget",
    "check_concurrency",
    "check_count",
    "check_env",
    "check_picklable",
    "check_seconds",
    "check_worker",
    "default_n_jobs",
    "is_coroutine_worker",
    "per_worker_options",
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
            (False), or decide by the input (None; see ``_feeder.make_feeder``).
        memory_budget: bytes the run may hold in items read ahead, batches in flight and results
            not yet consumed (None: bounded in items only); see ``_budget``.
        concurrency: items each worker runs at once, for coroutine workers (``async def``); 0 for
            plain functions, which run one item at a time.
        max_per_second: the most items started per second across the pool, or None.
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
    #: internal: keep the workers' pickled results beside the results (``Release.raw``), for a
    #: journaled run that writes them as they are
    keep_raw_results: bool = False
    concurrency: int = 0
    max_per_second: float | None = None

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


def default_n_jobs(use_threads: bool) -> int:
    """Workers when ``n_jobs`` is None: the usable CPUs, or ``min(32, CPUs + 4)`` for threads."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    # Threads mostly wait on I/O, so more of them than cores pays off (as in ThreadPoolExecutor).
    return min(32, cpus + 4) if use_threads else cpus


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
    seen: set[int] = set()
    for spec in specs:
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
