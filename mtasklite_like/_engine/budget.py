"""The memory budget: a bound, in bytes, on what a run holds besides the user's own data.

Counting items bounds memory only when items are small. A run therefore also counts bytes: the
items read ahead and not yet sent, the batches in flight (in the pipes and in the workers'
inboxes), and the results waiting in the caller (ready, or held back by the ordered release).
Admission sends nothing more, and the input is read no further, while that total is at the
budget; a single item larger than the whole budget still goes through, alone.

Sizes come from where they are cheapest. Process workers serialise every message anyway, so
their backend reports the exact size of each batch and each batch of results. Threads serialise
nothing: their sizes are estimated from a few items of each batch (buffer sizes for bytes-like
objects and arrays, ``sys.getsizeof`` otherwise), so tiny items cost one estimate per batch, not
per item. Per-item averages (smoothed) turn bytes into item counts for the window and the batch
size, so a batch also stops growing at about :data:`BATCH_BYTES`.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

__all__ = ["BATCH_BYTES", "DEFAULT_BUDGET", "ByteBudget", "estimate_size"]

#: default budget of a pool: room for two batches of about BATCH_BYTES per worker and the read-ahead
#: that keeps them fed. Measured on 8 MiB NumPy arrays through 2 workers: 64 MiB ran no faster than
#: 32 MiB and held twice the memory (malloc keeps freed blocks of large arrays for reuse, so the
#: caller's peak is well above what is in flight).
DEFAULT_BUDGET = 32 << 20
#: a batch stops growing at about this many bytes, so one message costs about the same to move
BATCH_BYTES = 1 << 20
#: items of a batch whose size is estimated (first, last and a few in between)
_SAMPLES = 4


def estimate_size(obj: Any, depth: int = 0) -> int:
    """A cheap estimate of the bytes ``obj`` occupies, dominated by the buffers it holds."""
    kind = type(obj)
    if kind is bytes or kind is bytearray or kind is str:
        return len(obj) + 40
    if kind is memoryview:
        return int(obj.nbytes) + 200
    nbytes = getattr(obj, "nbytes", None)  # NumPy arrays, and other array types that say so
    if isinstance(nbytes, int):
        return nbytes + 100
    if depth < 2 and (kind is tuple or kind is list) and obj:
        return 56 + len(obj) * _sampled(obj, depth + 1)
    if depth < 2 and kind is dict and obj:
        return 232 + len(obj) * _sampled(list(obj.values())[:_SAMPLES], depth + 1)
    try:
        size = sys.getsizeof(obj)
    except TypeError:
        size = 64
    if depth < 2:
        fields = getattr(obj, "__dict__", None)  # a plain object: what its attributes hold
        if type(fields) is dict and fields:
            values = list(fields.values())
            size += len(values) * _sampled(values, depth + 1)
    return size


def _sampled(items: Sequence[Any], depth: int = 0) -> int:
    """Mean estimated size of a few items spread over ``items`` (first, last, between)."""
    n = len(items)
    if n == 0:
        return 0
    if n <= _SAMPLES:
        picks: Sequence[int] = range(n)
    else:
        step = (n - 1) / (_SAMPLES - 1)
        picks = [round(i * step) for i in range(_SAMPLES)]
    return sum(estimate_size(items[i], depth) for i in picks) // len(picks)


class _Average:
    """A smoothed mean of bytes per item; None until the first observation."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value: float | None = None

    def observe(self, n_items: int, nbytes: int) -> None:
        if n_items <= 0:
            return
        sample = nbytes / n_items
        # Grow at once (memory must not overshoot), shrink gradually.
        if self.value is None or sample > self.value:
            self.value = sample
        else:
            self.value += 0.25 * (sample - self.value)


class ByteBudget:
    """Bytes held by one run, against a limit (None: not bounded in bytes)."""

    def __init__(self, limit: int | None) -> None:
        self.limit = limit
        self.item = _Average()  # bytes per input item, as sent
        self.result = _Average()  # bytes per result, as received

    def measure_items(self, items: Sequence[Any], nbytes: int) -> int:
        """Record a batch sent; ``nbytes`` is its serialised size, or 0 when nothing was
        serialised (then it is estimated). Returns the bytes the batch counts for."""
        if nbytes <= 0:
            nbytes = _sampled(items) * len(items)
        self.item.observe(len(items), nbytes)
        return nbytes

    def measure_results(self, results: Sequence[Any], nbytes: int) -> None:
        """Record a batch of results; ``nbytes`` as for :meth:`measure_items`."""
        if self.limit is None:
            return
        if nbytes <= 0:
            nbytes = _sampled(results) * len(results)
        self.result.observe(len(results), nbytes)

    def held(self, in_flight_bytes: int, unsent_items: int, held_results: int) -> float:
        """Bytes held now: batches in flight, items read and not sent, results not yet consumed."""
        return (
            in_flight_bytes
            + unsent_items * (self.item.value or 0.0)
            + held_results * (self.result.value or 0.0)
        )

    def items_that_fit(self, held: float) -> int | None:
        """How many more input items may be read (None: no bound in bytes, or sizes not known
        yet); at least 1 when nothing is held, so an item bigger than the budget still goes."""
        per_item = self.item.value
        if self.limit is None or not per_item:
            return None
        room = int((self.limit - held) // per_item)
        return max(room, 0 if held > 0 else 1)

    def batch_cap(self) -> int | None:
        """The most items in one batch, so that a batch and its results stay near
        :data:`BATCH_BYTES` (None: no bound in bytes, or sizes not known yet)."""
        per_item = self.item.value
        if self.limit is None or not per_item:
            return None
        # A batch's results travel as one message too: count what comes back per item as well.
        return max(1, int(min(BATCH_BYTES, self.limit) // (per_item + (self.result.value or 0.0))))

    def batch_items(self, size: int, held: float, buffered: int) -> int:
        """The next batch's size, down from ``size``: near :data:`BATCH_BYTES`, and within the
        budget. Items already read ahead (``buffered``) are held already: sending them moves
        bytes, it adds none, so they always fit; only reading more must fit in what is left."""
        cap = self.batch_cap()
        if cap is None:
            return size
        fit = self.items_that_fit(held) or 0
        return min(size, cap, buffered + fit)
