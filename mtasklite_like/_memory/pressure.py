"""The run's gate on the whole machine: no new work while memory is short (``min_available_memory``).

Before it hands work to workers, the run asks :meth:`PressureGate.closed`. The gate reads the
memory available to the pool (``source.MemorySource.available``: the cgroup's room when it has a
limit, else the system's ``MemAvailable``) at most every :data:`LOOK_SECONDS`, and is closed
while that is below the threshold. Closed, the run reads no input and sends no batch, not even a
retry; work in flight finishes, and its results are delivered. The run looks again every
:data:`LOOK_SECONDS` and opens when memory is back.

It says so: a :class:`~mtasklite_like.MemoryPressureWarning` at the first pause of the run and at
the first resumption, and :attr:`PressureGate.status` (shown on progress bars) while paused.
It never hangs: with nothing in flight, no result can free memory, so after
``memory_pause_timeout`` seconds of that the run fails with
:class:`~mtasklite_like.MemoryPressureError`, saying what to change.
"""

from __future__ import annotations

import warnings

from .._errors import MemoryPressureError, MemoryPressureWarning
from .source import MemorySource, current
from .units import Threshold, format_bytes

__all__ = ["LOOK_SECONDS", "PressureGate"]

#: seconds between two readings of the memory available
LOOK_SECONDS = 0.05


class PressureGate:
    """Closed while the memory available to the pool is below ``threshold``."""

    def __init__(self, threshold: Threshold, timeout: float, source: MemorySource | None = None) -> None:
        self.threshold = threshold
        self.timeout = timeout
        self._source = source
        self._next_look = float("-inf")
        #: when the current pause began (None: open)
        self.paused_since: float | None = None
        #: since when nothing has been in flight during the current pause
        self._idle_since: float | None = None
        self._warned_pause = False
        self._warned_resume = False
        #: what a progress bar shows while the run is paused; None while it runs
        self.status: str | None = None
        self.pauses = 0

    @property
    def source(self) -> MemorySource:
        return self._source if self._source is not None else current()

    def closed(self, now: float) -> bool:
        """Whether the run must hold new work back now."""
        if now < self._next_look:
            return self.paused_since is not None
        self._next_look = now + LOOK_SECONDS
        reading = self.source.available()
        if reading is None:
            return False  # not known here (refused when the pool is built, so never expected)
        available, total = reading
        need = self.threshold.of(total)
        if available < need:
            if self.paused_since is None:
                self._pause(now, available, total, need)
            return True
        if self.paused_since is not None:
            self._resume(now, available)
        return False

    def _pause(self, now: float, available: int, total: int, need: int) -> None:
        self.paused_since = now
        self._idle_since = None
        self.pauses += 1
        self.status = f"paused: {format_bytes(available)} free < {format_bytes(need)}"
        if not self._warned_pause:
            self._warned_pause = True
            share = f" ({format_bytes(need)})" if self.threshold.fraction is not None else ""
            warnings.warn(
                f"the memory available to this pool ({format_bytes(available)} of {format_bytes(total)}) is "
                f"below min_available_memory={self.threshold}{share}: reading no more input and starting "
                "no new batches until it is back (work in flight goes on)",
                MemoryPressureWarning,
                stacklevel=2,
            )

    def _resume(self, now: float, available: int) -> None:
        since, self.paused_since = self.paused_since, None
        self.status = None
        if not self._warned_resume:
            self._warned_resume = True
            paused = 0.0 if since is None else now - since
            warnings.warn(
                f"memory is back ({format_bytes(available)} available to this pool): the run resumes "
                f"after a pause of {paused:.3g} s",
                MemoryPressureWarning,
                stacklevel=2,
            )

    def idle(self, now: float, idle: bool) -> None:
        """The run is paused, with nothing in flight (``idle``) or not: raise once it has been idle
        and paused for ``timeout`` seconds."""
        if not idle:
            self._idle_since = None
            return
        if self._idle_since is None:
            self._idle_since = now
        elif now - self._idle_since >= self.timeout:
            raise MemoryPressureError(
                f"the memory available to this pool stayed below min_available_memory={self.threshold} for "
                f"{self.timeout:g} s with no work in flight, so no result could free any. Free memory "
                "elsewhere, lower min_available_memory, or raise memory_pause_timeout to wait longer"
            )
