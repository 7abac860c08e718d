"""Ways to combine the outputs of the parts of a split computation into one result.

[`parallelize`][mtasklite_like.mapreduce.parallelize] cuts a list argument into parts, runs the function on
each part, and hands the list of part outputs (in input order) to a *reduction*. Any callable that takes that
list works. The ones here are correct for parts of different sizes: a
[`Reduction`][mtasklite_like.reductions.Reduction] is also given the number of items in each part, which
``mean`` needs (the mean of the part means is wrong as soon as the parts differ in size).

NumPy and pandas outputs are recognised by duck typing, so importing this module imports neither.
"""

from __future__ import annotations

import functools
import importlib
import operator
import typing
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from collections.abc import Set as AbstractSet
from itertools import chain
from typing import Any

__all__ = [
    "REDUCTIONS",
    "Reduction",
    "apply_reduction",
    "bitwise_and",
    "bitwise_or",
    "compose",
    "concat",
    "counter_merge",
    "dict_merge",
    "flatten",
    "maximum",
    "mean",
    "minimum",
    "product",
    "reduction_for_annotation",
    "resolve_reduction",
    "total",
    "union",
]


class Reduction:
    """A named reduction that may use the size of each part.

    ``Reduction(combine, name)`` wraps ``combine(outputs)``; with ``weighted=True`` it wraps
    ``combine(outputs, sizes)``, where ``sizes[i]`` is the number of items part ``i`` received
    (``None`` when the reduction is called directly on a list, which then counts every output
    once). Calling it as ``reduction(outputs)`` works either way, so a ``Reduction`` is also a
    plain callable on a list.
    """

    def __init__(
        self, combine: Callable[..., Any], name: str | None = None, *, weighted: bool = False
    ) -> None:
        self._combine = combine
        self.name: str = name or str(getattr(combine, "__name__", "reduction"))
        self.weighted = weighted
        self.__doc__ = combine.__doc__

    def __call__(self, outputs: Iterable[Any], sizes: Sequence[int] | None = None) -> Any:
        values = list(outputs)
        if sizes is not None and len(sizes) != len(values):
            raise ValueError(f"{self.name}: got {len(values)} outputs but {len(sizes)} part sizes")
        if self.weighted:
            return self._combine(values, None if sizes is None else list(sizes))
        return self._combine(values)

    def __repr__(self) -> str:
        return f"<reduction {self.name}>"


def apply_reduction(reduction: Callable[..., Any], outputs: list[Any], sizes: Sequence[int]) -> Any:
    """Call ``reduction`` on the part outputs, passing the part sizes to a
    [`Reduction`][mtasklite_like.reductions.Reduction]."""
    if isinstance(reduction, Reduction):
        return reduction(outputs, sizes)
    return reduction(outputs)


def _type_module(value: Any) -> str:
    return type(value).__module__.split(".", 1)[0]


def _require(values: list[Any], name: str, hint: str) -> None:
    if not values:
        raise ValueError(f"{name} of no outputs is undefined ({hint})")


# -- the combining functions -------------------------------------------------------------------------


def _flatten(values: list[Any]) -> list[Any]:
    """One list of every element of every output, in order (parts that return lists)."""
    return list(chain.from_iterable(values))


def _concat(values: list[Any]) -> Any:
    """Outputs joined end to end, keeping their type: strings, bytes, lists, tuples, NumPy arrays
    (along the first axis), pandas objects; anything else with ``+``."""
    _require(values, "concat", "its type is unknown; return an empty part output instead")
    first = values[0]
    if isinstance(first, str):
        return "".join(values)
    if isinstance(first, (bytes, bytearray)):
        return type(first)().join(values)
    if isinstance(first, list):
        return _flatten(values)
    if isinstance(first, tuple):
        return tuple(chain.from_iterable(values))
    module = _type_module(first)
    if module == "numpy" and hasattr(first, "ndim"):
        import numpy

        return numpy.concatenate(values)
    if module == "pandas":
        return importlib.import_module("pandas").concat(values)
    return functools.reduce(operator.add, values)


def _total(values: list[Any]) -> Any:
    """The sum of the outputs (numbers, NumPy arrays, anything with ``+``); 0 for none."""
    if not values:
        return 0
    return functools.reduce(operator.add, values)


def _mean(values: list[Any], sizes: list[int] | None) -> Any:
    """The mean of the items, from part means weighted by part size.

    Each part's output is taken to be the mean over that part's items, so the overall mean is
    ``sum(mean_i * n_i) / sum(n_i)``. Called directly on a list, every value counts once.
    """
    if sizes is None:
        _require(values, "mean", "there is nothing to average")
        return _total(values) / len(values)
    pairs = [(v, n) for v, n in zip(values, sizes) if n]
    if not pairs:
        if len(values) == 1:
            # A single part over an empty input: its output is what the serial call returns.
            return values[0]
        raise ValueError("mean: every part was empty, so there is nothing to average")
    weight = sum(n for _, n in pairs)
    return _total([v * n for v, n in pairs]) / weight


def _product(values: list[Any]) -> Any:
    """The product of the outputs; 1 for none."""
    return functools.reduce(operator.mul, values, 1)


def _elementwise(values: list[Any], name: str, builtin: Callable[..., Any], ufunc: str) -> Any:
    _require(values, name, "there is nothing to compare")
    if _type_module(values[0]) == "numpy" and getattr(values[0], "ndim", None):
        import numpy

        return functools.reduce(getattr(numpy, ufunc), values)
    return builtin(values)


def _minimum(values: list[Any]) -> Any:
    """The smallest output (element-wise for NumPy arrays)."""
    return _elementwise(values, "minimum", min, "minimum")


def _maximum(values: list[Any]) -> Any:
    """The largest output (element-wise for NumPy arrays)."""
    return _elementwise(values, "maximum", max, "maximum")


def _counter_merge(values: list[Any]) -> Counter[Any]:
    """Histograms added up: each output maps a key to a count (a ``Counter`` or a dict)."""
    merged: Counter[Any] = Counter()
    for counts in values:
        merged.update(counts)
    return merged


def _union(values: list[Any]) -> AbstractSet[Any]:
    """The union of set outputs (a frozenset when the outputs are frozensets)."""
    merged: set[Any] = set()
    for part in values:
        merged |= part
    if values and all(isinstance(v, frozenset) for v in values):
        return frozenset(merged)
    return merged


def _dict_merge(values: list[Any]) -> dict[Any, Any]:
    """Dict outputs merged; on a repeated key the later part wins, as in a serial loop."""
    merged: dict[Any, Any] = {}
    for part in values:
        merged.update(part)
    return merged


def _bitwise_and(values: list[Any]) -> Any:
    """``a & b & ...`` over the outputs (ints, bool arrays, sets: intersection)."""
    _require(values, "bitwise_and", "it has no identity value")
    return functools.reduce(operator.and_, values)


def _bitwise_or(values: list[Any]) -> Any:
    """``a | b | ...`` over the outputs (ints, bool arrays, sets: union)."""
    _require(values, "bitwise_or", "it has no identity value for an unknown type")
    return functools.reduce(operator.or_, values)


flatten = Reduction(_flatten, "flatten")
concat = Reduction(_concat, "concat")
total = Reduction(_total, "sum")
mean = Reduction(_mean, "mean", weighted=True)
product = Reduction(_product, "product")
minimum = Reduction(_minimum, "min")
maximum = Reduction(_maximum, "max")
counter_merge = Reduction(_counter_merge, "counter")
union = Reduction(_union, "union")
dict_merge = Reduction(_dict_merge, "merge")
bitwise_and = Reduction(_bitwise_and, "and")
bitwise_or = Reduction(_bitwise_or, "or")

#: the reductions by the short names ``parallelize(reduction=...)`` accepts
REDUCTIONS: dict[str, Reduction] = {
    r.name: r
    for r in (
        flatten, concat, total, mean, product, minimum, maximum, counter_merge, union, dict_merge,
        bitwise_and, bitwise_or,
    )
}


def compose(*steps: Callable[..., Any]) -> Reduction:
    """Apply reductions in turn: ``compose(flatten, mean)`` averages the flattened items.

    The first step gets the part sizes when it is a [`Reduction`][mtasklite_like.reductions.Reduction]; later
    steps get the previous step's value. Nothing is printed.
    """
    if not steps:
        raise ValueError("compose() needs at least one reduction")
    for step in steps:
        if not callable(step):
            raise TypeError(f"compose() takes callables, not {type(step).__name__} {step!r:.60}")

    def run(values: list[Any], sizes: list[int] | None) -> Any:
        first, *rest = steps
        value = first(values, sizes) if isinstance(first, Reduction) else first(values)
        for step in rest:
            value = step(value)
        return value

    names = " -> ".join(getattr(s, "name", getattr(s, "__name__", repr(s))) for s in steps)
    return Reduction(run, f"compose({names})", weighted=True)


# -- choosing a reduction ------------------------------------------------------------------------------

_BY_TYPE: list[tuple[type, Reduction]] = [
    (Counter, counter_merge),  # before dict: a Counter is a dict
    (list, flatten),
    (tuple, concat),
    (frozenset, union),
    (set, union),
    (dict, dict_merge),
    (str, concat),
    (bytes, concat),
]
_BY_ABC: list[tuple[type, Reduction]] = [(Mapping, dict_merge), (AbstractSet, union)]
_BY_NAME = {
    "list": flatten, "List": flatten, "tuple": concat, "Tuple": concat, "set": union, "Set": union,
    "frozenset": union, "FrozenSet": union, "dict": dict_merge, "Dict": dict_merge,
    "Counter": counter_merge, "str": concat, "bytes": concat, "ndarray": concat, "NDArray": concat,
}


def reduction_for_annotation(annotation: Any) -> Reduction | None:
    """The reduction that rebuilds a whole result of the annotated type from part results.

    ``list`` -> ``flatten``, ``tuple``/``str``/``bytes``/NumPy arrays/pandas objects ->
    ``concat``, ``set``/``frozenset`` -> ``union``, ``Counter`` -> ``counter_merge``,
    ``dict`` -> ``dict_merge``; generic forms (``list[int]``, ``typing.Dict[str, int]``) and
    string annotations count too. ``None`` for anything else (a number's right reduction depends on
    what the number is: a count adds up, a maximum does not).
    """
    if isinstance(annotation, str):
        head = annotation.strip().split("[", 1)[0].rsplit(".", 1)[-1]
        return _BY_NAME.get(head)
    origin = typing.get_origin(annotation) or annotation
    if not isinstance(origin, type):
        return None
    for kind, reduction in _BY_TYPE:
        if issubclass(origin, kind):
            return reduction
    module = origin.__module__.split(".", 1)[0]
    if (module == "numpy" and origin.__name__ == "ndarray") or (
        module == "pandas" and origin.__name__ in ("DataFrame", "Series", "Index")
    ):
        return concat
    for kind, reduction in _BY_ABC:
        if issubclass(origin, kind):
            return reduction
    return None


def resolve_reduction(reduction: Any, where: str) -> Callable[..., Any] | None:
    """Turn ``reduction`` (a name from ``REDUCTIONS``, a callable or None) into a callable."""
    if reduction is None:
        return None
    if isinstance(reduction, str):
        try:
            return REDUCTIONS[reduction]
        except KeyError:
            raise ValueError(
                f"{where}: unknown reduction {reduction!r}; use one of {', '.join(map(repr, REDUCTIONS))}, "
                "a callable taking the list of part outputs, or None for that list itself"
            ) from None
    if not callable(reduction):
        raise TypeError(
            f"{where}: reduction must be a name such as 'flatten', a callable taking the list of part "
            f"outputs, or None; not {type(reduction).__name__} {reduction!r:.60}"
        )
    return typing.cast(Callable[..., Any], reduction)
