"""The input side of a run: reading items from the user's iterable, and remembering how it ended.

Two readers share one interface. :class:`Feeder` reads in the consumer's thread, as a plain ``for``
loop would; :class:`~.input_thread.InputThread` reads in a background thread, so that finished
results reach the consumer while the input waits. :func:`make_feeder` picks one: the thread for
inputs that can wait (no ``len()``: generators, iterators, files, sockets, queues), the caller for
collections already in memory (nothing to wait for, so no thread to pay for) and for inputs that
refuse other threads (``sqlite3`` cursors). ``Pool(input_thread=...)`` overrides the choice.

Either way items are pulled only as far as admission allows, so the input is never read ahead of
the window; when the input itself raises, what it gave before still runs and the error is raised
after those results.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from typing import Any

from .input_thread import InputThread

__all__ = ["Feeder", "InputThread", "input_length", "make_feeder", "reads_in_thread"]


def input_length(iterable: Any) -> int | None:
    """``len(iterable)`` when the input has one that fits an index, else None."""
    try:
        return len(iterable)
    except (TypeError, OverflowError):  # no len(); or, e.g., a range too long for an index
        return None


#: collections whose items are read from memory: taking them never waits or runs user code
_IN_MEMORY = (list, tuple, range, str, bytes, bytearray, dict, set, frozenset)


def _bound_to_its_thread(iterable: Any) -> bool:
    """Inputs known to refuse being read from another thread than the one that made them."""
    return type(iterable).__module__ == "sqlite3"


def reads_in_thread(iterable: Any, total: int | None, choice: bool | None) -> bool:
    """Whether to read ``iterable`` in a background thread (``choice`` None: decide by the input)."""
    if choice is not None:
        return choice
    return total is None and not _bound_to_its_thread(iterable)


def make_feeder(iterable: Iterable[Any], choice: bool | None) -> Feeder | InputThread:
    """The reader for ``iterable``; ``choice`` is the ``input_thread`` option."""
    total = input_length(iterable)
    iterator = iter(iterable)
    if reads_in_thread(iterable, total, choice):
        return InputThread(iterator, total)
    return Feeder(iterator, total, instant=type(iterable) in _IN_MEMORY)


class Feeder:
    """Pulls items from the input on demand, in the consumer's thread."""

    streams = False
    fatal: BaseException | None = None  # only the thread reader defers these

    def __init__(self, iterator: Iterator[Any], total: int | None, *, instant: bool = False) -> None:
        self.total = total
        #: taking items never waits (a list in memory), so an event loop's thread may take them;
        #: any other input may block (a lazy dataset, an async source bound to that very loop)
        self.instant = instant
        self._iter = iterator
        self.pulled = 0  # items taken from the input so far
        self.done = False
        self.error: BaseException | None = None  # what the input raised, if it did

    def start(self, first: int) -> None:
        """Nothing to start: items are read when taken."""

    def wake_with(self, wake: Callable[[], None]) -> None:
        """Nothing reads in the background, so nothing needs to wake the engine."""

    def remaining(self) -> int | None:
        """Items left in a sized input (None when unknown)."""
        return None if self.total is None else self.total - self.pulled

    def buffered(self) -> int:
        """Items read and not yet taken (none: this feeder reads only when asked)."""
        return 0

    def take(self, n: int) -> list[Any]:
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

    def allow(self, limit: int) -> None:
        """Reading happens in :meth:`take`, within the engine's own limits."""

    def close_gate(self) -> None:
        """Nothing reads between calls."""

    def poll_interval(self) -> float | None:
        return None

    def stop(self) -> None:
        """Read nothing more."""
        self.done = True
