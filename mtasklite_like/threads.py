"""``pqdm`` on thread workers: ``from mtasklite_like.threads import pqdm``.

A drop-in for ``pqdm.threads.pqdm`` and ``mtasklite.threads.pqdm``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Literal, TypeVar

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from ._options import ArgumentType, ExceptionMode
from ._pqdm import DOC, PqdmResult, run_pqdm

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
    return run_pqdm(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads=True, caller=sys._getframe(1),
    )


pqdm.__doc__ = DOC.format(kind="threads")
