"""``workercontext.reductions`` names, for ``from mtasklite_like.workercontext.reductions import ...``.

Each function takes the list of slice outputs, as in ``workercontext`` 0.1.1, and gives the same
result for the same list. Deliberate differences (see docs/workflows.md):

- [`average_reduction`][mtasklite_like.workercontext.reductions.average_reduction] given to ``MultiWorker``
  averages the slice outputs weighted by the number of items in each slice, so the result is the mean over all
  items even when the slices differ in size (``workercontext`` averages the slice means). Called directly on a
  list it is the plain mean, as before.
- [`ReductionComposition`][mtasklite_like.workercontext.reductions.ReductionComposition] prints nothing
  (``workercontext`` prints every intermediate value).
- [`average_reduction`][mtasklite_like.workercontext.reductions.average_reduction],
  [`bitwise_and_reduction`][mtasklite_like.workercontext.reductions.bitwise_and_reduction] and
  [`bitwise_or_reduction`][mtasklite_like.workercontext.reductions.bitwise_or_reduction] on an empty list
  raise a ``ValueError`` that says so, instead of ``ZeroDivisionError`` / ``IndexError``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from .. import reductions as _native

__all__ = [
    "ReductionComposition",
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
]


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
    of its slice) are weighted by slice size, so the result is the mean over all items."""
    if not lst:
        raise ValueError("average_reduction: the average of an empty list is undefined")
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
    size-weighted mean."""
    if reduction is average_reduction:
        return _native.mean
    if isinstance(reduction, ReductionComposition) and reduction._reductions:
        first, *rest = reduction._reductions
        if first is average_reduction:
            return _native.compose(_native.mean, *rest)
    return reduction
