"""The Ray rows: ``Pool(backend='ray')`` against ``ray.util.ActorPool`` and plain ``@ray.remote`` tasks.

All of them run on one local Ray with 2 CPUs, started by the first Ray row (no dashboard, a small
object store) and left up for the rest of the benchmark process; these rows come last, so no other
row forks a process while Ray's threads run. Without Ray installed the rows report an error and
the others are unaffected.

Starting an actor means starting a Python process in Ray (about 0.3-1 s here): the throughput and
the mixed rows measure runs on actors started beforehand (ours: a pool inside ``with``, kept across
runs; ActorPool: the same actors for every run), and the start-up row measures the start itself.
"""

from __future__ import annotations

import functools
import os
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from .workloads import Config, Target, Workload, _mixed, _sized, _squares, sleep_for, square

Task = Callable[[Any], Any]

#: the local Ray of the benchmark: 2 CPUs, as the rows' targets assume
RAY_INIT = {"num_cpus": 2, "include_dashboard": False, "object_store_memory": 200 * 2**20,
            "log_to_driver": False}


def ensure_ray() -> Any:
    """The ``ray`` module, with a local Ray of 2 CPUs running in this process."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray

    if not ray.is_initialized():
        ray.init(**RAY_INIT)
    return ray


# -- runners -----------------------------------------------------------------------------------------


_WARM: dict[Any, Any] = {}


def ours_ray(task: Task, data: Iterable[Any], *, n_jobs: int, **options: Any) -> list[Any]:
    """A run on a pool whose actors are up (started by the warm-up run, kept inside ``with``)."""
    ensure_ray()
    from mtasklite_like import Pool

    key = ("ours", task, n_jobs, tuple(sorted(options.items())))
    pool = _WARM.get(key)
    if pool is None:
        pool = _WARM[key] = Pool(task, n_jobs, backend="ray", **options).__enter__()
    return list(pool(data))


def close_warm() -> None:
    """Kill the peers' actors kept between runs (ours stay up for the workload's later pairs)."""
    ray = ensure_ray()
    for key, held in list(_WARM.items()):
        if key[0] == "actors":
            for actor in held:
                ray.kill(actor)
            del _WARM[key]


def close_all() -> None:
    """Close every pool and kill every actor kept between runs (at the end of the benchmark)."""
    close_warm()
    for key, pool in list(_WARM.items()):
        if key[0] == "ours":
            pool.__exit__(None, None, None)
        del _WARM[key]


class _Runner:
    """The actor of the ActorPool peer: calls the task on one item per call."""

    def __init__(self, task: Task) -> None:
        self.task = task

    def run(self, x: Any) -> Any:
        return self.task(x)


@functools.lru_cache(maxsize=1)
def _runner_class() -> Any:
    return ensure_ray().remote(_Runner)


def actor_pool(task: Task, data: Iterable[Any], *, n_jobs: int) -> list[Any]:
    """``ray.util.ActorPool(...).map``: ordered, one task per item (it reads the input eagerly)."""
    ensure_ray()
    from ray.util import ActorPool

    key = ("actors", task, n_jobs)
    actors = _WARM.get(key)
    if actors is None:
        actors = _WARM[key] = [_runner_class().remote(task) for _ in range(n_jobs)]
    return list(ActorPool(actors).map(lambda a, x: a.run.remote(x), data))


def plain_tasks(task: Task, data: Iterable[Any]) -> list[Any]:
    """One ``@ray.remote`` task per item, all submitted, then ``ray.get`` in order."""
    ray = ensure_ray()
    remote = ray.remote(task)
    return list(ray.get([remote.remote(x) for x in data]))


# -- start-up on a running Ray -------------------------------------------------------------------------


def _one(x: int) -> int:
    return x


def startup_ours() -> float:
    ensure_ray()
    from mtasklite_like import Pool

    t0 = time.perf_counter()
    pool = Pool(_one, 2, backend="ray")
    results = pool([1])
    first = next(results)
    elapsed = time.perf_counter() - t0
    results.close()
    pool.close()
    assert first == 1
    return elapsed


def startup_actor_pool() -> float:
    ray = ensure_ray()
    from ray.util import ActorPool

    t0 = time.perf_counter()
    actors = [_runner_class().remote(_one) for _ in range(2)]
    first = next(ActorPool(actors).map(lambda a, x: a.run.remote(x), [1]))
    elapsed = time.perf_counter() - t0
    for actor in actors:
        ray.kill(actor)
    assert first == 1
    return elapsed


def startup_task() -> float:
    ray = ensure_ray()
    t0 = time.perf_counter()
    first = ray.get(ray.remote(_one).remote(1))
    elapsed = time.perf_counter() - t0
    assert first == 1
    return elapsed


# -- an actor killed mid-run ---------------------------------------------------------------------------

_DEATH_ITEMS = 60
_KILL_AFTER = 10


def _slow(x: int) -> int:
    time.sleep(0.02)
    return x * x


def death_ours() -> float:
    """Seconds from SIGKILL of an actor mid-run to the ``WorkerDiedError`` that names its item."""
    ensure_ray()
    from mtasklite_like import Pool, WorkerDiedError

    pool = Pool(_slow, 2, backend="ray", chunk_size=1, join_timeout=0.1)
    killed_at = 0.0
    try:
        for k, _ in enumerate(pool(range(_DEATH_ITEMS)), start=1):
            if k == _KILL_AFTER:
                killed_at = time.perf_counter()
                os.kill(pool.worker_pids[0] or 0, signal.SIGKILL)
    except WorkerDiedError as exc:
        elapsed = time.perf_counter() - killed_at
        assert exc.indices, exc
        return elapsed
    raise AssertionError("the death was not reported")


def death_ours_restart() -> float:
    """The same with ``on_worker_death='restart', retries=1``: seconds from the kill to the end of
    the run, which must have every result (nothing lost)."""
    ensure_ray()
    from mtasklite_like import Pool

    pool = Pool(_slow, 2, backend="ray", chunk_size=1, on_worker_death="restart", retries=1)
    killed_at = 0.0
    out = []
    for r in pool(range(_DEATH_ITEMS)):
        out.append(r)
        if len(out) == _KILL_AFTER:
            killed_at = time.perf_counter()
            os.kill(pool.worker_pids[0] or 0, signal.SIGKILL)
    elapsed = time.perf_counter() - killed_at
    assert out == [_slow(x) for x in range(_DEATH_ITEMS)] or out == [x * x for x in range(_DEATH_ITEMS)]
    return elapsed


def death_actor_pool() -> float:
    """``ActorPool.map`` with an actor killed by ``ray.kill`` mid-run: seconds to its error."""
    ray = ensure_ray()
    from ray.util import ActorPool

    actors = [_runner_class().remote(_slow) for _ in range(2)]
    killed_at = 0.0
    try:
        for k, _ in enumerate(ActorPool(actors).map(lambda a, x: a.run.remote(x), range(_DEATH_ITEMS)), 1):
            if k == _KILL_AFTER:
                killed_at = time.perf_counter()
                ray.kill(actors[0])
    except ray.exceptions.RayActorError:
        return time.perf_counter() - killed_at
    finally:
        for actor in actors:
            ray.kill(actor)
    raise AssertionError("ActorPool did not report the death")


# -- the rows --------------------------------------------------------------------------------------------


def workloads(quick: bool) -> list[Workload]:
    p = functools.partial
    square_n = 20_000 if quick else 200_000
    slow_n = 1_000 if quick else 5_000
    square_ray = Workload(
        name="ray-square",
        title=f"{square_n:,} x x*x, Ray (local, 2 CPUs), sized list, ordered, 2 actors",
        kind="throughput",
        items=square_n,
        task=square,
        make_input=_sized,
        expected=_squares,
        reference=Config("ours: Pool(n_jobs=2, backend='ray')", "ours Ray", p(ours_ray, n_jobs=2),
                         target=Target(">= 100k items/s", ">=", 100_000), note="actors already up"),
        peers=[
            Config("ours: Pool(n_jobs=2, backend='ray', chunk_size=1): no batching", "ours chunk_size=1",
                   p(ours_ray, n_jobs=2, chunk_size=1), items=slow_n,
                   note="one item per call: what adaptive batches save", cleanup=close_warm),
            Config("ray.util.ActorPool(2 actors).map, one call per item", "ActorPool",
                   p(actor_pool, n_jobs=2), items=slow_n, note="actors already up", cleanup=close_warm),
            Config("plain @ray.remote tasks, one per item", "ray tasks", plain_tasks, items=slow_n,
                   cleanup=close_warm),
        ],
    )
    mixed_n = 16 if quick else 64
    mixed_ray = Workload(
        name="ray-mixed",
        title=(f"{mixed_n} tasks: every 4th 200 ms, the rest 10 ms; Ray, 2 actors, ordered "
               f"(ideal {sum(_mixed(mixed_n)) / 2:.2f} s)"),
        kind="ideal",
        items=mixed_n,
        task=sleep_for,
        make_input=_mixed,
        expected=_mixed,
        ideal=lambda k: sum(_mixed(k)) / 2,
        reference=Config("ours: Pool(n_jobs=2, backend='ray')", "ours Ray", p(ours_ray, n_jobs=2),
                         target=Target("<= 1.2 x ideal", "<=", 1.2), note="actors already up"),
        peers=[
            Config("ray.util.ActorPool(2 actors).map (ordered)", "ActorPool", p(actor_pool, n_jobs=2),
                   note="actors already up", cleanup=close_warm),
            Config("plain @ray.remote tasks (2 CPUs)", "ray tasks", plain_tasks, cleanup=close_warm),
        ],
        repeat_factor=0.6,
    )
    startup_ray = Workload(
        name="ray-startup",
        title="start-up on a running Ray (local, 2 CPUs), 2 actors: time to the first result of one item",
        kind="startup",
        items=1,
        reference=Config("ours: Pool(n_jobs=2, backend='ray')", "ours Ray", startup_ours,
                         target=Target("<= 1000 ms", "<=", 1000.0)),
        peers=[
            Config("ray.util.ActorPool(2 new actors).map", "ActorPool", startup_actor_pool),
            Config("one plain @ray.remote task", "ray task", startup_task, note="no actor to start"),
        ],
        repeat_factor=1.0,
    )
    death_ray = Workload(
        name="ray-death",
        title=f"an actor SIGKILLed after {_KILL_AFTER} of {_DEATH_ITEMS} items (20 ms each), Ray, 2 actors: "
              "time from the kill to its report",
        kind="startup",
        items=1,
        reference=Config("ours: Pool(n_jobs=2, backend='ray'): WorkerDiedError naming the item",
                         "ours Ray", death_ours, target=Target("<= 2000 ms", "<=", 2000.0)),
        peers=[
            Config("ours: on_worker_death='restart', retries=1: kill to the last result, all results "
                   "right", "ours restart", death_ours_restart, note="nothing lost"),
            Config("ray.util.ActorPool(2 actors).map, actor ray.kill()ed", "ActorPool", death_actor_pool),
        ],
        repeat_factor=0.6,
    )
    return [square_ray, mixed_ray, startup_ray, death_ray]
