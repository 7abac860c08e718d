"""One journaled pass over an input: opening the journal, running the pool with its sink, delivering.

:class:`JournalRun` is everything a :class:`~mtasklite_like.JournaledIterator` does; the iterator
is a thin shell over its ``out`` queue. It opens (or creates) the journal, picks the kind of key,
and starts an ordinary run of the pool whose release stage feeds the journal
(:class:`~.sink.JournalSink`): every batch is journaled before the caller sees it, and the engine
applies the exception mode, orders results and names failed items as in any run. With nothing to
skip, the engine reads the caller's input itself and its results pass straight through. When the
journal holds finished items, the input goes through the resume filter (:mod:`.feed`), and the
stored results are put back in their place (ordered) or as the input is read past them
(unordered); a stored failure kept by ``journal_keep_failures`` then counts as a failure of this
run under its exception mode.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from itertools import chain, islice, repeat
from typing import TYPE_CHECKING, Any

from .._errors import DeferredExceptions
from ..constants import ExceptionBehaviour
from .feed import DirectFeed, ResumeFeed
from .file import Journal
from .format import NO_RESULT, JournalError, JournalState
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
from .sink import JournalSink

if TYPE_CHECKING:
    from .._engine.stats import RunStats
    from .._pool import Pool

__all__ = ["JournalRun", "Kept"]

#: for ``map(isinstance, values, _EXC)``: a C-speed check for exceptions among delivered values
_EXC = repeat(BaseException)


class Kept:
    """A stored failure that ``journal_keep_failures`` keeps failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class JournalRun:
    """Everything a journaled iterator does: results for the caller are put into ``out``."""

    def __init__(self, pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions) -> None:
        self.pool = pool
        self.options = options
        self.out: deque[Any] = deque()
        #: results a ``for`` loop took out of ``out`` in one piece and has not read yet (see
        #: ``_engine.results.chunks``)
        self.unread: Iterator[Any] | None = None
        self.started = False
        self.finished = False
        self.heartbeat: Callable[[], None] | None = None
        self.error: BaseException | None = None
        self.mode = pool.exception_behavior
        self._kept_failures = 0  # stored failures handed over (journal_keep_failures)

        try:
            self.total: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
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
        self.journal_state = state if journal is not None else None
        try:
            lookup: dict[Any, Any] = state.done
            if options.keep_failures and state.failed:
                lookup = dict(state.done)
                for k, e in state.failed.items():
                    lookup.setdefault(k, Kept(e))
            if not options.results and state.done:
                self.total = None  # finished items are skipped, so the count is not known
            source: Iterator[Any] = chain(head, it) if head else it
            ordered = not pool.is_unordered
            self._fill: Callable[[], bool]
            self._resume: ResumeFeed | None = None
            if not lookup:
                feed = DirectFeed(
                    iterable, source, self.total, self.key_kind, self._key_fn,
                    options.save_callback is not None, ordered,
                )
                where = feed.where
                pool_input = feed.input
                self._fill = self._fill_through
            else:
                resume = self._resume = ResumeFeed(source, lookup, self._key_at, ordered)
                where = resume.where  # type: ignore[assignment]
                pool_input = resume.input
                self._fill = self._fill_ordered if ordered else self._fill_unordered
            #: under 'deferred' with stored results: every exception handed over, in order (the
            #: engine's DeferredExceptions knows only the computed ones)
            self._delivered: list[BaseException] | None = (
                [] if lookup and self.mode == ExceptionBehaviour.DEFERRED else None
            )
            self.sink = JournalSink(options, journal, where, self.mode)
            journal = None  # the sink closes it from here on
            self._inner = pool._start(pool_input, self.sink)
        except BaseException:
            if journal is not None:
                journal.close()
            elif hasattr(self, "sink"):
                self.sink.close_journal()
            raise

    @property
    def failure_count(self) -> int:
        """Failed items handed to the caller so far."""
        return int(self._inner.failure_count) + self._kept_failures

    # -- driving ----------------------------------------------------------------------------------

    def stats(self) -> RunStats:
        """The inner run's statistics (see ``ResultIterator.stats``)."""
        return self._inner.stats()

    @property
    def status(self) -> str | None:
        """What holds the inner run back now (see ``ResultIterator.status``), or None."""
        return self._inner.status

    @property
    def partial(self) -> float:
        """The fractions of the inner run's items in flight (see ``ResultIterator.partial``)."""
        return float(self._inner.partial)

    def set_heartbeat(self, fn: Callable[[], None] | None) -> None:
        self.heartbeat = fn
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

    def _inner_next(self) -> list[Any] | None:
        """The next results the engine has ready (at least one, waiting if need be); None at the end."""
        chunk: list[Any] = self._inner.take_ready()
        if chunk:
            return chunk
        try:
            first = next(self._inner)
        except StopIteration:
            return None
        chunk = self._inner.take_ready()
        chunk.insert(0, first)  # a move of pointers, not another copy of the list
        return chunk

    def _end(self) -> None:
        self.sink.flush_callbacks()
        self.finished = True
        self.sink.close_journal()

    def _stop(self, exc: BaseException | None) -> None:
        """The run stops early: an error, ``close()``, Ctrl-C. Save what finished, close the file."""
        if self.finished:
            return
        self.finished = True
        try:
            self._inner.close()
        finally:
            try:
                if not self.sink.callback_failed:
                    self.sink.flush_callbacks()
            finally:
                self.sink.close_journal()

    def close(self) -> None:
        self._stop(None)

    def abandon(self) -> None:
        """Garbage collection: stop the workers and close the file without calling user code."""
        self.finished = True
        try:
            self._inner.close()
        finally:
            self.sink.close_journal()

    # -- nothing to skip: the engine's results as they are ----------------------------------------------

    def _fill_through(self) -> bool:
        try:
            chunk = self._inner_next()
        except DeferredExceptions as exc:
            self.error = exc  # raised after the callbacks are flushed and the journal is closed
            return False
        if chunk is None:
            return False
        self.out.extend(chunk)
        return True

    # -- resuming: stored results put back -------------------------------------------------------------

    def _key_at(self, pos: int, item: Any) -> Any:
        """The journal key of the input item at ``pos``."""
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

    def _deliver(self, values: list[Any]) -> None:
        """Hand ``values`` to the caller; under 'deferred', note their exceptions in this order."""
        delivered = self._delivered
        if delivered is not None and any(map(isinstance, values, _EXC)):
            delivered.extend(v for v in values if isinstance(v, BaseException))
        self.out.extend(values)

    def _emit_stored(self, stored: Any, out: list[Any]) -> bool:
        """Put a stored result into ``out``; False when it is a kept failure that stops the run."""
        if stored is NO_RESULT:
            return True  # journal_results=False: finished items are not yielded again
        if isinstance(stored, Kept):
            error = stored.error
            self._kept_failures += 1
            if self.mode == ExceptionBehaviour.IMMEDIATE:
                self.error = error
                return False
            out.append(error)
            return True
        out.append(stored)
        return True

    def _next_computed(self) -> tuple[list[Any] | None, BaseException | None, bool]:
        """``(chunk, error, deferred_end)`` from the engine: results, or the error that ends the
        run (a failure under 'immediate', the input's own error), or the end of a deferred run."""
        try:
            return self._inner_next(), None, False
        except DeferredExceptions:
            return None, None, True
        except Exception as exc:
            return None, exc, False

    def _end_of_resume(self, deferred_end: bool) -> None:
        if deferred_end and self._delivered:
            self.error = DeferredExceptions(*self._delivered)

    def _fill_ordered(self) -> bool:
        assert self._resume is not None
        marks = self._resume.marks
        out: list[Any] = []
        if marks and marks[0] is not None:
            while marks and marks[0] is not None:
                if not self._emit_stored(marks.popleft()[0], out):  # type: ignore[index]
                    self._deliver(out)
                    self._stop(None)
                    return True
            self._deliver(out)
            return True
        chunk, error, deferred_end = self._next_computed()
        if chunk is None:
            # What is left is stored (the input was read to its end), or comes before the error.
            while marks:
                mark = marks.popleft()
                if mark is None:
                    if error is not None:
                        break  # the failed item's place: the error comes here
                    raise JournalError("internal error: the engine ended without a result for an item")
                if not self._emit_stored(mark[0], out):
                    error = None  # a kept failure before it stops the run first
                    break
            self._deliver(out)
            if error is not None:
                self.error = error
            if error is not None or self.error is not None:
                self._stop(None)
                return True
            self._end_of_resume(deferred_end)
            return False
        for value in chunk:
            while marks[0] is not None:
                if not self._emit_stored(marks.popleft()[0], out):  # type: ignore[index]
                    self._deliver(out)
                    self._stop(None)
                    return True
            marks.popleft()
            out.append(value)
        self._deliver(out)
        return True

    def _fill_unordered(self) -> bool:
        assert self._resume is not None
        stored = self._resume.stored
        out: list[Any] = []
        if stored:
            while stored:
                if not self._emit_stored(stored.popleft(), out):
                    self._deliver(out)
                    self._stop(None)
                    return True
            self._deliver(out)
            return True
        chunk, error, deferred_end = self._next_computed()
        if error is not None:
            self.error = error
            self._stop(None)
            return True
        if chunk is None:
            if stored:
                return True  # the input was read past more finished items after the last result
            self._end_of_resume(deferred_end)
            return False
        self._deliver(chunk)
        return True
