"""One runner per configuration: ``runner(task, data) -> list of results``.

Each runner creates its pool, maps ``task`` over ``data``, consumes every result and shuts the
pool down, so the time measured around it is what a caller waits for a one-shot parallel map:
start-up, the map itself and tear-down. Options are bound with ``functools.partial`` in
``workloads``. Peers keep their own defaults (start method, chunking) unless a workload names an
option; the start methods in use are recorded in ``benchmark.json``.
"""

from __future__ import annotations

import io
import multiprocessing
import multiprocessing.pool
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from typing import Any

Task = Callable[[Any], Any]


# -- ours ----------------------------------------------------------------------------------------


def ours_pool(task: Task, data: Iterable[Any], *, n_jobs: int, **options: Any) -> list[Any]:
    """``mtasklite_like.Pool`` with the given options (defaults otherwise), used in ``with``."""
    from mtasklite_like import Pool

    with Pool(task, n_jobs=n_jobs, **options) as pool:
        return list(pool(data))


_journal_dirs: list[str] = []


def ours_journal(task: Task, data: Iterable[Any], *, n_jobs: int, **options: Any) -> list[Any]:
    """``mtasklite_like.Pool`` with a journal in a fresh run directory (a first run: every result
    is pickled into the journal before it is handed over). The directories are removed by
    :func:`remove_journals` after the measurements, as deleting a file is no part of a run."""
    import tempfile

    from mtasklite_like import Pool

    where = tempfile.mkdtemp(prefix="mtl-bench-journal-")
    _journal_dirs.append(where)
    with Pool(task, n_jobs=n_jobs, journal=f"{where}/run", **options) as pool:
        return list(pool(data))


def remove_journals() -> None:
    import shutil

    while _journal_dirs:
        shutil.rmtree(_journal_dirs.pop(), ignore_errors=True)


def ours_pqdm(
    task: Task, data: Iterable[Any], *, n_jobs: int, bar: bool, use_threads: bool = False
) -> list[Any]:
    """Our ``pqdm`` drop-in (``mtasklite_like.pqdm``, eager as pqdm's: it returns a list): bar
    disabled, or enabled and writing to an ``io.StringIO``."""
    if use_threads:
        from mtasklite_like.pqdm.threads import pqdm
    else:
        from mtasklite_like.pqdm.processes import pqdm
    bar_options: dict[str, Any] = {"file": io.StringIO()} if bar else {"disable": True}
    return list(pqdm(data, task, n_jobs, **bar_options))


# -- the standard library -----------------------------------------------------------------------


def serial(task: Task, data: Iterable[Any]) -> list[Any]:
    """A list comprehension in the caller: the baseline every pool has to beat."""
    return [task(x) for x in data]


def mp_map(task: Task, data: Iterable[Any], *, n_jobs: int, chunksize: int | None = None) -> list[Any]:
    """``multiprocessing.Pool.map``: eager, the whole input is turned into chunks up front."""
    with multiprocessing.Pool(n_jobs) as pool:
        return pool.map(task, data, chunksize)


def mp_map_halves(task: Task, data: list[Any], *, n_jobs: int) -> list[Any]:
    """``multiprocessing.Pool.map`` with one chunk per worker: next to no messaging, so it shows
    what the processes themselves get out of the machine."""
    with multiprocessing.Pool(n_jobs) as pool:
        return pool.map(task, data, chunksize=max(1, -(-len(data) // n_jobs)))


def mp_imap(task: Task, data: Iterable[Any], *, n_jobs: int, chunksize: int) -> list[Any]:
    """``multiprocessing.Pool.imap``: lazy results in order, fixed chunks."""
    with multiprocessing.Pool(n_jobs) as pool:
        return list(pool.imap(task, data, chunksize))


def cf_process_map(task: Task, data: Iterable[Any], *, n_jobs: int, chunksize: int) -> list[Any]:
    """``concurrent.futures.ProcessPoolExecutor.map``: submits every chunk up front."""
    with ProcessPoolExecutor(n_jobs) as ex:
        return list(ex.map(task, data, chunksize=chunksize))


def thread_pool_imap(task: Task, data: Iterable[Any], *, n_jobs: int, chunksize: int) -> list[Any]:
    """``multiprocessing.pool.ThreadPool.imap``."""
    with multiprocessing.pool.ThreadPool(n_jobs) as pool:
        return list(pool.imap(task, data, chunksize))


def cf_thread_map(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``concurrent.futures.ThreadPoolExecutor.map``: one future per item."""
    with ThreadPoolExecutor(n_jobs) as ex:
        return list(ex.map(task, data))


# -- third-party peers --------------------------------------------------------------------------


def joblib_generator(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``joblib.Parallel(n_jobs, return_as='generator')`` (loky backend, automatic batching).

    joblib keeps its loky workers alive between calls (a reusable executor), so after the
    warm-up a call does not pay for starting processes; :func:`shutdown_joblib` stops them.
    """
    from joblib import Parallel, delayed

    return list(Parallel(n_jobs=n_jobs, return_as="generator")(delayed(task)(x) for x in data))


def shutdown_joblib() -> None:
    """Stop joblib's reusable loky workers, so they do not linger through later workloads."""
    try:
        from joblib.externals.loky import get_reusable_executor
    except ImportError:  # pragma: no cover - joblib missing
        return
    get_reusable_executor().shutdown(wait=True)


def mpire_imap(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``mpire.WorkerPool(n_jobs).imap`` with its default chunking."""
    from mpire import WorkerPool

    with WorkerPool(n_jobs=n_jobs) as pool:
        return list(pool.imap(task, data))


def pqdm_processes(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``pqdm.processes.pqdm`` 0.2.0 with ``disable=True`` (one future per item)."""
    from pqdm.processes import pqdm

    return pqdm(data, task, n_jobs, disable=True)


def pqdm_threads(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``pqdm.threads.pqdm`` 0.2.0 with ``disable=True``."""
    from pqdm.threads import pqdm

    return pqdm(data, task, n_jobs, disable=True)


def mtasklite_pool(task: Task, data: Iterable[Any], *, n_jobs: int, use_threads: bool = False) -> list[Any]:
    """``mtasklite.Pool`` 0.3.5 with its defaults (ordered, bounded, chunk_size = n_jobs)."""
    import mtasklite

    with mtasklite.Pool(task, n_jobs=n_jobs, use_threads=use_threads) as pool:
        return list(pool(data))


# -- start-up: time to the first result of a 1-item input; tear-down is not timed -------------------


def _first_result_seconds(start: Callable[[], tuple[Any, Any]], stop: Callable[[Any], None]) -> float:
    """Time ``start()`` (which returns ``(pool, first result)``), then ``stop(pool)`` untimed."""
    t0 = time.perf_counter()
    pool, first = start()
    elapsed = time.perf_counter() - t0
    stop(pool)
    if first != 1:
        raise AssertionError(f"start-up probe returned {first!r}, expected 1")
    return elapsed


def _one(x: int) -> int:
    return x


def startup_ours() -> float:
    from mtasklite_like import Pool

    def start() -> tuple[Any, Any]:
        pool = Pool(_one, n_jobs=2, start_method="fork")
        results = pool([1])
        return (pool, results), next(results)

    def stop(state: Any) -> None:
        pool, results = state
        results.close()
        pool.close()

    return _first_result_seconds(start, stop)


def startup_mp_pool() -> float:
    def start() -> tuple[Any, Any]:
        pool = multiprocessing.get_context("fork").Pool(2)
        return pool, next(pool.imap(_one, [1]))

    def stop(pool: Any) -> None:
        pool.terminate()
        pool.join()

    return _first_result_seconds(start, stop)


def startup_cf_process() -> float:
    def start() -> tuple[Any, Any]:
        ex = ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("fork"))
        return ex, next(ex.map(_one, [1]))

    return _first_result_seconds(start, lambda ex: ex.shutdown(wait=True))


def startup_mpire() -> float:
    from mpire import WorkerPool

    def start() -> tuple[Any, Any]:
        pool = WorkerPool(n_jobs=2, start_method="fork")
        return pool, next(iter(pool.imap(_one, [1])))

    return _first_result_seconds(start, lambda pool: pool.terminate())


def startup_mtasklite() -> float:
    import mtasklite

    def start() -> tuple[Any, Any]:
        pool = mtasklite.Pool(_one, n_jobs=2)
        return pool, next(pool([1]))

    return _first_result_seconds(start, lambda pool: pool.__exit__(None, None, None))


# -- latency: from an item leaving a streaming source to its result reaching the consumer -------------


def stamped_task(item: tuple[int, float]) -> tuple[int, float]:
    """A 1 ms task that passes the item's departure time through."""
    time.sleep(0.001)
    return item


def slow_source(n: int, every: float) -> Iterable[tuple[int, float]]:
    """One item every ``every`` seconds, stamped with the moment it leaves the source."""
    for i in range(n):
        time.sleep(every)
        yield i, time.perf_counter()


def bursty_source(n: int, burst: int, pause: float) -> Iterable[tuple[int, float]]:
    """Bursts of ``burst`` items at once, ``pause`` seconds apart."""
    for i in range(n):
        if i % burst == 0:
            time.sleep(pause)
        yield i, time.perf_counter()


def _latencies(results: Iterable[tuple[int, float]], n: int, start: float) -> tuple[list[float], float]:
    """Seconds from each item's departure to its result's arrival (arrival order), and seconds from
    ``start`` (the pool's creation) to the first result."""
    out = []
    first = None
    for _, left in results:
        now = time.perf_counter()
        if first is None:
            first = now - start
        out.append(now - left)
    if len(out) != n or first is None:
        raise AssertionError(f"{len(out)} results for {n} items")
    return out, first


def latency_ours(source: Iterable[Any], n: int, *, n_jobs: int, **options: Any) -> tuple[list[float], float]:
    from mtasklite_like import Pool

    start = time.perf_counter()
    with Pool(stamped_task, n_jobs=n_jobs, **options) as pool:
        return _latencies(pool(source), n, start)


def latency_mp_imap(source: Iterable[Any], n: int, *, n_jobs: int) -> tuple[list[float], float]:
    start = time.perf_counter()
    with multiprocessing.Pool(n_jobs) as pool:
        return _latencies(pool.imap(stamped_task, source, 1), n, start)


def latency_mpire(source: Iterable[Any], n: int, *, n_jobs: int) -> tuple[list[float], float]:
    from mpire import WorkerPool

    start = time.perf_counter()
    with WorkerPool(n_jobs=n_jobs) as pool:
        # mpire unpacks a tuple item into arguments: wrap each item in a 1-tuple.
        return _latencies(pool.imap(stamped_task, ((x,) for x in source)), n, start)


# -- one item through a warm pool: seconds per call, the pool kept open between calls ----------------

#: calls made on a fresh pool before the timed ones: they start its workers and warm it up
ONE_ITEM_WARMUP = 20


def _one_item_calls(call: Callable[[Any], Any], task: Task, warmup: int, calls: int) -> list[float]:
    """Time ``call(x)`` for ``warmup + calls`` successive items (the first ``warmup`` not kept);
    each result is checked after its clock has stopped."""
    out = []
    for i in range(warmup + calls):
        start = time.perf_counter()
        result = call(i)
        took = time.perf_counter() - start
        if result != task(i):
            raise AssertionError(f"one-item call returned {result!r} for {i!r}, expected {task(i)!r}")
        if i >= warmup:
            out.append(took)
    return out


def one_item_ours(task: Task, warmup: int, calls: int, *, n_jobs: int) -> list[float]:
    """``list(pool([x]))`` on a ``mtasklite_like.Pool`` kept open by ``with`` (its workers stay up
    between runs)."""
    from mtasklite_like import Pool

    with Pool(task, n_jobs=n_jobs) as pool:

        def call(x: Any) -> Any:
            [result] = pool([x])  # runs the iterator to its end, as list(pool([x])) does
            return result

        return _one_item_calls(call, task, warmup, calls)


def one_item_mp_apply(task: Task, warmup: int, calls: int, *, n_jobs: int) -> list[float]:
    """``multiprocessing.Pool.apply(task, (x,))`` on a pool kept open."""
    with multiprocessing.Pool(n_jobs) as pool:
        return _one_item_calls(lambda x: pool.apply(task, (x,)), task, warmup, calls)


def one_item_cf_submit(task: Task, warmup: int, calls: int, *, n_jobs: int) -> list[float]:
    """``ProcessPoolExecutor.submit(task, x).result()`` on an executor kept open."""
    with ProcessPoolExecutor(n_jobs) as ex:
        return _one_item_calls(lambda x: ex.submit(task, x).result(), task, warmup, calls)


def one_item_mpire_apply(task: Task, warmup: int, calls: int, *, n_jobs: int) -> list[float]:
    """``mpire.WorkerPool.apply(task, (x,))`` on a pool kept open."""
    from mpire.pool import WorkerPool  # where it is defined: mypy sees no re-export in mpire

    with WorkerPool(n_jobs=n_jobs) as pool:
        return _one_item_calls(lambda x: pool.apply(task, (x,)), task, warmup, calls)
