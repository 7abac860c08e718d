"""Benchmark runs in child processes of their own, watched from outside.

``benchmarks.bigitems`` and ``benchmarks.worker_memory`` run every measurement as
``python -m benchmarks.MODULE ARGS`` in a fresh process group: :func:`run_child` starts it, a
:class:`Watch` thread samples its processes while it runs (each one's peak RSS, and the RSS of all
of them together, against a cap: the whole group is stopped beyond it, so a run that lets memory
grow cannot exhaust a shared machine), and the child's last line of output, a JSON object, is its
result.

Standard library only: the children import the modules that use this one, and must stay lean.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

GiB = 1 << 30

#: the repository's root: the children's working directory, and on their PYTHONPATH
ROOT = str(Path(__file__).resolve().parent.parent)


def proc_kib(path: str, names: tuple[str, ...]) -> dict[str, int]:
    """The fields ``names`` of a ``/proc`` file of ``Name: N kB`` lines, KiB (absent ones left out)."""
    values = {}
    with open(path) as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in names:
                values[key] = int(rest.split()[0])
    return values


def status_kib(pid: str = "self") -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of a process, KiB (absent for a zombie)."""
    return proc_kib(f"/proc/{pid}/status", ("VmRSS", "VmHWM"))


def descendants(root: int) -> list[int]:
    """Pids of every living process below ``root`` (from each process's parent in /proc/*/stat)."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [root]
    while todo:
        kids = parents.get(todo.pop(), [])
        found.extend(kids)
        todo.extend(kids)
    return found


class Watch(threading.Thread):
    """Every ``interval`` s: the largest ``VmHWM`` seen of each process below the child
    (``hwm_kib``), the resident sizes of the child and those processes together against ``cap``
    bytes (the child's process group is stopped beyond it: ``over_cap``), and the largest such total
    (``largest_total``, bytes)."""

    def __init__(self, proc: subprocess.Popen[str], cap: int, interval: float) -> None:
        super().__init__(daemon=True)
        self.proc = proc
        self.cap = cap
        self.interval = interval
        self.hwm_kib: dict[int, int] = {}
        self.largest_total = 0
        self.over_cap = False
        self.done = threading.Event()

    def run(self) -> None:
        child = self.proc.pid
        while not self.done.wait(self.interval):
            total_kib = 0
            for pid in (child, *descendants(child)):
                try:
                    status = status_kib(str(pid))
                except OSError:
                    continue
                if pid != child and "VmHWM" in status:
                    self.hwm_kib[pid] = max(self.hwm_kib.get(pid, 0), status["VmHWM"])
                total_kib += status.get("VmRSS", 0)
            total = total_kib * 1024
            self.largest_total = max(self.largest_total, total)
            if total > self.cap:
                self.over_cap = True
                try:
                    os.killpg(child, signal.SIGKILL)
                except OSError:
                    pass
                return


def child_env() -> dict[str, str]:
    """This process's environment with the repository's root first on PYTHONPATH."""
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else ROOT
    return env


def run_child(module: str, args: list[str], *, what: str, timeout: float, cap: int,
              interval: float) -> tuple[dict[str, Any], Watch]:
    """Run ``python -m MODULE ARGS`` in its own process group under a :class:`Watch`; return the
    JSON object it prints last, and the watch. ``what`` names the run in errors: a run that lasts
    past ``timeout`` s (``TimeoutError``) or whose processes hold more than ``cap`` bytes together
    (``MemoryError``) is stopped, process group and all; one that fails is a ``RuntimeError``."""
    proc = subprocess.Popen(
        [sys.executable, "-m", module, *args],
        cwd=ROOT, env=child_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    watch = Watch(proc, cap, interval)
    watch.start()
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise TimeoutError(f"{what} did not finish within {timeout:.0f} s") from None
    finally:
        watch.done.set()
        watch.join()
    if watch.over_cap:
        raise MemoryError(f"{what}: its processes held more than {cap / GiB:.1f} GiB together: stopped")
    if proc.returncode != 0:
        raise RuntimeError(f"{what} failed (exit {proc.returncode}): {err.strip()[-1500:]}")
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result, watch
