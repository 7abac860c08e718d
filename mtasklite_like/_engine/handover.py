"""Handing released results to a ``for`` loop: a chunk at a time, read result by result in C.

A result iterator's ``__next__`` is a Python call per result (about 85 ns on the machines the
benchmarks ran on), more than everything else the caller does for a trivial item. A ``for`` loop
(or ``list()``) over a result iterator reads ``itertools.chain.from_iterable(chunks(...))``
instead: the generator below runs once per chunk, and the chain hands the chunk's results over
in C (about 12 ns each). The chunk being read stays visible as the reader's ``unread`` iterator,
so nothing is lost or reordered when a loop stops early and ``next()``, ``take_ready()``, ``len()``
or another loop take over.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from operator import length_hint
from typing import Any, Protocol

from .async_results import check_not_in_running_loop

__all__ = ["Reader", "chunks", "take_all"]


class Reader(Protocol):
    """What :func:`chunks` reads for: it holds the chunk a ``for`` loop is reading."""

    #: results taken out of the ready queue in one piece and not read yet (None: none)
    unread: Iterator[Any] | None


def chunks(
    owner: object, reader: Reader, ready: deque[Any], next_slow: Callable[[], Any], guard: str | None = None
) -> Iterator[Iterable[Any]]:
    """What a ``for`` loop over a result iterator reads, a chunk at a time, for
    ``itertools.chain.from_iterable`` to hand over result by result in C: everything ``ready``
    (moved into ``reader.unread``), else the one result ``next_slow()`` waits for.

    ``reader.unread`` is where the chunk being read stays visible: the run counts it as not
    consumed yet, and ``next()``, ``take_ready()`` and the next loop read on from it. ``guard``:
    why waiting is refused inside a running event loop (None: it is allowed). ``owner``, the
    result iterator, is referred to for as long as the loop reads (this generator's frame holds it):
    the run stops when the iterator is dropped, which must not happen while a loop reads it.
    """
    while True:
        unread = reader.unread
        if unread is not None:
            if length_hint(unread):
                yield unread
                continue  # read to its end by now (by the loop, next() or take_ready())
            reader.unread = None
        if ready:
            reader.unread = iter(list(ready))  # a copy of pointers, in C
            ready.clear()
            continue
        if guard is not None:
            check_not_in_running_loop(guard)
        try:
            value = next_slow()
        except StopIteration:
            return
        yield (value,)


def take_all(reader: Reader, ready: deque[Any]) -> list[Any]:
    """Everything released and not read yet, without waiting: what a loop left (``reader.unread``)
    first, then ``ready`` (``take_ready()`` of the result iterators)."""
    unread = reader.unread
    if unread is not None:
        reader.unread = None
        out = [*unread, *ready]
    else:
        out = list(ready)
    ready.clear()
    return out
