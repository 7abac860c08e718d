"""Map-reduce over a list argument: ``mtasklite_like.mapreduce.parallelize`` and its reductions."""

from __future__ import annotations

import inspect
import io
import os
import pickle
import statistics
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest
from tqdm import tqdm

from mtasklite_like import DeferredExceptions, RemoteTraceback, WorkerDiedError
from mtasklite_like import reductions as R
from mtasklite_like.mapreduce import BatchedArgumentError, ParallelFunction, parallelize, split_ranges
from tests import workflow_helpers as H
from tests.helpers import pid_running

THREADS = {"use_threads": True}

# (part function, reduction, how the results compare)
REDUCTION_CASES = {
    "flatten": (H.squares, "flatten"),
    "concat-str": (H.letters, "concat"),
    "concat-tuple": (H.as_tuple, "concat"),
    "sum": (H.part_sum, "sum"),
    "mean": (H.part_mean, "mean"),
    "product": (H.part_product, "product"),
    "min": (H.part_min, "min"),
    "max": (H.part_max, "max"),
    "counter": (H.histogram, "counter"),
    "union": (H.residues, "union"),
    "merge": (H.square_table, "merge"),
    "and": (H.mask_and, "and"),
    "or": (H.mask_or, "or"),
}


def _serial_or_error(function: Any, xs: list[int]) -> Any:
    try:
        return function(xs)
    except Exception as exc:
        return type(exc)


def _parallel_or_error(parallel: Any, xs: list[int]) -> Any:
    try:
        return parallel(xs)
    except Exception as exc:
        return type(exc)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("case", sorted(REDUCTION_CASES))
def test_each_reduction_equals_the_serial_computation(case: str) -> None:
    function, reduction = REDUCTION_CASES[case]
    # n_jobs=3 with 4 parts per worker: 37 and 100 items give parts of different sizes.
    parallel = parallelize(function, 3, reduction=reduction, **THREADS)
    for n in (0, 1, 5, 37, 100):
        xs = [(i * 37) % 101 for i in range(n)]
        expected = _serial_or_error(function, xs)
        got = _parallel_or_error(parallel, xs)
        if isinstance(expected, float):
            assert got == pytest.approx(expected), (case, n)
        else:
            # An empty input runs the function once on it, as the serial call does (errors included).
            assert got == expected, (case, n)
            assert type(got) is type(expected), (case, n)


@pytest.mark.timeout(30)
def test_numpy_outputs_concatenate_and_reduce_elementwise() -> None:
    xs = np.arange(23 * 3).reshape(23, 3)

    def rows(a: np.ndarray) -> np.ndarray:
        return a * 2

    def column_min(a: np.ndarray) -> np.ndarray:
        return a.min(axis=0)

    def column_max(a: np.ndarray) -> np.ndarray:
        return a.max(axis=0)

    def column_sum(a: np.ndarray) -> np.ndarray:
        return a.sum(axis=0)

    cases = ((rows, "concat"), (column_min, "min"), (column_max, "max"), (column_sum, "sum"))
    for function, reduction in cases:
        got = parallelize(function, 2, reduction=reduction, **THREADS)(xs)
        np.testing.assert_array_equal(got, function(xs))


@pytest.mark.timeout(30)
def test_mean_is_weighted_by_part_size() -> None:
    xs = list(range(10))
    parallel = parallelize(H.part_mean, 3, reduction="mean", parts_per_worker=1, **THREADS)
    sizes = [n for n, _, _ in parallelize(H.part_info, 3, reduction=None, parts_per_worker=1, **THREADS)(xs)]
    assert sizes == [4, 3, 3]  # uneven parts
    assert parallel(xs) == pytest.approx(statistics.mean(xs))
    # The mean of the part means, which an unweighted reduction would give, is not the mean.
    part_means = parallelize(H.part_mean, 3, reduction=None, parts_per_worker=1, **THREADS)(xs)
    assert statistics.mean(part_means) != pytest.approx(statistics.mean(xs))


@pytest.mark.timeout(30)
def test_composed_reductions() -> None:
    xs = list(range(41))
    flat_mean = R.compose(R.flatten, R.mean)
    assert parallelize(H.squares, 3, reduction=flat_mean, **THREADS)(xs) == pytest.approx(
        statistics.mean(H.squares(xs))
    )
    # The first step gets the part sizes: a weighted mean followed by a plain function.
    mean_then_round = R.compose(R.mean, round)
    assert parallelize(H.part_mean, 3, reduction=mean_then_round, **THREADS)(xs) == round(statistics.mean(xs))
    # Any callable taking the list of part outputs works as a reduction.
    assert parallelize(H.part_sum, 3, reduction=lambda outs: max(outs) - min(outs), **THREADS)(xs) > 0
    with pytest.raises(ValueError, match="at least one"):
        R.compose()
    with pytest.raises(TypeError, match="callables"):
        R.compose(R.flatten, 3)  # type: ignore[arg-type]


def test_reductions_called_directly() -> None:
    assert R.flatten([[1, 2], [], [3]]) == [1, 2, 3]
    assert R.flatten([]) == []
    assert R.concat(["ab", "c"]) == "abc"
    assert R.concat([b"ab", b"c"]) == b"abc"
    assert R.concat([(1,), (2, 3)]) == (1, 2, 3)
    assert R.concat([[1], [2]]) == [1, 2]
    np.testing.assert_array_equal(R.concat([np.zeros(2), np.ones(1)]), [0, 0, 1])
    assert R.total([]) == 0 and R.total([1, 2.5]) == 3.5
    assert R.product([]) == 1 and R.product([2, 3]) == 6
    assert R.mean([1, 2, 6]) == 3  # no sizes: each value counts once
    assert R.mean([1.0, 4.0], [3, 1]) == pytest.approx(1.75)
    assert R.mean([7.5], [0]) == 7.5  # one empty part: its own output
    assert R.minimum([3, 1, 2]) == 1 and R.maximum([3, 1, 2]) == 3
    assert R.counter_merge([{"a": 1}, Counter(a=2, b=1)]) == Counter(a=3, b=1)
    assert R.union([{1}, {2}]) == {1, 2} and R.union([frozenset({1})]) == frozenset({1})
    assert isinstance(R.union([frozenset({1}), frozenset({2})]), frozenset)
    assert R.dict_merge([{"a": 1, "b": 1}, {"a": 2}]) == {"a": 2, "b": 1}  # later part wins
    assert R.bitwise_and([0b110, 0b011]) == 0b010 and R.bitwise_or([0b100, 0b001]) == 0b101
    assert R.bitwise_and([{1, 2}, {2, 3}]) == {2}
    for empty_is_undefined in (R.mean, R.minimum, R.maximum, R.concat, R.bitwise_and, R.bitwise_or):
        with pytest.raises(ValueError, match="undefined"):
            empty_is_undefined([])
    with pytest.raises(ValueError, match="every part was empty"):
        R.mean([1.0, 2.0], [0, 0])
    with pytest.raises(ValueError, match="2 outputs but 1 part sizes"):
        R.total([1, 2], [1])
    assert set(R.REDUCTIONS) == {
        "flatten", "concat", "sum", "mean", "product", "min", "max", "counter", "union", "merge", "and", "or",
    }


# -- splitting --------------------------------------------------------------------------------------------


def test_split_ranges() -> None:
    assert split_ranges(0, 4) == [(0, 0)]
    assert split_ranges(3, 8) == [(0, 1), (1, 2), (2, 3)]
    assert split_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    for n, k in ((100, 12), (7, 7), (1000, 13)):
        ranges = split_ranges(n, k)
        sizes = [b - a for a, b in ranges]
        assert len(ranges) == min(n, k) and sum(sizes) == n
        assert max(sizes) - min(sizes) <= 1
        assert all(ranges[i][1] == ranges[i + 1][0] for i in range(len(ranges) - 1))


@pytest.mark.timeout(30)
def test_more_parts_than_workers_in_input_order() -> None:
    xs = list(range(100))
    info = parallelize(H.part_info, 3, reduction=None, **THREADS)(xs)
    sizes = [n for n, _, _ in info]
    assert len(info) == 12  # 4 parts per worker
    assert sum(sizes) == 100 and max(sizes) - min(sizes) <= 1
    firsts = [first for _, first, _ in info]
    assert firsts == sorted(firsts) and firsts[0] == 0  # contiguous parts, in input order

    assert len(parallelize(H.part_info, 3, reduction=None, parts_per_worker=1, **THREADS)(xs)) == 3
    by_size = parallelize(H.part_info, 3, reduction=None, part_size=25, **THREADS)
    assert [n for n, _, _ in by_size(xs)] == [25] * 4
    by_length = parallelize(H.part_info, 3, reduction=None, part_size=lambda n: n // 2, **THREADS)
    assert len(by_length(xs)) == 2
    # A short input: one item per part.
    assert [n for n, _, _ in parallelize(H.part_info, 3, reduction=None, **THREADS)(xs[:5])] == [1] * 5


@pytest.mark.timeout(30)
def test_a_slow_part_does_not_hold_back_the_other_workers() -> None:
    # The part with item 0 blocks until every other part has run. With n_jobs parts, or with a
    # part queued behind the blocked one, its worker would hold items that nobody else can take.
    done = threading.Event()
    seen: list[int] = []
    lock = threading.Lock()
    first_part = split_ranges(40, 16)[0][1]

    def work(xs: list[int]) -> list[int]:
        if 0 in xs:
            assert done.wait(10), "the other parts never finished"
        with lock:
            seen.extend(xs)
            if len(seen) == 40 - first_part:
                done.set()
        return xs

    out = parallelize(work, 4, reduction="flatten", **THREADS)(list(range(40)))
    assert out == list(range(40))


# -- calling conventions ------------------------------------------------------------------------------


def test_keeps_name_signature_and_docstring() -> None:
    parallel = parallelize(H.scale, 2, batched_arg="xs", reduction="flatten", **THREADS)
    assert isinstance(parallel, ParallelFunction)
    assert parallel.__name__ == "scale"
    assert parallel.__doc__ == H.scale.__doc__
    assert parallel.__wrapped__ is H.scale
    assert inspect.signature(parallel) == inspect.signature(H.scale)
    assert "scale" in repr(parallel) and "'xs'" in repr(parallel)


@pytest.mark.timeout(30)
def test_positional_and_keyword_calls() -> None:
    xs = list(range(17))
    expected = H.scale(5, xs, factor=3)
    parallel = parallelize(H.scale, 3, batched_arg="xs", reduction="flatten", **THREADS)
    assert parallel(5, xs, 3) == expected
    assert parallel(5, xs, factor=3) == expected
    assert parallel(offset=5, xs=xs, factor=3) == expected
    assert parallel(xs=xs, factor=3, offset=5) == expected
    assert parallel(5, xs) == H.scale(5, xs)  # default kept
    with pytest.raises(TypeError, match="missing"):
        parallel(5)
    # A batched argument received through **kwargs.
    by_kw = parallelize(H.by_keyword, 2, batched_arg="xs", reduction="flatten", **THREADS)
    assert by_kw(xs=xs, k=2) == [2 * x for x in xs]
    with pytest.raises(TypeError, match="'xs' was not passed"):
        by_kw(k=2)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("use_threads", [True, False], ids=["threads", "processes"])
def test_methods(use_threads: bool) -> None:
    xs = list(range(23))
    scaler = H.Scaler(3)
    bound = parallelize(scaler.times, 2, reduction="flatten", use_threads=use_threads)
    assert bound.batched_arg == "xs"
    assert bound(xs) == scaler.times(xs)
    klass = parallelize(H.Scaler.plus_base, 2, reduction="flatten", use_threads=use_threads)
    assert klass(xs=xs) == H.Scaler.plus_base(xs)
    # Decorated in the class body: `self` reaches every part, the list is split.
    assert scaler.weighted_total(xs) == 3 * sum(xs)
    assert H.Scaler.weighted_total(scaler, xs) == 3 * sum(xs)
    assert list(inspect.signature(scaler.weighted_total).parameters) == ["xs"]


def test_a_leading_self_or_cls_parameter_is_skipped() -> None:
    def method_like(self: Any, items: list[int]) -> list[int]:
        return items

    def classmethod_like(cls: Any, items: list[int]) -> list[int]:
        return items

    assert parallelize(method_like, 2, reduction=None).batched_arg == "items"
    assert parallelize(classmethod_like, 2, reduction=None).batched_arg == "items"


def test_decorated_functions_pickle_by_reference() -> None:
    # A decorated function's name now holds the wrapper: the part runner pickles a reference to it.
    runner = H.decorated_squares._runner
    copy = pickle.loads(pickle.dumps(runner))
    assert copy.function is H.decorated_squares.__wrapped__
    method_runner = H.Scaler.weighted_total._runner
    assert pickle.loads(pickle.dumps(method_runner)).function is H.Scaler.weighted_total.__wrapped__
    assert H.decorated_squares(list(range(9))) == H.squares(list(range(9)))


@pytest.mark.timeout(60)
def test_spawn_start_method_is_forwarded() -> None:
    # Under spawn the runner travels by pickling: the decorated module-level function by reference.
    parallel = parallelize(H.pids, 2, reduction="flatten", start_method="spawn")
    got = parallel(list(range(8)))
    assert len(got) == 8 and os.getpid() not in got
    spawned = ParallelFunction(H.decorated_squares.__wrapped__, 2, reduction="flatten", start_method="spawn")
    assert spawned(list(range(10))) == H.squares(list(range(10)))


@pytest.mark.timeout(30)
def test_sequence_types() -> None:
    parallel = parallelize(H.part_info, 2, reduction=None, **THREADS)
    cases = (((1, 2, 3, 4, 5), "tuple"), (range(5), "range"), ("abcde", "str"), ([1, 2, 3], "list"))
    for value, kind in cases:
        info = parallel(value)
        assert {k for _, _, k in info} == {kind}
        assert sum(n for n, _, _ in info) == len(value)
    array = np.arange(30).reshape(10, 3)
    info = parallel(array)
    assert {k for _, _, k in info} == {"ndarray"} and sum(n for n, _, _ in info) == 10
    assert np.array_equal(parallelize(lambda a: a + 1, 2, reduction="concat", **THREADS)(array), array + 1)


@pytest.mark.timeout(30)
def test_pandas_objects_are_split_by_position() -> None:
    pandas = pytest.importorskip("pandas")
    series = pandas.Series(range(10), index=range(100, 110))
    out = parallelize(lambda s: s * 2, 3, reduction="concat", **THREADS)(series)
    assert out.equals(series * 2)
    index = pandas.Index(list("abcdefg"))
    assert parallelize(lambda ix: list(ix), 3, reduction="flatten", **THREADS)(index) == list("abcdefg")


@pytest.mark.parametrize(
    "value", [iter([1, 2]), (x for x in range(3)), {1, 2}, {"a": 1}, 5, None], ids=lambda v: type(v).__name__
)
def test_a_batched_argument_that_is_not_a_sequence_fails_clearly(value: Any) -> None:
    parallel = parallelize(H.scale, 2, batched_arg="xs", reduction="flatten", **THREADS)
    with pytest.raises(BatchedArgumentError, match=r"'xs' must be a sized sequence") as info:
        parallel(0, value)
    assert isinstance(info.value, TypeError) and isinstance(info.value, ValueError)
    assert type(value).__name__ in str(info.value)


# -- choosing the reduction -----------------------------------------------------------------------------


def test_reduction_chosen_from_the_return_annotation() -> None:
    def annotated(returns: Any) -> Any:
        def f(xs):  # type: ignore[no-untyped-def]
            return xs

        f.__annotations__ = {"return": returns}
        return f

    cases = {
        list[int]: R.flatten, list: R.flatten, tuple[int, ...]: R.concat, set[int]: R.union,
        frozenset: R.union, dict[str, int]: R.dict_merge, Counter[str]: R.counter_merge, str: R.concat,
        bytes: R.concat, np.ndarray: R.concat, "list[int]": R.flatten, "Counter[str]": R.counter_merge,
        "typing.Dict[str, int]": R.dict_merge,
    }
    for returns, reduction in cases.items():
        assert parallelize(annotated(returns), 2).reduction is reduction, returns
    assert parallelize(H.histogram, 2).reduction is R.counter_merge
    for returns in (int, float, None, Any, "Foo"):
        with pytest.raises(TypeError, match="no automatic reduction"):
            parallelize(annotated(returns), 2)
    with pytest.raises(TypeError, match="no return annotation"):
        parallelize(H.no_annotation, 2)
    # An explicit reduction, or None, needs no annotation.
    assert parallelize(H.returns_int, 2, reduction="sum", **THREADS)(list(range(9))) == 9
    assert parallelize(H.no_annotation, 2, reduction=None).reduction is None


def test_wrong_options_fail_at_once() -> None:
    with pytest.raises(TypeError, match=r"unknown keyword argument 'n_job'.*use_threads"):
        parallelize(H.squares, 2, n_job=3)
    for own in ("argument_type", "is_unordered"):
        with pytest.raises(TypeError, match=f"'{own}' is not an option here"):
            parallelize(H.squares, 2, **{own: "args" if own == "argument_type" else True})
    with pytest.raises(ValueError, match="unknown reduction 'avg'"):
        parallelize(H.squares, 2, reduction="avg")
    with pytest.raises(TypeError, match="reduction must be"):
        parallelize(H.squares, 2, reduction=3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"no parameter 'ys'.*xs"):
        parallelize(H.squares, 2, batched_arg="ys")
    with pytest.raises(ValueError, match="parts_per_worker"):
        parallelize(H.squares, 2, parts_per_worker=0)
    with pytest.raises(ValueError, match="part_size"):
        parallelize(H.squares, 2, part_size=0)
    # The pool's own checks run when the parallel function is made, not at the first call.
    with pytest.raises(ValueError, match="exception_behavior"):
        parallelize(H.squares, 2, exception_behavior="loud")
    with pytest.raises(ValueError, match="start_method"):
        parallelize(H.squares, 2, start_method="teleport")
    with pytest.raises(TypeError, match="callable"):
        parallelize(42)  # type: ignore[call-overload]


# -- the pool's options come through ----------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_threads_and_processes() -> None:
    xs = list(range(12))
    tids = parallelize(H.thread_ids, 2, use_threads=True)(xs)
    assert threading.get_ident() not in tids and len(set(tids)) == 2
    worker_pids = parallelize(H.pids, 2)(xs)
    assert os.getpid() not in worker_pids and len(set(worker_pids)) == 2


@pytest.mark.timeout(30)
def test_initializer_and_british_spelling_are_forwarded() -> None:
    parallel = parallelize(
        H.add_init_value, 2, initializer=H.set_init_value, initargs=(1000,), exception_behaviour="ignore"
    )
    assert parallel.exception_behavior == "ignore"
    assert parallel(list(range(6))) == [1000 + x for x in range(6)]


@pytest.mark.timeout(30)
def test_retries_are_forwarded(tmp_path: Any) -> None:
    parallel = parallelize(H.fail_first_attempt, 2, reduction="flatten", retries=1)
    assert parallel(list(range(10)), str(tmp_path)) == list(range(10))
    assert len(list(tmp_path.iterdir())) == 8  # every part failed once


@pytest.mark.timeout(30)
def test_immediate_raises_the_parts_exception_with_the_worker_traceback() -> None:
    parallel = parallelize(H.fail_on, 2, reduction="flatten")
    with pytest.raises(ValueError, match="item 13 is bad") as info:
        parallel(list(range(40)))
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "fail_on" in str(info.value.__cause__)


@pytest.mark.timeout(30)
def test_deferred_runs_every_part_then_raises_all_failures() -> None:
    seen: list[int] = []
    parallel = parallelize(
        H.record_then_fail, 2, batched_arg="xs", reduction="flatten", exception_behavior="deferred",
        part_size=2, **THREADS,
    )
    with pytest.raises(DeferredExceptions) as info:
        parallel(list(range(20)), seen)
    assert sorted(seen) == list(range(0, 20, 2))  # every part ran
    assert [str(e) for e in info.value.exceptions] == ["item 3 is bad"]


@pytest.mark.timeout(30)
def test_ignore_returns_the_failure_in_place_of_the_result() -> None:
    xs = list(range(40))
    one = parallelize(H.fail_on, 2, reduction="flatten", exception_behavior="ignore")(xs)
    assert isinstance(one, ValueError) and str(one) == "item 13 is bad"
    several = parallelize(H.fail_on, 2, reduction="flatten", exception_behavior="ignore")(xs, (3, 30))
    assert isinstance(several, DeferredExceptions)
    assert [str(e) for e in several.exceptions] == ["item 3 is bad", "item 30 is bad"]
    # Without a reduction the failed part's exception takes that part's place, the others are kept.
    parts = parallelize(H.fail_on, 2, reduction=None, exception_behavior="ignore", part_size=10)(xs)
    assert [isinstance(p, ValueError) for p in parts] == [False, True, False, False]
    assert parts[0] == list(range(10)) and parts[3] == list(range(30, 40))


@pytest.mark.timeout(30)
def test_a_killed_worker_raises_or_fails_only_its_part() -> None:
    xs = list(range(20))
    with pytest.raises(WorkerDiedError) as info:
        parallelize(H.die_on, 2, reduction="flatten")(xs)
    assert info.value.exitcode == -9
    parts = parallelize(H.die_on, 2, reduction=None, exception_behavior="ignore", part_size=5)(xs)
    assert [type(p).__name__ for p in parts] == ["list", "WorkerDiedError", "list", "list"]


# -- workers' lifetime -----------------------------------------------------------------------------------


def _wait_gone(pids: set[int], seconds: float = 5.0) -> set[int]:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and any(pid_running(p) for p in pids):
        time.sleep(0.05)
    return {p for p in pids if pid_running(p)}


@pytest.mark.timeout(30)
def test_with_keeps_workers_between_calls_and_stops_them_on_exit() -> None:
    xs = list(range(16))
    with parallelize(H.pids, 2) as parallel:
        first = set(parallel(xs))
        second = set(parallel(xs))
        assert first == second and len(first) == 2
    assert _wait_gone(first) == set()
    # Without `with`, each call stops its workers when it returns.
    once = set(parallelize(H.pids, 2)(xs))
    assert _wait_gone(once) == set()


def test_entering_twice_is_an_error() -> None:
    parallel = parallelize(H.squares, 2, **THREADS)
    with parallel, pytest.raises(RuntimeError, match="already in use"):
        parallel.__enter__()


# -- progress ---------------------------------------------------------------------------------------------


class RecordingBar:
    """A stand-in bar class that records what it is told."""

    made: list[RecordingBar] = []

    def __init__(self, total: int, **options: Any) -> None:
        self.total = total
        self.options = options
        self.updates: list[int] = []
        self.closed = False
        RecordingBar.made.append(self)

    def update(self, n: int) -> None:
        self.updates.append(n)

    def close(self) -> None:
        self.closed = True


@pytest.mark.timeout(30)
def test_progress_bar_counts_items() -> None:
    RecordingBar.made.clear()
    parallel = parallelize(
        H.squares, 3, progress={"desc": "squaring"}, tqdm_class=RecordingBar, part_size=7, **THREADS
    )
    assert parallel(list(range(50))) == H.squares(list(range(50)))
    (bar,) = RecordingBar.made
    assert bar.total == 50 and sum(bar.updates) == 50 and len(bar.updates) == 8 and bar.closed
    assert bar.options["desc"] == "squaring"

    buffer = io.StringIO()
    parallelize(H.squares, 2, progress={"file": buffer}, tqdm_class=tqdm, **THREADS)(list(range(30)))
    assert "30/30" in buffer.getvalue()


@pytest.mark.timeout(30)
def test_the_bar_is_closed_when_a_part_fails() -> None:
    RecordingBar.made.clear()
    with pytest.raises(ValueError):
        parallelize(H.fail_on, 2, progress=True, tqdm_class=RecordingBar, **THREADS)(list(range(20)))
    assert RecordingBar.made[0].closed
