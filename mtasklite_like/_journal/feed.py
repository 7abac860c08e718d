"""The input side of a journaled run: what the engine reads, and how its indices map back.

:class:`DirectFeed` is for a run with nothing to skip: the engine reads the caller's input itself
(a sequence as it is), its indices are the input positions, and keys are taken in bulk per batch
(positions are never materialised). :class:`ResumeFeed` is the resume filter: finished items are
skipped before the engine sees them, and their stored results are set aside, in input order
(``marks``, ordered runs) or as the input is read past them (``stored``, unordered runs), for the
run to put back among the computed ones.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .options import ITEM_KEY_TYPES, KEY_ITEM, KEY_POSITION, check_hashable, check_item_keys

__all__ = ["DirectFeed", "ResumeFeed", "Sized"]

_MISSING = object()


class Sized:
    """An iterator with a known length, so the engine sizes its batches as for a sized input."""

    def __init__(self, iterator: Iterator[Any], length: int) -> None:
        self._iterator = iterator
        self._length = length

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __len__(self) -> int:
        return self._length


class DirectFeed:
    """Nothing to skip: the engine's index of an item is its input position."""

    def __init__(
        self,
        iterable: Any,
        source: Iterator[Any],
        total: int | None,
        key_kind: str,
        key_fn: Callable[[Any], Any] | None,
        need_items: bool,
        ordered: bool,
    ) -> None:
        self._kind = key_kind
        self._key_fn = key_fn
        self._need_items = need_items or key_kind != KEY_POSITION
        self._seq: Sequence[Any] | None = None
        self._recorded_in_order: deque[Any] | None = None
        self._recorded: dict[int, Any] | None = None
        self.input: Any
        if isinstance(iterable, (list, tuple, range)):
            self._seq = iterable  # items are looked up by index: nothing recorded
            self.input = iterable
        elif not self._need_items:
            self.input = source if total is None else Sized(source, total)
        else:
            # The engine may read its input in a thread of its own: items are handed over through
            # a deque (ordered: batches are released in input order) or a dict (unordered).
            if ordered:
                self._recorded_in_order = deque()
                recorded = _recording(source, self._recorded_in_order)
            else:
                self._recorded = {}
                recorded = _recording_by_index(source, self._recorded)
            self.input = recorded if total is None else Sized(recorded, total)

    def where(self, indices: Sequence[int]) -> tuple[Sequence[Any], Sequence[Any] | None, None]:
        items: Sequence[Any] | None = None
        if self._need_items:
            if self._seq is not None:
                if isinstance(indices, range) and indices.step == 1:
                    part = self._seq[indices.start : indices.stop]
                    # a slice of a range is a range: it pickles in a few bytes
                    items = part if isinstance(part, (list, range)) else list(part)
                else:
                    items = [self._seq[i] for i in indices]
            elif self._recorded_in_order is not None:
                popleft = self._recorded_in_order.popleft
                items = [popleft() for _ in range(len(indices))]
            else:
                assert self._recorded is not None
                pop = self._recorded.pop
                items = [pop(i) for i in indices]
        keys: Sequence[Any]
        if self._kind == KEY_POSITION:
            keys = indices  # positions are never materialised
        elif self._kind == KEY_ITEM:
            assert items is not None
            # Sampled here (every item is checked when a run resumes).
            if items and not (isinstance(items[0], ITEM_KEY_TYPES) and isinstance(items[-1], ITEM_KEY_TYPES)):
                check_item_keys(items, indices[0])
            keys = items
        else:
            assert items is not None and self._key_fn is not None
            keys = [self._key_fn(x) for x in items]
            check_hashable(keys)
        return keys, items, None


class ResumeFeed:
    """The resume filter: the engine reads only unfinished items; stored results are set aside."""

    def __init__(
        self,
        source: Iterator[Any],
        lookup: dict[Any, Any],
        key_at: Callable[[int, Any], Any],
        ordered: bool,
    ) -> None:
        #: ordered runs: one entry per input item, in input order: ``(stored value,)`` for a
        #: finished item, None for one the engine computes
        self.marks: deque[tuple[Any] | None] = deque()
        #: unordered runs: stored values, as the input is read past their items
        self.stored: deque[Any] = deque()
        #: the engine's index of an unfinished item -> (its key, the item, its input position)
        self._sent: dict[int, tuple[Any, Any, int]] = {}
        self.input = self._feed(source, lookup, key_at, ordered)

    def _feed(
        self, source: Iterator[Any], lookup: dict[Any, Any], key_at: Callable[[int, Any], Any], ordered: bool
    ) -> Iterator[Any]:
        marks, stored_out, sent = self.marks, self.stored, self._sent
        missing = _MISSING
        index = 0
        for pos, item in enumerate(source):
            key = key_at(pos, item)
            stored = lookup.get(key, missing)
            if stored is not missing:
                if ordered:
                    marks.append((stored,))
                else:
                    stored_out.append(stored)
                continue
            if ordered:
                marks.append(None)
            sent[index] = (key, item, pos)
            index += 1
            yield item

    def where(self, indices: Sequence[int]) -> tuple[list[Any], list[Any], list[int]]:
        pop = self._sent.pop
        entries = [pop(i) for i in indices]
        return [e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]


def _recording(source: Iterator[Any], into: deque[Any]) -> Iterator[Any]:
    """Yield the items of ``source``, appending each to ``into`` first."""
    append = into.append
    for item in source:
        append(item)
        yield item


def _recording_by_index(source: Iterator[Any], into: dict[int, Any]) -> Iterator[Any]:
    """Yield the items of ``source``, recording each under its index first."""
    for i, item in enumerate(source):
        into[i] = item
        yield item

