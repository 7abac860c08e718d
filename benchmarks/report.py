"""The outputs: the console table (also ``benchmark.txt``), ``benchmark.json``, the chart."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

from .measure import Row
from .workloads import Workload

_PACKAGES = ("mtasklite-like", "mtasklite", "pqdm", "mpire", "joblib", "multiprocess", "dill", "tqdm")


# -- console ------------------------------------------------------------------------------------------


def format_value(row: Row) -> str:
    v = row.value
    if v is None:
        return "-"
    if row.unit == "items/s":
        return f"{v:,.0f}/s"
    if row.unit == "s":
        return f"{v:.3f} s"
    if row.unit == "ms":
        return f"{v:.1f} ms"
    if row.unit == "us":
        return f"{v:.1f} us"
    if row.unit == "ns/item":
        return f"{v:,.0f} ns/item"
    if row.unit == "MB":
        return f"{v:.1f} MB"
    if row.unit == "items":
        return f"{v:,.0f}"
    return f"{v:g} {row.unit}"


def format_measured(row: Row) -> str:
    if row.measured is None:
        return ""
    if row.measured_unit in ("x", "x ideal"):
        # Three decimals near the limits, so that a FAIL never shows the limit itself (1.05x).
        digits = 3 if row.measured < 10 else 1
        return f"{row.measured:.{digits}f}{row.measured_unit}"
    if row.measured_unit == "items":
        return f"{row.measured:,.0f}"
    if row.measured_unit == "ns/item":
        return f"{row.measured:,.0f} ns/item"
    return f"{row.measured:.1f} {row.measured_unit}"


_COLUMNS = (
    ("workload", "<", 22),
    ("configuration", "<", 53),
    ("items", ">", 11),
    ("median", ">", 14),
    ("ours/this", ">", 9),
    ("target", "<", 19),
    ("measured", ">", 11),
    ("result", "<", 6),
)


def _line(cells: Sequence[str]) -> str:
    parts = [f"{c:{align}{width}}" for c, (_, align, width) in zip(cells, _COLUMNS)]
    return "  ".join(parts).rstrip()


def row_cells(row: Row) -> list[str]:
    items = f"{row.items:,}" + ("*" if "fewer items" in row.note else "")
    if row.unit in ("MB", "items"):
        ratio = "-"
    elif row.reference:
        ratio = "(ours)"
    else:
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
    return [row.workload, row.label, items, format_value(row), ratio, row.target, format_measured(row),
            row.status]


def table(rows: Sequence[Row]) -> str:
    lines = [_line([name for name, _, _ in _COLUMNS]), _line(["-" * w for _, _, w in _COLUMNS])]
    previous = None
    for row in rows:
        if previous is not None and row.workload != previous:
            lines.append("")
        previous = row.workload
        lines.append(_line(row_cells(row)))
    return "\n".join(lines)


_BIG_COLUMNS = (
    ("workload", "<", 22),
    ("configuration", "<", 53),
    ("wall time", ">", 9),
    ("caller RSS growth", ">", 17),
    ("workers' peak RSS, sum", ">", 22),
    ("largest worker", ">", 14),
)


def _mib(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} MiB"


def big_cells(row: Row) -> list[str]:
    """A "big" workload's row in the memory table: median wall time and the memory figures."""
    wall = f"{statistics.median(row.samples):.2f} s" if row.samples else "-"
    return [row.workload, row.label, wall, _mib(row.caller_mib), _mib(row.workers_mib),
            _mib(row.largest_worker_mib)]


def _grid(title: str, columns: Sequence[tuple[str, str, int]], rows: Sequence[Row],
          cells: Callable[[Row], list[str]]) -> str:
    """A titled table of ``cells(row)`` under ``columns`` (name, alignment, width), a blank line
    between workloads."""
    widths = [(a, w) for _, a, w in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, (a, w) in zip(values, widths)).rstrip()

    lines = [title, line([name for name, _, _ in columns]), line(["-" * w for _, _, w in columns])]
    previous = None
    for row in rows:
        if previous is not None and row.workload != previous:
            lines.append("")
        previous = row.workload
        lines.append(line(cells(row)))
    return "\n".join(lines)


def big_table(rows: Sequence[Row]) -> str:
    """Wall time and memory of the large-item rows (empty when none ran)."""
    big = [r for r in rows if r.caller_mib is not None or r.workload.startswith("big-")]
    if not big:
        return ""
    return _grid("Large items: wall time and memory (MiB = 2^20 bytes; largest of the runs)", _BIG_COLUMNS,
                 big, big_cells)


_LEAK_COLUMNS = (
    ("workload", "<", 22),
    ("configuration", "<", 53),
    ("items", ">", 7),
    ("wall time", ">", 9),
    ("peak RSS, tasks", ">", 15),
    ("ru_maxrss", ">", 10),
    ("pool's report", ">", 13),
    ("shared", ">", 7),
    ("own (RSS - shared)", ">", 18),
    ("replaced", ">", 8),
)


def leak_cells(row: Row) -> list[str]:
    """A "leak" row in the worker-memory table: median wall time, the largest worker's peak RSS
    three ways, the part shared with other processes, its own memory at the peak (the largest peak
    less the shared part), worker processes replaced."""
    wall = f"{statistics.median(row.samples):.2f} s" if row.samples else "-"
    replaced = "-" if row.replaced is None else f"{row.replaced:,}"
    return [row.workload, row.label, f"{row.items:,}", wall, _mib(row.task_peak_mib),
            _mib(row.largest_worker_mib), _mib(row.pool_peak_mib), _mib(row.shared_mib),
            _mib(row.own_peak_mib), replaced]


def leak_table(rows: Sequence[Row]) -> str:
    """Wall time and the workers' memory of the leak rows (empty when none ran)."""
    leak = [r for r in rows if r.workload == "leak"]
    if not leak:
        return ""
    return _grid("A leaking task: wall time, the largest worker's peak RSS and own memory (MiB = 2^20 bytes; "
                 "largest of the runs)", _LEAK_COLUMNS, leak, leak_cells)


def legend(workloads: Sequence[Workload]) -> str:
    lines = ["Workloads:"]
    for w in workloads:
        extra = ""
        if w.notes:
            extra = " [" + ", ".join(f"{k}={v}" for k, v in w.notes.items()) + "]"
        lines.append(f"  {w.name:<22}  {w.title}{extra}")
    return "\n".join(lines)


FOOTNOTES = """\
ours/this: our throughput / this configuration's throughput, median of the paired runs (> 1: ours is
  faster). Each workload's first row is its "ours"; times include creating and closing the pool.
median: items/s (or seconds, ms, MB) over the runs; x ideal: seconds / (total sleep / workers).
startup: from creating the pool to the first result; closing it is not timed.
caller-cpu: CPU time of the calling process (time.process_time: its own threads, not the workers) per
  item over the whole call, pool start and close included; median of the runs. ours/this: this CPU per
  item / ours, median of the pairs (> 1: ours uses less). Workers' CPU per item (children's user + sys
  from os.times once the pool is closed and its workers joined) in the notes.
one-item: microseconds per call for one item through a pool kept open (after warm-up calls), p50 over
  every call of every round (p99 in the notes); ours/this: this p50 / our p50 (> 1: ours is faster); a
  target "p50 <= X" on X's row means our p50 <= X's p50, that is ours/this >= 1.
latency-*: ms from an item leaving the source to its result reaching the consumer, p50 over every item
  of every run (p99 and the median time from creating the pool to the first result in the notes);
  ours/this: this p50 / our p50 (> 1: ours is faster); "p50 <= X" as for one-item.
* run on fewer items because the peer is slow; items/s stay comparable with the other rows.
memory: peak RSS growth of the calling process (largest run), each run in a fresh child process.
http-*: coroutine workers against a local HTTP server (its own process) answering after 50 ms; ideal =
  requests x 50 ms / 256 requests in flight. rate-limit: one run over an endless input, counted from
  the server's arrival timestamps. async-for: ours/this = async for throughput / for throughput.
big-*: every run in a fresh child process; ours/this from wall times in the same round; the reference's
  target is the caller's peak RSS growth in MiB (largest run). Memory per row in the table below:
  workers' sum = last sampled VmHWM (every 100 ms) of each process the caller started, summed;
  largest worker = ru_maxrss of the reaped children (exact); both include pages shared after fork.
leak: each item maps and touches 20 MiB and keeps it; every run in a fresh child process. Peak RSS per
  worker three ways: the largest VmHWM the tasks read after their items, ru_maxrss of the reaped workers,
  and (ours) Pool.worker_memory(); "shared": the part of a worker's RSS shared with other processes
  (pages shared with the pool's process after fork, read at each worker's first item); "own": the
  largest peak RSS less the shared part. The reference's target is on its own memory (peak RSS - shared
  <= 512 MiB + one item), as max_worker_memory limits own memory (USS), not RSS; the peak RSS stands
  beside it. "replaced": worker processes started in place of others (last run).
  "ours, no leak": the same task unmapping its 20 MiB; ours/this >= 0.909 is time with the leak
  <= 1.10 x time without. loky runs fewer items: only its own check bounds the leak there.
pressure: one run, in a fresh child process; another process takes the memory available below
  min_available_memory, holds it, frees it. "started": tasks whose start (their own timestamps) falls
  after the moment the memory was in plus the grace (sampling interval + longest task + 50 ms for a
  batch in transit) and before the free; the pause is the longest gap between two starts.
logs: every run in a fresh child process; ours/this = time forwarded / time with a file per worker
  (median of the rounds); the files are read back: records in order per worker, every item's there.
task-progress: runs alternate without / with progress() per step (same step length, same items; the
  order within a pair swaps every pair); ours/this = time with / time without, median of the pairs;
  CPU per item from the tasks' thread_time."""


def summary(rows: Sequence[Row], quick: bool = False) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "FAIL", "ERROR")}
    text = f"targets: {counts['PASS']} PASS, {counts['FAIL']} FAIL"
    if quick:
        text += " (quick run: smaller inputs and fewer runs than the targets assume; indicative only)"
    if counts["ERROR"]:
        text += f", {counts['ERROR']} ERROR"
    skipped = sorted({(r.workload, r.note) for r in rows if r.status == "SKIP"})
    if skipped:
        text += f", {len(skipped)} workload(s) skipped"
    failed = [r for r in rows if r.status in ("FAIL", "ERROR")]
    for r in failed:
        detail = r.error or f"measured {format_measured(r)}, target {r.target}"
        text += f"\n  {r.status}: {r.workload} / {r.label}: {detail}"
    for name, why in skipped:
        text += f"\n  SKIP: {name}: {why}"
    return text


# -- json -------------------------------------------------------------------------------------------


def environment() -> dict[str, Any]:
    import multiprocessing

    import multiprocess

    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count()
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": cpus,
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
        "start_methods": {
            "multiprocessing": multiprocessing.get_start_method(),
            "multiprocess": multiprocess.get_start_method(),
        },
        "versions": versions,
    }


def write_json(path: Path, workloads: Sequence[Workload], rows: Sequence[Row], settings: dict[str, Any],
               env: dict[str, Any], elapsed: float) -> None:
    doc = {
        "environment": env,
        "settings": settings,
        "elapsed_seconds": round(elapsed, 1),
        "workloads": [
            {
                "name": w.name,
                "title": w.title,
                "kind": w.kind,
                "notes": w.notes,
                "rows": [r.to_json() for r in rows if r.workload == w.name],
            }
            for w in workloads
        ],
        "summary": {s: sum(r.status == s for r in rows) for s in ("PASS", "FAIL", "ERROR")},
    }
    path.write_text(json.dumps(doc, indent=2) + "\n")


# -- chart ------------------------------------------------------------------------------------------

_OURS = "#d95f02"
_PEER = "#7570b3"


def write_chart(path: Path, workloads: Sequence[Workload], rows: Sequence[Row], env: dict[str, Any]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # pressure: counts and a pause of one run, told by the table, not bars
    shown = [w for w in workloads
             if w.kind != "pressure" and any(r.workload == w.name and r.value is not None for r in rows)]
    if not shown:
        return
    cols = 3 if len(shown) > 4 else min(2, len(shown))
    nrows = (len(shown) + cols - 1) // cols
    fig, axes = plt.subplots(nrows, cols, figsize=(6.4 * cols, 3.6 * nrows), squeeze=False)
    for ax in axes.flat[len(shown):]:
        ax.set_visible(False)
    for ax, w in zip(axes.flat, shown):
        wrows = [r for r in rows if r.workload == w.name and r.value is not None]
        labels = [r.short + ("*" if "fewer items" in r.note else "") for r in wrows]
        values = [r.value for r in wrows]
        colors = [_OURS if r.reference or r.short.startswith("ours") else _PEER for r in wrows]
        y = range(len(wrows))
        ax.barh(list(y), values, color=colors)
        ax.set_yticks(list(y), labels, fontsize=8)
        ax.invert_yaxis()
        ax.tick_params(axis="x", labelsize=8)
        unit = wrows[0].unit
        if unit == "items/s":
            if max(values) > 20 * min(values):
                ax.set_xscale("log")
                ax.set_xlabel("items/s (log scale, higher is better)", fontsize=8)
            else:
                ax.set_xlabel("items/s (higher is better)", fontsize=8)
            texts = [f"{v:,.0f}" for v in values]
            if w.kind == "leak":
                texts = [f"{t}, peak {r.task_peak_mib:,.0f} MiB" if r.task_peak_mib else t
                         for t, r in zip(texts, wrows)]
        elif unit == "s":
            ideal = next((r.value / r.measured for r in wrows if r.measured), None)
            if ideal:
                ax.axvline(ideal, color="black", linestyle="--", linewidth=1, label=f"ideal {ideal:.2f} s")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_xlabel("seconds (lower is better)", fontsize=8)
            texts = [f"{r.value:.2f} s ({r.measured:.2f}x ideal)" if r.measured else f"{r.value:.2f} s"
                     for r in wrows]
        elif w.kind == "rate":
            ax.set_xlabel("requests started", fontsize=8)
            texts = [f"{v:,.0f}" for v in values]
        else:
            limit = {"latency": 10.0, "caller-cpu": 150.0, "one-item": None}.get(w.kind, 50.0)
            if limit is not None:
                ax.axvline(limit, color="black", linestyle="--", linewidth=1,
                           label=f"target {limit:g} {unit}")
                ax.legend(fontsize=7, loc="lower right")
            ax.set_xlabel(f"{unit} (lower is better)", fontsize=8)
            texts = [f"{v:,.0f} {unit}" if unit == "ns/item" else f"{v:.1f} {unit}" for v in values]
        for yi, (v, text) in enumerate(zip(values, texts)):
            ax.text(v, yi, " " + text, va="center", fontsize=7)
        ax.margins(x=0.35)
        title = "\n".join(textwrap.wrap(w.title, 75))
        ax.set_title(f"{w.name}: {title}", fontsize=8.5)
    fig.suptitle(
        f"mtasklite_like vs peers - Python {env['python']}, {env['cpus']} CPUs, {env['date'][:10]} "
        "(orange: ours; * fewer items)",
        fontsize=10,
    )
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    fig.savefig(path, dpi=110)
    plt.close(fig)
