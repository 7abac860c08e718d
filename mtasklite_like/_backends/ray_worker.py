"""What each Ray actor runs: it builds the worker's object in its constructor, then runs batches.

The class here is plain Python; the backend turns it into a Ray actor class (``ray.remote``) when
it first needs one, so importing this module never imports Ray. Every method returns a tuple the
caller decodes (see ``ray.py``); nothing is raised to Ray on purpose, so Ray's error wrappers are
met only when the actor itself dies.

- *Construction* never raises: an exception in the initializer, the environment or the object's
  ``__init__`` is kept, with its traceback text, and :meth:`RayWorker.ready` reports it, so it
  reaches the caller as the original exception (a ``WorkerInitError`` whose cause it is).
- *Results and exceptions* are checked before they are returned: a result or an exception that
  cannot be pickled fails its item alone (``TaskPicklingError``) instead of failing the call.
  The same pickling pass, with large buffers left out of band (not copied), measures the size of
  what is returned.
- *Which item was running.* The actor writes the batch and position of each item it starts into
  a small memory-mapped file of its own. When the actor dies, a caller on the same machine reads
  it (a random token written at its start proves it is the same file), so the death is reported
  against that item only; elsewhere the batch it was running is known, not the position.
- ``SystemExit`` or ``KeyboardInterrupt`` raised by a task ends the worker, as it would end a
  process: the actor reports it against the item, and the caller replaces the actor.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import pickle
import secrets
import struct
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from typing import Any

from .._errors import TaskPicklingError
from .._serialize import dumps, loads
from .._worker import WorkerSpec, build_worker_callable, run_batch

__all__ = [
    "DIED",
    "DONE",
    "INIT_ERROR",
    "PROGRESS_SIZE",
    "READY",
    "RayWorker",
    "Unsendable",
    "measure",
    "pack_exception",
]

# What a call returns first.
DONE = 0
INIT_ERROR = 1
READY = 2
DIED = 3

#: the progress file: a token, then the running batch id and position (three int64)
PROGRESS_SIZE = 24


class Unsendable:
    """Stands in a batch for an item that could not be pickled; the worker fails that item."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def pack_exception(exc: BaseException, where: str) -> tuple[BaseException, str]:
    """An exception and its traceback text, both safe to pickle back to the caller."""
    tb_text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    try:
        # Classes whose constructor needs other arguments than ``args`` pickle but do not unpickle.
        loads(dumps(exc))
    except Exception as cause:
        exc = TaskPicklingError(
            f"{where} raised {type(exc).__name__}: {exc}; the exception could not be pickled "
            f"back to the caller ({type(cause).__name__}: {cause}). Its traceback follows."
        )
    return exc, tb_text


def measure(obj: Any) -> int:
    """Bytes ``obj`` pickles to, large buffers (NumPy arrays, ...) counted but not copied.

    Raises when neither the standard pickler nor cloudpickle (what Ray uses) can pickle it.
    """
    size = 0

    def count(buf: pickle.PickleBuffer) -> bool:
        nonlocal size
        size += buf.raw().nbytes
        return False  # out of band: the pickle keeps a reference, the data is not copied

    try:
        data = pickle.dumps(obj, 5, buffer_callback=count)
    except Exception:
        size = 0
        from ray import cloudpickle  # only on the fallback path, and only inside Ray

        data = cloudpickle.dumps(obj, 5, buffer_callback=count)  # type: ignore[no-untyped-call]
    return len(data) + size


class _Progress:
    """The memory-mapped progress file: ``[0]`` the running batch id, ``[1]`` its position."""

    def __init__(self) -> None:
        folder = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        fd, self.path = tempfile.mkstemp(prefix="mtasklite_like-ray-", dir=folder)
        try:
            self.token = secrets.randbits(62)
            os.write(fd, struct.pack("qqq", self.token, -1, -1))
            self._map = mmap.mmap(fd, PROGRESS_SIZE)
        finally:
            os.close(fd)
        self.view = memoryview(self._map)[8:].cast("q")


class RayWorker:
    """One worker: its object is built here, once; each call runs one batch on it."""

    def __init__(self, spec: WorkerSpec) -> None:
        self._index = spec.index
        self._call: Callable[[Any], Any] | None = None
        self._progress: _Progress | None = None
        self._positions: Any = [-1, -1]
        try:
            self._call = build_worker_callable(spec, own_process=True)
        except BaseException as exc:
            self._init: tuple[Any, ...] = (INIT_ERROR, *pack_exception(exc, f"worker {spec.index}"))
            return
        self._init = (READY,)
        # Made once the object is built: an actor killed while it builds (init_timeout) leaves no
        # file behind, since the caller learns its name only from ready().
        with contextlib.suppress(OSError):
            self._progress = _Progress()
            self._positions = self._progress.view

    def ready(self) -> tuple[Any, ...]:
        """``(READY, pid, progress path, token)`` or ``(INIT_ERROR, exception, traceback text)``."""
        if self._init[0] != READY:
            return self._init
        path, token = (self._progress.path, self._progress.token) if self._progress else (None, None)
        return (READY, os.getpid(), path, token)

    def run(
        self, batch_id: int, indices: Sequence[int], items: list[Any], unsendable: bool
    ) -> tuple[Any, ...]:
        """Run one batch: ``(DONE, results, failures, seconds, result bytes)``, failures as
        ``(position, exception, traceback text)``; or ``(DIED, position, cause)`` when a task
        raised ``SystemExit`` or ``KeyboardInterrupt``."""
        call = self._call
        if call is None:  # never sent work before ready() said READY; defensive
            raise RuntimeError("this worker failed to start")
        if unsendable:
            call = _failing_unsendable(call)
        progress = self._positions
        progress[1] = -1  # first: a death in between must not pair this batch with an old position
        progress[0] = batch_id
        t0 = time.perf_counter()
        try:
            results, failures = run_batch(call, items, progress)
        except BaseException as exc:
            cause = f"the task raised {type(exc).__name__}" + (f": {exc}" if str(exc) else "")
            return (DIED, progress[1], cause)
        elapsed = time.perf_counter() - t0
        packed = [(pos, *pack_exception(exc, f"item #{indices[pos]}")) for pos, exc in failures]
        try:
            nbytes = measure(results) if not packed else measure((results, packed))
        except Exception:
            nbytes = _drop_unpicklable(indices, results, packed)
        return (DONE, results, packed, elapsed, nbytes)

    def close(self) -> None:
        """Remove the progress file (called when the pool stops this actor politely)."""
        if self._progress is not None:
            with contextlib.suppress(OSError):
                os.unlink(self._progress.path)


def _drop_unpicklable(
    indices: Sequence[int], results: list[Any], packed: list[tuple[int, BaseException, str]]
) -> int:
    """Fail, in place, the items whose result cannot be pickled; return the size of the rest."""
    failed = {pos for pos, _, _ in packed}
    for pos, value in enumerate(results):
        if pos in failed:
            continue
        try:
            measure(value)
        except Exception as cause:
            results[pos] = None
            packed.append((pos, TaskPicklingError(
                f"the result of item #{indices[pos]} ({type(value).__name__}) could not be pickled to "
                f"send it back to the caller: {type(cause).__name__}: {cause}"
            ), ""))
    packed.sort(key=lambda f: f[0])
    return measure((results, packed))


def _failing_unsendable(call: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def checked(item: Any) -> Any:
        if type(item) is Unsendable:
            raise TaskPicklingError(item.message)
        return call(item)

    return checked


def read_progress(path: str, token: int) -> tuple[int, int] | None:
    """``(batch id, position)`` from an actor's progress file, when it is here and its own."""
    try:
        with open(path, "rb") as f:
            data = f.read(PROGRESS_SIZE)
    except OSError:
        return None
    if len(data) != PROGRESS_SIZE:
        return None
    found, batch_id, position = struct.unpack("qqq", data)
    if found != token:
        return None
    return batch_id, position


def remove_progress(path: str | None, token: int | None) -> None:
    """Delete an actor's progress file, if it is on this machine and still its own."""
    if path is None or token is None or read_progress(path, token) is None:
        return
    with contextlib.suppress(OSError):
        os.unlink(path)
