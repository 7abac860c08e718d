"""The outputs: the console table (also ``benchmark.txt``), ``benchmark.json``, the chart."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import textwrap
import time
from collections.abc import Sequence
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


def big_table(rows: Sequence[Row]) -> str:
    """Wall time and memory of the large-item rows (empty when none ran)."""
    big = [r for r in rows if r.caller_mib is not None or r.workload.startswith("big-")]
    if not big:
        return ""
    widths = [(a, w) for _, a, w in _BIG_COLUMNS]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(f"{c:{a}{w}}" for c, (a, w) in zip(cells, widths)).rstrip()

    lines = ["Large items: wall time and memory (MiB = 2^20 bytes; largest of the runs)",
             line([name for name, _, _ in _BIG_COLUMNS]), line(["-" * w for _, _, w in _BIG_COLUMNS])]
    previous = None
    for row in big:
        if previous is not None and row.workload != previous:
            lines.append("")
        previous = row.workload
        lines.append(line(big_cells(row)))
    return "\n".join(lines)


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
latency-*: ms from an item leaving the source to its result reaching the consumer, p50 over every item
  of every run (p99 and the median time from creating the pool to the first result in the notes);
  ours/this: this p50 / our p50 (> 1: ours is faster).
* run on fewer items because the peer is slow; items/s stay comparable with the other rows.
memory: peak RSS growth of the calling process (largest run), each run in a fresh child process.
http-*: coroutine workers against a local HTTP server (its own process) answering after 50 ms; ideal =
  requests x 50 ms / 256 requests in flight. rate-limit: one run over an endless input, counted from
  the server's arrival timestamps. async-for: ours/this = async for throughput / for throughput.
big-*: every run in a fresh child process; ours/this from wall times in the same round; the reference's
  target is the caller's peak RSS growth in MiB (largest run). Memory per row in the table below:
  workers' sum = last sampled VmHWM (every 100 ms) of each process the caller started, summed;
  largest worker = ru_maxrss of the reaped children (exact); both include pages shared after fork."""


def summary(rows: Sequence[Row], quick: bool = False) -> str:
    counts = {s: sum(r.status == s for r in rows) for s in ("PASS", "FAIL", "ERROR")}
    text = f"targets: {counts['PASS']} PASS, {counts['FAIL']} FAIL"
    if quick:
        text += " (quick run: smaller inputs and fewer runs than the targets assume; indicative only)"
    if counts["ERROR"]:
        text += f", {counts['ERROR']} ERROR"
    failed = [r for r in rows if r.status in ("FAIL", "ERROR")]
    for r in failed:
        detail = r.error or f"measured {format_measured(r)}, target {r.target}"
        text += f"\n  {r.status}: {r.workload} / {r.label}: {detail}"
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

    shown = [w for w in workloads if any(r.workload == w.name and r.value is not None for r in rows)]
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
            limit = 10.0 if w.kind == "latency" else 50.0
            ax.axvline(limit, color="black", linestyle="--", linewidth=1, label=f"target {limit:g} {unit}")
            ax.legend(fontsize=7, loc="lower right")
            ax.set_xlabel(f"{unit} (lower is better)", fontsize=8)
            texts = [f"{v:.1f} {unit}" for v in values]
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
