"""A wake-up pipe: lets another thread cut short a wait on file descriptors (``Backend.wake``).

A backend that waits with ``select``-like calls (``multiprocess.connection.wait``) adds
:attr:`WakePipe.fd` to what it waits on; :meth:`WakePipe.wake`, from any thread, writes a byte
that ends the wait, and :meth:`WakePipe.drain` reads the bytes back.
"""

from __future__ import annotations

import contextlib
import os
import threading

__all__ = ["WakePipe"]


class WakePipe:
    """The read end to wait on, and a thread-safe ``wake`` that is harmless after ``close``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        read, write = os.pipe()
        os.set_blocking(read, False)
        os.set_blocking(write, False)
        self.fd: int | None = read
        self._write: int | None = write

    def wake(self) -> None:
        with self._lock:
            if self._write is not None:
                with contextlib.suppress(OSError):  # full: a wake-up is pending already
                    os.write(self._write, b"w")

    def drain(self) -> None:
        fd = self.fd
        if fd is not None:
            with contextlib.suppress(OSError):
                os.read(fd, 4096)

    def close(self) -> None:
        with self._lock:  # never write into a descriptor number the process may reuse
            fds, self.fd, self._write = (self.fd, self._write), None, None
        for fd in fds:
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
