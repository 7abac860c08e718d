"""Pools inside process workers: what lets a worker start workers of its own, and take them down
with it.

A worker process is *daemonic* in the pool's process: at interpreter exit ``multiprocess`` then
terminates it rather than joining it, so a busy or idle worker can never hang the exit. A daemonic
process may not start children, though, so each worker, once started, clears the flag on its own
view of itself (:func:`become_worker`). Its children are daemonic again in its own view: its exit
terminates them, and nothing at any level is ever joined without being stopped first.

No orphans. A worker ends when its parent disappears: its reader thread sees the task pipe close
or the parent pid change (``_backends.processes``). A worker of a nested pool also asks Linux to
kill it the moment its parent dies (``PR_SET_PDEATHSIG``), so when an outer worker is killed, its
own workers go at once. The signal follows the parent *thread* that started the worker, which for
a nested pool is the outer worker's main thread (tasks run there), alive as long as the worker.
Top-level workers started by the main thread ask for it too (the main thread lives as long as the
process); those started by another thread (one that iterates the results, and may end before the
pool) rely on the pipe and pid watch alone, which takes up to a second, and longer if the worker's
reader thread could not start (a lock held by another thread of the caller at fork time).

What cannot work fails with a message: a process pool inside a daemonic process that is not one of
ours (a ``multiprocess.Pool`` worker, for instance).
"""

from __future__ import annotations

import os
import signal
import sys
from typing import Any

__all__ = ["become_worker", "check_may_have_children", "inside_worker", "may_die_with_parent"]

_PR_SET_PDEATHSIG = 1
_inside_worker = False
#: libc's prctl, looked up in the parent before a worker starts (False: none on this system)
_prctl: Any = None


def inside_worker() -> bool:
    """True in a worker process of a pool of this package."""
    return _inside_worker


def become_worker(parent_pid: int, *, die_with_parent: bool) -> None:
    """Run first in a worker process: allow it children, and (``die_with_parent``: a nested worker,
    or one started by the main thread) tie its life to its parent's."""
    global _inside_worker
    _inside_worker = True
    if die_with_parent and sys.platform.startswith("linux"):
        _die_with_parent()  # first: before anything that could wait for a lock
        if os.getppid() != parent_pid:
            os._exit(1)  # the parent died before the request took effect
    import multiprocess

    me = multiprocess.current_process()
    if me.daemon:
        me.daemon = False  # this process's own view only; its parent still treats it as daemonic


def may_die_with_parent() -> bool:
    """Whether a worker started now, by this thread, may ask to die with its parent: in a worker
    (see the module docstring), or from the main thread, which lives as long as the process.

    Called in the parent before each start: it also looks ``prctl`` up here, so that the new
    process calls it without importing or loading anything first. A child forked while another
    thread of the parent held an import or loader lock would wait for that lock forever, before
    it could ask to die with its parent.
    """
    import threading

    global _prctl
    if _prctl is None and sys.platform.startswith("linux"):
        try:
            import ctypes

            _prctl = ctypes.CDLL(None, use_errno=True).prctl
        except (OSError, AttributeError):  # no prctl: the pipe and pid watches remain
            _prctl = False
    return _inside_worker or threading.current_thread() is threading.main_thread()


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
