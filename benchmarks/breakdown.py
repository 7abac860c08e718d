"""Where the time of a trivial map goes, per item: the caller's thread part by part, and the workers.

``python -m benchmarks.breakdown [N]`` maps ``x*x`` over ``list(range(N))`` (1,000,000 by default)
with ``Pool(n_jobs=2)`` on processes, as ``list(pool(data))``, five times, and prints the median
CPU time per item of each part:

- the caller's thread, measured with ``time.thread_time()`` around the functions of the engine
  that do one job each (reading the input, pickling a batch, writing it, waiting, reading a
  result message, unpickling it); what the engine's ``next_slow()`` spends besides them is its
  bookkeeping, and what the thread spends outside ``next_slow()`` is the hand-over of results
  to the consumer's loop (``list()`` appending them included);
- the workers: their CPU time (``os.times()``' children figures, read once the pool has joined
  them), of which the time inside tasks as the workers report it (``RunStats``: the per-item loop
  and the calls of ``x*x``); the rest is receiving, unpickling, pickling and sending.

The wrappers themselves cost about 0.1 us per call, a few ns per item at these batch sizes. The
figures are CPU time, not wall time: with two workers and the caller on two cores they add up to
more than the wall time. It runs against whatever ``mtasklite_like`` is importable, so two versions
can be compared (``PYTHONPATH=<other checkout> python -m benchmarks.breakdown``, from a directory
that does not shadow it). ``docs/performance.md`` shows its output before and after the work on the
hot path.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from typing import Any

_PARTS = [
    ("read the input (islice)", "feeder", "Feeder", "take"),
    ("pickle batches", "processes", None, "dumps_oob"),
    ("write to pipes", "processes", None, "send_message"),
    ("wait for workers (poll)", "processes", "_Watched", "wait"),
    ("wait for workers (poll)", "processes", None, "wait"),
    ("read result messages", "processes", None, "recv_message"),
    ("unpickle results", "processes", None, "decode"),
]


def _square(x: int) -> int:
    return x * x


def _wrap(owner: Any, name: str, label: str, spent: dict[str, float]) -> None:
    original = getattr(owner, name)

    def timed(*args: Any, **kwargs: Any) -> Any:
        began = time.thread_time()
        try:
            return original(*args, **kwargs)
        finally:
            spent[label] = spent.get(label, 0.0) + time.thread_time() - began

    setattr(owner, name, timed)


def measure(n: int, runs: int = 5) -> dict[str, float]:
    """The median ns per item of each part over ``runs`` runs of ``n`` items."""
    import mtasklite_like._backends.processes as processes
    import mtasklite_like._engine.feeder as feeder
    import mtasklite_like._engine.run as run
    from mtasklite_like import Pool

    modules = {"processes": processes, "feeder": feeder}
    spent: dict[str, float] = {}
    for label, module, cls, name in _PARTS:
        owner: Any = modules[module]
        if cls is not None:
            owner = getattr(owner, cls, None)
        if owner is not None and hasattr(owner, name):
            _wrap(owner, name, label, spent)
    _wrap(run.Run, "next_slow", "engine", spent)
    data = list(range(n))
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        spent.clear()
        before = os.times()
        began = time.thread_time()
        with Pool(_square, n_jobs=2) as pool:
            results = pool(data)
            out = list(results)
            busy = sum(w.busy_s for w in results.stats().workers)
        caller = time.thread_time() - began
        after = os.times()
        assert out[-1] == (n - 1) ** 2
        workers = (after.children_user + after.children_system
                   - before.children_user - before.children_system)
        figures = dict(spent)
        parts = sum(v for k, v in spent.items() if k != "engine")
        figures["engine bookkeeping"] = spent.get("engine", 0.0) - parts
        figures["hand-over to the consumer"] = caller - spent.get("engine", 0.0)
        figures["caller thread, in all"] = caller
        figures["workers: inside tasks"] = busy
        figures["workers: the rest"] = workers - busy
        figures["workers, in all"] = workers
        for key, value in figures.items():
            if key != "engine":
                samples.setdefault(key, []).append(value / n * 1e9)
    return {key: statistics.median(values) for key, values in samples.items()}


def main(argv: list[str]) -> None:
    n = int(argv[0]) if argv else 1_000_000
    import mtasklite_like

    figures = measure(n)
    where = os.path.dirname(os.path.dirname(os.path.abspath(mtasklite_like.__file__)))
    print(f"{n:,} x x*x, Pool(n_jobs=2), processes, list(pool(data)); mtasklite_like from {where}")
    print(f"{'part':<32} {'ns/item':>8}")
    order = [label for label, *_ in _PARTS]
    order += ["engine bookkeeping", "hand-over to the consumer", "caller thread, in all",
              "workers: inside tasks", "workers: the rest", "workers, in all"]
    seen: set[str] = set()
    for key in order:
        if key in figures and key not in seen:
            seen.add(key)
            print(f"{key:<32} {figures[key]:>8.0f}")


if __name__ == "__main__":
    main(sys.argv[1:])
