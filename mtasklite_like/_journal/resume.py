"""Feeds that resume a journaled run: finished items are skipped, their stored results put back.

:class:`OrderedResume` keeps results in input order: each input item leaves a mark (stored or
computed) as the pool reads it, and the computed results are laid out between the stored ones.
:class:`UnorderedResume` yields results as they finish: stored ones as soon as the input is read
past them, computed ones matched to their items by position (:mod:`.keyed`).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from .._errors import name_item
from .format import JournalError
from .keyed import failure_position, keyed_pool

if TYPE_CHECKING:
    from .._pool import Pool
    from .run import JournalRun

__all__ = ["OrderedResume", "UnorderedResume"]

_MISSING = object()
_STORED = 0
_COMPUTED = 1


class OrderedResume:
    """Results in input order, stored ones in their place."""

    def __init__(self, run: JournalRun) -> None:
        self._run = run
        self._marks: deque[tuple[Any, ...]] = deque()

    def feed(self, source: Iterator[Any]) -> Iterator[Any]:
        """The pool's input: unfinished items only. Each input item leaves a mark, in input order."""
        marks = self._marks
        lookup = self._run.lookup
        key_at = self._run.key_at
        missing = _MISSING
        for pos, item in enumerate(source):
            key = key_at(pos, item)
            stored = lookup.get(key, missing)
            if stored is not missing:
                marks.append((_STORED, stored))
                continue
            marks.append((_COMPUTED, key, item, pos))
            yield item

    def fill(self) -> bool:
        run = self._run
        marks = self._marks
        out: list[Any] = []
        if marks and marks[0][0] == _STORED:
            while marks and marks[0][0] == _STORED:
                if not run.emit_stored(marks.popleft()[1], out):
                    break
            run.deliver(out)
            return True
        chunk = run.inner_next()
        if chunk is None:
            while marks:
                mark = marks.popleft()
                if mark[0] == _COMPUTED:  # pragma: no cover - the engine lost an item
                    raise JournalError(f"internal error: no result for input item {mark[2]!r}")
                if not run.emit_stored(mark[1], out):
                    break
            run.deliver(out)
            return False
        # Lay out the chunk between the stored results that come before each computed one.
        layout: list[Any] = []  # stored values (wrapped) and None for "the next computed result"
        keys: list[Any] = []
        items: list[Any] = []
        got = 0
        while got < len(chunk):
            mark = marks.popleft()
            if mark[0] == _STORED:
                layout.append((mark[1],))
            else:
                layout.append(None)
                keys.append(mark[1])
                items.append(mark[2])
                result = chunk[got]
                if isinstance(result, BaseException):
                    name_item(result, mark[3])  # the engine saw only unfinished items
                got += 1
        settled: list[Any] = []
        cut = not run.settle(keys, chunk, items, settled)
        computed = iter(settled)
        taken = 0
        for entry in layout:
            if entry is None:
                if cut and taken >= len(settled):
                    break
                out.append(next(computed))
                taken += 1
            elif not run.emit_stored(entry[0], out):
                break
        run.deliver(out)
        return True


class UnorderedResume:
    """Results as they finish; stored ones as soon as the input is read past them."""

    def __init__(self, run: JournalRun) -> None:
        self._run = run
        self._stored_ready: deque[Any] = deque()
        #: input position -> (key, item, the engine's index of the item)
        self._inflight: dict[int, tuple[Any, Any, int]] = {}
        #: the engine's index of an unfinished item -> its input position (the engine sees only
        #: unfinished items, so its indices are not the caller's)
        self._positions: dict[int, int] = {}
        self._sent = 0

    def pool(self) -> Pool[Any]:
        """The pool to run: the run's pool, its workers wrapped to return positions."""
        return keyed_pool(self._run.pool)

    def feed(self, source: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        """The pool's input: ``(position, item)`` of the unfinished items."""
        lookup = self._run.lookup
        stored_ready = self._stored_ready
        inflight, positions = self._inflight, self._positions
        key_at = self._run.key_at
        missing = _MISSING
        for pos, item in enumerate(source):
            key = key_at(pos, item)
            stored = lookup.get(key, missing) if lookup else missing
            if stored is not missing:
                stored_ready.append(stored)
                continue
            index = self._sent
            self._sent += 1
            inflight[pos] = (key, item, index)
            positions[index] = pos
            yield pos, item

    def fill(self) -> bool:
        run = self._run
        out: list[Any] = []
        if self._stored_ready:
            stored_ready = self._stored_ready
            while stored_ready:
                if not run.emit_stored(stored_ready.popleft(), out):
                    break
            run.deliver(out)
            return True
        chunk = run.inner_next()
        if chunk is None:
            # The feed may have found stored items after the last computed one.
            return bool(self._stored_ready)
        inflight = self._inflight
        keys: list[Any] = []
        results: list[Any] = []
        items: list[Any] = []
        unattributed: list[tuple[int, BaseException]] = []  # (index in results, error)
        positions = self._positions
        for r in chunk:
            if isinstance(r, BaseException):
                pos = failure_position(r)
                if pos is None or pos not in inflight:
                    # A timeout names no item to the workers' wrapper: it is yielded, not
                    # journaled (so retried on resume), and named by its position in the input.
                    pos = positions.pop(getattr(r, "input_index", -1), None)
                    if pos is not None:
                        name_item(r, pos)
                        inflight.pop(pos, None)
                    unattributed.append((len(results), r))
                    continue
                key, item, index = inflight.pop(pos)
                positions.pop(index, None)
                name_item(r, pos)
            else:
                pos, r = r
                key, item, index = inflight.pop(pos)
                positions.pop(index, None)
            keys.append(key)
            results.append(r)
            items.append(item)
        settled: list[Any] = []
        run.settle(keys, results, items, settled)
        for index, error in reversed(unattributed):
            run.settler.failure_count += 1
            settled.insert(index, error)
        run.deliver(settled)
        return True
