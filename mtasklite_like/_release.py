"""Release: when finished results reach the consumer, and what a failed item does to the run.

Complete batches are released into the ``ready`` queue at once (unordered) or once every earlier
batch has been released (ordered; later ones wait in ``waiting``). The exception mode is applied
here, at release, so that results and failures reach the consumer in the same order:

- ``'ignore'``: the exception object stands in the result's place;
- ``'deferred'``: the same, and it is collected for the ``DeferredExceptions`` raised at the end,
  in the order the failed results were released (input order when ordered, completion order
  when not);
- ``'immediate'``: the results before the failure are released, and the failure is returned to
  the engine, which stops the run and raises it once those results are consumed. It does not wait
  for earlier batches still running.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from ._ledger import Batch
from .constants import ExceptionBehaviour

__all__ = ["Release"]


class Release:
    """Orders complete batches into ``ready`` and applies the exception mode."""

    def __init__(self, *, ordered: bool, mode: str, keep_raw: bool = False) -> None:
        self.ready: deque[Any] = deque()
        #: with ``keep_raw`` (ordered runs only): ``(position of the first result, count, the
        #: results as the worker pickled them)`` of each released batch that has them
        self.keep_raw = keep_raw
        self.raw: deque[tuple[int, int, bytes]] = deque()
        self.ordered = ordered
        self.immediate = mode == ExceptionBehaviour.IMMEDIATE
        self.deferring = mode == ExceptionBehaviour.DEFERRED
        self.released = 0  # items released into ``ready`` (or dropped behind an immediate failure)
        self.failure_count = 0  # failed items released so far
        self.deferred: list[BaseException] = []
        self._waiting: dict[int, Batch] = {}
        self._next = 0

    def settle(self, batch: Batch) -> BaseException | None:
        """After news about ``batch``: release what can be; return an error that ends the run."""
        if batch.pending == 0:
            if not self.ordered:
                return self._release(batch)
            if batch.id != self._next:
                if batch.errors and self.immediate:
                    return _first_error(batch)
                self._waiting[batch.id] = batch
                return None
            error = self._release(batch)
            self._next += 1
            waiting = self._waiting
            while error is None and self._next in waiting:
                error = self._release(waiting.pop(self._next))
                self._next += 1
            return error
        if batch.errors and self.immediate:
            # Other items of the batch are still running or retrying: 'immediate' means now.
            return _first_error(batch)
        return None

    def _release(self, batch: Batch) -> BaseException | None:
        results = batch.results
        assert results is not None
        if batch.raw is not None:
            if self.keep_raw and not batch.errors:
                self.raw.append((self.released, len(results), batch.raw))
            batch.raw = None
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


def _first_error(batch: Batch) -> BaseException:
    assert batch.errors
    return batch.errors[min(batch.errors)]
