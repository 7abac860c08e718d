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

__all__ = ["BatchSizer"]


class BatchSizer:
    """Adaptive batch size from the measured time per item.

    ``observe(n, seconds)`` feeds the worker-side compute time of a finished batch; ``size()``
    returns the size of the next batch to send.
    """

    #: a batch should keep a worker busy about this long: long enough to amortise the cost of a
    #: message, short enough to keep ordering latency and load imbalance small
    TARGET_SECONDS = 0.01
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

    @property
    def per_item_seconds(self) -> float | None:
        """Smoothed compute time per item, or None before the first observation."""
        return self._per_item

    def observe(self, n_items: int, seconds: float) -> None:
        """Record that a batch of ``n_items`` took ``seconds`` of worker time."""
        if not self.adaptive or n_items <= 0:
            return
        sample = max(seconds, 0.0) / n_items
        # An exponential moving average follows drifts in task cost without chasing noise.
        self._per_item = sample if self._per_item is None else 0.7 * self._per_item + 0.3 * sample
        ideal = self.max_size if self._per_item <= 0 else int(self.TARGET_SECONDS / self._per_item)
        self._size = max(1, min(ideal, self._size * self.GROWTH, self.max_size))

    def size(self, remaining: int | None = None) -> int:
        """Size of the next batch; ``remaining`` is the number of input items left, when known."""
        size = self._size
        if remaining is not None and self.adaptive:
            # Keep at least ~4 batches per worker for what is left, for an even finish.
            size = min(size, max(1, remaining // (4 * self.n_workers)))
        return size
