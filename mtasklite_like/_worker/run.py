"""What every worker does, whatever it runs on: build its callable once, then run batches.

The backends only move batches and results around; this module holds the behaviour they share,
so a thread, a process and the caller itself (``n_jobs=1``) run items identically.
"""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from types import CoroutineType
from typing import Any

from .._engine.rate_limit import StartGate
from .._memory.limit import OwnLimit
from ..constants import ArgumentPassing
from .delayed import materialize

__all__ = [
    "WorkerSpec",
    "build_worker_callable",
    "build_worker_object",
    "fail_unpicklable",
    "make_caller",
    "pack_exception",
    "run_batch",
    "run_batch_limited",
    "temporary_env",
]


class WorkerSpec:
    """Everything one worker needs to start: its callable or shell, environment and initializer.

    ``concurrency`` is 0 for a plain function, which runs one item at a time; for a coroutine
    worker it is how many items the worker runs at once on its event loop (``coroutines``),
    each cancelled past ``task_timeout`` seconds. ``memory_limit``: the bytes of its own memory past
    which the worker retires (``max_worker_memory``; see ``_memory.limit``), or None.
    ``forward_logs``: a worker in a process of its own sends its log records and warnings to the
    caller (``_logs.forward``).
    """

    __slots__ = ("argument_type", "concurrency", "env", "forward_logs", "index", "initargs", "initializer",
                 "memory_limit", "start_gate", "task_timeout", "worker")

    def __init__(
        self,
        index: int,
        worker: Any,
        argument_type: str,
        env: Mapping[str, str] | None = None,
        initializer: Callable[..., Any] | None = None,
        initargs: Sequence[Any] = (),
        *,
        concurrency: int = 0,
        task_timeout: float | None = None,
        start_gate: StartGate | None = None,
        memory_limit: int | None = None,
        forward_logs: bool = False,
    ) -> None:
        self.index = index
        self.worker = worker
        self.argument_type = argument_type
        self.env = dict(env) if env else {}
        self.initializer = initializer
        self.initargs = tuple(initargs)
        self.concurrency = concurrency
        self.task_timeout = task_timeout
        #: under ``max_per_second``: what every start of every worker of the pool waits for
        #: (``_engine.rate_limit.StartGate``), so that starts, not only hand-overs, are evenly spaced
        self.start_gate = start_gate
        self.memory_limit = memory_limit
        self.forward_logs = forward_logs

    def __getstate__(self) -> tuple[Any, ...]:
        return tuple(getattr(self, s) for s in self.__slots__)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        for name, value in zip(self.__slots__, state):
            setattr(self, name, value)


def make_caller(fn: Callable[..., Any], argument_type: str) -> Callable[[Any], Any]:
    """Adapt ``fn`` to take one item, so the hot loop has no branch on the argument type."""
    if argument_type == ArgumentPassing.AS_SINGLE_ARG:
        return fn
    if argument_type == ArgumentPassing.AS_ARGS:
        return lambda item: fn(*item)
    if argument_type == ArgumentPassing.AS_KWARGS:
        return lambda item: fn(**item)
    raise ValueError(f"unknown argument_type {argument_type!r}")


# os.environ is one per process: threads that build their objects under different environments
# take turns, and each sees its own values while its object is being built.
_ENV_LOCK = threading.RLock()


@contextmanager
def temporary_env(env: Mapping[str, str]):  # type: ignore[no-untyped-def]
    """Set environment variables for the duration of the block, then restore the old values."""
    if not env:
        yield
        return
    with _ENV_LOCK:
        saved = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            yield
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v


def build_worker_object(spec: WorkerSpec, *, own_process: bool) -> Any:
    """Run the initializer and build the worker's object (the function itself for a plain worker).

    In a process of its own the environment is set for good (``CUDA_VISIBLE_DEVICES`` must stay
    set for the life of the worker); in a thread or in the caller it is set only while the object
    is built, because the environment is shared with everything else in the process.
    """
    if own_process:
        os.environ.update(spec.env)
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)
        return materialize(spec.worker)
    with temporary_env(spec.env):
        if spec.initializer is not None:
            spec.initializer(*spec.initargs)
        return materialize(spec.worker)


def build_worker_callable(spec: WorkerSpec, *, own_process: bool) -> Callable[[Any], Any]:
    """Run the initializer and build the worker's object; return the per-item callable (which waits
    for its turn first under ``max_per_second``)."""
    call = make_caller(build_worker_object(spec, own_process=own_process), spec.argument_type)
    return call if spec.start_gate is None else spec.start_gate.gated(call)


def run_batch(
    call: Callable[[Any], Any], items: list[Any], progress: Any = None
) -> tuple[list[Any], list[tuple[int, Exception]]]:
    """Run ``call`` on each item; return the results and the ``(position, exception)`` failures.

    A failed item holds ``None`` in the results. Only ``Exception`` is caught: ``SystemExit`` and
    ``KeyboardInterrupt`` raised by a task end the worker, and the backend reports its death.
    ``progress`` (the integers shared with the parent, or None) receives the position of each item
    as it starts, so that if the worker dies the parent knows which item was running; at the end of
    the batch, before its results are sent, the progress its tasks reported stops counting
    (``_worker.progress``).
    """
    results: list[Any] = []
    append = results.append
    failures: list[tuple[int, Exception]] = []
    if progress is None:
        for item in items:
            try:
                append(call(item))
            except Exception as exc:
                failures.append((len(results), exc))
                append(None)
    else:
        for pos, item in enumerate(items):
            progress[1] = pos
            try:
                append(call(item))
            except Exception as exc:
                failures.append((pos, exc))
                append(None)
        progress[2] = -1  # once per batch: its last item's progress is over (see _worker.progress)
    if results and (type(results[0]) is CoroutineType or type(results[-1]) is CoroutineType):
        _fail_coroutine_results(results, failures)
    return results, failures


def run_batch_limited(
    call: Callable[[Any], Any], items: list[Any], progress: Any, limit: OwnLimit
) -> tuple[list[Any], list[tuple[int, Exception]], int | None]:
    """:func:`run_batch` for a worker with a memory limit: it stops after the item that took the
    worker's own memory over ``limit`` and returns, besides the results of the items it ran (fewer
    than ``items`` then), the memory measured (None: not over). Items of a few microseconds are
    looked at once, after the batch (see ``_memory.limit``)."""
    clock = time.perf_counter
    started = clock()
    if not limit.per_item_checks(len(items)):
        whole, failed = run_batch(call, items, progress)
        limit.measured(len(items), clock() - started)
        return whole, failed, limit.over()
    results: list[Any] = []
    append = results.append
    failures: list[tuple[int, Exception]] = []
    over = None
    for pos, item in enumerate(items):
        if progress is not None:
            progress[1] = pos
        try:
            append(call(item))
        except Exception as exc:
            failures.append((pos, exc))
            append(None)
        if clock() >= limit.next_at:
            over = limit.over()
            if over is not None:
                break
    limit.measured(len(results), clock() - started)
    if progress is not None:
        progress[2] = -1  # the batch is over (see _worker.progress)
    if over is None and len(results) == len(items):
        over = limit.over()
    if results and (type(results[0]) is CoroutineType or type(results[-1]) is CoroutineType):
        _fail_coroutine_results(results, failures)
    return results, failures, over


def _fail_coroutine_results(results: list[Any], failures: list[tuple[int, Exception]]) -> None:
    """A plain worker returned coroutines (a wrapper around an ``async def`` function, say): they
    would never run, so each such item fails with what to change instead."""
    for pos, value in enumerate(results):
        if type(value) is CoroutineType:
            value.close()  # never awaited, and never will be: no warning about it
            results[pos] = None
            failures.append((pos, TypeError(
                f"the worker returned a coroutine ({value.__qualname__}) instead of a result: it was "
                "given as a plain function, so nothing awaits it. Give the pool the async def function "
                "itself (or a @delayed_init object whose __call__ is async def): coroutine workers run "
                "up to `concurrency` items at once. Layers that wrap the function in a plain one "
                "(mapreduce.parallelize, journaled unordered runs) need a plain function"
            )))
    failures.sort(key=lambda f: f[0])


def pack_exception(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """An exception and its traceback text, both safe to pickle back to the caller (a worker
    process or actor sends them; ``where`` names the item or worker in the replacement error)."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    from .._backends.serialize import dumps, loads
    from .._errors import TaskPicklingError

    try:
        # Classes whose constructor needs other arguments than ``args`` pickle but do not unpickle
        # in the caller, which must never happen: a round trip here finds them.
        loads(dumps(exc))
    except Exception as cause:
        exc = TaskPicklingError(
            f"{where} raised {type(exc).__name__}: {exc}; the exception could not be pickled "
            f"back to the caller ({type(cause).__name__}: {cause}). Its traceback follows."
        )
    return exc, tb_text


def fail_unpicklable(
    indices: Sequence[int],
    results: list[Any],
    packed: list[tuple[int, BaseException, str]],
    pickle_one: Callable[[Any], Any],
) -> None:
    """Fail, in place, the items whose result ``pickle_one`` cannot pickle (the result becomes None
    and a ``TaskPicklingError`` joins ``packed``, kept in position order), so that one such result
    fails its item alone instead of the whole batch."""
    from .._errors import TaskPicklingError

    failed = {pos for pos, _, _ in packed}
    for pos, value in enumerate(results):
        if pos in failed:
            continue
        try:
            pickle_one(value)
        except Exception as cause:
            results[pos] = None
            packed.append((pos, TaskPicklingError(
                f"the result of item #{indices[pos]} ({type(value).__name__}) could not be pickled to "
                f"send it back to the caller: {type(cause).__name__}: {cause}"
            ), ""))
    packed.sort(key=lambda f: f[0])
