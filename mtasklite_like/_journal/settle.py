"""Settling computed results: journal each batch, hand successes to ``save_callback``.

A batch of results the engine hands over is written to the journal before the caller sees it:
failures as failures, successes as one record (a single pickle for the batch, one checksum, one
write). With a ``save_callback`` successes wait for their callback, in batches of ``save_batch``,
and are journaled right after it returns (a user callback and the journal cannot commit together:
a crash during the callback repeats that batch, never loses it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from itertools import repeat
from typing import Any

from ..constants import ExceptionBehaviour
from .file import Journal
from .format import (
    KIND_DONE,
    KIND_DONE_NO_RESULT,
    KIND_DONE_RAW,
    KIND_FAILED,
    encode_done,
    encode_done_raw,
    encode_failed,
    unpicklable,
)
from .options import JournalOptions

__all__ = ["REPEAT_EXC", "Settler"]

#: for ``map(isinstance, results, REPEAT_EXC)``: a C-speed check for exceptions in a batch
REPEAT_EXC = repeat(BaseException)


class Settler:
    """The writing side of a journaled run: the open journal (or None), results waiting for
    ``save_callback``, and the count of failed items handed to the caller."""

    def __init__(self, options: JournalOptions, mode: str, journal: Journal | None) -> None:
        self.options = options
        self.journal = journal
        self.failure_count = 0
        self._immediate = mode == ExceptionBehaviour.IMMEDIATE
        self._kind = KIND_DONE if options.results else KIND_DONE_NO_RESULT
        # results waiting for save_callback: (keys, results, items) in order, and their count
        self._pending: deque[tuple[list[Any], list[Any], list[Any]]] = deque()
        self._pending_count = 0
        self.callback_failed = False

    def close_journal(self) -> None:
        journal, self.journal = self.journal, None
        if journal is not None:
            journal.close()

    def settle(
        self,
        keys: Sequence[Any],
        results: list[Any],
        items: Sequence[Any] | None,
        out: Any,
        raw: list[tuple[int, int, bytes]] | None = None,
        start: int = 0,
    ) -> BaseException | None:
        """Journal one batch of computed results, then put what the caller gets into ``out``.

        Failures are journaled as such. Successes are pickled before the caller sees them, so a
        result that cannot be stored fails its item (:class:`JournalPicklingError`) instead. Returns
        the error at which an ``'immediate'`` run stops (``out`` then ends before it), or None.

        ``raw``: the results as the workers pickled them, ``(position, count, bytes)`` per batch,
        positions counted like ``start`` (the position of ``results[0]``). When they cover the
        results exactly, those bytes are journaled as they are: the results are known to pickle,
        and are not pickled again (see ``KIND_DONE_RAW``).
        """
        options = self.options
        journal = self.journal
        if (
            raw and journal is not None and options.save_callback is None and options.results
            and _covers(raw, start, len(results))
        ):
            journal.append(KIND_DONE_RAW, encode_done_raw(keys, [blob for _, _, blob in raw]), len(results))
            out.extend(results)
            return None
        failed: list[int] = []
        if not self._immediate and any(map(isinstance, results, REPEAT_EXC)):
            failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        payload: bytes | None = None
        cut: int | None = None
        if journal is not None:
            ok = [i for i in range(len(results)) if i not in set(failed)] if failed else None
            ok_keys = keys if ok is None else [keys[i] for i in ok]
            ok_results = results if ok is None else [results[i] for i in ok]
            try:
                payload = encode_done(ok_keys, ok_results, options.results)
            except Exception:
                bad = unpicklable(ok_keys, ok_results, options.results)
                results = list(results)
                for j, error in bad:
                    results[j if ok is None else ok[j]] = error
                newly = [j if ok is None else ok[j] for j, _ in bad]
                if self._immediate:
                    cut = newly[0]
                failed = sorted([*failed, *newly])
        stop: BaseException | None = None
        if cut is not None:
            # 'immediate': what precedes the failure is journaled and delivered, then the error.
            stop = results[cut]
            self.failure_count += 1
            if journal is not None:
                journal.append(KIND_FAILED, encode_failed([keys[cut]], [stop]), 1)
            keys, results = list(keys[:cut]), results[:cut]
            items = items[:cut] if items is not None else None
            failed, payload = [], None
        if failed:
            fset = set(failed)
            self.failure_count += len(failed)
            if journal is not None:
                journal.append(
                    KIND_FAILED, encode_failed([keys[i] for i in failed], [results[i] for i in failed]),
                    len(failed),
                )
            ok_idx = [i for i in range(len(results)) if i not in fset]
            ok_keys = [keys[i] for i in ok_idx]
            ok_results = [results[i] for i in ok_idx]
            ok_items: Sequence[Any] | None = [items[i] for i in ok_idx] if items is not None else None
            payload = None
        else:
            ok_keys, ok_results, ok_items = keys, results, items
        if options.save_callback is not None:
            if ok_results:
                self._pending.append((list(ok_keys), list(ok_results), list(ok_items or ())))
                self._pending_count += len(ok_results)
                if self._pending_count >= options.save_batch:
                    self._run_callbacks(full_only=True)
        elif journal is not None and ok_results:
            if payload is None:
                payload = encode_done(ok_keys, ok_results, options.results)
            journal.append(self._kind, payload, len(ok_results))
        out.extend(results)
        return stop

    def _run_callbacks(self, *, full_only: bool) -> None:
        """Call save_callback on batches of save_batch results, then journal each batch."""
        options = self.options
        callback = options.save_callback
        assert callback is not None
        size = options.save_batch
        pending = self._pending
        while self._pending_count >= size or (not full_only and self._pending_count):
            keys: list[Any] = []
            results: list[Any] = []
            items: list[Any] = []
            while pending and len(results) < size:
                k, r, it = pending[0]
                room = size - len(results)
                if len(r) <= room:
                    pending.popleft()
                    keys.extend(k)
                    results.extend(r)
                    items.extend(it)
                else:
                    keys.extend(k[:room])
                    results.extend(r[:room])
                    items.extend(it[:room])
                    pending[0] = (k[room:], r[room:], it[room:])
            self._pending_count -= len(results)
            try:
                callback(results, items)
            except BaseException:
                # Not journaled: these items are computed again (and saved again) on resume.
                self.callback_failed = True
                self._pending.clear()
                self._pending_count = 0
                raise
            if self.journal is not None:
                self.journal.append(self._kind, encode_done(keys, results, options.results), len(results))

    def flush_callbacks(self) -> None:
        """Hand every result still waiting to ``save_callback`` (the end of a run, ``close()``)."""
        if self.options.save_callback is not None and self._pending_count:
            self._run_callbacks(full_only=False)


def _covers(raw: list[tuple[int, int, bytes]], start: int, count: int) -> bool:
    """Whether the batches of ``raw`` follow one another from ``start`` over exactly ``count``
    results (batches that failed, or were retried, have no pickled results: then they do not)."""
    pos = start
    for first, n, _ in raw:
        if first != pos:
            return False
        pos += n
    return pos == start + count
