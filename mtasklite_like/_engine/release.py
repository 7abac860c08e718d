"""Release: when finished results reach the consumer, and what a failed item does to the run.

Complete batches are released into the ``ready`` queue at once (unordered) or once every earlier
batch has been released (ordered; later ones wait in ``waiting``). The exception mode is applied
here, at release, so that results and failures reach the consumer in the same order:

- ``'ignore'``: the exception object stands in the result's place;
- ``'deferred'``: the same, and it is collected for the ``DeferredExceptions`` raised at the end,
  in the order the failed results were released (input order when ordered, completion order
  when not);
- ``'immediate'``: the results before the failure are released, and the failure is returned to
  the engine, which stops the run and raises it once those results are consumed. Unordered, that
  is at once. Ordered, it waits until every item before the failing one has its result (an
  earlier item may still fail, and the consumer is owed every result before the first failure),
  so the run yields the same results and raises the same error whatever the timing; it does not
  wait for items after the failure.

A run may have a :class:`Sink` (a journaled run's journal): it sees every batch as it is released,
before the exception mode is applied, with the items' indices, their outcomes and the results as
the worker pickled them (when the backend kept them), and may fail items it cannot take (a result
the journal cannot store), which the exception mode then treats as any other failure.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from typing import Any, Protocol

from ..constants import ExceptionBehaviour
from .ledger import UNSET, Batch

__all__ = ["Release", "Sink"]


class Sink(Protocol):
    """What sees each batch as it is released (a journal), before the consumer does."""

    #: whether the sink wants the results as the workers pickled them (``raw`` below), where a
    #: backend can keep them (``Backend.raw_results``)
    wants_raw: bool

    def settled(
        self,
        indices: Sequence[int],
        results: list[Any],
        errors: dict[int, BaseException] | None,
        raw: bytes | None,
    ) -> dict[int, BaseException] | None:
        """A batch is released: ``results`` by position (the final exception where an item
        failed), ``errors`` the failures by position, ``raw`` the pickled results list (only for
        a batch without failures). Returns failures to add, by position, or None."""
        ...


class Release:
    """Orders complete batches into ``ready`` and applies the exception mode."""

    def __init__(self, *, ordered: bool, mode: str, sink: Sink | None = None) -> None:
        self.ready: deque[Any] = deque()
        self.sink = sink
        self.ordered = ordered
        self.immediate = mode == ExceptionBehaviour.IMMEDIATE
        self.deferring = mode == ExceptionBehaviour.DEFERRED
        self.released = 0  # items released into ``ready`` (or dropped behind an immediate failure)
        self.failure_count = 0  # failed items released so far
        self.deferred: list[BaseException] = []
        self._waiting: dict[int, Batch] = {}
        #: ordered 'immediate': batches with a final failure and items still pending, waiting for
        #: their turn (see _release_up_to_failure)
        self._failing: dict[int, Batch] = {}
        self._next = 0

    def settle(self, batch: Batch) -> BaseException | None:
        """After news about ``batch``: release what can be; return an error that ends the run."""
        if not self.ordered:
            if batch.pending == 0:
                return self._release(batch)
            if batch.errors and self.immediate:
                # Other items of the batch are still running or retrying: 'immediate' means now.
                return _first_error(batch)
            return None
        if batch.id != self._next:
            if batch.pending == 0:
                self._failing.pop(batch.id, None)
                self._waiting[batch.id] = batch
            elif batch.errors and self.immediate:
                # Not raised yet: an earlier item may still fail, or its result is still owed to
                # the consumer. Looked at again when its turn comes.
                self._failing[batch.id] = batch
            return None
        return self._advance(batch)

    def _advance(self, batch: Batch | None) -> BaseException | None:
        """Release ``batch``, the next in input order, and every complete batch after it."""
        while batch is not None:
            if batch.pending:
                if self.immediate and batch.errors:
                    return self._release_up_to_failure(batch)
                return None
            error = self._release(batch)
            self._next += 1
            if error is not None:
                return error
            batch = self._waiting.pop(self._next, None) or self._failing.pop(self._next, None)
        return None

    def _release_up_to_failure(self, batch: Batch) -> BaseException | None:
        """'immediate', ordered: the next batch has a failure but other items still running. Once
        every item before the first failure has its result, release those and return the failure
        (so the error raised is always the first in input order, after every result before it)."""
        assert batch.errors is not None and batch.results is not None
        first = min(batch.errors)
        results = batch.results
        if any(results[k] is UNSET for k in range(first)):
            self._failing[batch.id] = batch  # an earlier item is still running or retrying
            return None
        self._failing.pop(batch.id, None)
        error = batch.errors[first]
        if self.sink is not None:
            # Only what reaches the consumer: the items before the failure, and the failure.
            more = self.sink.settled(batch.indices[: first + 1], results[: first + 1], {first: error}, None)
            if more:
                first = min(more)
                error = more[first]
        self.released += len(results)
        self.failure_count += 1
        self.ready.extend(results[:first])
        batch.take_raw()
        return error

    def _release(self, batch: Batch) -> BaseException | None:
        results = batch.results
        assert results is not None
        raw = batch.take_raw()
        if self.sink is not None:
            more = self.sink.settled(batch.indices, results, batch.errors, raw)
            if more:
                batch.add_failures(more)
        self.released += len(results)
        if batch.errors:
            failures = sorted(batch.errors.items())
            self.failure_count += len(failures)
            if self.immediate:
                pos, exc = failures[0]
                self.ready.extend(results[:pos])
                return exc
            if self.deferring:
                self.deferred.extend(exc for _, exc in failures)
        self.ready.extend(results)
        return None

    def clear(self) -> None:
        """Forget batches waiting for release (the run has ended)."""
        self._waiting.clear()
        self._failing.clear()


def _first_error(batch: Batch) -> BaseException:
    assert batch.errors
    return batch.errors[min(batch.errors)]
