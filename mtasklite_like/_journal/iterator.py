"""``JournaledIterator``: what ``pool(iterable)`` returns when the pool has a journal.

A journaled run is a layer over :class:`~mtasklite_like.Pool`: the run engine knows nothing about
it. The iterator is a thin shell over :class:`.run.JournalRun`; see
docs/resumable_runs.md for the guarantees.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterable, Iterator
from itertools import chain
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .._engine.handover import chunks, take_all
from .format import JournalState
from .options import JournalOptions
from .run import JournalRun

if TYPE_CHECKING:
    from .._engine.stats import RunStats
    from .._pool import Pool

__all__ = ["JournaledIterator", "journaled_run"]


class JournaledIterator:
    """Lazy results of a journaled ``pool(iterable)``: stored results in their place, the rest
    computed by the pool and journaled before they are handed over.

    An iterator and a context manager like [`ResultIterator`][mtasklite_like.ResultIterator], with
    ``len()`` for sized input and ``parent_obj``. ``close()`` (or leaving ``with``) stops the
    workers, hands pending results to ``save_callback`` and closes the journal.
    """

    def __init__(self, pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions) -> None:
        self.parent_obj = pool
        core = JournalRun(pool, iterable, options)
        self._core = core
        self._ready = core.out
        self._finalizer = weakref.finalize(self, core.abandon)

    # -- what wrappers and progress displays read (as on ResultIterator) ------------------------

    @property
    def total(self) -> int | None:
        """The number of input items when known, else None."""
        return self._core.total

    @property
    def failure_count(self) -> int:
        """Failed items delivered so far."""
        return self._core.failure_count

    @property
    def started(self) -> bool:
        """True once the first ``next()`` has started the run."""
        return self._core.started

    @property
    def finished(self) -> bool:
        """True once the run has ended (every result yielded, an error, or ``close()``)."""
        return self._core.finished

    def take_ready(self) -> list[Any]:
        """Take every result already available, without waiting (possibly none)."""
        return take_all(self._core, self._ready)

    def stats(self) -> RunStats:
        """What the run has spent its time on so far (see ``ResultIterator.stats``): the items
        computed in this run (those resumed from the journal are not counted)."""
        return self._core.stats()

    @property
    def status(self) -> str | None:
        """What holds the run back now, for a progress bar (see ``ResultIterator.status``), or None."""
        return self._core.status

    @property
    def partial(self) -> float:
        """How much of the items in flight is done, as their tasks reported it (see
        ``ResultIterator.partial``); items resumed from the journal are counted as results."""
        return self._core.partial

    @property
    def heartbeat(self) -> Callable[[], None] | None:
        """Called at least every 0.2 s while the consumer waits for a result (e.g. a bar's refresh)."""
        return self._core.heartbeat

    @heartbeat.setter
    def heartbeat(self, fn: Callable[[], None] | None) -> None:
        self._core.set_heartbeat(fn)

    def __iter__(self) -> Iterator[Any]:
        """The results for a ``for`` loop, handed over in C a chunk at a time (as
        ``ResultIterator.__iter__``); ``next()`` and the next loop read on from what a loop left."""
        core = self._core
        return chain.from_iterable(chunks(self, core, self._ready, core.next_slow))

    def __next__(self) -> Any:
        unread = self._core.unread
        if unread is not None:
            for value in unread:  # what a for loop over this iterator left
                return value
            self._core.unread = None
        ready = self._ready
        if ready:
            return ready.popleft()
        return self._core.next_slow()

    def __len__(self) -> int:
        total = self._core.total
        if total is None:
            raise TypeError(
                "the input of this journaled iterator has no len() (or finished items are skipped)"
            )
        return total

    def __length_hint__(self) -> int:
        return self._core.total or 0

    @property
    def journal_state(self) -> JournalState | None:
        """What the journal held when the run started (None without a journal)."""
        return self._core.journal_state

    def close(self) -> None:
        """Stop now: workers stop, results waiting for ``save_callback`` are handed to it and
        journaled, the journal is fsynced and closed. Results not yet read are dropped."""
        self._core.close()

    def __enter__(self) -> JournaledIterator:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._core.close()
        if not self.parent_obj.managed:
            self.parent_obj.close()

    def __repr__(self) -> str:
        state = "finished" if self._core.finished else "running"
        where = self._core.options.run_dir
        return f"<JournaledIterator of {self.parent_obj!r} in {where!r}, {state}>"


def journaled_run(pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions) -> JournaledIterator:
    """Run ``pool`` over the items of ``iterable`` that the journal does not hold yet.

    Opens (or creates) the journal at once, so a journal written for another run is refused
    before anything runs. See :class:`JournaledIterator`.
    """
    return JournaledIterator(pool, iterable, options)
