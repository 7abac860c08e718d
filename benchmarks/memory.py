"""Peak RSS of the caller while a long generator streams through a process pool.

Each probe runs in a child process of its own (``python -m benchmarks.memory PROBE N``), so that
nothing the benchmark did before (other pools, cached inputs) pollutes the figure. The child
records ``VmRSS`` once the libraries are imported, resets the peak (``VmHWM``, by writing ``5`` to
``/proc/self/clear_refs``), streams ``N`` items of ``x*x`` through the pool while summing the
results (nothing is kept), and prints one JSON line: the growth is ``VmHWM - VmRSS baseline``, in MB
(10^6 bytes).
Only the caller is measured: worker processes have their own memory.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .workloads import square

Probe = Callable[[Iterator[int]], int]


def _status_kib() -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(rest.split()[0])
    return values


def _reset_peak() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def probe_ours(items: Iterator[int]) -> int:
    from mtasklite_like import Pool

    total = 0
    with Pool(square, n_jobs=2) as pool:
        for r in pool(items):
            total += r
    return total


def probe_mp_imap(items: Iterator[int]) -> int:
    import multiprocessing

    total = 0
    with multiprocessing.Pool(2) as pool:
        for r in pool.imap(square, items, 100):
            total += r
    return total


def probe_cf_map(items: Iterator[int]) -> int:
    from concurrent.futures import ProcessPoolExecutor

    total = 0
    with ProcessPoolExecutor(2) as ex:
        for r in ex.map(square, items, chunksize=100):
            total += r
    return total


PROBES: dict[str, Probe] = {"ours": probe_ours, "mp_imap": probe_mp_imap, "cf_map": probe_cf_map}


def child(name: str, n: int) -> dict[str, Any]:
    """Run one probe in this process and return its figures."""
    probe = PROBES[name]
    # Import what the probe needs before the baseline, so imports do not count as growth.
    import multiprocessing  # noqa: F401

    import mtasklite_like  # noqa: F401

    baseline = _status_kib()["VmRSS"]
    reset = _reset_peak()
    start = time.perf_counter()
    total = probe(i for i in range(n))
    seconds = time.perf_counter() - start
    peak = _status_kib()["VmHWM"]
    expected = (n - 1) * n * (2 * n - 1) // 6
    if total != expected:
        raise AssertionError(f"probe {name} summed to {total}, expected {expected}")
    return {
        "probe": name,
        "items": n,
        "baseline_mb": baseline * 1024 / 1e6,
        "peak_mb": peak * 1024 / 1e6,
        "growth_mb": (peak - baseline) * 1024 / 1e6,
        "peak_reset": reset,
        "seconds": seconds,
    }


def run_probe(name: str, n: int, timeout: float = 300.0) -> dict[str, Any]:
    """Run one probe in a fresh child process; return its JSON figures."""
    root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "") if env.get("PYTHONPATH") else root
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.memory", name, str(n)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    if proc.returncode != 0:
        tail = proc.stderr.strip()[-2000:]
        raise RuntimeError(f"memory probe {name} failed (exit {proc.returncode}): {tail}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    print(json.dumps(child(sys.argv[1], int(sys.argv[2]))))
