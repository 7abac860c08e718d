"""Parity with the real ``pqdm`` 0.2.0: the same calls through ``pqdm`` and through our eager drop-in.

Each case runs ``pqdm.processes.pqdm`` beside ``mtasklite_like.pqdm.processes.pqdm`` (and the same
for threads) and compares what comes back: the list of results (exceptions compared by type and
``args``) or the exception raised (its type and ``args``; in ``'deferred'`` mode the types and
``args`` of the exceptions it carries).

The first section checks, beside the real ``pqdm``, what pqdm's own test suite checks (that suite
is not in pqdm's wheel): the three argument types, options reaching the bar, and the three
exception modes with results and exceptions compared by value.

Deliberate differences (``docs/pqdm_compatibility.md``) are asserted as such, on our side:

- ``n_jobs=1``: real ``pqdm`` lets a task's exception propagate whatever ``exception_behaviour``
  says; ours applies the mode, so the reference for ``n_jobs=1`` is what ``pqdm`` gives with
  ``n_jobs=4``.
- ``'deferred'``: ``pqdm`` raises ``Exception(*excs)``, ours ``DeferredExceptions(*excs)``, a
  subclass of ``Exception`` with the same ``.args``.
- ``'immediate'``: both raise the first failure in input order; ours does not wait for the tasks
  after it.
- one progress bar instead of three; unknown keyword arguments and ``max_workers`` fail at once
  with ``TypeError``; executor options without a meaning here are refused.
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

import mtasklite_like.pqdm.processes
import mtasklite_like.pqdm.threads
from mtasklite_like import DeferredExceptions, RemoteTraceback

pytest.importorskip("pqdm")
real_processes = pytest.importorskip("pqdm.processes")
real_threads = pytest.importorskip("pqdm.threads")

pytestmark = pytest.mark.timeout(60)

N_ITEMS = 10

BACKENDS = {
    "processes": (real_processes.pqdm, mtasklite_like.pqdm.processes.pqdm),
    "threads": (real_threads.pqdm, mtasklite_like.pqdm.threads.pqdm),
}
MODES = ["ignore", "immediate", "deferred"]


# -- module-level tasks (real pqdm's ProcessPoolExecutor pickles them by reference) ----------------


class ValueEqualError(Exception):
    """An exception equal to another of its type with the same args, so results compare by value
    after a trip through a process."""

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and self.args == other.args  # type: ignore[attr-defined]

    __hash__ = Exception.__hash__


def product(a, b):
    return a * b


def product_of_pair(pair):
    return pair[0] * pair[1]


def raise_if_exception(item):
    """Raise the item when it is an exception object, return it otherwise."""
    if isinstance(item, BaseException):
        raise item
    return item


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
        time.sleep(0.005)  # the workload: a task held until the test opens the gate
    with open(os.path.join(gate_dir, f"done-{x}"), "w"):
        pass
    return x


def identity(x):
    return x


# -- what pqdm's own test suite checks, beside pqdm ----------------------------------------------------

PAIRS = [(1, 2), (2, 3), (3, 4), (4, 5)]
PRODUCTS = [2, 6, 12, 20]
#: (argument_type, task, items): each gives PRODUCTS
ARGUMENT_FORMS = {
    "kwargs": ("kwargs", product, [{"a": a, "b": b} for a, b in PAIRS]),
    "args": ("args", product, [list(p) for p in PAIRS]),
    "direct": (None, product_of_pair, [list(p) for p in PAIRS]),
}
MIXED = [ValueEqualError(1), "a value", ValueEqualError(2)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("form", sorted(ARGUMENT_FORMS))
def test_argument_forms_give_the_same_list(kind, form):
    real, ours = BACKENDS[kind]
    argument_type, task, items = ARGUMENT_FORMS[form]
    assert real(items, task, n_jobs=2, argument_type=argument_type, disable=True) == PRODUCTS
    result = ours(items, task, n_jobs=2, argument_type=argument_type, disable=True)
    assert type(result) is list and result == PRODUCTS


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("form", sorted(ARGUMENT_FORMS))
def test_desc_and_file_reach_the_bar(kind, form):
    real, ours = BACKENDS[kind]
    argument_type, task, items = ARGUMENT_FORMS[form]
    for run in (real, ours):
        out = io.StringIO()
        assert run(items, task, n_jobs=2, argument_type=argument_type, desc="Testing", file=out) == PRODUCTS
        assert "Testing:" in out.getvalue()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_ignore_returns_the_exceptions_in_place_in_both(kind):
    real, ours = BACKENDS[kind]
    assert real(MIXED, raise_if_exception, n_jobs=2, exception_behaviour="ignore", disable=True) == MIXED
    assert ours(MIXED, raise_if_exception, n_jobs=2, exception_behaviour="ignore", disable=True) == MIXED


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_immediate_raises_the_first_failure_from_the_call_in_both(kind):
    for run in BACKENDS[kind]:
        with pytest.raises(ValueEqualError) as info:
            run(MIXED, raise_if_exception, n_jobs=2, exception_behaviour="immediate", disable=True)
        assert info.value == MIXED[0]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_deferred_raises_every_failure_in_its_args_in_both(kind):
    for run in BACKENDS[kind]:
        with pytest.raises(Exception) as info:
            run(MIXED, raise_if_exception, n_jobs=2, exception_behaviour="deferred", disable=True)
        assert info.value.args == (MIXED[0], MIXED[2])


# -- the matrix -----------------------------------------------------------------------------------------

#: argument_type -> (argument_type value passed to both, task, items)
ARGUMENT_CASES: dict[str, tuple[str | None, Callable[..., Any], list[Any]]] = {
    "single": (None, square_or_fail, list(range(N_ITEMS))),
    "args": ("args", add_or_fail, [(i, 10 * i) for i in range(N_ITEMS)]),
    "kwargs": ("kwargs", scale_or_fail, [{"a": i, "b": 3} for i in range(N_ITEMS)]),
}
#: the exception each task raises
TASK_ERROR = {"single": ValueError, "args": KeyError, "kwargs": RuntimeError}


def _norm(value: Any) -> Any:
    """An exception becomes (type, args), so two runs' results compare by value."""
    if isinstance(value, BaseException):
        return (type(value), value.args)
    return value


def _outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """('returned', type, [results]) or ('raised', exception)."""
    try:
        results = call()
    except Exception as exc:
        return ("raised", exc)
    return ("returned", type(results), [_norm(r) for r in results])


def _input(items: list[Any], sized: bool) -> Any:
    return list(items) if sized else (item for item in items)


def _matrix() -> list[Any]:
    return [
        pytest.param(
            kind, arg_case, mode, n_jobs, sized, bounded,
            id=f"{kind}-{arg_case}-{mode}-n{n_jobs}-{'sized' if sized else 'unsized'}-"
            f"{'bounded' if bounded else 'unbounded'}",
        )
        for kind in sorted(BACKENDS)
        for arg_case in ARGUMENT_CASES
        for mode in MODES
        for n_jobs in (1, 4)
        for sized, bounded in ((True, False), (False, False), (True, True), (False, True))
    ]


@pytest.mark.timeout(30)
@pytest.mark.parametrize(("kind", "arg_case", "mode", "n_jobs", "sized", "bounded"), _matrix())
def test_same_results_and_exceptions_as_pqdm(kind, arg_case, mode, n_jobs, sized, bounded):
    real, ours = BACKENDS[kind]
    argument_type, task, items = ARGUMENT_CASES[arg_case]
    options = {
        "argument_type": argument_type, "exception_behaviour": mode, "bounded": bounded, "disable": True
    }

    real_outcome = _outcome(lambda: real(_input(items, sized), task, n_jobs, **options))
    if n_jobs == 1 and mode != "immediate":
        # Known difference: with n_jobs=1 pqdm lets the task's exception out, whatever the mode...
        assert real_outcome[0] == "raised"
        assert type(real_outcome[1]) is TASK_ERROR[arg_case]
        # ... while ours applies the mode, as pqdm does with several jobs: that is the reference.
        real_outcome = _outcome(lambda: real(_input(items, sized), task, 4, **options))

    our_outcome = _outcome(lambda: ours(_input(items, sized), task, n_jobs, **options))

    if real_outcome[0] == "returned":
        assert our_outcome == real_outcome
        assert our_outcome[1] is list
        # the reference itself is what 'ignore' promises: failures in place, in input order
        failed_positions = [i for i, r in enumerate(our_outcome[2]) if isinstance(r, tuple)]
        assert failed_positions == [i for i in range(N_ITEMS) if i % 4 == 1]
        return

    assert our_outcome[0] == "raised", f"pqdm raised {real_outcome[1]!r}, ours returned {our_outcome[2]!r}"
    real_exc, our_exc = real_outcome[1], our_outcome[1]
    if mode == "deferred":
        # Known difference: DeferredExceptions instead of a bare Exception, same .args.
        assert type(real_exc) is Exception
        assert isinstance(our_exc, DeferredExceptions) and isinstance(our_exc, Exception)
        assert [_norm(e) for e in our_exc.args] == [_norm(e) for e in real_exc.args]
        assert [type(e) for e in our_exc.args] == [TASK_ERROR[arg_case]] * len(our_exc.args)
        assert len(our_exc.args) == len([i for i in range(N_ITEMS) if i % 4 == 1])
    else:
        # 'immediate': the task's own exception, from the same (first failing) item.
        assert type(our_exc) is type(real_exc) is TASK_ERROR[arg_case]
        assert our_exc.args == real_exc.args


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("n_jobs", [1, 4])
def test_default_exception_behaviour_is_ignore_in_both(kind, n_jobs):
    real, ours = BACKENDS[kind]
    items = list(range(N_ITEMS))
    expected = [(ValueError, (i,)) if i % 4 == 1 else i * i for i in items]
    if n_jobs == 1:
        with pytest.raises(ValueError):  # known difference: pqdm lets it out with one job
            real(items, square_or_fail, n_jobs, disable=True)
    else:
        assert [_norm(r) for r in real(items, square_or_fail, n_jobs, disable=True)] == expected
    assert [_norm(r) for r in ours(items, square_or_fail, n_jobs, disable=True)] == expected


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("n_jobs", [1, 4])
def test_a_returned_exception_is_a_result_in_both(kind, mode, n_jobs):
    """An exception object returned (not raised) by a task is a result, in every mode."""
    real, ours = BACKENDS[kind]
    items = list(range(N_ITEMS))
    expected = [(LookupError, (i,)) if i % 2 else i for i in items]
    real_results = real(items, return_an_exception, n_jobs, exception_behaviour=mode, disable=True)
    assert [_norm(r) for r in real_results] == expected
    bar_file = io.StringIO()
    results = ours(items, return_an_exception, n_jobs, exception_behaviour=mode, file=bar_file)
    assert [_norm(r) for r in results] == expected
    assert "failed=" not in bar_file.getvalue()  # not counted as failures either


@pytest.mark.timeout(30)
def test_a_process_exception_carries_the_remote_traceback_in_both():
    items = list(range(N_ITEMS))
    real_results = real_processes.pqdm(items, square_or_fail, 4, disable=True)
    our_results = mtasklite_like.pqdm.processes.pqdm(items, square_or_fail, 4, disable=True)
    for results in (real_results, our_results):
        cause = results[1].__cause__
        assert cause is not None
        assert "square_or_fail" in str(cause) and "Traceback (most recent call last)" in str(cause)
    assert isinstance(our_results[1].__cause__, RemoteTraceback)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_the_same_signature(kind):
    real, ours = BACKENDS[kind]

    def shape(function):
        return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]

    assert shape(ours) == shape(real)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_keyword_names_and_a_required_n_jobs_as_in_pqdm(kind):
    real, ours = BACKENDS[kind]
    items = list(range(N_ITEMS))
    for run in (real, ours):
        assert run(array=items, function=identity, n_jobs=2, disable=True) == items
        with pytest.raises(TypeError, match="n_jobs"):
            run(items, identity, disable=True)
        # An explicit None: the number of workers the executor would choose.
        assert run(items, identity, None, disable=True) == items


# -- known differences, asserted on our side ------------------------------------------------------------


@pytest.mark.timeout(40)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_immediate_ours_raises_without_waiting_for_the_other_tasks(kind, tmp_path):
    real, ours = BACKENDS[kind]
    items = [(x, str(tmp_path)) for x in range(N_ITEMS)]

    # Ours: the tasks after the failing item 1 are held at a gate that opens only after we have the
    # exception: it comes from the call without waiting for them (item 0 has run, as in pqdm).
    with pytest.raises(ValueError, match="item 1 fails at once"):
        ours(items, fail_second_others_wait_for_gate, 4, argument_type="args",
             exception_behaviour="immediate", disable=True)
    done_when_raised = sorted(p.name for p in tmp_path.glob("done-*"))
    (tmp_path / "open").touch()
    # had it waited for them, they would have run at the gate's own 15 s deadline
    assert done_when_raised == ["done-0"]

    # pqdm: with the gate open, every other task has finished by the time it raises.
    for p in tmp_path.glob("done-*"):
        p.unlink()
    with pytest.raises(ValueError, match="item 1 fails at once"):
        real(items, fail_second_others_wait_for_gate, 4, argument_type="args",
             exception_behaviour="immediate", disable=True)
    assert len(list(tmp_path.glob("done-*"))) == N_ITEMS - 1


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_one_progress_bar_instead_of_three(kind):
    real, ours = BACKENDS[kind]

    class CountingBar(tqdm.tqdm):
        descriptions: list[str] = []
        last: CountingBar | None = None

        def __init__(self, *args, **kwargs):
            type(self).descriptions.append(kwargs.get("desc", ""))
            type(self).last = self
            super().__init__(*args, **kwargs)

    items = list(range(N_ITEMS))
    real(items, identity, 4, tqdm_class=CountingBar, desc="work", file=io.StringIO())
    assert len(CountingBar.descriptions) == 3  # queueing, processing, collecting
    CountingBar.descriptions.clear()
    assert ours(items, identity, 4, tqdm_class=CountingBar, desc="work", file=io.StringIO()) == items
    assert CountingBar.descriptions == ["work"]
    assert CountingBar.last is not None and CountingBar.last.n == N_ITEMS


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_unknown_keyword_fails_at_once_with_type_error(kind):
    real, ours = BACKENDS[kind]
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
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_max_workers_is_rejected_where_pqdm_ignores_it(kind):
    real, ours = BACKENDS[kind]
    items = list(range(N_ITEMS))
    # pqdm sets max_workers=n_jobs itself, over whatever was passed
    assert real(items, identity, 2, max_workers=3, disable=True) == items
    with pytest.raises(TypeError, match="n_jobs"):
        ours(items, identity, 2, max_workers=3, disable=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_other_executor_options_are_rejected(kind):
    real, ours = BACKENDS[kind]
    option = {"thread_name_prefix": "w"} if kind == "threads" else {"mp_context": None}
    items = list(range(N_ITEMS))
    assert real(items, identity, 2, disable=True, **option) == items  # forwarded to the executor
    if kind == "threads":
        with pytest.raises(TypeError, match="thread_name_prefix"):
            ours(items, identity, 2, disable=True, **option)
    else:  # mp_context has a meaning here: the start method (None: the platform's)
        assert ours(items, identity, 2, disable=True, **option) == items


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_an_unknown_argument_type_is_an_error_not_a_single_argument(kind):
    real, ours = BACKENDS[kind]
    items = [(i, 1) for i in range(N_ITEMS)]
    assert real(items, identity, 2, argument_type="positional", disable=True) == items
    with pytest.raises(ValueError, match="argument_type"):
        ours(items, identity, 2, argument_type="positional", disable=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_an_unknown_exception_behaviour_is_an_error(kind):
    real, ours = BACKENDS[kind]
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
    ours = mtasklite_like.pqdm.processes.pqdm
    assert ours(items, identity, 2, max_tasks_per_child=3, disable=True) == items


@pytest.mark.timeout(30)
@pytest.mark.parametrize("kind", sorted(BACKENDS))
def test_initializer_with_bounded_works_where_pqdm_hands_it_to_tqdm(kind):
    real, ours = BACKENDS[kind]
    items = list(range(N_ITEMS))
    # the bounded executors take no initializer by name, so pqdm's argument split gives it to tqdm
    with pytest.raises(tqdm.std.TqdmKeyError, match="initializer"):
        real(items, identity, 2, bounded=True, initializer=print, initargs=(), file=io.StringIO())
    assert ours(items, identity, 2, bounded=True, initializer=len, initargs=("x",), disable=True) == items
