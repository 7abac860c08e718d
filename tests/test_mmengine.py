"""``mtasklite_like.mmengine``: ``track_parallel_progress`` and friends, beside mmengine's own.

The real ``mmengine`` comes from ``mmengine-lite`` in the test extra (the same package without its
OpenCV requirement); the parity tests skip, saying so, where it is not installed.
"""

from __future__ import annotations

import inspect
import io
import re
from typing import Any

import pytest

import mtasklite_like.mmengine as ours_mm
from mtasklite_like import Pool, RemoteTraceback, WorkerDiedError
from mtasklite_like.mmengine import ProgressBar, track_parallel_progress
from mtasklite_like.processes import pqdm
from tests import workflow_helpers as H

try:
    import mmengine.utils as real
except ImportError:  # pragma: no cover - the test extra installs it
    real = None

NO_MMENGINE = "mmengine (pip install mmengine-lite) is not installed"
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


def test_progress_bar() -> None:
    out = io.StringIO()
    bar = ProgressBar(4, bar_width=8, file=out)
    for _ in range(4):
        bar.update()
    bar.finish()
    text = out.getvalue()
    assert text.startswith("[        ] 0/4") and "[>>>>>>>>] 4/4" in text and text.endswith("\n")
    unknown = io.StringIO()
    bar = ProgressBar(0, file=unknown)
    bar.update(3)
    bar.finish()
    assert "completed: 3" in unknown.getvalue()
    with pytest.raises(ValueError, match="num_tasks must be > 0"):
        bar.update(0)
