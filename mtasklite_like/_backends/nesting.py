"""Pools inside process workers, and workers that never outlive their caller.

A worker process is *daemonic* in the pool's process: at interpreter exit ``multiprocess`` then
terminates it rather than joining it, so a busy or idle worker can never hang the exit. A daemonic
process may not start children, though, so each worker, once started, clears the flag on its own
view of itself (:func:`become_worker`). Its children are daemonic again in its own view: its exit
terminates them, and nothing at any level is ever joined without being stopped first.

No orphans. Every worker asks Linux, first thing, to kill it the moment its parent dies
(``PR_SET_PDEATHSIG``), so it ends with its caller even while it cannot run a line of its own (a
stopped worker), and a nested pool's workers end at once with the outer worker that started them.
Linux sends that signal when the parent *thread* that forked the worker ends, not the whole
process, so every worker is started by a thread that lives as long as its process
(:func:`start_process`): the main thread, which in a worker is the one that runs its tasks, starts
its workers itself; any other thread (one that iterates the results in the background, and may end
before the pool) hands the start to a daemon thread of this module, started for that the first
time it is needed. Besides, a worker exits by itself when its parent disappears: its reader thread
sees the task pipe close or the parent pid change (``_backends.processes``), within about a second.

Under ``forkserver`` a worker's parent is the fork server, whose main thread forks every worker
whichever thread asked; the fork server exits once every holder of its "alive" pipe is gone. The
pool's process holds that pipe for its whole life, but the fork server hands a copy to each process
it starts, so a worker that cannot run would keep the fork server, and with it itself, alive after
the caller is killed. Each worker closes its copy once it has asked to die with the fork server.

What cannot work fails with a message: a process pool inside a daemonic process that is not one of
ours (a ``multiprocess.Pool`` worker, for instance).
"""

from __future__ import annotations

import contextlib
import os
import queue
import signal
import sys
import threading
from typing import Any

__all__ = [
    "become_worker",
    "check_may_have_children",
    "inside_worker",
    "may_die_with_parent",
    "start_process",
]

_PR_SET_PDEATHSIG = 1
_inside_worker = False
#: libc's prctl, looked up in the parent before a worker starts (False: none on this system)
_prctl: Any = None


def inside_worker() -> bool:
    """True in a worker process of a pool of this package."""
    return _inside_worker


def become_worker(parent_pid: int, *, die_with_parent: bool) -> None:
    """Run first in a worker process: allow it children, and (``die_with_parent``: it was started
    by a thread that lives as long as its parent, see :func:`start_process`) tie its life to its
    parent's."""
    global _inside_worker
    _inside_worker = True
    if die_with_parent and sys.platform.startswith("linux"):
        _die_with_parent()  # first: before anything that could wait for a lock
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent died before the request took effect
    import multiprocess

    me = multiprocess.current_process()
    if getattr(me, "_start_method", None) == "forkserver":
        _let_go_of_the_fork_server()
    if me.daemon:
        me.daemon = False  # this process's own view only; its parent still treats it as daemonic


def _let_go_of_the_fork_server() -> None:
    """Close this worker's copy of the write end of the fork server's "alive" pipe (see the module
    docstring), so that the fork server ends when the pool's process does, whatever this worker
    does. A pool of this worker's own under ``forkserver`` starts a fork server of its own: the
    pipe of the parent's is not used here."""
    from multiprocess import forkserver

    server = forkserver._forkserver
    fd = getattr(server, "_forkserver_alive_fd", None)
    # A fork server this process started itself (it has its pid) is not the parent's: keep it.
    if fd is None or getattr(server, "_forkserver_pid", None) is not None:
        return
    server._forkserver_alive_fd = None
    with contextlib.suppress(OSError):
        os.close(fd)


def may_die_with_parent() -> bool:
    """Whether a worker that this thread is about to start through :func:`start_process` may ask to
    die with its parent: yes if the start will be made by a thread that lasts as long as this
    process, which is always, short of a starter thread refused (the interpreter shutting down).

    Called in the parent before each start: it also looks ``prctl`` up here, so that the new
    process calls it without importing or loading anything first. A child forked while another
    thread of the parent held an import or loader lock would wait for that lock forever, before
    it could ask to die with its parent.
    """
    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # no prctl: the pipe and pid watches remain
            _prctl = False
    current = threading.current_thread()
    return _lasts(current) or _starter() is not None


def start_process(process: Any) -> None:
    """``process.start()`` (a ``multiprocess`` process), made by a thread that lasts as long as this
    process, so that the new process may die with its parent (see the module docstring): this
    thread if it is one, else the starter thread, while this one waits. An error of the start is
    raised here."""
    current = threading.current_thread()
    starter = None if _lasts(current) else _starter()
    if starter is None:
        process.start()
    else:
        starter.start(process)


def _lasts(thread: threading.Thread) -> bool:
    """Whether ``thread`` lives as long as this process: the main thread (in a forked worker, the
    thread that was forked), or the starter thread."""
    starter = _the_starter
    return thread is threading.main_thread() or (starter is not None and thread is starter.thread)


class _StartRequest:
    """One ``process.start()`` handed to the starter thread, and its outcome."""

    __slots__ = ("done", "error", "process")

    def __init__(self, process: Any) -> None:
        self.process = process
        self.done = threading.Event()
        self.error: BaseException | None = None


class _Starter:
    """A daemon thread that starts the processes handed to it, one at a time, for threads that may
    end before them. It lives as long as the process that started it."""

    def __init__(self) -> None:
        self._requests: queue.SimpleQueue[_StartRequest] = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._serve, name="mtasklite_like-starter", daemon=True)
        self.thread.start()

    def start(self, process: Any) -> None:
        """Start ``process`` in the starter thread; wait for it, and raise what the start raised."""
        request = _StartRequest(process)
        self._requests.put(request)
        request.done.wait()
        error, request.error = request.error, None
        if error is not None:
            try:
                raise error
            finally:
                del error  # no reference cycle through the traceback

    def _serve(self) -> None:
        while True:
            request = self._requests.get()
            try:
                request.process.start()  # a forked child never returns from here: it exits
            except BaseException as exc:
                request.error = exc
            finally:
                request.done.set()
            del request  # the process object is the caller's, not ours to keep


#: the process-wide starter thread (see start_process); None until a thread first needs it
_the_starter: _Starter | None = None
_starter_lock = threading.Lock()


def _starter() -> _Starter | None:
    """The starter thread, started if need be; None if it cannot be (a new thread is refused while
    the interpreter shuts down): the calling thread then starts processes itself, and they cannot
    ask to die with their parent."""
    global _the_starter
    with _starter_lock:
        starter = _the_starter
        if starter is None or not starter.thread.is_alive():
            try:
                starter = _the_starter = _Starter()
            except RuntimeError:
                return None
    return starter


def _forget_starter() -> None:
    """In a child forked from this process: the parent's starter thread does not exist here, and a
    lock another thread held at the fork is held forever."""
    global _the_starter, _starter_lock
    _the_starter = None
    _starter_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_starter)


def _die_with_parent() -> None:
    prctl = _prctl
    if prctl is None:  # a process not started through may_die_with_parent (spawn re-imports this)
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):
            return
    if prctl:
        prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)


def check_may_have_children() -> None:
    """Refuse clearly to start worker processes where ``multiprocess`` would assert."""
    import multiprocess

    if multiprocess.current_process().daemon:
        raise RuntimeError(
            "this process pool is created inside a daemonic process (a worker of another process "
            "pool built on multiprocess, such as multiprocess.Pool or pathos), which may not start "
            "processes of its own. Use threads for the inner pool (use_threads=True), or make the "
            "outer pool an mtasklite_like Pool, whose process workers may run pools of their own"
        )
