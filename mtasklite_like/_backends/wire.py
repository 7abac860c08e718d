"""Messages on the process backend's pipes, with large buffers written straight through.

What a message says is one of the types of ``messages``, as the tuple ``messages.to_wire``
makes of it. On the pipe it is a pickle and, when it holds large buffers (see
``serialize.dumps_oob``), the buffers themselves. Without buffers it is one
``Connection.send_bytes`` of the pickle, exactly as before. With buffers it is a header message
(a zero byte, the buffer count and sizes, then the pickle) followed by each buffer's bytes written
raw to the pipe's file descriptor: the sender writes from the object's own memory, and the
receiver reads into a ``bytearray`` allocated at the announced size, on which the object is
rebuilt. The kernel's copies (into the pipe, out of it) are the only ones; an in-band pickle adds
one into the pickle, and several on the way out of it.

Why the pipe rather than shared memory: measured on 1 MiB and 8 MiB payloads (round trips between
two processes, see docs/architecture.md), writing through the pipe was faster than creating a
``multiprocessing.shared_memory`` segment per message (creating, mapping, faulting in fresh pages
and unlinking cost more than the copy they save), and it leaves nothing in ``/dev/shm`` to leak
when a process is killed: a pipe goes away with its processes.

A pickle always starts with the ``PROTO`` opcode (0x80), so a leading zero byte is unambiguous.
The raw bytes follow their header on the same pipe, and ``Connection`` reads exactly the bytes of
a message, never ahead, so the two framings never mix. One writer and one reader per pipe.
"""

from __future__ import annotations

import os
import select
import struct
import sys
from collections.abc import Callable
from typing import Any

from .messages import Message, wire_code
from .serialize import loads_oob

__all__ = [
    "decode", "leading_fields", "message_size", "pipe_capacity", "readable_check", "recv_message",
    "send_message",
]

_MULTIPART = 0
_COUNT = struct.Struct("<BI")
#: a pipe's capacity unless widened (Linux)
_DEFAULT_PIPE = 1 << 16
#: the most a pipe is widened to, and the total over all of a pool's pipes (see pipe_capacity)
_WIDEST_PIPE = 1 << 20
_ALL_PIPES = 16 << 20
#: fcntl's F_SETPIPE_SZ (Linux only; Python >= 3.10 names it)
_SETPIPE_SZ: int | None = 1031 if sys.platform == "linux" else None


def pipe_capacity(n_pipes: int) -> int:
    """The capacity a pipe is widened to when a message larger than the default 64 KiB crosses it.

    A 64 KiB pipe makes the writer of a 1 MiB message wait until the reader has taken all but the
    last 64 KiB: the caller, which writes every worker's batches from one thread, then idles while
    each worker reads, and so does a worker behind the caller. With a pipe about as large as the
    message the write returns at once and the two sides overlap (measured: 2,000 x 1 MiB ``bytes``
    through 2 workers, 30-40% faster). The kernel counts every pipe's nominal capacity against a
    per-user limit (``/proc/sys/fs/pipe-user-pages-soft``, 64 MiB by default), beyond which it
    makes the user's new pipes tiny, so a pool's pipes together are kept to 16 MiB: 1 MiB each up
    to 8 workers, less with more.
    """
    return max(_DEFAULT_PIPE, min(_WIDEST_PIPE, _ALL_PIPES // max(1, n_pipes)))


def _widen(fd: int, capacity: int) -> None:
    """Make the pipe ``fd`` hold ``capacity`` bytes, where the system allows it (Linux; an
    unprivileged user within its limits); elsewhere, or when refused, it stays as it is."""
    if _SETPIPE_SZ is None:
        return
    try:
        import fcntl

        fcntl.fcntl(fd, _SETPIPE_SZ, capacity)
    except OSError:
        pass


def send_message(conn: Any, data: bytes, buffers: list[memoryview] | None, capacity: int = 0) -> int:
    """Send a pickle and its out-of-band buffers (None: a plain pickle, see ``dumps_oob``);
    return the serialised size, buffers included.

    ``capacity``: widen the pipe to this (see :func:`pipe_capacity`) before sending a message
    larger than a pipe holds by default; 0 leaves the pipe as it is. One system call per large
    message, none for small ones.
    """
    if buffers is None:
        if capacity and len(data) > _DEFAULT_PIPE:
            _widen(conn.fileno(), capacity)
        conn.send_bytes(data)
        return len(data)
    sizes = [b.nbytes for b in buffers]
    if capacity:
        _widen(conn.fileno(), capacity)
    head = _COUNT.pack(_MULTIPART, len(sizes)) + struct.pack(f"<{len(sizes)}Q", *sizes)
    conn.send_bytes(head + data)
    fd = conn.fileno()
    for buf in buffers:
        _write_all(fd, buf)
    return len(head) + len(data) + sum(sizes)


def message_size(data: bytes, buffers: list[memoryview] | None) -> int:
    """What :func:`send_message` returns for this message, without sending it."""
    if buffers is None:
        return len(data)
    return _COUNT.size + 8 * len(buffers) + len(data) + sum(b.nbytes for b in buffers)


def recv_message(conn: Any, wait: Callable[[int], None] | None = None
                 ) -> tuple[bytes, list[bytearray] | None, int]:
    """Read one message: its pickle, its buffers and its serialised size (as ``send_message``).

    ``wait(fd)``, if given, is called before each read of buffer bytes that may block (a worker
    uses it to notice that its parent is gone). Raises ``EOFError`` if the pipe closes midway.
    """
    data = conn.recv_bytes()
    if not data or data[0] != _MULTIPART:
        return data, None, len(data)
    _, count = _COUNT.unpack_from(data)
    start = _COUNT.size + 8 * count
    sizes = struct.unpack_from(f"<{count}Q", data, _COUNT.size)
    fd = conn.fileno()
    buffers = []
    for size in sizes:
        buf = bytearray(size)
        _read_into(fd, buf, wait)
        buffers.append(buf)
    return data[start:], buffers, len(data) + sum(sizes)


def readable_check(conn: Any) -> Callable[[], bool]:
    """A check, without waiting, that ``conn`` has something to read (or was closed): one ``poll``
    system call on a poller made once. ``conn.poll(0)`` makes a selector on every call, which
    counts when a worker sends many small messages (log records) and each is looked for alone."""
    if not hasattr(select, "poll"):
        return lambda: bool(conn.poll(0))
    poller = select.poll()
    poller.register(conn.fileno(), select.POLLIN)
    return lambda: bool(poller.poll(0))


def decode(data: bytes, buffers: list[bytearray] | None) -> Any:
    """The object a message carries (its buffers become the objects' memory)."""
    return loads_oob(data, buffers)


#: opcodes that push an integer, and those that may come before a tuple's first element
_INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_PREAMBLE_OPS = frozenset({"PROTO", "FRAME", "MARK"})


def leading_fields(data: bytes, kinds: tuple[type[Message], ...], count: int) -> tuple[int, ...] | None:
    """The first ``count`` fields of the message a pickle holds (``messages.to_wire``), when it
    is of one of ``kinds`` and those fields are integers, read without unpickling it; None
    otherwise.

    For a message that cannot be unpickled (a class the receiver cannot import, a ``__reduce__``
    that raises): its kind and its first fields (a batch id) still say which batch it was, so the
    batch can be settled instead of taking the whole process or run down.
    """
    import pickletools

    codes = {wire_code(kind) for kind in kinds}
    found: list[int] = []
    try:
        for op, arg, _ in pickletools.genops(data):
            if op.name in _INT_OPS and isinstance(arg, int) and not isinstance(arg, bool):
                if not found and arg not in codes:
                    return None
                found.append(arg)
                if len(found) > count:
                    return tuple(found[1:])
            elif op.name not in _PREAMBLE_OPS:
                return None
    except ValueError:
        pass
    return None


def _write_all(fd: int, buf: memoryview) -> None:
    view = buf
    while view.nbytes:
        written = os.write(fd, view)
        view = view[written:]


def _read_into(fd: int, buf: bytearray, wait: Callable[[int], None] | None) -> None:
    view = memoryview(buf)
    got, size = 0, len(buf)
    if wait is None:
        while got < size:
            n = os.readv(fd, [view[got:]])
            if n == 0:
                raise EOFError("the pipe closed in the middle of a message")
            got += n
        return
    # Non-blocking while the bytes flow (one system call per read, as above); ``wait`` only when
    # the pipe is empty. ``Connection`` needs the descriptor blocking again afterwards.
    os.set_blocking(fd, False)
    try:
        while got < size:
            try:
                n = os.readv(fd, [view[got:]])
            except BlockingIOError:
                wait(fd)
                continue
            if n == 0:
                raise EOFError("the pipe closed in the middle of a message")
            got += n
    finally:
        os.set_blocking(fd, True)


def wait_readable(fd: int, timeout: float, on_timeout: Callable[[], None]) -> None:
    """Block until ``fd`` is readable, calling ``on_timeout`` every ``timeout`` seconds meanwhile."""
    while not select.select([fd], [], [], timeout)[0]:
        on_timeout()
