"""What a run spent its time on: per worker and in total (``results.stats()``, ``pool.stats()``).

Everything is counted per batch or per event, never per item, so statistics are always on.

Per worker, the workers measure themselves: the seconds spent in tasks (``BatchDone.elapsed``),
the seconds spent waiting for each batch since the previous one ended (``BatchDone.waited``), the
seconds building their object (``WorkerReady.init_s``). The caller measures the rest: when each
worker started and became ready, the bytes and the time it spent sending each batch, the bytes of
each answer, and, for each wait of a worker, what the caller was doing meanwhile.

That last part is what says what limited a run. The caller keeps two running totals of its own
time: with the consumer (outside the engine, between two calls of ``next()`` that found no
result ready) and waiting for the input (or reading it), and notes them, with the time, each time
it passes from one state to another. A worker's wait for a batch (as the worker measured it) ended
about when the caller sent the batch; the caller looks up how much each total grew over that
interval, and charges the wait to the consumer and the input accordingly, the rest to the caller
itself (dispatching, pickling, other workers' results). Where the worker does not measure its
waits, the caller measures them from when it learned the worker had nothing left. The verdict
compares the workers' busy share with the largest cause of their waits.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["RunStats", "WorkerStats"]

#: workers busy at least this share of their time: the task is what limits the run
BUSY_ENOUGH = 0.8
#: the caller's state changes remembered, to charge workers' waits (older ones are forgotten)
_MARKS = 4096
# The caller's states.
_INSIDE, _OUTSIDE, _INPUT = 0, 1, 2


@dataclass
class WorkerStats:
    """One worker's share of a run (or of every run of a pool).

    Attributes:
        worker: the worker's index.
        items: items it answered (results and failures; a retried item counts once per attempt).
        failed: failed attempts among them.
        batches: batches it answered.
        busy_s: seconds in tasks, as the worker measured them.
        idle_s: seconds it waited for work, as the worker measured them, plus its wait after its
            last batch until the end of the run.
        init_s: seconds building its object (``@delayed_init``) and running its initializer.
        start_s: seconds from its start to its ready report, as the caller saw it (``init_s`` plus
            starting a process or an actor, and the message).
        sent_bytes: bytes of the batches sent to it; received_bytes: of its answers (0 for threads).
        send_s: seconds the caller spent serialising and writing its batches.
        waited_input_s, waited_consumer_s, waited_caller_s: its waits, charged to the input, the
            consumer and the caller (see the module docstring).
        restarts: times it was replaced, by reason (``death``, ``timeout``, ``memory``,
            ``memory kill``, ``max_tasks``).
        peak_rss: the largest resident size seen in its place, bytes (None: not known).
    """

    worker: int
    items: int = 0
    failed: int = 0
    batches: int = 0
    busy_s: float = 0.0
    idle_s: float = 0.0
    init_s: float = 0.0
    start_s: float = 0.0
    sent_bytes: int = 0
    received_bytes: int = 0
    send_s: float = 0.0
    waited_input_s: float = 0.0
    waited_consumer_s: float = 0.0
    waited_caller_s: float = 0.0
    restarts: dict[str, int] = field(default_factory=dict)
    peak_rss: int | None = None

    def add(self, other: WorkerStats) -> None:
        """Add ``other`` (the same worker in another run) to these figures."""
        for name in ("items", "failed", "batches", "busy_s", "idle_s", "init_s", "start_s", "sent_bytes",
                     "received_bytes", "send_s", "waited_input_s", "waited_consumer_s", "waited_caller_s"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        for reason, count in other.restarts.items():
            self.restarts[reason] = self.restarts.get(reason, 0) + count
        if other.peak_rss is not None and (self.peak_rss is None or other.peak_rss > self.peak_rss):
            self.peak_rss = other.peak_rss

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON."""
        return {
            "worker": self.worker, "items": self.items, "failed": self.failed, "batches": self.batches,
            "busy_s": self.busy_s, "idle_s": self.idle_s, "init_s": self.init_s, "start_s": self.start_s,
            "sent_bytes": self.sent_bytes, "received_bytes": self.received_bytes, "send_s": self.send_s,
            "waited_input_s": self.waited_input_s, "waited_consumer_s": self.waited_consumer_s,
            "waited_caller_s": self.waited_caller_s, "restarts": dict(self.restarts),
            "peak_rss": self.peak_rss,
        }


class RunStats:
    """The statistics of one run as it goes (or the sum of a pool's runs); see the module docstring.

    ``print(stats)`` shows a short table; ``to_dict()`` gives plain values for JSON;
    ``summary()`` one line; ``verdict()`` what limited the run.
    """

    def __init__(self, n_workers: int, clock: Callable[[], float] | None = None) -> None:
        self.workers = [WorkerStats(w) for w in range(n_workers)]
        self._clock = clock
        #: runs added up (a pool's statistics are the sum of its runs')
        self.runs = 1
        self.started_at: float | None = None
        self.ended_at: float | None = None
        self._wall = 0.0  # of runs added up
        #: items released to the consumer, of which failed (final failures)
        self.items = 0
        self.failed = 0
        #: attempts run again because of a failure (retries), or free of charge (a worker's fault)
        self.retried = 0
        #: the caller's running totals: with the consumer; waiting for or reading the input
        self.consumer_s = 0.0
        self.input_s = 0.0
        #: batch sizes sent
        self.batch_count = 0
        self.batch_items = 0
        self.batch_min = 0
        self.batch_max = 0
        # When each worker ran out of work, with the totals then (None: it has work); used where
        # workers do not measure their waits.
        self._free: list[tuple[float, float, float] | None] = [None] * n_workers
        # The caller's view of each worker's last wait before a batch, (began, ended), charged when
        # the batch is answered without a wait the worker measured itself.
        self._pending: list[tuple[float, float] | None] = [None] * n_workers
        self._left_at: float | None = None  # when control went back to the consumer
        self._input_since: float | None = None  # when the current wait for input began
        # (time, consumer total, input total, state from then on), oldest first
        self._marks: deque[tuple[float, float, float, int]] = deque(maxlen=_MARKS)
        self._mark_times: deque[float] = deque(maxlen=_MARKS)

    # -- the engine's side ------------------------------------------------------------------------

    def start(self, now: float, ready: list[bool]) -> None:
        """The run starts; workers already up (``ready``) wait for work from now on."""
        self.started_at = now
        self._free = [(now, 0.0, 0.0) if up else None for up in ready]
        self._mark(now, _INSIDE)

    def _mark(self, now: float, state: int) -> None:
        self._marks.append((now, self.consumer_s, self.input_s, state))
        self._mark_times.append(now)

    def _totals_at(self, when: float) -> tuple[float, float]:
        """The consumer and input totals as they stood at ``when`` (in the recent past)."""
        i = bisect_right(self._mark_times, when) - 1
        if i < 0:
            if not self._marks:
                return self.consumer_s, self.input_s
            i, when = 0, self._mark_times[0]  # older than what is remembered: from there
        t, consumer, waiting, state = self._marks[i]
        if state == _OUTSIDE:
            consumer += when - t
        elif state == _INPUT:
            waiting += when - t
        return consumer, waiting

    def _charge(self, stats: WorkerStats, began: float, ended: float) -> None:
        """Charge a worker's wait from ``began`` to ``ended`` to what the caller did meanwhile."""
        gap = max(0.0, ended - began)
        if gap <= 0.0:
            return
        c0, i0 = self._totals_at(began)
        c1, i1 = self._totals_at(ended)
        to_consumer = min(gap, max(0.0, c1 - c0))
        to_input = min(gap - to_consumer, max(0.0, i1 - i0))
        stats.waited_consumer_s += to_consumer
        stats.waited_input_s += to_input
        stats.waited_caller_s += gap - to_consumer - to_input

    def worker_ready(self, worker: int, now: float, init_s: float | None, took: float, idle: bool) -> None:
        """``worker`` is ready: building its object took ``init_s`` (as it measured), its whole start
        ``took`` (as the caller saw it); ``idle``: it holds no work yet, and waits for some."""
        stats = self.workers[worker]
        stats.init_s += init_s or 0.0
        stats.start_s += took
        self._free[worker] = (now, self.consumer_s, self.input_s) if idle else None

    def sent(self, worker: int, n_items: int, nbytes: int, seconds: float, now: float) -> None:
        """A batch of ``n_items`` went to ``worker``: ``nbytes`` in ``seconds`` of the caller's."""
        stats = self.workers[worker]
        stats.sent_bytes += nbytes
        stats.send_s += seconds
        if self.batch_count == 0 or n_items < self.batch_min:
            self.batch_min = n_items
        if n_items > self.batch_max:
            self.batch_max = n_items
        self.batch_count += 1
        self.batch_items += n_items
        free = self._free[worker]
        if free is not None:
            self._free[worker] = None
            self._pending[worker] = (free[0], now)

    def answered(self, worker: int, n_items: int, n_failed: int, busy: float, waited: float | None,
                 nbytes: int, sent_at: float, now: float, idle: bool) -> None:
        """``worker`` answered a batch sent at ``sent_at``, having waited ``waited`` seconds for it
        (None: not measured); ``idle``: it holds nothing more now."""
        stats = self.workers[worker]
        stats.items += n_items
        stats.failed += n_failed
        stats.batches += 1
        stats.busy_s += busy
        stats.received_bytes += nbytes
        pending, self._pending[worker] = self._pending[worker], None
        if waited is not None:
            if self.started_at is not None:
                # Waits before this run (between two runs of a pool) are not this run's.
                waited = min(waited, max(0.0, sent_at - self.started_at))
            stats.idle_s += waited
            self._charge(stats, sent_at - waited, sent_at)
        else:
            if pending is not None:
                stats.idle_s += pending[1] - pending[0]
                self._charge(stats, *pending)
        if idle:
            self._free[worker] = (now, self.consumer_s, self.input_s)

    def gone(self, worker: int, reason: str) -> None:
        """``worker`` is replaced (``reason``); the fresh one is starting."""
        restarts = self.workers[worker].restarts
        restarts[reason] = restarts.get(reason, 0) + 1
        self._free[worker] = None

    def left(self, now: float) -> None:
        """Control goes back to the consumer."""
        self._left_at = now
        self._mark(now, _OUTSIDE)

    def entered(self, now: float) -> None:
        """The consumer asks for more."""
        if self._left_at is not None:
            self.consumer_s += max(0.0, now - self._left_at)
            self._left_at = None
            self._mark(now, _INSIDE)

    def input_wait(self, began: float, ended: float) -> None:
        """The caller waited for the input (or read it) from ``began`` to ``ended``."""
        seconds = ended - began
        if seconds <= 0:
            return
        if self._marks and self._mark_times[-1] <= began:
            self._mark(began, _INPUT)
            self.input_s += seconds
            self._mark(ended, _INSIDE)
        else:
            self.input_s += seconds

    def finish(self, now: float) -> None:
        """The run is over: workers without work waited until now."""
        if self.ended_at is not None:
            return
        self.ended_at = now
        for worker, free in enumerate(self._free):
            if free is not None:
                self.workers[worker].idle_s += max(0.0, now - free[0])
        self._free = [None] * len(self._free)

    # -- reading ----------------------------------------------------------------------------------

    @property
    def wall_s(self) -> float:
        """Seconds the run took (so far, while it runs), or the runs added up."""
        if self.started_at is None:
            return self._wall
        end = self.ended_at
        if end is None:
            end = self._clock() if self._clock is not None else self.started_at
        return self._wall + end - self.started_at

    def busy_share(self) -> float | None:
        """The workers' time in tasks, out of their time in tasks and waiting for work."""
        busy = sum(w.busy_s for w in self.workers)
        idle = sum(w.waited_input_s + w.waited_consumer_s + w.waited_caller_s for w in self.workers)
        return None if busy + idle <= 0 else busy / (busy + idle)

    def verdict(self) -> str:
        """What limited the run, in a sentence."""
        share = self.busy_share()
        if share is None:
            return "nothing ran"
        if share >= BUSY_ENOUGH:
            return f"workers busy {share:.0%}: the task is the bottleneck"
        waits = {
            "input": sum(w.waited_input_s for w in self.workers),
            "consumer": sum(w.waited_consumer_s for w in self.workers),
            "caller": sum(w.waited_caller_s for w in self.workers),
        }
        cause = max(waits, key=lambda k: waits[k])
        idle = 1 - share
        if cause == "input":
            return f"workers idle {idle:.0%} waiting for input: the input is the bottleneck"
        if cause == "consumer":
            return (f"workers idle {idle:.0%} while results waited for the consumer: the consumer is the "
                    "bottleneck")
        return (
            f"workers idle {idle:.0%} waiting for the caller to hand out work: the caller is the bottleneck "
            "(tasks too short for the transport? larger batches help: chunk_size)"
        )

    def summary(self) -> str:
        """One line: items, time, rate, failures and the verdict."""
        wall = self.wall_s
        rate = f", {self.items / wall:,.0f} items/s" if wall > 0 else ""
        failed = f", {self.failed:,} failed" if self.failed else ""
        return f"{self.items:,} items in {wall:.3g} s{rate}{failed}; {self.verdict()}"

    def to_dict(self) -> dict[str, Any]:
        """Plain values, for JSON: the run's totals, ``"workers"`` (one dict per worker) and
        ``"verdict"``."""
        return {
            "runs": self.runs, "wall_s": self.wall_s, "items": self.items, "failed": self.failed,
            "retried": self.retried, "consumer_s": self.consumer_s, "input_s": self.input_s,
            "batches": self.batch_count,
            "batch_size": {"min": self.batch_min, "max": self.batch_max,
                           "mean": self.batch_items / self.batch_count if self.batch_count else 0.0},
            "busy_share": self.busy_share(), "verdict": self.verdict(),
            "workers": [w.to_dict() for w in self.workers],
        }

    def __str__(self) -> str:
        header: tuple[str, ...] = ("worker", "items", "failed", "batches", "busy s", "idle s", "start s",
                                   "sent MB", "recv MB", "restarts", "peak RSS MB")
        rows = [header]
        total = WorkerStats(-1)
        for w in self.workers:
            total.add(w)
            rows.append(_row(str(w.worker), w))
        if len(self.workers) > 1:
            rows.append(_row("all", total))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        lines = ["  ".join(cell.rjust(width) for cell, width in zip(r, widths)) for r in rows]
        mean = self.batch_items / self.batch_count if self.batch_count else 0.0
        waits = (
            f"workers waited for: input {total.waited_input_s:.3g} s, "
            f"consumer {total.waited_consumer_s:.3g} s, caller {total.waited_caller_s:.3g} s; "
            f"batches of {self.batch_min}-{self.batch_max} items (mean {mean:.1f}); retried {self.retried}"
        )
        return "\n".join([self.summary(), *lines, waits])

    # -- adding up --------------------------------------------------------------------------------

    def add(self, other: RunStats) -> None:
        """Add a finished run's figures to these (a pool's statistics)."""
        while len(self.workers) < len(other.workers):
            self.workers.append(WorkerStats(len(self.workers)))
        for mine, theirs in zip(self.workers, other.workers):
            mine.add(theirs)
        self._wall += other.wall_s
        self.runs += other.runs
        for name in ("items", "failed", "retried", "consumer_s", "input_s", "batch_count", "batch_items"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        if other.batch_count:
            self.batch_min = other.batch_min if not self.batch_min else min(self.batch_min, other.batch_min)
            self.batch_max = max(self.batch_max, other.batch_max)

    @classmethod
    def total(cls, runs: list[RunStats]) -> RunStats:
        """The sum of ``runs``."""
        out = cls(max((len(r.workers) for r in runs), default=0))
        out.runs = 0
        for run in runs:
            out.add(run)
        return out


def _row(name: str, w: WorkerStats) -> tuple[str, ...]:
    restarts = sum(w.restarts.values())
    peak = "-" if w.peak_rss is None else f"{w.peak_rss / 1e6:,.0f}"
    return (name, f"{w.items:,}", f"{w.failed:,}", f"{w.batches:,}", f"{w.busy_s:.3g}", f"{w.idle_s:.3g}",
            f"{w.start_s:.3g}", f"{w.sent_bytes / 1e6:,.1f}", f"{w.received_bytes / 1e6:,.1f}", str(restarts),
            peak)
