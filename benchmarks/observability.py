"""Observability: workers' log records forwarded to the caller (``logs``), and progress reported
from inside a task (``task-progress``).

``logs``: 2 process workers run items that do nothing but log, ``RECORDS_PER_ITEM`` records each
(``log.info("item %d record %d", x, k)``), and the records end up in a file. The reference is the
pool with ``forward_logs=False`` whose workers each write a file of their own (a ``FileHandler`` added
by the pool's ``initializer``); the other row is the pool with its default ``forward_logs=True``,
the records handed to one ``FileHandler`` in the caller. Both write a line of the same shape (the
time, the level, where the record came from: worker and item, or the worker's pid; the message), so
the two differ in where records are formatted and written: in each worker, or all of them in the
caller. Every run is a child process
of its own (``python -m benchmarks.observability logs HOW N``, :mod:`benchmarks.children`), so one
configuration's logging set-up never reaches the other's. The child times create pool -> consume
the results -> close, reads the caller's CPU time over the same span (``time.process_time``) and the
workers' once they are reaped (``RUSAGE_CHILDREN``), then reads the files back: per worker, the
records must come in order (items non-decreasing, each item's records in the order emitted), every
item's records must all be there exactly once, and a forwarded record's ``item`` attribute must
name the item its message names. A run whose files fail that check is reported as an error.

``task-progress``: items of ``STEPS`` steps, each step summing a list of floats (its length
calibrated so a step takes about 20 µs of CPU on this machine when it is quiet: items of about
200 ms), on 2 process workers; the task with ``mtasklite_like.progress((i + 1) / STEPS)`` after every
step against the same task without the call. Runs alternate after a warm-up of each, as elsewhere
(:mod:`benchmarks.measure`), but the pairs run ``without, with`` and ``with, without`` by turns; the
ratio is the median over the pairs of (time with / time without). Each item also returns the CPU
time its loop took (``time.thread_time``), from which the notes give the cost of one call in CPU
time, from the quickest items with and without the calls (see :func:`run_task_progress`). The same
pair runs again with 2 µs steps (items of about 20 ms, no target) to show where the call starts to
cost.
"""

from __future__ import annotations

import gc
import json
import logging
import os
import statistics
import sys
import time
from collections import Counter
from typing import Any

from .children import GiB, run_child

# -- logs: the task and the workers' set-up (module level: the pool sends them by name) ------------------

#: the logger the tasks log to
LOGGER = "benchmarks.worker_logs"
#: records each item emits
RECORDS_PER_ITEM = 10
#: the line written for each record: forwarded (the caller's handler), and in a worker's own file
FORWARDED_FORMAT = "%(asctime)s %(levelname)s %(worker)s %(item)s %(message)s"
WORKER_FORMAT = "%(asctime)s %(levelname)s %(process)d %(message)s"
#: the most the processes of one run may hold together (RSS) before it is stopped
LOGS_CAP = 2 * GiB

_log = logging.getLogger(LOGGER)


def log_item(x: int) -> int:
    """The task: ``RECORDS_PER_ITEM`` records at INFO, no other work."""
    for k in range(RECORDS_PER_ITEM):
        _log.info("item %d record %d", x, k)
    return x


def open_worker_file(directory: str) -> None:
    """The pool's ``initializer`` in the reference: a ``FileHandler`` of this worker's own."""
    handler = logging.FileHandler(os.path.join(directory, f"worker-{os.getpid()}.log"))
    handler.setFormatter(logging.Formatter(WORKER_FORMAT))
    _log.addHandler(handler)
    _log.setLevel(logging.INFO)


# -- logs: the child -------------------------------------------------------------------------------------


def _parse(path: str, forwarded: bool) -> dict[str, list[tuple[int, int]]]:
    """A log file's records as ``(item, record)`` per worker, in the file's order. A forwarded line
    names its worker and item (checked against the message); a worker's own file is one worker."""
    by_worker: dict[str, list[tuple[int, int]]] = {}
    with open(path) as f:
        for line in f:
            fields = line.split()
            # date time level [worker item | pid] "item" X "record" K
            x, k = int(fields[-3]), int(fields[-1])
            if forwarded:
                worker, item = fields[3], fields[4]
                if item != str(x) or worker == "None":
                    raise AssertionError(f"a forwarded record of item {x} says worker={worker}, item={item}")
            else:
                worker = path
            by_worker.setdefault(worker, []).append((x, k))
    return by_worker


def _check_records(by_worker: dict[str, list[tuple[int, int]]], n: int) -> None:
    """Per worker the records in order; every item's ``RECORDS_PER_ITEM`` records there, once."""
    seen: Counter[tuple[int, int]] = Counter()
    for worker, records in by_worker.items():
        if records != sorted(records):
            first = next(i for i in range(1, len(records)) if records[i] < records[i - 1])
            raise AssertionError(f"worker {worker}: record {records[first]} came after {records[first - 1]}")
        seen.update(records)
    expected = n * RECORDS_PER_ITEM
    twice = sum(1 for c in seen.values() if c > 1)
    every = {(x, k) for x in range(n) for k in range(RECORDS_PER_ITEM)}
    if len(seen) != expected or twice or set(seen) != every:
        raise AssertionError(f"{len(seen):,} distinct records of {expected:,} expected, {twice:,} repeated")


def logs_child(how: str, n: int) -> dict[str, Any]:
    """One measured run of ``n`` items in this process: ``how`` is ``forward`` (the default pool, one
    ``FileHandler`` here) or ``files`` (``forward_logs=False``, a file per worker)."""
    import resource
    import shutil
    import tempfile

    from mtasklite_like import Pool

    directory = tempfile.mkdtemp(prefix="mtl-bench-logs-")
    try:
        handler = None
        options: dict[str, Any] = {}
        if how == "forward":
            handler = logging.FileHandler(os.path.join(directory, "caller.log"))
            handler.setFormatter(logging.Formatter(FORWARDED_FORMAT))
            _log.addHandler(handler)
            _log.setLevel(logging.INFO)
        elif how == "files":
            options = {"forward_logs": False, "initializer": open_worker_file, "initargs": (directory,)}
        else:
            raise ValueError(f"unknown logs run {how!r}: forward or files")
        cpu = time.process_time()
        start = time.perf_counter()
        with Pool(log_item, n_jobs=2, **options) as pool:
            results = list(pool(range(n)))
        seconds = time.perf_counter() - start
        caller_cpu = time.process_time() - cpu
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        if handler is not None:
            _log.removeHandler(handler)
            handler.close()
        if results != list(range(n)):
            raise AssertionError(f"{how}: wrong results ({len(results)} for {n} items)")
        files = sorted(os.listdir(directory))
        by_worker: dict[str, list[tuple[int, int]]] = {}
        for name in files:
            by_worker.update(_parse(os.path.join(directory, name), forwarded=how == "forward"))
        _check_records(by_worker, n)
        return {
            "run": how,
            "items": n,
            "records": n * RECORDS_PER_ITEM,
            "seconds": seconds,
            "caller_cpu_s": caller_cpu,
            "workers_cpu_s": usage.ru_utime + usage.ru_stime,
            "files": len(files),
            "workers_seen": len(by_worker),
        }
    finally:
        shutil.rmtree(directory, ignore_errors=True)


# -- logs: the parent ------------------------------------------------------------------------------------


def run_logs(w: Any, repeat: int, log: Any) -> list[Any]:
    """Rounds of ``files, forward``, each run a fresh child
    (:func:`benchmarks.measure.run_child_rounds`); ours/this on the forwarding row is the median over
    the rounds of its time / the per-worker files' time. The notes give the caller's CPU time per
    record and the workers' CPU time (medians)."""
    from .measure import Row, run_child_rounds
    from .workloads import Config

    def probe(cfg: Config, items: int) -> dict[str, Any]:
        result, _ = run_child("benchmarks.observability", ["logs", cfg.run, str(items)],
                              what=f"logs {cfg.run}", timeout=300.0, cap=LOGS_CAP, interval=0.25)
        return result

    def describe(row: Row, runs: list[dict[str, Any]]) -> None:
        records = runs[0]["records"]
        caller_us = statistics.median(r["caller_cpu_s"] for r in runs) / records * 1e6
        workers_s = statistics.median(r["workers_cpu_s"] for r in runs)
        how = (f"{records / statistics.median(row.samples):,.0f} records/s; caller CPU {caller_us:.1f} us "
               f"per record, workers' CPU {workers_s:.2f} s")
        row.note = f"{row.note}; {how}" if row.note else how
        key = "file_per_worker" if row.reference else "forwarded"
        w.notes[f"{key}_caller_us_per_record"] = round(caller_us, 1)
        w.notes[f"{key}_workers_cpu_s"] = round(workers_s, 2)

    return run_child_rounds(w, repeat, log, probe, describe)


# -- task-progress: the task -----------------------------------------------------------------------------

#: steps of an item, and calls of progress() in an item that reports
STEPS = 10_000
#: the length of a step (µs) in the rows with the target, and in the informative rows
LONG_STEP_US = 20
SHORT_STEP_US = 2
#: floats summed per step, by step length in µs (set by :func:`calibrate_steps`)
_FLOATS: dict[int, int] = {}


def _values(floats: int) -> list[float]:
    """Small whole numbers as floats: their sums, and sums of sums, are exact."""
    return [float(i % 8) for i in range(floats)]


def stepped(item: tuple[int, int, bool]) -> tuple[float, float]:
    """``steps`` steps, each summing a list of ``floats`` floats, with ``progress()`` after each one
    when ``report``; returns the total and the CPU time of the loop (its thread's, seconds)."""
    steps, floats, report = item
    values = _values(floats)
    total = 0.0
    if report:
        from mtasklite_like import progress

        start = time.thread_time()
        for i in range(steps):
            total += sum(values)
            progress((i + 1) / steps)
    else:
        start = time.thread_time()
        for _ in range(steps):
            total += sum(values)
    return total, time.thread_time() - start


def calibrate_steps() -> dict[str, Any]:
    """The list length whose sum (a step of :func:`stepped`) takes each step length here (in CPU time)."""
    probe_steps = 2_000

    def step_seconds(floats: int) -> float:
        # the quickest of 5: this machine's speed swings by tens of percent from second to second, so the
        # median lands on either side; the steps are then about their length when the machine is quiet
        return min(stepped((probe_steps, floats, False))[1] for _ in range(5)) / probe_steps

    notes: dict[str, Any] = {}
    for us in (LONG_STEP_US, SHORT_STEP_US):
        floats = 100 * us
        for _ in range(2):  # rescale from the time at the last guess: a step is not linear in its length
            floats = max(1, round(floats * us * 1e-6 / step_seconds(floats)))
        _FLOATS[us] = floats
        notes[f"floats_per_{us}us_step"] = floats
        notes[f"{us}us_step_takes_us"] = round(step_seconds(floats) * 1e6, 2)
    return notes


# -- task-progress: the runs -----------------------------------------------------------------------------


def _run_steps(spec: tuple[int, bool], items: int, label: str) -> tuple[float, list[float]]:
    """One timed run of ``items`` items (create pool -> results -> close) on 2 process workers;
    returns the seconds and each item's CPU seconds. Results are checked after the clock stops."""
    from mtasklite_like import Pool

    from .measure import WrongResults, _deadline

    step_us, report = spec
    floats = _FLOATS[step_us]
    data = [(STEPS, floats, report)] * items
    expected = STEPS * sum(_values(floats))
    gc.collect()
    with _deadline(label):
        start = time.perf_counter()
        with Pool(stepped, n_jobs=2) as pool:
            results = list(pool(data))
        seconds = time.perf_counter() - start
    if len(results) != items or any(total != expected for total, _ in results):
        raise WrongResults(f"{label} returned wrong results ({len(results)} results for {items} items)")
    return seconds, [cpu for _, cpu in results]


def run_task_progress(w: Any, repeat: int, log: Any) -> list[Any]:
    """Each configuration that calls ``progress()`` (``run`` = ``(step µs, True)``) is paired with the
    one of the same step length that does not (``(step µs, False)``): after a warm-up of each, runs
    alternate ``without, with`` and ``with, without`` by turns (in a check of 20 pairs here, the
    second run of a pair came out a few percent slower, whichever went first); the row's ratio is the
    median over the pairs of time with / time without (both map the same items).

    In CPU time: each row's median item, and its quickest item of all its runs. The cost of the calls
    is taken from the quickest items, with and without (their ratio less 1, and the difference over
    ``STEPS`` for one call): another process on the same core slows an item's CPU time too, by tens of
    percent here, never speeds it up, so the quickest item is the least disturbed one, where the
    median over runs paired in time was seen to land anywhere between -13% and +30%."""
    from .measure import Row, _error_text, _items, pairs_for, settle

    configs = [w.reference, *w.peers]
    rows = {id(c): Row(w.name, c.label, c.short, c is w.reference, _items(w, c), "items/s", note=c.note)
            for c in configs}
    #: per configuration, each measured run's seconds (None where it failed), and every item's CPU time
    times: dict[int, list[float | None]] = {id(c): [] for c in configs}
    cpus: dict[int, list[float]] = {id(c): [] for c in configs}
    pairs = [(next(b for b in configs if b.run == (c.run[0], False)), c) for c in configs if c.run[1]]
    for cfg in configs:
        try:
            _run_steps(cfg.run, _items(w, cfg), cfg.label)  # warm-up
        except Exception as exc:
            rows[id(cfg)].status, rows[id(cfg)].error = "ERROR", _error_text(exc)
    for k in range(pairs_for(w, repeat)):
        for pair in pairs:
            for cfg in pair if k % 2 == 0 else pair[::-1]:
                row = rows[id(cfg)]
                if row.error:
                    times[id(cfg)].append(None)
                    continue
                try:
                    seconds, item_cpus = _run_steps(cfg.run, row.items, cfg.label)
                except Exception as exc:
                    row.status, row.error = "ERROR", _error_text(exc)
                    times[id(cfg)].append(None)
                    continue
                times[id(cfg)].append(seconds)
                cpus[id(cfg)].extend(item_cpus)
                row.samples.append(seconds)
    for cfg in configs:
        row = rows[id(cfg)]
        if row.samples:
            row.value = row.items / statistics.median(row.samples)
            median, quickest = statistics.median(cpus[id(cfg)]) * 1000, min(cpus[id(cfg)]) * 1000
            how = f"CPU per item {median:.1f} ms (median), {quickest:.1f} ms (quickest)"
            row.note = f"{row.note}; {how}" if row.note else how
        if cfg is w.reference:
            row.ratio = 1.0
    for base, cfg in pairs:
        row = rows[id(cfg)]
        paired = [(b, t) for b, t in zip(times[id(base)], times[id(cfg)]) if b is not None and t is not None]
        if not paired:
            continue
        row.ratio = statistics.median(t / b for b, t in paired)
        row.measured, row.measured_unit = row.ratio, "x"
        with_cpu, without_cpu = min(cpus[id(cfg)]), min(cpus[id(base)])
        share = with_cpu / without_cpu - 1
        per_call_us = (with_cpu - without_cpu) / STEPS * 1e6
        row.note += f"; quickest items: {share:+.1%} CPU, {per_call_us:+.2f} us per call"
        w.notes[f"{cfg.run[0]}us_steps_cpu_cost"] = f"{share:+.1%}"
        w.notes[f"{cfg.run[0]}us_steps_cpu_us_per_call"] = round(per_call_us, 2)
    for cfg in configs:
        row = rows[id(cfg)]
        settle(row, cfg, log)
    return list(rows.values())


# -- the rows --------------------------------------------------------------------------------------------


def workloads(quick: bool) -> list[Any]:
    """The ``logs`` and ``task-progress`` rows (``--quick``: 2,000 items of logs instead of 10,000, a
    quarter of the items of steps)."""
    from .workloads import Config, Target, Workload, costs_at_most

    n = 2_000 if quick else 10_000
    logs = Workload(
        name="logs",
        title=(f"{n * RECORDS_PER_ITEM:,} log records from 2 process workers ({n:,} items x "
               f"{RECORDS_PER_ITEM} log.info, no other work) into a FileHandler: forwarded to the "
               "caller's vs one per worker"),
        kind="logs",
        items=n,
        reference=Config("ours: Pool(2, forward_logs=False), a file per worker", "ours, file per worker",
                         "files", note="a FileHandler added in each worker by the pool's initializer"),
        peers=[Config("ours: Pool(2), forwarded to the caller's FileHandler", "ours, forwarded", "forward",
                      target=Target("ours/this <= 1.2", "<=", 1.2),
                      note=("the default forward_logs=True, one FileHandler in the caller; time "
                            "forwarded <= 1.2 x time with a file per worker; records checked in order "
                            "per worker, each with its item"))],
    )
    long_n = 2 if quick else 8
    short_n = 10 if quick else 40
    task_progress = Workload(
        name="task-progress",
        title=(f"{long_n} items of {STEPS:,} steps of ~{LONG_STEP_US} us (~200 ms), processes, 2 workers: "
               f"progress() after every step vs no call; and {short_n} items of ~{SHORT_STEP_US} us steps"),
        kind="task-progress",
        items=long_n,
        reference=Config(f"ours: Pool(2), {LONG_STEP_US} us steps, no progress()", "ours, no progress()",
                         (LONG_STEP_US, False)),
        peers=[
            Config(f"ours: Pool(2), {LONG_STEP_US} us steps, progress() per step", "ours, progress()",
                   (LONG_STEP_US, True), target=costs_at_most(0.05),
                   note="the calls cost <= 5%: with >= 0.95 x without"),
            Config(f"ours: Pool(2), {SHORT_STEP_US} us steps, no progress()",
                   f"ours, {SHORT_STEP_US} us, no progress()", (SHORT_STEP_US, False), items=short_n,
                   note="items of ~20 ms: the baseline of the next row"),
            Config(f"ours: Pool(2), {SHORT_STEP_US} us steps, progress() per step",
                   f"ours, {SHORT_STEP_US} us, progress()", (SHORT_STEP_US, True), items=short_n,
                   note="informative, against the row above"),
        ],
        repeat_factor=4.0,  # items of one length vary by tens of percent in CPU time on this machine
        prepare=calibrate_steps,
    )
    return [logs, task_progress]


if __name__ == "__main__":
    # Through the module's importable name, so that the workers find the task and the initializer.
    from benchmarks import observability as _module

    if sys.argv[1] == "logs":
        print(json.dumps(_module.logs_child(sys.argv[2], int(sys.argv[3]))))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}: logs")
