"""The demo (``python -m mtasklite_like demo``): its figures, and what it says when the machine is busy.

The load is injected (a reading function of the test's own), never produced: these tests hold on an
idle machine and on a busy one alike.
"""

from __future__ import annotations

import os

import pytest

from mtasklite_like._cli import demo as _demo
from mtasklite_like._cli.demo import LoadReading, LoadWatch

pytestmark = pytest.mark.timeout(180)


def _constant(load: float, cpus: int):
    return lambda: LoadReading(load, cpus)


def test_a_busy_machine_is_named_with_its_load_and_cpus():
    with LoadWatch(2, _constant(3.9, 2), every=0.01) as watch:
        pass
    assert len(watch.readings) >= 2  # before and after the runs, at least
    assert watch.note() == "machine busy: load 3.9 on 2 CPUs"


def test_an_idle_machine_gets_no_note():
    with LoadWatch(2, _constant(0.2, 2), every=0.01) as watch:
        pass
    assert watch.note() is None


def test_a_system_without_a_load_average_gets_no_note():
    with LoadWatch(2, lambda: None, every=0.01) as watch:
        pass
    assert watch.readings == [] and watch.note() is None


def test_the_demos_own_share_of_the_load_is_taken_out():
    # 30 s into the runs, the demo's 2 busy CPUs can account for up to 2 * (1 - e^-0.5) = 0.79 of the
    # 1-minute average: a reading of 0.9 is the demo itself, 1.9 is other work as well.
    watch = LoadWatch(2)
    watch.readings = [(0.0, LoadReading(0.1, 2)), (30.0, LoadReading(0.9, 2))]
    assert watch.note() is None
    watch.readings.append((31.0, LoadReading(1.9, 2)))
    assert watch.note() == "machine busy: load 1.9 on 2 CPUs"


def test_load_before_the_runs_counts_in_full():
    watch = LoadWatch(8)
    watch.readings = [(0.0, LoadReading(1.2, 1)), (2.0, LoadReading(0.3, 1))]
    assert watch.note() == "machine busy: load 1.2 on 1 CPU"


@pytest.mark.parametrize(("others", "cpus", "busy"), [(0.4, 2, False), (0.5, 2, True), (3.9, 16, False),
                                                       (4.0, 16, True), (0.5, 1, True)])
def test_busy_means_a_quarter_of_the_cpus_and_at_least_half_of_one(others, cpus, busy):
    assert _demo.is_busy(others, cpus) is busy


def test_the_default_worker_count_is_the_cpus_this_process_may_use(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    assert _demo._parse_args([]).n_jobs == 3


def _speedup_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(("CPU-bound, ", "I/O-bound, "))]


def test_the_demo_says_next_to_each_figure_that_the_machine_was_busy(capsys):
    assert _demo.main(["--quick", "--no-progress", "--n-jobs", "2"], read=_constant(3.9, 2)) == 0
    out = capsys.readouterr().out
    lines = _speedup_lines(out)
    assert len(lines) == 2, out
    for line in lines:
        assert line.endswith("x  (machine busy: load 3.9 on 2 CPUs)"), line
    assert "Speed-ups are lower than on an idle machine" in out
    assert "Parallel results equal the serial ones." in out


def test_the_demo_on_an_idle_machine_prints_the_figures_alone(capsys):
    assert _demo.main(["--quick", "--no-progress", "--n-jobs", "2"], read=_constant(0.0, 2)) == 0
    out = capsys.readouterr().out
    lines = _speedup_lines(out)
    assert len(lines) == 2 and all(line.endswith("x") for line in lines), out
    assert "machine busy" not in out and "other work kept" not in out


def test_the_demo_says_what_limited_each_run_and_shows_the_statistics(capsys):
    assert _demo.main(["--quick", "--no-progress", "--n-jobs", "2"], read=_constant(0.0, 2)) == 0
    out = capsys.readouterr().out
    verdicts = [line for line in out.splitlines() if line.startswith("  ") and "bottleneck" in line]
    assert len(verdicts) == 2
    assert _demo.main(["--quick", "--no-progress", "--n-jobs", "2", "--stats"], read=_constant(0.0, 2)) == 0
    out = capsys.readouterr().out
    assert out.count("busy s") == 2 and out.count("workers waited for") == 2
