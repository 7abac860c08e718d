"""Journaled runs: finished results are appended to a file, and a later run skips them.

A *run directory* holds one journal file, ``journal.mtlj``. The pool's results are appended to it
as they arrive; calling the same function over the same input with the same directory again
yields the stored results in their place and computes only what is missing. This module is a
layer over :class:`~mtasklite_like.Pool`: the run engine knows nothing about it.

File format (version 1), all integers little-endian:

``header``
    ``MAGIC`` (8 bytes), version (u16), length of the JSON text (u32), the JSON text (UTF-8), CRC-32
    of the JSON text (u32). The JSON says what identifies the run: the function
    (``module:qualname``), the kind of key, a fingerprint of the first input keys and whether
    results are stored. It is plain data, read before anything is unpickled.
``record`` (repeated)
    payload length (u32), CRC-32 of the length, kind and payload (u32), kind (u8), payload (a
    pickle). Kinds: ``1`` finished items ``(keys, results)``, ``2`` finished items without their
    results ``keys``, ``3`` failed items ``(keys, exceptions)``.

Records are only ever appended. A record whose bytes run past the end of the file, or the last
record when its checksum is wrong, is a write torn by a crash: it is cut off (with a
:class:`JournalWarning`) and its items are computed again. A bad checksum anywhere else is damage
the library will not guess about: :class:`JournalError`.

Durability: each batch of results the engine hands over is written (one ``write`` system call) to
the file before the caller sees it, so a crash of the process loses nothing the caller received
(with a ``save_callback``: nothing but the results still waiting for their callback). The file is
``fsync``-ed at a write, or at the end of the run, when at least ``fsync_seconds`` (1 s) have
passed or ``fsync_items`` (1,000,000) results have been written since the last time: a power loss
loses at most the results of one such interval. Lost results are simply computed again.

Loading a journal unpickles its records, which can run code: the run directory is created with
mode 0700, a directory or file that other users can write is refused, and so is a file that does
not start with the header.
"""

from __future__ import annotations

import errno
import json
import os
import pickle
import re
import stat
import struct
import threading
import time
import warnings
import weakref
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from hashlib import blake2b
from itertools import chain, islice, repeat, tee
from types import TracebackType
from typing import TYPE_CHECKING, Any

from ._delayed import DelayedObject, delayed_init, materialize
from ._errors import DeferredExceptions, MtaskliteLikeError, TaskPicklingError, WorkerDiedError
from ._serialize import dumps
from ._worker import make_caller
from .constants import ExceptionBehaviour

if TYPE_CHECKING:
    from ._pool import Pool
    from ._results import ResultIterator

    #: ``plain(pool, items)``: an ordinary run of ``pool`` over ``items``
    PlainRun = Callable[[Pool[Any], Iterable[Any]], ResultIterator[Any]]

__all__ = [
    "JOURNAL_FILE",
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

MAGIC = b"MTLJRNL\x00"
VERSION = 1
JOURNAL_FILE = "journal.mtlj"
_HEAD = struct.Struct("<HI")  # version, JSON length
_CRC = struct.Struct("<I")
_REC = struct.Struct("<IIB")  # payload length, CRC-32, kind
_REC_LEN_KIND = struct.Struct("<IB")
KIND_DONE = 1
KIND_DONE_NO_RESULT = 2
KIND_FAILED = 3
_KINDS = (KIND_DONE, KIND_DONE_NO_RESULT, KIND_FAILED)

#: how many first input keys identify the input in the header
FINGERPRINT_KEYS = 16
#: fsync at least this often while results arrive (seconds), and after this many results
FSYNC_SECONDS = 1.0
FSYNC_ITEMS = 1_000_000
#: default number of results per save_callback call
DEFAULT_SAVE_BATCH = 100

KEY_ITEM = "item"
KEY_POSITION = "position"
KEY_CUSTOM = "custom"
_ITEM_KEY_TYPES = (str, bytes, int)


class JournalError(MtaskliteLikeError):
    """The run directory or its journal cannot be used: not writable, shared with other users,
    locked by another run, not a journal of this library, or damaged."""


class JournalMismatchError(JournalError):
    """The journal in the run directory was written for another function, kind of key or input."""


class JournalPicklingError(TaskPicklingError):
    """An item's result could not be pickled into the journal. The item counts as failed (under
    ``'immediate'`` this is raised); ``journal_results=False`` stores only that items finished."""


class JournalWarning(RuntimeWarning):
    """Something in the journal was dropped on purpose: a record torn by a crash."""


# -- options ---------------------------------------------------------------------------------------


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
    of a ``@delayed_init`` shell, the function inside a ``functools.partial``."""
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


# -- reading ---------------------------------------------------------------------------------------

_NO_RESULT = object()


@dataclass
class JournalState:
    """What a journal file holds: the header, finished items and failed items by key.

    ``done`` maps each finished key to its result (or to an internal marker when results are not
    stored); ``failed`` maps keys whose last attempt failed to that exception.
    """

    header: dict[str, Any] = field(default_factory=dict)
    done: dict[Any, Any] = field(default_factory=dict)
    failed: dict[Any, BaseException] = field(default_factory=dict)
    records: int = 0
    valid_size: int = 0
    torn_bytes: int = 0

    @property
    def finished_keys(self) -> set[Any]:
        """Keys of the items that finished (successfully)."""
        return set(self.done)

    def result(self, key: Any) -> Any:
        """The stored result of ``key`` (``KeyError`` when it did not finish or was not stored)."""
        value = self.done[key]
        if value is _NO_RESULT:
            raise KeyError(f"{key!r} finished, but its result was not stored (journal_results=False)")
        return value


def _header_bytes(info: dict[str, Any]) -> bytes:
    text = json.dumps(info, sort_keys=True).encode("utf-8")
    return MAGIC + _HEAD.pack(VERSION, len(text)) + text + _CRC.pack(zlib.crc32(text))


def _parse(data: bytes, path: str) -> JournalState:
    """Parse a whole journal file. Raises :class:`JournalError` for anything but a torn tail."""
    state = JournalState()
    size = len(data)
    fixed = len(MAGIC) + _HEAD.size
    if size < fixed or data[: len(MAGIC)] != MAGIC:
        if size < len(MAGIC) and MAGIC.startswith(data):
            state.torn_bytes = size  # the header itself was being written
            return state
        raise JournalError(
            f"{path} is not a journal of mtasklite_like (no header); refusing to read it. Give the pool a "
            "directory of its own"
        )
    version, length = _HEAD.unpack_from(data, len(MAGIC))
    if version != VERSION:
        raise JournalError(f"{path} is a journal of format version {version}; this version reads {VERSION}")
    end = fixed + length + _CRC.size
    if end > size:
        state.torn_bytes = size
        return state
    text = data[fixed : fixed + length]
    if _CRC.unpack_from(data, fixed + length)[0] != zlib.crc32(text):
        raise JournalError(f"{path}: the header is damaged (checksum mismatch); refusing to read it")
    try:
        state.header = json.loads(text)
    except ValueError as exc:
        raise JournalError(f"{path}: the header is not valid JSON: {exc}") from None
    done, failed = state.done, state.failed
    pos = end
    while pos < size:
        if pos + _REC.size > size:
            break  # torn record header
        length, crc, kind = _REC.unpack_from(data, pos)
        start = pos + _REC.size
        stop = start + length
        if stop > size:
            break  # torn payload
        payload = data[start:stop]
        if kind not in _KINDS or zlib.crc32(payload, zlib.crc32(_REC_LEN_KIND.pack(length, kind))) != crc:
            if stop == size or not data[pos:].strip(b"\x00"):
                break  # the last record, damaged as it was written, or a tail of zeros (power loss)
            raise JournalError(
                f"{path}: the record at byte {pos} is damaged (checksum mismatch) and {size - stop} bytes "
                "follow it. This is not a write torn by a crash; refusing to guess. Move the directory "
                "aside, or pass journal_fresh=True to start over"
            )
        try:
            body = pickle.loads(payload)
        except Exception as exc:
            raise JournalError(
                f"{path}: the record at byte {pos} cannot be unpickled ({type(exc).__name__}: {exc}); "
                "are the classes of the stored results importable?"
            ) from exc
        if kind == KIND_DONE:
            keys, values = body
            done.update(zip(keys, values))
            if failed:
                for k in keys:
                    failed.pop(k, None)
        elif kind == KIND_DONE_NO_RESULT:
            done.update(dict.fromkeys(body, _NO_RESULT))
            if failed:
                for k in body:
                    failed.pop(k, None)
        else:
            keys, excs = body
            for k, e in zip(keys, excs):
                if k not in done:
                    failed[k] = e
        state.records += 1
        pos = stop
    state.valid_size = pos
    state.torn_bytes = size - pos
    return state


def journal_path(run_dir: str | os.PathLike[str]) -> str:
    """The journal file of a run directory."""
    return os.path.join(os.fspath(run_dir), JOURNAL_FILE)


def read_journal(run_dir: str | os.PathLike[str]) -> JournalState:
    """Read the journal of ``run_dir`` without changing it (a torn tail is ignored, not cut off).

    Returns an empty state when the directory or journal does not exist. Safe to call while a run
    is writing. Unpickles the records: only read directories you trust.
    """
    path = journal_path(run_dir)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        return JournalState()
    return _parse(data, path)


# -- writing ---------------------------------------------------------------------------------------


def _check_private(path: str, st: os.stat_result, what: str) -> None:
    if st.st_uid != os.getuid():
        raise JournalError(
            f"{what} {path} belongs to another user (uid {st.st_uid}); loading a journal runs pickled code, "
            "so only a directory of your own is used"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise JournalError(
            f"{what} {path} can be written by other users (mode {stat.filemode(st.st_mode)}); loading a "
            f"journal runs pickled code, so this is refused. Run 'chmod go-w {path}' or use a private "
            "directory"
        )


class Journal:
    """An open journal file: loaded, locked against other runs, appended to."""

    def __init__(
        self, run_dir: str, info: dict[str, Any], options: JournalOptions, *, compare: list[str]
    ) -> None:
        self.path = journal_path(run_dir)
        self._fsync_seconds = options.fsync_seconds
        self._fsync_items = options.fsync_items
        self._unsynced = 0
        self._last_sync = time.monotonic()
        self.fd = -1
        try:
            os.makedirs(run_dir, mode=0o700, exist_ok=True)
        except OSError as exc:
            raise JournalError(f"cannot create the run directory {run_dir}: {exc.strerror or exc}") from exc
        st = os.stat(run_dir)
        if not stat.S_ISDIR(st.st_mode):
            raise JournalError(f"the run directory {run_dir} is not a directory")
        _check_private(run_dir, st, "the run directory")
        if not (st.st_mode & stat.S_IWUSR) or not os.access(run_dir, os.W_OK):
            raise JournalError(
                f"the run directory {run_dir} is read-only; a journaled run appends to its journal, so it "
                "needs write access. Make it writable ('chmod u+w') or copy it elsewhere"
            )
        exists = os.path.exists(self.path)
        if exists:
            fst = os.stat(self.path)
            _check_private(self.path, fst, "the journal")
            if not (fst.st_mode & stat.S_IWUSR):
                raise JournalError(
                    f"the journal {self.path} is read-only; a journaled run appends to it. Make it "
                    "writable ('chmod u+w') or copy the run directory elsewhere"
                )
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND | getattr(os, "O_CLOEXEC", 0), 0o600)
        except OSError as exc:
            raise JournalError(f"cannot open the journal {self.path}: {exc.strerror or exc}") from exc
        self.fd = fd
        self._ident: tuple[int, int] | None = None
        try:
            self._ident = _lock(fd, self.path)
            if options.fresh:
                os.ftruncate(fd, 0)
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
            state = _parse(data, self.path) if data else JournalState()
            if state.torn_bytes:
                warnings.warn(
                    f"journal {self.path}: dropped {state.torn_bytes} bytes of a record torn by a crash at "
                    f"byte {state.valid_size}; its items will be computed again",
                    JournalWarning,
                    stacklevel=4,
                )
                os.ftruncate(fd, state.valid_size)
            if not state.header:
                os.ftruncate(fd, 0)
                _write_all(fd, _header_bytes(info))
                state = JournalState(header=dict(info))
            else:
                _compare(state.header, info, compare, self.path)
            self.state = state
        except BaseException:
            self.close()
            raise

    def append(self, kind: int, payload: bytes, count: int) -> None:
        """Append one record; fsync when enough time or results have gone by since the last one."""
        crc = zlib.crc32(payload, zlib.crc32(_REC_LEN_KIND.pack(len(payload), kind)))
        head = _REC.pack(len(payload), crc, kind)
        _write_all(self.fd, head, payload)
        self._unsynced += count
        if self._unsynced >= self._fsync_items or time.monotonic() - self._last_sync >= self._fsync_seconds:
            self.sync()

    def sync(self) -> None:
        if self._unsynced and self.fd >= 0:
            os.fsync(self.fd)
            self._unsynced = 0
            self._last_sync = time.monotonic()

    def close(self, *, sync: bool = False) -> None:
        """Close the file (which releases the lock). The end of a run follows the same rule as
        every write: fsync if ``fsync_seconds`` have passed since the last one (or ``sync``)."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            try:
                if self._unsynced and (
                    sync
                    or self._unsynced >= self._fsync_items
                    or time.monotonic() - self._last_sync >= self._fsync_seconds
                ):
                    os.fsync(fd)
                    self._unsynced = 0
            finally:
                os.close(fd)  # releases the record lock
                _unlock(self._ident)
                self._ident = None


#: (device, inode) of the journals open in this process: a second run on one of them is refused
_OPEN_HERE: set[tuple[int, int]] = set()
_OPEN_HERE_LOCK = threading.Lock()


def _lock(fd: int, path: str) -> tuple[int, int]:
    """Refuse a journal another run uses: in this process (a registry) or in another one (a POSIX
    record lock, which, unlike ``flock``, worker processes forked later do not inherit: a pool kept
    up between runs must not keep the journal locked)."""
    st = os.fstat(fd)
    ident = (st.st_dev, st.st_ino)
    busy = JournalError(
        f"the journal {path} is in use by another run (it is locked); one run per directory at a time"
    )
    with _OPEN_HERE_LOCK:
        if ident in _OPEN_HERE:
            raise busy
        _OPEN_HERE.add(ident)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return ident
    try:
        fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        _unlock(ident)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            raise busy from None
        raise
    return ident


def _unlock(ident: tuple[int, int] | None) -> None:
    if ident is not None:
        with _OPEN_HERE_LOCK:
            _OPEN_HERE.discard(ident)


def _write_all(fd: int, *parts: bytes) -> None:
    total = sum(len(p) for p in parts)
    written = os.writev(fd, parts)
    if written != total:  # a short write (signal, nearly full disk): write the rest
        rest = b"".join(parts)[written:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def _compare(stored: dict[str, Any], info: dict[str, Any], fields: list[str], path: str) -> None:
    diffs = [f for f in fields if stored.get(f) != info.get(f)]
    if not diffs:
        return
    names = {"function": "function", "keys": "kind of key", "input": "input (fingerprint of its first keys)",
             "results": "journal_results"}
    told = "; ".join(
        f"{names.get(f, f)}: journal has {stored.get(f)!r}, this run {info.get(f)!r}" for f in diffs
    )
    raise JournalMismatchError(
        f"the journal {path} was written for another run ({told}). Use another run directory, or pass "
        "journal_fresh=True to discard it and start over"
    )


# -- the workers' side of unordered runs -------------------------------------------------------------

_POS_ATTR = "_mtasklite_like_journal_position"


@delayed_init
class _KeyedCall:
    """Runs a user's worker on ``(position, item)`` and returns ``(position, result)``.

    Used for unordered journaled runs, where results come back in completion order and must be
    matched to their items. A failure keeps its position as an attribute on the exception. Built
    inside each worker (a ``@delayed_init`` class), so a ``@delayed_init`` worker is built there too.
    """

    def __init__(self, worker: Any, argument_type: str) -> None:
        self._call = make_caller(materialize(worker), argument_type)

    def __call__(self, pair: tuple[int, Any]) -> tuple[int, Any]:
        pos, item = pair
        try:
            return pos, self._call(item)
        except Exception as exc:
            try:
                setattr(exc, _POS_ATTR, pos)
            except Exception:
                pass
            raise


# -- the journaled iterator ------------------------------------------------------------------------


class _Kept:
    """A stored failure that ``journal_keep_failures`` keeps failed."""

    __slots__ = ("error",)

    def __init__(self, error: BaseException) -> None:
        self.error = error


class _Sized:
    """An iterator with a known length, so the engine sizes its batches as for a sized input."""

    def __init__(self, iterator: Iterator[Any], length: int) -> None:
        self._iterator = iterator
        self._length = length

    def __iter__(self) -> Iterator[Any]:
        return self._iterator

    def __len__(self) -> int:
        return self._length


_STORED = 0
_COMPUTED = 1


class _Core:
    """Everything a journaled iterator does; the iterator itself is a thin shell over ``out``."""

    def __init__(
        self, pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions, plain: PlainRun
    ) -> None:
        self.pool = pool
        self.options = options
        self.out: deque[Any] = deque()
        self.started = False
        self.finished = False
        self.failure_count = 0
        self.heartbeat: Callable[[], None] | None = None
        self._error: BaseException | None = None
        self._mode = pool.exception_behavior
        self._deferred: list[BaseException] = []
        self._inner: Any = None
        self._journal: Journal | None = None
        # results waiting for save_callback: (keys, results, items) in order, and their count
        self._pending: deque[tuple[list[Any], list[Any], list[Any]]] = deque()
        self._pending_count = 0
        self._callback_failed = False
        self._pos = 0  # input position of the next result (ordered) / next item read (feeds)

        try:
            self.total: int | None = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            self.total = None
        sequence = isinstance(iterable, (list, tuple, range))
        it = iter(iterable)
        head = list(islice(it, FINGERPRINT_KEYS))
        if options.key is not None:
            self._key_kind = KEY_CUSTOM
            head_keys = [options.key(x) for x in head]
        elif head and isinstance(head[0], _ITEM_KEY_TYPES):
            self._key_kind = KEY_ITEM
            head_keys = head
        else:
            self._key_kind = KEY_POSITION
            head_keys = head  # positions say nothing: fingerprint the items themselves
        self._key_fn = options.key

        state = JournalState()
        if options.run_dir is not None:
            info = {
                "format": "mtasklite_like journal",
                "function": options.identity or _pool_identity(pool),
                "keys": self._key_kind,
                "input": fingerprint(head_keys) if head else None,
                "results": options.results,
            }
            compare = ["function", "keys", "results"]
            if options.check_input and head and self._key_kind == KEY_POSITION:
                compare.append("input")  # positions name items only for the same input, in the same order
            self._journal = Journal(options.run_dir, info, options, compare=compare)
            state = self._journal.state
        try:
            lookup: dict[Any, Any] = state.done
            if options.keep_failures and state.failed:
                lookup = dict(state.done)
                for k, e in state.failed.items():
                    lookup.setdefault(k, _Kept(e))
            self._lookup = lookup
            if not options.results and state.done:
                self.total = None  # finished items are skipped, so the count is not known
            self._need_items = options.save_callback is not None
            source: Iterator[Any] = chain(head, it) if head else it

            self._ordered = not pool.is_unordered
            if self._ordered and not lookup:
                # Nothing to skip: the pool reads the input itself, keys are taken in bulk.
                self._fill = self._fill_fast
                self._seq: Sequence[Any] | None = iterable if sequence else None  # type: ignore[assignment]
                self._items: Iterator[Any] | None = None
                pool_input: Any
                if self._seq is not None:
                    pool_input = iterable
                elif self._key_kind == KEY_POSITION and not self._need_items:
                    pool_input = source if self.total is None else _Sized(source, self.total)
                else:
                    a, b = tee(source)
                    self._items = b
                    pool_input = a if self.total is None else _Sized(a, self.total)
                self._inner = plain(pool, pool_input)
            elif self._ordered:
                self._fill = self._fill_marks
                self._marks: deque[tuple[Any, ...]] = deque()
                self._inner = plain(pool, self._feed_marks(source))
            else:
                self._fill = self._fill_unordered
                self._stored_ready: deque[Any] = deque()
                self._inflight: dict[int, tuple[Any, Any]] = {}
                keyed = _keyed_pool(pool)
                self._inner = plain(keyed, self._feed_unordered(source))
        except BaseException:
            self._close_journal()
            raise

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
            if self._error is not None:
                error, self._error = self._error, None
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
        chunk = self._inner.take_ready()
        if chunk:
            return chunk  # type: ignore[no-any-return]
        try:
            first = next(self._inner)
        except StopIteration:
            return None
        except DeferredExceptions:
            if self._mode != ExceptionBehaviour.DEFERRED:
                raise
            return None  # the end of a deferred run: raised again by _end, with stored failures
        return [first, *self._inner.take_ready()]

    def _end(self) -> None:
        self._flush_callbacks()
        self.finished = True
        self._close_journal()
        if self._deferred:
            self._error = DeferredExceptions(*self._deferred)
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
                if not self._callback_failed:
                    self._flush_callbacks()
            finally:
                self._close_journal()

    def close(self) -> None:
        self._stop(None)

    def abandon(self) -> None:
        """Garbage collection: stop the workers and close the file without calling user code."""
        self.finished = True
        try:
            if self._inner is not None:
                self._inner.close()
        finally:
            self._close_journal()

    def _close_journal(self) -> None:
        journal, self._journal = self._journal, None
        if journal is not None:
            journal.close()

    # -- ordered, nothing to skip ---------------------------------------------------------------------

    def _fill_fast(self) -> bool:
        chunk = self._inner_next()
        if chunk is None:
            return False
        n = len(chunk)
        start = self._pos
        self._pos = start + n
        items: Sequence[Any] | None = None
        if self._seq is not None:
            if self._key_kind != KEY_POSITION or self._need_items:
                part = self._seq[start : start + n]
                # a slice of a range is a range: it pickles in a few bytes
                items = part if isinstance(part, (list, range)) else list(part)
        elif self._items is not None:
            items = list(islice(self._items, n))
        keys: Sequence[Any]
        if self._key_kind == KEY_POSITION:
            keys = range(start, start + n)
        elif self._key_kind == KEY_ITEM:
            assert items is not None
            # Sampled here (every item is checked when a run resumes).
            if not (isinstance(items[0], _ITEM_KEY_TYPES) and isinstance(items[-1], _ITEM_KEY_TYPES)):
                self._check_item_keys(items, start)
            keys = items
        else:
            assert items is not None and self._key_fn is not None
            keys = [self._key_fn(x) for x in items]
            _check_hashable(keys)
        if self._mode == ExceptionBehaviour.DEFERRED:
            settled: list[Any] = []
            self._settle_into(keys, chunk, items, settled)
            self._deliver(settled)
        else:
            self._settle_into(keys, chunk, items, self.out)
        return True

    def _deliver(self, values: list[Any]) -> None:
        """Hand ``values`` to the caller; under 'deferred', note their exceptions in this order."""
        if self._mode == ExceptionBehaviour.DEFERRED and any(map(isinstance, values, _REPEAT_EXC)):
            self._deferred.extend(v for v in values if isinstance(v, BaseException))
        self.out.extend(values)

    # -- ordered, resuming ----------------------------------------------------------------------------

    def _key_at(self, pos: int, item: Any) -> Any:
        kind = self._key_kind
        if kind == KEY_ITEM:
            if not isinstance(item, _ITEM_KEY_TYPES):
                self._check_item_keys([item], pos)
            return item
        if kind == KEY_POSITION:
            return pos
        assert self._key_fn is not None
        key = self._key_fn(item)
        _check_hashable([key])
        return key

    def _feed_marks(self, source: Iterator[Any]) -> Iterator[Any]:
        """The pool's input: unfinished items only. Each input item leaves a mark, in input order."""
        marks = self._marks
        lookup = self._lookup
        key_at = self._key_at
        missing = _MISSING
        for pos, item in enumerate(source):
            key = key_at(pos, item)
            stored = lookup.get(key, missing)
            if stored is not missing:
                marks.append((_STORED, stored))
                continue
            marks.append((_COMPUTED, key, item))
            yield item

    def _fill_marks(self) -> bool:
        marks = self._marks
        out: list[Any] = []
        if marks and marks[0][0] == _STORED:
            while marks and marks[0][0] == _STORED:
                if not self._emit_stored(marks.popleft()[1], out):
                    break
            self._deliver(out)
            return True
        chunk = self._inner_next()
        if chunk is None:
            while marks:
                mark = marks.popleft()
                if mark[0] == _COMPUTED:  # pragma: no cover - the engine lost an item
                    raise JournalError(f"internal error: no result for input item {mark[2]!r}")
                if not self._emit_stored(mark[1], out):
                    break
            self._deliver(out)
            return False
        # Lay out the chunk between the stored results that come before each computed one.
        layout: list[Any] = []  # stored values (wrapped) and None for "the next computed result"
        keys: list[Any] = []
        items: list[Any] = []
        got = 0
        while got < len(chunk):
            mark = marks.popleft()
            if mark[0] == _STORED:
                layout.append((mark[1],))
            else:
                layout.append(None)
                keys.append(mark[1])
                items.append(mark[2])
                got += 1
        settled: list[Any] = []
        cut = self._settle_into(keys, chunk, items, settled)
        computed = iter(settled)
        taken = 0
        for entry in layout:
            if entry is None:
                if cut is not None and taken >= len(settled):
                    break
                out.append(next(computed))
                taken += 1
            elif not self._emit_stored(entry[0], out):
                break
        self._deliver(out)
        return True

    def _emit_stored(self, stored: Any, out: list[Any]) -> bool:
        """Put a stored result into ``out``; False when it is a kept failure that stops the run."""
        if stored is _NO_RESULT:
            return True  # journal_results=False: finished items are not yielded again
        if isinstance(stored, _Kept):
            error = stored.error
            self.failure_count += 1
            if self._mode == ExceptionBehaviour.IMMEDIATE:
                self._error = error
                self._stop(None)
                return False
            out.append(error)
            return True
        out.append(stored)
        return True

    # -- unordered --------------------------------------------------------------------------------

    def _feed_unordered(self, source: Iterator[Any]) -> Iterator[tuple[int, Any]]:
        lookup = self._lookup
        stored_ready = self._stored_ready
        inflight = self._inflight
        key_at = self._key_at
        missing = _MISSING
        for pos, item in enumerate(source):
            key = key_at(pos, item)
            stored = lookup.get(key, missing) if lookup else missing
            if stored is not missing:
                stored_ready.append(stored)
                continue
            inflight[pos] = (key, item)
            yield pos, item

    def _fill_unordered(self) -> bool:
        out: list[Any] = []
        if self._stored_ready:
            stored_ready = self._stored_ready
            while stored_ready:
                if not self._emit_stored(stored_ready.popleft(), out):
                    break
            self._deliver(out)
            return True
        chunk = self._inner_next()
        if chunk is None:
            # The feed may have found stored items after the last computed one.
            return bool(self._stored_ready)
        inflight = self._inflight
        keys: list[Any] = []
        results: list[Any] = []
        items: list[Any] = []
        unattributed: list[tuple[int, BaseException]] = []  # (index in results, error)
        for r in chunk:
            if isinstance(r, BaseException):
                pos = _failure_position(r)
                if pos is None or pos not in inflight:
                    # A timeout names no item: it is yielded, not journaled (so retried on resume).
                    unattributed.append((len(results), r))
                    continue
                key, item = inflight.pop(pos)
            else:
                pos, r = r
                key, item = inflight.pop(pos)
            keys.append(key)
            results.append(r)
            items.append(item)
        settled: list[Any] = []
        self._settle_into(keys, results, items, settled)
        for index, error in reversed(unattributed):
            self.failure_count += 1
            settled.insert(index, error)
        self._deliver(settled)
        return True

    # -- journaling ---------------------------------------------------------------------------------

    def _check_item_keys(self, items: Sequence[Any], start: int) -> None:
        for i, x in enumerate(items):
            if not isinstance(x, _ITEM_KEY_TYPES):
                raise JournalError(
                    f"input item #{start + i} ({x!r:.60}) is a {type(x).__name__}, but the run's items are "
                    "their own keys (the first item was a str, bytes or int). Pass "
                    "journal_key=lambda item: ... that returns a str, bytes or int for every item"
                )

    def _settle_into(
        self, keys: Sequence[Any], results: list[Any], items: Sequence[Any] | None, out: Any
    ) -> int | None:
        """Journal one batch of computed results, then put what the caller gets into ``out``.

        Failures are journaled as such. Successes are pickled before the caller sees them, so a
        result that cannot be stored fails its item (:class:`JournalPicklingError`) instead. With a
        ``save_callback`` successes wait for their callback and are journaled after it. Returns the
        position at which an ``'immediate'`` run stops, or None.
        """
        mode = self._mode
        options = self.options
        journal = self._journal
        failed: list[int] = []
        if mode != ExceptionBehaviour.IMMEDIATE and any(map(isinstance, results, _REPEAT_EXC)):
            failed = [i for i, r in enumerate(results) if isinstance(r, BaseException)]
        payload: bytes | None = None
        cut: int | None = None
        if journal is not None:
            ok = [i for i in range(len(results)) if i not in set(failed)] if failed else None
            ok_keys = keys if ok is None else [keys[i] for i in ok]
            ok_results = results if ok is None else [results[i] for i in ok]
            try:
                payload = _encode_done(ok_keys, ok_results, options.results)
            except Exception:
                bad = _unpicklable(ok_keys, ok_results, options.results)
                results = list(results)
                for j, error in bad:
                    results[j if ok is None else ok[j]] = error
                newly = [j if ok is None else ok[j] for j, _ in bad]
                if mode == ExceptionBehaviour.IMMEDIATE:
                    cut = newly[0]
                failed = sorted([*failed, *newly])
        if cut is not None:
            # 'immediate': what precedes the failure is journaled and delivered, then the error.
            error = results[cut]
            self._error = error
            self.failure_count += 1
            if journal is not None:
                journal.append(KIND_FAILED, _encode_failed([keys[cut]], [error]), 1)
            keys, results = list(keys[:cut]), results[:cut]
            items = items[:cut] if items is not None else None
            failed, payload = [], None
        if failed:
            fset = set(failed)
            f_errors = [results[i] for i in failed]
            self.failure_count += len(failed)
            if journal is not None:
                journal.append(KIND_FAILED, _encode_failed([keys[i] for i in failed], f_errors), len(failed))
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
                payload = _encode_done(ok_keys, ok_results, options.results)
            journal.append(KIND_DONE if options.results else KIND_DONE_NO_RESULT, payload, len(ok_results))
        out.extend(results)
        if cut is not None:
            self._stop(None)
        return cut

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
                self._callback_failed = True
                self._pending.clear()
                self._pending_count = 0
                raise
            if self._journal is not None:
                payload = _encode_done(keys, results, options.results)
                self._journal.append(
                    KIND_DONE if options.results else KIND_DONE_NO_RESULT, payload, len(results)
                )

    def _flush_callbacks(self) -> None:
        if self.options.save_callback is not None and self._pending_count:
            self._run_callbacks(full_only=False)


_MISSING = object()


#: for ``map(isinstance, results, _REPEAT_EXC)``: a C-speed check for exceptions in a batch
_REPEAT_EXC = repeat(BaseException)


def _check_hashable(keys: Sequence[Any]) -> None:
    try:
        set(keys)
    except TypeError as exc:
        raise JournalError(f"journal_key must return hashable keys (str, int, tuple, ...): {exc}") from None


def _encode_done(keys: Sequence[Any], results: list[Any], with_results: bool) -> bytes:
    if with_results:
        return dumps((keys, results))
    return dumps(keys)


def _unpicklable(
    keys: Sequence[Any], results: list[Any], with_results: bool
) -> list[tuple[int, BaseException]]:
    """Positions of results that cannot be pickled, each with the error that replaces it."""
    try:
        _encode_done(keys, results, with_results)
        return []
    except Exception:
        pass
    bad: list[tuple[int, BaseException]] = []
    for i, (k, r) in enumerate(zip(keys, results)):
        try:
            dumps(k)
        except Exception as exc:
            raise JournalError(f"the key {k!r:.60} cannot be pickled into the journal: {exc}") from exc
        if not with_results:
            continue
        try:
            dumps(r)
        except Exception as exc:
            error = JournalPicklingError(
                f"the result of the item with key {k!r:.60} cannot be pickled into the journal "
                f"({type(exc).__name__}: {exc}); return picklable results, or pass journal_results=False "
                "to store only that items finished"
            )
            error.__cause__ = exc
            bad.append((i, error))
    return bad


def _encode_failed(keys: Sequence[Any], errors: list[Any]) -> bytes:
    try:
        return dumps((list(keys), errors))
    except Exception:
        pass
    safe: list[BaseException] = []
    for e in errors:
        try:
            dumps(e)
            safe.append(e)
        except Exception:
            safe.append(MtaskliteLikeError(f"{type(e).__qualname__}: {e}"))
    return dumps((list(keys), safe))


def _failure_position(error: BaseException) -> int | None:
    """The input position of a failed item of an unordered run, when the error says it."""
    pos = getattr(error, _POS_ATTR, None)
    if pos is not None:
        try:
            delattr(error, _POS_ATTR)
        except AttributeError:
            pass
        return int(pos)
    if isinstance(error, WorkerDiedError) and len(error.items) == 1:
        pair = error.items[0]
        if isinstance(pair, tuple) and len(pair) == 2:
            error.items = [pair[1]]
            return int(pair[0])
    return None


def _pool_identity(pool: Pool[Any]) -> str:
    names: list[str] = []
    for spec in pool.worker_specs:
        name = describe_callable(spec.worker)
        if name not in names:
            names.append(name)
    return " | ".join(names)


def _keyed_pool(pool: Pool[Any]) -> Pool[Any]:
    """A pool like ``pool`` whose workers take ``(position, item)`` and return ``(position, result)``."""
    from ._pool import Pool

    specs = pool.worker_specs
    workers: Any
    if all(s.worker is specs[0].worker for s in specs):
        workers = _KeyedCall(specs[0].worker, specs[0].argument_type)
        n_jobs: int | None = len(specs)
    else:
        workers = [_KeyedCall(s.worker, s.argument_type) for s in specs]
        n_jobs = None
    return Pool(
        workers,
        n_jobs,
        argument_type="single_arg",
        exception_behavior=pool.exception_behavior,
        bounded=pool.bounded,
        chunk_size=pool.chunk_size,
        chunk_prefill_ratio=pool.chunk_prefill_ratio,
        is_unordered=True,
        use_threads=pool.use_threads,
        task_timeout=pool.task_timeout,
        join_timeout=pool.join_timeout,
        start_method=pool.start_method,
        worker_env=[s.env for s in specs],
        initializer=specs[0].initializer,
        initargs=specs[0].initargs,
        max_tasks_per_worker=pool.max_tasks_per_worker,
        on_worker_death=pool.on_worker_death,
        retries=pool.retries,
        init_timeout=pool.init_timeout,
    )


class JournaledIterator:
    """Lazy results of a journaled ``pool(iterable)``: stored results in their place, the rest
    computed by the pool and journaled before they are handed over.

    An iterator and a context manager like :class:`~mtasklite_like.ResultIterator`, with
    ``len()`` for sized input and ``parent_obj``. ``close()`` (or leaving ``with``) stops the
    workers, hands pending results to ``save_callback`` and closes the journal.
    """

    def __init__(
        self, pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions, plain: PlainRun
    ) -> None:
        self.parent_obj = pool
        core = _Core(pool, iterable, options, plain)
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
        return self._core.started

    @property
    def finished(self) -> bool:
        return self._core.finished

    def take_ready(self) -> list[Any]:
        """Take every result already available, without waiting (possibly none)."""
        out = list(self._ready)
        self._ready.clear()
        return out

    @property
    def heartbeat(self) -> Callable[[], None] | None:
        return self._core.heartbeat

    @heartbeat.setter
    def heartbeat(self, fn: Callable[[], None] | None) -> None:
        self._core.set_heartbeat(fn)

    def __iter__(self) -> JournaledIterator:
        return self

    def __next__(self) -> Any:
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
        journal = self._core._journal
        return journal.state if journal is not None else None

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


def journaled_run(
    pool: Pool[Any], iterable: Iterable[Any], options: JournalOptions, plain: PlainRun | None = None
) -> JournaledIterator:
    """Run ``pool`` over the items of ``iterable`` that the journal does not hold yet.

    ``plain(pool, items)`` starts an ordinary run of a pool (the journal drives one underneath).
    Opens (or creates) the journal at once, so a journal written for another run is refused
    before anything runs. See :class:`JournaledIterator`.
    """
    if plain is None:
        from ._pool import plain_run

        plain = plain_run
    return JournaledIterator(pool, iterable, options, plain)

