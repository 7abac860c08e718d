"""``workercontext.reductions``: the same names, the same results on the same list, with one exception.

**``average_reduction`` gives a different number as a ``MultiWorker`` reduction.** Slices are uneven
(``len // n`` items each, the rest in one more slice), and ``workercontext`` averages the slice means as
they come, which is not the mean of the items: 10 floats ``0.0 .. 9.0`` on 3 workers are sliced 3, 3, 3, 1,
and ``workercontext`` gives 5.25 where the mean is 4.5. Here each slice's output is weighted by its size,
so the result is the mean over all items (4.5); the first time the slices differ in size, a
[`WeightedAverageWarning`][mtasklite_like.workercontext.reductions.WeightedAverageWarning] says so.
For ``workercontext``'s arithmetic, pass
[`unweighted_average_reduction`][mtasklite_like.workercontext.reductions.unweighted_average_reduction].
Called directly on a list, ``average_reduction`` is the plain mean, as before.

Other deliberate differences (see docs/workflows.md):

- [`ReductionComposition`][mtasklite_like.workercontext.reductions.ReductionComposition] prints nothing
  (``workercontext`` prints every intermediate value).
- [`average_reduction`][mtasklite_like.workercontext.reductions.average_reduction],
  [`bitwise_and_reduction`][mtasklite_like.workercontext.reductions.bitwise_and_reduction] and
  [`bitwise_or_reduction`][mtasklite_like.workercontext.reductions.bitwise_or_reduction] on an empty list
  raise a ``ValueError`` that says so, instead of ``ZeroDivisionError`` / ``IndexError``.
"""

from __future__ import annotations

import os
import sys
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .. import reductions as _native

__all__ = [
    "ReductionComposition",
    "WeightedAverageWarning",
    "average_reduction",
    "bitwise_and_reduction",
    "bitwise_or_reduction",
    "dict_merge_reduction",
    "flatten_reduction",
    "histogram_reduction",
    "max_reduction",
    "min_reduction",
    "product_reduction",
    "set_union_reduction",
    "string_concatenation_reduction",
    "sum_reduction",
    "unweighted_average_reduction",
]


class WeightedAverageWarning(UserWarning):
    """``average_reduction`` weighted uneven slices, so its result differs from ``workercontext``'s.

    Shown once per process, the first time it happens; silence it with
    ``warnings.filterwarnings("ignore", category=WeightedAverageWarning)``.
    """


class ReductionComposition:
    """Apply several reductions in turn, each to the previous one's value (a pipeline).

    ``ReductionComposition([flatten_reduction, average_reduction])`` averages all items.
    """

    def __init__(self, reductions: Sequence[Callable[..., Any]] = ()) -> None:
        self._reductions = list(reductions)

    def __call__(self, arg: Any) -> Any:
        """Run the pipeline on ``arg``; the last reduction's value is the result."""
        for reduction in self._reductions:
            arg = reduction(arg)
        return arg

    def __repr__(self) -> str:
        names = ", ".join(getattr(r, "__name__", repr(r)) for r in self._reductions)
        return f"ReductionComposition([{names}])"


def flatten_reduction(lst: list[list[Any]]) -> list[Any]:
    """One list of every element of the slice outputs, order kept."""
    return list(_native.flatten(lst))


def set_union_reduction(lst: list[set[Any]]) -> set[Any]:
    """The union of the slice outputs (sets)."""
    merged: set[Any] = set()
    for part in lst:
        merged |= part
    return merged


def dict_merge_reduction(lst: list[dict[Any, Any]]) -> dict[Any, Any]:
    """The slice outputs (dicts) merged; a later slice wins on a repeated key."""
    return dict(_native.dict_merge(lst))


def sum_reduction(arr: list[float]) -> float:
    """The sum of the slice outputs (0 for none)."""
    result: Any = 0
    for value in arr:
        result += value
    return result  # type: ignore[no-any-return]


def average_reduction(lst: list[float]) -> float:
    """The mean of the list given. As a ``MultiWorker`` reduction, the slice outputs (each the mean
    of its slice) are weighted by slice size, so the result is the mean over all items: **not**
    ``workercontext``'s result when the slices differ in size (see the module's notes, and
    [`unweighted_average_reduction`][mtasklite_like.workercontext.reductions.unweighted_average_reduction]
    for its arithmetic)."""
    if not lst:
        raise ValueError("average_reduction: the average of an empty list is undefined")
    return sum(lst) / len(lst)


def unweighted_average_reduction(lst: list[float]) -> float:
    """``workercontext``'s ``average_reduction``: the plain mean of the slice outputs, each slice
    counting once whatever its size. It is the mean of the slice means, not of the items, when the
    slices differ in size (10 floats ``0.0 .. 9.0`` on 3 workers: 5.25, the items' mean being 4.5);
    use it only to reproduce results computed with ``workercontext``."""
    if not lst:
        raise ValueError("unweighted_average_reduction: the average of an empty list is undefined")
    return sum(lst) / len(lst)


def histogram_reduction(arr: list[Any]) -> dict[Any, int]:
    """How many times each distinct value occurs in the list, in order of first occurrence."""
    counts: dict[Any, int] = {}
    for value in arr:
        counts[value] = counts.get(value, 0) + 1
    return counts


def product_reduction(arr: list[float]) -> float:
    """The product of the slice outputs (1 for none)."""
    result: Any = 1
    for value in arr:
        result *= value
    return result  # type: ignore[no-any-return]


def string_concatenation_reduction(arr: list[str]) -> str:
    """The slice outputs (strings) joined in order."""
    return "".join(arr)


def bitwise_and_reduction(arr: list[int]) -> int:
    """``a & b & ...`` over the slice outputs."""
    return _native.bitwise_and(arr)  # type: ignore[no-any-return]


def bitwise_or_reduction(arr: list[int]) -> int:
    """``a | b | ...`` over the slice outputs."""
    return _native.bitwise_or(arr)  # type: ignore[no-any-return]


def min_reduction(arr: list[float]) -> float:
    """The smallest slice output."""
    return min(arr)


def max_reduction(arr: list[float]) -> float:
    """The largest slice output."""
    return max(arr)


def to_native(reduction: Callable[..., Any] | None) -> Callable[..., Any] | None:
    """The reduction ``MultiWorker`` applies for ``reduction``:
    [`average_reduction`][mtasklite_like.workercontext.reductions.average_reduction] (also as the first step
    of a [`ReductionComposition`][mtasklite_like.workercontext.reductions.ReductionComposition]) becomes the
    size-weighted mean, which warns once when the sizes differ (a ``WeightedAverageWarning``)."""
    if reduction is average_reduction:
        return _WEIGHTED_MEAN
    if isinstance(reduction, ReductionComposition) and reduction._reductions:
        first, *rest = reduction._reductions
        if first is average_reduction:
            return _native.compose(_WEIGHTED_MEAN, *rest)
    return reduction


#: whether this process has shown the WeightedAverageWarning (it is shown once)
_warned = False


def _weighted_mean(values: list[Any], sizes: list[int] | None) -> Any:
    """The size-weighted mean; the first time the sizes differ, say that workercontext's differs."""
    global _warned
    if sizes is not None and len(set(sizes)) > 1 and not _warned:
        _warned = True
        shown = ", ".join(map(str, sizes))
        warnings.warn(
            f"average_reduction weighted the slice outputs by slice size ({shown} items): the result is "
            "the mean over all items, which workercontext 0.1.1 does not give (it averages the slice "
            "outputs as they are). Pass unweighted_average_reduction to get workercontext's number. "
            "(Shown once.)",
            WeightedAverageWarning,
            stacklevel=_outside_the_package(),
        )
    return _native.mean(values, sizes)


def _outside_the_package() -> int:
    """The ``stacklevel`` of the caller's frame nearest to this one that is not in this package, so a
    warning names the user's line (the call of the parallel function), not the package's."""
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    frame = sys._getframe(2)  # the frame that called the function that warns
    level = 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(package + os.sep):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level


_WEIGHTED_MEAN = _native.Reduction(_weighted_mean, "mean", weighted=True)
