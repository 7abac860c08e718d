"""``mtasklite_like.workercontext`` beside the real ``workercontext`` 0.1.1 (in the test extra).

The README's examples and every reduction are run through both; the deliberate differences
(docs/workflows.md) are asserted as such.
"""

from __future__ import annotations

import inspect
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

import mtasklite_like.workercontext as ours
from mtasklite_like import RemoteTraceback
from mtasklite_like.workercontext import reductions as ours_red
from tests import workflow_helpers as H

theirs = pytest.importorskip("workercontext")
theirs_red = pytest.importorskip("workercontext.reductions")

PUBLIC = ["MultiWorker", "MultiWorkerAsync", "parallelise", "auto_parallelise", "parallelise_async"]
REDUCTIONS = [
    "flatten_reduction", "set_union_reduction", "dict_merge_reduction", "sum_reduction", "average_reduction",
    "histogram_reduction", "product_reduction", "string_concatenation_reduction", "bitwise_and_reduction",
    "bitwise_or_reduction", "min_reduction", "max_reduction", "ReductionComposition",
]
ARR = list(range(100))


def _both(run: Any) -> tuple[Any, Any]:
    """``run(lib, reductions)`` with the real package and with ours."""
    return run(theirs, theirs_red), run(ours, ours_red)


def test_same_names_and_signatures() -> None:
    for name in PUBLIC:
        theirs_params = inspect.signature(getattr(theirs, name)).parameters
        ours_params = inspect.signature(getattr(ours, name)).parameters
        assert list(ours_params) == list(theirs_params), name
        assert [p.default for p in ours_params.values()] == [p.default for p in theirs_params.values()], name
    for name in REDUCTIONS:
        theirs_params = inspect.signature(getattr(theirs_red, name)).parameters
        assert list(inspect.signature(getattr(ours_red, name)).parameters) == list(theirs_params), name
    # `from workercontext.reductions import x` migrates by renaming the package.
    from mtasklite_like.workercontext.reductions import flatten_reduction

    assert ours.reductions.flatten_reduction is flatten_reduction


# -- the README's examples ------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_readme_multiworker_without_reduction() -> None:
    def run(lib: Any, _red: Any) -> Any:
        with lib.MultiWorker(H.my_func, n_processes=8) as f:
            return f(ARR)

    expected, got = _both(run)
    assert got == expected  # the same list of slice outputs: the same slices
    assert len(got) == 9 and got[0] == [el * 2 for el in range(12)]


@pytest.mark.timeout(60)
def test_readme_flatten_reduction_and_parallelise() -> None:
    def run(lib: Any, red: Any) -> Any:
        with lib.MultiWorker(H.my_func, n_processes=8, reduction=red.flatten_reduction) as f:
            flat = f(ARR)
        return flat, lib.parallelise(H.my_func, n_processes=8)(ARR)

    (expected_flat, expected_parts), (flat, parts) = _both(run)
    assert flat == expected_flat == H.my_func(ARR)
    assert parts == expected_parts


@pytest.mark.timeout(60)
def test_readme_auto_parallelise(capsys: pytest.CaptureFixture[str]) -> None:
    expected, got = _both(lambda lib, _red: lib.auto_parallelise(H.my_func)(ARR))
    assert got == expected == H.my_func(ARR)
    out = capsys.readouterr().out
    assert "auto_parallelise: my_func returns" in out and "flattened" in out  # ours says what it chose
    for function, reduced in (
        (H.returns_set, set), (H.returns_dict, dict), (H.returns_str, str), (H.returns_float, list),
    ):
        expected, got = _both(lambda lib, _red, fn=function: lib.auto_parallelise(fn)(ARR))
        assert got == expected and type(got) is reduced, function.__name__
    # Deliberate difference: a builtin generic (PEP 585) return annotation is understood too;
    # workercontext applies no reduction for `-> list[int]` (only for `-> typing.List[int]`).
    theirs_parts = theirs.auto_parallelise(H.my_func_builtin_generic)(ARR)
    assert len(theirs_parts) == len(H.my_func(ARR)) // len(theirs_parts[0])
    assert [x for part in theirs_parts for x in part] == H.my_func(ARR)
    assert ours.auto_parallelise(H.my_func_builtin_generic)(ARR) == H.my_func(ARR)
    for bad in (H.no_annotation, H.untyped):
        with pytest.raises(ValueError):
            theirs.auto_parallelise(bad)
        with pytest.raises(ValueError, match="type hints"):
            ours.auto_parallelise(bad)
    with pytest.raises(ValueError):
        theirs.auto_parallelise(_no_return)
    with pytest.raises(ValueError, match="return type hint"):
        ours.auto_parallelise(_no_return)


def _no_return(arr: list[int]):  # type: ignore[no-untyped-def]
    return arr


@pytest.mark.timeout(60)
def test_readme_reduction_composition(capsys: pytest.CaptureFixture[str]) -> None:
    def run(lib: Any, red: Any) -> Any:
        reductions = red.ReductionComposition([red.flatten_reduction, red.average_reduction])
        with lib.MultiWorker(H.my_func, n_processes=8, reduction=reductions) as f:
            return f(ARR)

    theirs_value = run(theirs, theirs_red)
    theirs_printed = capsys.readouterr().out
    ours_value = run(ours, ours_red)
    ours_printed = capsys.readouterr().out
    assert ours_value == theirs_value == sum(H.my_func(ARR)) / 100
    # Deliberate difference: workercontext prints every intermediate value; ours prints nothing.
    assert "[[0, 2, 4" in theirs_printed
    assert ours_printed == ""


@pytest.mark.timeout(60)
def test_readme_batched_arg_by_name() -> None:
    def run(lib: Any, red: Any) -> Any:
        with lib.MultiWorker(
            H.my_func_two_lists, batched_arg="l2", n_processes=8, reduction=red.flatten_reduction
        ) as f:
            return f(list(range(100)), list(range(100)))

    expected, got = _both(run)
    assert got == expected == [x + 4950 for x in range(100)]


@pytest.mark.timeout(60)
def test_readme_async(tmp_path: Path) -> None:
    def run(lib: Any, _red: Any) -> Any:
        res: list[Any] = []
        with lib.MultiWorkerAsync(H.my_func, n_processes=8, return_container=res) as f:
            assert f(ARR) is None
        return res

    expected, got = _both(run)
    assert got == expected and len(got) == 9

    # No container: the work happens in the background and the call returns None at once.
    with ours.MultiWorkerAsync(H.with_side_effect, n_processes=2) as f:
        assert f(list(range(10)), str(tmp_path)) is None
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{x}.done" for x in range(10))

    background = tmp_path / "background"
    background.mkdir()
    assert ours.parallelise_async(H.with_side_effect, n_processes=2)(list(range(6)), str(background)) is None
    deadline = time.monotonic() + 20
    while len(list(background.iterdir())) < 6 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(list(background.iterdir())) == 6


@pytest.mark.timeout(60)
def test_async_calls_are_all_collected_and_failures_raised() -> None:
    res: list[Any] = []
    with ours.MultiWorkerAsync(H.slice_len, n_processes=2, return_container=res) as f:
        f(list(range(10)))
        f(list(range(4)))
    # Deliberate difference: workercontext keeps only the last call's outputs.
    assert res == [5, 5, 2, 2]
    with pytest.raises(ValueError, match="item 13 is bad"), ours.MultiWorkerAsync(H.fail_on, 2) as f:
        f(list(range(20)))


# -- the default batched argument ----------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_default_batched_argument_rules() -> None:
    assert ours.MultiWorker(H.my_func_two_lists, 2).batched_arg == "l1"  # first list-annotated argument
    assert ours.MultiWorker(H.untyped, 2).batched_arg == "first"  # not all annotated: the first one
    assert ours.MultiWorker(H.Scaler(2).times, 2).batched_arg == "xs"  # self skipped
    expected, got = _both(lambda lib, _red: lib.parallelise(H.untyped, 3)(list(range(10)), 5))
    assert got == expected
    expected, got = _both(lambda lib, _red: lib.parallelise(H.Scaler(2).times, 3)(list(range(10))))
    assert got == expected
    with pytest.raises(ValueError):
        theirs.parallelise(H.typed_no_list, 2)(1, 2)
    with pytest.raises(ValueError, match="no argument is annotated as a list"):
        ours.parallelise(H.typed_no_list, 2)


@pytest.mark.timeout(60)
def test_verbose_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    ours.parallelise(H.my_func, 4, verbose=True)(ARR)
    out = capsys.readouterr().out
    assert "'arr'" in out and "slices of 25" in out
    ours.parallelise(H.my_func, 4)(ARR)
    assert capsys.readouterr().out == ""


# -- reductions, one by one -------------------------------------------------------------------------------

REDUCTION_INPUTS = {
    "flatten_reduction": [[[1, 2], [3], []], [[]], []],
    "set_union_reduction": [[{1, 2}, {2, 3}], [set()], []],
    "dict_merge_reduction": [[{"a": 1}, {"a": 2, "b": 3}], []],
    "sum_reduction": [[1, 2, 3.5], [], [7]],
    "average_reduction": [[1, 2, 3, 10], [4.5]],
    "histogram_reduction": [[1, 2, 2, "a", 1, 2], []],
    "product_reduction": [[2, 3, 4], [], [0.5, 4]],
    "string_concatenation_reduction": [["ab", "", "c"], []],
    "bitwise_and_reduction": [[0b1110, 0b0111, 0b0110], [5]],
    "bitwise_or_reduction": [[0b1000, 0b0001], [5]],
    "min_reduction": [[3, 1, 2], ["b", "a"]],
    "max_reduction": [[3, 1, 2], ["b", "a"]],
}


@pytest.mark.parametrize("name", sorted(REDUCTION_INPUTS))
def test_each_reduction_matches(name: str) -> None:
    for value in REDUCTION_INPUTS[name]:
        expected = getattr(theirs_red, name)(value)
        got = getattr(ours_red, name)(value)
        assert got == expected and type(got) is type(expected), (name, value)


def test_reduction_composition_matches() -> None:
    steps = ["flatten_reduction", "sum_reduction"]
    value = [[1, 2], [3]]
    theirs_comp = theirs_red.ReductionComposition([getattr(theirs_red, s) for s in steps])
    ours_comp = ours_red.ReductionComposition([getattr(ours_red, s) for s in steps])
    assert ours_comp(value) == theirs_comp(value) == 6
    assert ours_red.ReductionComposition()(value) == theirs_red.ReductionComposition()(value) == value


def test_empty_lists_in_reductions_fail_clearly() -> None:
    # Deliberate difference: a ValueError that says why, instead of ZeroDivisionError / IndexError.
    with pytest.raises(ZeroDivisionError):
        theirs_red.average_reduction([])
    with pytest.raises(IndexError):
        theirs_red.bitwise_and_reduction([])
    for name in ("average_reduction", "bitwise_and_reduction", "bitwise_or_reduction"):
        with pytest.raises(ValueError, match="undefined"):
            getattr(ours_red, name)([])


# -- deliberate differences ----------------------------------------------------------------------------------


@pytest.mark.timeout(60)
def test_average_of_uneven_slices_is_the_true_mean() -> None:
    def run(lib: Any, red: Any) -> Any:
        with lib.MultiWorker(H.slice_mean, n_processes=8, reduction=red.average_reduction) as f:
            return f(ARR)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ours_red.WeightedAverageWarning)
        theirs_value, ours_value = _both(run)
    true_mean = sum(ARR) / len(ARR)
    # 100 items on 8 processes: eight slices of 12 and one of 4. The mean of the slice means is off.
    assert theirs_value == pytest.approx(53.0555, abs=1e-3)
    assert ours_value == pytest.approx(true_mean)
    # Also as the first step of a composition.
    comp = ours_red.ReductionComposition([ours_red.average_reduction, round])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ours_red.WeightedAverageWarning)
        with ours.MultiWorker(H.slice_mean, n_processes=8, reduction=comp) as f:
            assert f(ARR) == round(true_mean)


TEN = [float(i) for i in range(10)]  # on 3 workers: slices of 3, 3, 3 and 1


@pytest.mark.timeout(60)
def test_ten_floats_on_three_workers_give_the_mean_warn_once_and_the_original_by_name(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(ours_red, "_warned", False)  # once per process: as if this were the first
    with theirs.MultiWorker(H.slice_mean, n_processes=3, reduction=theirs_red.average_reduction) as f:
        assert f(TEN) == 5.25  # the mean of the slice means 1, 4, 7 and 9
    with (
        pytest.warns(ours_red.WeightedAverageWarning) as caught,
        ours.MultiWorker(H.slice_mean, n_processes=3, reduction=ours_red.average_reduction) as f,
    ):
        assert f(TEN) == 4.5  # the mean of the items
    assert len(caught) == 1
    message = str(caught[0].message)
    assert "(3, 3, 3, 1 items)" in message and "unweighted_average_reduction" in message
    assert caught[0].filename == __file__  # it points at the call, not into the package
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # any warning now fails the test
        with ours.MultiWorker(H.slice_mean, n_processes=3, reduction=ours_red.average_reduction) as f:
            assert f(TEN) == 4.5  # shown once
        with ours.MultiWorker(H.slice_mean, n_processes=3,
                              reduction=ours_red.unweighted_average_reduction) as f:
            assert f(TEN) == 5.25  # workercontext's arithmetic, by name, and no warning


@pytest.mark.timeout(60)
def test_even_slices_give_the_same_mean_and_no_warning(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ours_red, "_warned", False)
    nine = TEN[:9]
    with theirs.MultiWorker(H.slice_mean, n_processes=3, reduction=theirs_red.average_reduction) as f:
        expected = f(nine)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with ours.MultiWorker(H.slice_mean, n_processes=3, reduction=ours_red.average_reduction) as f:
            assert f(nine) == expected == 4.0
    assert ours_red._warned is False


def test_unweighted_average_reduction_is_workercontexts_average() -> None:
    theirs_params = inspect.signature(theirs_red.average_reduction).parameters
    assert list(inspect.signature(ours_red.unweighted_average_reduction).parameters) == list(theirs_params)
    for values in ([1.0, 4.0, 7.0, 9.0], [2, 3], [0.5]):
        assert ours_red.unweighted_average_reduction(values) == theirs_red.average_reduction(values)


def test_the_migration_guide_opens_with_the_difference() -> None:
    guide = Path(__file__).resolve().parents[2] / "docs" / "migration" / "workercontext.md"
    opening = "\n".join(guide.read_text().splitlines()[:12])
    for words in ("`average_reduction` gives a different number", "**4.5**", "**5.25**",
                  "`unweighted_average_reduction`", "`WeightedAverageWarning`"):
        assert words in opening, words


@pytest.mark.timeout(60)
def test_empty_list_runs_the_function_once_instead_of_dividing_by_zero() -> None:
    with pytest.raises(ZeroDivisionError):
        theirs.parallelise(H.my_func, 4, reduction=theirs_red.flatten_reduction)([])
    assert ours.parallelise(H.my_func, 4, reduction=ours_red.flatten_reduction)([]) == []
    assert ours.parallelise(H.my_func, 4)([]) == [[]]


@pytest.mark.timeout(60)
def test_any_sized_sequence_is_accepted_and_others_fail_with_value_error() -> None:
    with pytest.raises(ValueError, match="must be an instance of list"):
        theirs.parallelise(H.my_func, 2)(tuple(ARR))
    flat = ours.parallelise(H.my_func, 2, reduction=ours_red.flatten_reduction)
    assert flat(tuple(ARR)) == H.my_func(ARR)
    assert flat(range(10)) == H.my_func(range(10))
    with pytest.raises(ValueError, match="'arr' must be a sized sequence"):
        ours.parallelise(H.my_func, 2)(x for x in ARR)


@pytest.mark.timeout(60)
def test_a_failing_slice_raises_with_the_worker_traceback() -> None:
    with pytest.raises(ValueError, match="item 13 is bad"):
        theirs.parallelise(H.fail_on, 2)(ARR)
    with pytest.raises(ValueError, match="item 13 is bad") as info:
        ours.parallelise(H.fail_on, 2)(ARR)
    assert isinstance(info.value.__cause__, RemoteTraceback)


@pytest.mark.timeout(60)
def test_a_killed_worker_raises_instead_of_hanging() -> None:
    from mtasklite_like import WorkerDiedError

    with pytest.raises(WorkerDiedError):
        ours.parallelise(H.die_on, 2)(list(range(10)))
