"""How many items travel in one message: the batch size policy.

Sending a message costs tens of microseconds, so tiny tasks must travel in large batches; but a
batch runs on one worker from start to end, so slow tasks must travel alone, or a whole batch
waits behind one item and other workers idle. The sizer measures the compute time per item that
workers report and picks the size that makes one batch take about ``target_seconds``, growing
geometrically from 1 (so the first, unmeasured batches stay small) and never above the user's
``chunk_size``. With a known input length it also keeps several batches per worker for the tail,
so the last items do not all land on one worker.
"""

from __future__ import annotations

import math

__all__ = ["BatchSizer"]


class BatchSizer:
    """Adaptive batch size from the measured time per item.

    ``observe(n, seconds)`` feeds the worker-side compute time of a finished batch; ``size()``
    returns the size of the next batch to send.
    """

    #: a batch should keep a worker busy about this long: long enough to amortise the cost of a
    #: message, short enough to keep ordering latency and load imbalance small
    TARGET_SECONDS = 0.01
    #: while the input, not the workers, limits the run, a batch holds about this much work: the
    #: workers would wait for the input anyway, so smaller batches cost no throughput, and each
    #: result comes back sooner (a burst of items spreads over the workers item by item)
    INPUT_BOUND_SECONDS = 0.001
    #: upper bound without a user chunk_size (memory held per batch stays modest)
    DEFAULT_MAX = 4096
    #: growth per observation, so a mis-measured first batch cannot jump straight to the maximum
    GROWTH = 4

    def __init__(
        self,
        n_workers: int,
        *,
        max_size: int | None = None,
        total: int | None = None,
        adaptive: bool = True,
    ) -> None:
        self.n_workers = n_workers
        self.max_size = max(1, max_size) if max_size is not None else self.DEFAULT_MAX
        self.total = total
        self.adaptive = adaptive
        self._size = 1 if adaptive else self.max_size
        self._per_item: float | None = None  # smoothed seconds per item
        self._variance = 0.0  # smoothed variance of the seconds per item
        self._samples = 0

    def observe(self, n_items: int, seconds: float) -> None:
        """Record that a batch of ``n_items`` took ``seconds`` of worker time."""
        if not self.adaptive or n_items <= 0:
            return
        sample = max(seconds, 0.0) / n_items
        self._samples += 1
        # An exponential moving average follows drifts in task cost without chasing noise.
        if self._per_item is None:
            self._per_item = sample
        else:
            deviation = sample - self._per_item
            self._per_item += 0.3 * deviation
            self._variance = 0.7 * (self._variance + 0.3 * deviation * deviation)
        ideal = self.max_size if self._per_item <= 0 else int(self.TARGET_SECONDS / self._per_item)
        self._size = max(1, min(ideal, self._size * self.GROWTH, self.max_size))

    @property
    def uniform(self) -> bool:
        """True once tasks have shown similar durations (spread under half the mean, 8+ samples).

        Only then may a slow task have another queued behind it: the wait is then about one task,
        as it would be anyway, while with mixed durations it could be a long one.
        """
        mean = self._per_item
        return self._samples >= 8 and mean is not None and mean > 0 and self._variance < (0.5 * mean) ** 2

    def overdue(self, running_seconds: float) -> bool:
        """True when a single task has run clearly longer than tasks usually take.

        "Clearly" is mean + 3 sigma, and at least 1.5 x the mean, since perfectly regular tasks
        (sigma near 0) still jitter a little.
        """
        mean = self._per_item or 0.0
        return running_seconds > mean + max(3 * math.sqrt(self._variance), 0.5 * mean)

    def size(self, remaining: int | None = None, *, input_bound: bool = False) -> int:
        """Size of the next batch; ``remaining`` is the number of input items left, when known;
        ``input_bound``: the run waited for its input a moment ago (see ``INPUT_BOUND_SECONDS``)."""
        size = self._size
        if input_bound and self.adaptive and self._per_item:
            size = min(size, max(1, int(self.INPUT_BOUND_SECONDS / self._per_item)))
        if remaining is not None and self.adaptive:
            # Keep at least ~4 batches per worker for what is left, for an even finish.
            size = min(size, max(1, remaining // (4 * self.n_workers)))
        return size
