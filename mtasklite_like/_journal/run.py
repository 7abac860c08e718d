"""One journaled pass over an input: opening the journal, driving the pool, the fast path.

:class:`JournalRun` is everything a :class:`~mtasklite_like.JournaledIterator` does; the iterator
is a thin shell over its ``out`` queue. It opens (or creates) the journal, picks the kind of key,
and chooses how to run: with nothing to skip and results in input order, the pool reads the input
itself and each batch of results is journaled in bulk (:meth:`JournalRun._fill_fast`); when
finished items must be skipped, or results come as they finish, a feed in :mod:`.resume`
sits between the input and the pool.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from typing import TYPE_CHECKING, Any

from .._errors import DeferredExceptions
from ..constants import ExceptionBehaviour
from .file import Journal
from .format import NO_RESULT, JournalState
from .options import (
    FINGERPRINT_KEYS,
    ITEM_KEY_TYPES,
    KEY_CUSTOM,
    KEY_ITEM,
    KEY_POSITION,
    JournalOptions,
    check_hashable,
    check_item_keys,
    fingerprint,
    pool_identity,
)
from .resume import OrderedResume, UnorderedResume
from .settle import REPEAT_EXC, Settler

if TYPE_CHECKING:
    from .._engine.results import ResultIterator
    from .._pool import Pool

    #: ``plain(pool, items)``: an ordinary run of ``pool`` over ``items``
    #: ``plain(pool, items, keep_raw=False)``: an ordinary run (``keep_raw``: see ``RunOptions``)
    PlainRun = Callable[..., ResultIterator[Any]]

__all__ = ["JournalRun", "Kept"]


class Kept:
    """A stored failure that ``journal_keep_failures`` keeps failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


def _recording(source: Iterator[Any], into: deque[Any]) -> Iterator[Any]:
    """Yield the items of ``source``, appending each to ``into`` first."""
    append = into.append
    for item in source:
        append(item)
        yield item


class _Sized:
    """An iterator with a known length, so the engine sizes its batches as for a sized input."""

    def __init__(self, iterator: Iterator[Any], length: int) -> None:
        self._iterator = iterator
        self._length = length

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __len__(self) -> int:
        return self._length


class JournalRun:
    """Everything a journaled iterator does: results for the caller are put into ``out``."""

    def __init__(
        self, pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions, plain: PlainRun
    ) -> None:
        self.pool = pool
        self.options = options
        self.out: deque[Any] = deque()
        self.started = False
        self.finished = False
        self.heartbeat: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self.mode = pool.exception_behavior
        self._deferred: list[BaseException] = []
        self._inner: Any = None
        self._pos = 0  # input position of the next result (fast path)
        self._raw = False  # the fast path journals the workers' pickled results

        try:
            self.total: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
        sequence = isinstance(iterable, (list, tuple, range))
        it = iter(iterable)
        head = list(islice(it, FINGERPRINT_KEYS))
        if options.key is not None:
            self.key_kind = KEY_CUSTOM
            head_keys = [options.key(x) for x in head]
        elif head and isinstance(head[0], ITEM_KEY_TYPES):
            self.key_kind = KEY_ITEM
            head_keys = head
        else:
            self.key_kind = KEY_POSITION
            head_keys = head  # positions say nothing: fingerprint the items themselves
        self._key_fn = options.key

        state = JournalState()
        journal: Journal | None = None
        if options.run_dir is not None:
            info = {
                "format": "mtasklite_like journal",
                "function": options.identity or pool_identity(pool),
                "keys": self.key_kind,
                "input": fingerprint(head_keys) if head else None,
                "results": options.results,
            }
            # An empty input has no key to take a kind from (the 'position' above is a default),
            # and nothing to key: it fits a journal of any kind, such as one whose items are all
            # finished and were filtered out by the caller (mp_lock passes only unfinished names).
            keyed = bool(head) or options.key is not None
            compare = ["function", "keys", "results"] if keyed else ["function", "results"]
            if options.check_input and head and self.key_kind == KEY_POSITION:
                compare.append("input")  # positions name items only for the same input, in the same order
            journal = Journal(options.run_dir, info, options, compare=compare)
            state = journal.state
        self.settler = Settler(options, self.mode, journal)
        self.journal_state = state if journal is not None else None
        try:
            lookup: dict[Any, Any] = state.done
            if options.keep_failures and state.failed:
                lookup = dict(state.done)
                for k, e in state.failed.items():
                    lookup.setdefault(k, Kept(e))
            self.lookup = lookup
            if not options.results and state.done:
                self.total = None  # finished items are skipped, so the count is not known
            self._need_items = options.save_callback is not None
            source: Iterator[Any] = chain(head, it) if head else it

            self._fill: Callable[[], bool]
            if not pool.is_unordered and not lookup:
                # Nothing to skip: the pool reads the input itself, keys are taken in bulk.
                self._fill = self._fill_fast
                self._seq: Sequence[Any] | None = iterable if sequence else None  # type: ignore[assignment]
                self._items: deque[Any] | None = None
                pool_input: Any
                if self._seq is not None:
                    pool_input = iterable
                elif self.key_kind == KEY_POSITION and not self._need_items:
                    pool_input = source if self.total is None else _Sized(source, self.total)
                else:
                    # The pool may read its input in a thread of its own: items are handed over
                    # through a deque (thread-safe), not a tee (which is not).
                    self._items = deque()
                    recorded = _recording(source, self._items)
                    pool_input = recorded if self.total is None else _Sized(recorded, self.total)
                # Results the workers pickled are journaled as they are, without pickling them again.
                self._raw = journal is not None and options.results and options.save_callback is None
                self._inner = plain(pool, pool_input, keep_raw=True) if self._raw else plain(pool, pool_input)
            elif not pool.is_unordered:
                ordered = OrderedResume(self)
                self._fill = ordered.fill
                self._inner = plain(pool, ordered.feed(source))
            else:
                unordered = UnorderedResume(self)
                self._fill = unordered.fill
                self._inner = plain(unordered.pool(), unordered.feed(source))
        except BaseException:
            self.settler.close_journal()
            raise

    @property
    def failure_count(self) -> int:
        """Failed items handed to the caller so far."""
        return self.settler.failure_count

    # -- driving ----------------------------------------------------------------------------------

    def set_heartbeat(self, fn: Callable[[], None] | None) -> None:
        self.heartbeat = fn
        if self._inner is not None:
            self._inner.heartbeat = fn

    def next_slow(self) -> Any:
        out = self.out
        while True:
            if out:
                return out.popleft()
            if self.error is not None:
                error, self.error = self.error, None
                raise error
            if self.finished:
                raise StopIteration
            self.started = True
            try:
                if not self._fill():
                    self._end()
            except BaseException as exc:
                self._stop(exc)
                raise

    def inner_next(self) -> list[Any] | None:
        """The next results the engine has ready (at least one, waiting if need be); None at the end."""
        chunk: list[Any] = self._inner.take_ready()
        if chunk:
            return chunk
        try:
            first = next(self._inner)
        except StopIteration:
            return None
        except DeferredExceptions:
            if self.mode != ExceptionBehaviour.DEFERRED:
                raise
            return None  # the end of a deferred run: raised again by _end, with stored failures
        chunk = self._inner.take_ready()
        chunk.insert(0, first)  # a move of pointers, not another copy of the list
        return chunk

    def _end(self) -> None:
        self.settler.flush_callbacks()
        self.finished = True
        self.settler.close_journal()
        if self._deferred:
            self.error = DeferredExceptions(*self._deferred)
            self._deferred = []

    def _stop(self, exc: BaseException | None) -> None:
        """The run stops early: an error, ``close()``, Ctrl-C. Save what finished, close the file."""
        if self.finished:
            return
        self.finished = True
        try:
            if self._inner is not None:
                self._inner.close()
        finally:
            try:
                if not self.settler.callback_failed:
                    self.settler.flush_callbacks()
            finally:
                self.settler.close_journal()

    def close(self) -> None:
        self._stop(None)

    def abandon(self) -> None:
        """Garbage collection: stop the workers and close the file without calling user code."""
        self.finished = True
        try:
            if self._inner is not None:
                self._inner.close()
        finally:
            self.settler.close_journal()

    # -- what the fills share -------------------------------------------------------------------------

    def settle(
        self,
        keys: Sequence[Any],
        results: list[Any],
        items: Sequence[Any] | None,
        out: Any,
        raw: list[tuple[int, int, bytes]] | None = None,
        start: int = 0,
    ) -> bool:
        """Journal a batch and put what the caller gets into ``out``; False when an ``'immediate'``
        run stops there (``out`` ends before the failure, which is raised after it). ``raw`` and
        ``start``: see ``Settler.settle``."""
        stop = self.settler.settle(keys, results, items, out, raw, start)
        if stop is None:
            return True
        self.error = stop
        self._stop(None)
        return False

    def deliver(self, values: list[Any]) -> None:
        """Hand ``values`` to the caller; under 'deferred', note their exceptions in this order."""
        if self.mode == ExceptionBehaviour.DEFERRED and any(map(isinstance, values, REPEAT_EXC)):
            self._deferred.extend(v for v in values if isinstance(v, BaseException))
        self.out.extend(values)

    def emit_stored(self, stored: Any, out: list[Any]) -> bool:
        """Put a stored result into ``out``; False when it is a kept failure that stops the run."""
        if stored is NO_RESULT:
            return True  # journal_results=False: finished items are not yielded again
        if isinstance(stored, Kept):
            error = stored.error
            self.settler.failure_count += 1
            if self.mode == ExceptionBehaviour.IMMEDIATE:
                self.error = error
                self._stop(None)
                return False
            out.append(error)
            return True
        out.append(stored)
        return True

    def key_at(self, pos: int, item: Any) -> Any:
        """The key of the input item at ``pos``."""
        kind = self.key_kind
        if kind == KEY_ITEM:
            if not isinstance(item, ITEM_KEY_TYPES):
                check_item_keys([item], pos)
            return item
        if kind == KEY_POSITION:
            return pos
        assert self._key_fn is not None
        key = self._key_fn(item)
        check_hashable([key])
        return key

    # -- ordered, nothing to skip ---------------------------------------------------------------------

    def _fill_fast(self) -> bool:
        chunk = self.inner_next()
        if chunk is None:
            return False
        n = len(chunk)
        start = self._pos
        self._pos = start + n
        items: Sequence[Any] | None = None
        if self._seq is not None:
            if self.key_kind != KEY_POSITION or self._need_items:
                part = self._seq[start : start + n]
                # a slice of a range is a range: it pickles in a few bytes
                items = part if isinstance(part, (list, range)) else list(part)
        elif self._items is not None:
            # Every item of a result was read, and recorded, before the result could exist.
            popleft = self._items.popleft
            items = [popleft() for _ in range(n)]
        keys: Sequence[Any]
        if self.key_kind == KEY_POSITION:
            keys = range(start, start + n)  # positions are never materialised
        elif self.key_kind == KEY_ITEM:
            assert items is not None
            # Sampled here (every item is checked when a run resumes).
            if not (isinstance(items[0], ITEM_KEY_TYPES) and isinstance(items[-1], ITEM_KEY_TYPES)):
                check_item_keys(items, start)
            keys = items
        else:
            assert items is not None and self._key_fn is not None
            keys = [self._key_fn(x) for x in items]
            check_hashable(keys)
        raw = self._inner.take_raw() if self._raw else None
        if self.mode == ExceptionBehaviour.DEFERRED:
            settled: list[Any] = []
            self.settle(keys, chunk, items, settled, raw, start)
            self.deliver(settled)
        else:
            self.settle(keys, chunk, items, self.out, raw, start)
        return True
