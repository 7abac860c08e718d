"""The workers' side of unordered journaled runs: each item travels with its input position.

With ``is_unordered=True`` results come back in completion order and must be matched to their
items (and so to their keys) before they are journaled. The pool's workers are wrapped so that
they take ``(position, item)`` and return ``(position, result)``; a failure carries its position
as an attribute of the exception.
"""

from __future__ import annotations

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
    """A pool like ``pool`` whose workers take ``(position, item)`` and return ``(position, result)``."""
    from .._pool import Pool

    specs = pool.worker_specs
    workers: Any
    if all(s.worker is specs[0].worker for s in specs):
        workers = _KeyedCall(specs[0].worker, specs[0].argument_type)
        n_jobs: int | None = len(specs)
    else:
        workers = [_KeyedCall(s.worker, s.argument_type) for s in specs]
        n_jobs = None
    return Pool(
        workers,
        n_jobs,
        argument_type="single_arg",
        exception_behavior=pool.exception_behavior,
        bounded=pool.bounded,
        chunk_size=pool.chunk_size,
        chunk_prefill_ratio=pool.chunk_prefill_ratio,
        is_unordered=True,
        use_threads=pool.use_threads,
        task_timeout=pool.task_timeout,
        join_timeout=pool.join_timeout,
        start_method=pool.start_method,
        worker_env=[s.env for s in specs],
        initializer=specs[0].initializer,
        initargs=specs[0].initargs,
        max_tasks_per_worker=pool.max_tasks_per_worker,
        on_worker_death=pool.on_worker_death,
        retries=pool.retries,
        init_timeout=pool.init_timeout,
    )
