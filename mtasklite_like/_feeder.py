"""The input side of a run: reading items from the user's iterable, and remembering how it ended.

Items are pulled in the consumer's thread, only as far as admission allows, so a generator is
never read ahead of the window. When the input itself raises, what it gave before still runs and
the error is raised after those results.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import islice
from typing import Any

__all__ = ["Feeder", "input_length"]


def input_length(iterable: Any) -> int | None:
    """``len(iterable)`` when the input has one that fits an index, else None."""
    try:
        return len(iterable)
    except (TypeError, OverflowError):  # no len(); or, e.g., a range too long for an index
        return None


class Feeder:
    """Pulls items from the input on demand."""

    def __init__(self, iterable: Iterable[Any]) -> None:
        self.total = input_length(iterable)
        self._iter: Iterator[Any] = iter(iterable)
        self.pulled = 0  # items taken from the input so far
        self.done = False
        self.error: BaseException | None = None  # what the input raised, if it did

    def remaining(self) -> int | None:
        """Items left in a sized input (None when unknown)."""
        return None if self.total is None else self.total - self.pulled

    def pull(self, n: int) -> list[Any]:
        """Up to ``n`` next items; fewer once the input is exhausted (then ``done`` is set)."""
        items: list[Any] = []
        try:
            items.extend(islice(self._iter, n))
        except Exception as exc:
            self.error = exc
            self.done = True
        else:
            if len(items) < n:
                self.done = True
        self.pulled += len(items)
        return items

    def stop(self) -> None:
        """Read nothing more."""
        self.done = True
