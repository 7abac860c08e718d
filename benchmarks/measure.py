"""The measurement loops.

Every configuration is warmed up once (its first run is not counted), then the workload's
reference ("ours") and each peer run in alternation, ``ours, peer, ours, peer, ...``, so that both
see the same state of a noisy machine. A peer's ratio is the median of the per-pair ratios;
figures shown are medians. Every run's results are checked against the expected list (outside
the timed region), so a configuration that returns wrong results is reported as an error rather
than timed.
"""

from __future__ import annotations

import contextlib
import gc
import os
import signal
import statistics
import threading
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from .workloads import Config, Workload


@dataclass
class Row:
    """One line of the table."""

    workload: str
    label: str
    short: str
    reference: bool
    items: int
    unit: str  # of ``value``: "items/s", "s", "ms", "us" (one-item), "ns/item" (caller-cpu) or "MB"
    samples: list[float] = field(default_factory=list)  # seconds, ms, us, ns/item or MB per run (or call)
    value: float | None = None
    ratio: float | None = None  # ours / this, as throughputs (> 1: ours is faster)
    measured: float | None = None  # the figure compared with the target
    measured_unit: str = ""
    target: str = ""
    status: str = ""  # "PASS", "FAIL", "ERROR" or ""
    note: str = ""
    error: str = ""
    #: latency workloads: the 99th percentile (ms) and the median time to the first result (ms);
    #: one-item workloads: the 99th percentile of the calls (us)
    p99: float | None = None
    first: float | None = None
    #: "big" workloads, MiB, largest over the runs: the caller's peak RSS growth, the sum of the
    #: peak RSS of the processes it started (sampled), the peak RSS of its largest worker (exact)
    caller_mib: float | None = None
    workers_mib: float | None = None
    largest_worker_mib: float | None = None
    #: "leak" workload, MiB, largest over the runs: the largest worker's peak RSS as its tasks read it
    #: (VmHWM after each item) and as ``Pool.worker_memory()`` reports it (ours), and the part of a
    #: worker's RSS shared with other processes; its own memory at the peak (the largest of the three
    #: peaks less the shared part: what ``max_worker_memory`` limits); worker processes replaced in
    #: the last run (``largest_worker_mib`` holds ``ru_maxrss`` of the reaped workers)
    task_peak_mib: float | None = None
    pool_peak_mib: float | None = None
    shared_mib: float | None = None
    own_peak_mib: float | None = None
    replaced: int | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class WrongResults(AssertionError):
    pass


class RunTimeout(TimeoutError):
    pass


#: no single run here takes more than a few seconds: one that takes this long is hung
RUN_TIMEOUT_SECONDS = 120.0


@contextlib.contextmanager
def _deadline(label: str) -> Iterator[None]:
    """Raise :class:`RunTimeout` in the run if it lasts past ``RUN_TIMEOUT_SECONDS`` (a hang)."""
    if not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise RunTimeout(f"{label} did not finish within {RUN_TIMEOUT_SECONDS:.0f} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, RUN_TIMEOUT_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _error_text(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" (at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno})" if last else ""
    return f"{type(exc).__name__}: {exc}{where}"[:500]


def _items(w: Workload, cfg: Config) -> int:
    return cfg.items or w.items


def pairs_for(w: Workload, repeat: int) -> int:
    return max(1, round(repeat * w.repeat_factor))


# -- throughput and ideal-time workloads -----------------------------------------------------------


def _time_once(w: Workload, cfg: Config, n: int) -> float:
    assert w.make_input is not None and w.expected is not None
    expected = w.expected(n)
    data = w.make_input(n)
    gc.collect()
    with _deadline(cfg.label):
        start = time.perf_counter()
        out = cfg.run(w.task, data)
        elapsed = time.perf_counter() - start
    if out != expected:
        got = len(out) if hasattr(out, "__len__") else "?"
        raise WrongResults(f"{cfg.label} returned wrong results ({got} results for {n} items)")
    return elapsed


def settle(row: Row, cfg: Config, log: Any) -> None:
    """The row's target judged (or shown unjudged when the row failed to run), and the row logged."""
    if row.error and cfg.target:
        row.target = cfg.target.text
    else:
        _apply_target(row, cfg)
    log(row)


def _apply_target(row: Row, cfg: Config) -> None:
    if cfg.target is None:
        return
    row.target = cfg.target.text
    if row.measured is not None:
        row.status = "PASS" if cfg.target.check(row.measured) else "FAIL"


def run_timed(w: Workload, repeat: int, log: Any) -> list[Row]:
    """Throughput workloads (items/s) and ideal-time workloads (seconds, ratio to ideal)."""
    ideal_kind = w.kind == "ideal"
    unit = "s" if ideal_kind else "items/s"
    ref = w.reference
    ref_n = _items(w, ref)
    ideal = w.ideal(ref_n) if ideal_kind and w.ideal else None
    pairs = pairs_for(w, repeat)
    ref_row = Row(w.name, ref.label, ref.short, True, ref_n, unit, ratio=1.0, note=ref.note)
    rows = [ref_row]
    ref_ok = True
    try:
        _time_once(w, ref, ref_n)  # warm-up
    except Exception as exc:
        ref_row.status, ref_row.error = "ERROR", _error_text(exc)
        ref_ok = False
    for cfg in w.peers:
        n = _items(w, cfg)
        note = cfg.note
        if n != ref_n:
            note = (note + "; " if note else "") + f"fewer items ({n:,}): slow peer"
        cfg_pairs = max(1, round(pairs * cfg.repeat_factor))
        if cfg_pairs != pairs:
            note = (note + "; " if note else "") + f"{cfg_pairs} pairs"
        row = Row(w.name, cfg.label, cfg.short, False, n, unit, note=note)
        rows.append(row)
        ref_times: list[float] = []
        try:
            _time_once(w, cfg, n)  # warm-up
            for _ in range(cfg_pairs):
                if ref_ok:
                    try:
                        ref_times.append(_time_once(w, ref, ref_n))
                    except Exception as exc:
                        ref_row.status, ref_row.error = "ERROR", _error_text(exc)
                        ref_ok = False
                row.samples.append(_time_once(w, cfg, n))
        except Exception as exc:
            row.status, row.error = "ERROR", _error_text(exc)
        finally:
            if cfg.cleanup is not None:
                cfg.cleanup()
        ref_row.samples.extend(ref_times)
        if row.samples:
            median = statistics.median(row.samples)
            row.value = median if ideal_kind else n / median
            if ideal is not None:
                row.measured, row.measured_unit = median / ideal, "x ideal"
        if ref_times and len(ref_times) == len(row.samples):
            # ours/this as throughputs: (ref_n / t_ref) / (n / t_peer), paired run by run.
            row.ratio = statistics.median((ref_n / rt) / (n / pt) for rt, pt in zip(ref_times, row.samples))
            if not ideal_kind:
                row.measured, row.measured_unit = row.ratio, "x"
        if row.error != "":
            row.target = cfg.target.text if cfg.target else ""
        else:
            _apply_target(row, cfg)
        log(row)
    if not w.peers and ref_ok:
        for _ in range(pairs):
            ref_row.samples.append(_time_once(w, ref, ref_n))
    if ref_row.samples:
        median = statistics.median(ref_row.samples)
        ref_row.value = median if ideal_kind else ref_n / median
        if ideal is not None:
            ref_row.measured, ref_row.measured_unit = median / ideal, "x ideal"
        elif ref.target is not None:
            ref_row.measured, ref_row.measured_unit = ref_row.value, "items/s"
    _apply_target(ref_row, ref)
    if ref_row.error and ref.target:
        ref_row.target = ref.target.text
    log(ref_row)
    return rows


# -- start-up ---------------------------------------------------------------------------------------


def run_startup(w: Workload, repeat: int, log: Any) -> list[Row]:
    """Milliseconds to the first result; teardown is not timed."""
    ref = w.reference
    pairs = pairs_for(w, repeat)
    ref_row = Row(w.name, ref.label, ref.short, True, 1, "ms", ratio=1.0, note=ref.note)
    rows = [ref_row]
    try:
        ref.run()
    except Exception as exc:
        ref_row.status, ref_row.error = "ERROR", _error_text(exc)
    for cfg in w.peers:
        row = Row(w.name, cfg.label, cfg.short, False, 1, "ms", note=cfg.note)
        rows.append(row)
        ref_times: list[float] = []
        try:
            cfg.run()
            for _ in range(pairs):
                if not ref_row.error:
                    try:
                        ref_times.append(ref.run() * 1000)
                    except Exception as exc:
                        ref_row.status, ref_row.error = "ERROR", _error_text(exc)
                row.samples.append(cfg.run() * 1000)
        except Exception as exc:
            row.status, row.error = "ERROR", _error_text(exc)
        ref_row.samples.extend(ref_times)
        if row.samples:
            row.value = statistics.median(row.samples)
        if ref_times and len(ref_times) == len(row.samples):
            row.ratio = statistics.median(pt / rt for rt, pt in zip(ref_times, row.samples))
        log(row)
    if ref_row.samples:
        ref_row.value = statistics.median(ref_row.samples)
        ref_row.measured, ref_row.measured_unit = ref_row.value, "ms"
    _apply_target(ref_row, ref)
    log(ref_row)
    return rows


# -- memory -------------------------------------------------------------------------------------------


def run_memory(w: Workload, repeat: int, log: Any) -> list[Row]:
    """Peak RSS growth of the caller, each run in a fresh child process; the largest run counts."""
    from .memory import run_probe

    runs = max(1, min(2, repeat))
    configs = [w.reference, *w.peers]
    rows = {
        id(c): Row(w.name, c.label, c.short, c is w.reference, w.items, "MB", note=c.note) for c in configs
    }
    seconds: dict[int, list[float]] = {id(c): [] for c in configs}
    for _ in range(runs):
        for cfg in configs:  # alternating: ours, peer, ours, peer
            row = rows[id(cfg)]
            if row.error:
                continue
            try:
                result = run_probe(cfg.run, w.items)
            except Exception as exc:
                row.status, row.error = "ERROR", _error_text(exc)
                continue
            row.samples.append(result["growth_mb"])
            seconds[id(cfg)].append(result["seconds"])
            if not result["peak_reset"]:
                row.note = "peak could not be reset: growth includes earlier peaks"
    for cfg in configs:
        row = rows[id(cfg)]
        if row.samples:
            row.value = max(row.samples)
            row.measured, row.measured_unit = row.value, "MB"
            rate = w.items / statistics.median(seconds[id(cfg)])
            how = f"largest of {len(row.samples)} runs, {rate:,.0f} items/s"
            row.note = f"{row.note}; {how}" if row.note else how
        settle(row, cfg, log)
    return list(rows.values())


# -- latency ------------------------------------------------------------------------------------------


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def run_latency(w: Workload, repeat: int, log: Any) -> list[Row]:
    """Per-item latency from a streaming source: p50 and p99 over every item of every run, the
    median time to the first result; configurations alternate run by run."""
    assert w.make_input is not None
    configs = [w.reference, *w.peers]
    rows = {
        id(c): Row(w.name, c.label, c.short, c is w.reference, w.items, "ms", note=c.note) for c in configs
    }
    samples: dict[int, list[float]] = {id(c): [] for c in configs}
    firsts: dict[int, list[float]] = {id(c): [] for c in configs}
    for _ in range(pairs_for(w, repeat)):
        for cfg in configs:
            row = rows[id(cfg)]
            if row.error:
                continue
            try:
                with _deadline(cfg.label):
                    latencies, first = cfg.run(w.make_input(w.items), w.items)
            except Exception as exc:
                row.status, row.error = "ERROR", _error_text(exc)
                continue
            samples[id(cfg)].extend(s * 1000 for s in latencies)
            firsts[id(cfg)].append(first * 1000)
    def how(cfg: Config, row: Row) -> str:
        row.first = statistics.median(firsts[id(cfg)])
        return f"p99 {row.p99:.1f} ms, first result {row.first:.0f} ms"

    return _percentile_rows(w, configs, rows, samples, "ms", how, log)


def _percentile_rows(
    w: Workload, configs: list[Config], rows: dict[int, Row], samples: dict[int, list[float]], unit: str,
    how: Callable[[Config, Row], str], log: Any,
) -> list[Row]:
    """Settle rows measured as many samples each: p50 (the figure) and p99, ``how(cfg, row)`` for
    the note; a peer's ours/this is its p50 / our p50 (the reference first: the peers need it)."""
    ref = rows[id(w.reference)]
    for cfg in configs:
        row = rows[id(cfg)]
        values = samples[id(cfg)]
        if values:
            row.samples = values
            row.value = statistics.median(values)
            row.p99 = _percentile(values, 0.99)
            text = how(cfg, row)
            row.note = f"{row.note}; {text}" if row.note else text
            if cfg is w.reference:
                row.ratio = 1.0
                row.measured, row.measured_unit = row.value, unit
            elif ref.value:
                row.ratio = row.value / ref.value
                row.measured, row.measured_unit = row.ratio, "x"
        settle(row, cfg, log)
    return list(rows.values())


# -- one item through a warm pool -------------------------------------------------------------------


def run_one_item(w: Workload, repeat: int, log: Any) -> list[Row]:
    """One item at a time through a pool kept open: each configuration opens its pool, makes
    ``ONE_ITEM_WARMUP`` untimed calls, then ``w.items`` timed ones, and closes it (not timed).
    Configurations take turns, a pool each, ``ours, peer 1, peer 2, ...`` per round. p50 and p99
    in microseconds over every call of every round; a peer's ours/this is its p50 / our p50."""
    from .peers import ONE_ITEM_WARMUP

    w.notes["warmup_calls"] = ONE_ITEM_WARMUP
    configs = [w.reference, *w.peers]
    rows = {
        id(c): Row(w.name, c.label, c.short, c is w.reference, w.items, "us", note=c.note) for c in configs
    }
    samples: dict[int, list[float]] = {id(c): [] for c in configs}
    for _ in range(pairs_for(w, repeat)):
        for cfg in configs:
            row = rows[id(cfg)]
            if row.error:
                continue
            try:
                with _deadline(cfg.label):
                    took = cfg.run(w.task, ONE_ITEM_WARMUP, w.items)
            except Exception as exc:
                row.status, row.error = "ERROR", _error_text(exc)
                continue
            samples[id(cfg)].extend(t * 1e6 for t in took)
    def how(cfg: Config, row: Row) -> str:
        return f"p99 {row.p99:.1f} us over {len(samples[id(cfg)])} calls"

    return _percentile_rows(w, configs, rows, samples, "us", how, log)


# -- the caller's CPU time per item -------------------------------------------------------------------


def _cpu_once(w: Workload, cfg: Config, n: int) -> tuple[float, float]:
    """One run of a caller-CPU workload: nanoseconds per item of the calling process's CPU time
    (``time.process_time``: all of its threads, no other process) and of its workers' (the
    children's user + system time from ``os.times``, which counts a process once it has been
    reaped: closing the pool joins its workers; the clock ticks every 10 ms)."""
    assert w.make_input is not None and w.expected is not None
    expected = w.expected(n)
    data = w.make_input(n)
    gc.collect()
    with _deadline(cfg.label):
        before = os.times()
        start = time.process_time()
        out = cfg.run(w.task, data)
        caller = time.process_time() - start
        after = os.times()
    if out != expected:
        got = len(out) if hasattr(out, "__len__") else "?"
        raise WrongResults(f"{cfg.label} returned wrong results ({got} results for {n} items)")
    workers = (after.children_user + after.children_system) - (before.children_user + before.children_system)
    return caller / n * 1e9, workers / n * 1e9


def run_caller_cpu(w: Workload, repeat: int, log: Any) -> list[Row]:
    """The caller's CPU time per item (ns), measured around the whole call (pool start, the map,
    pool close), as :func:`run_timed` does with wall time: a warm-up run per configuration, then
    ``ours, peer, ours, peer, ...``. A row's value is the median over its runs; a peer's ours/this
    is the median over the pairs of its CPU per item / ours (> 1: ours uses less). The workers' CPU
    per item (median) is in each row's note."""
    ref = w.reference
    ref_n = _items(w, ref)
    pairs = pairs_for(w, repeat)
    unit = "ns/item"
    ref_row = Row(w.name, ref.label, ref.short, True, ref_n, unit, ratio=1.0, note=ref.note)
    rows = [ref_row]
    workers: dict[int, list[float]] = {id(ref_row): []}
    ref_ok = True
    try:
        _cpu_once(w, ref, ref_n)  # warm-up
    except Exception as exc:
        ref_row.status, ref_row.error = "ERROR", _error_text(exc)
        ref_ok = False

    def measure_ref() -> float | None:
        nonlocal ref_ok
        if not ref_ok:
            return None
        try:
            caller, children = _cpu_once(w, ref, ref_n)
        except Exception as exc:
            ref_row.status, ref_row.error = "ERROR", _error_text(exc)
            ref_ok = False
            return None
        ref_row.samples.append(caller)
        workers[id(ref_row)].append(children)
        return caller

    def describe(row: Row) -> None:
        if row.samples:
            row.value = statistics.median(row.samples)
            how = f"workers' CPU {statistics.median(workers[id(row)]):,.0f} ns/item"
            row.note = f"{row.note}; {how}" if row.note else how

    for cfg in w.peers:
        n = _items(w, cfg)
        cfg_pairs = max(1, round(pairs * cfg.repeat_factor))
        row = Row(w.name, cfg.label, cfg.short, False, n, unit, note=cfg.note)
        rows.append(row)
        workers[id(row)] = []
        ratios: list[float] = []
        try:
            _cpu_once(w, cfg, n)  # warm-up
            for _ in range(cfg_pairs):
                ours = measure_ref()
                caller, children = _cpu_once(w, cfg, n)
                row.samples.append(caller)
                workers[id(row)].append(children)
                if ours:
                    ratios.append(caller / ours)
        except Exception as exc:
            row.status, row.error = "ERROR", _error_text(exc)
        finally:
            if cfg.cleanup is not None:
                cfg.cleanup()
        describe(row)
        if ratios and not row.error:
            row.ratio = statistics.median(ratios)
            row.measured, row.measured_unit = row.ratio, "x"
        settle(row, cfg, log)
    if not w.peers:
        for _ in range(pairs):
            measure_ref()
    describe(ref_row)
    if ref_row.value is not None and not ref_row.error:
        ref_row.measured, ref_row.measured_unit = ref_row.value, unit
    settle(ref_row, ref, log)
    return rows


# -- every run in a fresh child process (large items, leaks) -------------------------------------------


def _largest(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return max(known) if known else None


def run_child_rounds(w: Workload, repeat: int, log: Any, probe: Callable[[Config, int], dict[str, Any]],
                     describe: Callable[[Row, list[dict[str, Any]]], None]) -> list[Row]:
    """Rounds of ``ours, peer 1, peer 2, ...``, every run a fresh child process: ``probe(cfg, items)``
    makes one run and returns its figures (its wall time as ``seconds`` among them); a configuration
    whose run fails is reported as an error and not run again. A row's value is its median
    throughput; a peer's ratio is the median over the rounds of our throughput / its throughput in
    the same round. ``describe(row, runs)`` sets a row's other figures from its runs' (on the
    reference row, also the figure its target is on)."""
    configs = [w.reference, *w.peers]
    rows = {
        id(c): Row(w.name, c.label, c.short, c is w.reference, _items(w, c), "items/s", note=c.note)
        for c in configs
    }
    rates: dict[int, list[float | None]] = {id(c): [] for c in configs}
    figures: dict[int, list[dict[str, Any]]] = {id(c): [] for c in configs}
    for _ in range(pairs_for(w, repeat)):
        for cfg in configs:
            row = rows[id(cfg)]
            if row.error:
                rates[id(cfg)].append(None)
                continue
            try:
                result = probe(cfg, row.items)
            except Exception as exc:
                row.status, row.error = "ERROR", _error_text(exc)
                rates[id(cfg)].append(None)
                continue
            rates[id(cfg)].append(row.items / result["seconds"])
            figures[id(cfg)].append(result)
            row.samples.append(result["seconds"])
    ref_rates = rates[id(w.reference)]
    for cfg in configs:
        row = rows[id(cfg)]
        runs = figures[id(cfg)]
        if runs:
            row.value = row.items / statistics.median(row.samples)
            describe(row, runs)
        paired = [(r, p) for r, p in zip(ref_rates, rates[id(cfg)]) if r is not None and p is not None]
        if cfg is w.reference:
            row.ratio = 1.0
        elif paired:
            row.ratio = statistics.median(r / p for r, p in paired)
            row.measured, row.measured_unit = row.ratio, "x"
        settle(row, cfg, log)
    return list(rows.values())


def run_big(w: Workload, repeat: int, log: Any) -> list[Row]:
    """Each run is a fresh child process (``benchmarks.bigitems``) that reports its wall time and
    memory (:func:`run_child_rounds`). Memory figures are the largest of the runs; the reference's
    target is on the caller's peak RSS growth."""
    from .bigitems import run_probe

    def probe(cfg: Config, items: int) -> dict[str, Any]:
        return run_probe(w.data, cfg.run, items, timeout=RUN_TIMEOUT_SECONDS * 2)

    def describe(row: Row, runs: list[dict[str, Any]]) -> None:
        row.caller_mib = _largest([r["caller_growth_mib"] for r in runs])
        row.workers_mib = _largest([r["workers_sum_mib"] for r in runs])
        row.largest_worker_mib = _largest([r["largest_worker_mib"] for r in runs])
        if not all(r["peak_reset"] for r in runs):
            row.note = "peak could not be reset: growth includes earlier peaks"
        if row.reference and row.caller_mib is not None:
            row.measured, row.measured_unit = row.caller_mib, "MiB"

    return run_child_rounds(w, repeat, log, probe, describe)


# -- rate limits ----------------------------------------------------------------------------------------


def run_rate(w: Workload, repeat: int, log: Any) -> list[Row]:
    """One run of ``max_per_second`` over an endless input: starts in the span, the most in any
    second (both from the server's timestamps). The reference Config's ``run`` is (rate, seconds)."""
    from .asyncio_io import rate_run

    per_second, seconds = w.reference.run
    ref = w.reference
    peak = w.peers[0]
    rows = [Row(w.name, ref.label, ref.short, True, w.items, "items", note=ref.note),
            Row(w.name, peak.label, peak.short, False, w.items, "items", note=peak.note)]
    try:
        with _deadline(ref.label):
            result = rate_run(per_second, seconds)
    except Exception as exc:
        for row, cfg in zip(rows, (ref, peak)):
            row.status, row.error = "ERROR", _error_text(exc)
            row.target = cfg.target.text if cfg.target else ""
            log(row)
        return rows
    for row, cfg, key in zip(rows, (ref, peak), ("started", "max_per_1s")):
        row.samples = [float(result[key])]
        row.value = row.measured = float(result[key])
        row.measured_unit = "items"
        _apply_target(row, cfg)
        log(row)
    return rows


def run(w: Workload, repeat: int, log: Any) -> list[Row]:
    if w.prepare is not None:
        w.notes.update(w.prepare())
    if w.kind == "pressure":
        w.notes["runs"] = 1
    else:
        w.notes["pairs"] = max(1, min(2, repeat)) if w.kind == "memory" else pairs_for(w, repeat)
    if hasattr(os, "getloadavg"):
        w.notes["load_1min"] = round(os.getloadavg()[0], 2)  # how busy the machine was at the start
    if w.kind in ("throughput", "ideal"):
        return run_timed(w, repeat, log)
    if w.kind == "startup":
        return run_startup(w, repeat, log)
    if w.kind == "memory":
        return run_memory(w, repeat, log)
    if w.kind == "latency":
        return run_latency(w, repeat, log)
    if w.kind == "one-item":
        return run_one_item(w, repeat, log)
    if w.kind == "caller-cpu":
        return run_caller_cpu(w, repeat, log)
    if w.kind == "big":
        return run_big(w, repeat, log)
    if w.kind == "rate":
        return run_rate(w, repeat, log)
    if w.kind == "leak":
        from .worker_memory import run_leak

        return run_leak(w, repeat, log)
    if w.kind == "pressure":
        from .worker_memory import run_pressure

        return run_pressure(w, repeat, log)
    if w.kind == "logs":
        from .observability import run_logs

        return run_logs(w, repeat, log)
    if w.kind == "task-progress":
        from .observability import run_task_progress

        return run_task_progress(w, repeat, log)
    raise ValueError(f"unknown workload kind {w.kind!r}")
