"""Large items (1 MiB ``bytes``, 8 MiB NumPy arrays): wall time and peak memory, one fresh process per run.

Every run is a child process of its own (``python -m benchmarks.bigitems DATA RUNNER N``), so that
nothing an earlier run did (other pools, freed but not returned memory, joblib's reusable workers)
is counted. The child

1. builds one small source block (2 MiB of bytes, or a 16 MiB float64 array) and imports what the
   runner needs, then records ``VmRSS`` as its baseline and resets its peak (``VmHWM``, by writing
   ``5`` to ``/proc/self/clear_refs``);
2. times one call as a user writes it: create the pool, stream a generator of ``N`` items through
   it in a ``for`` loop, check each result as it arrives and drop it (nothing is kept), close the
   pool. Each item is a *fresh* object sliced out of the block when the generator is asked for it,
   so the caller never holds more input than the pool asks for;
3. reports ``VmHWM - baseline`` (the caller's peak RSS growth) and, once every worker has been
   reaped, ``ru_maxrss`` of ``RUSAGE_CHILDREN`` (the peak RSS of the largest single worker, exact:
   the kernel keeps it).

The parent (:func:`run_probe`, with the watch of :mod:`benchmarks.children`) watches the child
from outside while it runs: every 100 ms it reads ``VmHWM`` of each process the child started (its
workers, and helper processes such as resource trackers) and keeps the last value per process;
their sum is the *workers' peak RSS (sum)*. A process's growth in its last 100 ms is missed, and
pages a worker shares with the caller after ``fork`` (the interpreter, imported libraries) count in
each process, as RSS always counts them. The same watch stops a run whose processes together hold
more than :data:`MEMORY_CAP` bytes, so a pool that keeps its whole input in memory cannot exhaust a
shared machine; that run is reported as an error.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .children import run_child, status_kib

MiB = 1 << 20
#: elements of float64 in one 8 MiB array
ARRAY_LEN = MiB
#: a run whose caller and workers together hold more than this (RSS) is stopped
MEMORY_CAP = 8 << 30

# -- tasks (module level: every process pool sends them by name) -------------------------------------


def nbytes(item: bytes) -> int:
    """``len``: 1 MiB in, an int out."""
    return len(item)


def reverse_bytes(item: bytes) -> bytes:
    """1 MiB in, 1 MiB out: the bytes in reverse order."""
    return item[::-1]


def negate(item: Any) -> Any:
    """An 8 MiB float64 array in, a new 8 MiB array out."""
    import numpy as np

    return np.negative(item)


# -- inputs and checks ------------------------------------------------------------------------------


def _offset(i: int, span: int) -> int:
    return (i * 4099) % span


class Data:
    """One kind of large item: a source block built before the baseline, a lazy generator of fresh
    items sliced out of it, and a check of each result (so that no runner can skip work)."""

    def __init__(self, name: str) -> None:
        self.name = name
        if name in ("bytes-len", "bytes-echo"):
            self.block: Any = bytes(range(256)) * (2 * MiB // 256)
            self.task: Callable[[Any], Any] = nbytes if name == "bytes-len" else reverse_bytes
        elif name == "numpy":
            import numpy as np

            self.block = np.arange(2 * ARRAY_LEN, dtype=np.float64)
            self.task = negate
        else:
            raise ValueError(f"unknown data {name!r}: choose bytes-len, bytes-echo or numpy")

    def items(self, n: int) -> Iterator[Any]:
        if self.name == "numpy":
            for i in range(n):
                off = _offset(i, ARRAY_LEN)
                yield self.block[off:off + ARRAY_LEN].copy()
        else:
            for i in range(n):
                off = _offset(i, MiB)
                yield self.block[off:off + MiB]  # slicing bytes makes a new 1 MiB object

    def check(self, i: int, result: Any) -> None:
        if self.name == "bytes-len":
            ok = result == MiB
        elif self.name == "bytes-echo":
            off = _offset(i, MiB)
            ok = len(result) == MiB and result[0] == (off + MiB - 1) % 256 and result[-1] == off % 256
        else:
            off = _offset(i, ARRAY_LEN)
            ok = result.shape == (ARRAY_LEN,) and result[0] == -off and result[-1] == -(off + ARRAY_LEN - 1)
        if not ok:
            raise AssertionError(f"result {i} of {self.name} is wrong")


# -- runners: each yields the results of task over items, in input order, and closes its pool ---------

Runner = Callable[[Callable[[Any], Any], Iterable[Any]], Iterator[Any]]


def run_ours(task: Callable[[Any], Any], items: Iterable[Any], **options: Any) -> Iterator[Any]:
    from mtasklite_like import Pool

    with Pool(task, n_jobs=2, **options) as pool:
        yield from pool(items)


def run_ours_threads(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    return run_ours(task, items, use_threads=True)


def run_mp_imap(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    import multiprocessing

    with multiprocessing.Pool(2) as pool:
        yield from pool.imap(task, items, 1)


def run_cf_map(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2) as ex:
        yield from ex.map(task, items)


def run_mpire(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    from mpire import WorkerPool

    # bytes and arrays are passed as one argument (mpire unpacks only other iterables)
    with WorkerPool(n_jobs=2) as pool:
        yield from pool.imap(task, items)


def run_joblib(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    from joblib import Parallel, delayed

    yield from Parallel(n_jobs=2, return_as="generator")(delayed(task)(x) for x in items)


def run_thread_pool_imap(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    from multiprocessing.pool import ThreadPool

    with ThreadPool(2) as pool:
        yield from pool.imap(task, items, 1)


def run_tpe_map(task: Callable[[Any], Any], items: Iterable[Any]) -> Iterator[Any]:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as ex:
        yield from ex.map(task, items)


RUNNERS: dict[str, Runner] = {
    "ours": run_ours,
    "ours_threads": run_ours_threads,
    "mp_imap": run_mp_imap,
    "cf_map": run_cf_map,
    "mpire": run_mpire,
    "joblib": run_joblib,
    "thread_pool_imap": run_thread_pool_imap,
    "tpe_map": run_tpe_map,
}

_IMPORTS = {"ours": "mtasklite_like", "ours_threads": "mtasklite_like", "mpire": "mpire", "joblib": "joblib"}


# -- the child ----------------------------------------------------------------------------------------


def child(data_name: str, runner_name: str, n: int) -> dict[str, Any]:
    """One measured run in this process; returns its figures (MiB, seconds)."""
    import importlib
    import multiprocessing  # noqa: F401
    from concurrent import futures  # noqa: F401

    runner = RUNNERS[runner_name]
    if runner_name in _IMPORTS:
        importlib.import_module(_IMPORTS[runner_name])
    data = Data(data_name)
    baseline = status_kib()["VmRSS"]
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        reset = True
    except OSError:
        reset = False
    start = time.perf_counter()
    count = 0
    results = runner(data.task, data.items(n))
    for i, result in enumerate(results):
        data.check(i, result)
        count += 1
        del result
    seconds = time.perf_counter() - start
    peak = status_kib()["VmHWM"]
    if count != n:
        raise AssertionError(f"{runner_name} gave {count} results for {n} items")
    if runner_name == "joblib":  # stop its reusable workers so that they are reaped and measured
        from joblib.externals.loky import get_reusable_executor

        get_reusable_executor().shutdown(wait=True)
    largest_worker = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB on Linux
    return {
        "data": data_name,
        "runner": runner_name,
        "items": n,
        "seconds": seconds,
        "baseline_mib": baseline / 1024,
        "caller_growth_mib": (peak - baseline) / 1024,
        "largest_worker_mib": largest_worker / 1024 if largest_worker else None,
        "peak_reset": reset,
    }


# -- the parent: run a child, watch its processes -------------------------------------------------------


def run_probe(data_name: str, runner_name: str, n: int, timeout: float = 300.0) -> dict[str, Any]:
    """Run one measurement in a fresh child process (its own process group); return its figures."""
    result, watch = run_child("benchmarks.bigitems", [data_name, runner_name, str(n)],
                              what=f"{runner_name} on {data_name}", timeout=timeout, cap=MEMORY_CAP,
                              interval=0.1)
    result["workers_sum_mib"] = sum(watch.hwm_kib.values()) / 1024 if watch.hwm_kib else None
    result["worker_processes"] = len(watch.hwm_kib)
    return result


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], sys.argv[2], int(sys.argv[3]))))
