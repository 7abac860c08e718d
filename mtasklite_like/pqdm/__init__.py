"""Two things at one path, as the two libraries this package replaces name them.

- This module is ``mtasklite.pqdm`` (the module mtasklite's ``processes`` and ``threads`` build on):
  ``_pqdm``, its lazy ``pqdm`` with ``use_threads`` as an argument, ``CustomContextManager``, the
  type of what it returns, and ``NO_EXPLICIT_POOL_KWARGS``.
- Its submodules ``mtasklite_like.pqdm.processes`` and ``mtasklite_like.pqdm.threads`` are
  ``pqdm.processes`` and ``pqdm.threads``: their ``pqdm`` runs every item at the call and returns a
  ``list``, as pqdm's does.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from .._dropins.pqdm import PqdmResult, run_pqdm
from .._options import ArgumentType, ExceptionMode
from .._pool import Pool
from ..constants import ArgumentPassing, ExceptionBehaviour
from ..utils import divide_kwargs

__all__ = [
    "NO_EXPLICIT_POOL_KWARGS",
    "ArgumentPassing",
    "CustomContextManager",
    "ExceptionBehaviour",
    "Pool",
    "divide_kwargs",
    "tqdm_auto",
    "tqdm_type",
]

R = TypeVar("R")

NO_EXPLICIT_POOL_KWARGS = ["bounded", "exception_behaviour", "worker_or_worker_arr", "n_jobs", "use_threads"]
"""Arguments ``_pqdm`` passes to ``Pool`` from its own: naming one of them again in ``**kwargs``
is a ``TypeError``."""

CustomContextManager = PqdmResult
"""What ``_pqdm`` (and ``processes.pqdm``, ``threads.pqdm``) return, as mtasklite's
``CustomContextManager``: iterable, a context manager, with ``.tqdm_obj`` and ``.pool_obj``
(see [`PqdmResult`][mtasklite_like.processes.PqdmResult]). The wrappers build it, not callers."""


def _pqdm(
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None = None,
    argument_type: ArgumentType | Literal["direct"] | None = "single_arg",
    bounded: bool = True,
    exception_behaviour: ExceptionMode = "ignore",
    use_threads: bool = False,
    tqdm_class: type[tqdm_type[Any]] = tqdm_auto,
    **kwargs: Any,
) -> PqdmResult[R]:
    """Run ``worker_or_worker_arr`` over ``input_iterable`` on threads or processes, lazily.

    What mtasklite's ``processes.pqdm`` and ``threads.pqdm`` call, with its signature and
    defaults, and a progress bar. Nothing runs at the call: it returns a
    [`PqdmResult`][mtasklite_like.processes.PqdmResult]; iterate it to stream results (constant
    memory for a generator), or use it as the list of results. For pqdm's ``pqdm``, which runs
    every item at the call and returns a ``list``, import it from ``mtasklite_like.pqdm.processes``.

    ``argument_type`` is ``'single_arg'`` (also ``None`` or ``'direct'``), ``'args'`` or
    ``'kwargs'``; ``exception_behaviour`` is ``'ignore'`` (the exception takes the failed item's
    place), ``'immediate'`` or ``'deferred'`` (``exception_behavior`` is accepted too).
    ``use_threads`` picks threads (``True``) or processes (``False``, the default).
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
