"""The open journal of a run: created private, checked, locked against other runs, appended to.

Durability: each batch of results the engine hands over is written (one ``writev`` system call) to
the file before the caller sees it, so a crash of the process loses nothing the caller received
(with a ``save_callback``: nothing but the results still waiting for their callback). The file is
``fsync``-ed at a write, or at the end of the run, when at least ``fsync_seconds`` (1 s) have
passed or ``fsync_items`` (1,000,000) results have been written since the last time: a power loss
loses at most the results of one such interval. Lost results are simply computed again.

Loading a journal unpickles its records, which can run code: the run directory is created with
mode 0700, a directory or file that other users can write is refused, and so is a file that does
not start with the header (:mod:`.format`).
"""

from __future__ import annotations

import errno
import os
import stat
import threading
import time
import warnings
from typing import Any

from .format import (
    JournalError,
    JournalMismatchError,
    JournalState,
    JournalWarning,
    header_bytes,
    journal_path,
    parse_journal,
    record_head,
)
from .options import JournalOptions

__all__ = ["Journal"]


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
            state = parse_journal(data, self.path) if data else JournalState()
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
                _write_all(fd, header_bytes(info))
                state = JournalState(header=dict(info))
            else:
                _compare(state.header, info, compare, self.path)
            self.state = state
        except BaseException:
            self.close()
            raise

    def append(self, kind: int, payload: bytes | list[bytes], count: int) -> None:
        """Append one record (its payload as bytes, or as parts written one after another); fsync
        when enough time or results have gone by since the last one."""
        if isinstance(payload, bytes):
            _write_all(self.fd, record_head(kind, payload), payload)
        else:
            _write_all(self.fd, record_head(kind, payload), *payload)
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
    if len(parts) > 512:  # within any system's IOV_MAX
        parts = (b"".join(parts),)
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

