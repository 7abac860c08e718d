"""Workers' memory: a leaking task under ``max_worker_memory`` (``leak``), and the pool's pause while
the machine is short of memory (``min_available_memory``, ``pressure``).

Every run is a child process of its own (``python -m benchmarks.worker_memory ...``), as in
``benchmarks.memory`` and ``benchmarks.bigitems``: what a run leaves behind (leaked blocks, freed but
not returned memory, joblib's reusable workers) never reaches the next one, and the child stays lean
(this module imports only the standard library at import time), so that a forked worker shares
little with it.

``leak``: each item maps 20 MiB with an anonymous private ``mmap`` and writes one byte in each of
its pages, so every page is faulted in and counts in the resident size. The leaking task keeps the
block in a module-level list for good; the task without the leak unmaps it before it returns. Both
fault in 20 MiB of fresh pages per item, so the two differ only in what a leak costs the pool.
(A ``bytearray`` freed and allocated again would come back from the heap already faulted in,
which would make the task without the leak several times cheaper per item.) Every item returns
``(index, pid, VmHWM, shared)``: the process's peak resident size after the item, read by the task
itself, and the part of its resident size that it shares with other processes (``Shared_Clean +
Shared_Dirty`` of ``/proc/self/smaps_rollup``, read once at the process's first item: pages a forked
worker still shares with its parent; copy-on-write only lowers that part later). Three figures of
the largest worker's peak come out of a run: the largest ``VmHWM`` the tasks saw, ``ru_maxrss`` of
the reaped children (the kernel's exact figure for the largest process), and, for ours, the peak
``Pool.worker_memory()`` reports. The largest of them less the shared part is the worker's own
memory at its peak, what ``max_worker_memory`` limits (the own memory, not the RSS): the
reference's target is on it. A watch in the benchmark process (:mod:`benchmarks.children`) samples
the child's processes every 50 ms and stops a run whose processes together hold more than a cap
(6 GiB, or half of the memory available at the start when that is less), so a peer that lets the
leak grow cannot exhaust a shared machine; that run is reported as an error.

``pressure``: a task of 20 ms records when it started; after some results a second process (the
*eater*) allocates and touches memory until the memory available to the pool (read as the pool
reads it) is 512 MiB below the pool's ``min_available_memory``, which is set to the memory
available at the start minus 1 GiB; it says when its memory is in, holds it for a while, says when
it frees it, and frees it. The tasks' start times must show no start between the moment the memory
was in plus a grace and the moment it was freed; the grace is the pool's sampling interval (50 ms:
a reading of the memory available is at most that old when a batch is sent), plus the longest task
of the run (a worker holds at most two items of 20 ms, one running and one waiting: the waiting one
starts when the running one ends), plus 50 ms for a batch sent just before the pause to reach its
worker on a busy machine.
"""

from __future__ import annotations

import itertools
import json
import mmap
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from .children import ROOT, proc_kib, run_child

MiB = 1 << 20
GiB = 1 << 30

# -- leak: the tasks ------------------------------------------------------------------------------------

#: what one item allocates and touches
ITEM_BYTES = 20 * MiB
#: the limit of ours, as the pool is given it, and in bytes
LIMIT = "512MiB"
LIMIT_BYTES = 512 * MiB
#: multiprocessing.Pool's maxtasksperchild for the peer: 20 x 20 MiB = 400 MiB, the best one can
#: pick blind for a 512 MiB budget
MAX_TASKS = 20
#: the largest the processes of one run may hold together (RSS) before the run is stopped
LEAK_CAP = 6 * GiB

_PAGE = mmap.PAGESIZE
_ONE_PER_PAGE = b"\x01" * (ITEM_BYTES // _PAGE)
#: the leaked blocks of this process (never freed)
_HELD: list[mmap.mmap] = []
#: (pid, KiB shared with other processes at that process's first item)
_SHARED: list[tuple[int, int]] = []


def _touched_block() -> mmap.mmap:
    """20 MiB of fresh anonymous memory, every page written once (so resident)."""
    block = mmap.mmap(-1, ITEM_BYTES, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    block[::_PAGE] = _ONE_PER_PAGE
    return block


def _shared_kib() -> int:
    """KiB of this process's resident size shared with other processes, read once per process."""
    pid = os.getpid()
    if not _SHARED or _SHARED[0][0] != pid:
        try:
            fields = proc_kib("/proc/self/smaps_rollup", ("Shared_Clean", "Shared_Dirty"))
            shared = fields.get("Shared_Clean", 0) + fields.get("Shared_Dirty", 0)
        except OSError:
            shared = -1
        _SHARED[:] = [(pid, shared)]
    return _SHARED[0][1]


def _after(i: int) -> tuple[int, int, int, int]:
    return i, os.getpid(), proc_kib("/proc/self/status", ("VmHWM",))["VmHWM"], _shared_kib()


def leak_item(i: int) -> tuple[int, int, int, int]:
    """The leaking task: 20 MiB allocated, touched and kept for good."""
    _HELD.append(_touched_block())
    return _after(i)


def churn_item(i: int) -> tuple[int, int, int, int]:
    """The same task without the leak: 20 MiB allocated, touched, then freed."""
    _touched_block().close()
    return _after(i)


# -- leak: the runners (in the child) ----------------------------------------------------------------------

Runner = Callable[[Callable[[int], Any], int, dict[str, Any]], Iterator[Any]]


def _run_ours(task: Callable[[int], Any], n: int, info: dict[str, Any], **options: Any) -> Iterator[Any]:
    from mtasklite_like import Pool

    with Pool(task, n_jobs=2, **options) as pool:
        yield from pool(range(n))
        info["workers"] = [
            {"worker": m.worker, "pid": m.pid, "rss": m.rss, "peak": m.peak, "recycled": m.recycled,
             "killed": m.killed}
            for m in pool.worker_memory()
        ]


def run_ours_limit(task: Callable[[int], Any], n: int, info: dict[str, Any]) -> Iterator[Any]:
    return _run_ours(task, n, info, max_worker_memory=LIMIT)


def run_ours_plain(task: Callable[[int], Any], n: int, info: dict[str, Any]) -> Iterator[Any]:
    return _run_ours(task, n, info)


def run_mp_maxtasks(task: Callable[[int], Any], n: int, info: dict[str, Any]) -> Iterator[Any]:
    import multiprocessing

    with multiprocessing.Pool(2, maxtasksperchild=MAX_TASKS) as pool:
        yield from pool.imap(task, range(n))


def run_loky(task: Callable[[int], Any], n: int, info: dict[str, Any]) -> Iterator[Any]:
    from joblib import Parallel, delayed

    yield from Parallel(n_jobs=2, backend="loky", return_as="generator")(delayed(task)(i) for i in range(n))


#: name -> (runner, task)
LEAK_RUNS: dict[str, tuple[Runner, Callable[[int], Any]]] = {
    "ours_limit": (run_ours_limit, leak_item),
    "ours_no_leak": (run_ours_plain, churn_item),
    "mp_maxtasks": (run_mp_maxtasks, leak_item),
    "loky": (run_loky, leak_item),
}


def loky_checks_memory() -> bool:
    """Whether loky's workers watch their own memory: they do when psutil is importable (each
    worker compares its RSS with its size after its first task, at most once a second, after a
    batch, and exits once it has grown by 300 MB); without psutil nothing stops the leak."""
    import importlib.util

    return importlib.util.find_spec("psutil") is not None


def leak_child(name: str, n: int) -> dict[str, Any]:
    """One measured run of ``name`` over ``n`` items in this process; returns its figures."""
    import resource

    runner, task = LEAK_RUNS[name]
    if name.startswith("ours"):
        import mtasklite_like  # noqa: F401
    elif name == "loky":
        import joblib  # noqa: F401
    else:
        import multiprocessing  # noqa: F401
    info: dict[str, Any] = {}
    hwm: dict[int, int] = {}
    shared: dict[int, int] = {}
    count = 0
    start = time.perf_counter()
    for k, (i, pid, peak_kib, shared_kib) in enumerate(runner(task, n, info)):
        if i != k:
            raise AssertionError(f"{name}: result {k} is for item {i}")
        hwm[pid] = max(hwm.get(pid, 0), peak_kib)
        shared[pid] = shared_kib
        count += 1
    seconds = time.perf_counter() - start
    if count != n:
        raise AssertionError(f"{name} gave {count} results for {n} items")
    if name == "loky":  # stop its reusable workers, so that they are reaped and counted below
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    workers = info.get("workers")
    pool_peaks = [w["peak"] for w in workers or [] if w["peak"] is not None]
    return {
        "run": name,
        "items": n,
        "seconds": seconds,
        "processes": len(hwm),
        "task_peak_mib": max(hwm.values()) / 1024,
        "shared_mib": max(shared.values()) / 1024 if min(shared.values()) >= 0 else None,
        "rusage_peak_mib": largest / 1024 if largest else None,
        "pool_peak_mib": max(pool_peaks) / MiB if pool_peaks else None,
        "recycled": sum(w["recycled"] for w in workers) if workers else None,
        "workers": workers,
    }


# -- leak: the parent ---------------------------------------------------------------------------------


def _available() -> int | None:
    """The memory available to a pool started here, read as the pool reads it (the cgroup's room
    under a limit, else ``MemAvailable``)."""
    from mtasklite_like._memory.source import ProcSource

    reading = ProcSource().available()
    return None if reading is None else reading[0]


def _watched(args: list[str], timeout: float, cap: int) -> dict[str, Any]:
    """Run ``python -m benchmarks.worker_memory ARGS`` under a watch that stops it beyond ``cap``
    bytes (:func:`benchmarks.children.run_child`); return the JSON line it prints last, with
    ``largest_total_mib`` (the largest total the watch saw)."""
    result, watch = run_child("benchmarks.worker_memory", args, what=" ".join(args), timeout=timeout, cap=cap,
                              interval=0.05)
    result["largest_total_mib"] = watch.largest_total / MiB
    return result


def run_leak(w: Any, repeat: int, log: Any) -> list[Any]:
    """Rounds of ``ours, peer 1, peer 2, ...``, each run a fresh child
    (:func:`benchmarks.measure.run_child_rounds`); a peer's ratio is the median over the rounds of
    our throughput / its throughput in the same round. Memory figures are the largest of the runs.
    The reference's target is on the largest worker's own memory at its peak: its peak RSS less the
    part it shares with other processes (what ``max_worker_memory`` limits is the own memory)."""
    from .measure import Row, _largest, run_child_rounds
    from .workloads import Config

    available = _available()
    cap = LEAK_CAP if available is None else min(LEAK_CAP, available // 2)
    w.notes["memory_cap_gib"] = round(cap / GiB, 1)

    def probe(cfg: Config, items: int) -> dict[str, Any]:
        return _watched(["leak", cfg.run, str(items)], timeout=300.0, cap=cap)

    def describe(row: Row, runs: list[dict[str, Any]]) -> None:
        row.task_peak_mib = _largest([r["task_peak_mib"] for r in runs])
        row.largest_worker_mib = _largest([r["rusage_peak_mib"] for r in runs])
        row.pool_peak_mib = _largest([r["pool_peak_mib"] for r in runs])
        row.shared_mib = _largest([r["shared_mib"] for r in runs])
        peak = _largest([row.task_peak_mib, row.largest_worker_mib, row.pool_peak_mib])
        if peak is not None:  # where the shared part is unknown, all of the RSS counts as own
            row.own_peak_mib = peak - (row.shared_mib or 0.0)
        last = runs[-1]
        row.replaced = last["recycled"] if last["recycled"] is not None else last["processes"] - 2
        how = (f"{last['processes']} worker processes in the last run; the run's processes held at most "
               f"{_largest([r['largest_total_mib'] for r in runs]):,.0f} MiB together")
        if row.shared_mib is None:
            how += "; the shared part could not be read: own memory counted as the whole peak RSS"
        if last["workers"]:
            how += "; Pool.worker_memory() in the last run: " + ", ".join(
                f"worker {m['worker']} peak {m['peak'] / MiB:,.0f} MiB, recycled {m['recycled']}"
                for m in last["workers"] if m["peak"] is not None)
        row.note = f"{row.note}; {how}" if row.note else how
        if row.reference and row.own_peak_mib is not None:
            row.measured, row.measured_unit = row.own_peak_mib, "MiB"

    return run_child_rounds(w, repeat, log, probe, describe)


# -- pressure ------------------------------------------------------------------------------------------------

#: seconds each task takes
TASK_SECONDS = 0.02
#: the pool's threshold: the memory available at the start minus this
HEADROOM = 1 * GiB
#: the eater stops once the memory available is this far below the threshold
MARGIN = 512 * MiB
#: below this much memory available the row is skipped rather than squeeze the machine
NEEDS = 3 * GiB
#: results before the eater starts, and items after it freed its memory
BEFORE, AFTER = 20, 40
#: the eater's allocations, and the most it takes in all
CHUNK = 64 * MiB
EATER_CAP = HEADROOM + MARGIN + 1 * GiB
#: time a batch sent just before a pause may take to reach its worker on a busy machine
DELIVERY_SECONDS = 0.05


def stamp(i: int) -> tuple[int, float, float, int]:
    """A 20 ms task that records when it started and ended (``time.time``, one clock for every
    process) and where it ran."""
    started = time.time()
    time.sleep(TASK_SECONDS)
    return i, started, time.time(), os.getpid()


def eat(threshold: int, cap: int, hold: float) -> None:
    """The eater: allocate and touch memory until the memory available to a pool is ``MARGIN``
    below ``threshold`` (never more than ``cap`` bytes), print ``in TIME BYTES AVAILABLE``, hold it
    for ``hold`` seconds while watching the memory available, print ``freeing TIME HIGHEST`` (the
    most available seen meanwhile), free it, and print ``freed TIME``."""
    from mtasklite_like._memory.source import ProcSource

    source = ProcSource()

    def available() -> int:
        reading = source.available()
        return 0 if reading is None else reading[0]

    ones = b"\x01" * (CHUNK // _PAGE)
    chunks: list[bytearray] = []
    now = available()
    while now >= threshold - MARGIN:
        if len(chunks) * CHUNK >= cap:
            print(f"gave-up {time.time()} {len(chunks) * CHUNK} {now}", flush=True)
            return
        chunk = bytearray(CHUNK)
        chunk[::_PAGE] = ones
        chunks.append(chunk)
        now = available()
    print(f"in {time.time()} {len(chunks) * CHUNK} {now}", flush=True)
    highest = now
    end = time.monotonic() + hold
    while time.monotonic() < end:
        time.sleep(0.01)
        highest = max(highest, available())
    print(f"freeing {time.time()} {highest}", flush=True)
    chunks.clear()
    print(f"freed {time.time()}", flush=True)


def pressure_child(hold: float) -> dict[str, Any]:
    """One run of ours under ``min_available_memory`` with the eater started after ``BEFORE``
    results; returns the timestamps' verdict (or ``skipped`` and why)."""
    import warnings

    from mtasklite_like import MemoryPressureWarning, Pool
    from mtasklite_like._memory.pressure import LOOK_SECONDS

    available = _available()
    if available is None:
        return {"skipped": "the memory available cannot be read on this machine"}
    if available < NEEDS:
        return {"skipped": f"only {available / GiB:.1f} GiB available (< {NEEDS / GiB:.0f} GiB): "
                           "not squeezing this machine"}
    threshold = available - HEADROOM
    events: dict[str, list[float]] = {}
    freed = threading.Event()
    pulls: list[float] = []

    def listen(proc: subprocess.Popen[str]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            word, *numbers = line.split()
            events[word] = [float(x) for x in numbers]
            if word in ("freeing", "gave-up"):
                freed.set()
        freed.set()  # the eater ended, whatever it said

    def source() -> Iterator[int]:
        i, last = 0, 3000  # 30 s of work at most, should the eater never answer
        while i < last:
            if freed.is_set() and last == 3000:
                last = i + AFTER
            pulls.append(time.time())
            yield i
            i += 1

    eater: subprocess.Popen[str] | None = None
    results = []
    started = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", MemoryPressureWarning)
        with Pool(stamp, n_jobs=2, min_available_memory=threshold, memory_pause_timeout=60) as pool:
            for k, result in enumerate(pool(source())):
                if result[0] != k:
                    raise AssertionError(f"result {k} is for item {result[0]}")
                results.append(result)
                if k + 1 == BEFORE:
                    command = ["eat", str(threshold), str(EATER_CAP), str(hold)]
                    eater = subprocess.Popen([sys.executable, "-m", "benchmarks.worker_memory", *command],
                                             cwd=ROOT, stdout=subprocess.PIPE, text=True)
                    threading.Thread(target=listen, args=(eater,), daemon=True).start()
    seconds = time.perf_counter() - started
    if eater is not None:
        eater.wait(30)
    warned = [str(c.message) for c in caught if issubclass(c.category, MemoryPressureWarning)]
    if "in" not in events or "freeing" not in events:
        raise RuntimeError(f"the eater could not take the memory available below the threshold: {events}")
    in_at, eaten, low = events["in"]
    freeing_at, highest = events["freeing"]
    longest = max(end - begin for _, begin, end, _ in results)
    grace = LOOK_SECONDS + longest + DELIVERY_SECONDS
    starts = sorted(begin for _, begin, _, _ in results)
    squeezed = [s for s in starts if in_at + grace < s < freeing_at]
    read = [t for t in pulls if in_at + grace < t < freeing_at]
    gap, before, after = max((b - a, a, b) for a, b in itertools.pairwise(starts))
    return {
        "items": len(results),
        "seconds": seconds,
        "available_gib": available / GiB,
        "threshold_gib": threshold / GiB,
        "eaten_gib": eaten / GiB,
        "lowest_gib": low / GiB,
        "highest_during_squeeze_gib": highest / GiB,
        "squeeze_s": freeing_at - in_at,
        "grace_s": grace,
        "started_in_squeeze": len(squeezed),
        "read_in_squeeze": len(read),
        "pause_s": gap,
        "pause_began_s": before - in_at,
        "resumed_after_s": after - freeing_at,
        "warnings": warned,
    }


def run_pressure(w: Any, repeat: int, log: Any) -> list[Any]:
    """One run (a fresh child): tasks started while memory was short, the pause seen in the tasks'
    start times, and the warnings; or every row skipped, with the reason."""
    from .measure import Row, _apply_target, _error_text

    hold = float(w.reference.run)
    configs = [w.reference, *w.peers]
    rows = [Row(w.name, c.label, c.short, c is w.reference, w.items, unit, note=c.note)
            for c, unit in zip(configs, ("items", "s", "items"))]
    try:
        result = _watched(["pressure", str(hold)], timeout=120.0, cap=EATER_CAP + 512 * MiB)
    except Exception as exc:
        for row, cfg in zip(rows, configs):
            row.status, row.error = "ERROR", _error_text(exc)
            row.target = cfg.target.text if cfg.target else ""
            log(row)
        return rows
    if "skipped" in result:
        w.notes["skipped"] = result["skipped"]
        for row, cfg in zip(rows, configs):
            row.status, row.note = "SKIP", result["skipped"]
            row.target = cfg.target.text if cfg.target else ""
            log(row)
        return rows
    w.notes.update({
        "threshold_gib": round(result["threshold_gib"], 2),
        "eaten_gib": round(result["eaten_gib"], 2),
        "squeeze_s": round(result["squeeze_s"], 2),
        "grace_s": round(result["grace_s"], 3),
        "pause_began_s": round(result["pause_began_s"], 3),
        "resumed_after_s": round(result["resumed_after_s"], 3),
        "read_in_squeeze": result["read_in_squeeze"],
    })
    if result["highest_during_squeeze_gib"] >= result["threshold_gib"]:
        w.notes["disturbed"] = ("memory came back above the threshold during the squeeze (another process "
                                "freed some): starts then were allowed")
    values = (result["started_in_squeeze"], result["pause_s"], len(result["warnings"]))
    for row, cfg, value in zip(rows, configs, values):
        row.items = result["items"]
        row.samples = [float(value)]
        row.value = float(value)
        if cfg.target is not None:
            row.measured, row.measured_unit = float(value), row.unit
        _apply_target(row, cfg)
        log(row)
    rows[1].note = (f"squeeze {result['squeeze_s']:.2f} s; resumed {result['resumed_after_s']:.3f} s "
                    "after the free")
    rows[2].note = " | ".join(result["warnings"])
    return rows


# -- the rows ------------------------------------------------------------------------------------------------


def workloads(quick: bool) -> list[Any]:
    """The ``leak`` and ``pressure`` rows (``--quick``: 160 items instead of 2,000, a shorter squeeze)."""
    from .workloads import Config, Target, Workload

    n = 160 if quick else 2_000
    # loky without psutil never recycles: 200 items (4 GiB) at most then; with its check, more
    loky_n = 100 if quick else (600 if loky_checks_memory() else 200)
    limit_mib = LIMIT_BYTES // MiB + ITEM_BYTES // MiB
    leak = Workload(
        name="leak",
        title=(f"{n:,} items, each leaking 20 MiB (mapped, touched, kept), processes, 2 workers: time, "
               "workers' peak RSS and own memory, processes replaced"),
        kind="leak",
        items=n,
        # the target is on own memory (peak RSS - shared), as the limit is; the peak RSS is shown beside it
        reference=Config(f"ours: Pool(2, max_worker_memory='{LIMIT}')", "ours 512MiB", "ours_limit",
                         target=Target(f"own mem <= {limit_mib} MiB", "<=", float(limit_mib)),
                         note=("target: the largest worker's own memory (peak RSS - shared) "
                               f"<= {limit_mib} MiB: limit 512 MiB of own memory, + one item (20 MiB)")),
        peers=[
            Config("ours: Pool(2), no limit, task freeing its 20 MiB", "ours, no leak", "ours_no_leak",
                   target=Target("ours/this >= 0.909", ">=", 1 / 1.1),
                   note="time with the leak <= 1.10 x time without"),
            Config(f"mp.Pool(2, maxtasksperchild={MAX_TASKS}).imap(chunksize=1)", "mp.Pool maxtasks=20",
                   "mp_maxtasks"),
            Config("joblib Parallel(2, backend='loky')", "joblib loky", "loky",
                   items=loky_n,
                   note=("loky's own check: a worker exits once its RSS grew 300 MB (looked at once a "
                         "second at most)" if loky_checks_memory() else "no psutil: loky does not recycle")
                   + f"; {loky_n:,} items only, as the leak is unbounded"),
        ],
        repeat_factor=0.2,  # about 100 s a round
    )
    pressure = Workload(
        name="pressure",
        title=("20 ms tasks, processes, 2 workers, min_available_memory = memory available - 1 GiB; "
               "another process takes memory below it, holds it, frees it"),
        kind="pressure",
        items=0,
        # the reference's ``run``: seconds the eater holds its memory
        reference=Config("ours: tasks started while memory was short", "ours, started",
                         0.75 if quick else 2.0, target=Target("0 after the grace", "<=", 0.0)),
        peers=[
            Config("ours: the pause, from the tasks' start times", "ours, pause", None),
            Config("ours: MemoryPressureWarning, at pause and resumption", "ours, warnings", None,
                   target=Target("2", "==", 2.0)),
        ],
    )
    return [leak, pressure]


if __name__ == "__main__":
    # Through the module's importable name, so that pools which pickle functions by reference
    # (loky's cloudpickle would copy a ``__main__`` function, leaked list and all) find the tasks.
    from benchmarks import worker_memory as _module

    if sys.argv[1] == "leak":
        print(json.dumps(_module.leak_child(sys.argv[2], int(sys.argv[3]))))
    elif sys.argv[1] == "pressure":
        print(json.dumps(_module.pressure_child(float(sys.argv[2]))))
    elif sys.argv[1] == "eat":
        _module.eat(int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
    else:
        raise SystemExit(f"unknown command {sys.argv[1]!r}: leak, pressure or eat")
