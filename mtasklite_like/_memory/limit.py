"""A worker's own memory limit (``max_worker_memory``), measured by the worker itself.

The worker compares its memory with the limit after its items: after every batch, and inside a
batch of slow items after each item once a millisecond has passed since the last look (items of a
few microseconds are only looked at per batch: reading ``/proc`` costs a few microseconds, and a
task that fast cannot grow much). Once over, the worker finishes the item that crossed the limit,
sends its result, and retires (``Retire``); what it had not started yet runs on other workers.

What is measured is the memory that is the worker's own (USS): what the machine gets back when the
worker is replaced. Its resident size (cheap to read) counts pages shared with other processes
too, such as the pages a forked worker still shares with the pool's process; so the resident size
is read first, and only when it is over the limit is the own memory read to confirm it. The
difference found then (the shared part) is remembered, so a worker whose resident size is mostly
shared pages does not read its page tables at every look.
"""

from __future__ import annotations

import time

from .source import MemorySource, current

__all__ = ["OwnLimit"]

#: seconds between two looks at memory inside a batch of slow items
CHECK_SECONDS = 0.001
#: items whose measured mean time is below this are looked at only once per batch
PER_ITEM_FROM = 20e-6


class OwnLimit:
    """Whether this process's own memory is over ``limit`` bytes."""

    __slots__ = ("_source", "limit", "next_at", "per_item", "shared")

    def __init__(self, limit: int, source: MemorySource | None = None) -> None:
        self.limit = limit
        self._source = source
        #: the part of the resident size last found shared with other processes
        self.shared = 0
        #: mean seconds per item of the last batch (None before the first)
        self.per_item: float | None = None
        #: when the next look inside a batch is due (``time.perf_counter``)
        self.next_at = 0.0

    @property
    def source(self) -> MemorySource:
        return self._source if self._source is not None else current()

    def over(self) -> int | None:
        """The process's own memory when it is over the limit, else None (also when unknown)."""
        self.next_at = time.perf_counter() + CHECK_SECONDS
        source = self.source
        rss = source.rss()
        if rss is None or rss - self.shared <= self.limit:
            return None
        own = source.own()
        if own is None:
            return rss  # own memory cannot be told apart here: the resident size is all there is
        self.shared = max(0, rss - own)
        return own if own > self.limit else None

    def per_item_checks(self, n_items: int) -> bool:
        """Look inside a batch of ``n_items``, not only after it (the items have proved slow)."""
        return n_items > 1 and self.per_item is not None and self.per_item >= PER_ITEM_FROM

    def measured(self, n_items: int, seconds: float) -> None:
        """A batch of ``n_items`` took ``seconds``."""
        if n_items:
            self.per_item = seconds / n_items

    def peak(self) -> int | None:
        """The largest resident size this process has had."""
        return self.source.peak()
