"""Statistics of runs and pools: they add up, and they say what limited a run."""

from __future__ import annotations

import json
import time

import pytest

from mtasklite_like import Pool, RunStats
from tests.fake_backend import FakeBackend, Step, run_step

pytestmark = pytest.mark.timeout(60)


def nap(x: int) -> int:
    time.sleep(0.02)
    return x


def instant(x: int) -> int:
    return x


def slow_input(n: int):
    for i in range(n):
        time.sleep(0.01)
        yield i


@pytest.mark.parametrize("use_threads", [False, True])
def test_per_worker_figures_add_up_to_the_run(use_threads):
    results = Pool(nap, 2, use_threads=use_threads, chunk_size=1)(range(60))
    assert list(results) == list(range(60))
    stats = results.stats()
    assert stats.items == 60 and stats.failed == 0
    assert sum(w.items for w in stats.workers) == 60
    wall = stats.wall_s
    for w in stats.workers:
        # Measured in two places (tasks and waits by the worker, start-up and the wait after its
        # last batch by the caller): together they make the run's wall time.
        assert w.busy_s + w.idle_s + w.start_s == pytest.approx(wall, rel=0.05)
        assert w.busy_s >= 0.02 * w.items
    data = json.loads(json.dumps(stats.to_dict()))
    required = {"items", "failed", "busy_s", "idle_s", "init_s"}
    assert [set(w) >= required for w in data["workers"]] == [True] * 2


def test_a_slow_task_is_named_the_bottleneck():
    results = Pool(nap, 2, use_threads=True)(range(60))
    list(results)
    assert "the task is the bottleneck" in results.stats().verdict()


def test_a_slow_input_is_named_the_bottleneck():
    results = Pool(instant, 2, use_threads=True)(slow_input(40))
    list(results)
    verdict = results.stats().verdict()
    assert "waiting for input: the input is the bottleneck" in verdict, str(results.stats())


def test_a_slow_consumer_is_named_the_bottleneck():
    results = Pool(instant, 2, use_threads=True)(range(200))
    for _ in results:
        time.sleep(0.005)
    verdict = results.stats().verdict()
    assert "the consumer is the bottleneck" in verdict, str(results.stats())


def test_failures_retries_and_restarts_are_counted():
    items = [Step(i) for i in range(20)]
    items[3].raises = ValueError("bad")
    items[7].dies = 1
    results = Pool(run_step, 2, backend="fake", exception_behavior="ignore", on_worker_death="restart",
                   retries=1, max_tasks_per_worker=5, chunk_size=1)(items)
    out = list(results)
    assert len(out) == 20
    stats = results.stats()
    assert stats.items == 20 and stats.failed == 1  # item 3 failed twice; item 7's death was retried
    assert stats.retried >= 2
    restarts: dict[str, int] = {}
    for w in stats.workers:
        for reason, count in w.restarts.items():
            restarts[reason] = restarts.get(reason, 0) + count
    assert restarts.get("death") == 1
    assert restarts.get("max_tasks", 0) >= 3
    assert sum(w.failed for w in stats.workers) == 2
    assert FakeBackend.made[-1].replaced


def test_a_pool_adds_its_runs_up():
    with Pool(nap, 2, use_threads=True) as pool:
        first = pool(range(10))
        list(first)
        second = pool(range(30))
        list(second)
        total = pool.stats()
    assert total.runs == 2 and total.items == 40
    assert sum(w.items for w in total.workers) == 40
    assert total.wall_s == pytest.approx(first.stats().wall_s + second.stats().wall_s)


def test_a_pool_adds_up_many_short_runs_and_long_ones():
    # Short runs are added up in groups (and when asked); every one counts, once.
    with Pool(nap, 2, use_threads=True) as pool:
        for i in range(45):
            assert list(pool([i])) == [i]
            if i == 10:
                assert pool.stats().runs == 11
        list(pool(range(200)))  # a longer run is added at once
        total = pool.stats()
        assert pool.stats().items == total.items  # asking twice adds nothing twice
    assert total.runs == 46 and total.items == 245
    assert sum(w.items for w in total.workers) == 245


def test_statistics_print_as_a_table_and_a_line():
    results = Pool(nap, 2, use_threads=True)(range(10))
    list(results)
    stats = results.stats()
    text = str(stats)
    assert text.splitlines()[0] == stats.summary()
    assert "busy s" in text and "all" in text and "workers waited for" in text
    assert isinstance(stats, RunStats)


def test_stats_of_a_run_in_progress():
    results = Pool(nap, 2, use_threads=True)(range(20))
    next(results)
    partial = results.stats()
    assert partial.ended_at is None and partial.wall_s > 0 and partial.items >= 1
    list(results)


@pytest.mark.parametrize("module", ["mtasklite_like.processes", "mtasklite_like.pqdm.threads"])
def test_a_pqdm_bar_prints_the_summary_when_asked(module):
    import importlib
    import io

    pqdm = importlib.import_module(module).pqdm
    out = io.StringIO()
    result = pqdm(range(20), instant, 2, file=out, stats=True)
    assert list(result) == list(range(20))
    lines = [line for line in out.getvalue().splitlines() if "items in" in line]
    assert len(lines) == 1 and lines[0].startswith("20 items in") and "bottleneck" in lines[0]
    quiet = io.StringIO()
    assert list(pqdm(range(20), instant, 2, file=quiet)) == list(range(20))
    assert "items in" not in quiet.getvalue()
    with pytest.raises(TypeError, match="stats must be True or False"):
        pqdm(range(3), instant, 2, stats="yes")


def test_the_command_line_prints_the_summary_and_the_table(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    source = tmp_path / "in.txt"
    source.write_text("".join(f"w{i}\n" for i in range(30)))
    base = [sys.executable, "-m", "mtasklite_like", "map", "builtins:len", str(source),
            "-o", str(tmp_path / "o"), "-j", "2"]
    line = subprocess.run(base, cwd=root, capture_output=True, text=True, timeout=60)
    assert line.returncode == 0, line.stderr
    assert "30 items in" in line.stderr and "busy s" not in line.stderr
    table = subprocess.run([*base, "--stats", "--no-progress"], cwd=root, capture_output=True, text=True,
                           timeout=60)
    assert table.returncode == 0, table.stderr
    assert "30 items in" in table.stderr and "busy s" in table.stderr and "workers waited for" in table.stderr
