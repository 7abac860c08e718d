"""The journal's side of a run: every batch the engine releases is journaled before the caller sees it.

:class:`JournalSink` is the run's sink (``_engine.release.Sink``): the release stage hands it each
batch as it is released, before the exception mode is applied, with the items' indices, their
outcomes, and the results as the worker pickled them when the backend kept them. Failures are
journaled as failures; successes as one record per batch (a single pickle, one checksum, one
write), or as the worker's own bytes, not pickled again (``KIND_DONE_RAW``). A result that cannot
be pickled fails its item here (:class:`JournalPicklingError`), and the engine applies the
exception mode to that failure as to any other.

With a ``save_callback``, successes wait for their callback in batches of ``save_batch`` and are
journaled right after it returns (a user callback and the journal cannot commit together: a crash
during the callback repeats that batch, never loses it).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import name_item
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

__all__ = ["JournalSink", "Where"]

#: ``where(indices)``: for the engine's indices of a batch, ``(keys, items, positions)``: the
#: items' journal keys, the items themselves (None when nothing needs them) and their positions
#: in the caller's input (None when the engine's indices are those positions)
Where = Callable[[Sequence[int]], tuple[Sequence[Any], Sequence[Any] | None, Sequence[int] | None]]


class JournalSink:
    """Journals each released batch; holds the open journal (or None: ``save_callback`` alone)."""

    def __init__(self, options: JournalOptions, journal: Journal | None, where: Where, mode: str) -> None:
        self.options = options
        #: under 'immediate' a task's failure is raised, not journaled: it runs again on resume
        self._journal_failures = mode != ExceptionBehaviour.IMMEDIATE
        self.journal = journal
        self._where = where
        #: the workers' pickled results are journaled as they are: no callback needs the results
        #: first, and they are stored
        self.wants_raw = journal is not None and options.results and options.save_callback is None
        self._kind = KIND_DONE if options.results else KIND_DONE_NO_RESULT
        # results waiting for save_callback: (keys, results, items) in order, and their count
        self._pending: deque[tuple[list[Any], list[Any], list[Any]]] = deque()
        self._pending_count = 0
        self.callback_failed = False

    def close_journal(self) -> None:
        journal, self.journal = self.journal, None
        if journal is not None:
            journal.close()

    def settled(
        self,
        indices: Sequence[int],
        results: list[Any],
        errors: dict[int, BaseException] | None,
        raw: bytes | None,
    ) -> dict[int, BaseException] | None:
        """Journal one released batch (see ``_engine.release.Sink``); returns the items whose
        results cannot be stored, each failed with a :class:`JournalPicklingError`."""
        keys, items, positions = self._where(indices)
        if errors and positions is not None:
            for k, exc in errors.items():
                name_item(exc, positions[k])  # the engine saw only the unfinished items
        journal = self.journal
        options = self.options
        if raw is not None and self.wants_raw and journal is not None:
            # The results pickled as a whole in the worker: known to pickle, stored as they are.
            journal.append(KIND_DONE_RAW, encode_done_raw(keys, [raw]), len(results))
            return None
        ok = [k for k in range(len(results)) if k not in errors] if errors else None
        ok_keys = keys if ok is None else [keys[k] for k in ok]
        ok_results = results if ok is None else [results[k] for k in ok]
        payload: bytes | None = None
        more: dict[int, BaseException] | None = None
        if journal is not None and ok_results:
            try:
                payload = encode_done(ok_keys, ok_results, options.results)
            except Exception:
                more = {}
                for j, error in unpicklable(ok_keys, ok_results, options.results):
                    k = j if ok is None else ok[j]
                    name_item(error, indices[k] if positions is None else positions[k])
                    more[k] = error
                ok = [k for k in range(len(results)) if k not in (errors or {}) and k not in more]
                ok_keys = [keys[k] for k in ok]
                ok_results = [results[k] for k in ok]
                payload = None
        journaled_errors = errors if self._journal_failures else None
        if journal is not None and (journaled_errors or more):
            failed = sorted({**(journaled_errors or {}), **(more or {})}.items())
            journal.append(
                KIND_FAILED, encode_failed([keys[k] for k, _ in failed], [e for _, e in failed]), len(failed)
            )
        if options.save_callback is not None:
            if ok_results:
                ok_items = items if ok is None or items is None else [items[k] for k in ok]
                self._pending.append((list(ok_keys), list(ok_results), list(ok_items or ())))
                self._pending_count += len(ok_results)
                if self._pending_count >= options.save_batch:
                    self._run_callbacks(full_only=True)
        elif journal is not None and ok_results:
            if payload is None:
                payload = encode_done(ok_keys, ok_results, options.results)
            journal.append(self._kind, payload, len(ok_results))
        return more

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
