"""The workers' side of unordered journaled runs: each item travels with its input position.

With ``is_unordered=True`` results come back in completion order and must be matched to their
items (and so to their keys) before they are journaled. The pool's workers are wrapped so that
they take ``(position, item)`` and return ``(position, result)``; a failure carries its position
as an attribute of the exception.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from .._errors import WorkerDiedError
from .._worker.delayed import delayed_init, materialize
from .._worker.run import make_caller

if TYPE_CHECKING:
    from .._pool import Pool

__all__ = ["failure_position", "keyed_pool"]

_POS_ATTR = "_mtasklite_like_journal_position"


@delayed_init
class _KeyedCall:
    """Runs a user's worker on ``(position, item)`` and returns ``(position, result)``.

    Built inside each worker (a ``@delayed_init`` class), so a ``@delayed_init`` worker is built
    there too.
    """

    def __init__(self, worker: Any, argument_type: str) -> None:
        self._call = make_caller(materialize(worker), argument_type)

    def __call__(self, pair: tuple[int, Any]) -> tuple[int, Any]:
        pos, item = pair
        try:
            return pos, self._call(item)
        except Exception as exc:
            try:
                setattr(exc, _POS_ATTR, pos)
            except Exception:
                pass
            raise


def failure_position(error: BaseException) -> int | None:
    """The input position of a failed item of an unordered run, when the error says it."""
    pos = getattr(error, _POS_ATTR, None)
    if pos is not None:
        try:
            delattr(error, _POS_ATTR)
        except AttributeError:
            pass
        return int(pos)
    if isinstance(error, WorkerDiedError) and len(error.items) == 1:
        pair = error.items[0]
        if isinstance(pair, tuple) and len(pair) == 2:
            error.items = [pair[1]]
            return int(pair[0])
    return None


def keyed_pool(pool: Pool[Any]) -> Pool[Any]:
    """A pool like ``pool`` whose workers take ``(position, item)`` and return ``(position, result)``:
    the pool's whole configuration, with only the workers and what follows from them changed."""
    from .._pool import Pool

    config = pool.config
    wrapped: dict[int, Any] = {}  # one wrapper per distinct worker object
    for w in config.workers:
        if id(w) not in wrapped:
            wrapped[id(w)] = _KeyedCall(w, config.argument_type)
    return Pool.from_config(
        dataclasses.replace(
            config,
            workers=tuple(wrapped[id(w)] for w in config.workers),
            argument_type="single_arg",
            is_unordered=True,
            journal=None,  # the journal is this layer's: the pool underneath only computes
        )
    )
