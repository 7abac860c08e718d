"""``python -m benchmarks``: measure every workload, print the table, write JSON and a chart."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from . import measure, report, workloads


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    names = [w.name for w in workloads.build(quick=False)]
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Benchmark mtasklite_like.Pool against its peers; see docs/performance.md.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small inputs, one pair per peer (under a minute)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=None,
        help="measured (ours, peer) pairs per peer after the warm-ups (default 5, 1 with --quick); "
        "slow workloads run fewer, start-up and the bar cost more",
    )
    parser.add_argument(
        "--only",
        action="append",
        default=[],
        metavar="NAME",
        help=f"run only these workloads (repeatable or comma-separated): {', '.join(names)}",
    )
    parser.add_argument("--out", default="results", help="directory for benchmark.json and benchmark.png")
    args = parser.parse_args(argv)
    wanted = [n.strip() for item in args.only for n in item.split(",") if n.strip()]
    unknown = [n for n in wanted if n not in names]
    if unknown:
        parser.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(names)}")
    args.only = wanted
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    selected = [w for w in workloads.build(args.quick) if not args.only or w.name in args.only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = report.environment()
    print(
        f"Python {env['python']} on {env['platform']}, {env['cpus']} CPUs, load {env['load_average']}; "
        f"start methods {env['start_methods']}; repeat={args.repeat}{' (quick)' if args.quick else ''}",
        flush=True,
    )
    started = time.perf_counter()
    rows: list[measure.Row] = []
    for w in selected:
        t0 = time.perf_counter()
        print(f"[{w.name}] {w.title} ...", flush=True)

        def log(row: measure.Row) -> None:
            cells = report.row_cells(row)
            line = f"    {cells[1]}: {cells[3]}  {cells[4]} {cells[6]} {cells[7]}".rstrip()
            if row.workload.startswith("big-"):
                big = report.big_cells(row)
                line += f"  [{big[2]}; caller +{big[3]}, workers {big[4]}, largest worker {big[5]}]"
            if row.workload == "leak":
                leak = report.leak_cells(row)
                line += (f"  [{leak[3]}; largest worker's peak RSS {leak[4]} (tasks), {leak[5]} (ru_maxrss), "
                         f"{leak[6]} (pool), shared {leak[7]}, own {leak[8]}; replaced {leak[9]}]")
            noted = ("logs", "task-progress", "caller-cpu", "one-item")
            if row.workload in noted and row.note and not row.error:
                line += f"  [{row.note}]"
            if row.error:
                line += f"  {row.error}"
            elif row.status == "SKIP":
                line += f"  {row.note}"
            print(line, flush=True)

        rows.extend(measure.run(w, args.repeat, log))
        print(f"    ({time.perf_counter() - t0:.1f} s)", flush=True)
    elapsed = time.perf_counter() - started
    # Reference rows first within each workload.
    order = {w.name: i for i, w in enumerate(selected)}
    rows.sort(key=lambda r: (order[r.workload], not r.reference))
    parts = [report.legend(selected), report.table(rows), report.big_table(rows), report.leak_table(rows),
             report.FOOTNOTES, report.summary(rows, args.quick)]
    text = "\n\n".join(p for p in parts if p)
    print()
    print(text)
    (out / "benchmark.txt").write_text(text + "\n")
    settings = {"quick": args.quick, "repeat": args.repeat, "only": args.only}
    report.write_json(out / "benchmark.json", selected, rows, settings, env, elapsed)
    report.write_chart(out / "benchmark.png", selected, rows, env)
    print(f"\nwrote {out / 'benchmark.json'}, {out / 'benchmark.png'} and {out / 'benchmark.txt'} "
          f"in {elapsed:.0f} s")
    _stop_ray()
    return 0


def _stop_ray() -> None:
    """Shut down the local Ray the Ray rows started, here rather than in the interpreter's exit
    handlers: once (of about ten runs) the process crashed with SIGSEGV while exiting with Ray's
    threads still up, after every row had been written."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        from . import ray_rows

        ray_rows.close_all()
        ray.shutdown()


if __name__ == "__main__":
    sys.exit(main())
