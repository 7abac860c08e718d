"""Journaled runs: finished results are appended to a file, and a later run skips them.

A *run directory* holds one journal file, ``journal.mtlj``. The pool's results are appended to it
as they arrive; calling the same function over the same input with the same directory again
yields the stored results in their place and computes only what is missing. This is a layer over
:class:`~mtasklite_like.Pool`: the engine knows it only as a sink its release stage feeds (each
released batch: indices, outcomes, the workers' pickled results when the backend kept them), and
its input is the resume filter's output.

This module is the journal's entry point for the rest of the package (the pool, the mp_lock
drop-in, the command line); the parts live in their own modules:

- :mod:`.format`: the file format (header, records, checksums, torn tail), reading a file;
- :mod:`.file`: the open journal (private directory, lock, append, fsync);
- :mod:`.options`: the pool's journal options, their validation, what identifies a run;
- :mod:`.run`: one journaled pass: opening, starting the pool with the sink, delivering results;
- :mod:`.feed`: the input side: the caller's input as it is, or the resume filter that skips
  finished items and sets their stored results aside;
- :mod:`.sink`: journaling each released batch, ``save_callback``;
- :mod:`.iterator`: :class:`JournaledIterator`, what ``pool(items)`` returns.
"""

from __future__ import annotations

from .format import (
    JOURNAL_FILE,
    MAGIC,
    VERSION,
    JournalError,
    JournalMismatchError,
    JournalPicklingError,
    JournalState,
    JournalWarning,
    read_journal,
)
from .iterator import JournaledIterator, journaled_run
from .options import JournalOptions, check_journal_options

__all__ = [
    "JOURNAL_FILE",
    "MAGIC",
    "VERSION",
    "JournalError",
    "JournalMismatchError",
    "JournalOptions",
    "JournalPicklingError",
    "JournalState",
    "JournalWarning",
    "JournaledIterator",
    "check_journal_options",
    "journaled_run",
    "read_journal",
]
