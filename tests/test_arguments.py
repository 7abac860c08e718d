"""Argument passing: f(x), f(*x), f(**x), and items of the wrong shape."""

from __future__ import annotations

import pytest

from mtasklite_like import ArgumentPassing, Pool, is_exception
from tests.helpers import add, square

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("arg_type", [ArgumentPassing.AS_SINGLE_ARG, None, "direct"])
def test_single_arg(backend, n_jobs, arg_type):
    assert list(Pool(square, n_jobs, argument_type=arg_type, **backend)(range(10))) == [
        x * x for x in range(10)
    ]


def test_args(backend, n_jobs):
    items = [(i, 10 * i) for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type="args", **backend)(items)) == [11 * i for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type=ArgumentPassing.AS_ARGS, **backend)(iter(items))) == [
        11 * i for i in range(20)
    ]


def test_kwargs(backend, n_jobs):
    items = [{"a": i, "b": 1} for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type="kwargs", **backend)(items)) == [i + 1 for i in range(20)]


@pytest.mark.parametrize(
    ("arg_type", "bad"),
    [("args", 5), ("args", (1, 2, 3)), ("kwargs", [1, 2]), ("kwargs", {"zzz": 1}), ("single_arg", None)],
)
def test_wrong_shape_fails_only_that_item(backend, n_jobs, arg_type, bad):
    good = (2, 3) if arg_type in ("args", "single_arg") else {"a": 2, "b": 3}
    fn = add if arg_type != "single_arg" else (lambda pair: add(*pair))
    items = [good, bad, good]
    results = list(Pool(fn, n_jobs, argument_type=arg_type, exception_behavior="ignore", **backend)(items))
    assert results[0] == 5 and results[2] == 5
    assert is_exception(results[1]) and isinstance(results[1], TypeError)
