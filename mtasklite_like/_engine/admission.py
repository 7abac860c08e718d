"""Admission: which worker gets the next batch, how big it is, and how far the input may be read.

Three limits decide it:

- *credit*: how many batches one worker may hold. Two (one running, one waiting) saves the round
  trip to the caller between batches, which matters for tiny and for uniform tasks; but the
  waiting one waits behind whatever runs. So when tasks are slow enough to travel one by one, a
  worker holds a second item only while durations are uniform and its current task is not
  overdue; with mixed durations each worker holds one and nothing waits behind a slow task.
  ``chunk_prefill_ratio`` fixes the credit instead.
- *batch size*: from the measured time per item (:class:`~.batching.BatchSizer`), the user's
  ``chunk_size``, the worker's remaining ``max_tasks_per_worker`` quota, and the window's room.
- *window*: with ``bounded=True``, items pulled and not yet consumed stay under
  ``workers x credit x batch size``, times a slack in ordered mode (x8 for single slow items, x2
  for batches) so workers keep going while an earlier slow item holds back the release.

Coroutine workers (``concurrency``) run many items at once and take new batches while earlier
ones run, so their credit counts items, not batches: ``concurrency`` running plus an eighth of
that (at least a batch) waiting, whatever size the batches have grown to. Under
``max_per_second`` every item travels alone and a worker holds no more than it
runs at once (1 for a plain function, ``concurrency`` for coroutines): an item handed over starts
at once, so pacing the hand-over (``rate_limit``, in ``dispatch``) paces the starts.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._backends.base import Capabilities
from .._options import RunOptions
from .batching import BatchSizer

__all__ = ["Admission"]

_ORDERED_SLACK = 8
_ORDERED_SLACK_BATCHED = 2


class Admission:
    """Per-run admission policy; it holds no items, only the numbers that decide."""

    def __init__(
        self, options: RunOptions, capabilities: Capabilities, n_workers: int, total: int | None
    ) -> None:
        self._bounded = options.bounded
        self._ordered = options.ordered
        self._batches = capabilities.batches
        self._n = n_workers
        self._concurrency = options.concurrency
        self._paced = options.max_per_second is not None
        self.max_per_second = options.max_per_second
        #: the credit counts items a worker holds, not batches (coroutine workers)
        self.counts_items = bool(self._concurrency) and capabilities.batches
        self.fixed_credit: int | None
        if not capabilities.batches:
            self.fixed_credit = 1
            self.sizer = BatchSizer(1, max_size=1, adaptive=False)
        elif options.task_timeout is not None or self._paced:
            # A deadline is per item and runs from when a worker starts the item: so each worker
            # holds exactly one item, and the caller knows when it started. Paced starts too:
            # an item handed over must start at once.
            self.fixed_credit = 1
            self.sizer = BatchSizer(n_workers, max_size=1, adaptive=False)
        else:
            self.fixed_credit = options.chunk_prefill_ratio
            self.sizer = BatchSizer(n_workers, max_size=options.chunk_size, total=total)

    def credit(self) -> int:
        """How many batches one worker may hold now."""
        if self.counts_items:
            return self._coroutine_credit()
        if self.fixed_credit is not None:
            return self.fixed_credit
        sizer = self.sizer
        return 2 if sizer.size() > 1 or sizer.uniform else 1

    def _coroutine_credit(self) -> int:
        """Items a coroutine worker may hold."""
        n = self._concurrency
        if self._paced:
            return n  # each item alone, and never more than the worker runs at once
        return n + max(n // 8, self.sizer.size())

    def window(self, credit: int, cap: int | None = None) -> int | None:
        """Items that may be pulled and not yet consumed, or None when unbounded. ``cap``: the
        most items a batch may hold for its bytes (see ``budget``), which shrinks the window
        with the batches."""
        if not self._bounded:
            return None
        size = self._size(cap)
        window = self._n * credit * (1 if self.counts_items else size)
        if not self._ordered or not self._batches:
            return window
        return window * (_ORDERED_SLACK if size <= 1 else _ORDERED_SLACK_BATCHED)

    def read_limit(
        self, credit: int, window: int | None, pulled: int, consumed: int, cap: int | None = None
    ) -> int:
        """How many items a reader in the background may have read in all: what the workers could
        take at once beyond what was handed out, never past the window."""
        limit = pulled + self._n * credit * (1 if self.counts_items else self._size(cap))
        return limit if window is None else min(limit, consumed + window)

    def _size(self, cap: int | None) -> int:
        size = self.sizer.size()
        return size if cap is None else min(size, cap)

    def guards_overdue(self, credit: int) -> bool:
        """Whether to keep a second single item away from a worker whose task is overdue."""
        return credit > 1 and self.sizer.size() <= 1 and self.fixed_credit is None and not self._concurrency

    def pick_worker(
        self,
        loads: Sequence[int],
        credit: int,
        quota: Sequence[int] | None,
        busy_for: dict[int, float] | None,
    ) -> int:
        """The least loaded worker with room for another batch, or -1.

        ``quota`` is the items each worker may still take (None: unlimited); ``busy_for`` how long
        each busy worker has been on its current task, when overdue workers must be skipped.
        """
        worker, best = -1, credit
        for w, load in enumerate(loads):
            if load < best and (quota is None or quota[w] > 0):
                if load and busy_for is not None and self.sizer.overdue(busy_for.get(w, 0.0)):
                    continue
                worker, best = w, load
        return worker

    def batch_size(
        self, remaining: int | None, quota_left: int | None, room: int | None, credit_left: int | None = None,
        *, input_bound: bool = False,
    ) -> int:
        """Items for the next batch: ``remaining`` input (if known), the worker's quota, the window's
        room, and what is left of the worker's credit when it counts items; smaller while the run
        is ``input_bound`` (``BatchSizer.INPUT_BOUND_SECONDS``)."""
        size = self.sizer.size(remaining, input_bound=input_bound)
        if credit_left is not None:
            size = min(size, credit_left)
        if quota_left is not None:
            size = min(size, quota_left)
        if room is not None:
            size = min(size, room)
        return size

    def observe(self, n_items: int, seconds: float) -> None:
        """A batch of ``n_items`` took ``seconds`` of worker time."""
        self.sizer.observe(n_items, seconds)
