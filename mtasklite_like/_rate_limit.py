"""``max_per_second``: a smooth token bucket that paces when items start, across the whole pool.

The pool hands an item to a worker only when the worker can start it at once (one item per
message, and no more items per worker than it runs at a time: see ``_admission``), so pacing the
hand-over paces the starts. The bucket holds about one token: items start on a regular schedule
``t0, t0 + 1/rate, t0 + 2/rate, ...`` rather than in bursts.

The schedule, not the moment of the last start, decides the next one: a hand-over that happens a
little late (the caller was busy, a wait woke late) does not push every later start back, so the
long-run rate is the one asked for (a busy machine wakes a waiting thread several milliseconds
late now and then). Lateness of more than one interval is forgiven, not banked: an idle pool never
saves up tokens for a burst (after a pause, at most two items start together). In any window of
``w`` seconds at most ``rate * w + 2`` items start.
"""

from __future__ import annotations

__all__ = ["RateLimiter", "check_rate"]


def check_rate(value: object) -> float | None:
    """``max_per_second`` as a float > 0, or None; anything else is refused with what to pass."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
        raise ValueError(
            f"max_per_second must be a number of items per second > 0 (e.g. 10 or 0.5), or None for "
            f"no limit; not {value!r}"
        )
    return float(value)


class RateLimiter:
    """At most ``per_second`` starts per second, on a regular schedule (capacity: one token).

    The caller passes its own clock readings, so a simulated clock works as well as a real one.
    """

    __slots__ = ("_next", "interval")

    def __init__(self, per_second: float) -> None:
        if not per_second > 0:
            raise ValueError(f"per_second must be > 0, not {per_second!r}")
        self.interval = 1.0 / per_second
        self._next: float | None = None  # when the next item may start

    def try_acquire(self, now: float) -> bool:
        """Take a token if one is due at ``now``; False (nothing taken) when the next is later."""
        due = self._next
        if due is None:
            due = now
        elif now < due:
            return False
        # Keep to the schedule when a little late; forgive (never bank) a longer delay.
        self._next = max(due, now - self.interval) + self.interval
        return True

    def next_at(self, now: float) -> float:
        """When the next token is due (``now`` if one is due already)."""
        due = self._next
        return now if due is None or due <= now else due
