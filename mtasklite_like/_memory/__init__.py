"""Memory that governs itself: limits on what workers hold, and pauses when the machine runs short.

The pool bounds memory in three places, each in its own module here:

- ``limit``: a worker's own limit (``max_worker_memory``). The worker measures itself after its
  items and, once over, reports that it retires (``Retire``) after the item that crossed the limit;
  the engine requeues what it still held, free of charge, and starts a fresh worker in its place.
- ``watch``: the caller's watch over its workers (``kill_worker_memory``). A thread samples each
  worker's resident size and kills one that crosses the ceiling mid-task, so that the machine's
  OOM killer never has to choose a victim; the item it was running fails with
  :class:`~mtasklite_like.WorkerMemoryError`. The watch also keeps the last sample of each worker,
  so a worker killed from outside (by the kernel's OOM killer, say) is reported with what is known.
- ``pressure``: the run's gate on the whole machine (``min_available_memory``): while the memory
  available to the pool is short, no input is read and no batch sent; work in flight finishes.

All three read memory through ``source`` (one interface, swappable in tests), and sizes are parsed
by ``units`` (``"2GiB"``, ``"10%"``). What the caller holds itself (items read ahead, results not
yet consumed) is bounded by ``memory_budget`` in ``_engine.budget``.
"""

from __future__ import annotations

from .units import Threshold, format_bytes, parse_bytes, parse_threshold

__all__ = ["Threshold", "format_bytes", "parse_bytes", "parse_threshold"]
