"""``mtasklite_like.mmengine``: ``track_parallel_progress`` and friends, beside mmengine's own.

The real ``mmengine`` comes from ``mmengine-lite`` in the integration extra (the same package
without its OpenCV requirement). Without it (the test extra), what is ours runs and the parity
checks skip, saying so; ``tests/integration/test_mmengine_parity.py`` runs them all beside it.
"""

from __future__ import annotations

import functools
import inspect
import io
import re
import types
from collections.abc import Callable
from typing import Any

import pytest

import mtasklite_like.mmengine as ours_mm
from mtasklite_like import Pool, RemoteTraceback, WorkerDiedError
from mtasklite_like.mmengine import track_parallel_progress
from mtasklite_like.processes import pqdm
from tests import workflow_helpers as H

try:
    import mmengine.utils as real
except ImportError:  # the test extra leaves it out: the integration extra installs it
    real = None

NO_MMENGINE = "mmengine is not installed: tests/integration/test_mmengine_parity.py runs this beside it"
needs_mmengine = pytest.mark.skipif(real is None, reason=NO_MMENGINE)

TASKS = list(range(37))


def _final_count(output: str) -> str:
    """The last ``done/total`` the bar drew."""
    counts = re.findall(r"\] (\d+/\d+),", output)
    return counts[-1] if counts else ""


@needs_mmengine
def test_same_signatures() -> None:
    for name in ("track_parallel_progress", "track_progress", "track_iter_progress"):
        theirs = inspect.signature(getattr(real, name)).parameters
        ours = inspect.signature(getattr(ours_mm, name)).parameters
        assert list(ours) == list(theirs), name
        assert [p.default for p in ours.values()] == [p.default for p in theirs.values()], name


@pytest.mark.timeout(60)
@pytest.mark.parametrize("keep_order", [True, False])
def test_results_equal_a_serial_loop(keep_order: bool) -> None:
    out = io.StringIO()
    got = track_parallel_progress(H.square, TASKS, 2, keep_order=keep_order, file=out)
    expected = [H.square(t) for t in TASKS]
    assert (got if keep_order else sorted(got)) == expected
    assert _final_count(out.getvalue()) == "37/37" and out.getvalue().endswith("\n")


@needs_mmengine
@pytest.mark.timeout(60)
@pytest.mark.parametrize("keep_order", [True, False])
def test_parity_with_mmengine(keep_order: bool) -> None:
    for tasks in (TASKS, lambda: (iter(TASKS), len(TASKS))):
        theirs_out, ours_out = io.StringIO(), io.StringIO()
        theirs = real.track_parallel_progress(
            H.square, tasks() if callable(tasks) else tasks, 2, keep_order=keep_order, file=theirs_out
        )
        ours = track_parallel_progress(
            H.square, tasks() if callable(tasks) else tasks, 2, keep_order=keep_order, file=ours_out
        )
        if keep_order:
            assert ours == theirs
        else:
            assert sorted(ours) == sorted(theirs)
        assert _final_count(ours_out.getvalue()) == _final_count(theirs_out.getvalue()) == "37/37"


@pytest.mark.timeout(60)
def test_keep_order_false_gives_completion_order() -> None:
    # Item 0 sleeps (the workload); with two workers most other items finish while it runs (an
    # item the pool queued behind it on the same worker may come after it).
    tasks = list(range(8))
    unordered = track_parallel_progress(H.slow_first, tasks, 2, keep_order=False, file=io.StringIO())
    assert sorted(unordered) == tasks and unordered.index(0) >= 6
    ordered = track_parallel_progress(H.slow_first, tasks, 2, keep_order=True, file=io.StringIO())
    assert ordered == tasks


@needs_mmengine
@pytest.mark.timeout(60)
def test_tuple_tasks_before_and_after() -> None:
    """mmengine passes each task as one argument, so code wraps the function in a decorator that
    unpacks the tuple; the drop-in keeps that, and the pool does it natively with argument_type."""
    tasks = [(b, e) for b in range(2, 6) for e in range(4)]
    expected = [b**e for b, e in tasks]
    assert real.track_parallel_progress(H.power_unpacked, tasks, 2, file=io.StringIO()) == expected
    assert track_parallel_progress(H.power_unpacked, tasks, 2, file=io.StringIO()) == expected
    assert track_parallel_progress(H.power_pair, tasks, 2, file=io.StringIO()) == expected
    # Natively: no decorator, each tuple spread over the parameters.
    assert list(Pool(H.power, 2, argument_type="args")(tasks)) == expected
    assert list(pqdm(tasks, H.power, 2, argument_type="args", disable=True)) == expected


@pytest.mark.timeout(60)
def test_initializer_and_initargs() -> None:
    got = track_parallel_progress(
        H.plus_init_value, TASKS, 2, initializer=H.set_init_value, initargs=(1000,), file=io.StringIO()
    )
    assert got == [t + 1000 for t in TASKS]
    with pytest.raises(TypeError, match='"initargs" must be a tuple'):
        track_parallel_progress(H.plus_init_value, TASKS, 2, initializer=H.set_init_value, initargs=[1000])
    if real is not None:
        with pytest.raises(TypeError, match='"initargs" must be a tuple'):
            real.track_parallel_progress(
                H.plus_init_value, TASKS, 2, initializer=H.set_init_value, initargs=[1]
            )


@pytest.mark.timeout(60)
def test_skip_first_leaves_the_warm_up_out_of_the_bar() -> None:
    out = io.StringIO()
    got = track_parallel_progress(H.square, TASKS, 2, chunksize=3, skip_first=True, file=out)
    assert got == [H.square(t) for t in TASKS]
    # 2 workers x chunks of 3: the bar counts the remaining 31 tasks.
    assert _final_count(out.getvalue()) == "31/31"
    if real is not None:
        theirs = io.StringIO()
        real.track_parallel_progress(H.square, TASKS, 2, chunksize=3, skip_first=True, file=theirs)
        assert _final_count(theirs.getvalue()) == "31/31"


@pytest.mark.timeout(60)
def test_task_forms() -> None:
    # (iterable, total): a generator of known length.
    assert track_parallel_progress(H.square, ((t for t in TASKS), 37), 2, file=io.StringIO()) == [
        t * t for t in TASKS
    ]
    with pytest.raises(TypeError, match="sequence"):
        track_parallel_progress(H.square, (t for t in TASKS), 2)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"\(iterable_of_tasks, number_of_tasks\)"):
        track_parallel_progress(H.square, (1, 2, 3), 2)  # type: ignore[arg-type]
    if real is not None:
        with pytest.raises(TypeError):
            real.track_parallel_progress(H.square, (t for t in TASKS), 2)
        # Deliberate difference: mmengine asserts, we raise a TypeError that says what to pass.
        with pytest.raises(AssertionError):
            real.track_parallel_progress(H.square, (1, 2, 3), 2)


@pytest.mark.timeout(60)
def test_a_task_exception_is_raised_with_the_worker_traceback() -> None:
    with pytest.raises(ValueError, match="task 3 is bad") as info:
        track_parallel_progress(H.fail_on_3, TASKS, 2, file=io.StringIO())
    assert isinstance(info.value.__cause__, RemoteTraceback)
    if real is not None:
        with pytest.raises(ValueError, match="task 3 is bad"):
            real.track_parallel_progress(H.fail_on_3, TASKS, 2, file=io.StringIO())


@pytest.mark.timeout(60)
def test_a_killed_worker_raises_instead_of_hanging() -> None:
    # mmengine's multiprocessing.Pool.imap waits forever here.
    with pytest.raises(WorkerDiedError) as info:
        track_parallel_progress(H.die_on_3, TASKS, 2, file=io.StringIO())
    assert 3 in info.value.items


@pytest.mark.parametrize("use_real", [False, True], ids=["ours", "mmengine"])
def test_track_progress_and_track_iter_progress(use_real: bool) -> None:
    if use_real and real is None:
        pytest.skip(NO_MMENGINE)
    lib: Any = real if use_real else ours_mm
    out = io.StringIO()
    assert lib.track_progress(H.add_offset, TASKS, file=out, offset=5) == [t + 5 for t in TASKS]
    assert _final_count(out.getvalue()) == "37/37"
    out = io.StringIO()
    assert lib.track_progress(H.square, (iter(TASKS), 37), file=out) == [t * t for t in TASKS]
    out = io.StringIO()
    seen = []
    for task in lib.track_iter_progress(TASKS, file=out):
        seen.append(task)
    assert seen == TASKS and _final_count(out.getvalue()) == "37/37"
    assert list(lib.track_iter_progress((iter("abc"), 3), file=io.StringIO())) == ["a", "b", "c"]


class _Clock:
    """A wall clock that moves only when told: both bars read it, so their output can be compared
    byte for byte, timings included."""

    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> _Clock:
    fake = _Clock()
    monkeypatch.setattr(ours_mm, "time", types.SimpleNamespace(time=fake, perf_counter=fake, monotonic=fake))
    if real is not None:
        import mmengine.utils.timer

        monkeypatch.setattr(mmengine.utils.timer, "time", fake)
    return fake


def _both(calls: Callable[[Any, _Clock], None], clock: _Clock) -> tuple[str, str]:
    """Run the same calls on our bar and mmengine's (from the same instant); return both outputs."""
    outputs = []
    for lib in (ours_mm, real):
        start = clock.now
        out = io.StringIO()
        calls(functools.partial(lib.ProgressBar, file=out), clock)
        outputs.append(out.getvalue())
        clock.now = start
    return outputs[0], outputs[1]


@needs_mmengine
def test_progress_bar_start_and_update_write_what_mmengines_writes(clock: _Clock) -> None:
    # mmengine's test_start and test_update, with the clock moved instead of slept.
    def calls(make: Callable[..., Any], clock: _Clock) -> None:
        make(bar_width=20)
        bar = make(bar_width=20)
        clock.now += 1
        bar.update()
        bar = make(10, bar_width=20)
        clock.now += 1
        bar.update()
        bar = make(10, bar_width=20, start=False)
        bar.start()

    ours, theirs = _both(calls, clock)
    assert ours == theirs == (
        "completed: 0, elapsed: 0s"
        "completed: 0, elapsed: 0s"  # no total: no carriage return, before an update or after
        "completed: 1, elapsed: 1s, 1.0 tasks/s"
        f"[{' ' * 20}] 0/10, elapsed: 0s, ETA:"
        f"\r[{'>' * 2 + ' ' * 18}] 1/10, 1.0 task/s, elapsed: 1s, ETA:     9s"
        f"[{' ' * 20}] 0/10, elapsed: 0s, ETA:"
    )


@needs_mmengine
@pytest.mark.parametrize("task_num", [0, 5])
def test_every_update_draws_however_quick(clock: _Clock, task_num: int) -> None:
    # A bar updated many times in the same instant (quick tasks), or 0.01 s apart: each update writes
    # the new count, as mmengine's does; the counts without a total follow each other on one line.
    def calls(make: Callable[..., Any], clock: _Clock) -> None:
        bar = make(task_num, bar_width=10)
        bar.update()
        bar.update(2)
        clock.now += 0.01
        bar.update()
        clock.now += 0.01
        bar.update()

    ours, theirs = _both(calls, clock)
    assert ours == theirs
    if task_num:
        assert re.findall(r"\] (\d+/\d+),", ours) == ["0/5", "1/5", "3/5", "4/5", "5/5"]
    else:
        assert re.findall(r"completed: (\d+)", ours) == ["0", "1", "3", "4", "5"]
        assert "\r" not in ours


@needs_mmengine
def test_the_bar_narrows_to_the_terminal_as_mmengines_does(
    clock: _Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # mmengine's test_adaptive_length: 80, 30, then 60 columns.
    lengths = []

    def calls(make: Callable[..., Any], clock: _Clock) -> None:
        bar = make(10, bar_width=20)
        clock.now += 1
        for columns in ("80", "30", "60"):
            monkeypatch.setenv("COLUMNS", columns)
            before = len(bar.file.getvalue())
            bar.update()
            lengths.append(len(bar.file.getvalue()) - before)
            assert bar.terminal_width == int(columns)

    ours, theirs = _both(calls, clock)
    assert ours == theirs
    assert lengths == [66, 48, 60] * 2


@needs_mmengine
def test_progress_bar_attributes_and_bad_counts_match_mmengines() -> None:
    for lib in (ours_mm, real):
        bar = lib.ProgressBar(3, bar_width=7, file=io.StringIO())
        assert (bar.task_num, bar.bar_width, bar.completed) == (3, 7, 0)
        assert isinstance(bar.terminal_width, int)
        assert bar.timer.is_running and bar.timer.since_start() >= 0
        assert bar.timer.since_last_check() >= 0
        for bad in (0, -1):
            with pytest.raises(AssertionError):
                bar.update(bad)
        assert bar.completed == 0
        late = lib.ProgressBar(3, start=False, file=io.StringIO())
        assert not hasattr(late, "timer")  # started by start(), as mmengine's


def test_the_timer_is_mmengines_timer(capsys: pytest.CaptureFixture[str]) -> None:
    timer = ours_mm.Timer(start=False)
    assert not timer.is_running
    with pytest.raises(ours_mm.TimerError, match="timer is not running"):
        timer.since_start()
    with ours_mm.Timer(print_tmpl="took {:.0f} s"):
        pass
    assert capsys.readouterr().out == "took 0 s\n"
    if real is not None:
        assert [p for p in inspect.signature(real.Timer).parameters] == [
            p for p in inspect.signature(ours_mm.Timer).parameters
        ]


@needs_mmengine
@pytest.mark.parametrize("form", ["list", "iterator", "iter_progress"])
def test_track_progress_output_is_mmengines_byte_for_byte(clock: _Clock, form: str) -> None:
    # mmengine's test_track_progress_list / _iterator and test_track_iter_progress: a task takes 1 s.
    def one_second(num: int) -> int:
        clock.now += 1
        return num

    outputs = []
    for lib in (ours_mm, real):
        start, out = clock.now, io.StringIO()
        if form == "iter_progress":
            got = [one_second(n) for n in lib.track_iter_progress([1, 2, 3], bar_width=3, file=out)]
        else:
            tasks: Any = [1, 2, 3] if form == "list" else ((i for i in [1, 2, 3]), 3)
            got = lib.track_progress(one_second, tasks, bar_width=3, file=out)
        assert got == [1, 2, 3]
        outputs.append(out.getvalue())
        clock.now = start
    assert outputs[0] == outputs[1] == (
        "[   ] 0/3, elapsed: 0s, ETA:"
        "\r[>  ] 1/3, 1.0 task/s, elapsed: 1s, ETA:     2s"
        "\r[>> ] 2/3, 1.0 task/s, elapsed: 2s, ETA:     1s"
        "\r[>>>] 3/3, 1.0 task/s, elapsed: 3s, ETA:     0s\n"
    )


def _timeless(output: str) -> str:
    """The output with its timing-dependent numbers (rate, elapsed, ETA) blanked."""
    output = re.sub(r"[\d.]+|inf(?= tasks?/s)", "#", output)
    return re.sub(r"(ETA:) +#", r"\1 #", output)


@needs_mmengine
@pytest.mark.timeout(60)
def test_track_parallel_progress_draws_every_result_as_mmengine_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The real clock: only the rates, times and ETAs may differ (the bar's width stays at 10 in
    # 200 columns, whatever their digits).
    monkeypatch.setenv("COLUMNS", "200")
    outputs = []
    for lib in (ours_mm, real):
        out = io.StringIO()
        got = lib.track_parallel_progress(H.square, TASKS, 2, bar_width=10, file=out)
        assert got == [H.square(t) for t in TASKS]
        outputs.append(out.getvalue())
    ours, theirs = outputs
    assert re.findall(r"\] (\d+)/37,", ours) == re.findall(r"\] (\d+)/37,", theirs) == [
        str(n) for n in range(38)
    ]
    assert _timeless(ours) == _timeless(theirs)
