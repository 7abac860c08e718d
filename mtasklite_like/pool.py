"""``mtasklite.pool``'s public names at the same path: ``from mtasklite_like.pool import Pool``.

``Pool`` is the package's pool; ``WorkerPoolResultGenerator`` (what ``pool(items)`` returns in
mtasklite) is [`ResultIterator`][mtasklite_like.ResultIterator], for ``isinstance`` checks and
annotations; ``ShellObject``, the constants and the helpers are the ones mtasklite's module
imports.
mtasklite's queue machinery (``WorkerWrapper``, ``SortedOutputHelper``, ``TINY_QUEUE_TIMEOUT``)
has no counterpart: the pool does not run on those queues.
"""

from __future__ import annotations

from typing import Any

from ._engine.results import ResultIterator as WorkerPoolResultGenerator
from ._options import check_worker
from ._pool import Pool
from .constants import ArgumentPassing, ExceptionBehaviour
from .delayed_init import ShellObject
from .utils import is_exception, is_sized_iterator

__all__ = [
    "ArgumentPassing",
    "ExceptionBehaviour",
    "Pool",
    "ShellObject",
    "WorkerPoolResultGenerator",
    "is_exception",
    "is_sized_iterator",
    "is_valid_worker",
]


def is_valid_worker(worker: Any) -> bool:
    """True when ``Pool`` accepts ``worker`` as a worker (``Pool`` says why when it does not).

    mtasklite accepts functions, ``functools.partial`` objects and ``@delayed_init`` shells; so does
    this, and also any other callable (a lambda, a bound method, a builtin, a callable object).
    A class decorated with ``@delayed_init`` itself (not a shell of it), or a shell of a class
    without ``__call__``, is refused.
    """
    try:
        check_worker(worker, "the worker")
    except TypeError:
        return False
    return True
