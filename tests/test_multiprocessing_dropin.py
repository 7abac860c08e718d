"""``mtasklite_like.multiprocessing.Pool`` beside the standard library's ``multiprocessing.Pool``.

The parity tests run the real ``multiprocessing.Pool`` and ours on the same inputs and compare what
each method returns or raises. The tests after them check what only ours does: a killed worker
fails its task instead of hanging, ``imap`` reads its input lazily, calls share the workers
without waiting for each other, ``terminate()`` fails what it cuts short.

Task functions live at module level: the standard library pickles them by name.
"""

from __future__ import annotations

import gc
import itertools
import json
import multiprocessing
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import threading
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import mtasklite_like.multiprocessing as mp_dropin
from mtasklite_like import RemoteTraceback, TaskTimeoutError, WorkerDiedError, WorkerInitError
from mtasklite_like.multiprocessing import Pool, PoolTerminatedError
from tests.helpers import pid_running

#: a deadline for anything that should finish quickly (a hang fails the test, not the run)
LONG = 30.0


# -- tasks ------------------------------------------------------------------------------------------


def square(x: int) -> int:
    return x * x


def power(base: int, exp: int) -> int:
    return int(base**exp)


def describe(a: Any, b: Any = None, *, c: Any = None) -> tuple[Any, Any, Any]:
    return a, b, c


def fail_on_3(x: int) -> int:
    if x == 3:
        raise KeyError(x)
    return x


def fail_on_3_and_5(x: int) -> int:
    if x in (3, 5):
        raise ValueError(f"bad item {x}")
    return x


class Unpicklable(Exception):
    """An exception whose constructor needs more than its ``args``: it pickles, but does not unpickle."""

    def __init__(self, x: int, why: str) -> None:
        super().__init__(f"{why}: {x}")


def unpicklable_on_2(x: int) -> int:
    if x == 2:
        raise Unpicklable(x, "refused")
    return x


def kill_self_on_5(x: int) -> int:
    if x == 5:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def sleep_and_return(x: Any) -> Any:
    time.sleep(x)
    return x


def when_released(item: tuple[str | None, Any]) -> Any:
    """``(gate, value)``: return ``value`` once the file ``gate`` exists (at once for None); a test
    creates it when it has seen what it checks while the task waits. Gives up after LONG seconds."""
    gate, value = item
    deadline = time.monotonic() + LONG
    while gate is not None and not os.path.exists(gate):
        if time.monotonic() > deadline:
            return ("gave up", value)
        time.sleep(0.005)
    return value


def pid_of(_x: Any) -> int:
    return os.getpid()


def kill_self_on_3(x: int) -> int:
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


_PREFIX = "unset"


def set_prefix(prefix: str) -> None:
    global _PREFIX
    _PREFIX = prefix


def prefixed(x: Any) -> str:
    return f"{_PREFIX}{x}"


def failing_initializer() -> None:
    raise OSError("no such device")


def broken_input() -> Iterator[int]:
    yield 1
    yield 2
    raise RuntimeError("the input broke")


def outcomes(iterator: Iterator[Any]) -> list[Any]:
    """Each result of ``iterator``, or ``repr`` of what it raised, until it stops."""
    out: list[Any] = []
    while True:
        try:
            out.append(next(iterator))
        except StopIteration:
            return out
        except Exception as exc:
            out.append(repr(exc))


@pytest.fixture
def pools() -> Iterator[tuple[Pool, Any]]:
    """Ours and the standard library's, 2 workers each."""
    ours = Pool(2)
    theirs = multiprocessing.Pool(2)
    yield ours, theirs
    theirs.terminate()
    ours.terminate()
    theirs.join()
    ours.join()


def both(pools: tuple[Pool, Any]) -> list[Any]:
    return list(pools)


# -- parity: results --------------------------------------------------------------------------------


@pytest.mark.parametrize("chunksize", [None, 1, 7])
def test_map_returns_the_same_list(pools: tuple[Pool, Any], chunksize: int | None) -> None:
    for pool in both(pools):
        assert pool.map(square, range(100), chunksize) == [x * x for x in range(100)]
    ours, theirs = pools
    assert ours.map(square, (x for x in range(50))) == theirs.map(square, (x for x in range(50)))
    assert ours.map(square, []) == theirs.map(square, []) == []
    assert isinstance(ours.map(square, [1]), list)


def test_starmap_and_apply_match(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    pairs = [(b, e) for b in range(5) for e in range(4)]
    assert ours.starmap(power, pairs) == theirs.starmap(power, pairs)
    assert ours.starmap_async(power, pairs).get(LONG) == theirs.starmap_async(power, pairs).get(LONG)
    assert ours.apply(describe, (1,), {"c": 3}) == theirs.apply(describe, (1,), {"c": 3}) == (1, None, 3)
    assert ours.apply(describe, ("x", "y")) == theirs.apply(describe, ("x", "y"))
    assert ours.apply_async(divmod, (17, 5)).get(LONG) == theirs.apply_async(divmod, (17, 5)).get(LONG)


@pytest.mark.parametrize("chunksize", [1, 3])
def test_imap_and_imap_unordered_match(pools: tuple[Pool, Any], chunksize: int) -> None:
    ours, theirs = pools
    expected = [x * x for x in range(60)]
    for pool in (ours, theirs):
        assert list(pool.imap(square, range(60), chunksize)) == expected
        assert sorted(pool.imap_unordered(square, iter(range(60)), chunksize)) == expected
    assert list(ours.imap(square, [])) == list(theirs.imap(square, [])) == []


def test_imap_unordered_yields_in_completion_order(pools: tuple[Pool, Any], tmp_path: Path) -> None:
    # The first item waits until the test has a result: both yield a quick one first (an ordered
    # imap would wait for the first item). Not necessarily all three before it: one may wait behind
    # it on its worker.
    for k, pool in enumerate(both(pools)):
        gate = str(tmp_path / f"go-{k}")
        results = pool.imap_unordered(when_released, [(gate, 1.0), (None, 0), (None, 0), (None, 0)])
        first = next(results)
        Path(gate).touch()
        out = [first, *results]
        assert out[0] == 0 and sorted(out) == [0, 0, 0, 1.0]


def test_callbacks_match(pools: tuple[Pool, Any]) -> None:
    for pool in both(pools):
        got: list[Any] = []
        done = [
            pool.apply_async(square, (4,), callback=got.append),
            pool.map_async(square, [1, 2], callback=got.append),
            pool.apply_async(fail_on_3, (3,), error_callback=lambda e, got=got: got.append(repr(e))),
            pool.map_async(fail_on_3, range(5), error_callback=lambda e, got=got: got.append(repr(e))),
            pool.map_async(square, [], callback=got.append),  # empty: ready, and no callback
        ]
        for result in done:
            result.wait(LONG)  # returns once the callback has run
        assert sorted(map(repr, got)) == sorted(["16", "[1, 4]", "'KeyError(3)'", "'KeyError(3)'"])
        assert done[4].get(LONG) == []


def test_async_result_states(pools: tuple[Pool, Any], tmp_path: Path) -> None:
    for k, pool in enumerate(both(pools)):
        gate = tmp_path / f"go-{k}"
        slow = pool.apply_async(when_released, ((str(gate), 2.0),))  # runs until the gate opens
        assert not slow.ready()
        with pytest.raises(ValueError, match="not ready"):
            slow.successful()
        assert slow.wait(0.01) is None
        with pytest.raises(multiprocessing.TimeoutError):
            slow.get(timeout=0.01)
        gate.touch()
        assert slow.get(LONG) == 2.0
        assert slow.ready() and slow.successful()
        failed = pool.apply_async(fail_on_3, (3,))
        failed.wait(LONG)
        assert failed.ready() and not failed.successful()
        with pytest.raises(KeyError):
            failed.get()


def test_map_async_timeout_is_multiprocessing_timeout_error(pools: tuple[Pool, Any], tmp_path: Path) -> None:
    for k, pool in enumerate(both(pools)):
        gate = tmp_path / f"go-{k}"
        result = pool.map_async(when_released, [(None, 0), (str(gate), 2.0)])
        with pytest.raises(multiprocessing.TimeoutError):
            result.get(timeout=0.05)
        gate.touch()
        assert result.get(LONG) == [0, 2.0]
    assert mp_dropin.TimeoutError is multiprocessing.TimeoutError
    assert mp_dropin.cpu_count is multiprocessing.cpu_count


# -- parity: errors ---------------------------------------------------------------------------------


def test_a_task_exception_is_raised_with_its_type(pools: tuple[Pool, Any]) -> None:
    for pool in both(pools):
        with pytest.raises(KeyError) as info:
            pool.map(fail_on_3, range(10))
        assert info.value.args == (3,)
        # the worker's traceback comes along, as the cause
        assert "fail_on_3" in str(info.value.__cause__)
        with pytest.raises(KeyError):
            pool.apply(fail_on_3, (3,))
        with pytest.raises(KeyError):
            pool.starmap(fail_on_3, [(3,)])


def test_map_raises_the_first_failing_item_after_every_item_ran(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    with pytest.raises(ValueError, match="bad item 3"):
        ours.map(fail_on_3_and_5, range(8), chunksize=1)
    with pytest.raises(ValueError, match="bad item"):  # theirs: whichever failed first
        theirs.map(fail_on_3_and_5, range(8), chunksize=1)


def test_imap_raises_at_the_failing_item_and_goes_on(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    assert outcomes(ours.imap(fail_on_3_and_5, range(7))) == outcomes(theirs.imap(fail_on_3_and_5, range(7)))
    assert outcomes(ours.imap(fail_on_3_and_5, range(7))) == [
        0, 1, 2, "ValueError('bad item 3')", 4, "ValueError('bad item 5')", 6
    ]
    errors = ["ValueError('bad item 3')", "ValueError('bad item 5')"]
    for pool in both(pools):
        got = outcomes(pool.imap_unordered(fail_on_3_and_5, range(7)))
        assert sorted(map(str, got)) == sorted(["0", "1", "2", "4", "6", *errors])


def test_an_input_that_raises_ends_imap_after_its_error(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    expected = [1, 2, "RuntimeError('the input broke')"]
    assert outcomes(ours.imap(square, broken_input())) == [1, 4, expected[2]]
    assert outcomes(ours.imap(str, broken_input())) == outcomes(theirs.imap(str, broken_input()))
    with pytest.raises(RuntimeError):  # map reads its input at once, in the caller
        ours.map(square, broken_input())


def test_imap_next_with_a_timeout(pools: tuple[Pool, Any], tmp_path: Path) -> None:
    for k, pool in enumerate(both(pools)):
        gate = tmp_path / f"go-{k}"
        results = pool.imap(when_released, [(str(gate), 1.0)])
        with pytest.raises(multiprocessing.TimeoutError):
            results.next(timeout=0.05)
        gate.touch()
        assert results.next(timeout=LONG) == 1.0
        with pytest.raises(StopIteration):
            results.next(timeout=LONG)


def test_argument_errors_have_the_same_types() -> None:
    cases: list[tuple[type[BaseException], dict[str, Any]]] = [
        (ValueError, {"processes": 0}),
        (TypeError, {"processes": "2"}),
        (ValueError, {"maxtasksperchild": 0}),
        (TypeError, {"initializer": 3}),
    ]
    for error, kwargs in cases:
        with pytest.raises(error):
            multiprocessing.Pool(**kwargs)
        with pytest.raises(error):
            Pool(**kwargs)


def test_call_errors_have_the_same_types(pools: tuple[Pool, Any]) -> None:
    for pool in both(pools):
        with pytest.raises(ValueError, match="Chunksize must be 1"):
            pool.imap(square, range(3), chunksize=0)
        with pytest.raises(TypeError):  # ours says so at the call, theirs from the worker
            pool.map(2, [1])  # type: ignore[arg-type]
        with pytest.raises(NotImplementedError, match="cannot be passed between processes or pickled"):
            pickle.dumps(pool)
    with pytest.raises(TypeError, match=r"pool\.map\(function, \.\.\.\)"):
        pools[0].map(2, [1])  # type: ignore[arg-type]


# -- parity: workers --------------------------------------------------------------------------------


def test_initializer_and_initargs() -> None:
    for make in (Pool, multiprocessing.Pool):
        with make(2, initializer=set_prefix, initargs=("item-",)) as pool:
            assert pool.map(prefixed, range(3)) == ["item-0", "item-1", "item-2"]
            assert list(pool.imap(prefixed, "ab")) == ["item-a", "item-b"]


def test_maxtasksperchild_recycles_one_worker_process() -> None:
    for make in (Pool, multiprocessing.Pool):
        with make(1, maxtasksperchild=2) as pool:
            pids = pool.map(pid_of, range(8), chunksize=1)
        assert os.getpid() not in pids  # processes=1 is one worker process, not the caller
        assert len(set(pids)) == 4, pids


def test_processes_none_is_the_cpu_count() -> None:
    pool = Pool()
    try:
        assert pool._processes == len(os.sched_getaffinity(0))
    finally:
        pool.terminate()


# -- parity: lifecycle ------------------------------------------------------------------------------


def test_close_then_join_finishes_the_pending_work(pools: tuple[Pool, Any]) -> None:
    for pool in both(pools):
        pending = [pool.apply_async(sleep_and_return, (x,)) for x in (0.2, 0.1, 0)]
        opened = pool.imap(square, range(20))  # not read yet: join still waits for all of it
        pool.close()
        pool.join()
        assert all(r.ready() for r in pending)
        assert [r.get(0) for r in pending] == [0.2, 0.1, 0]
        assert list(opened) == [x * x for x in range(20)]


def test_a_closed_pool_refuses_work(pools: tuple[Pool, Any]) -> None:
    for pool in both(pools):
        with pytest.raises(ValueError, match="Pool is still running"):
            pool.join()
        pool.close()
        calls = [
            lambda p: p.map(square, [1]),
            lambda p: p.map_async(square, [1]),
            lambda p: p.starmap(power, [(1, 1)]),
            lambda p: p.imap(square, [1]),
            lambda p: p.imap_unordered(square, [1]),
            lambda p: p.apply(square, (1,)),
            lambda p: p.apply_async(square, (1,)),
        ]
        for call in calls:
            with pytest.raises(ValueError, match="Pool not running"):
                call(pool)
        with pytest.raises(ValueError, match="Pool not running"), pool:
            pass
        pool.join()


def test_leaving_with_terminates(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    for pool in (ours, theirs):
        with pool:
            assert pool.map(square, [3]) == [9]
        with pytest.raises(ValueError, match="Pool not running"):
            pool.map(square, [1])
        pool.join()  # allowed after terminate()


def test_terminate_stops_the_workers_and_fails_what_it_cut_short() -> None:
    pool = Pool(2)
    pids = set(pool.map(pid_of, range(4), chunksize=1))
    slow = pool.apply_async(sleep_and_return, (60,))
    opened = pool.imap(sleep_and_return, [60, 60])
    pool.terminate()
    with pytest.raises(PoolTerminatedError):
        slow.get(LONG)  # the standard library's would wait for ever
    with pytest.raises(PoolTerminatedError):
        next(opened)
    pool.join()
    assert not any(pid_running(pid) for pid in pids)


def test_a_dropped_pool_stops_its_workers() -> None:
    pool = Pool(2)
    pids = set(pool.map(pid_of, range(4), chunksize=1))
    del pool
    gc.collect()
    deadline = time.monotonic() + LONG
    while any(pid_running(pid) for pid in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(pid_running(pid) for pid in pids)


# -- what the standard library cannot do ------------------------------------------------------------


def test_lambdas_work_where_the_standard_library_cannot_pickle_them(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    offset = 10
    assert ours.map(lambda x: x + offset, range(3)) == [10, 11, 12]
    assert ours.apply(lambda: "closure") == "closure"
    with pytest.raises((pickle.PicklingError, AttributeError, TypeError)):
        theirs.map(lambda x: x + offset, range(3))


def test_lambdas_and_main_functions_under_spawn(tmp_path: Path) -> None:
    script = tmp_path / "spawned.py"
    script.write_text(textwrap.dedent("""\
        import json
        import multiprocessing

        from mtasklite_like.multiprocessing import Pool

        def double(x):
            return 2 * x

        if __name__ == "__main__":
            spawn = multiprocessing.get_context("spawn")
            with Pool(2, context=spawn) as pool:
                ours = [pool.map(lambda x: x + 1, range(4)), pool.map(double, range(4))]
            with spawn.Pool(2) as pool:
                try:
                    pool.map(lambda x: x + 1, range(4))
                    theirs = "worked"
                except Exception as exc:
                    theirs = type(exc).__name__
            print("RESULT " + json.dumps({"ours": ours, "theirs": theirs}), flush=True)
    """))
    proc = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr
    result = json.loads(lines[0][len("RESULT "):])
    assert result["ours"] == [[1, 2, 3, 4], [0, 2, 4, 6]]
    assert result["theirs"] != "worked"


@pytest.mark.timeout(90)
def test_a_killed_worker_raises_instead_of_hanging(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    with pytest.raises(WorkerDiedError) as info:
        ours.map(kill_self_on_3, range(8), chunksize=1)
    assert info.value.input_index == 3
    assert info.value.items == [3]
    assert "SIGKILL" in str(info.value)
    # the worker was replaced: the pool goes on
    assert ours.map(square, range(5)) == [0, 1, 4, 9, 16]
    got = outcomes(ours.imap(kill_self_on_3, range(5)))  # imap raises at the item, then goes on
    assert got[:3] == [0, 1, 2] and got[3].startswith("WorkerDiedError(") and got[4:] == [4]
    # The standard library replaces the worker but waits for its task for ever.
    lost = theirs.map_async(kill_self_on_3, range(8), chunksize=1)
    with pytest.raises(multiprocessing.TimeoutError):
        lost.get(timeout=2.0)


def test_on_worker_death_raise_fails_the_calls_in_flight_and_the_pool_goes_on() -> None:
    with Pool(2, on_worker_death="raise") as pool:
        with pytest.raises(WorkerDiedError, match="SIGKILL"):
            pool.map(kill_self_on_3, range(8), chunksize=1)
        assert pool.map(square, range(4)) == [0, 1, 4, 9]  # fresh workers for the next call


def test_a_failing_initializer_raises_instead_of_restarting_for_ever() -> None:
    with Pool(2, initializer=failing_initializer) as pool:
        with pytest.raises(WorkerInitError) as info:
            pool.map(square, range(4))
        assert isinstance(info.value.__cause__, OSError)
        with pytest.raises(WorkerInitError):
            pool.apply_async(square, (2,)).get(LONG)


def test_imap_reads_its_input_lazily(monkeypatch: pytest.MonkeyPatch, pools: tuple[Pool, Any]) -> None:
    monkeypatch.setattr(mp_dropin, "IMAP_AHEAD_PER_WORKER", 8)  # 16 for 2 workers
    monkeypatch.setattr(mp_dropin, "IMAP_AHEAD_MOST", 64)
    ours, theirs = pools
    pulled = itertools.count()
    read = [0]

    def endless() -> Iterator[int]:
        for i in itertools.count():
            read[0] = next(pulled) + 1
            yield i

    results = ours.imap(square, endless())
    for taken in range(1, 301):
        assert next(results) == (taken - 1) ** 2
        assert read[0] <= taken + 64
    # The standard library reads the whole input at once, whatever was taken.
    read_theirs = [0]

    def finite() -> Iterator[int]:
        for i in range(20_000):
            read_theirs[0] = i + 1
            yield i

    theirs_results = theirs.imap(square, finite())
    assert next(theirs_results) == 0
    deadline = time.monotonic() + LONG
    while read_theirs[0] < 20_000 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert read_theirs[0] == 20_000


@pytest.mark.timeout(60)
def test_calls_do_not_wait_for_an_open_imap(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    opened = ours.imap(square, itertools.count())  # endless, and left unread
    assert next(opened) == 0
    assert ours.apply_async(square, (7,)).get(LONG) == 49
    assert ours.map(square, range(4)) == [0, 1, 4, 9]
    # two open iterators read in turn, and a map inside an imap loop
    pairs = zip(ours.imap(square, range(50)), ours.imap_unordered(square, range(50)))
    assert sum(1 for _ in pairs) == 50
    for x in ours.imap(square, range(3)):
        assert ours.map(square, [x]) == [x * x]
    assert next(opened) == 1


@pytest.mark.timeout(60)
def test_a_dropped_imap_iterator_stops_reading_its_input() -> None:
    pool = Pool(2)
    opened = pool.imap(square, itertools.count())
    assert next(opened) == 0
    del opened
    gc.collect()
    pool.close()
    pool.join()  # would read the endless input for ever if the iterator still counted


@pytest.mark.timeout(60)
def test_an_iterator_finalized_inside_the_pools_critical_section_does_not_deadlock() -> None:
    # The garbage collector runs a dropped iterator's finalizer wherever an allocation triggers it,
    # which may be the pool's own thread while it holds its lock (naming a failure, say).
    with Pool(2) as pool:
        opened = pool.imap(square, itertools.count())
        assert next(opened) == 0
        with pool._core.lock:
            opened._finalizer()  # what the garbage collector would run
        assert pool.map(square, range(4)) == [0, 1, 4, 9]


def test_errors_name_their_position_in_their_own_call(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    assert ours.map(square, range(10)) == [x * x for x in range(10)]  # an earlier run
    slow = ours.apply_async(sleep_and_return, (0.2,))  # items of another call in the same stream
    with pytest.raises(ValueError) as info:
        ours.map(fail_on_3_and_5, range(8), chunksize=1)
    assert info.value.input_index == 3  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):
        assert info.value.__notes__ == ["input item #3"]
    assert slow.get(LONG) == 0.2


def test_a_callback_that_waits_for_the_pool_is_refused(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    errors: list[BaseException] = []
    done = threading.Event()

    def callback(_result: Any) -> None:
        try:
            ours.apply(square, (2,))
        except BaseException as exc:
            errors.append(exc)
        done.set()

    ours.apply_async(square, (1,), callback=callback).get(LONG)
    assert done.wait(LONG)
    assert isinstance(errors[0], RuntimeError) and "callback" in str(errors[0])


def test_a_failing_callback_is_reported_and_the_pool_goes_on(
    pools: tuple[Pool, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    ours = pools[0]

    def bad_callback(_result: Any) -> None:
        raise ZeroDivisionError("in the callback")

    assert ours.apply_async(square, (3,), callback=bad_callback).get(LONG) == 9
    assert ours.map(square, [2]) == [4]
    assert "ZeroDivisionError: in the callback" in capsys.readouterr().err


def test_calls_from_several_threads(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    results: dict[int, list[int]] = {}

    def work(k: int) -> None:
        results[k] = ours.map(square, range(k * 100, k * 100 + 100))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LONG)
    assert results == {k: [x * x for x in range(k * 100, k * 100 + 100)] for k in range(4)}


def test_pool_options_apply_to_every_call() -> None:
    with Pool(2, task_timeout=0.5) as pool:
        with pytest.raises(TaskTimeoutError):
            pool.apply(sleep_and_return, (30,))
        assert pool.map(square, range(3)) == [0, 1, 4]
    with Pool(2, use_threads=True) as pool:
        assert set(pool.map(pid_of, range(4))) == {os.getpid()}


@pytest.mark.parametrize(
    ("option", "hint"),
    [("n_jobs", "processes="), ("exception_behavior", "raised by map"), ("is_unordered", "imap_unordered"),
     ("max_tasks_per_worker", "maxtasksperchild="), ("journal", "resumable")],
)
def test_options_the_layer_sets_are_refused_with_what_to_use(option: str, hint: str) -> None:
    with pytest.raises(TypeError, match=hint):
        Pool(2, **{option: 1})


def test_context_sets_the_start_method() -> None:
    with pytest.raises(TypeError, match="context"):
        Pool(2, context="spawn")
    with pytest.raises(TypeError, match="not both"):
        Pool(2, context=multiprocessing.get_context("fork"), start_method="spawn")
    with Pool(2, context=multiprocessing.get_context("fork")) as pool:
        assert pool.map(square, [5]) == [25]


# -- chunks: map() with chunksize=None or > 1, imap(chunksize > 1) -----------------------------------


def chunk_groups(pids: list[int]) -> list[int]:
    """The lengths of the runs of equal values: with one worker replaced after every task, the
    sizes of the chunks the input was cut into."""
    return [len(list(run)) for _, run in itertools.groupby(pids)]


def _map_pids(pool: Any, n: int, chunksize: int | None) -> list[int]:
    """``pool.map(pid_of, range(n), chunksize)``. The standard library's pool with
    ``maxtasksperchild`` may be caught with no worker in its list while it replaces one, and then
    fails to work out a chunk size (ZeroDivisionError, its own race, seen on a busy machine): it is
    asked again until it has a worker, LONG seconds at most."""
    deadline = time.monotonic() + LONG
    while True:
        try:
            return pool.map(pid_of, range(n), chunksize)
        except ZeroDivisionError:
            if isinstance(pool, Pool) or time.monotonic() > deadline:
                raise
            time.sleep(0.01)


@pytest.mark.timeout(120)
def test_chunk_boundaries_are_those_of_the_standard_library() -> None:
    # One worker, replaced after each task (a chunk is one task, as there): a new pid per chunk.
    calls: list[tuple[int, int | None]] = [(10, 3), (10, None), (9, 3), (3, 5), (1, None)]
    for make in (Pool, multiprocessing.Pool):
        with make(1, maxtasksperchild=1) as pool:
            got = [chunk_groups(_map_pids(pool, n, chunksize)) for n, chunksize in calls]
        # chunksize=None: divmod(n, 4 * processes), one more when it does not divide
        assert got == [[3, 3, 3, 1], [3, 3, 3, 1], [3, 3, 3], [3], [1]], make


@pytest.fixture(scope="module")
def shared_pool() -> Iterator[Pool]:
    """One pool of ours for the many small calls of a parametrized test."""
    with Pool(2) as pool:
        yield pool


@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 31, 200])
@pytest.mark.parametrize("chunksize", [None, 2, 3, 8, 50, 1000])
def test_chunked_results_in_order_for_any_length(shared_pool: Pool, n: int, chunksize: int | None) -> None:
    ours = shared_pool
    expected = [x * x for x in range(n)]
    assert ours.map(square, range(n), chunksize) == expected
    assert ours.map(square, list(range(n)), chunksize) == expected
    assert ours.starmap(power, [(x, 2) for x in range(n)], chunksize) == expected
    assert ours.map_async(square, tuple(range(n)), chunksize).get(LONG) == expected
    if chunksize is not None:
        assert list(ours.imap(square, range(n), chunksize)) == expected
        assert sorted(ours.imap_unordered(square, range(n), chunksize)) == expected


def test_inputs_without_a_length_are_chunked(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    expected = [x * x for x in range(101)]
    assert ours.map(square, (x for x in range(101))) == expected
    assert theirs.map(square, (x for x in range(101))) == expected
    assert ours.map(square, iter(range(101)), 7) == expected
    assert list(ours.imap(square, (x for x in range(101)), 7)) == expected
    assert sorted(ours.imap_unordered(square, (x for x in range(101)), 7)) == expected
    assert ours.map(square, {3: "a", 1: "b"}, 2) == [9, 1]  # any iterable, in its own order


def test_a_failure_inside_a_chunk_names_its_own_item(pools: tuple[Pool, Any]) -> None:
    ours, theirs = pools
    # chunks [0..3] [4..7] [8, 9]: item 3 ends the first chunk, item 5 is inside the second
    with pytest.raises(ValueError, match="bad item 3") as info:
        ours.map(fail_on_3_and_5, range(10), chunksize=4)
    error = info.value
    assert error.input_index == 3  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):
        assert error.__notes__ == ["input item #3"]
    assert isinstance(error.__cause__, RemoteTraceback)
    assert "fail_on_3_and_5" in str(error.__cause__) and "bad item 3" in str(error.__cause__)
    with pytest.raises(ValueError, match="bad item 5") as info:
        ours.starmap(fail_on_3_and_5, [(x,) for x in range(4, 10)], chunksize=4)
    assert info.value.input_index == 1  # type: ignore[attr-defined]  # relative to the call
    with pytest.raises(ValueError, match="bad item 3"):  # the standard library: the same error
        theirs.map(fail_on_3_and_5, range(4), chunksize=4)


def test_imap_chunks_give_each_element_its_own_outcome(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    got = outcomes(ours.imap(fail_on_3_and_5, range(10), chunksize=4))
    assert got == [0, 1, 2, "ValueError('bad item 3')", 4, "ValueError('bad item 5')", 6, 7, 8, 9]
    errors: list[BaseException] = []
    for x in ours.imap(fail_on_3_and_5, range(2, 12), chunksize=3), ours.imap_unordered(
        fail_on_3_and_5, range(2, 12), chunksize=3
    ):
        while True:
            try:
                next(x)
            except StopIteration:
                break
            except ValueError as exc:
                errors.append(exc)
    # items 3 and 5 are elements #1 and #3 of each call
    assert sorted(e.input_index for e in errors) == [1, 1, 3, 3]  # type: ignore[attr-defined]
    assert all(isinstance(e.__cause__, RemoteTraceback) for e in errors)


def test_a_chunk_element_whose_exception_cannot_be_pickled_fails_alone(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    got = outcomes(ours.imap(unpicklable_on_2, range(6), chunksize=3))
    assert got[:2] == [0, 1] and got[3:] == [3, 4, 5]
    assert got[2].startswith("TaskPicklingError(") and "Unpicklable" in got[2]


def test_chunks_in_threads_keep_the_exception_and_its_traceback() -> None:
    with Pool(2, use_threads=True) as pool, pytest.raises(KeyError) as info:
        pool.map(fail_on_3, range(10), chunksize=4)
    assert info.value.input_index == 3  # type: ignore[attr-defined]
    assert "fail_on_3" in "".join(traceback.format_exception(info.value))


@pytest.mark.timeout(90)
def test_a_death_inside_a_chunk_fails_that_chunk_and_names_its_first_item(pools: tuple[Pool, Any]) -> None:
    ours = pools[0]
    with pytest.raises(WorkerDiedError) as info:
        ours.map(kill_self_on_5, range(10), chunksize=4)
    assert info.value.input_index == 4 and info.value.items == [4]  # type: ignore[attr-defined]
    if sys.version_info >= (3, 11):
        assert "input items #4 to #7" in info.value.__notes__[-1]
    got = outcomes(ours.imap(kill_self_on_5, range(10), chunksize=4))
    assert got[:4] == [0, 1, 2, 3] and got[8:] == [8, 9]
    assert all(str(outcome).startswith("WorkerDiedError(") for outcome in got[4:8])
    assert ours.map(square, range(9), 4) == [x * x for x in range(9)]  # the worker was replaced


@pytest.mark.timeout(90)
def test_a_death_inside_a_chunk_names_every_element() -> None:
    with Pool(2) as pool:
        results = pool.imap(kill_self_on_5, range(10), chunksize=4)
        named: list[tuple[int, list[Any]]] = []
        values: list[int] = []
        while True:
            try:
                values.append(next(results))
            except StopIteration:
                break
            except WorkerDiedError as exc:
                named.append((exc.input_index, exc.items))  # type: ignore[attr-defined]
    assert values == [0, 1, 2, 3, 8, 9]
    assert named == [(4, [4]), (5, [5]), (6, [6]), (7, [7])]


def test_with_a_task_timeout_each_item_is_timed_alone() -> None:
    # As one chunk, the 30 items would run 3 s, past the limit; each alone runs 0.1 s.
    with Pool(2, task_timeout=2.0) as pool:
        assert pool.map(sleep_and_return, [0.1] * 30, chunksize=30) == [0.1] * 30
