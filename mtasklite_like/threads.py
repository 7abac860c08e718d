"""mtasklite's lazy ``pqdm`` on thread workers: ``from mtasklite_like.threads import pqdm``.

A drop-in for ``mtasklite.threads.pqdm``: the result is lazy, and nothing runs until it is used.
For pqdm's ``pqdm``, which runs every item at the call and returns a ``list``, import it from
``mtasklite_like.pqdm.threads``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from ._dropins.pqdm import PqdmResult, run_pqdm
from ._options import ArgumentType, ExceptionMode
from .pqdm import _pqdm as _pqdm  # mtasklite's module imports it too

__all__ = ["PqdmResult", "pqdm"]

R = TypeVar("R")


def pqdm(
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None = None,
    argument_type: ArgumentType | Literal["direct"] | None = "single_arg",
    bounded: bool = True,
    exception_behaviour: ExceptionMode = "ignore",
    tqdm_class: type[tqdm_type[Any]] = tqdm_auto,
    *,
    use_threads: bool = True,
    **kwargs: Any,
) -> PqdmResult[R]:
    """Run ``worker_or_worker_arr`` over ``input_iterable`` on threads, lazily, with a progress bar.

    mtasklite's ``pqdm``, with its signature and defaults. Nothing runs at the call: it returns a
    [`PqdmResult`][mtasklite_like.processes.PqdmResult]; iterate it to stream results (constant
    memory for a generator), or use it as the list of results. For pqdm's ``pqdm``, which runs
    every item at the call and returns a ``list``, import it from ``mtasklite_like.pqdm.threads``.

    ``argument_type`` is ``'single_arg'`` (also ``None`` or ``'direct'``), ``'args'`` or
    ``'kwargs'``; ``exception_behaviour`` is ``'ignore'`` (the exception takes the failed item's
    place), ``'immediate'`` or ``'deferred'`` (``exception_behavior`` is accepted too).
    ``use_threads=False`` runs it on processes instead, as in mtasklite.
    A keyword argument naming a ``Pool`` option (``chunk_size``, ``is_unordered``, ``task_timeout``,
    ``retries``, ``start_method``, ...) or an executor option (``initializer``, ``initargs``,
    ``mp_context``, ``max_tasks_per_child``) goes to the pool; the others go to ``tqdm_class``
    (``desc``, ``disable``, ``file``, ``position``, ``leave``, ``unit``, ``total``, ...); an unknown
    name fails at once, listing the valid ones.
    """
    return run_pqdm(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads=use_threads,
    )
