"""The engine's logic on a simulated backend: deterministic, exhaustive where it matters, fast.

Each case runs the real engine (ledger, release, admission, worker set, faults) against
``tests/fake_backend.py``, whose workers run on a virtual clock. A death, a hang or a failure is
scripted on an item, so every position in a batch, every exception mode and both orders are
covered in milliseconds. The real-process tests remain the end-to-end proof.
"""

from __future__ import annotations

import math
import threading

import pytest

from mtasklite_like import (
    DeferredExceptions,
    Pool,
    TaskTimeoutError,
    WorkerDiedError,
    WorkerInitError,
    is_exception,
)
from mtasklite_like._backends import register_backend
from mtasklite_like._backends.base import Capabilities, WorkerDied, WorkerReady
from tests.fake_backend import FakeBackend, Step, run_step

pytestmark = pytest.mark.timeout(30)

MODES = ["immediate", "ignore", "deferred"]


def _pool(n_jobs: int = 2, **options: object) -> Pool:
    return Pool(run_step, n_jobs, backend="fake", **options)


# -- deaths at every position --------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
@pytest.mark.parametrize("position", range(12))
@pytest.mark.parametrize("unordered", [False, True])
def test_a_death_fails_only_the_running_item_and_loses_nothing(chunk_size, position, unordered):
    items = [Step(i) for i in range(12)]
    items[position].dies = 1
    out = list(_pool(chunk_size=chunk_size, is_unordered=unordered, exception_behavior="ignore")(items))
    assert len(out) == 12
    errors = [r for r in out if isinstance(r, WorkerDiedError)]
    assert len(errors) == 1 and errors[0].indices == [position]
    values = [r for r in out if not is_exception(r)]
    expected = [i for i in range(12) if i != position]
    assert (sorted(values) if unordered else values) == expected
    if not unordered:
        assert isinstance(out[position], WorkerDiedError)
    assert f"while running input item #{position}" in str(errors[0])


@pytest.mark.parametrize("chunk_size", [1, 4])
@pytest.mark.parametrize("position", range(8))
def test_a_death_with_a_retry_left_gives_every_result(chunk_size, position):
    items = [Step(i) for i in range(8)]
    items[position].dies = 1
    out = list(_pool(chunk_size=chunk_size, exception_behavior="ignore", retries=1)(items))
    assert out == list(range(8))
    assert items[position].attempts == 2


@pytest.mark.parametrize("position", range(6))
@pytest.mark.parametrize("unordered", [False, True])
def test_a_death_under_raise_names_the_item_and_stops(position, unordered):
    items = [Step(i) for i in range(6)]
    items[position].dies = 1
    got = []
    with pytest.raises(WorkerDiedError) as info:
        for r in _pool(chunk_size=2, is_unordered=unordered)(items):
            got.append(r)
    assert position in info.value.indices
    assert "on_worker_death='restart'" in str(info.value)
    assert position not in got


class _DiesAtStart(FakeBackend):
    """Every worker dies as it starts: no item can be blamed."""

    def _next(self, w):
        t, event, dies = super()._next(w)
        if isinstance(event, WorkerReady):
            return t, WorkerDied(self._workers.index(w), "died at start"), True
        return t, event, dies


register_backend("fake-dies-at-start", lambda specs, start_method: _DiesAtStart(specs))


@pytest.mark.parametrize("mode", ["ignore", "deferred"])
def test_deaths_blamed_on_no_item_end_the_run(mode):
    pool = Pool(run_step, 2, backend="fake-dies-at-start", exception_behavior=mode, on_worker_death="restart")
    with pytest.raises(WorkerDiedError, match="keep dying") as info:
        list(pool(range(100)))
    assert "on_worker_death='restart'" not in str(info.value)
    assert len(FakeBackend.made[-1].replaced) == max(3, 2 * 2)


def test_deaths_blamed_on_no_item_fail_no_item_in_immediate_mode():
    # Workers that die before running anything fail none of the items they held: the run ends
    # with the deaths themselves once they keep happening.
    pool = Pool(run_step, 2, backend="fake-dies-at-start", on_worker_death="restart")
    with pytest.raises(WorkerDiedError, match="keep dying") as info:
        list(pool(range(100)))
    assert "while running input item" not in str(info.value)


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
@pytest.mark.parametrize("position", range(12))
@pytest.mark.parametrize("unordered", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_a_death_after_an_item_costs_at_most_that_item(chunk_size, position, unordered, mode):
    # The worker dies once the item at ``position`` has finished and before the next starts: in
    # the middle of its batch, or (last of a batch) between two batches while it holds the next.
    items = [Step(i) for i in range(12)]
    items[position].dies_after = 1
    pool = _pool(chunk_size=chunk_size, is_unordered=unordered, exception_behavior=mode,
                 on_worker_death="restart")
    out: list[object] = []
    raised: BaseException | None = None
    try:
        for r in pool(items):
            out.append(r)
    except (WorkerDiedError, DeferredExceptions) as exc:
        raised = exc
    deaths = sum(kill for _, kill in FakeBackend.made[-1].replaced)
    assert deaths == 1
    failed = [r for r in out if is_exception(r)]
    if isinstance(raised, WorkerDiedError):  # 'immediate': the blamed item's error ends the run
        failed.append(raised)
    assert len(failed) <= deaths
    blamed = {e.input_index for e in failed}
    assert blamed <= {position}
    if not isinstance(raised, WorkerDiedError):
        assert len(out) == 12
        values = [r for r in out if not is_exception(r)]
        expected = [i for i in range(12) if i not in blamed]
        assert (sorted(values) if unordered else values) == expected


@pytest.mark.parametrize("chunk_size", [1, 3, 8])
@pytest.mark.parametrize("position", range(12))
@pytest.mark.parametrize("unordered", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_an_item_that_cannot_be_unpickled_fails_alone(chunk_size, position, unordered, mode):
    items = [Step(i) for i in range(12)]
    items[position].unreadable = True
    out: list[object] = []
    raised: BaseException | None = None
    try:
        for r in _pool(chunk_size=chunk_size, is_unordered=unordered, exception_behavior=mode)(items):
            out.append(r)
    except (ValueError, DeferredExceptions) as exc:
        raised = exc
    failed = [r for r in out if is_exception(r)]
    if mode == "immediate":
        assert isinstance(raised, ValueError) and raised.input_index == position
        assert position not in out
        if not unordered:
            assert out == list(range(position))
        return
    assert len(out) == 12 and len(failed) == 1
    assert str(failed[0]) == f"cannot unpickle {position}" and failed[0].input_index == position
    values = [r for r in out if not is_exception(r)]
    expected = [i for i in range(12) if i != position]
    assert (sorted(values) if unordered else values) == expected
    assert not FakeBackend.made[-1].replaced  # no worker died for it


@pytest.mark.parametrize("seed", range(40))
@pytest.mark.parametrize("unordered", [False, True])
def test_random_deaths_fail_at_most_one_item_each(seed, unordered):
    import random

    rng = random.Random(seed)
    items = [Step(i) for i in range(300)]
    for step in rng.sample(items, 25):
        if rng.random() < 0.5:
            step.dies = 1
        else:
            step.dies_after = 1
    pool = _pool(chunk_size=rng.choice([1, 2, 5, 16]), is_unordered=unordered,
                 exception_behavior="ignore", retries=0)
    out = list(pool(items))
    deaths = sum(kill for _, kill in FakeBackend.made[-1].replaced)
    failed = [r for r in out if is_exception(r)]
    assert len(out) == 300
    assert len(failed) <= deaths
    assert all(isinstance(e, WorkerDiedError) and "while running input item" in str(e) for e in failed)
    got = sorted([r for r in out if not is_exception(r)] + [e.input_index for e in failed])
    assert got == list(range(300))


# -- timeouts --------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", ["fake", "fake-threads"])
@pytest.mark.parametrize("position", range(5))
def test_a_hung_item_times_out_alone(backend, position):
    items = [Step(i) for i in range(5)]
    items[position].seconds = math.inf
    pool = Pool(run_step, 2, backend=backend, task_timeout=1.0, exception_behavior="ignore")
    out = list(pool(items))
    assert [r for i, r in enumerate(out) if i != position] == [i for i in range(5) if i != position]
    assert isinstance(out[position], TaskTimeoutError)
    how = "killed" if backend == "fake" else "abandoned"
    assert how in str(out[position]) and f"#{position}" in str(out[position])
    assert FakeBackend.made[-1].replaced == [(FakeBackend.made[-1].replaced[0][0], True)]


def test_a_transient_hang_with_a_retry_gives_the_result():
    items = [Step(i) for i in range(4)]
    items[2].hangs = 1
    out = list(_pool(task_timeout=0.5, retries=1, exception_behavior="ignore")(items))
    assert out == [0, 1, 2, 3]


def test_a_timeout_in_immediate_mode_raises_after_the_earlier_results():
    items = [Step(i) for i in range(6)]
    items[3].seconds = 100.0
    got = []
    with pytest.raises(TaskTimeoutError, match="#3"):
        for r in _pool(task_timeout=2.0)(items):
            got.append(r)
    assert got == [0, 1, 2]


def test_init_timeout_fails_the_run():
    FakeBackend.init_seconds = 5.0
    try:
        with pytest.raises(WorkerInitError, match=r"init_timeout=1\.0"):
            list(_pool(init_timeout=1.0)(range(3)))
    finally:
        FakeBackend.init_seconds = 0.0


def test_a_slow_start_within_init_timeout_is_fine():
    FakeBackend.init_seconds = 0.5
    try:
        assert list(_pool(init_timeout=1.0)(range(3))) == [0, 1, 2]
    finally:
        FakeBackend.init_seconds = 0.0


# -- exception modes and orders ------------------------------------------------------------------------


def _failing_items(n: int, bad: set[int], slow: set[int] = frozenset()) -> list[Step]:
    return [
        Step(i, seconds=0.5 if i in slow else 0.001, raises=ValueError(i) if i in bad else None)
        for i in range(n)
    ]


@pytest.mark.parametrize("unordered", [False, True])
@pytest.mark.parametrize("retries", [0, 2])
def test_deferred_raises_the_failures_in_the_order_they_were_yielded(unordered, retries):
    items = _failing_items(10, bad={1, 4, 7}, slow={0, 1})
    yielded = []
    with pytest.raises(DeferredExceptions) as info:
        for r in _pool(is_unordered=unordered, exception_behavior="deferred", retries=retries)(items):
            yielded.append(r)
    assert len(yielded) == 10
    assert info.value.exceptions == [r for r in yielded if is_exception(r)]
    if retries:
        assert all(e.attempts == retries + 1 for e in info.value.exceptions)


@pytest.mark.parametrize("unordered", [False, True])
def test_immediate_raises_the_first_failure_without_losing_earlier_results(unordered):
    items = _failing_items(12, bad={5})
    got = []
    with pytest.raises(ValueError, match="5"):
        for r in _pool(is_unordered=unordered, chunk_size=3)(items):
            got.append(r)
    if not unordered:
        assert got == list(range(5))
    assert 5 not in got


@pytest.mark.parametrize("chunk_size", [1, 2, 4])
@pytest.mark.parametrize("slow", range(6))
@pytest.mark.parametrize("retries", [0, 1])
def test_ordered_immediate_yields_every_result_before_the_first_failure(chunk_size, slow, retries):
    # Item 6 fails at once; an earlier item is slow, so the failure is known first. Every result
    # before it must still come out, then item 6's error, whatever finished first.
    items = [Step(i) for i in range(10)]
    items[slow].seconds = 5.0
    items[6].raises = ValueError("item 6")
    got = []
    with pytest.raises(ValueError, match="item 6") as info:
        for r in _pool(chunk_size=chunk_size, retries=retries)(items):
            got.append(r)
    assert got == list(range(6))
    assert info.value.input_index == 6


@pytest.mark.parametrize("chunk_size", [1, 2, 3])
@pytest.mark.parametrize("unordered", [False, True])
def test_immediate_raises_the_earliest_of_two_failures_when_ordered(chunk_size, unordered):
    # Item 1 fails late, item 4 fails early: ordered, item 1's error is the one raised.
    items = [Step(i) for i in range(8)]
    items[1].seconds, items[1].raises = 5.0, ValueError("item 1")
    items[4].raises = ValueError("item 4")
    got = []
    with pytest.raises(ValueError) as info:
        for r in _pool(chunk_size=chunk_size, is_unordered=unordered)(items):
            got.append(r)
    if unordered:
        assert info.value.input_index in (1, 4)
    else:
        assert str(info.value) == "item 1" and got == [0]


def test_ordered_immediate_does_not_wait_for_items_after_the_failure():
    # Item 3 hangs (no timeout) after the failing item 1 in the same batch: the error is raised
    # without waiting for it.
    items = [Step(i) for i in range(4)]
    items[1].raises = ValueError("item 1")
    items[3].seconds = math.inf
    got = []
    with pytest.raises(ValueError, match="item 1"):
        for r in _pool(n_jobs=1 + 1, chunk_size=4)(items):
            got.append(r)
    assert got == [0]


@pytest.mark.parametrize("unordered", [False, True])
def test_ignore_yields_every_item_once(unordered):
    items = _failing_items(40, bad={0, 13, 39}, slow={2, 20})
    out = list(_pool(3, is_unordered=unordered, exception_behavior="ignore")(items))
    values = sorted(r for r in out if not is_exception(r))
    assert values == [i for i in range(40) if i not in {0, 13, 39}]
    assert sorted(e.args[0] for e in out if is_exception(e)) == [0, 13, 39]
    if not unordered:
        assert [r if not is_exception(r) else r.args[0] for r in out] == list(range(40))


def test_ordered_output_with_a_slow_head_keeps_other_workers_busy():
    items = [Step(i, seconds=5.0 if i == 0 else 0.01) for i in range(50)]
    pool = _pool(2)
    assert list(pool(items)) == list(range(50))
    backend = FakeBackend.made[-1]
    # While item 0 ran for 5 virtual seconds, the other worker did the other 49 (0.49 s).
    assert backend.now < 5.5


# -- admission ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unordered", [False, True])
def test_the_input_is_never_read_beyond_the_window(unordered):
    pulled = []

    def source():
        for i in range(10_000):
            pulled.append(i)
            yield i

    results = _pool(2, is_unordered=unordered)(source())
    seen = 0
    for _ in results:
        seen += 1
        if seen == 50:
            break
    # x2 workers x 2 batches x 4096 max batch x 2 ordered slack is the bound; far less is read.
    assert len(pulled) - seen <= 2 * 2 * 4096 * 2


def test_max_tasks_per_worker_replaces_workers_without_killing():
    out = list(_pool(2, max_tasks_per_worker=3)(range(20)))
    assert out == list(range(20))
    backend = FakeBackend.made[-1]
    assert backend.replaced and all(not kill for _, kill in backend.replaced)
    for _worker, indices in backend.sent:
        assert len(indices) <= 3


def test_retried_items_travel_alone_with_their_input_index():
    items = [Step(i) for i in range(200)]
    items[150].raises = ValueError("always")
    out = list(_pool(chunk_size=4, retries=1, exception_behavior="ignore")(items))
    assert isinstance(out[150], ValueError) and out[150].attempts == 2
    carrying = [indices for _, indices in FakeBackend.made[-1].sent if 150 in indices]
    assert len(carrying) == 2 and len(carrying[0]) > 1 and carrying[1] == [150]
    assert any(len(indices) > 1 for _, indices in FakeBackend.made[-1].sent)


# -- input read in the background -------------------------------------------------------------------------


class _NoWake(FakeBackend):
    """A backend that cannot be woken: the engine must look at the input by itself."""

    capabilities = Capabilities(wakes=False)

    def wake(self):
        pass


register_backend("fake-no-wake", lambda specs, start_method: _NoWake(specs))


@pytest.mark.parametrize("backend", ["fake", "fake-no-wake"])
@pytest.mark.parametrize("unordered", [False, True])
def test_results_flow_while_the_input_blocks(backend, unordered):
    gate = threading.Event()
    blocked = threading.Event()

    def source():
        yield from (Step(i) for i in range(3))
        blocked.set()
        assert gate.wait(20), "never released"
        yield from (Step(i) for i in range(3, 6))

    def task(step):
        # Item 2 finishes only once the source is blocked: its result arrives while the source is.
        if step.value == 2:
            assert blocked.wait(20), "the source was never read up to its block"
        return run_step(step)

    results = Pool(task, 2, backend=backend, is_unordered=unordered)(source())
    got = [next(results) for _ in range(3)]
    assert blocked.is_set() and not gate.is_set()
    assert sorted(got) == [0, 1, 2]
    gate.set()
    assert sorted(results) == [3, 4, 5]


@pytest.mark.parametrize("unordered", [False, True])
def test_a_slow_input_sends_each_item_as_it_comes(unordered):
    """Items arrive one by one (each only after the previous result was delivered): every message
    carries the one item there is, and nothing waits for a batch to fill."""
    delivered = [threading.Event() for _ in range(30)]

    def lock_step():
        for i in range(30):
            assert not i or delivered[i - 1].wait(20), f"item {i} needed before result {i - 1} came"
            yield Step(i, seconds=0.0001)

    for i, r in enumerate(_pool(2, is_unordered=unordered)(lock_step())):
        assert r == i
        delivered[i].set()
    backend = FakeBackend.made[-1]
    assert [indices for _, indices in backend.sent] == [[i] for i in range(30)]
    assert backend.wakes >= 1


def test_input_read_in_the_caller_on_request():
    reader = []

    def source():
        for i in range(5):
            reader.append(threading.current_thread())
            yield i

    assert list(_pool(2, input_thread=False)(source())) == list(range(5))
    assert set(reader) == {threading.current_thread()}
    reader.clear()
    assert list(_pool(2)(source())) == list(range(5))
    assert set(reader) != {threading.current_thread()}
