"""pqdm's ``pqdm`` on process workers: ``from mtasklite_like.pqdm.processes import pqdm``.

A drop-in for ``pqdm.processes.pqdm``: every item has run when the call returns, and the results
come back as a ``list`` in input order. For a lazy result that streams (mtasklite's ``pqdm``),
import it from ``mtasklite_like.processes``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from .._dropins.pqdm import run_pqdm_list
from .._options import ArgumentType, ExceptionMode

__all__ = ["pqdm"]

R = TypeVar("R")


def pqdm(
    array: Iterable[Any],
    function: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None,
    argument_type: ArgumentType | Literal["direct"] | None = None,
    bounded: bool = False,
    exception_behaviour: ExceptionMode = "ignore",
    tqdm_class: type[tqdm_type[Any]] = tqdm_auto,
    **kwargs: Any,
) -> list[R]:
    """Run ``function`` over ``array`` on processes; return the list of results. With a progress bar.

    pqdm's ``pqdm``, with its signature and defaults: when it returns, every item has run, and the
    results are a plain ``list`` in input order; the workers are stopped and the bar closed.
    ``argument_type`` is ``None`` (``function(item)``; also ``'single_arg'`` or ``'direct'``),
    ``'args'`` (``function(*item)``) or ``'kwargs'`` (``function(**item)``). ``exception_behaviour``
    is ``'ignore'`` (the exception takes the failed item's place), ``'immediate'`` or
    ``'deferred'`` (``exception_behavior`` is accepted too). Under ``'immediate'`` the first
    failure in input order is raised from this call as soon as every item before it has its
    result, without waiting for the items after it. Under ``'deferred'`` every item runs, then
    [`DeferredExceptions`][mtasklite_like.DeferredExceptions] is raised: an ``Exception`` whose
    ``.args`` are the exceptions, as pqdm's ``Exception(*excs)``. ``bounded=True`` reads the input
    at most a bounded window ahead of the results. ``n_jobs=None`` means the executor's default.
    A keyword argument naming a ``Pool`` option (``chunk_size``, ``is_unordered``, ``task_timeout``,
    ``retries``, ``start_method``, ...) or an executor option (``initializer``, ``initargs``,
    ``mp_context``, ``max_tasks_per_child``) goes to the pool; the others go to ``tqdm_class``
    (``desc``, ``disable``, ``file``, ``position``, ``leave``, ``unit``, ``total``, ...); an unknown
    name fails at once, listing the valid ones.

    For mtasklite's lazy ``pqdm``, whose result streams, import it from ``mtasklite_like.processes``.
    """
    return run_pqdm_list(
        array, function, n_jobs, argument_type, bounded, exception_behaviour, tqdm_class, kwargs,
        use_threads=False,
    )
