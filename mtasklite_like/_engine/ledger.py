"""The ledger: which items exist, who holds them, and each item's outcome so far.

It is the single place that keeps per-item accounting right. A :class:`Batch` is a group of input
items cut together and released together (the unit of ordering); it knows each item's input index
explicitly, so a batch need not be a consecutive slice of the input. A message (:class:`Msg`) is
what one worker holds: a whole batch, or single items of a batch being retried.

Every item ends in exactly one of two ways: :meth:`Ledger.resolve` (a result) or a final failure
through :meth:`Ledger.fail` once its retries are spent. Until then it is *pending*; a batch with
no pending item is complete and may be released. Nothing else changes ``pending``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from typing import Any

from .._errors import name_item

__all__ = ["UNSET", "Batch", "Ledger", "Msg"]

#: the result slot of an item with no outcome yet (still running, waiting or being retried)
UNSET: Any = type("Unset", (), {"__repr__": lambda self: "UNSET", "__slots__": ()})()


class Batch:
    """Input items cut together and released together.

    ``results`` holds a value (or the final exception) per position once known; ``errors`` the
    final failures by position; ``history`` the failed attempts of items that were retried.
    """

    __slots__ = ("errors", "history", "id", "indices", "items", "pending", "raw", "results")

    def __init__(self, batch_id: int, indices: Sequence[int], items: list[Any]) -> None:
        self.id = batch_id
        self.indices = indices
        self.items = items
        self.results: list[Any] | None = None
        self.errors: dict[int, BaseException] | None = None
        self.history: dict[int, list[BaseException]] | None = None
        self.pending = len(items)
        self.raw: bytes | None = None  # the results as the worker pickled them (see BatchDone.raw)

    def add_failures(self, failures: dict[int, BaseException]) -> None:
        """Fail items whose results came in but cannot be kept (a journal that cannot store them):
        final failures, as if the task had raised them."""
        self.errors = {**(self.errors or {}), **failures}
        results = self.slots()
        for pos, exc in failures.items():
            results[pos] = exc

    def take_raw(self) -> bytes | None:
        """The results as the worker pickled them, once (they are dropped at release)."""
        raw, self.raw = self.raw, None
        return raw

    def slots(self) -> list[Any]:
        """The results list, created on first need; :data:`UNSET` where an item has no outcome yet."""
        if self.results is None:
            self.results = [UNSET] * len(self.items)
        return self.results


class Msg:
    """What one worker holds: a whole batch (``positions`` None), or some of its items."""

    __slots__ = ("batch", "nbytes", "positions", "sent_at", "worker")

    def __init__(
        self, worker: int, batch: Batch, positions: list[int] | None, sent_at: float, nbytes: int = 0
    ) -> None:
        self.worker = worker
        self.batch = batch
        self.positions = positions
        self.sent_at = sent_at
        self.nbytes = nbytes

    def item_positions(self) -> Sequence[int]:
        return range(len(self.batch.items)) if self.positions is None else self.positions

    def indices(self) -> Sequence[int]:
        """Input indices of the items this message carries."""
        if self.positions is None:
            return self.batch.indices
        return [self.batch.indices[p] for p in self.positions]

    def items(self) -> list[Any]:
        if self.positions is None:
            return self.batch.items
        return [self.batch.items[p] for p in self.positions]


class Ledger:
    """Batches, the messages in flight, the retry queue, and per-worker loads."""

    def __init__(self, n_workers: int, retries: int) -> None:
        self.retries = retries
        self.loads = [0] * n_workers  # messages each worker holds
        self.held = [0] * n_workers  # items each worker holds (coroutine workers' credit counts these)
        self.in_flight: dict[int, Msg] = {}
        self.retry: deque[tuple[Batch, int]] = deque()
        self.retried = 0  # attempts run again: after a failure, or free of charge (a worker's fault)
        self.bytes_in_flight = 0  # serialised size of the messages workers hold
        self.items_in_flight = 0  # items of the messages workers hold
        self._next_batch = 0
        self._next_msg = 0

    # -- creating and sending -------------------------------------------------------------------

    def open_batch(self, indices: Sequence[int], items: list[Any]) -> Batch:
        """Record items just pulled from the input; batches are numbered in pulling order."""
        batch = Batch(self._next_batch, indices, items)
        self._next_batch += 1
        return batch

    def dispatch(self, worker: int, batch: Batch, positions: list[int] | None, now: float) -> tuple[int, Msg]:
        """Record that ``worker`` is given ``batch`` (or some positions of it); return the message."""
        msg_id = self._next_msg
        self._next_msg += 1
        msg = Msg(worker, batch, positions, now)
        self.in_flight[msg_id] = msg
        self.loads[worker] += 1
        n = len(msg.item_positions())
        self.items_in_flight += n
        self.held[worker] += n
        return msg_id, msg

    def sent(self, msg: Msg, nbytes: int) -> None:
        """Note the serialised size of a dispatched message."""
        msg.nbytes = nbytes
        self.bytes_in_flight += nbytes

    def pop(self, msg_id: int) -> Msg | None:
        """Take back a message a worker has answered; None if it was already taken (see ``take``)."""
        msg = self.in_flight.pop(msg_id, None)
        if msg is not None:
            self.loads[msg.worker] -= 1
            self.held[msg.worker] -= len(msg.item_positions())
            self.bytes_in_flight -= msg.nbytes
            self.items_in_flight -= len(msg.item_positions())
        return msg

    def take(self, worker: int) -> list[tuple[int, Msg]]:
        """Take back everything a dead or stuck worker holds, as ``(message id, message)``."""
        held = [(i, m) for i, m in self.in_flight.items() if m.worker == worker]
        for msg_id, msg in held:
            del self.in_flight[msg_id]
            self.bytes_in_flight -= msg.nbytes
            self.items_in_flight -= len(msg.item_positions())
        self.loads[worker] = 0
        self.held[worker] = 0
        return held

    def next_retry(self) -> tuple[Batch, int]:
        """The next item waiting to be run again: its batch and position."""
        self.retried += 1
        return self.retry.popleft()

    def clear(self) -> None:
        """Forget what is in flight and waiting (the run has ended)."""
        self.in_flight.clear()
        self.retry.clear()

    def idle(self) -> bool:
        """Nothing in flight and nothing waiting to be retried."""
        return not self.in_flight and not self.retry

    # -- outcomes -------------------------------------------------------------------------------

    def record(
        self,
        msg: Msg,
        results: list[Any],
        failures: Iterable[tuple[int, BaseException]],
        raw: bytes | None = None,
    ) -> None:
        """A worker answered ``msg``: ``results`` per item, ``failures`` by position in the message;
        ``raw`` the results as the worker pickled them, if it did. Fewer results than items: the
        worker ran only the first ones, and the others are requeued."""
        batch = msg.batch
        failures = list(failures)
        positions = msg.item_positions()
        if len(results) < len(positions):
            # The worker stopped early (it retired over its memory limit): the items it did not
            # run go to other workers, free of charge.
            for pos in positions[len(results):]:
                self.requeue(batch, pos)
            positions = positions[:len(results)]
        elif msg.positions is None and batch.results is None:
            # The common case, a whole batch answered at once: keep the worker's list as it is.
            batch.results = results
            if not failures:
                batch.raw = raw
            batch.pending -= len(results) - len(failures)
            for k, exc in failures:
                self._failed(batch, k, exc)
            return
        failed = dict(failures)
        for k, pos in enumerate(positions):
            if k in failed:
                self._failed(batch, pos, failed[k])
            else:
                self.resolve(batch, pos, results[k])

    def resolve(self, batch: Batch, pos: int, value: Any) -> None:
        """The item at ``pos`` has its result."""
        batch.slots()[pos] = value
        batch.pending -= 1

    def fail(self, batch: Batch, pos: int, exc: BaseException) -> None:
        """The item at ``pos`` failed this attempt: retried while it has retries left, else final."""
        self._failed(batch, pos, exc)

    def requeue(self, batch: Batch, pos: int) -> None:
        """Run the item again elsewhere, without counting an attempt (it was not at fault)."""
        batch.slots()[pos] = UNSET
        self.retry.append((batch, pos))

    def _failed(self, batch: Batch, pos: int, exc: BaseException) -> None:
        history = batch.history.get(pos, []) if batch.history else []
        if len(history) < self.retries:
            if batch.history is None:
                batch.history = {}
            batch.history[pos] = [*history, exc]
            batch.slots()[pos] = UNSET
            self.retry.append((batch, pos))
            return
        if self.retries:
            _record_attempts(exc, history)
        name_item(exc, batch.indices[pos])
        if batch.errors is None:
            batch.errors = {}
        batch.errors[pos] = exc
        batch.slots()[pos] = exc
        batch.pending -= 1


def _record_attempts(exc: BaseException, history: list[BaseException]) -> None:
    """Note on the final error how many attempts failed, and keep the earlier errors."""
    attempts = len(history) + 1
    try:
        exc.attempts = attempts  # type: ignore[attr-defined]
        exc.previous_errors = history  # type: ignore[attr-defined]
    except AttributeError:
        pass
    if hasattr(exc, "add_note"):
        kinds = ", ".join(type(e).__name__ for e in history)
        exc.add_note(f"failed on all {attempts} attempts (earlier: {kinds})")
