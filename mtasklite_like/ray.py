"""``pqdm`` on Ray actors: ``from mtasklite_like.ray import pqdm``.

The same call as ``mtasklite_like.processes.pqdm``, with each worker a Ray actor, on this machine
or a cluster. ``address=`` picks the cluster and ``backend_options=`` the actor options of the
workers (``{"num_gpus": 1}``, or a list with one dict per worker); see docs/distributed.md. Ray is
an optional extra: ``pip install "mtasklite-like[ray]"``. Importing this module does not import Ray.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from ._dropins.pqdm import PqdmResult, run_pqdm
from ._options import ArgumentType, ExceptionMode

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
    **kwargs: Any,
) -> PqdmResult[R]:
    """Run ``worker_or_worker_arr`` over ``input_iterable`` on Ray actors, lazily, with a bar.

    mtasklite's ``pqdm`` (as ``mtasklite_like.processes.pqdm``), with each worker a Ray actor.
    Nothing runs at the call: it returns a [`PqdmResult`][mtasklite_like.processes.PqdmResult];
    iterate it to stream results (constant memory for a generator), or use it as the list of
    results. Ray options pass through ``**kwargs`` too: ``address`` (the cluster) and
    ``backend_options`` (actor options: ``num_cpus``, ``num_gpus``, ``resources``, ..., one dict
    or one per worker).

    ``argument_type`` is ``'single_arg'`` (also ``None`` or ``'direct'``), ``'args'`` or
    ``'kwargs'``; ``exception_behaviour`` is ``'ignore'`` (the exception takes the failed item's
    place), ``'immediate'`` or ``'deferred'`` (``exception_behavior`` is accepted too).
    A keyword argument naming a ``Pool`` option (``chunk_size``, ``is_unordered``, ``task_timeout``,
    ``retries``, ``start_method``, ...) or an executor option (``initializer``, ``initargs``,
    ``mp_context``, ``max_tasks_per_child``) goes to the pool; the others go to ``tqdm_class``
    (``desc``, ``disable``, ``file``, ``position``, ``leave``, ``unit``, ``total``, ...); an unknown
    name fails at once, listing the valid ones.
    """
    return run_pqdm(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads=False, backend="ray",
    )
