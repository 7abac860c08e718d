"""Which workers the pool accepts, how n_jobs is read, and the errors for bad arguments."""

from __future__ import annotations

import functools
import os
import threading

import pytest

from mtasklite_like import ArgumentPassing, ExceptionBehaviour, Pool, delayed_init
from tests.helpers import Counter, Multiplier, NotCallable, add, square, whoami

pytestmark = pytest.mark.timeout(60)

ITEMS = list(range(-5, 12))


def _kinds():
    m = Multiplier(3)
    return {
        "function": (square, [x * x for x in ITEMS]),
        "lambda": (lambda x: x + 1, [x + 1 for x in ITEMS]),
        "partial": (functools.partial(add, 10), [x + 10 for x in ITEMS]),
        "bound method": (m.times, [3 * x for x in ITEMS]),
        "callable instance": (m, [3 * x for x in ITEMS]),
        "builtin": (abs, [abs(x) for x in ITEMS]),
        "class as function": (str, [str(x) for x in ITEMS]),
    }


@pytest.mark.parametrize("kind", sorted(_kinds()))
@pytest.mark.parametrize("jobs", [1, 2, 4])
def test_every_kind_of_callable_works(backend, kind, jobs):
    fn, expected = _kinds()[kind]
    with Pool(fn, jobs, **backend) as pool:
        assert list(pool(ITEMS)) == expected
        # unsized input too
        assert list(pool(iter(ITEMS))) == expected


@pytest.mark.parametrize("n_jobs_arg", [None, 3])
def test_list_of_mixed_workers(backend, n_jobs_arg):
    workers = [square, Counter(1), Multiplier(2)]
    results = list(Pool(workers, n_jobs_arg, is_unordered=False, **backend)(range(30)))
    assert len(results) == 30
    for x, r in zip(range(30), results):
        if isinstance(r, tuple):  # the Counter's output
            assert r[0] == 1 and r[-1] == x
        else:
            assert r in (x * x, 2 * x)


def test_list_length_must_match_n_jobs():
    with pytest.raises(ValueError, match="does not match the 2 workers"):
        Pool([square, square], n_jobs=3)


def test_empty_worker_list():
    with pytest.raises(ValueError, match="empty"):
        Pool([])


@pytest.mark.parametrize(
    ("given", "expected"),
    [(1, 1), (4, 4)],
)
def test_n_jobs_is_taken_as_given(given, expected):
    # 0, negatives past the CPU count and non-integers are refused: tests/test_arguments.py
    assert Pool(square, given).num_workers == expected


@pytest.mark.parametrize("bad", ["four", None.__class__, [1], True])
def test_bad_n_jobs_says_what_to_pass(bad):
    with pytest.raises(TypeError, match="whole number"):
        Pool(square, bad)


def test_default_n_jobs_is_cpu_based():
    assert Pool(square).num_workers >= 1
    assert Pool(square, use_threads=True).num_workers >= Pool(square).num_workers


def test_non_callable_worker():
    with pytest.raises(TypeError, match="must be callable"):
        Pool(42, 2)
    with pytest.raises(TypeError, match="worker #1 of the list must be callable"):
        Pool([square, "not a function"])


def test_decorated_class_itself_is_rejected():
    with pytest.raises(TypeError, match=r"pass an instance such as Counter\(...\)"):
        Pool(Counter, 2)


def test_decorated_class_needs_call():
    with pytest.raises(TypeError, match="no __call__ method"):
        Pool(NotCallable(), 2)


def test_unknown_modes_fail_at_construction():
    with pytest.raises(ValueError, match="unknown exception_behavior 'sometimes'"):
        Pool(square, 2, exception_behavior="sometimes")
    with pytest.raises(ValueError, match="unknown exception_behavior"):
        Pool(square, 2, exception_behaviour="IGNORE")
    with pytest.raises(ValueError, match="unknown argument_type 'star'"):
        Pool(square, 2, argument_type="star")


def test_both_spellings_of_exception_behaviour():
    assert Pool(square, 2, exception_behaviour="ignore").exception_behavior == "ignore"
    assert Pool(square, 2, exception_behavior="deferred").exception_behaviour == "deferred"
    both = Pool(square, 2, exception_behavior="ignore", exception_behaviour="ignore")
    assert both.exception_behavior == "ignore"
    with pytest.raises(ValueError, match="disagree"):
        Pool(square, 2, exception_behavior="ignore", exception_behaviour="deferred")


def test_constants_are_plain_strings():
    assert ArgumentPassing.AS_SINGLE_ARG == "single_arg"
    assert ArgumentPassing.AS_ARGS == "args"
    assert ArgumentPassing.AS_KWARGS == "kwargs"
    assert ExceptionBehaviour.IGNORE == "ignore"
    assert ExceptionBehaviour.IMMEDIATE == "immediate"
    assert ExceptionBehaviour.DEFERRED == "deferred"


def test_defaults_match_the_replaced_api():
    pool = Pool(square, 2)
    assert pool.argument_type == "single_arg"
    assert pool.exception_behavior == "immediate"
    assert pool.bounded is True
    assert pool.is_unordered is False
    assert pool.use_threads is False
    assert pool.exited is False


def test_n_jobs_1_runs_in_the_caller(backend):
    results = list(Pool(whoami, 1, **backend)(range(5)))
    assert set(results) == {(os.getpid(), threading.get_ident())}


def test_n_jobs_1_builds_delayed_object_in_the_caller():
    results = list(Pool(Counter(5), 1)(range(4)))
    assert [r[4] for r in results] == [1, 2, 3, 4]  # one object, state kept
    assert {r[1] for r in results} == {os.getpid()}


def test_more_workers_than_items(backend):
    with Pool(square, 4, **backend) as pool:
        assert list(pool([3, 4])) == [9, 16]
        assert list(pool(iter([5]))) == [25]


def test_empty_input(backend, n_jobs):
    with Pool(square, n_jobs, **backend) as pool:
        assert list(pool([])) == []
        assert list(pool(iter([]))) == []
        assert len(pool([])) == 0


def test_len_and_parent_obj(backend, n_jobs):
    pool = Pool(square, n_jobs, **backend)
    sized = pool(range(7))
    assert len(sized) == 7
    assert sized.parent_obj is pool
    assert list(sized) == [x * x for x in range(7)]
    unsized = pool(x for x in range(3))
    with pytest.raises(TypeError, match="no len"):
        len(unsized)
    assert list(unsized) == [0, 1, 4]


def test_input_must_be_iterable():
    with pytest.raises(TypeError, match="must be iterable"):
        Pool(square, 2)(42)


@pytest.mark.parametrize("jobs", [1, 2, 3, 4])
def test_sized_and_unsized_match_serial(backend, jobs):
    data = list(range(1000))
    with Pool(square, jobs, **backend) as pool:
        assert list(pool(data)) == [x * x for x in data]
        assert list(pool(iter(data))) == [x * x for x in data]
        assert sorted(Pool(square, jobs, is_unordered=True, **backend)(iter(data))) == sorted(
            x * x for x in data
        )


def test_delayed_init_class_in_test_module(backend):
    @delayed_init
    class Local:
        def __init__(self, k):
            self.k = k

        def __call__(self, x):
            return self.k + x

    assert list(Pool(Local(100), 2, **backend)(range(5))) == [100, 101, 102, 103, 104]


def test_join_timeout_refuses_booleans_like_the_other_options():
    with pytest.raises(ValueError, match="join_timeout must be a number of seconds"):
        Pool(square, 2, join_timeout=True)
    assert Pool(square, 2, join_timeout=0).join_timeout == 0.0


@pytest.mark.parametrize("option", ["chunk_size", "chunk_prefill_ratio"])
def test_task_timeout_says_that_it_overrides_batching_options(option):
    with pytest.warns(UserWarning, match="chunk_size and chunk_prefill_ratio are ignored"):
        Pool(square, 2, task_timeout=5, **{option: 4})


def test_backend_option():
    assert Pool(square, 2, backend="threads").use_threads
    assert not Pool(square, 2, backend="processes").use_threads
    assert Pool(square, 2, use_threads=True).backend == "threads"
    whose = list(Pool(whoami, 2, backend="threads", chunk_size=1)(range(20)))
    assert {pid for pid, _ in whose} == {os.getpid()}
    with pytest.raises(ValueError, match="unknown backend 'gpu'; use one of"):
        Pool(square, 2, backend="gpu")
    with pytest.raises(ValueError, match="pass only one of the two"):
        Pool(square, 2, backend="processes", use_threads=True)


def test_options_are_frozen():
    import dataclasses

    pool = Pool(square, 2, retries=2, is_unordered=True)
    assert pool.options.retries == 2 and not pool.options.ordered
    with pytest.raises(dataclasses.FrozenInstanceError):
        pool.options.retries = 3  # type: ignore[misc]
