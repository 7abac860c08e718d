"""Progress reported from inside a task (``mtasklite_like.progress``): what the caller reads back
(``partial``) on every backend, coroutine workers' sums, stale fractions, and progress bars.

Tasks never sleep and hope: each one that must stay in flight waits for a file the test creates
once it has seen what it looks for (or, in the caller's thread, for what the heartbeat saw), with
generous deadlines.
"""

from __future__ import annotations

import asyncio
import io
import math
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import tqdm

import mtasklite_like
from mtasklite_like import Pool, progress

pytestmark = pytest.mark.timeout(120)

DEADLINE = 60.0


def _until(condition: Callable[[], bool], what: str) -> None:
    """Wait until ``condition()`` holds (polled), or fail saying ``what`` was awaited."""
    deadline = time.monotonic() + DEADLINE
    while not condition():
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {DEADLINE} s for {what}")
        time.sleep(0.005)


def _wait_for_file(path: str) -> None:
    _until(lambda: os.path.exists(path), f"the file {path}")


def report_then_wait(job: tuple[float, str | None, str | None]) -> float:
    """Report ``fraction``, then (with a ``release`` file named) stay in flight until it exists;
    ``started`` (a file) says the item has begun."""
    fraction, release, started = job
    if started is not None:
        Path(started).touch()
    if fraction >= 0:
        progress(fraction)
    if release is not None:
        _wait_for_file(release)
    return fraction


async def report_then_wait_async(job: tuple[float, str]) -> float:
    fraction, release = job
    progress(fraction)
    deadline = time.monotonic() + DEADLINE
    while not os.path.exists(release):
        assert time.monotonic() < deadline, f"waited {DEADLINE} s for {release}"
        await asyncio.sleep(0.005)
    return fraction


class _Consumer:
    """Iterates ``results`` in a thread of its own, so the test can look at the run meanwhile."""

    def __init__(self, results: Any) -> None:
        self.results = results
        self.out: list[Any] = []
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._consume, daemon=True)
        self.thread.start()

    def _consume(self) -> None:
        try:
            for value in self.results:
                self.out.append(value)
        except BaseException as exc:
            self.error = exc

    def join(self) -> list[Any]:
        self.thread.join(DEADLINE)
        assert not self.thread.is_alive()
        if self.error is not None:
            raise self.error
        return self.out


WORKERS = [
    pytest.param({"backend": "processes"}, id="processes"),
    pytest.param({"backend": "threads"}, id="threads"),
]


# -- what the caller reads ------------------------------------------------------------------------


@pytest.mark.parametrize("options", WORKERS)
def test_a_fraction_reported_by_a_running_task_is_read_by_the_caller(tmp_path, options):
    release = str(tmp_path / "release")
    with Pool(report_then_wait, 1, **options) as pool:
        results = pool([(0.5, release, None)])
        assert results.partial == 0.0  # not started
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.5, "the task's 0.5")
        Path(release).touch()
        assert consumer.join() == [0.5]
        assert results.partial == 0.0


@pytest.mark.parametrize("options", WORKERS)
def test_the_fraction_of_a_finished_item_is_not_counted(tmp_path, options):
    """The next item of the same worker runs without reporting: the worker's last fraction, left
    by the item before, no longer counts."""
    first, second, started = (str(tmp_path / n) for n in ("first", "second", "started"))
    with Pool(report_then_wait, 1, chunk_size=2, **options) as pool:
        results = pool([(0.5, first, None), (-1.0, second, started)])
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.5, "the first item's 0.5")
        Path(first).touch()
        _until(lambda: os.path.exists(started), "the second item to start")
        assert results.partial == 0.0
        Path(second).touch()
        assert consumer.join() == [0.5, -1.0]


def _blocked_input(release: str):
    yield (0.75, None, None)  # reports, and ends at once
    _wait_for_file(release)
    yield (0.0, None, None)


@pytest.mark.parametrize("options", WORKERS)
def test_an_idle_worker_counts_nothing(tmp_path, options):
    """Its last item reported 0.75 and ended, and its result was taken: while the worker waits for
    more input, nothing is in flight."""
    release = str(tmp_path / "release")
    with Pool(report_then_wait, 1, **options) as pool:
        results = pool(_blocked_input(release))
        consumer = _Consumer(results)
        _until(lambda: consumer.out == [0.75], "the first result")
        assert results.partial == 0.0
        Path(release).touch()
        assert consumer.join() == [0.75, 0.0]


@pytest.mark.parametrize("options", WORKERS)
def test_workers_fractions_add_up(tmp_path, options):
    release = str(tmp_path / "release")
    started = [str(tmp_path / f"started-{i}") for i in range(2)]
    with Pool(report_then_wait, 2, chunk_size=1, **options) as pool:
        results = pool([(0.25, release, started[0]), (0.5, release, started[1])])
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.75, "0.25 + 0.5 from the two workers")
        Path(release).touch()
        assert consumer.join() == [0.25, 0.5]


@pytest.mark.parametrize("options", WORKERS)
def test_a_coroutine_worker_reports_the_sum_over_its_items_in_flight(tmp_path, options):
    releases = [str(tmp_path / f"release-{i}") for i in range(3)]
    jobs = [(0.25, releases[0]), (0.5, releases[1]), (0.125, releases[2])]
    with Pool(report_then_wait_async, 1, concurrency=4, chunk_size=1, **options) as pool:
        results = pool(jobs)
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.875, "0.25 + 0.5 + 0.125 from one worker")
        Path(releases[0]).touch()  # its item ends: its fraction goes, the others' stay
        _until(lambda: consumer.out == [0.25], "the first result")
        assert results.partial == 0.625
        Path(releases[1]).touch()
        Path(releases[2]).touch()
        assert consumer.join() == [0.25, 0.5, 0.125]
        assert results.partial == 0.0


async def report_from_a_thread_then_wait(job: tuple[str, str]) -> bool:
    reported, release = job
    await asyncio.to_thread(progress, 0.5)
    Path(reported).touch()
    while not os.path.exists(release):
        await asyncio.sleep(0.005)
    return True


@pytest.mark.parametrize("options", WORKERS)
def test_a_coroutine_workers_sum_ignores_threads_its_items_start(tmp_path, options):
    reported, release = str(tmp_path / "reported"), str(tmp_path / "release")
    with Pool(report_from_a_thread_then_wait, 1, concurrency=2, **options) as pool:
        results = pool([(reported, release)])
        consumer = _Consumer(results)
        _until(lambda: os.path.exists(reported), "the report from a thread")
        assert results.partial == 0.0
        Path(release).touch()
        assert consumer.join() == [True]


def test_in_the_callers_thread_a_reporting_task_drives_the_heartbeat():
    """Under ``n_jobs=1`` the task runs in the caller, which cannot call the heartbeat meanwhile:
    the task's reports do, and the heartbeat reads the task's fraction."""
    seen: list[float] = []

    def report_until_seen(x: float) -> float:
        deadline = time.monotonic() + DEADLINE
        while x not in seen:
            assert time.monotonic() < deadline, "the heartbeat never saw the fraction"
            progress(x)
            time.sleep(0.005)
        return x

    with Pool(report_until_seen, 1) as pool:
        results = pool([0.5, 0.25])
        results.heartbeat = lambda: seen.append(results.partial)
        assert list(results) == [0.5, 0.25]
    assert 0.5 in seen and 0.25 in seen


def test_a_journaled_run_reads_the_same(tmp_path):
    release = str(tmp_path / "release")
    with Pool(report_then_wait, 1, backend="threads", journal=str(tmp_path / "journal")) as pool:
        results = pool([(0.5, release, None)])
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.5, "the task's 0.5")
        Path(release).touch()
        assert consumer.join() == [0.5]


# -- the call itself --------------------------------------------------------------------------------


def test_outside_a_worker_it_does_nothing():
    assert mtasklite_like.progress is progress
    assert progress(0.5) is None
    with Pool(report_then_wait, 1) as pool:  # the caller is the worker while the run lasts
        assert list(pool([(0.25, None, None)])) == [0.25]
        slots = pool._workers.backend._context.slots
        before = list(slots)
        progress(0.75)  # the caller again, not a worker
        assert list(slots) == before


def report_twice(job: tuple[Any, str, str]) -> bool:
    """Report 0.5, wait for ``then``, report ``value``, wait for ``release``."""
    value, then, release = job
    progress(0.5)
    _wait_for_file(then)
    progress(value)
    _wait_for_file(release)
    return True


@pytest.mark.parametrize(
    ("value", "counted"),
    [(1.5, 1.0), (-2, 0.0), (math.nan, 0.0), (-math.inf, 0.0), (math.inf, 1.0), (1, 1.0)],
)
def test_fractions_out_of_range_are_clamped(tmp_path, value, counted):
    then, release = str(tmp_path / "then"), str(tmp_path / "release")
    with Pool(report_twice, 1, backend="threads") as pool:
        results = pool([(value, then, release)])
        consumer = _Consumer(results)
        _until(lambda: results.partial == 0.5, "the first report")
        Path(then).touch()
        _until(lambda: results.partial == counted, f"{value} counted as {counted}")
        Path(release).touch()
        assert consumer.join() == [True]


def test_a_fraction_that_is_not_a_number_is_refused(tmp_path):
    with pytest.raises(TypeError, match="from 0 to 1, not str"):
        progress("half")  # type: ignore[arg-type]
    with Pool(report_twice, 1, backend="threads") as pool:
        (tmp_path / "then").touch()
        with pytest.raises(TypeError, match="not NoneType"):
            list(pool([(None, str(tmp_path / "then"), "unused")]))


# -- progress bars --------------------------------------------------------------------------------


class _RecordingBar(tqdm.tqdm):
    """Remembers every value the bar was drawn with (and the tasks, in threads, can look)."""

    shown: list[float] = []
    last: _RecordingBar | None = None

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        type(self).last = self

    def refresh(self, *args: Any, **kwargs: Any) -> Any:
        type(self).shown.append(self.n)
        return super().refresh(*args, **kwargs)


def _wait_until_drawn_with_a_fraction(x: int) -> int:
    """Item 2 reports 0.5 (again and again: in the caller's thread each report may redraw the bar)
    until the bar was drawn with a fraction; the others end at once."""
    if x == 2:
        deadline = time.monotonic() + DEADLINE
        while not any(v != int(v) for v in _RecordingBar.shown):
            assert time.monotonic() < deadline, "the bar was never drawn with a fraction"
            progress(0.5)
            time.sleep(0.005)
    return x


@pytest.mark.parametrize("n_jobs", [1, 2], ids=["in-the-caller", "threads"])
@pytest.mark.parametrize("shape", ["lazy", "eager"])
def test_a_pqdm_bar_moves_by_fractions_and_ends_at_its_total(n_jobs, shape):
    from mtasklite_like.pqdm.threads import pqdm as eager_pqdm
    from mtasklite_like.threads import pqdm as lazy_pqdm

    _RecordingBar.shown = []
    options: dict[str, Any] = {"tqdm_class": _RecordingBar, "file": io.StringIO(), "mininterval": 0}
    if shape == "lazy":
        assert list(lazy_pqdm(range(4), _wait_until_drawn_with_a_fraction, n_jobs, **options)) == [0, 1, 2, 3]
    else:
        assert eager_pqdm(range(4), _wait_until_drawn_with_a_fraction, n_jobs, **options) == [0, 1, 2, 3]
    fractional = [v for v in _RecordingBar.shown if v != int(v)]
    assert fractional and all(v % 1 == 0.5 for v in fractional)  # 2.5 (or 0.5, 1.5: results not yet taken)
    bar = _RecordingBar.last
    assert bar is not None and bar.n == 4 and type(bar.n) is int
