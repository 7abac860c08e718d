"""Serialisation for the process backend: the fast standard pickler first, dill when it must.

The standard ``pickle`` is implemented in C and handles the plain data most items and results are
made of; dill (through ``multiprocess``) handles lambdas, closures and classes defined in
``__main__`` or a notebook, but runs in pure Python. Trying ``pickle`` first and falling back to
dill gets the speed of one and the reach of the other. Anything dill writes can be read back
with ``pickle.loads`` as long as dill is importable, so the receiving side never needs to know.

One case the standard pickler gets wrong without failing: it saves a function or class defined in
``__main__`` by name. A process started by ``spawn`` or ``forkserver`` finds that name again when
``__main__`` is a script (it is re-imported there), but not when it is a notebook, a REPL or
standard input, which have no file to re-import. For those, :func:`dumps` with ``main_by_value``
sends anything that refers to ``__main__`` through dill, which saves it by value.

Large buffers out of band. :func:`dumps_oob` pickles with protocol 5 and takes every buffer of
:data:`OOB_THRESHOLD` bytes or more *out of band*: the pickle keeps a reference, and the buffer
itself is returned beside it as a view of the object's own memory, for the transport to write
without copying it (``_backends/wire.py``). NumPy arrays and other objects that pickle through
``PickleBuffer`` go out of band that way on their own. ``bytes`` and ``bytearray`` are always
written in band by the standard pickler and a ``memoryview`` cannot be pickled at all, so a
message that holds one is pickled by a pickler whose ``persistent_id`` hands them over as
``PickleBuffer`` views; :func:`loads_oob` rebuilds them (a large ``bytearray`` is the received
buffer itself, a ``bytes`` one copy of it: see ``_OOB_TYPES``). That pickler runs only for
messages whose first item, or whose lists, tuples and dicts, hold a large ``bytes`` or
``bytearray`` (or that the standard pickler refused), so small messages are pickled exactly once,
by the C pickler, as before.

Thread-only objects. A ``threading.Lock`` (and the other synchronisation objects of ``threading``,
and ``queue.Queue``) means nothing in another process: a copy there is a new, unconnected object,
so a lock would exclude nobody and a queue would never see the other side's items. The standard
pickler refuses them; dill would copy them without a word. The dill fallback here refuses them
too (:class:`ThreadObjectError`, a ``TypeError`` naming the object and what to use instead), so
sending one to a process worker fails as it does with ``multiprocessing``. The check lives in the
pure-Python dill pickler only: the C pickler has refused these objects already by the time dill
runs, so the fast path is untouched.
"""

from __future__ import annotations

import _thread
import io
import os
import pickle
import queue
import sys
import threading
from collections.abc import Callable
from typing import Any

import dill

__all__ = [
    "OOB_THRESHOLD",
    "ThreadObjectError",
    "copy_in_a_process",
    "dumps",
    "dumps_oob",
    "loads",
    "loads_oob",
    "main_needs_by_value",
    "thread_object_kind",
]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads

#: buffers of at least this many bytes travel out of band (below it, a copy costs less than a
#: separate write and read)
OOB_THRESHOLD = 64 * 1024
# How deep dumps_oob looks into lists, tuples and dicts for large bytes-like objects: a message,
# its list of items, an item, and two levels inside it.
_SCAN_DEPTH = 4


def main_needs_by_value() -> bool:
    """True when ``__main__`` cannot be re-imported by a new process (a notebook, a REPL, stdin)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return not (isinstance(path, str) and os.path.exists(path))


def dumps(obj: Any, *, main_by_value: bool = False) -> bytes:
    """Pickle ``obj``, falling back to dill for what the standard pickler refuses.

    With ``main_by_value``, anything that refers to ``__main__`` goes through dill too (see the
    module docstring). Raises the pickler's own exception when neither can serialise it.
    """
    try:
        data = pickle.dumps(obj, _PROTOCOL)
    except Exception:
        # Standard pickle refuses lambdas, closures and __main__ classes under spawn with
        # PicklingError, AttributeError or TypeError, depending on the object.
        pass
    else:
        if not main_by_value or b"__main__" not in data:
            return data
    return _dill_dumps(obj)


def dumps_oob(obj: Any, *, main_by_value: bool = False) -> tuple[bytes, list[memoryview] | None]:
    """Pickle ``obj`` like :func:`dumps`, with its large buffers out of band.

    Returns the pickle and the buffers it refers to, in order: flat byte views of the objects'
    own memory (nothing is copied), valid as long as ``obj`` is. Read back with :func:`loads_oob`.
    A message without large buffers is exactly what :func:`dumps` returns, and ``None`` for the
    buffers: plain :func:`loads` reads it. An empty list means no buffers but a pickle that only
    :func:`loads_oob` reads (a small ``memoryview`` inside).
    """
    buffers: list[memoryview] = []

    def take(buf: pickle.PickleBuffer) -> bool:
        view = buf.raw()  # the buffers that reach here are contiguous
        if view.nbytes < OOB_THRESHOLD:
            return True  # in band
        buffers.append(view)
        return False

    data: bytes | None = None
    # A batch of large bytes objects goes straight to the buffer pickler: pickling it in band first would
    # copy every buffer only to throw the copy away. The probe looks at the first item only.
    if not _first_item_has_large_bytes(obj):
        try:
            data = pickle.dumps(obj, _PROTOCOL, buffer_callback=take)
        except Exception:
            data = None  # perhaps a memoryview, which the buffer pickler takes; dill otherwise
        else:
            if len(data) >= OOB_THRESHOLD and _large_bytes_inside(obj):
                data = None
            elif not main_by_value or b"__main__" not in data:
                return data, (buffers or None)
    if data is None:
        buffers.clear()
        out = io.BytesIO()
        try:
            _BufferPickler(out, _PROTOCOL, buffer_callback=take).dump(obj)
        except Exception:
            pass
        else:
            data = out.getvalue()
            if not main_by_value or b"__main__" not in data:
                return data, buffers
    buffers.clear()
    return _dill_dumps(obj, take), (buffers or None)


def loads_oob(data: bytes, buffers: list[bytearray] | None) -> Any:
    """Unpickle what :func:`dumps_oob` made; ``buffers`` are its buffers as received, in order.

    Out-of-band arrays are built on the received buffers themselves, without a copy.
    """
    if buffers is None:
        return loads(data)
    return _BufferUnpickler(io.BytesIO(data), buffers=buffers).load()


def _first_item_has_large_bytes(obj: Any) -> bool:
    """A probe in constant time: the elements of tuples, the first element of lists and the first
    value of dicts, ``_SCAN_DEPTH`` levels deep, for a large ``bytes`` or ``bytearray``."""
    level = [obj]
    for _ in range(_SCAN_DEPTH + 1):
        below = []
        for x in level:
            t = type(x)
            if t in _OOB_TYPES:
                if len(x) >= OOB_THRESHOLD:
                    return True
            elif t is tuple:
                if len(x) <= 8:
                    below.extend(x)
            elif t is list:
                if x:
                    below.append(x[0])
            elif t is dict and x:
                below.append(next(iter(x.values())))
        if not below:
            return False
        level = below
    return False


def _large_bytes_inside(obj: Any) -> bool:
    """True when a ``bytes`` or ``bytearray`` of at least the threshold is found in ``obj``'s lists,
    tuples and dicts (``_SCAN_DEPTH`` levels deep); attributes of other objects are not searched."""
    stack: list[tuple[Any, int]] = [(obj, _SCAN_DEPTH)]
    while stack:
        container, depth = stack.pop()
        for x in container.values() if type(container) is dict else container:
            t = type(x)
            if t in _OOB_TYPES:
                if len(x) >= OOB_THRESHOLD:
                    return True
            elif depth and (t is tuple or t is list or t is dict):
                stack.append((x, depth - 1))
    return False


_BYTES, _BYTEARRAY, _MEMORYVIEW = 0, 1, 2
# Large ``bytes`` and ``bytearray`` objects go through the buffer pickler. A ``bytearray`` is rebuilt
# on the received buffer itself; an immutable ``bytes`` costs one copy out of it on the receiving
# side, but the sender writes it straight from the object instead of copying it into the pickle,
# and the receiver reads it with one system call per buffer into memory of the right size instead
# of the connection's chunked reads and the unpickler's copy. Measured with 1 MiB items through 2
# process workers and pipes widened for large messages: 2.5-3x faster than the in-band pickle.
_OOB_TYPES = (bytes, bytearray)


class _BufferPickler(pickle.Pickler):
    """A pickler that hands large ``bytes`` and ``bytearray`` objects, and every ``memoryview``, to the
    buffer callback as ``PickleBuffer`` views (it still decides what goes out of band)."""

    def persistent_id(self, obj: Any) -> Any:
        t = type(obj)
        if t is bytes and len(obj) >= OOB_THRESHOLD:
            return (_BYTES, pickle.PickleBuffer(obj))
        if t is bytearray and len(obj) >= OOB_THRESHOLD:
            return (_BYTEARRAY, pickle.PickleBuffer(obj))
        if t is memoryview:
            flat = obj if obj.c_contiguous else obj.tobytes()  # C order, as the shape is rebuilt
            return (_MEMORYVIEW, pickle.PickleBuffer(flat), obj.format, obj.shape, obj.readonly)
        return None


class _BufferUnpickler(pickle.Unpickler):
    """Rebuilds what :class:`_BufferPickler` took out of the pickle."""

    def persistent_load(self, pid: Any) -> Any:
        kind, buf = pid[0], pid[1]
        if kind == _BYTES:
            return bytes(buf)
        if kind == _BYTEARRAY:
            return buf if type(buf) is bytearray else bytearray(buf)
        if kind == _MEMORYVIEW:
            fmt, shape, readonly = pid[2:]
            view = memoryview(buf)
            if readonly and not view.readonly:
                view = view.toreadonly()
            if view.format != fmt or view.shape != shape:
                try:
                    view = view.cast("B").cast(fmt, shape)
                except (TypeError, ValueError):
                    pass  # a format cast() does not take: the bytes, flat
            return view
        raise pickle.UnpicklingError(f"unknown persistent id {kind!r}")


# -- thread-only objects ------------------------------------------------------------------------------

#: the synchronisation objects of ``threading`` and the queues of ``queue``, by class: the name users
#: know them by, and what process workers can share instead (``multiprocess`` is what the process
#: backend runs on; its Manager serves one object to every process through a proxy)
_THREAD_ONLY: dict[type, tuple[str, str]] = {
    _thread.LockType: ("threading.Lock", "Lock"),
    _thread.RLock: ("threading.RLock", "RLock"),
    threading._PyRLock: ("threading.RLock", "RLock"),  # type: ignore[attr-defined]
    threading.Condition: ("threading.Condition", "Condition"),
    threading.BoundedSemaphore: ("threading.BoundedSemaphore", "BoundedSemaphore"),
    threading.Semaphore: ("threading.Semaphore", "Semaphore"),
    threading.Event: ("threading.Event", "Event"),
    threading.Barrier: ("threading.Barrier", "Barrier"),
    queue.LifoQueue: ("queue.LifoQueue", "Queue"),
    queue.PriorityQueue: ("queue.PriorityQueue", "Queue"),
    queue.Queue: ("queue.Queue", "Queue"),
    queue.SimpleQueue: ("queue.SimpleQueue", "Queue"),
}
_RAW_NAMES = {_thread.LockType: "_thread.lock", _thread.RLock: "_thread.RLock"}


def thread_object_kind(obj: Any) -> tuple[str, str] | None:
    """``(name, method)`` when ``obj`` is a thread-only object (a lock, condition, event, semaphore,
    barrier or queue of ``threading``/``queue``), else None; ``method`` is the
    ``multiprocess.Manager()`` method that makes one that processes share.

    Exact classes only: ``multiprocess.Barrier`` subclasses ``threading.Barrier`` and is made to
    be shared by processes. A subclass of one of these still holds the locks it is built on, and
    those are found in its turn."""
    return _THREAD_ONLY.get(type(obj))


class ThreadObjectError(TypeError):
    """A thread-only object (a ``threading.Lock``, ``Event``, ``queue.Queue``, ...) was about to be
    pickled for another process, where it would be an unconnected copy.

    ``obj`` is the object, ``kind`` the name users know it by (``'threading.Lock'``) and
    ``replacement`` what process workers can share instead (``'multiprocess.Manager().Lock()'``).
    """

    def __init__(self, obj: Any) -> None:
        kind, method = thread_object_kind(obj) or (type(obj).__qualname__, "Lock")
        self.obj = obj
        self.kind = kind
        self.replacement = f"multiprocess.Manager().{method}()"
        raw = _RAW_NAMES.get(type(obj), f"{type(obj).__module__}.{type(obj).__qualname__}")
        super().__init__(
            f"cannot pickle {raw!r} object ({kind}, {obj!r:.60}): {copy_in_a_process(kind)}. To share "
            f"one with process workers, make it with {self.replacement}, or run the workers as threads "
            "(use_threads=True), which share this one"
        )


def copy_in_a_process(kind: str) -> str:
    """Why a thread-only object of ``kind`` (``'threading.Lock'``) cannot go to a process, in words."""
    if kind.startswith("queue."):
        return f"a copy in another process would be a separate {kind}: no item put on one reaches the other"
    return f"a copy in another process would be a separate {kind} that does not synchronise with this one"


def _dill_dumps(obj: Any, buffer_callback: Callable[[pickle.PickleBuffer], bool] | None = None) -> bytes:
    """What ``dill.dumps(obj, protocol, byref=False, recurse=True)`` writes (lambdas, closures and
    ``__main__`` code by value), refusing thread-only objects rather than copying them.

    The refusal wraps the pickler's ``save``, which it calls for every object, on the instance: a
    subclass would change what dill writes (some of its functions ask whether the pickler's class
    comes from dill's own module)."""
    out = io.BytesIO()
    pickler = dill.Pickler(out, _PROTOCOL, byref=False, recurse=True, buffer_callback=buffer_callback)
    save = pickler.save

    def refusing_save(obj: Any, save_persistent_id: bool = True) -> None:
        if type(obj) in _THREAD_ONLY:
            raise ThreadObjectError(obj)
        save(obj, save_persistent_id)

    pickler.save = refusing_save
    pickler.dump(obj)
    return out.getvalue()
