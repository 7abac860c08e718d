"""Module-level functions for the workflow tests (map-reduce, drop-ins), picklable by every start method."""


import functools
import operator
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Dict, List, Set  # noqa: UP035 (workercontext's README annotates with typing.List)

from mtasklite_like.mapreduce import parallelize

# -- part functions: each computes, over its part, what the serial call computes over the whole -----------


def squares(xs: list[int]) -> list[int]:
    return [x * x for x in xs]


def letters(xs: list[int]) -> str:
    return "".join(chr(ord("a") + x % 26) for x in xs)


def as_tuple(xs: list[int]) -> tuple[int, ...]:
    return tuple(x + 1 for x in xs)


def part_sum(xs: list[int]) -> int:
    return sum(xs)


def part_mean(xs: list[int]) -> float:
    return sum(xs) / len(xs)


def part_product(xs: list[int]) -> int:
    return functools.reduce(operator.mul, (1 + x % 3 for x in xs), 1)


def part_min(xs: list[int]) -> int:
    return min((x * 7919) % 101 for x in xs)


def part_max(xs: list[int]) -> int:
    return max((x * 7919) % 101 for x in xs)


def histogram(xs: list[int]) -> Counter[int]:
    return Counter(x % 5 for x in xs)


def residues(xs: list[int]) -> set[int]:
    return {x % 7 for x in xs}


def square_table(xs: list[int]) -> dict[int, int]:
    return {x % 13: x * x for x in xs}


def mask_and(xs: list[int]) -> int:
    return functools.reduce(operator.and_, (x | 0b1000 for x in xs), -1)


def mask_or(xs: list[int]) -> int:
    return functools.reduce(operator.or_, (1 << (x % 16) for x in xs), 0)


def part_info(xs: Any) -> tuple[int, Any, str]:
    """How many items the part had, its first one, and the part's type."""
    return len(xs), (xs[0] if len(xs) else None), type(xs).__name__


def scale(offset: int, xs: list[int], factor: int = 2) -> list[int]:
    """Scale every item and add an offset."""
    return [offset + factor * x for x in xs]


def by_keyword(**kwargs: Any) -> list[int]:
    return [kwargs["k"] * x for x in kwargs["xs"]]


def no_annotation(xs):  # type: ignore[no-untyped-def]
    return list(xs)


def returns_int(xs: list[int]) -> int:
    return len(xs)


def pids(xs: list[int]) -> list[int]:
    return [os.getpid()] * len(xs)


def thread_ids(xs: list[int]) -> list[int]:
    return [threading.get_ident()] * len(xs)


def fail_on(xs: list[int], bad: tuple[int, ...] = (13,)) -> list[int]:
    for x in xs:
        if x in bad:
            raise ValueError(f"item {x} is bad")
    return xs


def record_then_fail(xs: list[int], seen: list[int]) -> list[int]:
    """Records each part it ran (threads only: ``seen`` is shared), fails on item 3."""
    seen.append(xs[0])
    if 3 in xs:
        raise ValueError("item 3 is bad")
    return xs


def die_on(xs: list[int], victim: int = 5) -> list[int]:
    if victim in xs:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)  # the signal arrives first
    return xs


def fail_first_attempt(xs: list[int], marker_dir: str) -> list[int]:
    """Fails the first time it sees a part (a file marks the attempt), succeeds on the retry."""
    marker = Path(marker_dir) / f"part-{xs[0]}"
    if not marker.exists():
        marker.write_text("tried")
        raise RuntimeError(f"first attempt at part {xs[0]}")
    return xs


_INIT_VALUE: list[int] = []


def set_init_value(value: int) -> None:
    _INIT_VALUE[:] = [value]


def add_init_value(xs: list[int]) -> list[int]:
    return [x + _INIT_VALUE[0] for x in xs]


@parallelize(n_jobs=2, reduction="flatten")
def decorated_squares(xs: list[int]) -> list[int]:
    """Squares, decorated at module level."""
    return [x * x for x in xs]


class Scaler:
    """Methods of every kind, split over their list argument."""

    base = 100

    def __init__(self, k: int) -> None:
        self.k = k

    def times(self, xs: list[int]) -> list[int]:
        return [self.k * x for x in xs]

    @classmethod
    def plus_base(cls, xs: list[int]) -> list[int]:
        return [cls.base + x for x in xs]

    @parallelize(n_jobs=2, reduction="sum")
    def weighted_total(self, xs: list[int]) -> int:
        return sum(self.k * x for x in xs)


# -- tasks for the mmengine drop-in --------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def power_pair(task: tuple[int, int]) -> int:
    base, exponent = task
    return int(base**exponent)


def power(base: int, exponent: int) -> int:
    return int(base**exponent)


def unpack(func: Any) -> Any:
    """The decorator mmengine users write so that a tuple task reaches several parameters."""

    @functools.wraps(func)
    def wrapper(task: tuple[Any, ...]) -> Any:
        return func(*task)

    return wrapper


@unpack
def power_unpacked(base: int, exponent: int) -> int:
    return int(base**exponent)


def slow_first(x: int) -> int:
    """Item 0 is slow, so with two workers it finishes last."""
    if x == 0:
        time.sleep(1.0)
    return x


def add_offset(x: int, offset: int = 0) -> int:
    return x + offset


def fail_on_3(x: int) -> int:
    if x == 3:
        raise ValueError("task 3 is bad")
    return x


def die_on_3(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(10)
    return x


def plus_init_value(x: int) -> int:
    return x + _INIT_VALUE[0]


# -- workercontext examples (annotated with typing.List, as in its README) -------------------------------


def my_func(arr: List[int]) -> List[int]:  # noqa: UP006
    return [el * 2 for el in arr]


def my_func_builtin_generic(arr: list[int]) -> list[int]:
    return [el * 2 for el in arr]


def my_func_two_lists(l1: List[int], l2: List[int]) -> int:  # noqa: UP006
    for i in range(len(l2)):
        for el1 in l1:
            l2[i] += el1
    return l2  # type: ignore[return-value]


def slice_mean(arr: list[int]) -> float:
    return sum(arr) / len(arr)


def slice_len(arr: list[int]) -> int:
    return len(arr)


def untyped(first, second):  # type: ignore[no-untyped-def]
    return [first_item + second for first_item in first]


def typed_no_list(a: int, b: int) -> int:
    return a + b


def returns_set(arr: List[int]) -> Set[int]:  # noqa: UP006
    return {x % 4 for x in arr}


def returns_dict(arr: List[int]) -> Dict[int, int]:  # noqa: UP006
    return {x: -x for x in arr}


def returns_str(arr: list[int]) -> str:
    return "".join(str(x % 10) for x in arr)


def returns_float(arr: list[int]) -> float:
    return float(sum(arr))


def with_side_effect(arr: list[int], out_dir: str) -> None:
    for x in arr:
        (Path(out_dir) / f"{x}.done").write_text(str(x * 2))
