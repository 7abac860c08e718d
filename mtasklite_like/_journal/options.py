"""The options of a journaled run, their validation, the keys of items, and what identifies a run."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import TYPE_CHECKING, Any

from .._worker.delayed import DelayedObject
from .format import JournalError

if TYPE_CHECKING:
    from .._pool import Pool

__all__ = [
    "DEFAULT_SAVE_BATCH",
    "FINGERPRINT_KEYS",
    "FSYNC_ITEMS",
    "FSYNC_SECONDS",
    "ITEM_KEY_TYPES",
    "KEY_CUSTOM",
    "KEY_ITEM",
    "KEY_POSITION",
    "JournalOptions",
    "check_hashable",
    "check_item_keys",
    "check_journal_options",
    "describe_callable",
    "fingerprint",
    "pool_identity",
]

#: how many first input keys identify the input in the header
FINGERPRINT_KEYS = 16
#: fsync at least this often while results arrive (seconds), and after this many results
FSYNC_SECONDS = 1.0
FSYNC_ITEMS = 1_000_000
#: default number of results per save_callback call
DEFAULT_SAVE_BATCH = 100

#: the kinds of key, as the header names them
KEY_ITEM = "item"
KEY_POSITION = "position"
KEY_CUSTOM = "custom"
#: items of these types are their own keys by default
ITEM_KEY_TYPES = (str, bytes, int)


@dataclass(frozen=True)
class JournalOptions:
    """What a journaled run needs besides the pool. Built by :func:`check_journal_options`.

    ``identity`` overrides the function's name in the header (the mp_lock layer names itself);
    ``check_input=False`` skips the comparison of the input fingerprint (resuming by name when the
    input list may change between runs).
    """

    run_dir: str | None
    key: Callable[[Any], Any] | None = None
    fresh: bool = False
    keep_failures: bool = False
    results: bool = True
    save_callback: Callable[[list[Any], list[Any]], Any] | None = None
    save_batch: int = DEFAULT_SAVE_BATCH
    fsync_seconds: float = FSYNC_SECONDS
    fsync_items: int = FSYNC_ITEMS
    identity: str | None = None
    check_input: bool = True


def check_journal_options(
    journal: str | os.PathLike[str] | None,
    journal_key: Callable[[Any], Any] | None = None,
    journal_fresh: bool = False,
    journal_keep_failures: bool = False,
    journal_results: bool = True,
    save_callback: Callable[[list[Any], list[Any]], Any] | None = None,
    save_batch: int | None = None,
) -> JournalOptions | None:
    """Validate the pool's journal options; ``None`` when the pool runs without a journal.

    ``save_callback`` works without a journal too (results are handed over in batches, nothing is
    written); the other options need ``journal``.
    """
    if journal is not None and not isinstance(journal, (str, os.PathLike)):
        raise TypeError(
            f"journal must be the path of a run directory (str or path), not {type(journal).__name__}"
        )
    if journal is None:
        extras = [
            name
            for name, value, default in (
                ("journal_key", journal_key, None),
                ("journal_fresh", journal_fresh, False),
                ("journal_keep_failures", journal_keep_failures, False),
                ("journal_results", journal_results, True),
            )
            if value != default
        ]
        if extras:
            raise ValueError(f"{', '.join(extras)} only apply to a journaled run: also pass journal=RUN_DIR")
        if save_callback is None:
            if save_batch is not None:
                raise ValueError(
                    "save_batch sets the size of save_callback's batches: also pass save_callback"
                )
            return None
    if journal_key is not None and not callable(journal_key):
        raise TypeError(f"journal_key must be a function item -> key, not {type(journal_key).__name__}")
    if save_callback is not None and not callable(save_callback):
        raise TypeError(
            "save_callback must be callable as save_callback(results, items), not "
            f"{type(save_callback).__name__}"
        )
    if save_batch is None:
        save_batch = DEFAULT_SAVE_BATCH
    elif isinstance(save_batch, bool) or not isinstance(save_batch, int) or save_batch < 1:
        raise ValueError(f"save_batch must be a whole number >= 1, not {save_batch!r}")
    return JournalOptions(
        run_dir=None if journal is None else os.fspath(journal),
        key=journal_key,
        fresh=bool(journal_fresh),
        keep_failures=bool(journal_keep_failures),
        results=bool(journal_results),
        save_callback=save_callback,
        save_batch=save_batch,
    )


# -- identity of a run -----------------------------------------------------------------------------


def describe_callable(worker: Any) -> str:
    """``module:qualname`` of what a worker runs: the function, the class of a callable object or
    of a ``@delayed_init`` shell, the function inside a ``functools.partial``, the ``journal_target``
    of a wrapper that has one (the map-reduce helper's part runner names the user's function)."""
    target = getattr(worker, "journal_target", None)  # a wrapper that names what it runs
    if target is not None and target is not worker:
        return describe_callable(target)
    if isinstance(worker, DelayedObject):
        cls = worker.cls
        return f"{cls.__module__}:{cls.__qualname__}"
    func = getattr(worker, "func", None)  # functools.partial
    if func is not None and callable(func) and hasattr(worker, "args"):
        return describe_callable(func)
    target = getattr(worker, "__func__", worker)  # bound method
    qualname = getattr(target, "__qualname__", None)
    module = getattr(target, "__module__", None)
    if qualname is None:
        kind = type(worker)
        return f"{kind.__module__}:{kind.__qualname__}"
    return f"{module}:{qualname}"


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def fingerprint(values: Iterable[Any]) -> str:
    """A short hash of the reprs of ``values`` (memory addresses removed, as they change per run)."""
    h = blake2b(digest_size=8)
    for v in values:
        h.update(_ADDRESS.sub("", repr(v)).encode("utf-8", "backslashreplace"))
        h.update(b"\x00")
    return h.hexdigest()



def pool_identity(pool: Pool[Any]) -> str:
    """What the header names as the run's function: each distinct worker's ``module:qualname``."""
    names: list[str] = []
    for spec in pool.worker_specs:
        name = describe_callable(spec.worker)
        if name not in names:
            names.append(name)
    return " | ".join(names)


# -- keys ---------------------------------------------------------------------------------------------


def check_item_keys(items: Sequence[Any], start: int) -> None:
    """Items that are their own keys must all be str, bytes or int (``start``: the first's position)."""
    for i, x in enumerate(items):
        if not isinstance(x, ITEM_KEY_TYPES):
            raise JournalError(
                f"input item #{start + i} ({x!r:.60}) is a {type(x).__name__}, but the run's items are "
                "their own keys (the first item was a str, bytes or int). Pass "
                "journal_key=lambda item: ... that returns a str, bytes or int for every item"
            )


def check_hashable(keys: Sequence[Any]) -> None:
    """Keys from ``journal_key`` must be hashable (they index the stored results)."""
    try:
        set(keys)
    except TypeError as exc:
        raise JournalError(f"journal_key must return hashable keys (str, int, tuple, ...): {exc}") from None
