"""Every failure is its item's own, names its item, and carries its real cause.

- An item that cannot be unpickled in a process worker fails alone, with the unpickling error;
  the rest of its batch runs.
- A result that cannot be unpickled in the caller is that item's failure, in every mode and order,
  and in journaled runs.
- Every exception a run yields or raises says which input item it belongs to: ``input_index``
  and (3.11+) a note ``input item #k``.
- ``SystemExit``, ``KeyboardInterrupt`` and other ``BaseException``s raised by a task name
  themselves, with the worker's traceback; the worker is replaced.
- ``'immediate'`` in input order yields every result before the first failure, then raises that
  failure, whatever the timing.
"""

from __future__ import annotations

import os
import sys

import pytest

from mtasklite_like import (
    DeferredExceptions,
    Pool,
    RemoteTraceback,
    TaskTimeoutError,
    WorkerDiedError,
    is_exception,
)

pytestmark = pytest.mark.timeout(60)

PROCESSES = {"start_method": "fork"}
MODES = ["immediate", "ignore", "deferred"]
HAS_NOTES = sys.version_info >= (3, 11)


def _named(exc: BaseException, index: int) -> None:
    assert exc.input_index == index  # type: ignore[attr-defined]
    if HAS_NOTES:
        assert f"input item #{index}" in getattr(exc, "__notes__", []), getattr(exc, "__notes__", None)


# -- items and results that cannot cross ------------------------------------------------------------


def _only_in(pid: int, value: int) -> OnlyHere:
    if os.getpid() != pid:
        raise ValueError(f"value {value} cannot be rebuilt in process {os.getpid()}")
    return OnlyHere(value, pid)


class OnlyHere:
    """Unpickles only in the process that made it (a class another process cannot import, say)."""

    def __init__(self, value: int, pid: int | None = None) -> None:
        self.value = value
        self.pid = os.getpid() if pid is None else pid

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return _only_in, (self.pid, self.value)


def unwrap(x: object) -> object:
    return x.value if isinstance(x, OnlyHere) else x


def wrap_1000(x: int) -> object:
    return OnlyHere(x) if x == 1000 else x


@pytest.mark.parametrize("chunk_size", [None, 1, 64])
def test_an_item_the_worker_cannot_unpickle_fails_alone(chunk_size):
    items = [OnlyHere(i) if i == 1000 else i for i in range(2000)]
    out = list(Pool(unwrap, 2, exception_behavior="ignore", chunk_size=chunk_size, **PROCESSES)(items))
    failed = [(i, r) for i, r in enumerate(out) if is_exception(r)]
    assert [i for i, _ in failed] == [1000]
    error = failed[0][1]
    assert type(error) is ValueError and "value 1000 cannot be rebuilt" in str(error)
    assert isinstance(error.__cause__, RemoteTraceback) and "_only_in" in str(error.__cause__)
    _named(error, 1000)
    assert [r for i, r in enumerate(out) if i != 1000] == [i for i in range(2000) if i != 1000]


#: a lambda at module level: the standard pickler refuses it (by name it is not found), so every
#: batch that holds it is pickled by dill
NEEDS_DILL = lambda: None  # noqa: E731


def unwrap_first(pair: tuple[object, object]) -> object:
    return unwrap(pair[0])


def test_an_item_the_worker_cannot_unpickle_fails_alone_in_a_batch_pickled_by_dill():
    # The batch's message, written by dill, must still show which batch it is to a reader of its
    # first bytes (wire.leading_fields), or the worker could not report it and would exit.
    items = [(OnlyHere(i) if i == 100 else i, NEEDS_DILL) for i in range(200)]
    out = list(Pool(unwrap_first, 2, exception_behavior="ignore", **PROCESSES)(items))
    failed = [i for i, r in enumerate(out) if is_exception(r)]
    assert failed == [100]
    assert type(out[100]) is ValueError and "value 100 cannot be rebuilt" in str(out[100])
    assert [r for i, r in enumerate(out) if i != 100] == [i for i in range(200) if i != 100]


def test_an_item_the_worker_cannot_unpickle_in_immediate_mode():
    items = [OnlyHere(i) if i == 1000 else i for i in range(2000)]
    got = []
    with pytest.raises(ValueError, match="value 1000 cannot be rebuilt") as info:
        for r in Pool(unwrap, 2, **PROCESSES)(items):
            got.append(r)
    assert got == list(range(1000))
    _named(info.value, 1000)


async def unwrap_async(x: object) -> object:
    return unwrap(x)


def test_an_item_a_coroutine_worker_cannot_unpickle_fails_alone():
    items = [OnlyHere(i) if i == 300 else i for i in range(600)]
    out = list(Pool(unwrap_async, 2, concurrency=8, exception_behavior="ignore", **PROCESSES)(items))
    failed = [i for i, r in enumerate(out) if is_exception(r)]
    assert failed == [300]
    assert type(out[300]) is ValueError
    _named(out[300], 300)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("unordered", [False, True])
def test_a_result_the_caller_cannot_unpickle_is_that_items_failure(mode, unordered):
    pool = Pool(wrap_1000, 2, exception_behavior=mode, is_unordered=unordered, **PROCESSES)
    got: list[object] = []
    raised: BaseException | None = None
    try:
        for r in pool(range(2000)):
            got.append(r)
    except (ValueError, DeferredExceptions) as exc:
        raised = exc
    if mode == "immediate":
        assert type(raised) is ValueError and "value 1000" in str(raised)
        _named(raised, 1000)
        assert 1000 not in got
        if not unordered:
            assert got == list(range(1000))
        return
    assert len(got) == 2000
    failed = [r for r in got if is_exception(r)]
    assert len(failed) == 1 and type(failed[0]) is ValueError
    _named(failed[0], 1000)
    assert sorted(r for r in got if not is_exception(r)) == [i for i in range(2000) if i != 1000]
    if not unordered:
        assert got[1000] is failed[0]
    if mode == "deferred":
        assert isinstance(raised, DeferredExceptions) and raised.exceptions == failed
    else:
        assert raised is None


@pytest.mark.parametrize("unordered", [False, True])
def test_a_result_the_caller_cannot_unpickle_in_a_journaled_run(tmp_path, unordered):
    run_dir = tmp_path / "run"
    for attempt in range(2):  # the first run, then a resume of the finished run
        pool = Pool(wrap_1000, 2, exception_behavior="ignore", is_unordered=unordered,
                    journal=str(run_dir), **PROCESSES)
        out = list(pool(range(2000)))
        assert len(out) == 2000, attempt
        failed = [r for r in out if is_exception(r)]
        assert len(failed) == 1 and type(failed[0]) is ValueError, (attempt, failed)
        assert failed[0].input_index == 1000, attempt
        assert sorted(r for r in out if not is_exception(r)) == [i for i in range(2000) if i != 1000]


# -- every failure names its item ------------------------------------------------------------------


def fail_on_multiples_of_7(x: int) -> int:
    if x % 7 == 3:
        raise KeyError(f"bad {x}")
    return x


@pytest.mark.parametrize("unordered", [False, True])
def test_task_exceptions_name_their_item(backend, unordered):
    out = list(Pool(fail_on_multiples_of_7, 2, exception_behavior="ignore", is_unordered=unordered,
                    **backend)(range(200)))
    failed = [r for r in out if is_exception(r)]
    assert len(failed) == len([i for i in range(200) if i % 7 == 3])
    for error in failed:
        _named(error, int(str(error.args[0]).split()[1]))


def test_the_error_raised_in_immediate_mode_names_its_item(backend):
    with pytest.raises(KeyError) as info:
        list(Pool(fail_on_multiples_of_7, 2, **backend)(range(200)))
    _named(info.value, 3)


def test_deferred_exceptions_name_their_items(backend):
    with pytest.raises(DeferredExceptions) as info:
        list(Pool(fail_on_multiples_of_7, 2, exception_behavior="deferred", **backend)(range(30)))
    assert [e.input_index for e in info.value.exceptions] == [3, 10, 17, 24]


def die_on_5(x: int) -> int:
    if x == 5:
        os._exit(7)
    return x


def test_deaths_name_their_item():
    out = list(Pool(die_on_5, 2, exception_behavior="ignore", **PROCESSES)(range(10)))
    assert isinstance(out[5], WorkerDiedError)
    _named(out[5], 5)
    with pytest.raises(WorkerDiedError) as info:
        list(Pool(die_on_5, 2, **PROCESSES)(range(10)))
    _named(info.value, 5)


def hang_on_2(x: int) -> int:
    if x == 2:
        import time

        time.sleep(60)
    return x


def test_timeouts_name_their_item():
    out = list(Pool(hang_on_2, 2, exception_behavior="ignore", task_timeout=0.5, **PROCESSES)(range(5)))
    assert isinstance(out[2], TaskTimeoutError)
    _named(out[2], 2)


# -- BaseExceptions raised by tasks ------------------------------------------------------------------


class Custom(BaseException):
    pass


def raise_base(x: int) -> int:
    if x == 4:
        raise SystemExit(3)
    if x == 6:
        raise KeyboardInterrupt("from the task")
    if x == 8:
        raise Custom("custom")
    return x


def test_base_exceptions_from_tasks_name_themselves(backend):
    remote = not backend.get("use_threads")
    with Pool(raise_base, 2, exception_behavior="ignore", **backend) as pool:
        out = list(pool(range(12)))
        assert [i for i, r in enumerate(out) if is_exception(r)] == [4, 6, 8]
        for index, kind in [(4, SystemExit), (6, KeyboardInterrupt), (8, Custom)]:
            error = out[index]
            assert isinstance(error, WorkerDiedError), repr(error)
            assert f"the task raised {kind.__name__}" in str(error), str(error)
            assert type(error.__cause__) is kind
            if remote:
                tb = error.__cause__.__cause__
                assert isinstance(tb, RemoteTraceback) and "raise_base" in str(tb), repr(tb)
            _named(error, index)
        # The workers that had to exit were replaced: the pool still runs.
        assert list(pool(range(3))) == [0, 1, 2]


def test_system_exit_in_immediate_mode_is_raised_as_the_items_death():
    with pytest.raises(WorkerDiedError, match="the task raised SystemExit: 3") as info:
        list(Pool(raise_base, 2, on_worker_death="restart", **PROCESSES)(range(12)))
    assert type(info.value.__cause__) is SystemExit
    _named(info.value, 4)


# -- 'immediate' in input order ----------------------------------------------------------------------


@pytest.mark.no_ray("twenty runs; test_ordered_immediate_once runs on Ray")
@pytest.mark.parametrize("run", range(20))
def test_ordered_immediate_yields_the_results_before_the_failure(backend, run):
    got = []
    with pytest.raises(ValueError) as info:
        for r in Pool(int, 2, **backend)(iter(["1", "2", "x", "4"])):
            got.append(r)
    assert got == [1, 2]
    _named(info.value, 2)


class ExceptionWithValue(Exception):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExceptionWithValue) and self.args == other.args

    __hash__ = Exception.__hash__


def fail_on_1_and_2(x: int) -> int:
    if x in (1, 2):
        raise ExceptionWithValue(x)
    return x


@pytest.mark.no_ray("fifteen runs; test_ordered_immediate_once runs on Ray")
@pytest.mark.parametrize("run", range(15))
def test_ordered_immediate_raises_the_first_failure_in_input_order(backend, run):
    with pytest.raises(ExceptionWithValue) as info:
        list(Pool(fail_on_1_and_2, 2, **backend)(range(10)))
    assert info.value == ExceptionWithValue(1)


def test_ordered_immediate_once(backend):
    with Pool(fail_on_1_and_2, 2, **backend) as pool:
        got = []
        with pytest.raises(ExceptionWithValue) as info:
            for r in pool(range(10)):
                got.append(r)
        assert got == [0] and info.value == ExceptionWithValue(1)
        _named(info.value, 1)
