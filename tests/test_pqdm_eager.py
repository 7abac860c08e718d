"""pqdm's eager ``pqdm`` on its own: ``from mtasklite_like.pqdm.processes import pqdm`` (or ``.threads``).

When the call returns every item has run and the results are a plain ``list``; a failure the mode
raises is raised from the call itself, so a ``try`` around an assignment catches it; the workers
are stopped and the bar closed before the call returns or raises. What the real ``pqdm`` does
beside it is in ``tests/test_pqdm_parity.py``; mtasklite's lazy ``pqdm`` is in
``tests/test_pqdm_wrapper.py``.
"""

from __future__ import annotations

import io
import os
import threading
import time

import pytest
import tqdm

import mtasklite_like.pqdm.processes
import mtasklite_like.pqdm.threads
from mtasklite_like import DeferredExceptions, RemoteTraceback, is_exception

from .helpers import pid_running

pytestmark = pytest.mark.timeout(60)

EAGER = {"processes": mtasklite_like.pqdm.processes.pqdm, "threads": mtasklite_like.pqdm.threads.pqdm}


@pytest.fixture(params=sorted(EAGER))
def pqdm(request):
    """The eager pqdm of one kind of worker."""
    return EAGER[request.param]


# -- module-level tasks (picklable by reference under every start method) -----------------------------


def write_file(path):
    with open(path, "w") as f:
        f.write("done")
    return os.path.basename(path)


def fail_on_multiples_of_3(x):
    if x % 3 == 0:
        raise ValueError(x)
    return x


def square(x):
    return x * x


def pid_of_worker(x):
    return os.getpid(), threading.get_ident(), x


def gated(x, gate_dir, failing):
    """Items in ``failing`` raise at once; items below 5 finish at once; the others wait for the file
    ``open`` in ``gate_dir`` (at most 15 s). Each item that finishes writes ``done-<x>``."""
    if x in failing:
        raise ValueError(x)
    if x >= 5:
        deadline = time.monotonic() + 15
        while not os.path.exists(os.path.join(gate_dir, "open")) and time.monotonic() < deadline:
            time.sleep(0.005)  # the workload: a task held until the test opens the gate
    with open(os.path.join(gate_dir, f"done-{x}"), "w"):
        pass
    return x


def _wait_until(predicate, timeout=15.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- every task has run when the call returns ---------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_every_task_has_run_when_the_call_returns(pqdm, tmp_path, sized):
    paths = [str(tmp_path / f"file-{i}") for i in range(50)]
    results = pqdm(paths if sized else iter(paths), write_file, 2, disable=True)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert len(written) == 50  # on the very next line, not later
    assert type(results) is list
    assert results == [f"file-{i}" for i in range(50)]


@pytest.mark.timeout(30)
def test_the_result_is_a_plain_list_in_every_mode_that_returns(pqdm):
    for mode in ("ignore", "deferred", "immediate"):
        results = pqdm(range(12), square, 3, exception_behaviour=mode, disable=True)
        assert type(results) is list
        assert results == [x * x for x in range(12)]
    assert pqdm([], square, 2, disable=True) == []


@pytest.mark.timeout(30)
def test_ignore_puts_the_exceptions_in_place(pqdm):
    results = pqdm(range(10), fail_on_multiples_of_3, 2, disable=True)
    assert type(results) is list
    assert [r.args if is_exception(r) else r for r in results] == [(0,), 1, 2, (3,), 4, 5, (6,), 7, 8, (9,)]


@pytest.mark.timeout(30)
def test_process_exceptions_carry_the_remote_traceback():
    results = mtasklite_like.pqdm.processes.pqdm(range(4), fail_on_multiples_of_3, 2, disable=True)
    assert isinstance(results[0].__cause__, RemoteTraceback)
    assert "fail_on_multiples_of_3" in str(results[0].__cause__)
    with pytest.raises(ValueError) as info:
        mtasklite_like.pqdm.processes.pqdm(
            range(4), fail_on_multiples_of_3, 2, exception_behaviour="immediate", disable=True
        )
    assert isinstance(info.value.__cause__, RemoteTraceback)


# -- 'immediate' and 'deferred' raise from the call ---------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spelling", ["exception_behaviour", "exception_behavior"])
def test_immediate_is_caught_by_a_try_around_the_assignment(pqdm, spelling):
    caught = None
    try:
        results = pqdm(range(1, 30), fail_on_multiples_of_3, 2, disable=True, **{spelling: "immediate"})
    except ValueError as exc:
        caught = exc
    else:
        pytest.fail(f"returned {results!r}")
    assert caught is not None and caught.args == (3,)  # the first failure in input order


@pytest.mark.timeout(40)
def test_immediate_raises_the_first_failure_in_input_order_without_waiting_for_later_items(pqdm, tmp_path):
    # Items 2 and 4 fail at once, 0, 1 and 3 finish at once, 5 and later wait for a gate that opens
    # only after the call has raised: the error of item 2 comes with every earlier item done and
    # without waiting for the gated ones (chunk_size=1: one item per message, so no item waits on
    # another in its batch).
    items = [(x, str(tmp_path), (2, 4)) for x in range(12)]
    with pytest.raises(ValueError) as info:
        pqdm(items, gated, 2, argument_type="args", exception_behaviour="immediate", chunk_size=1,
             disable=True)
    done_when_raised = {p.name for p in tmp_path.glob("done-*")}
    (tmp_path / "open").touch()
    assert info.value.args == (2,)
    assert {"done-0", "done-1"} <= done_when_raised
    assert done_when_raised <= {"done-0", "done-1", "done-3"}


@pytest.mark.timeout(30)
def test_deferred_runs_every_item_then_raises_them_all(pqdm, tmp_path):
    def items():
        for i in range(12):
            yield str(tmp_path / f"file-{i}") if i % 4 else str(tmp_path / "missing" / f"file-{i}")

    with pytest.raises(DeferredExceptions) as info:
        pqdm(items(), write_file, 3, exception_behaviour="deferred", disable=True)
    assert isinstance(info.value, Exception)
    assert [type(e) for e in info.value.args] == [FileNotFoundError] * 3
    assert [e.filename.rsplit("-", 1)[1] for e in info.value.args] == ["0", "4", "8"]  # input order
    assert len(list(tmp_path.glob("file-*"))) == 9  # every other item ran


# -- the workers and the bar ----------------------------------------------------------------------------


@pytest.mark.timeout(40)
@pytest.mark.parametrize("mode", ["ignore", "immediate"])
def test_process_workers_are_gone_when_the_call_returns_or_raises(mode):
    pqdm = mtasklite_like.pqdm.processes.pqdm
    results = pqdm(range(20), pid_of_worker, 2, disable=True)
    pids = {pid for pid, _, _ in results} - {os.getpid()}
    assert pids
    if mode == "immediate":
        with pytest.raises(ValueError):
            pqdm(range(20), fail_on_multiples_of_3, 2, exception_behaviour=mode, disable=True)
    assert _wait_until(lambda: not any(pid_running(pid) for pid in pids)), pids


@pytest.mark.timeout(40)
def test_thread_workers_are_gone_when_the_call_returns():
    before = set(threading.enumerate())
    results = mtasklite_like.pqdm.threads.pqdm(range(20), pid_of_worker, 3, disable=True)
    assert {pid for pid, _, _ in results} == {os.getpid()}
    workers = {ident for _, ident, _ in results} - {threading.get_ident()}
    assert workers
    assert _wait_until(lambda: not {t.ident for t in set(threading.enumerate()) - before} & workers)


@pytest.mark.timeout(30)
def test_the_bar_is_on_by_default_counts_every_item_and_is_closed(pqdm):
    out = io.StringIO()
    results = pqdm(range(30), fail_on_multiples_of_3, 2, desc="checking", file=out)
    assert len(results) == 30
    text = out.getvalue()
    assert "checking:" in text and "30/30" in text and "failed=10" in text
    assert text.endswith("\n")  # closed: leave=True ends its line


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_a_custom_bar_class_counts_items_in_few_updates(pqdm, sized):
    updates: list[int] = []

    class RecordingBar(tqdm.tqdm):
        def update(self, n=1):
            updates.append(n)
            return super().update(n)

    n_items = 20_000
    items = range(n_items) if sized else iter(range(n_items))
    results = pqdm(items, square, 2, tqdm_class=RecordingBar, file=io.StringIO())
    assert results == [x * x for x in range(n_items)]
    assert sum(updates) == n_items and all(n > 0 for n in updates)
    assert len(updates) < n_items  # counted in bulk, not one call per item


@pytest.mark.timeout(30)
def test_the_bar_is_closed_when_the_call_raises(pqdm):
    closed: list[bool] = []

    class ClosingBar(tqdm.tqdm):
        def close(self):
            closed.append(True)
            return super().close()

    with pytest.raises(ValueError):
        pqdm(range(10), fail_on_multiples_of_3, 2, exception_behaviour="immediate", tqdm_class=ClosingBar,
             file=io.StringIO())
    assert closed


# -- arguments ------------------------------------------------------------------------------------------


@pytest.mark.timeout(10)
def test_an_unknown_keyword_fails_before_the_input_is_read(pqdm):
    pulled: list[int] = []

    def items():
        for i in range(10):
            pulled.append(i)
            yield i

    with pytest.raises(TypeError, match="chunksize"):
        pqdm(items(), square, 2, chunksize=4, disable=True)
    assert pulled == []


@pytest.mark.timeout(30)
def test_pool_options_pass_through(pqdm):
    results = pqdm(range(40), square, 2, chunk_size=3, bounded=True, max_tasks_per_child=7, disable=True)
    assert results == [x * x for x in range(40)]


@pytest.mark.timeout(10)
def test_use_threads_is_not_an_argument_of_pqdms_pqdm(pqdm):
    with pytest.raises(TypeError, match="use_threads"):
        pqdm(range(3), square, 2, use_threads=True, disable=True)


@pytest.mark.timeout(30)
def test_n_jobs_1_runs_in_the_caller_and_applies_the_mode(pqdm):
    results = pqdm(range(4), pid_of_worker, 1, disable=True)
    assert {(pid, ident) for pid, ident, _ in results} == {(os.getpid(), threading.get_ident())}
    ignored = pqdm(range(4), fail_on_multiples_of_3, 1, disable=True)
    assert [r.args if is_exception(r) else r for r in ignored] == [(0,), 1, 2, (3,)]
    with pytest.raises(DeferredExceptions):
        pqdm(range(4), fail_on_multiples_of_3, 1, exception_behaviour="deferred", disable=True)
