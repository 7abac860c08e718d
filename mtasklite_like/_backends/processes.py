"""The process backend: each worker is a ``multiprocess`` process with two pipes of its own.

Transport
    The parent writes batches into a worker's task pipe and reads its results from the worker's
    result pipe. Each message is one of the named types of ``messages`` (``RunBatch`` and ``Stop``
    one way; ``Ready``, ``InitFailed``, ``Done``, ``DoneRaw``, ``Unreadable``, ``Fatal`` and ``Log``
    the other), sent as a plain tuple (``messages.to_wire``) pickled by the standard pickler, with dill
    as the fallback (see ``serialize``); the worker's function or object is sent once, when the
    worker starts. Large buffers (bytes, arrays) travel out of band, written straight through the
    pipe after their message's pickle, in both directions (``wire``).

Why a reader thread in the worker
    A pipe holds ~64 KiB. If the parent blocked writing a large batch while the worker blocked
    writing a large result, each would wait for the other forever. A thread in the worker keeps
    draining the task pipe into a local queue, so the parent's writes always complete; the number
    of batches a worker holds is bounded by the front, so the local queue stays small.

Death
    ``connection.wait`` watches the result pipes and the process sentinels together; when a
    sentinel fires, whatever the worker sent before dying is read first, then the death is
    reported, so no finished result is lost.

Wake-up
    The same ``wait`` also watches the read end of a pipe of the caller's own; ``wake`` writes a
    byte into it, so input read in a background thread cuts the engine's wait short.
"""

from __future__ import annotations

import contextlib
import math
import os
import pickle
import queue
import select
import signal
import threading
import time
from collections.abc import Sequence
from typing import Any, ClassVar

import multiprocess
from multiprocess.connection import wait

from .._errors import RemoteTraceback, TaskPicklingError
from .._logs.forward import CallerLogging, caller_logging, forward
from .._memory.limit import OwnLimit
from .._worker.context import SLOTS, WorkerContext, enter
from .._worker.coroutines import FailedItem, serve_coroutines
from .._worker.progress import fraction_of
from .._worker.run import (
    WorkerSpec,
    build_worker_callable,
    fail_unpicklable,
    pack_exception,
    run_batch,
    run_batch_limited,
)
from .base import (
    Backend,
    BatchDone,
    BatchUnreadable,
    Capabilities,
    Event,
    WorkerDied,
    WorkerInitFailed,
    WorkerLog,
    WorkerReady,
    WorkerRetired,
)
from .messages import (
    Done,
    DoneRaw,
    Fatal,
    InitFailed,
    Log,
    Message,
    Ready,
    Retire,
    RunBatch,
    Stop,
    Unreadable,
    from_wire,
    to_wire,
    wire_code,
)
from .nesting import become_worker, check_may_have_children, may_die_with_parent, start_process
from .serialize import dumps, dumps_oob, loads, main_needs_by_value
from .wakeup import WakePipe
from .wire import (
    decode,
    leading_fields,
    message_size,
    pipe_capacity,
    readable_check,
    recv_message,
    send_message,
    wait_readable,
)

__all__ = ["ProcessBackend", "describe_exitcode"]

# The two messages that never change, pickled once.
_STOP_BYTES = dumps(to_wire(Stop()))
#: the number a log record's message travels under (``messages.Log``)
_LOG_CODE = wire_code(Log)
# How long a worker replaced in order may take to end before it is killed.
_RETIRE_GRACE = 5.0
# How often a worker's reader thread checks that its parent is still there.
_PARENT_CHECK_SECONDS = 1.0

#: a worker's local queue of what its reader thread took from the task pipe
_Inbox = queue.SimpleQueue[Message]


class _Unsendable:
    """Stands in a batch for an item that could not be pickled; the worker fails that item."""

    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


class _Watched:
    """What ``recv`` waits on (result pipes, process sentinels, the wake-up pipe), each mapped to
    its worker, and registered once with a ``select.poll`` object: ``connection.wait`` would build
    and fill a selector on every call (some 20 us per wait, paid per result of a one-item run).
    Where ``select.poll`` is missing (Windows), ``connection.wait`` it is."""

    def __init__(self) -> None:
        self.owners: dict[Any, tuple[_Proc, bool]] = {}
        self._poll = select.poll() if hasattr(select, "poll") else None
        self._by_fd: dict[int, Any] = {}
        self._fds: dict[Any, int] = {}

    def add(self, obj: Any, owner: tuple[_Proc, bool] | None) -> None:
        """Watch ``obj`` (a connection or a file descriptor); ``owner``: its worker and whether it
        is the result pipe (None: the wake-up pipe)."""
        if owner is not None:
            self.owners[obj] = owner
        fd = obj if type(obj) is int else obj.fileno()
        self._fds[obj] = fd
        if self._poll is not None:
            self._poll.register(fd, select.POLLIN)
            self._by_fd[fd] = obj

    def discard(self, obj: Any) -> None:
        self.owners.pop(obj, None)
        fd = self._fds.pop(obj, None)
        if fd is not None and self._poll is not None:
            self._by_fd.pop(fd, None)
            with contextlib.suppress(KeyError, ValueError):
                self._poll.unregister(fd)

    def clear(self) -> None:
        for obj in list(self._fds):
            self.discard(obj)
        self.owners.clear()

    def wait(self, timeout: float | None) -> list[Any]:
        """The watched objects that are ready (readable, closed, or an ended process)."""
        if self._poll is None:
            return list(wait(list(self._fds), timeout))
        ms = None if timeout is None else max(0, math.ceil(timeout * 1000))
        by_fd = self._by_fd
        return [by_fd[fd] for fd, _ in self._poll.poll(ms) if fd in by_fd]


def describe_exitcode(exitcode: int | None) -> str:
    """Human wording of a process exit code (negative codes are signals)."""
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            name = signal.Signals(-exitcode).name
        except ValueError:
            name = f"signal {-exitcode}"
        return f"killed by {name}"
    return f"exit code {exitcode}"


# ---------------------------------------------------------------------------------------------
# Worker side
# ---------------------------------------------------------------------------------------------


def _encode_done(batch_id: int, indices: Sequence[int], results: list[Any],
                 failures: list[tuple[int, Any]], elapsed: float,
                 waited: float = 0.0) -> tuple[bytes, list[memoryview] | None]:
    packed = [(pos, *pack_exception(exc, f"item #{indices[pos]}")) for pos, exc in failures]
    try:
        return dumps_oob(to_wire(Done(batch_id, results, packed, elapsed, waited)))
    except Exception:
        pass
    # Some result cannot be pickled: find which, and fail those items alone.
    fail_unpicklable(indices, results, packed, dumps_oob)
    return dumps_oob(to_wire(Done(batch_id, results, packed, elapsed, waited)))


def _reader(conn: Any, inbox: _Inbox, parent_pid: int) -> None:
    """Drain the task pipe into ``inbox``; end the process if its parent disappears.

    ``parent_pid`` is this process's parent when it started: the pool's process under ``fork`` and
    ``spawn``, the fork server under ``forkserver`` (which itself exits when the pool's process
    goes). EOF on the task pipe also means the pool is gone, but is not enough on its own: under
    ``fork`` sibling workers inherit the pool's end of it.
    """
    def check_parent() -> None:
        if os.getppid() != parent_pid:
            # Orphaned (the parent was killed): nobody will read our results.
            os._exit(1)

    def wait(fd: int) -> None:
        wait_readable(fd, _PARENT_CHECK_SECONDS, check_parent)

    try:
        while True:
            if not conn.poll(_PARENT_CHECK_SECONDS):
                check_parent()
                continue
            data, buffers, _ = recv_message(conn, wait)
            try:
                inbox.put(from_wire(decode(data, buffers)))
            except Exception as exc:
                # A batch that cannot be unpickled here (a class the worker cannot import, an
                # item whose __reduce__ raises): report it by its id, read from the pickle's
                # first field, and go on; the parent sends its items again one by one, so only
                # the item at fault fails, with this error.
                head = leading_fields(data, (RunBatch,), 1)
                if head is None:  # not one of our batches: nothing to settle it against
                    os.write(2, f"mtasklite_like worker: cannot unpickle a message: {exc!r}\n".encode())
                    os._exit(70)
                if hasattr(exc, "add_note"):
                    exc.add_note("raised while unpickling the item in the worker")
                # In the batch's place: the worker reports it (BatchUnreadable) and goes on,
                # instead of dying with every item it held.
                inbox.put(Unreadable(head[0], *pack_exception(exc, "unpickling a batch")))
    except (EOFError, OSError):
        # The pool closes its end only after this process has ended, so EOF means the pool's
        # process is gone: nobody will read what we compute, and the current task may run for
        # hours. End now.
        os._exit(1)


def _log_sender(conn: Any, sending: threading.Lock, capacity: int) -> Any:
    """What a process worker's log records are handed to (``_logs.forward``): each is written on
    the result pipe as it is emitted, so a worker that dies loses at most the one it was writing."""
    def deliver(record: tuple[Any, ...]) -> None:
        # to_wire(Log(record)), without the message object (records are plain: pickle takes them)
        data = pickle.dumps((_LOG_CODE, record), pickle.HIGHEST_PROTOCOL)
        with sending:
            send_message(conn, data, None, capacity)

    return deliver


def _process_main(
    spec_payload: Any, task_conn: Any, result_conn: Any, progress: Any, die_with_parent: bool, capacity: int,
    pool_pid: int | None = None, logs: CallerLogging | None = None,
) -> None:
    # Ctrl-C in a terminal reaches the whole process group; the parent handles it and stops the
    # workers, so workers must not each print a KeyboardInterrupt traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # The parent to watch is named by the pool (``pool_pid``), not read here: a worker that gets
    # here only after its parent was killed (a forked child the scheduler left waiting) would read
    # the pid of init, or of a subreaper, and every parent check below would then pass forever.
    # Under ``fork`` nothing else would end it: it holds its own task pipe's write end, so never
    # sees EOF. None (``forkserver``): the parent is the fork server, which only the worker knows.
    parent_pid = os.getppid() if pool_pid is None else pool_pid
    # The same shared integers through a memoryview: written per item, ~15 ns cheaper than ctypes.
    progress = memoryview(progress).cast("B").cast("q")
    become_worker(parent_pid, die_with_parent=die_with_parent)  # may run pools of its own (nesting.py)
    spec: WorkerSpec = loads(spec_payload) if isinstance(spec_payload, bytes) else spec_payload
    # One writer at a time on the result pipe: the worker's loop, and log records from any thread.
    sending = threading.Lock()
    if logs is not None:  # before the initializer: its records are forwarded too
        forward(logs, spec.index, _log_sender(result_conn, sending, capacity), detach=True)
    if spec.concurrency:
        _serve_coroutines(spec, task_conn, result_conn, progress, parent_pid, capacity, sending)
        return
    building = time.perf_counter()
    try:
        call = build_worker_callable(spec, own_process=True)
    except BaseException as exc:
        with sending:
            result_conn.send_bytes(dumps(to_wire(InitFailed(*pack_exception(exc, f"worker {spec.index}")))))
        return
    limit = None if spec.memory_limit is None else OwnLimit(spec.memory_limit)
    context = WorkerContext(spec.index, progress)
    enter(context, own_process=True)
    del spec
    with sending:
        result_conn.send_bytes(dumps(to_wire(Ready(time.perf_counter() - building, time.monotonic()))))

    inbox: _Inbox = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(task_conn, inbox, parent_pid), daemon=True).start()
    try:
        def send(message: tuple[bytes, list[memoryview] | None]) -> int:
            with sending:
                return send_message(result_conn, message[0], message[1], capacity)

        _serve(call, inbox, send, progress, parent_pid, limit, context)
    except (BrokenPipeError, EOFError, ConnectionError):
        # The parent is gone or closed our pipe while stopping us: nothing to report to.
        os._exit(0)
    # Stopped in order (asked to, or retired): the object is dropped here, in the worker, so that
    # what it holds is released by its own code (its __del__) before the process ends.
    del call


def _next_batch(inbox: _Inbox, parent_pid: int | None) -> Message:
    """The next message from ``inbox``. While it waits, the worker's own thread also watches its
    parent (``parent_pid``; None: no watch): a second guard beside the reader thread's, so that an
    idle worker whose parent died ends even if that thread could not run."""
    if parent_pid is None:
        return inbox.get()
    while True:
        try:
            return inbox.get(timeout=_PARENT_CHECK_SECONDS)
        except queue.Empty:
            if os.getppid() != parent_pid:
                os._exit(1)


def _serve(
    call: Any, inbox: _Inbox, send: Any, progress: Any, parent_pid: int | None = None,
    limit: OwnLimit | None = None, context: WorkerContext | None = None,
) -> None:
    """The worker loop: run each batch from ``inbox`` and send back its results.

    With a memory ``limit`` the worker stops after the item that took it over the limit: it
    answers that batch with the results it has (the engine runs the rest elsewhere), sends
    ``Retire`` and returns, running nothing it still holds.
    """
    over = None
    clock = time.perf_counter
    free_since = clock()  # when the worker last finished a batch (or became ready)
    while True:
        msg = _next_batch(inbox, parent_pid)
        if type(msg) is not RunBatch:
            if type(msg) is Stop:
                return
            send((dumps(to_wire(msg)), None))  # Unreadable: a batch the reader could not unpickle
            continue
        batch_id, indices = msg.batch_id, msg.indices
        # Reset the position first: a death between the two writes must not pair this batch with
        # the position of an item of the previous one.
        progress[1] = -1
        progress[0] = batch_id
        if context is not None:
            context.begin(batch_id, indices)
        t0 = clock()
        waited = t0 - free_since
        try:
            task = _failing_unsendable(call) if msg.unsendable else call
            if limit is None:
                results, failures = run_batch(task, msg.items, progress)
            else:
                results, failures, over = run_batch_limited(task, msg.items, progress, limit)
        except BaseException as exc:
            # SystemExit, KeyboardInterrupt or another BaseException from a task: the worker ends,
            # as the task asked, but first tells the parent what ended it (reported with its death).
            _report_fatal(send, exc, indices, progress[1])
            raise _exit_for(exc) from None
        elapsed = clock() - t0
        if over is not None:
            # A partial batch travels as Done (DoneRaw stands for a whole one).
            send(_encode_done(batch_id, indices, results, failures, elapsed, waited))
            send((dumps(to_wire(Retire(over, limit.peak() if limit is not None else None))), None))
            return
        if not failures:
            # The common case: one pickling pass, no per-item work.
            try:
                if msg.raw:
                    message = dumps_oob(to_wire(DoneRaw(batch_id, dumps(results), elapsed, waited)))
                else:
                    message = dumps_oob(to_wire(Done(batch_id, results, (), elapsed, waited)))
            except Exception:
                pass
            else:
                send(message)
                free_since = clock()
                continue
        send(_encode_done(batch_id, indices, results, failures, elapsed, waited))
        free_since = clock()


def _report_fatal(send: Any, exc: BaseException, indices: Sequence[int], position: int) -> None:
    """Send the exception that is ending this worker, with its traceback, before the worker exits;
    the parent attaches it to the death it reports (``WorkerDied.error``)."""
    where = f"item #{indices[position]}" if 0 <= position < len(indices) else "a task"
    with contextlib.suppress(Exception):
        send((dumps(to_wire(Fatal(*pack_exception(exc, where)))), None))


def _exit_for(exc: BaseException) -> SystemExit:
    """How a worker ends after a task raised ``exc`` (already reported with its traceback): as a
    ``SystemExit``, so the process exits with its code and cleans up without printing the
    traceback a second time."""
    if isinstance(exc, SystemExit):
        return exc
    return SystemExit(1)


def _serve_coroutines(
    spec: WorkerSpec, task_conn: Any, result_conn: Any, progress: Any, parent_pid: int, capacity: int,
    sending: threading.Lock | None = None,
) -> None:
    """A coroutine worker's process: batches run on its event loop (see ``_worker.coroutines``)."""
    building = time.perf_counter()
    inbox: _Inbox = queue.SimpleQueue()
    threading.Thread(target=_reader, args=(task_conn, inbox, parent_pid), daemon=True).start()

    def next_message() -> tuple[int, Sequence[int], list[Any]] | None:
        msg = _next_batch(inbox, parent_pid)
        while type(msg) is Unreadable:
            send((dumps(to_wire(msg)), None))
            msg = _next_batch(inbox, parent_pid)
        if type(msg) is not RunBatch:
            return None  # Stop
        # (RunBatch.raw, results pickled on their own, is not honoured: coroutine workers never do,
        # so a journaled run pickles their results in the caller)
        items = msg.items
        if msg.unsendable:
            items = [FailedItem(TaskPicklingError(x.message)) if type(x) is _Unsendable else x for x in items]
        return msg.batch_id, msg.indices, items

    # The loop's thread reports batches, the inbox thread unreadable ones, any thread log records
    # (``_process_main``'s lock): one at a time.
    if sending is None:
        sending = threading.Lock()

    def send(message: tuple[bytes, list[memoryview] | None]) -> None:
        try:
            with sending:
                send_message(result_conn, message[0], message[1], capacity)
        except (BrokenPipeError, EOFError, ConnectionError):
            os._exit(0)  # the parent is gone or closed our pipe while stopping us

    def init_failed(exc: BaseException) -> None:
        send((dumps(to_wire(InitFailed(*pack_exception(exc, f"worker {spec.index}")))), None))

    try:
        serve_coroutines(
            spec,
            own_process=True,
            next_message=next_message,
            ready=lambda: send((dumps(to_wire(Ready(time.perf_counter() - building, time.monotonic()))),
                                None)),
            init_failed=init_failed,
            done=lambda batch_id, indices, results, failures, elapsed: send(
                _encode_done(batch_id, indices, results, failures, elapsed)
            ),
            progress=progress,
            name="mtasklite_like-inbox",
            retire=lambda memory, peak: send((dumps(to_wire(Retire(memory, peak))), None)),
        )
    except BaseException as exc:
        # A coroutine raised SystemExit or the like: the worker ends (progress names the item).
        _report_fatal(send, exc, (), -1)
        raise _exit_for(exc) from None


def _failing_unsendable(call: Any) -> Any:
    def checked(item: Any) -> Any:
        if type(item) is _Unsendable:
            raise TaskPicklingError(item.message)
        return call(item)

    return checked


# ---------------------------------------------------------------------------------------------
# Parent side
# ---------------------------------------------------------------------------------------------


class _Writer:
    """Writes a worker's large messages (those with out-of-band buffers) in a thread of its own.

    Writing 1 MiB into a pipe costs the caller's thread some 0.3-0.7 ms on the machines measured
    (the kernel allocates the pipe's pages and copies into them, and waits while the pipe is
    full), during which it could unpickle results and hand out other work: ``os.write`` releases
    the GIL, so another thread writing overlaps with all of that, as ``multiprocessing``'s task
    handler thread does. Small messages are still written by the caller's thread, at once,
    unless a large one to the same worker is still queued here (the order on a pipe is kept).
    The thread starts with the first large message, and ends at ``close`` or when the worker is
    gone (a write that fails: its death is reported through its sentinel, as before).
    """

    __slots__ = ("_capacity", "_conn", "_queue", "_thread", "queued", "written")

    def __init__(self, conn: Any, capacity: int, name: str) -> None:
        self._conn = conn
        self._capacity = capacity
        self._queue: queue.SimpleQueue[tuple[bytes, list[memoryview] | None] | None] = queue.SimpleQueue()
        #: messages handed to the thread, and written (or dropped) by it: each counter has one
        #: writer, so ``pending`` needs no lock
        self.queued = 0
        self.written = 0
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> bool:
        return self.queued != self.written

    def put(self, data: bytes, buffers: list[memoryview] | None) -> None:
        self.queued += 1
        self._queue.put((data, buffers))

    def close(self) -> None:
        self._queue.put(None)

    def _run(self) -> None:
        broken = False
        while True:
            message = self._queue.get()
            if message is None:
                return
            if not broken:
                try:
                    send_message(self._conn, message[0], message[1], self._capacity)
                except (OSError, ValueError):
                    broken = True  # the worker is gone (or stopped): its sentinel says so
            del message
            self.written += 1


class _Proc:
    __slots__ = ("fatal", "index", "pid", "process", "progress", "readable", "result_conn", "retired",
                 "stop_by", "task_conn", "writer")

    def __init__(self, index: int, process: Any, task_conn: Any, result_conn: Any, progress: Any) -> None:
        self.index = index
        self.process = process
        #: kept apart from the process object, which is closed once the worker is reaped (the
        #: memory watch reads pids from another thread, possibly just then)
        self.pid: int | None = process.pid
        self.task_conn = task_conn
        self.result_conn = result_conn
        #: whether the result pipe has something to read, without waiting
        self.readable = readable_check(result_conn)
        self.progress = progress
        #: what a task raised that ended this worker (``Fatal``), for the death report that follows
        self.fatal: BaseException | None = None
        #: the worker said it retires (``Retire``): its end is not a death
        self.retired = False
        #: replaced in order: when it is killed if it has not ended by then (``time.monotonic``)
        self.stop_by = 0.0
        #: writes this worker's large messages, once it has had one (see :class:`_Writer`)
        self.writer: _Writer | None = None


class ProcessBackend(Backend):
    capabilities: ClassVar[Capabilities] = Capabilities(wakes=True, polls=True, coroutines=True, retires=True)

    def __init__(self, specs: list[WorkerSpec], start_method: str | None = None,
                 name: str = "mtasklite_like") -> None:
        super().__init__(len(specs))
        self._ctx = multiprocess.get_context(start_method)
        self._forks = self._ctx.get_start_method() == "fork"
        # Workers that re-import nothing of __main__ (spawn, forkserver) need its code by value when
        # it has no file to re-import (a notebook, a REPL): see _serialize.
        self._main_by_value = not self._forks and main_needs_by_value()
        self._specs = specs
        self._name = name
        # Pipes grow for large messages (wire.pipe_capacity): two per worker.
        self._pipe_capacity = pipe_capacity(2 * len(specs))
        self._procs: list[_Proc] = []
        #: workers replaced in order that may still be ending (reaped in ``recv``, never waited for)
        self._ending: list[_Proc] = []
        self._watched = _Watched()
        self._by_waitable = self._watched.owners
        self._alive = False
        self._wakeup: WakePipe | None = None

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        check_may_have_children()
        self._alive = True
        self._wakeup = WakePipe()
        self._watched.add(self._wakeup.fd, None)
        for spec in self._specs:
            self._procs.append(self._start_one(spec))

    def _start_one(self, spec: WorkerSpec) -> _Proc:
        # A forked child inherits the spec as it is; other start methods need it pickled,
        # and dill lets lambdas, closures and __main__ code through.
        payload = spec if self._forks else dumps(spec, main_by_value=self._main_by_value)
        task_r, task_w = self._ctx.Pipe(duplex=False)
        result_r, result_w = self._ctx.Pipe(duplex=False)
        # Shared memory, written by the worker as it starts each item and still readable here
        # after the worker dies: it says which item killed it.
        progress = self._ctx.RawArray("q", [-1] * SLOTS)
        process = self._ctx.Process(
            target=_process_main,
            args=(payload, task_r, result_w, progress, may_die_with_parent(), self._pipe_capacity,
                  self._worker_parent_pid(), caller_logging() if spec.forward_logs else None),
            name=f"{self._name}-worker-{spec.index}",
            daemon=True,
        )
        # Started by a thread that lasts as long as this process, never by one that may end first
        # and take the worker with it: what lets may_die_with_parent() say yes (nesting.py).
        start_process(process)
        # Close our copies of the child's ends, so the child sees EOF if we go away.
        task_r.close()
        result_w.close()
        proc = _Proc(spec.index, process, task_w, result_r, progress)
        self._watched.add(result_r, (proc, True))
        self._watched.add(process.sentinel, (proc, False))
        return proc

    def _worker_parent_pid(self) -> int | None:
        """The pid a new worker must see as its parent (see ``_process_main``): this process, except
        under ``forkserver``, where workers are children of the fork server."""
        return None if self._ctx.get_start_method() == "forkserver" else os.getpid()

    def replace_worker(self, worker: int, *, kill: bool = False) -> None:
        old = self._procs[worker]
        self._watched.discard(old.result_conn)
        self._watched.discard(old.process.sentinel)
        if kill:
            _stop_procs([old], grace=0.0, kill=True)
        else:
            # Asked to stop, not waited for: a worker that frees a lot of memory takes a while to
            # end, and the run goes on meanwhile. Reaped by recv(); killed if it outlasts the grace.
            _ask_to_stop(old)
            old.stop_by = time.monotonic() + _RETIRE_GRACE
            self._ending.append(old)
        self._procs[worker] = self._start_one(self._specs[worker])

    def _reap(self) -> None:
        """Clean up after workers replaced in order once they have ended (or outlasted the grace)."""
        now = time.monotonic()
        ended = [p for p in self._ending if p.process.exitcode is not None or now >= p.stop_by]
        if ended:
            self._ending = [p for p in self._ending if p not in ended]
            _stop_procs(ended, grace=0.0, kill=True)

    def stop(self, grace: float) -> None:
        if not self._alive:
            return
        self._alive = False
        procs, self._procs = self._procs, []
        ending, self._ending = self._ending, []
        self._watched.clear()
        _stop_procs([*procs, *ending], grace)
        if self._wakeup is not None:
            self._wakeup.close()

    @property
    def alive(self) -> bool:
        return self._alive

    @property
    def pids(self) -> list[int | None]:
        """Process ids of the current workers, in worker order."""
        return [p.pid for p in self._procs]

    def fractions(self) -> float:
        return sum(fraction_of(p.progress) for p in self._procs)

    # -- transport ------------------------------------------------------------------------------

    def send(self, worker: int, batch_id: int, indices: Sequence[int], items: list[Any]) -> int:
        try:
            data, buffers = dumps_oob(
                to_wire(RunBatch(batch_id, indices, items, False, self.raw_results)),
                main_by_value=self._main_by_value,
            )
        except Exception:
            data, buffers = dumps_oob(
                to_wire(RunBatch(batch_id, indices, _sendable_items(indices, items), True, self.raw_results))
            )
        size = len(data) + sum(b.nbytes for b in buffers or ())
        proc = self._procs[worker]
        writer = proc.writer
        if buffers is not None or (writer is not None and writer.pending):
            # A large message: written by the worker's writer thread (see _Writer), and so is
            # what follows it to this worker until it is written.
            if writer is None:
                writer = proc.writer = _Writer(
                    proc.task_conn, self._pipe_capacity, f"{self._name}-writer-{proc.index}"
                )
            writer.put(data, buffers)
            return message_size(data, buffers)
        try:
            size = send_message(proc.task_conn, data, buffers, self._pipe_capacity)
        except OSError:
            # The worker is gone (it failed to start, or died): its sentinel reports that in
            # recv(), against the batches it was given, this one included.
            pass
        return size

    def wake(self) -> None:
        if self._wakeup is not None:
            self._wakeup.wake()

    def recv(self, timeout: float | None) -> list[Event]:
        if self._ending:
            self._reap()
        events: list[Event] = []
        wakeup = self._wakeup
        wake_fd = None if wakeup is None else wakeup.fd
        for obj in self._watched.wait(timeout):
            if wakeup is not None and type(obj) is int and obj == wake_fd:
                wakeup.drain()
                continue
            entry = self._by_waitable.get(obj)
            if entry is None:
                continue  # this worker was already reported dead in this round
            proc, is_conn = entry
            if is_conn:
                if not self._drain(proc, events):
                    self._report_death(proc, events)
            else:
                self._drain(proc, events)
                self._report_death(proc, events)
        return events

    def poll(self) -> list[Event]:
        events: list[Event] = []
        by_waitable = self._by_waitable
        pipes = [obj for obj, (_, is_conn) in by_waitable.items() if is_conn]
        for conn in wait(pipes, 0):
            # A closed pipe stays readable: the next recv() finds it and reports the death.
            self._drain(by_waitable[conn][0], events)
        return events

    def _drain(self, proc: _Proc, events: list[Event]) -> bool:
        """Read every message waiting on a worker's result pipe; False once the pipe is closed."""
        conn, readable = proc.result_conn, proc.readable
        try:
            while readable():
                event = self._decode(proc, *recv_message(conn))
                if event is not None:
                    events.append(event)
        except (EOFError, OSError):
            return False
        return True

    def _report_death(self, proc: _Proc, events: list[Event]) -> None:
        self._watched.discard(proc.result_conn)
        self._watched.discard(proc.process.sentinel)
        if proc.retired:
            return  # it ended as it said it would; the engine replaces it (WorkerRetired)
        proc.process.join(1.0)
        code = proc.process.exitcode
        running = (proc.progress[0], proc.progress[1])
        cause, error = describe_exitcode(code), proc.fatal
        if error is not None:
            cause = f"the task raised {type(error).__name__}" + (f": {error}" if str(error) else "")
            cause += f", {describe_exitcode(code)}"
        events.append(WorkerDied(
            proc.index, cause, pid=proc.process.pid, exitcode=code, running=running, error=error
        ))

    @staticmethod
    def _decode(proc: _Proc, data: bytes, buffers: list[bytearray] | None, nbytes: int) -> Event | None:
        """The event a worker's message stands for (None for ``Fatal``, which is kept for the
        death report that follows it)."""
        worker = proc.index
        try:
            msg: Any = from_wire(decode(data, buffers))
            kind = type(msg)
            if kind is Done:
                failures = [(pos, _attach_traceback(exc, tb)) for pos, exc, tb in msg.failures]
                return BatchDone(worker, msg.batch_id, msg.results, failures, msg.elapsed, nbytes,
                                 waited=msg.waited)
            if kind is DoneRaw:
                return BatchDone(worker, msg.batch_id, loads(msg.raw), (), msg.elapsed, nbytes, msg.raw,
                                 msg.waited)
        except Exception as error:
            # Results the caller cannot unpickle (a class it cannot import, say): that batch's
            # items are settled one by one (see BatchUnreadable), the run goes on.
            return _unreadable_results(worker, data, error)
        if kind is Log:
            return WorkerLog(worker, msg.record)
        if kind is Ready:
            return WorkerReady(worker, msg.init_s, msg.at)
        if kind is Unreadable:
            return BatchUnreadable(worker, msg.batch_id, _attach_traceback(msg.error, msg.traceback))
        if kind is Fatal:
            proc.fatal = _attach_traceback(msg.error, msg.traceback)
            return None
        if kind is Retire:
            proc.retired = True
            return WorkerRetired(worker, msg.memory, msg.peak)
        if kind is InitFailed:
            return WorkerInitFailed(worker, _attach_traceback(msg.error, msg.traceback))
        # Not one of the messages a worker sends: the worker cannot be used.
        return WorkerInitFailed(worker, TypeError(f"worker {worker} sent an unknown message: {msg!r:.200}"))


def _unreadable_results(worker: int, data: bytes, error: Exception) -> Event:
    """The event for a worker's message the caller could not unpickle."""
    head = leading_fields(data, (Done, DoneRaw), 1)
    if head is None:
        # Not a batch's results (a ready or start-up report): the worker cannot be used.
        return WorkerInitFailed(worker, TaskPicklingError(
            f"a report of worker {worker} could not be unpickled in the caller: "
            f"{type(error).__name__}: {error}"
        ))
    if hasattr(error, "add_note"):
        error.add_note("raised while unpickling the result in the caller")
    return BatchUnreadable(worker, head[0], error)


def _ask_to_stop(proc: _Proc) -> None:
    """Send ``Stop`` without ever blocking (a worker that stopped reading must not stall us)."""
    writer = proc.writer
    if writer is not None:
        if writer.pending:
            writer.put(_STOP_BYTES, None)  # after what it still has to write, never inside it
            writer.close()
            return
        writer.close()
    with contextlib.suppress(Exception):
        os.set_blocking(proc.task_conn.fileno(), False)
        proc.task_conn.send_bytes(_STOP_BYTES)


def _stop_procs(procs: list[_Proc], grace: float, kill: bool = False) -> None:
    """Ask workers to finish, wait up to ``grace`` seconds, then terminate and kill what is left.

    With ``kill`` the workers are stuck in a task: SIGKILL at once, with no polite stop first.
    """
    if kill:
        for proc in procs:
            with contextlib.suppress(Exception):
                proc.process.kill()
    for proc in procs:
        _ask_to_stop(proc)
    deadline = time.monotonic() + max(grace, 0.0)
    for proc in procs:
        proc.process.join(max(0.0, deadline - time.monotonic()))
    for proc in procs:
        if proc.process.exitcode is None:
            with contextlib.suppress(Exception):
                proc.process.terminate()
    kill_deadline = time.monotonic() + 0.5
    for proc in procs:
        if proc.process.exitcode is None:
            proc.process.join(max(0.0, kill_deadline - time.monotonic()))
            if proc.process.exitcode is None:
                with contextlib.suppress(Exception):
                    proc.process.kill()
                proc.process.join(1.0)
    for proc in procs:
        for conn in (proc.task_conn, proc.result_conn):
            with contextlib.suppress(Exception):
                conn.close()
        with contextlib.suppress(Exception):
            proc.process.close()


def _attach_traceback(exc: BaseException, tb: str) -> BaseException:
    if tb:
        exc.__cause__ = RemoteTraceback(tb)
    return exc


def _sendable_items(indices: Sequence[int], items: list[Any]) -> list[Any]:
    out = []
    for pos, item in enumerate(items):
        try:
            dumps_oob(item)
            out.append(item)
        except Exception as cause:
            out.append(_Unsendable(
                f"input item #{indices[pos]} ({type(item).__name__}) could not be pickled to "
                f"send it to a worker process: {type(cause).__name__}: {cause}. Use threads "
                f"(use_threads=True) for items that cannot be pickled."
            ))
    return out
