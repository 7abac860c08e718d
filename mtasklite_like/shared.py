"""NumPy arrays in shared memory that process workers read and write in place.

The usual recipe (a ``multiprocessing.sharedctypes`` array as a global, ``Pool.map`` over a
``functools.partial``, workers writing ``out[i, :] = ...``) is replaced by a handle that can go
anywhere a task argument can::

    from mtasklite_like import Pool
    from mtasklite_like.shared import shared_array, share

    with shared_array((len(images), 128), "float32") as out, share(weights) as w:
        tasks = Pool(lambda i: out.__setitem__(i, embed(images[i], w.array)), n_jobs=4)
        for _ in tasks(range(len(images))):
            pass
        result = out.copy()        # the memory is freed when the block ends

A [`SharedArray`][mtasklite_like.shared.SharedArray] pickles as its name, shape and dtype, never as its data:
a worker that receives it maps the same memory (``multiprocessing.shared_memory``), under every start method.
Under ``fork`` the workers inherit the mapping; threads simply share the object.

Lifetime: the process that created the array owns it and removes it from ``/dev/shm`` when the ``with`` block
ends (or on [`SharedArray.close`][mtasklite_like.shared.SharedArray.close], when the object is
garbage-collected, or at interpreter exit, Ctrl-C included). Workers only map it: a worker that dies, even by
SIGKILL, leaves nothing behind. If the owner itself is killed without a chance to clean up (SIGKILL), the
standard library's resource tracker, a small process started with the first array, removes the segment once
the owner and its workers are gone (and prints a "leaked shared_memory" warning saying so); only a kill of the
tracker too (e.g. SIGKILL to the whole process group) leaks it.

NumPy is an optional dependency: ``pip install "mtasklite-like[numpy]"``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sys
import threading
import weakref
from multiprocessing import resource_tracker, shared_memory
from types import TracebackType
from typing import Any

try:
    import numpy as np
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without NumPy
    raise ImportError(
        'mtasklite_like.shared needs NumPy, an optional dependency: pip install "mtasklite-like[numpy]"'
    ) from exc

__all__ = ["SharedArray", "share", "shared_array"]

#: names of this package's segments in /dev/shm start with this
NAME_PREFIX = "mtl_"

# Arrays this process created, by name: a handle unpickled in the owner (e.g. in a result) is the
# owner's own object, and fork children inherit this table, so they reuse the inherited mapping.
_owned: weakref.WeakValueDictionary[str, SharedArray] = weakref.WeakValueDictionary()
# Arrays this process attached to, by name, so that one process maps a segment once at a time.
_attached: weakref.WeakValueDictionary[str, SharedArray] = weakref.WeakValueDictionary()
_lock = threading.Lock()


class _Segment(shared_memory.SharedMemory):
    """A shared memory segment that is never unmapped under a live NumPy view.

    ``SharedMemory.close()`` unmaps the memory at once. A NumPy array made on the mapping keeps the
    mapping object alive but holds no buffer export that would stop the unmap, so touching the
    array afterwards would crash the process. Here closing only drops this object's references
    (and the file descriptor): the mapping is unmapped when the last array using it is gone.
    """

    def close(self) -> None:
        self._buf = None
        self._mmap = None
        fd = getattr(self, "_fd", -1)
        if fd >= 0:
            self._fd = -1
            with contextlib.suppress(OSError):
                os.close(fd)


def _ignore_registration(name: Any, rtype: str) -> None:
    pass


def _attach_segment(name: str) -> _Segment:
    """Map an existing segment without registering it with the resource tracker.

    Only the creator may unlink a segment. Before Python 3.13 every attachment registers the
    segment with the resource tracker of the attaching process, which then unlinks it (with a
    "leaked" warning) when that process ends, under the creator's feet; 3.13 has ``track=False``.
    """
    if sys.version_info >= (3, 13):
        return _Segment(name, track=False)
    register = resource_tracker.register
    resource_tracker.register = _ignore_registration
    try:
        return _Segment(name)
    finally:
        resource_tracker.register = register


def _create_segment(nbytes: int) -> _Segment:
    while True:
        name = NAME_PREFIX + secrets.token_hex(8)
        try:
            # Registered with the resource tracker: it removes the segment if this process is killed.
            return _Segment(name, create=True, size=max(nbytes, 1))
        except FileExistsError:
            continue


def _free(segment: _Segment, owner_pid: int) -> None:
    """Remove the segment from /dev/shm and unmap it here (the owner only: never a fork child)."""
    if os.getpid() != owner_pid:
        return
    try:
        segment.unlink()
    except FileNotFoundError:
        # Removed by someone else; still tell the tracker, or it warns about a leak at exit.
        with contextlib.suppress(Exception):
            resource_tracker.unregister(segment._name, "shared_memory")  # type: ignore[attr-defined]
    segment.close()


def _check_dtype(dtype: Any) -> np.dtype[Any]:
    kind: np.dtype[Any] = np.dtype(dtype)
    if kind.hasobject:
        raise TypeError(
            f"dtype {kind} holds Python objects, whose pointers mean nothing in another process; "
            "use a numeric, bool, fixed-width string or structured dtype"
        )
    return kind


def _check_shape(shape: Any) -> tuple[int, ...]:
    dims = (shape,) if isinstance(shape, (int, np.integer)) else tuple(shape)
    if any(isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 0 for d in dims):
        raise ValueError(f"shape must be a whole number or a tuple of whole numbers >= 0, not {shape!r}")
    return tuple(int(d) for d in dims)


class SharedArray:
    """A NumPy array in shared memory, passed to workers by name.

    Index it like the array (``out[i] = row``, ``x = inp[i]``), or take the NumPy view with
    [`array`][mtasklite_like.shared.SharedArray.array] or ``numpy.asarray(shared)``. Made by
    [`shared_array`][mtasklite_like.shared.shared_array] or [`share`][mtasklite_like.shared.share]; a context
    manager that frees the memory on exit. Pickling gives a small handle (name, shape, dtype, read-only flag);
    unpickling it in another process maps the same memory.
    """

    def __init__(
        self,
        segment: _Segment,
        shape: tuple[int, ...],
        dtype: np.dtype[Any],
        readonly: bool,
        owner_pid: int | None,
    ) -> None:
        self.name: str = segment.name
        self.shape = shape
        self.dtype = dtype
        self.readonly = readonly
        self._segment: _Segment | None = segment
        view: np.ndarray[Any, Any] = np.ndarray(shape, dtype=dtype, buffer=segment.buf)
        if readonly:
            view.flags.writeable = False
        self._array: np.ndarray[Any, Any] | None = view
        self._owner = owner_pid is not None
        self._finalizer = weakref.finalize(self, _free, segment, owner_pid) if owner_pid is not None else None

    # -- the array ---------------------------------------------------------------------------------------

    @property
    def array(self) -> np.ndarray[Any, Any]:
        """The NumPy view of the shared memory (read-only for a read-only array)."""
        if self._array is None:
            raise ValueError(
                f"shared array {self.name} was freed (its with block ended or close() was called); "
                "copy what you need with .copy() before that"
            )
        return self._array

    @property
    def closed(self) -> bool:
        """True once this process can no longer use the array (freed, or detached)."""
        return self._array is None

    @property
    def ndim(self) -> int:
        """The number of dimensions, as ``ndarray.ndim``."""
        return len(self.shape)

    @property
    def size(self) -> int:
        """The number of elements, as ``ndarray.size``."""
        return int(np.prod(self.shape, dtype=np.int64))

    @property
    def nbytes(self) -> int:
        """The size of the data in bytes, as ``ndarray.nbytes``."""
        return self.size * self.dtype.itemsize

    def __getitem__(self, index: Any) -> Any:
        return self.array[index]

    def __setitem__(self, index: Any, value: Any) -> None:
        self.array[index] = value

    def __len__(self) -> int:
        return len(self.array)

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray[Any, Any]:
        if copy:
            return np.array(self.array, dtype=dtype, copy=True)
        return self.array if dtype is None else self.array.astype(dtype, copy=False)

    def copy(self) -> np.ndarray[Any, Any]:
        """A private copy of the data, which outlives the shared memory."""
        data: np.ndarray[Any, Any] = self.array.copy()
        return data

    # -- lifetime ------------------------------------------------------------------------------------------

    def close(self) -> None:
        """Free the memory (in the process that created the array) or unmap it (in a worker).

        NumPy views taken with [`array`][mtasklite_like.shared.SharedArray.array] stay valid until they are
        dropped.
        """
        self._array = None
        segment, self._segment = self._segment, None
        if self._finalizer is not None:
            self._finalizer()
        elif segment is not None:
            segment.close()

    def __enter__(self) -> SharedArray:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- crossing to workers -----------------------------------------------------------------------------

    def __reduce__(self) -> tuple[Any, ...]:
        if self._array is None:
            raise ValueError(
                f"shared array {self.name} was freed, so it cannot be sent to a worker; keep the tasks "
                "that use it inside its with block"
            )
        return _attach, (self.name, self.shape, self.dtype, self.readonly)

    def __repr__(self) -> str:
        state = "freed" if self._array is None else ("owner" if self._owner else "attached")
        mode = ", read-only" if self.readonly else ""
        return f"<SharedArray {self.name} shape={self.shape} dtype={self.dtype}{mode} ({state})>"


def _attach(name: str, shape: tuple[int, ...], dtype: np.dtype[Any], readonly: bool) -> SharedArray:
    """Unpickle a handle: the owner's object in the owner (and fork children), else a mapping."""
    with _lock:
        for table in (_owned, _attached):
            found = table.get(name)
            if found is not None and not found.closed:
                return found
        try:
            segment = _attach_segment(name)
        except FileNotFoundError:
            raise FileNotFoundError(
                f"shared array {name} no longer exists: it was freed by the process that created it "
                "(its with block ended) while a task still used it"
            ) from None
        shared = SharedArray(segment, shape, dtype, readonly, owner_pid=None)
        _attached[name] = shared
        return shared


def shared_array(shape: int | tuple[int, ...], dtype: Any = np.float64) -> SharedArray:
    """A new zero-filled array of ``shape`` and ``dtype`` in shared memory, for tasks to write into.

    Use it as a context manager: the memory is freed when the block ends.
    """
    dims = _check_shape(shape)
    kind = _check_dtype(dtype)
    nbytes = int(np.prod(dims, dtype=np.int64)) * kind.itemsize
    segment = _create_segment(nbytes)
    shared = SharedArray(segment, dims, kind, readonly=False, owner_pid=os.getpid())
    with _lock:
        _owned[shared.name] = shared
    return shared


def share(array: Any, *, readonly: bool = True) -> SharedArray:
    """A copy of ``array`` in shared memory, for many tasks to read without copying it to each.

    Read-only by default (NumPy refuses writes, in the caller and in workers); pass
    ``readonly=False`` to let tasks write into it too. Use it as a context manager.
    """
    source = np.asarray(array)
    shared = shared_array(source.shape, source.dtype)
    np.copyto(shared.array, source)
    if readonly:
        shared.readonly = True
        view = shared.array
        view.flags.writeable = False
    return shared
