"""The task functions and the table of workloads: inputs, configurations and targets.

Task functions live at module level so that every process pool (``multiprocessing``'s pickle,
loky's cloudpickle, ``multiprocess``' dill) sends them by name.

Targets come from the issue that asked for this benchmark. "ours" is ``mtasklite_like.Pool`` with
default settings unless a label says otherwise. A workload's *reference* configuration is the
"ours" its ratios are taken against; a target on a peer's row is a bound on
``reference throughput / peer throughput`` (how many times faster ours is), a target on the
reference row is a bound on its own figure (ratio to ideal, milliseconds, megabytes).
"""

from __future__ import annotations

import functools
import operator
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from . import asyncio_io, peers

# -- tasks -----------------------------------------------------------------------------------------


def square(x: int) -> int:
    """The trivial task: all overhead, no work."""
    return x * x


def sleep_for(seconds: float) -> float:
    """An I/O-like task: waits without using a core."""
    time.sleep(seconds)
    return seconds


def spin(n: int) -> int:
    """A CPU-bound pure-Python task; ``n`` loop iterations (calibrated to about 5 ms)."""
    total = 0
    for i in range(n):
        total += i * i & 0xFF
    return total


def calibrate_spin(seconds: float) -> int:
    """The number of iterations of :func:`spin` that takes about ``seconds`` on this machine."""
    n = 20_000
    while True:
        start = time.perf_counter()
        spin(n)
        took = time.perf_counter() - start
        if took > 0.02:
            break
        n *= 2
    n = max(1, int(n * seconds / took))
    runs = []
    for _ in range(15):
        start = time.perf_counter()
        spin(n)
        runs.append(time.perf_counter() - start)
    runs.sort()
    measured = runs[len(runs) // 2]
    return max(1, int(n * seconds / measured))


# -- targets ---------------------------------------------------------------------------------------

_OPS: dict[str, Callable[[float, float], bool]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "<": operator.lt,
    "==": operator.eq,
    "~3%": lambda value, limit: abs(value - limit) <= 0.03 * limit,
    # a rate limit: never more than the limit allows (rate x window + 1), and at least 95 % of it
    "pace": lambda value, limit: 0.95 * limit <= value <= limit + 1,
}


@dataclass(frozen=True)
class Target:
    """``measured <op> limit``; ``text`` is how the table shows it."""

    text: str
    op: str
    limit: float

    def check(self, value: float) -> bool:
        return _OPS[self.op](value, self.limit)


def faster_than(limit: float) -> Target:
    """On a peer's row: our throughput / its throughput >= limit."""
    return Target(f"ours/this >= {limit:g}", ">=", limit)


def costs_at_most(fraction: float) -> Target:
    """On the row of ours with an option on, against the reference ours without it: the option
    costs at most ``fraction`` of the throughput, this >= (1 - fraction) x ours, that is
    ours/this <= 1 / (1 - fraction)."""
    limit = 1 / (1 - fraction)
    return Target(f"ours/this <= {limit:.4f}", "<=", limit)


def caller_growth_at_most(mib: float) -> Target:
    """On a "big" workload's reference row: the caller's peak RSS growth (largest run) <= mib MiB."""
    return Target(f"caller RSS <= {mib:g} MiB", "<=", mib)


def p50_at_most(peer: str) -> Target:
    """On a peer's row of a latency or one-item workload: our p50 <= this peer's p50. The figure
    judged is the row's ours/this, this p50 / our p50, which must be >= 1."""
    return Target(f"p50 <= {peer}", ">=", 1.0)


# -- configurations and workloads ----------------------------------------------------------------


@dataclass
class Config:
    """One way to run a workload: a row of the table.

    ``run`` is ``runner(task, data) -> list`` for throughput and caller-CPU workloads, a
    zero-argument function returning seconds for the start-up workload, ``runner(task, warmup,
    calls) -> seconds of each timed call`` for the one-item workload, and a probe name of
    ``benchmarks.memory`` for the memory workload. ``items`` overrides the workload's item count
    (slow peers run fewer items; their throughput in items/s is still comparable).
    """

    label: str
    short: str
    run: Any
    items: int | None = None
    target: Target | None = None
    note: str = ""
    cleanup: Callable[[], None] | None = None
    #: throughput workloads, a peer: its measurement pairs as a multiple of the workload's (a ratio
    #: judged against a tight target needs more)
    repeat_factor: float = 1.0


@dataclass
class Workload:
    name: str
    title: str
    kind: str  # "throughput", "ideal", "startup", "memory", "latency", "big" (time and memory of large
    # items), "caller-cpu" (the caller's CPU time per item), "one-item" (one item through a warm pool,
    # per call), "rate" (starts per second under max_per_second, from the server's timestamps), "leak"
    # (a leaking task: time and workers' peak RSS), "pressure" (no starts while memory is short), "logs"
    # (workers' log records into files, every run a child process), "task-progress" (a task calling
    # progress() against the same task without the calls, paired by step length)
    reference: Config
    peers: list[Config]
    items: int = 0
    task: Callable[[Any], Any] | None = None
    make_input: Callable[[int], Iterable[Any]] | None = None
    expected: Callable[[int], list[Any]] | None = None
    ideal: Callable[[int], float] | None = None
    #: measurement pairs, as a multiple of --repeat (slow workloads run fewer, noisy ones more)
    repeat_factor: float = 1.0
    prepare: Callable[[], dict[str, Any]] | None = None
    notes: dict[str, Any] = field(default_factory=dict)
    #: "big" workloads: the kind of item, a data name of ``benchmarks.bigitems``
    data: str = ""


@functools.lru_cache(maxsize=8)
def _squares(n: int) -> list[int]:
    return [i * i for i in range(n)]


def _sized(n: int) -> list[int]:
    return list(range(n))


def _generator(n: int) -> Iterable[int]:
    return (i for i in range(n))


def _sleep_overshoot() -> dict[str, Any]:
    """How long ``sleep(0.01)`` really takes here: the floor under any pool's ratio to ideal."""
    start = time.perf_counter()
    for _ in range(30):
        time.sleep(0.01)
    return {"one_sleep_10ms_takes_ms": round((time.perf_counter() - start) / 30 * 1000, 2)}


def _mixed(n: int) -> list[float]:
    """Every 4th task slow (200 ms), the others fast (10 ms): 16 slow and 48 fast for n = 64."""
    return [0.2 if i % 4 == 0 else 0.01 for i in range(n)]


def build(quick: bool) -> list[Workload]:
    """The workloads, in the order of the issue's table. ``quick`` shrinks every input."""
    p = functools.partial

    def n(full: int, small: int) -> int:
        return small if quick else full

    slow_n = n(10_000, 1_000)  # for the ~9k items/s peers

    square_processes = Workload(
        name="square-processes",
        title=f"{n(200_000, 20_000):,} x x*x, processes, sized list, ordered, 2 workers",
        kind="throughput",
        items=n(200_000, 20_000),
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2)", "ours Pool", p(peers.ours_pool, n_jobs=2)),
        peers=[
            Config(
                "ours: Pool(n_jobs=2, chunk_size=1): no batching",
                "ours chunk_size=1",
                p(peers.ours_pool, n_jobs=2, chunk_size=1),
                items=n(20_000, 2_000),
                note="one item per message: what adaptive batches save",
            ),
            Config(
                "ours: Pool(2, max_worker_memory='64GiB'): check cost",
                "ours 64GiB limit",
                p(peers.ours_pool, n_jobs=2, max_worker_memory="64GiB"),
                target=costs_at_most(0.01),
                note=("a limit never reached: what the workers' memory checks after each batch cost; "
                      "with the checks >= 0.99 x without"),
                repeat_factor=10.0,
            ),
            Config("serial list comprehension", "serial", peers.serial),
            Config("multiprocessing.Pool.map (eager)", "mp.Pool.map", p(peers.mp_map, n_jobs=2),
                   target=faster_than(1.3)),
            Config(
                "multiprocessing.Pool.imap(chunksize=100)",
                "mp.Pool.imap(100)",
                p(peers.mp_imap, n_jobs=2, chunksize=100),
                target=faster_than(3.0),
            ),
            Config(
                "multiprocessing.Pool.imap(chunksize=1)",
                "mp.Pool.imap(1)",
                p(peers.mp_imap, n_jobs=2, chunksize=1),
                items=n(20_000, 2_000),
            ),
            Config(
                "ProcessPoolExecutor.map(chunksize=100)",
                "PPE.map(100)",
                p(peers.cf_process_map, n_jobs=2, chunksize=100),
            ),
            Config(
                "joblib Parallel(2, return_as='generator')",
                "joblib",
                p(peers.joblib_generator, n_jobs=2),
                items=n(100_000, 10_000),
                cleanup=peers.shutdown_joblib,
            ),
            Config("mpire WorkerPool(2).imap", "mpire imap", p(peers.mpire_imap, n_jobs=2),
                   items=n(100_000, 10_000)),
            Config("pqdm.processes (disable=True)", "pqdm processes", p(peers.pqdm_processes, n_jobs=2),
                   items=slow_n),
            Config(
                "mtasklite Pool(n_jobs=2)",
                "mtasklite",
                p(peers.mtasklite_pool, n_jobs=2),
                items=slow_n,
                target=faster_than(50.0),
            ),
        ],
    )

    cpu_items = 200_000  # also with --quick: the pool's start and stop would weigh on fewer items
    caller_cpu = Workload(
        name="caller-cpu",
        title=(f"{cpu_items:,} x x*x, processes, sized list, ordered, 2 workers: CPU time of the calling "
               "process per item (time.process_time around the run; workers' CPU in the notes)"),
        kind="caller-cpu",
        items=cpu_items,
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2)", "ours Pool", p(peers.ours_pool, n_jobs=2),
                         target=Target("<= 150 ns/item", "<=", 150.0)),
        peers=[
            Config("multiprocessing.Pool.map (eager)", "mp.Pool.map", p(peers.mp_map, n_jobs=2)),
            Config("multiprocessing.Pool.imap(chunksize=100)", "mp.Pool.imap(100)",
                   p(peers.mp_imap, n_jobs=2, chunksize=100)),
        ],
        repeat_factor=3.0,
    )

    square_generator = Workload(
        name="square-generator",
        title=f"{n(200_000, 20_000):,} x x*x, processes, unsized generator input, ordered, 2 workers",
        kind="throughput",
        items=n(200_000, 20_000),
        task=square,
        make_input=_generator,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2), generator input", "ours, generator",
                         p(peers.ours_pool, n_jobs=2)),
        peers=[
            Config(
                "ours: Pool(n_jobs=2), sized list input",
                "ours, sized list",
                p(peers.ours_pool, n_jobs=2),
                target=faster_than(0.95),
                note="input is list(range(n)) here",
            ),
            Config(
                "multiprocessing.Pool.imap(chunksize=100), generator",
                "mp.Pool.imap(100)",
                p(peers.mp_imap, n_jobs=2, chunksize=100),
            ),
        ],
        repeat_factor=6.0,
    )

    square_threads = Workload(
        name="square-threads",
        title=f"{n(200_000, 20_000):,} x x*x, threads, sized list, ordered, 2 workers",
        kind="throughput",
        items=n(200_000, 20_000),
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2, use_threads=True)", "ours Pool threads",
                         p(peers.ours_pool, n_jobs=2, use_threads=True)),
        peers=[
            Config("serial list comprehension", "serial", peers.serial),
            Config(
                "ThreadPool.imap(chunksize=1)",
                "ThreadPool.imap(1)",
                p(peers.thread_pool_imap, n_jobs=2, chunksize=1),
                target=faster_than(1.0),
            ),
            Config(
                "ThreadPoolExecutor.map",
                "TPE.map",
                p(peers.cf_thread_map, n_jobs=2),
                items=n(20_000, 2_000),
            ),
            Config("pqdm.threads (disable=True)", "pqdm threads", p(peers.pqdm_threads, n_jobs=2),
                   items=n(20_000, 2_000)),
            Config("mtasklite Pool(n_jobs=2, use_threads=True)", "mtasklite threads",
                   p(peers.mtasklite_pool, n_jobs=2, use_threads=True), items=slow_n),
        ],
    )

    pqdm_bar = Workload(
        name="pqdm-bar",
        title=f"{n(200_000, 20_000):,} x x*x, processes, our pqdm drop-in (mtasklite_like.pqdm.processes): "
              "cost of the progress bar",
        kind="throughput",
        items=n(200_000, 20_000),
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: pqdm.processes.pqdm(n_jobs=2), bar -> io.StringIO", "ours pqdm, bar on",
                         p(peers.ours_pqdm, n_jobs=2, bar=True)),
        peers=[
            Config(
                "ours: pqdm.processes.pqdm(n_jobs=2, disable=True)",
                "ours pqdm, bar off",
                p(peers.ours_pqdm, n_jobs=2, bar=False),
                target=faster_than(0.95),
                note="bar on / bar off >= 0.95: the bar costs < 5%",
            ),
            Config("ours: Pool(n_jobs=2), no wrapper", "ours Pool", p(peers.ours_pool, n_jobs=2),
                   target=faster_than(0.97),
                   note="pqdm with its bar / the plain pool >= 0.97: the wrapper and its bar cost < 3%"),
        ],
        repeat_factor=10.0,
    )

    journal = Workload(
        name="journal",
        title=f"{n(200_000, 20_000):,} x x*x, processes, sized list, ordered, 2 workers: cost of the journal",
        kind="throughput",
        items=n(200_000, 20_000),
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2, journal=RUN_DIR), a first run", "ours Pool, journal",
                         p(peers.ours_journal, n_jobs=2)),
        peers=[
            Config(
                "ours: Pool(n_jobs=2), no journal",
                "ours Pool",
                p(peers.ours_pool, n_jobs=2),
                target=faster_than(0.95),
                note="journal / plain >= 0.95: the journal costs <= 5%",
                cleanup=peers.remove_journals,
            ),
        ],
        repeat_factor=10.0,
    )

    sleep_n = n(400, 100)
    sleep_threads = Workload(
        name="sleep-threads",
        title=f"{sleep_n} x sleep(10 ms), threads, 4 workers (ideal {sleep_n * 0.01 / 4:.2f} s)",
        kind="ideal",
        items=sleep_n,
        task=sleep_for,
        make_input=lambda k: [0.01] * k,
        expected=lambda k: [0.01] * k,
        ideal=lambda k: k * 0.01 / 4,
        reference=Config("ours: Pool(n_jobs=4, use_threads=True)", "ours Pool threads",
                         p(peers.ours_pool, n_jobs=4, use_threads=True),
                         target=Target("<= 1.05 x ideal", "<=", 1.05)),
        peers=[
            Config("ours: Pool(4, use_threads=True, chunk_prefill_ratio=2)", "ours prefill 2",
                   p(peers.ours_pool, n_jobs=4, use_threads=True, chunk_prefill_ratio=2),
                   note="two items per worker instead of one"),
            Config("ThreadPool(4).imap(chunksize=1)", "ThreadPool.imap(1)",
                   p(peers.thread_pool_imap, n_jobs=4, chunksize=1)),
            Config("ThreadPoolExecutor(4).map", "TPE.map", p(peers.cf_thread_map, n_jobs=4)),
            Config("pqdm.threads(n_jobs=4, disable=True)", "pqdm threads", p(peers.pqdm_threads, n_jobs=4)),
            Config("mtasklite Pool(n_jobs=4, use_threads=True)", "mtasklite threads",
                   p(peers.mtasklite_pool, n_jobs=4, use_threads=True)),
        ],
        repeat_factor=0.6,
        prepare=_sleep_overshoot,
    )

    mixed_n = n(64, 16)
    mixed = Workload(
        name="mixed",
        title=(f"{mixed_n} tasks: every 4th 200 ms, the rest 10 ms; processes, 4 workers, ordered "
               f"(ideal {sum(_mixed(mixed_n)) / 4:.2f} s)"),
        kind="ideal",
        items=mixed_n,
        task=sleep_for,
        make_input=_mixed,
        expected=_mixed,
        ideal=lambda k: sum(_mixed(k)) / 4,
        reference=Config("ours: Pool(n_jobs=4)", "ours Pool", p(peers.ours_pool, n_jobs=4),
                         target=Target("<= 1.05 x ideal", "<=", 1.05)),
        peers=[
            Config("ours: Pool(n_jobs=4, chunk_prefill_ratio=2)", "ours prefill 2",
                   p(peers.ours_pool, n_jobs=4, chunk_prefill_ratio=2),
                   note="two items per worker instead of one"),
            Config("multiprocessing.Pool(4).imap(chunksize=1)", "mp.Pool.imap(1)",
                   p(peers.mp_imap, n_jobs=4, chunksize=1)),
            Config("multiprocessing.Pool(4).map (default chunks)", "mp.Pool.map", p(peers.mp_map, n_jobs=4)),
            Config("ProcessPoolExecutor(4).map", "PPE.map", p(peers.cf_process_map, n_jobs=4, chunksize=1)),
            Config("mtasklite Pool(n_jobs=4)", "mtasklite", p(peers.mtasklite_pool, n_jobs=4)),
        ],
        repeat_factor=0.6,
    )

    short_n = 16
    mixed_short = Workload(
        name="mixed-short",
        title=(f"{short_n} tasks: every 4th 200 ms, the rest 10 ms; processes, 4 workers, ordered "
               f"(ideal {sum(_mixed(short_n)) / 4:.2f} s): one vs two items per worker"),
        kind="ideal",
        items=short_n,
        task=sleep_for,
        make_input=_mixed,
        expected=_mixed,
        ideal=lambda k: sum(_mixed(k)) / 4,
        reference=Config("ours: Pool(n_jobs=4)", "ours Pool", p(peers.ours_pool, n_jobs=4)),
        peers=[
            Config("ours: Pool(n_jobs=4, chunk_prefill_ratio=2)", "ours prefill 2",
                   p(peers.ours_pool, n_jobs=4, chunk_prefill_ratio=2),
                   note="two items per worker instead of one"),
            Config("multiprocessing.Pool(4).imap(chunksize=1)", "mp.Pool.imap(1)",
                   p(peers.mp_imap, n_jobs=4, chunksize=1)),
        ],
    )

    cpu_n = n(240, 60)
    spin_iterations: list[int] = [0]

    def prepare_cpu() -> dict[str, Any]:
        iterations = calibrate_spin(0.005)
        spin_iterations[0] = iterations
        start = time.perf_counter()
        for _ in range(20):
            spin(iterations)
        return {"spin_iterations": iterations, "task_ms": round((time.perf_counter() - start) / 20 * 1000, 2)}

    cpu_bound = Workload(
        name="cpu-bound",
        title=f"{cpu_n} x CPU-bound pure-Python task of ~5 ms, processes, 2 workers",
        kind="throughput",
        items=cpu_n,
        task=spin,
        make_input=lambda k: [spin_iterations[0]] * k,
        expected=lambda k: [spin(spin_iterations[0])] * k,
        reference=Config("ours: Pool(n_jobs=2)", "ours Pool", p(peers.ours_pool, n_jobs=2)),
        peers=[
            Config("serial list comprehension", "serial", peers.serial, target=faster_than(1.9),
                   note="speed-up over serial >= 1.9"),
            Config("multiprocessing.Pool.imap(chunksize=1)", "mp.Pool.imap(1)",
                   p(peers.mp_imap, n_jobs=2, chunksize=1), target=faster_than(1.0)),
            Config("ProcessPoolExecutor.map(chunksize=1)", "PPE.map(1)",
                   p(peers.cf_process_map, n_jobs=2, chunksize=1), target=faster_than(1.0)),
            Config("Pool.map(chunksize=n/2): one chunk per worker", "mp.Pool.map(n/2)",
                   p(peers.mp_map_halves, n_jobs=2), target=faster_than(1.0),
                   note="two messages in all: the cost of the machine alone"),
            Config("mpire WorkerPool(2).imap", "mpire imap", p(peers.mpire_imap, n_jobs=2),
                   target=faster_than(1.0)),
        ],
        repeat_factor=2.0,
        prepare=prepare_cpu,
    )

    memory = Workload(
        name="memory",
        title=f"{n(10_000_000, 1_000_000):,}-item generator of x*x through processes, 2 workers: "
              "peak RSS growth of the caller",
        kind="memory",
        items=n(10_000_000, 1_000_000),
        reference=Config("ours: Pool(n_jobs=2), bounded (default)", "ours Pool", "ours",
                         target=Target("<= 50 MB", "<=", 50.0)),
        peers=[
            Config("multiprocessing.Pool.imap(chunksize=100)", "mp.Pool.imap(100)", "mp_imap"),
            Config("ProcessPoolExecutor.map(chunksize=100)", "PPE.map(100)", "cf_map",
                   note="submits every chunk up front"),
        ],
    )

    startup = Workload(
        name="startup",
        title="start-up of a 2-worker process pool with fork: time to the first result of a 1-item input",
        kind="startup",
        items=1,
        reference=Config("ours: Pool(n_jobs=2, start_method='fork')", "ours Pool", peers.startup_ours,
                         target=Target("< 50 ms", "<", 50.0)),
        peers=[
            Config("multiprocessing fork Pool(2).imap", "mp.Pool", peers.startup_mp_pool),
            Config("ProcessPoolExecutor(2, mp_context=fork).map", "PPE", peers.startup_cf_process),
            Config("mpire WorkerPool(2, start_method='fork').imap", "mpire", peers.startup_mpire),
            Config("mtasklite Pool(n_jobs=2)", "mtasklite", peers.startup_mtasklite),
        ],
        repeat_factor=3.0,
    )

    one_calls = 200
    one_item = Workload(
        name="one-item",
        title=(f"one x*x through a warm 2-worker process pool, kept open: {one_calls} timed calls after "
               f"{peers.ONE_ITEM_WARMUP} warm-up calls (p50 per call; p99 in notes)"),
        kind="one-item",
        items=one_calls,
        task=square,
        reference=Config("ours: Pool(n_jobs=2), list(pool([x]))", "ours Pool",
                         p(peers.one_item_ours, n_jobs=2)),
        peers=[
            Config("multiprocessing.Pool(2).apply(square, (x,))", "mp.Pool.apply",
                   p(peers.one_item_mp_apply, n_jobs=2), target=p50_at_most("Pool.apply")),
            Config("ProcessPoolExecutor(2).submit(square, x).result()", "PPE.submit",
                   p(peers.one_item_cf_submit, n_jobs=2)),
            Config("mpire WorkerPool(2).apply(square, (x,))", "mpire apply",
                   p(peers.one_item_mpire_apply, n_jobs=2)),
        ],
    )

    slow_items = n(60, 20)
    latency_slow = Workload(
        name="latency-slow",
        title=f"{slow_items} items from a source yielding one every 50 ms, 1 ms task, processes, 2 workers: "
              "time from an item leaving the source to its result (p50; p99 and first result in notes)",
        kind="latency",
        items=slow_items,
        make_input=lambda k: peers.slow_source(k, 0.05),
        reference=Config("ours: Pool(n_jobs=2)", "ours Pool", p(peers.latency_ours, n_jobs=2),
                         target=Target("p50 < 10 ms", "<", 10.0)),
        peers=[
            Config("ours: Pool(n_jobs=2, use_threads=True)", "ours threads",
                   p(peers.latency_ours, n_jobs=2, use_threads=True)),
            Config("multiprocessing.Pool(2).imap(chunksize=1)", "mp.Pool.imap(1)",
                   p(peers.latency_mp_imap, n_jobs=2)),
            Config("mpire WorkerPool(2).imap", "mpire imap", p(peers.latency_mpire, n_jobs=2)),
        ],
        repeat_factor=0.4,
    )

    bursty_items = n(200, 60)
    latency_bursty = Workload(
        name="latency-bursty",
        title=f"{bursty_items} items in bursts of 20 every 100 ms, 1 ms task, processes, 2 workers: time "
              "from an item leaving the source to its result (p50; p99 in notes)",
        kind="latency",
        items=bursty_items,
        make_input=lambda k: peers.bursty_source(k, 20, 0.1),
        reference=Config("ours: Pool(n_jobs=2)", "ours Pool", p(peers.latency_ours, n_jobs=2)),
        peers=[
            Config("multiprocessing.Pool(2).imap(chunksize=1)", "mp.Pool.imap(1)",
                   p(peers.latency_mp_imap, n_jobs=2), target=p50_at_most("Pool.imap(1)")),
            Config("mpire WorkerPool(2).imap", "mpire imap", p(peers.latency_mpire, n_jobs=2)),
        ],
        repeat_factor=0.4,
    )

    big = _big_items(quick)
    # all three import this module; the Ray rows come last (see ray_rows' docstring)
    from . import observability, ray_rows, worker_memory

    return [square_processes, caller_cpu, square_generator, square_threads, pqdm_bar, journal, sleep_threads,
            mixed, mixed_short, cpu_bound, memory, startup, one_item, latency_slow, latency_bursty, *big,
            *worker_memory.workloads(quick), *observability.workloads(quick), *ray_rows.workloads(quick),
            *_async_rows(quick)]


def _async_rows(quick: bool) -> list[Workload]:
    """Coroutine workers against a local HTTP server with 50 ms latency (``benchmarks.asyncio_io``),
    the rate limit measured from the server's timestamps, and ``async for`` over a CPU-bound map."""
    p = functools.partial
    io_n = 1_000 if quick else 5_000
    width = asyncio_io.CONCURRENCY

    def ideal(k: int) -> float:
        return k * asyncio_io.DELAY / width

    def http(name: str, where: str, **options: Any) -> Workload:
        threads = ", use_threads=True" if options else ""
        return Workload(
            name=name,
            title=(f"{io_n:,} HTTP requests to a local server with 50 ms latency, {where} "
                   f"(ideal {ideal(io_n):.2f} s = {io_n:,} x 50 ms / {width})"),
            kind="ideal",
            items=io_n,
            make_input=asyncio_io.paths,
            expected=asyncio_io.expected,
            ideal=ideal,
            reference=Config(f"ours: Pool(Session(), n_jobs=2, concurrency=128{threads})",
                             "ours 2 x 128", p(asyncio_io.ours_http, n_jobs=2, concurrency=128, **options),
                             target=Target("<= 1.3 x ideal", "<=", 1.3),
                             note="a @delayed_init keep-alive session per worker"),
            peers=[
                Config("asyncio.Semaphore(256) + gather, by hand", "asyncio gather",
                       asyncio_io.asyncio_gather_http, note="one keep-alive session"),
                Config("multiprocessing.pool.ThreadPool(256).map, http.client", "ThreadPool(256)",
                       asyncio_io.threadpool_http, note="a keep-alive connection per thread"),
            ],
            prepare=asyncio_io.start_server,
            repeat_factor=0.6,
        )

    seconds = 3.0 if quick else 10.0
    rate = Workload(
        name="rate-limit",
        title=(f"max_per_second=100 over {seconds:g} s: requests started, from the server's timestamps "
               "(2 thread workers x 16 coroutines, an endless input)"),
        kind="rate",
        items=int(100 * seconds),
        reference=Config("ours: items started in the first "
                         f"{seconds:g} s", "ours, started", (100.0, seconds),
                         target=Target(f"{0.95 * 100 * seconds:,.0f} to {100 * seconds + 1:,.0f}", "pace",
                                       100 * seconds)),
        # Starts are at most rate x 1 s + 1 = 101 in any second (tests/test_async.py checks the
        # tasks' own start times); the server sees them a request's transit later, which varies
        # by milliseconds on a loaded machine: one more is allowed here for that.
        peers=[Config("ours: most started in any 1 s window", "ours, max in 1 s", None,
                      target=Target("<= 102", "<=", 102))],
        prepare=asyncio_io.start_server,
    )

    async_for = Workload(
        name="async-for",
        title=f"{200_000 if not quick else 20_000:,} x x*x, processes, 2 workers: async for vs for",
        kind="throughput",
        items=20_000 if quick else 200_000,
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: async for over Pool(n_jobs=2), in asyncio.run", "ours async for",
                         p(asyncio_io.ours_async_for, n_jobs=2)),
        peers=[Config("ours: for over Pool(n_jobs=2)", "ours for", p(peers.ours_pool, n_jobs=2),
                      target=faster_than(0.8), note="async for / for >= 0.8")],
        repeat_factor=6.0,
    )

    return [http("http-threads", "2 thread workers x 128 coroutines", use_threads=True),
            http("http-processes", "2 process workers x 128 coroutines"), rate, async_for]


def _big_items(quick: bool) -> list[Workload]:
    """Large items through 2 workers, a generator as input: wall time and peak RSS, every run in a
    fresh child process (``benchmarks.bigitems``). A Config's ``run`` is a runner name there."""
    n_bytes = 200 if quick else 2_000
    n_arrays = 40 if quick else 500
    kinds = [
        ("big-bytes-len", "bytes-len", n_bytes, "x 1 MiB bytes in, len out", 1.0),
        ("big-bytes-echo", "bytes-echo", n_bytes, "x 1 MiB bytes in, 1 MiB out (reversed)", 1.0),
        ("big-numpy", "numpy", n_arrays, "x 8 MiB float64 NumPy arrays in, array out (negated)", 1.5),
    ]
    #: big-bytes-len: a tighter bound on the caller, and ours/this >= 1 against every peer
    strict = "big-bytes-len"
    out = []
    for name, data, items, what, imap_target in kinds:
        every_peer = faster_than(1.0) if name == strict else None
        out.append(Workload(
            name=name,
            title=f"{items:,} {what}, generator input, processes, 2 workers: time, caller and worker RSS",
            kind="big",
            items=items,
            data=data,
            reference=Config("ours: Pool(n_jobs=2)", "ours Pool", "ours",
                             target=caller_growth_at_most(64 if name == strict else 128)),
            peers=[
                Config("multiprocessing.Pool(2).imap(chunksize=1)", "mp.Pool.imap(1)", "mp_imap",
                       target=faster_than(imap_target)),
                Config("ProcessPoolExecutor(2).map", "PPE.map", "cf_map", note="submits every item up front",
                       target=every_peer),
                Config("mpire WorkerPool(2).imap", "mpire imap", "mpire", target=every_peer),
                Config("joblib Parallel(2, return_as='generator')", "joblib", "joblib",
                       note="memmaps arrays over 1 MB" if data == "numpy" else "", target=every_peer),
            ],
            repeat_factor=0.4,
        ))
    for name, data, items, what, _ in kinds:
        out.append(Workload(
            name=f"{name}-threads",
            title=f"{items:,} {what}, generator input, threads, 2 workers: time and caller RSS",
            kind="big",
            items=items,
            data=data,
            reference=Config("ours: Pool(n_jobs=2, use_threads=True)", "ours Pool threads", "ours_threads",
                             target=caller_growth_at_most(128)),
            peers=[
                Config("ThreadPool(2).imap(chunksize=1)", "ThreadPool.imap(1)", "thread_pool_imap"),
                Config("ThreadPoolExecutor(2).map", "TPE.map", "tpe_map", note="submits every item up front"),
            ],
            repeat_factor=0.4,
        ))
    return out
