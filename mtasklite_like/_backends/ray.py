"""The Ray backend: each worker is one Ray actor, driven directly with ``ray.wait``.

Actors
    One actor per worker, made from :class:`~.ray_worker.RayWorker` with that worker's actor options
    (``Pool(backend_options=...)``: CPUs, GPUs, fractions of GPUs, custom resources). The actor
    builds the worker's object in its constructor; a ``ready()`` call reports that it is built, or
    the exception that prevented it. Ray's own restarts are not used: a dead actor is replaced by
    a fresh one when the engine asks (``on_worker_death='restart'``), so each restart is counted
    and reported like a process's.

Transport
    ``send`` is one ``run.remote(...)`` call on the worker's actor. The engine decides how big
    batches are and how many each actor holds (several in flight, so an actor never waits for the
    caller between two); Ray runs an actor's calls one at a time, in the order they were sent.
    Items and results travel by Ray's serialiser, so large NumPy arrays go through the object store
    and are read without copies. The size ``send`` returns, and the size of each result, is measured
    by one pickling pass that leaves large buffers out of band (counted, not copied); the same pass
    finds items that cannot be pickled, which then fail alone.

Reports
    ``recv`` is one ``ray.wait`` over every call in flight (and the ``ready()`` calls). Ray cannot
    be woken from another thread, so this backend does not declare ``Capabilities.wakes``: while an
    input is read in the background, the engine comes back every few milliseconds to look at it.
    Log records an actor emitted come back with the answer of the call they were emitted in
    (``ActorDone.logs`` and the like: ``ray_worker``), and are reported as ``WorkerLog`` events
    before that answer's own.

Death
    When an actor dies (a crash, ``os._exit``, a signal, ``ray.kill``, its node lost), every call
    it held fails with Ray's actor error. Results it delivered before are handed on first, then one
    ``WorkerDied`` names the item it was running, read from the actor's progress segment (a few
    integers of shared memory the caller makes for each actor and removes with it) when the actor ran on
    this machine (see ``ray_worker``); elsewhere the batch it was running is known,
    and a batch of one item names its item.

Stopping
    The pool's actors are always killed (``ray.kill``) when it stops, after ``grace`` seconds to
    finish politely; the Ray itself is never shut down by the pool (see ``ray_connect``).
"""

from __future__ import annotations

import contextlib
import re
import struct
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

from .._errors import RemoteTraceback
from .._logs.forward import caller_logging
from .._worker.context import SLOTS
from .._worker.progress import fraction_of
from .._worker.run import WorkerSpec
from .base import (
    Backend,
    BatchDone,
    Capabilities,
    Event,
    WorkerDied,
    WorkerInitFailed,
    WorkerLog,
    WorkerReady,
    WorkerRetired,
)
from .config import BackendOptions
from .messages import ActorDied, ActorDone, ActorReady, InitFailed
from .ray_connect import check_resources, connect, import_ray
from .ray_worker import PROGRESS_SIZE, RayWorker, Unsendable, measure

__all__ = ["RayBackend"]

#: how a progress segment is read (see ``ray_worker``)
_SLOTS_FORMAT = "q" * SLOTS
#: the message id of a worker's ``ready()`` call in the table of calls in flight
_READY_CALL = -1

_ACTOR_CLASS: Any = None


def _actor_class() -> Any:
    """The Ray actor class, made once per process (Ray exports it to the cluster on first use)."""
    global _ACTOR_CLASS
    if _ACTOR_CLASS is None:
        ray = import_ray()
        _ACTOR_CLASS = ray.remote(max_restarts=0, max_task_retries=0)(RayWorker)
    return _ACTOR_CLASS


class _Actor:
    """One worker's actor, as the caller sees it."""

    __slots__ = ("handle", "held", "index", "pid", "progress", "writes_progress")

    def __init__(self, index: int, handle: Any, progress: Any) -> None:
        self.index = index
        self.handle = handle
        #: ``(message id, number of items)`` of the calls it holds, oldest (running) first
        self.held: deque[tuple[int, int]] = deque()
        self.pid: int | None = None
        #: the shared-memory segment the actor writes the item it runs into (None: none could be made)
        self.progress: Any = progress
        #: whether the actor mapped it (False on another machine)
        self.writes_progress = False

    def release_progress(self) -> None:
        """Remove the actor's progress segment (the actor may still have it mapped: harmless)."""
        segment, self.progress = self.progress, None
        if segment is not None:
            with contextlib.suppress(Exception):
                segment.close()
            with contextlib.suppress(Exception):
                segment.unlink()


def _new_progress() -> Any:
    """A progress segment for one actor, or None where shared memory cannot be made. Made by the
    caller through ``multiprocessing.shared_memory``, so that its resource tracker removes it even
    when the caller is killed before it could."""
    try:
        from multiprocessing import shared_memory

        segment = shared_memory.SharedMemory(create=True, size=PROGRESS_SIZE)
    except (OSError, ImportError):
        return None
    buf = segment.buf
    assert buf is not None
    struct.pack_into("q" * SLOTS, buf, 0, *[-1] * SLOTS)
    return segment


class RayBackend(Backend):
    # The defaults: a stuck actor is killed (ray.kill); ray.wait cannot be woken (see Reports above).
    capabilities: ClassVar[Capabilities] = Capabilities(retires=True)

    def __init__(self, specs: list[WorkerSpec], options: BackendOptions | None = None) -> None:
        super().__init__(len(specs))
        self._specs = specs
        self._address = None if options is None else options.address
        self._per_worker: Sequence[Mapping[str, Any]] = (
            options.per_worker if options is not None else tuple({} for _ in specs)
        )
        self._actors: list[_Actor] = []
        #: every call in flight: its object ref -> (actor, message id or _READY_CALL)
        self._calls: dict[Any, tuple[_Actor, int]] = {}
        #: actors replaced since the start (killed again at stop, in case they linger)
        self._retired: list[_Actor] = []
        self._alive = False
        self._ray: Any = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        ray = self._ray = import_ray()
        connect(self._address)
        check_resources(self._per_worker)
        self._errors = ray.exceptions
        self._alive = True
        for spec in self._specs:
            self._actors.append(self._start_one(spec))

    def _start_one(self, spec: WorkerSpec) -> _Actor:
        cls = _actor_class()
        options = dict(self._per_worker[spec.index])
        progress = _new_progress()
        name = None if progress is None else progress.name
        logs = caller_logging() if spec.forward_logs else None
        handle = cls.options(**options).remote(spec, name, logs) if options else cls.remote(spec, name, logs)
        actor = _Actor(spec.index, handle, progress)
        self._calls[handle.ready.remote()] = (actor, _READY_CALL)
        return actor

    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        old = self._actors[worker]
        self._forget(old)
        self._retire(old, kill=kill)
        self._actors[worker] = self._start_one(self._specs[worker])

    def stop(self, grace: float) -> None:
        if not self._alive:
            return
        self._alive = False
        actors, self._actors = self._actors, []
        self._calls.clear()
        ray = self._ray
        with contextlib.suppress(Exception):
            # Ask politely (the request queues behind whatever each actor still runs), wait up to
            # ``grace``, then kill every actor the pool ever made, finished or not.
            ends = []
            for actor in actors:
                with contextlib.suppress(Exception):
                    actor.handle.close.remote()
                    ends.append(actor.handle.__ray_terminate__.remote())
            if ends and grace > 0:
                ray.wait(ends, num_returns=len(ends), timeout=grace)
        for actor in [*actors, *self._retired]:
            with contextlib.suppress(Exception):
                ray.kill(actor.handle, no_restart=True)
            actor.release_progress()
        self._retired.clear()

    def _retire(self, actor: _Actor, *, kill: bool) -> None:
        if kill:
            self._bury(actor)
        else:
            with contextlib.suppress(Exception):
                actor.handle.close.remote()
                actor.handle.__ray_terminate__.remote()
            actor.release_progress()
        self._retired.append(actor)

    def _bury(self, actor: _Actor) -> None:
        """Kill a dead or stuck actor (harmless if it is gone) and remove its progress file."""
        with contextlib.suppress(Exception):
            self._ray.kill(actor.handle, no_restart=True)
        actor.release_progress()

    def _forget(self, actor: _Actor) -> None:
        """Drop every call in flight on ``actor``: nothing it reports reaches ``recv`` any more."""
        for ref in [r for r, (a, _) in self._calls.items() if a is actor]:
            del self._calls[ref]
        actor.held.clear()

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the actors, in worker order (on the node each runs on)."""
        return [a.pid for a in self._actors]

    def fractions(self) -> float:
        """Read from the actors' progress segments: none for actors on other machines."""
        total = 0.0
        for actor in self._actors:
            segment = actor.progress
            if segment is not None and actor.writes_progress:
                with contextlib.suppress(Exception):  # removed meanwhile (the actor was replaced)
                    total += fraction_of(struct.unpack_from(_SLOTS_FORMAT, segment.buf, 0))
        return total

    # -- transport ------------------------------------------------------------------------------

    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        actor = self._actors[worker]
        unsendable = False
        try:
            nbytes = measure(items)
        except Exception:
            items, unsendable = _sendable_items(indices, items), True
            nbytes = measure(items)
        try:
            ref = actor.handle.run.remote(batch_id, indices, items, unsendable)
        except Exception:
            if unsendable:
                raise
            items = _sendable_items(indices, items)
            ref = actor.handle.run.remote(batch_id, indices, items, True)
        self._calls[ref] = (actor, batch_id)
        actor.held.append((batch_id, len(items)))
        return nbytes

    def recv(self, timeout: float | None) -> list[Event]:
        events: list[Event] = []
        if not self._calls:
            if timeout is None or timeout > 0:
                time.sleep(0.05 if timeout is None else timeout)
            return events
        ray = self._ray
        refs = list(self._calls)
        ready, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if not ready:
            return events
        if len(refs) > 1:
            ready, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        done = set(ready)
        for ref in refs:  # in the order the calls were made
            if ref in done and ref in self._calls:
                self._take(ref, events)
        return events

    def _take(self, ref: Any, events: list[Event]) -> None:
        actor, msg_id = self._calls.pop(ref)
        errors = self._errors
        try:
            value = self._ray.get(ref)
        except (errors.RayActorError, errors.ObjectLostError, errors.OwnerDiedError) as exc:
            self._calls[ref] = (actor, msg_id)  # put back: the death report handles it
            self._on_death(actor, exc, events)
            return
        except errors.RayError as exc:
            # Not expected: the actor methods catch what tasks raise. Fail what the call carried.
            self._on_call_error(actor, msg_id, exc, events)
            return
        self._deliver(actor, msg_id, value, events)

    def _deliver(self, actor: _Actor, msg_id: int, value: Any, events: list[Event]) -> None:
        """Turn what a call returned (a message of ``messages``) into its event, after the log
        records it carries (``_logs``)."""
        kind = type(value)
        for record in getattr(value, "logs", ()):
            events.append(WorkerLog(actor.index, record))
        if kind is ActorDone:
            self._pop_held(actor, msg_id)
            failures = [(pos, _with_traceback(exc, tb)) for pos, exc, tb in value.failures]
            events.append(BatchDone(actor.index, msg_id, value.results, failures, value.elapsed, value.nbytes,
                                    waited=value.waited))
            if value.retire is not None:
                # Over its memory limit: it runs nothing more (calls queued behind return empty).
                self._forget(actor)
                events.append(WorkerRetired(actor.index, *value.retire))
        elif kind is ActorReady:
            actor.pid, actor.writes_progress = value.pid, value.writes_progress
            events.append(WorkerReady(actor.index, value.init_s))
        elif kind is InitFailed:
            events.append(WorkerInitFailed(actor.index, _with_traceback(value.error, value.traceback)))
        elif kind is ActorDied:
            # A task raised SystemExit or the like: the worker ends, as a process would.
            self._pop_held(actor, msg_id)
            self._forget(actor)
            self._bury(actor)
            error = _with_traceback(value.error, value.traceback)
            running = (msg_id, value.position)
            events.append(WorkerDied(actor.index, value.cause, pid=actor.pid, running=running, error=error))

    def _on_death(self, actor: _Actor, exc: BaseException, events: list[Event]) -> None:
        """Hand on what the dead actor finished before it died, then report its death once."""
        mine = [r for r, (a, m) in self._calls.items() if a is actor and m != _READY_CALL]
        if mine:
            with contextlib.suppress(Exception):
                finished, _ = self._ray.wait(mine, num_returns=len(mine), timeout=0)
                finished_set = set(finished)
                for ref in mine:
                    if ref not in finished_set:
                        break  # calls run in order: nothing after an unfinished one finished
                    try:
                        value = self._ray.get(ref)
                    except Exception:
                        break
                    _, msg_id = self._calls.pop(ref)
                    self._deliver(actor, msg_id, value, events)
        running = self._running(actor)
        self._forget(actor)
        self._bury(actor)
        events.append(WorkerDied(actor.index, death_cause(exc), pid=actor.pid, running=running))

    def _running(self, actor: _Actor) -> tuple[int, int] | None:
        """``(message id, position)`` of the item the actor was running when it died, if known."""
        if actor.writes_progress and actor.progress is not None:
            batch_id, position = struct.unpack_from("qq", actor.progress.buf)
            if batch_id >= 0:
                return batch_id, position
        if actor.held and actor.held[0][1] == 1:
            # Calls run in the order they were sent: the oldest one held was running (or was
            # about to), and it carries one item.
            return (actor.held[0][0], 0)
        return None

    def _pop_held(self, actor: _Actor, msg_id: int) -> None:
        held = actor.held
        if held and held[0][0] == msg_id:
            held.popleft()
            return
        for k, (m, _) in enumerate(held):
            if m == msg_id:
                del held[k]
                return

    def _on_call_error(self, actor: _Actor, msg_id: int, exc: BaseException, events: list[Event]) -> None:
        error = unwrap(exc)
        if msg_id == _READY_CALL:
            events.append(WorkerInitFailed(actor.index, error))
            return
        n = 0
        for m, count in actor.held:
            if m == msg_id:
                n = count
        self._pop_held(actor, msg_id)
        events.append(BatchDone(actor.index, msg_id, [None] * n, [(k, error) for k in range(n)], 0.0))


def unwrap(exc: BaseException) -> BaseException:
    """The original exception inside Ray's ``RayTaskError``, with the remote traceback text as its
    ``__cause__`` (as process workers give it); other Ray errors as they are."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, BaseException) and cause is not exc:
        cause.__cause__ = RemoteTraceback(str(exc))
        return cause
    return exc


_BECAUSE = re.compile(r"The actor is dead because (.+?)(?:\.\s|\.$|$)", re.MULTILINE)


def death_cause(exc: BaseException) -> str:
    """A short account of how an actor ended, from Ray's error text."""
    text = str(exc)
    if "ray.kill" in text:
        return "killed by ray.kill"
    found = _BECAUSE.search(text)
    if found:
        reason = found.group(1).strip().rstrip(".")
        reason = reason.replace("its worker process has died", "its process died")
        exit_type = re.search(r"Worker exit type: (\w+)", text)
        return f"the actor died: {reason}" + (f" ({exit_type.group(1)})" if exit_type else "")
    first = text.strip().splitlines()[0] if text.strip() else type(exc).__name__
    return f"the actor died: {first}"


def _with_traceback(exc: BaseException, tb: str) -> BaseException:
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def _sendable_items(indices: Sequence[int], items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for pos, item in enumerate(items):
        try:
            measure(item)
            out.append(item)
        except Exception as cause:
            out.append(Unsendable(
                f"input item #{indices[pos]} ({type(item).__name__}) could not be pickled to send it "
                f"to a Ray actor: {type(cause).__name__}: {cause}. Use threads (use_threads=True) for "
                "items that cannot be pickled"
            ))
    return out
