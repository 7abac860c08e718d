"""The journal's file format: header, records, checksums, and reading a whole file back.

File format (version 1), all integers little-endian:

``header``
    ``MAGIC`` (8 bytes), version (u16), length of the JSON text (u32), the JSON text (UTF-8), CRC-32
    of the JSON text (u32). The JSON says what identifies the run: the function
    (``module:qualname``), the kind of key, a fingerprint of the first input keys and whether
    results are stored. It is plain data, read before anything is unpickled.
``record`` (repeated)
    payload length (u32), CRC-32 of the length, kind and payload (u32), kind (u8), payload (a
    pickle). Kinds: ``1`` finished items ``(keys, results)``, ``2`` finished items without their
    results ``keys``, ``3`` failed items ``(keys, exceptions)``, ``4`` finished items as the
    workers pickled their results: u32 length of the keys' pickle, that pickle, then for each batch
    a u32 length and the pickle of its list of results (the caller writes the workers' bytes
    instead of pickling the results a second time).

Records are only ever appended. A record whose bytes run past the end of the file, or the last
record when its checksum is wrong, is a write torn by a crash: it is cut off (with a
:class:`JournalWarning`) and its items are computed again. A bad checksum anywhere else is damage
the library will not guess about: :class:`JournalError`. Nothing is unpickled before its checksum
matches. The open file (locking, permissions, appending) is :mod:`.file`.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .._backends.serialize import dumps
from .._errors import (
    JournalError,
    JournalMismatchError,
    JournalPicklingError,
    JournalWarning,
    MtaskliteLikeError,
)

__all__ = [
    "JOURNAL_FILE",
    "KIND_DONE",
    "KIND_DONE_NO_RESULT",
    "KIND_DONE_RAW",
    "KIND_FAILED",
    "MAGIC",
    "NO_RESULT",
    "VERSION",
    "JournalError",
    "JournalMismatchError",
    "JournalPicklingError",
    "JournalState",
    "JournalWarning",
    "decode_raw",
    "encode_done",
    "encode_done_raw",
    "encode_failed",
    "header_bytes",
    "journal_path",
    "load_pickle",
    "parse_journal",
    "read_journal",
    "record_head",
    "unpicklable",
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
KIND_DONE_RAW = 4
_KINDS = (KIND_DONE, KIND_DONE_NO_RESULT, KIND_FAILED, KIND_DONE_RAW)
_U32 = struct.Struct("<I")


#: modules whose classes journals written by earlier versions name, and where those classes live now
_MOVED_MODULES = {"mtasklite_like._journal_format": "mtasklite_like._errors"}


class _CompatUnpickler(pickle.Unpickler):
    """Finds the classes an older journal names by the module they lived in then."""

    def find_class(self, module: str, name: str) -> Any:
        return super().find_class(_MOVED_MODULES.get(module, module), name)


def load_pickle(data: bytes) -> Any:
    """Unpickle a journal record. Records name the classes of stored exceptions by module; an old
    journal may name a module that has since moved (``_MOVED_MODULES``), and resumes all the same
    (only such a record pays for the slower, redirecting unpickler)."""
    try:
        return pickle.loads(data)
    except ModuleNotFoundError as exc:
        if exc.name not in _MOVED_MODULES:
            raise
        return _CompatUnpickler(io.BytesIO(data)).load()


#: what ``JournalState.done`` holds for an item whose result was not stored
NO_RESULT = object()


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
        if value is NO_RESULT:
            raise KeyError(f"{key!r} finished, but its result was not stored (journal_results=False)")
        return value


# -- writing: the bytes of a header and of a record -------------------------------------------------


def header_bytes(info: dict[str, Any]) -> bytes:
    """The header of a new journal identifying the run described by ``info``."""
    text = json.dumps(info, sort_keys=True).encode("utf-8")
    return MAGIC + _HEAD.pack(VERSION, len(text)) + text + _CRC.pack(zlib.crc32(text))


def record_head(kind: int, payload: bytes | Sequence[bytes]) -> bytes:
    """The 9 bytes written before ``payload`` (bytes, or the parts written one after another): its
    length, the CRC-32 of length, kind and payload, and the kind. One checksum covers a whole
    record, however many items it holds."""
    parts = [payload] if isinstance(payload, bytes) else payload
    length = sum(len(p) for p in parts)
    crc = zlib.crc32(_REC_LEN_KIND.pack(length, kind))
    for part in parts:
        crc = zlib.crc32(part, crc)
    return _REC.pack(length, crc, kind)


def encode_done(keys: Sequence[Any], results: Sequence[Any], with_results: bool) -> bytes:
    """The payload of a record of finished items: one pickle for the whole batch."""
    if with_results:
        return dumps((keys, results))
    return dumps(keys)


def encode_done_raw(keys: Sequence[Any], blobs: Sequence[bytes]) -> list[bytes]:
    """The payload of a record of finished items whose results come pickled by the workers, one
    pickle per batch, in order: as parts, to be written together (see ``KIND_DONE_RAW``)."""
    head = dumps(keys)
    parts = [_U32.pack(len(head)), head]
    for blob in blobs:
        parts.append(_U32.pack(len(blob)))
        parts.append(blob)
    return parts


def decode_raw(payload: bytes) -> tuple[Any, list[Any]]:
    """``(keys, results)`` of a ``KIND_DONE_RAW`` payload."""
    (n,) = _U32.unpack_from(payload, 0)
    keys = load_pickle(payload[4 : 4 + n])
    results: list[Any] = []
    pos = 4 + n
    while pos < len(payload):
        (m,) = _U32.unpack_from(payload, pos)
        results.extend(load_pickle(payload[pos + 4 : pos + 4 + m]))
        pos += 4 + m
    return keys, results


def unpicklable(
    keys: Sequence[Any], results: Sequence[Any], with_results: bool
) -> list[tuple[int, BaseException]]:
    """Positions of results that cannot be pickled, each with the error that replaces it.

    Called only after the batch as a whole failed to pickle: finds the culprits one by one. A key
    that cannot be pickled is the user's key function's fault and fails the run.
    """
    try:
        encode_done(keys, results, with_results)
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


def encode_failed(keys: Sequence[Any], errors: Sequence[Any]) -> bytes:
    """The payload of a record of failed items; an exception that cannot be pickled is stored as
    a :class:`MtaskliteLikeError` carrying its type and message."""
    try:
        return dumps((list(keys), list(errors)))
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


# -- reading ----------------------------------------------------------------------------------------


def parse_journal(data: bytes, path: str) -> JournalState:
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
            body = decode_raw(payload) if kind == KIND_DONE_RAW else load_pickle(payload)
        except Exception as exc:
            raise JournalError(
                f"{path}: the record at byte {pos} cannot be unpickled ({type(exc).__name__}: {exc}); "
                "are the classes of the stored results importable?"
            ) from exc
        _apply(state, kind, body)
        state.records += 1
        pos = stop
    state.valid_size = pos
    state.torn_bytes = size - pos
    return state


def _apply(state: JournalState, kind: int, body: Any) -> None:
    """Add one record to ``state``: a later record wins over an earlier one for the same key."""
    done, failed = state.done, state.failed
    if kind in (KIND_DONE, KIND_DONE_RAW):
        keys, values = body
        done.update(zip(keys, values))
        if failed:
            for k in keys:
                failed.pop(k, None)
    elif kind == KIND_DONE_NO_RESULT:
        done.update(dict.fromkeys(body, NO_RESULT))
        if failed:
            for k in body:
                failed.pop(k, None)
    else:
        keys, excs = body
        for k, e in zip(keys, excs):
            if k not in done:
                failed[k] = e


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
    return parse_journal(data, path)
