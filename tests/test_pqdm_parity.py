"""Parity with the real ``pqdm`` 0.2.0: same cases through ``pqdm`` and through our wrappers.

Each case runs ``pqdm.processes.pqdm`` beside ``mtasklite_like.processes.pqdm`` (and the same for
threads) and compares what comes back: the list of results (exceptions compared by type and
``args``) or the exception raised (its type, and in ``'deferred'`` mode the types and ``args`` of the
exceptions it carries).

Deliberate differences (``docs/pqdm_compatibility.md``) are asserted as such, on our side:

- ``n_jobs=1``: real ``pqdm`` lets a task's exception propagate whatever ``exception_behaviour``
  says; ours applies the mode, so the reference for ``n_jobs=1`` is what ``pqdm`` gives with
  ``n_jobs=4``.
- ``'deferred'``: ``pqdm`` raises ``Exception(*excs)``, ours ``DeferredExceptions(*excs)``, a
  subclass of ``Exception`` with the same ``.args``.
- ``'immediate'``: ours raises as soon as a failure is seen, without waiting for the other tasks,
  so only the exception's type is compared (it may come from a later item than pqdm's).
- one progress bar instead of three; ``bounded=True`` by default; unknown keyword arguments and
  ``max_workers`` fail at once with ``TypeError``; ``n_jobs`` may be omitted.
"""

from __future__ import annotations

import inspect
import io
import os
import time
from collections.abc import Callable
from typing import Any

import pytest
import tqdm

import mtasklite_like.processes
import mtasklite_like.threads
from mtasklite_like import DeferredExceptions, RemoteTraceback

pytest.importorskip("pqdm")
real_processes = pytest.importorskip("pqdm.processes")
real_threads = pytest.importorskip("pqdm.threads")

pytestmark = pytest.mark.timeout(60)

N_ITEMS = 10


# -- module-level tasks (real pqdm's ProcessPoolExecutor pickles them by reference) ----------------


def square_or_fail(x):
    if x % 4 == 1:
        raise ValueError(x)
    return x * x


def add_or_fail(a, b):
    if a % 4 == 1:
        raise KeyError(a)
    return a + b


def scale_or_fail(a, b=1):
    if a % 4 == 1:
        raise RuntimeError(f"item {a}", a)
    return a * b


def return_an_exception(x):
    """Returns (does not raise) an exception object for odd items."""
    return LookupError(x) if x % 2 else x


def fail_second_others_wait_for_gate(x, gate_dir):
    """Item 1 fails at once, item 0 finishes at once; the others wait for the file ``open`` (at most
    15 s), then finish."""
    if x == 1:
        raise ValueError("item 1 fails at once")
    deadline = time.monotonic() + (0 if x == 0 else 15)
    gate = os.path.join(gate_dir, "open")
    while not os.path.exists(gate) and time.monotonic() < deadline:
        time.sleep(0.005)
    with open(os.path.join(gate_dir, f"done-{x}"), "w"):
        pass
    return x


def identity(x):
    return x


#: argument_type -> (argument_type value passed to both, task, items)
ARGUMENT_CASES: dict[str, tuple[str | None, Callable[..., Any], list[Any]]] = {
    "single": (None, square_or_fail, list(range(N_ITEMS))),
    "args": ("args", add_or_fail, [(i, 10 * i) for i in range(N_ITEMS)]),
    "kwargs": ("kwargs", scale_or_fail, [{"a": i, "b": 3} for i in range(N_ITEMS)]),
}
#: the exception each task raises
TASK_ERROR = {"single": ValueError, "args": KeyError, "kwargs": RuntimeError}

BACKENDS = {
    "processes": (real_processes.pqdm, mtasklite_like.processes.pqdm),
    "threads": (real_threads.pqdm, mtasklite_like.threads.pqdm),
}
MODES = ["ignore", "immediate", "deferred"]

#: list() calls iter(result) (a lazy stream, not started yet), then len(result), which collects every
#: result into the result's own list; the stream taken first then finds the run over and yields nothing.


# -- helpers ------------------------------------------------------------------------------------------


def _norm(value: Any) -> Any:
    """An exception becomes (type, args), so two runs' results compare by value."""
    if isinstance(value, BaseException):
        return (type(value), value.args)
    return value


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """('returned', [results]) or ('raised', exception)."""
    try:
        results = call()
    except Exception as exc:
        return ("raised", exc)
    return ("returned", [_norm(r) for r in results])


def _consume(result: Any, how: str) -> list[Any]:
    if how == "list":
        return list(result)
    return [r for r in result]  # the lazy stream: a plain for loop


def _input(items: list[Any], sized: bool) -> Any:
    return list(items) if sized else (item for item in items)


def _matrix() -> list[Any]:
    params = []
    for backend in sorted(BACKENDS):
        for arg_case in ARGUMENT_CASES:
            for mode in MODES:
                for n_jobs in (1, 4):
                    for sized in (True, False):
                        for how in ("list", "for"):
                            marks: list = []
                            params.append(
                                pytest.param(
                                    backend,
                                    arg_case,
                                    mode,
                                    n_jobs,
                                    sized,
                                    how,
                                    marks=marks,
                                    id=f"{backend}-{arg_case}-{mode}-n{n_jobs}-"
                                    f"{'sized' if sized else 'unsized'}-{how}",
                                )
                            )
    return params


# -- the matrix -----------------------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("backend", "arg_case", "mode", "n_jobs", "sized", "how"), _matrix())
def test_same_results_and_exceptions_as_pqdm(backend, arg_case, mode, n_jobs, sized, how):
    real, ours = BACKENDS[backend]
    argument_type, task, items = ARGUMENT_CASES[arg_case]
    options = {"argument_type": argument_type, "exception_behaviour": mode, "disable": True}

    real_outcome = _outcome(lambda: real(_input(items, sized), task, n_jobs, **options))
    if n_jobs == 1 and mode != "immediate":
        # Known difference: with n_jobs=1 pqdm lets the task's exception out, whatever the mode...
        assert real_outcome[0] == "raised"
        assert type(real_outcome[1]) is TASK_ERROR[arg_case]
        # ... while ours applies the mode, as pqdm does with several jobs: that is the reference.
        real_outcome = _outcome(lambda: real(_input(items, sized), task, 4, **options))

    our_outcome = _outcome(lambda: _consume(ours(_input(items, sized), task, n_jobs, **options), how))

    if real_outcome[0] == "returned":
        assert our_outcome == real_outcome
        # the reference itself is what 'ignore' promises: failures in place, in input order
        failed_positions = [i for i, r in enumerate(our_outcome[1]) if isinstance(r, tuple)]
        assert failed_positions == [i for i in range(N_ITEMS) if i % 4 == 1]
        return

    assert our_outcome[0] == "raised", f"pqdm raised {real_outcome[1]!r}, ours returned {our_outcome[1]!r}"
    real_exc, our_exc = real_outcome[1], our_outcome[1]
    if mode == "deferred":
        # Known difference: DeferredExceptions instead of a bare Exception, same .args.
        assert type(real_exc) is Exception
        assert isinstance(our_exc, DeferredExceptions) and isinstance(our_exc, Exception)
        assert [_norm(e) for e in our_exc.args] == [_norm(e) for e in real_exc.args]
        assert [type(e) for e in our_exc.args] == [TASK_ERROR[arg_case]] * len(our_exc.args)
        assert len(our_exc.args) == len([i for i in range(N_ITEMS) if i % 4 == 1])
    else:
        # 'immediate': the task's own exception, same type (ours may raise a later item's).
        assert type(our_exc) is type(real_exc) is TASK_ERROR[arg_case]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("n_jobs", [1, 4])
def test_default_exception_behaviour_is_ignore_in_both(backend, n_jobs):
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    expected = [(ValueError, (i,)) if i % 4 == 1 else i * i for i in items]
    if n_jobs == 1:
        with pytest.raises(ValueError):  # known difference: pqdm lets it out with one job
            real(items, square_or_fail, n_jobs, disable=True)
    else:
        assert [_norm(r) for r in real(items, square_or_fail, n_jobs, disable=True)] == expected
    assert [_norm(r) for r in ours(items, square_or_fail, n_jobs, disable=True)] == expected


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_jobs", [1, 4])
def test_a_returned_exception_is_a_result_in_both(backend, mode, n_jobs):
    """An exception object returned (not raised) by a task is a result, in every mode."""
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    expected = [(LookupError, (i,)) if i % 2 else i for i in items]
    real_results = real(items, return_an_exception, n_jobs, exception_behaviour=mode, disable=True)
    assert [_norm(r) for r in real_results] == expected
    bar_file = io.StringIO()
    result = ours(items, return_an_exception, n_jobs, exception_behaviour=mode, file=bar_file)
    assert [_norm(r) for r in result] == expected
    assert "failed=" not in bar_file.getvalue()  # not counted as failures either


@pytest.mark.timeout(30)
def test_a_process_exception_carries_the_remote_traceback_in_both():
    items = list(range(N_ITEMS))
    real_results = real_processes.pqdm(items, square_or_fail, 4, disable=True)
    our_results = [r for r in mtasklite_like.processes.pqdm(items, square_or_fail, 4, disable=True)]
    for results in (real_results, our_results):
        cause = results[1].__cause__
        assert cause is not None
        assert "square_or_fail" in str(cause) and "Traceback (most recent call last)" in str(cause)
    assert isinstance(our_results[1].__cause__, RemoteTraceback)


# -- known differences, asserted on our side ------------------------------------------------------------


@pytest.mark.timeout(40)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_immediate_ours_raises_without_waiting_for_the_other_tasks(backend, tmp_path):
    real, ours = BACKENDS[backend]
    items = [(x, str(tmp_path)) for x in range(N_ITEMS)]

    # Ours: the tasks after the failing item 1 are held at a gate that opens only after we have the
    # exception: it comes without waiting for them (item 0's result comes first, as in pqdm).
    started = time.monotonic()
    with pytest.raises(ValueError, match="item 1 fails at once"):
        for _ in ours(items, fail_second_others_wait_for_gate, 4, argument_type="args",
                      exception_behaviour="immediate", disable=True):
            pass
    elapsed = time.monotonic() - started
    done_when_raised = sorted(p.name for p in tmp_path.glob("done-*"))
    (tmp_path / "open").touch()
    assert done_when_raised == ["done-0"]
    assert elapsed < 10  # well before the gate's own 15 s deadline

    # pqdm: with the gate open, every other task has finished by the time it raises.
    for p in tmp_path.glob("done-*"):
        p.unlink()
    with pytest.raises(ValueError, match="item 1 fails at once"):
        real(items, fail_second_others_wait_for_gate, 4, argument_type="args",
             exception_behaviour="immediate", disable=True)
    assert len(list(tmp_path.glob("done-*"))) == N_ITEMS - 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_one_progress_bar_instead_of_three(backend):
    real, ours = BACKENDS[backend]

    class CountingBar(tqdm.tqdm):
        descriptions: list[str] = []

        def __init__(self, *args, **kwargs):
            type(self).descriptions.append(kwargs.get("desc", ""))
            super().__init__(*args, **kwargs)

    items = list(range(N_ITEMS))
    real(items, identity, 4, tqdm_class=CountingBar, desc="work", file=io.StringIO())
    assert len(CountingBar.descriptions) == 3  # queueing, processing, collecting
    CountingBar.descriptions.clear()
    result = ours(items, identity, 4, tqdm_class=CountingBar, desc="work", file=io.StringIO())
    assert [r for r in result] == items
    assert CountingBar.descriptions == ["work"]
    assert result.tqdm_obj.n == N_ITEMS


@pytest.mark.timeout(10)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_bounded_is_the_default_in_ours_not_in_pqdm(backend):
    real, ours = BACKENDS[backend]
    assert inspect.signature(real).parameters["bounded"].default is False
    assert inspect.signature(ours).parameters["bounded"].default is True
    assert ours([1], identity, 2, disable=True).pool_obj.parent_obj.bounded is True


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_unknown_keyword_fails_at_once_with_type_error(backend):
    real, ours = BACKENDS[backend]
    pulled = []

    def items():
        for i in range(N_ITEMS):
            pulled.append(i)
            yield i

    # pqdm: tqdm's own TqdmKeyError (a KeyError), from the first bar it builds.
    with pytest.raises(tqdm.std.TqdmKeyError, match="no_such_option"):
        real(list(range(N_ITEMS)), identity, 4, no_such_option=1, file=io.StringIO())
    # ours: TypeError from the call itself, naming the key; the input is not touched.
    with pytest.raises(TypeError, match="no_such_option"):
        ours(items(), identity, 4, no_such_option=1, file=io.StringIO())
    assert pulled == []


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_max_workers_is_rejected_where_pqdm_ignores_it(backend):
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    # pqdm sets max_workers=n_jobs itself, over whatever was passed
    assert real(items, identity, 2, max_workers=3, disable=True) == items
    with pytest.raises(TypeError, match="n_jobs"):
        ours(items, identity, 2, max_workers=3, disable=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_n_jobs_may_be_omitted_in_ours(backend):
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    with pytest.raises(TypeError, match="n_jobs"):
        real(items, identity, disable=True)  # required in pqdm
    # An explicit None means "the executor's default" in pqdm; ours gives the same results.
    assert real(items, identity, None, disable=True) == items
    result = ours(items, identity, disable=True)
    assert [r for r in result] == items
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    expected_workers = min(32, cpus + 4) if backend == "threads" else cpus
    assert result.pool_obj.parent_obj.n_jobs == expected_workers
    assert [r for r in ours(items, identity, None, disable=True)] == items


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_other_executor_options_are_rejected(backend):
    real, ours = BACKENDS[backend]
    option = {"thread_name_prefix": "w"} if backend == "threads" else {"mp_context": None}
    items = list(range(N_ITEMS))
    assert real(items, identity, 2, disable=True, **option) == items  # forwarded to the executor
    if backend == "threads":
        with pytest.raises(TypeError, match="thread_name_prefix"):
            ours(items, identity, 2, disable=True, **option)
    else:  # mp_context has a meaning here: the start method (None: the platform's)
        assert [r for r in ours(items, identity, 2, disable=True, **option)] == items


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_keyword_names_of_the_first_two_arguments_are_mtasklites(backend):
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    assert real(array=items, function=identity, n_jobs=2, disable=True) == items
    with pytest.raises(TypeError):
        ours(array=items, function=identity, n_jobs=2, disable=True)
    result = ours(input_iterable=items, worker_or_worker_arr=identity, n_jobs=2, disable=True)
    assert [r for r in result] == items


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_an_unknown_argument_type_is_an_error_not_a_single_argument(backend):
    real, ours = BACKENDS[backend]
    items = [(i, 1) for i in range(N_ITEMS)]
    assert real(items, identity, 2, argument_type="positional", disable=True) == items
    with pytest.raises(ValueError, match="argument_type"):
        ours(items, identity, 2, argument_type="positional", disable=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(BACKENDS))
def test_an_unknown_exception_behaviour_is_an_error(backend):
    real, ours = BACKENDS[backend]
    items = list(range(N_ITEMS))
    # pqdm drops the failed items from its list
    assert real(items, square_or_fail, 2, exception_behaviour="raise", disable=True) == [
        i * i for i in items if i % 4 != 1
    ]
    with pytest.raises(ValueError, match="exception_behavior"):
        ours(items, square_or_fail, 2, exception_behaviour="raise", disable=True)


@pytest.mark.timeout(30)
def test_max_tasks_per_child_reaches_our_pool_where_pqdm_passes_it_to_tqdm():
    items = list(range(N_ITEMS))
    # keyword-only in ProcessPoolExecutor, so pqdm's argument split hands it to tqdm
    with pytest.raises(tqdm.std.TqdmKeyError, match="max_tasks_per_child"):
        real_processes.pqdm(items, identity, 2, max_tasks_per_child=3, file=io.StringIO())
    result = mtasklite_like.processes.pqdm(items, identity, 2, max_tasks_per_child=3, disable=True)
    assert result.pool_obj.parent_obj.max_tasks_per_worker == 3
    assert [r for r in result] == items
