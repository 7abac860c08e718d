"""The caller's watch over its workers' memory: samples, the hard ceiling, and deaths explained.

One :class:`MemoryWatch` per pool (held by its worker set) keeps, per worker slot, what is known
of its memory across the processes that held the slot: the last sample, the largest resident size
seen, how many times it was recycled (``max_worker_memory``) or killed (``kill_worker_memory``).

Samples come from two places: the engine, after a batch is answered, at most once every
:data:`SAMPLE_SECONDS` per worker (so a death can be reported with a recent figure), and, with
``kill_worker_memory``, a thread that reads every worker's resident size each
:data:`WATCH_SECONDS` and kills one whose own memory crosses the ceiling, before the kernel's OOM
killer picks a victim of its own. The kill is recorded first, so that the death the backend then
reports is told apart from any other (:meth:`MemoryWatch.explain`): the item that was running
fails with ``WorkerMemoryError``. A SIGKILL the pool did not send is reported with the worker's
last sample and, when the OOM killer's counters moved since the last look, as a likely OOM kill.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass

from .source import MemorySource, current
from .units import format_bytes

__all__ = ["SAMPLE_SECONDS", "WATCH_SECONDS", "MemoryKill", "MemoryWatch", "WorkerMemory"]

#: seconds between two samples of a worker's memory taken by the engine after its batches
SAMPLE_SECONDS = 0.1
#: seconds between two looks of the watch thread at every worker (``kill_worker_memory``)
WATCH_SECONDS = 0.02


@dataclass(frozen=True)
class WorkerMemory:
    """What is known of one worker's memory (``Pool.worker_memory()``).

    Attributes:
        worker: the worker's index in the pool.
        pid: its process id now, or None (no process running, or not a process).
        rss: its resident size now, bytes (None: not known).
        peak: the largest resident size seen in this worker's place, over every process that
            held it (recycled ones included), bytes (None: not known).
        recycled: times it was replaced for going over ``max_worker_memory``.
        killed: times it was killed for crossing ``kill_worker_memory``.
    """

    worker: int
    pid: int | None
    rss: int | None
    peak: int | None
    recycled: int
    killed: int


@dataclass(frozen=True)
class MemoryKill:
    """The watch killed a worker for crossing ``kill_worker_memory``: its own memory then."""

    worker: int
    memory: int
    limit: int


class MemoryWatch:
    """Memory of a pool's workers, watched from the caller (see the module docstring)."""

    def __init__(
        self, n_workers: int, *, max_worker_memory: int | None = None, kill_worker_memory: int | None = None,
        source: MemorySource | None = None,
    ) -> None:
        self.max_worker_memory = max_worker_memory
        self.kill_limit = kill_worker_memory
        self._source = source
        self.last: list[tuple[int, int] | None] = [None] * n_workers  # (pid, resident size)
        self.peaks: list[int | None] = [None] * n_workers
        self.recycled = [0] * n_workers
        self.killed = [0] * n_workers
        self._next_sample = [0.0] * n_workers
        self._shared: dict[int, int] = {}  # pid -> resident pages found shared with others
        self._kills: dict[int, MemoryKill] = {}  # pid -> the kill the watch sent it
        self._pids: Callable[[], list[int | None]] = list
        self._oom: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    @property
    def source(self) -> MemorySource:
        return self._source if self._source is not None else current()

    # -- the workers' life ------------------------------------------------------------------------

    def attach(self, pids: Callable[[], list[int | None]]) -> None:
        """Workers started; ``pids()`` gives their process ids (empty: not processes)."""
        self.detach()
        self._pids = pids
        self._oom = self.source.oom_kills()
        if self.kill_limit is not None and pids():
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._watch, name="mtasklite_like-memory", daemon=True)
            self._thread.start()

    def detach(self) -> None:
        """Workers stopped (idempotent): the watch thread ends."""
        thread, self._thread = self._thread, None
        self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(1.0)
        self._pids = list

    def after_batch(self, worker: int, now: float) -> None:
        """A batch was answered by ``worker``: sample its memory if the last sample is old."""
        if now < self._next_sample[worker]:
            return
        self._next_sample[worker] = now + SAMPLE_SECONDS
        pids = self._pids()
        if worker < len(pids) and pids[worker] is not None:
            self._sample(worker, pids[worker])  # type: ignore[arg-type]

    def retired(self, worker: int, memory: int, peak: int | None) -> None:
        """``worker`` retired over ``max_worker_memory`` (and will be replaced)."""
        self.recycled[worker] += 1
        self._note_peak(worker, peak if peak is not None else memory)

    def _sample(self, worker: int, pid: int) -> int | None:
        rss = self.source.rss(pid)
        if rss is not None:
            self.last[worker] = (pid, rss)
            self._note_peak(worker, rss)
        return rss

    def _note_peak(self, worker: int, size: int) -> None:
        peak = self.peaks[worker]
        if peak is None or size > peak:
            self.peaks[worker] = size

    # -- the ceiling ------------------------------------------------------------------------------

    def _watch(self) -> None:
        stop, limit = self._stop, self.kill_limit
        assert limit is not None
        while not stop.wait(WATCH_SECONDS):
            try:
                self._look(limit)
            except Exception as exc:  # never die quietly: the ceiling would be gone
                print(f"mtasklite_like: the memory watch failed a look: {exc!r}", file=sys.stderr)

    def _look(self, limit: int) -> None:
        """Sample every worker once; kill one whose own memory is over ``limit``."""
        for worker, pid in enumerate(self._pids()):
            if pid is None or pid in self._kills or worker >= len(self.last):
                continue
            rss = self._sample(worker, pid)
            if rss is None or rss - self._shared.get(pid, 0) <= limit:
                continue
            own = self.source.own(pid)
            if own is not None:
                self._shared[pid] = max(0, rss - own)
            measured = rss if own is None else own
            if measured > limit:
                self._kill(worker, pid, measured, limit)

    def _kill(self, worker: int, pid: int, measured: int, limit: int) -> None:
        with self._lock:
            self._kills[pid] = MemoryKill(worker, measured, limit)
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            with self._lock:
                self._kills.pop(pid, None)  # it had ended already

    # -- deaths -----------------------------------------------------------------------------------

    def explain(self, worker: int, pid: int | None, exitcode: int | None) -> MemoryKill | str | None:
        """Why worker ``worker`` (process ``pid``) died, as far as memory tells: the watch's own
        kill, words to add to the report of a SIGKILL the pool did not send, or None."""
        if pid is not None:
            with self._lock:
                kill = self._kills.pop(pid, None)
            self._shared.pop(pid, None)
            if kill is not None:
                self.killed[worker] += 1
                return kill
        if exitcode != -signal.SIGKILL:
            return None
        words = ["not sent by the pool"]
        last = self.last[worker] if worker < len(self.last) else None
        if last is not None and last[0] == pid:
            words.append(f"its last memory sample: {format_bytes(last[1])} resident")
        named = (("max_worker_memory", self.max_worker_memory), ("kill_worker_memory", self.kill_limit))
        limits = [f"{name}={format_bytes(value)}" for name, value in named if value is not None]
        if limits:
            words.append("limit " + ", ".join(limits))
        before, now = self._oom, self.source.oom_kills()
        self._oom = now
        if before is not None and now is not None and now > before:
            words.append("likely killed by the kernel's OOM killer: its kill counter moved")
        return "; ".join(words)

    # -- the caller's view ------------------------------------------------------------------------

    def report(self) -> list[WorkerMemory]:
        """Per worker: its memory now, its peak, its recycling and kill counts."""
        pids = self._pids()
        out = []
        for worker in range(len(self.recycled)):
            pid = pids[worker] if worker < len(pids) else None
            rss = peak = None
            if pid is not None:
                rss = self._sample(worker, pid)
                peak = self.source.peak(pid)
                if peak is not None:
                    self._note_peak(worker, peak)
            out.append(WorkerMemory(worker, pid, rss, self.peaks[worker], self.recycled[worker],
                                    self.killed[worker]))
        return out


