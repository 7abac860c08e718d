"""Coroutine workers, ``async for`` over results, async inputs and rate limits, against a real server.

The server (``tests/async_helpers.py``) runs on 127.0.0.1 and is the witness: it counts requests
in flight (in all and per worker), timestamps their arrival and sees abandoned connections, so
concurrency limits, rate limits and cancellations are checked where they happen, not in the pool.
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import os
import queue
import signal
import struct
import threading
import time
import weakref

import pytest

from mtasklite_like import Pool, TaskTimeoutError, WorkerDiedError, delayed_init, is_exception
from mtasklite_like._backends import register_backend
from mtasklite_like._backends.processes import ProcessBackend
from mtasklite_like._backends.threads import ThreadBackend
from mtasklite_like._engine import results as results_module
from mtasklite_like._engine.rate_limit import RateLimiter, StartGate, check_rate, start_gate
from mtasklite_like._worker.coroutines import serve_coroutines
from mtasklite_like._worker.run import WorkerSpec
from mtasklite_like.threads import pqdm as threads_pqdm
from tests import async_helpers as h
from tests import helpers
from tests.fake_backend import FakeBackend, Step, run_step

pytestmark = pytest.mark.timeout(30)

BACKENDS = ["threads", "processes"]


@pytest.fixture(scope="module")
def server_module():
    with h.LocalServer() as server:
        yield server


@pytest.fixture
def server(server_module):
    server_module.reset()
    return server_module


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) counts as gone.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ")[1][0] != "Z"
    except OSError:
        return False


def _wait(predicate, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


# -- the starts a StartGate grants, as it stamps them --------------------------------------------------
#
# A task that reads the clock once the gate let it through can be paused between the two on a busy
# machine, so the times it sees may bunch up by however long the pause was. The gate's own stamps
# (taken before its lock, compared with when the next start is due under it) cannot: two starts it
# grants are always an interval apart, whatever the load. The tests record them, and check the times
# seen outside only from below: the k-th start (0-based) of a run is at least k intervals after a
# time read before the run began.

_GRANT_LOG: list[str] = []  # where the patched StartGate._update notes grants (the ``grants`` fixture)
_UPDATE = StartGate._update


def _note_grant(log: str, stamp: float) -> None:
    fd = os.open(log, os.O_CREAT | os.O_WRONLY | os.O_APPEND)
    try:
        os.write(fd, struct.pack("d", stamp))
    finally:
        os.close(fd)


def _read_grants(log: str) -> list[float]:
    if not os.path.exists(log):
        return []
    with open(log, "rb") as f:
        data = f.read()
    return sorted(t for (t,) in struct.iter_unpack("d", data))


def _recording_update(self, fd, lock, now, *, take):
    wait = _UPDATE(self, fd, lock, now, take=take)
    if take and wait == 0.0 and _GRANT_LOG:
        _note_grant(_GRANT_LOG[0], now)
    return wait


@pytest.fixture
def grants(monkeypatch, tmp_path):
    """The starts every StartGate grants during the test (in this process and in the processes it
    forks), as the gate stamped them: call it for the sorted list."""
    log = str(tmp_path / "grants")
    monkeypatch.setattr(StartGate, "_update", _recording_update)
    _GRANT_LOG[:] = [log]
    yield lambda: _read_grants(log)
    _GRANT_LOG.clear()


class _RecordingGate(StartGate):
    """A StartGate that notes each start it grants next to its file (any start method: it pickles as
    its path, and the class is found by name)."""

    def _update(self, fd, lock, now, *, take):
        wait = _UPDATE(self, fd, lock, now, take=take)
        if take and wait == 0.0:
            _note_grant(self.path + ".grants", now)
        return wait

    def grants(self) -> list[float]:
        return _read_grants(self.path + ".grants")


def _paced_from(t0: float, times: list[float], rate: float) -> list[tuple[int, float]]:
    """The starts that came sooner than the rate allows after ``t0``, a time read before the run:
    (k, seconds after t0) for each k-th start (0-based) less than k intervals after it."""
    return [(k, t - t0) for k, t in enumerate(sorted(times)) if t - t0 < k / rate - 1e-9]


# -- concurrency -------------------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrency_never_exceeds_the_limit_per_worker(server, backend):
    urls = [server.url(f"/echo/{i}?ms=100") for i in range(40)]
    with Pool(h.get, n_jobs=2, backend=backend, concurrency=4) as pool:
        out = list(pool(urls))
    assert out == [str(i) for i in range(40)]
    per_worker = server.max_client_in_flight
    assert len(per_worker) == 2, per_worker  # two workers, each its own client
    assert max(per_worker.values()) == 4  # the limit is reached and never exceeded
    assert server.max_in_flight <= 8


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("unordered", [False, True])
def test_results_keep_their_order_whatever_the_latencies(server, backend, unordered):
    delays = [(7 * i) % 5 * 20 for i in range(30)]  # 0 to 80 ms, shuffled
    urls = [server.url(f"/echo/{i}?ms={d}") for i, d in enumerate(delays)]
    out = list(Pool(h.get, n_jobs=2, backend=backend, concurrency=8, is_unordered=unordered)(urls))
    expected = [str(i) for i in range(30)]
    assert (sorted(out, key=int) if unordered else out) == expected


def test_one_coroutine_worker_runs_in_a_worker_thread_not_in_the_caller(server):
    with Pool(h.get, n_jobs=1, use_threads=True, concurrency=3) as pool:
        out = list(pool([server.url(f"/echo/{i}") for i in range(9)]))
        assert pool.workers_alive
    assert out == [str(i) for i in range(9)]
    assert server.max_client_in_flight.most_common(1)[0][1] == 3
    assert h.client_id() not in server.max_client_in_flight


# -- failures, timeouts, retries, deaths ------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_exception_in_one_coroutine_leaves_the_others_alone_under_ignore(server, backend):
    urls = [server.url(f"/fail/{i}" if i == 5 else f"/echo/{i}") for i in range(20)]
    out = list(Pool(h.get, n_jobs=2, backend=backend, concurrency=8, exception_behavior="ignore")(urls))
    assert isinstance(out[5], h.HTTPStatusError)
    assert [r for i, r in enumerate(out) if i != 5] == [str(i) for i in range(20) if i != 5]
    assert server.aborted == []  # nobody else was cancelled
    assert len(server.completed) == 20


@pytest.mark.parametrize("backend", BACKENDS)
def test_task_timeout_cancels_the_coroutine(server, backend):
    urls = [server.url(f"/hang/{i}" if i in (2, 7) else f"/echo/{i}") for i in range(12)]
    pool = Pool(h.get, n_jobs=2, backend=backend, concurrency=4, task_timeout=0.5,
                exception_behavior="ignore")
    out = list(pool(urls))
    for i in (2, 7):
        assert isinstance(out[i], TaskTimeoutError)
        assert f"input item #{i} ran longer than task_timeout=0.5 s" in str(out[i])
        assert "cancelled" in str(out[i])
    assert [r for i, r in enumerate(out) if i not in (2, 7)] == [str(i) for i in range(12) if i not in (2, 7)]
    # The server saw the two hung requests abandoned: their coroutines were cancelled (and closed
    # their connections), not left running.
    assert server.wait_for(lambda: sorted(server.aborted) == ["/hang/2", "/hang/7"]), server.aborted


@pytest.mark.parametrize("backend", BACKENDS)
def test_retries_run_a_failed_coroutine_again(server, backend):
    urls = [server.url(f"/flaky/k{i}") for i in range(6)]
    out = list(Pool(h.get, n_jobs=2, backend=backend, concurrency=3, retries=1)(urls))
    assert out == [f"k{i}" for i in range(6)]
    assert all(server.flaky[f"k{i}"] == 2 for i in range(6))


def test_a_worker_killed_in_a_coroutine_fails_that_item_alone(server):
    urls = [server.url(f"/echo/{i}?ms=30") for i in range(16)]
    urls[6] = server.url("/echo/die")
    out = list(Pool(h.get_or_die, n_jobs=2, concurrency=4, exception_behavior="ignore")(urls))
    assert isinstance(out[6], WorkerDiedError)
    assert out[6].indices == [6]
    assert [r for i, r in enumerate(out) if i != 6] == [str(i) for i in range(16) if i != 6]


def test_a_worker_death_raises_under_immediate(server):
    urls = [server.url(f"/echo/{i}?ms=30") for i in range(8)]
    urls[3] = server.url("/echo/die")
    with pytest.raises(WorkerDiedError, match="while running input item #3"):
        list(Pool(h.get_or_die, n_jobs=2, concurrency=4)(urls))


def _exit_in_coroutine_factory():
    async def task(x):
        if x == 4:
            raise SystemExit("bye")
        await asyncio.sleep(0.01)
        return x

    return task


def test_system_exit_in_a_coroutine_ends_a_thread_worker_like_a_plain_one():
    out = list(Pool(_exit_in_coroutine_factory(), n_jobs=2, use_threads=True, concurrency=3,
                    exception_behavior="ignore")(range(10)))
    assert isinstance(out[4], WorkerDiedError) and out[4].indices == [4]
    assert [r for i, r in enumerate(out) if i != 4] == [i for i in range(10) if i != 4]


# -- objects built in each worker -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_delayed_init_objects_build_once_per_worker_and_aclose(server, backend):
    urls = [server.url(f"/echo/{i}?ms=20") for i in range(24)]
    with Pool(h.Session(server.url("/log")), n_jobs=2, backend=backend, concurrency=4) as pool:
        out = list(pool(urls))
        names = {name for _, name, _ in out}
        assert [body for body, _, _ in out] == [str(i) for i in range(24)]
        assert len(names) == 2  # one object per worker, for every item
        assert server.log == []  # still open while the pool is
    # Leaving the block stops the workers; each awaits its object's aclose() on its way out.
    assert server.wait_for(lambda: sorted(server.log) == sorted(f"closed-{n}" for n in names)), server.log


def test_a_worker_replaced_after_max_tasks_per_worker_closes_its_object(server):
    urls = [server.url(f"/echo/{i}?ms=5") for i in range(12)]
    out = list(Pool(h.Session(server.url("/log")), n_jobs=2, use_threads=True, concurrency=2,
                    max_tasks_per_worker=3)(urls))
    assert [body for body, _, _ in out] == [str(i) for i in range(12)]
    names = {name for _, name, _ in out}
    assert len(names) == 4  # 12 items, 3 per object
    # Each object was closed: three by their replacement, the last ones when the run ended.
    assert server.wait_for(lambda: {f"closed-{n}" for n in names} <= set(server.log)), server.log


# -- async consumption -------------------------------------------------------------------------------


def _wait_for_event(event):
    """A plain task that only finishes if the consumer's loop keeps running."""
    return event.wait(10)


def test_async_for_never_blocks_the_event_loop():
    event = threading.Event()

    async def main():
        loop = asyncio.get_running_loop()
        loop.call_later(0.1, event.set)  # runs only if the loop is free while we wait
        return [r async for r in Pool(_wait_for_event, n_jobs=2, use_threads=True)([event] * 4)]

    assert asyncio.run(main()) == [True] * 4


def test_process_coroutine_workers_reach_a_server_on_the_consumers_own_loop():
    """If the async for blocked its loop, this server could not answer and the run would hang."""
    server = h.LocalServer()

    async def main():
        srv = await asyncio.start_server(server._serve, "127.0.0.1", 0)
        server.port = srv.sockets[0].getsockname()[1]
        async with srv:
            urls = [server.url(f"/echo/{i}?ms=20") for i in range(20)]
            pool = Pool(h.get, n_jobs=2, concurrency=5, task_timeout=10)
            return [r async for r in pool(urls)]

    assert asyncio.run(main()) == [str(i) for i in range(20)]


@pytest.mark.parametrize("backend", BACKENDS)
def test_break_in_async_for_stops_every_worker_and_cancels_pending_coroutines(server, backend):
    urls = [server.url("/echo/first?ms=0")] + [server.url(f"/hang/{i}") for i in range(1, 9)]
    seen = {}

    async def main():
        with Pool(h.get, n_jobs=2, backend=backend, concurrency=4) as pool:
            async for result in pool(urls):
                seen["first"] = result
                assert server.wait_for(lambda: server.in_flight == 8)  # every worker is busy
                seen["pids"] = pool.worker_pids
                seen["threads"] = [
                    t for t in threading.enumerate() if t.name.startswith("mtasklite_like-worker")
                ]
                break
            seen["alive_after_break"] = pool.workers_alive

    asyncio.run(main())
    assert seen["first"] == "first"
    assert seen["alive_after_break"] is False
    # Every pending coroutine was cancelled: the server saw each hung request abandoned.
    assert server.wait_for(lambda: len(server.aborted) == 8), server.aborted
    if backend == "processes":
        assert len(seen["pids"]) == 2 and _wait(lambda: not any(_alive(p) for p in seen["pids"]))
    else:
        assert seen["threads"] and _wait(lambda: not any(t.is_alive() for t in seen["threads"]))


def test_the_helper_thread_ends_with_the_run():
    async def main():
        results = Pool(_square, n_jobs=2, use_threads=True)(range(50))
        out = [r async for r in results]  # the iterator stays referenced
        return out, results

    out, results = asyncio.run(main())
    assert out == [i * i for i in range(50)]
    assert _wait(lambda: not any(t.name == "mtasklite_like-async-results" for t in threading.enumerate()))
    results.close()


async def _env_and_init(name):
    return os.environ.get(name), os.environ.get("INIT_MARK")


def _mark_init():
    os.environ["INIT_MARK"] = "ran"


def test_worker_env_and_initializer_apply_to_coroutine_workers():
    pool = Pool(_env_and_init, n_jobs=2, concurrency=2, worker_env=[{"WHO": "a"}, {"WHO": "b"}],
                initializer=_mark_init)
    out = list(pool(["WHO"] * 8))
    assert {who for who, _ in out} <= {"a", "b"} and all(mark == "ran" for _, mark in out)


def test_a_cancelled_anext_loses_no_result():
    async def main():
        results = Pool(_sleep_then, n_jobs=2, use_threads=True)([(0.3, 0), (0.0, 1), (0.0, 2)])
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(results.__anext__(), 0.05)  # cancelled while the engine waits
        return [r async for r in results]

    assert asyncio.run(main()) == [0, 1, 2]


def _sleep_then(pair):
    time.sleep(pair[0])
    return pair[1]


def test_async_with_and_aclose_stop_the_workers():
    async def main():
        pool = Pool(_sleep_then, n_jobs=2, use_threads=True)
        async with pool([(0.0, 0)] + [(0.2, i) for i in range(1, 20)]) as results:
            first = await results.__anext__()
            assert pool.workers_alive
        return first, pool.workers_alive

    assert asyncio.run(main()) == (0, False)


def test_errors_reach_the_async_consumer_as_they_would_a_plain_one():
    async def main():
        return [r async for r in Pool(lambda x: 1 // x, n_jobs=2, use_threads=True)([1, 1, 0, 1])]

    with pytest.raises(ZeroDivisionError):
        asyncio.run(main())


# -- async for: the loop's own thread takes what has arrived, and no more ----------------------------


#: whether this Python's ``async for`` goes through the generator view (CPython <= 3.11)
VIEW_HERE = results_module.GENERATORS_RESUME_FASTER


@pytest.fixture(params=["generator-view", "iterator"])
def async_form(request, monkeypatch):
    """Both ways ``async for`` can iterate: the view over an async generator (CPython <= 3.11) and
    the result iterator's own coroutine ``__anext__`` (3.12 and later)."""
    monkeypatch.setattr(results_module, "GENERATORS_RESUME_FASTER", request.param == "generator-view")
    return request.param


def test_the_async_form_is_the_one_asked_for(async_form):
    results = Pool(_square, n_jobs=2, use_threads=True)(range(3))
    assert (aiter(results) is results) == (async_form == "iterator")
    results.close()


def test_a_cancelled_anext_of_the_async_iterator_loses_no_result(async_form):
    async def main():
        results = Pool(_sleep_then, n_jobs=2, use_threads=True)(
            [(0.3, 0), (0.0, 1), (0.0, 2), (0.3, 3), (0.0, 4)]
        )
        it = aiter(results)
        out = []
        while True:
            try:
                out.append(await asyncio.wait_for(anext(it), 0.05))  # often cancelled mid-wait
            except asyncio.TimeoutError:
                continue
            except StopAsyncIteration:
                return out

    assert asyncio.run(main()) == [0, 1, 2, 3, 4]


def test_after_an_error_the_async_iterator_ends_as_a_plain_one_does(async_form):
    async def main():
        it = aiter(Pool(helpers.fail_on_3, n_jobs=2, use_threads=True)([3, 4, 5, 6]))
        with pytest.raises(ValueError, match="item 3 is bad"):
            await anext(it)
        with pytest.raises(StopAsyncIteration):
            await anext(it)
        return True

    assert asyncio.run(main())


def test_breaking_an_async_for_frees_the_run_without_a_garbage_collection(async_form):
    """No reference cycle keeps the run (and its workers) alive after ``break``."""
    if async_form == "generator-view" and not VIEW_HERE:
        pytest.skip(
            "not the form this Python uses; started here, the view leaves an asend coroutine never "
            "awaited, and the RuntimeWarning that pytest records keeps the generator alive"
        )

    async def main():
        with Pool(_square, n_jobs=2, use_threads=True) as pool:
            results = pool(range(10_000))
            ref = weakref.ref(results)
            async for _ in results:
                break
            del results
            return ref() is None, pool.workers_alive

    gc.disable()
    try:
        assert asyncio.run(main()) == (True, False)
    finally:
        gc.enable()


_RELEASE = threading.Event()  # lets an abandoned thread worker finish its overrunning item


def _square_or_fault(x):
    if x == 17:
        raise ValueError("seventeen")
    if x == 29 and os.environ.get("FAULT_KILL") == "1":
        os.kill(os.getpid(), signal.SIGKILL)
    if x == 41 and os.environ.get("FAULT_SLOW") == "1":
        _RELEASE.wait(30)  # a process worker is killed first
    return x * x


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("source", ["list", "generator"])
@pytest.mark.parametrize("fault", ["failure", "quota", "death", "timeout"])
def test_async_for_settles_faults_as_a_plain_for_and_never_starts_workers_on_the_loop(
    backend, source, fault, monkeypatch
):
    """Reports that need more than bookkeeping (a failure, a spent quota, a death, an overrun)
    are left to the helper thread: workers are never started or killed in the loop's thread."""
    if fault == "death" and backend == "threads":
        pytest.skip("a thread cannot be killed")
    options: dict = {"exception_behavior": "ignore"}
    if fault == "quota":
        options["max_tasks_per_worker"] = 7
    if fault == "death":
        monkeypatch.setenv("FAULT_KILL", "1")
    if fault == "timeout":
        monkeypatch.setenv("FAULT_SLOW", "1")
        options["task_timeout"] = 0.5
    backend_type = ProcessBackend if backend == "processes" else ThreadBackend
    replaced_in: list[int] = []
    real_replace = backend_type.replace_worker

    def replace_worker(self, worker, *, kill=False):
        replaced_in.append(threading.get_ident())
        return real_replace(self, worker, kill=kill)

    monkeypatch.setattr(backend_type, "replace_worker", replace_worker)
    items = list(range(60))

    async def main():
        with Pool(_square_or_fault, n_jobs=2, backend=backend, **options) as pool:
            source_items = items if source == "list" else iter(items)
            return threading.get_ident(), [r async for r in pool(source_items)]

    _RELEASE.clear()
    try:
        loop_thread, out = asyncio.run(main())
    finally:
        _RELEASE.set()
    errors = {i: type(r).__name__ for i, r in enumerate(out) if is_exception(r)}
    expected_errors = {17: "ValueError"}
    if fault == "death":
        expected_errors[29] = "WorkerDiedError"
    if fault == "timeout":
        expected_errors[41] = "TaskTimeoutError"
    assert errors == expected_errors
    assert [r for i, r in enumerate(out) if i not in errors] == [i * i for i in items if i not in errors]
    if fault != "failure":
        assert replaced_in, "a worker should have been replaced"
    assert loop_thread not in replaced_in


class _SizedLazySource:
    """A sized input whose items are made on demand (a dataset that reads each item from disk, say):
    reading it may block, so it must never be read in an event loop's thread."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.read_in: set[int] = set()

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for i in range(self.n):
            self.read_in.add(threading.get_ident())
            yield i


@pytest.mark.parametrize("backend", BACKENDS)
def test_async_for_never_reads_an_input_that_may_block_in_the_loops_thread(backend):
    source = _SizedLazySource(3000)

    async def main():
        with Pool(_square, n_jobs=2, backend=backend, chunk_size=7) as pool:
            return threading.get_ident(), [r async for r in pool(source)]

    loop_thread, out = asyncio.run(main())
    assert out == [i * i for i in range(3000)]
    assert source.read_in and loop_thread not in source.read_in


def test_a_step_without_waiting_takes_what_arrived_and_holds_a_failure_with_what_follows():
    go = threading.Event()

    def fail_on_3_when_told(x):
        if x == 3:
            go.wait(30)  # item 3 fails only once the steps without waiting have begun
        return helpers.fail_on_3(x)

    with Pool(fail_on_3_when_told, n_jobs=2, use_threads=True, chunk_size=1,
              exception_behavior="ignore") as pool:
        results = pool(range(6))
        assert next(results) == 0  # starts the run
        go.set()
        run = results._run
        # Each step sends what the window allows and takes what has arrived, until item 3's failure.
        assert _wait(lambda: run.step_nowait() is not None and bool(run._held))
        taken = results.take_ready()
        assert taken == [1, 2][: len(taken)]  # in order, and nothing from the failure on
        rest = list(results)  # the waiting step settles the held reports first
    out = [0, *taken, *rest]
    assert [type(r).__name__ if is_exception(r) else r for r in out] == [0, 1, 2, "ValueError", 4, 5]


# -- async iterables as input ------------------------------------------------------------------------


async def _source(n):
    for i in range(n):
        await asyncio.sleep(0.001)
        yield i


def _square(x):
    return x * x


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_async_generator_as_input(backend):
    async def main():
        return [r async for r in Pool(_square, n_jobs=2, backend=backend)(_source(30))]

    assert asyncio.run(main()) == [i * i for i in range(30)]


def test_an_asyncio_queue_on_the_consumers_loop_as_input():
    class QueueSource:
        def __init__(self, q):
            self.q = q

        def __aiter__(self):
            return self

        async def __anext__(self):
            item = await self.q.get()
            if item is None:
                raise StopAsyncIteration
            return item

    async def main():
        q: asyncio.Queue = asyncio.Queue()

        async def produce():
            for i in range(20):
                await q.put(i)
                await asyncio.sleep(0.002)
            await q.put(None)

        producer = asyncio.create_task(produce())
        out = [r async for r in Pool(_square, n_jobs=2, use_threads=True)(QueueSource(q))]
        await producer
        return out

    assert asyncio.run(main()) == [i * i for i in range(20)]


def test_an_async_generator_as_input_to_a_plain_for():
    assert list(Pool(_square, n_jobs=2, use_threads=True)(_source(10))) == [i * i for i in range(10)]


# -- rate limits -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("backend", "task"), [("threads", h.get), ("processes", h.get),
                                               ("processes", h.get_blocking)],
                         ids=["threads-coroutines", "processes-coroutines", "processes-plain"])
def test_max_per_second_paces_starts_measured_by_the_server(server, backend, task, grants):
    rate = 40
    urls = [server.url(f"/echo/{i}?ms=30") for i in range(40)]
    kwargs = {"concurrency": 8} if task is h.get else {}
    t0 = time.monotonic()
    out = list(Pool(task, n_jobs=2, backend=backend, max_per_second=rate, **kwargs)(urls))
    assert out == [str(i) for i in range(40)]
    # Every request started through the gate, which spaced the starts an interval apart...
    assert len(grants()) == 40
    assert _crowded(grants(), rate) == []
    # ...and the server saw none sooner than the rate allows: the k-th at least k intervals after
    # the run began (a request arrives after its start; a busy machine only delays it).
    times = server.arrivals
    assert len(times) == 40
    assert _paced_from(t0, times, rate) == []


def _crowded(times: list[float], rate: float) -> list[tuple[int, float]]:
    """Windows holding more than ``rate * w + 1`` starts, as (starts, w); none when paced right.

    ``k + 1`` starts from ``t_i`` to ``t_(i+k)`` lie in a window of ``w = t_(i+k) - t_i``, which may
    hold ``rate * w + 1``: so every such span must be at least ``k / rate`` long. Checked for every
    pair of starts, it covers every window, of any length, placed anywhere. (A nanosecond is
    allowed for the rounding of sums of floats: 0.2 - 0.0 is not always 2 * 0.1.)
    """
    times = sorted(times)
    return [
        (j - i + 1, times[j] - times[i])
        for i in range(len(times))
        for j in range(i + 1, len(times))
        if times[j] - times[i] < (j - i) / rate - 1e-9
    ]


def test_the_window_check_counts_every_window():
    assert _crowded([0.0, 0.1, 0.2, 0.3], 10) == []
    assert _crowded([0.0, 0.1, 0.19], 10) == [(3, pytest.approx(0.19)), (2, pytest.approx(0.09))]
    assert _crowded([0.0, 0.5, 0.5], 10) == [(2, 0.0)]  # two at once, late in the run


def test_the_rate_limiter_spaces_tokens_an_interval_apart_however_late():
    limiter = RateLimiter(10)  # one every 0.1 s
    assert limiter.try_acquire(0.0)
    assert not limiter.try_acquire(0.05) and limiter.next_at(0.05) == pytest.approx(0.1)
    assert limiter.try_acquire(0.13)  # late by 0.03: the next is due an interval after it
    assert not limiter.try_acquire(0.2) and limiter.next_at(0.2) == pytest.approx(0.23)
    assert limiter.try_acquire(0.39)  # late by 0.16: no catch-up token...
    assert not limiter.try_acquire(0.39) and limiter.next_at(0.39) == pytest.approx(0.49)
    assert limiter.try_acquire(5.0)  # ...and none banked over a long pause: one now...
    assert not limiter.try_acquire(5.0)
    assert not limiter.try_acquire(5.09)  # ...the next one interval later
    assert limiter.next_at(5.0) == pytest.approx(5.1)
    taken = [t / 1000 for t in range(0, 3000, 7) if limiter.try_acquire(6 + t / 1000)]
    assert _crowded(taken, 10) == []


def test_hand_overs_to_gated_workers_make_up_for_a_little_lateness_only():
    limiter = RateLimiter(10, make_up=0.002)
    assert limiter.try_acquire(0.0)
    assert limiter.try_acquire(0.101)  # 1 ms late: made up, the next is due on schedule
    assert limiter.next_at(0.101) == pytest.approx(0.2)
    assert limiter.try_acquire(0.5)  # 0.3 s late: 2 ms made up at most, nothing banked
    assert limiter.next_at(0.5) == pytest.approx(0.598)


class _PacedFake(FakeBackend):
    """The simulated backend, noting when (virtual time) each message was handed over."""

    def send(self, worker, batch_id, indices, items):
        self.times = getattr(self, "times", [])
        self.times.extend([self.now] * len(indices))
        return super().send(worker, batch_id, indices, items)


register_backend("fake-paced", lambda specs, start_method: _PacedFake(specs))


@pytest.mark.parametrize("retries", [0, 2])
def test_the_engine_hands_items_over_at_the_rate_on_a_virtual_clock(retries):
    steps = [Step(i, seconds=0.3, raises=ValueError("x") if i % 7 == 3 else None) for i in range(50)]
    pool = Pool(run_step, 3, backend="fake-paced", max_per_second=20, retries=retries,
                exception_behavior="ignore")
    out = list(pool(steps))
    assert [r for r in out if not is_exception(r)] == [i for i in range(50) if i % 7 != 3]
    times = FakeBackend.made[-1].times
    assert len(times) == 50 + retries * 7  # retried items are paced too
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert min(gaps) >= 0.05 - 1e-9  # exactly on schedule: the virtual clock is never late


class _StaggeredFake(FakeBackend):
    """The simulated backend, with workers ready at the times in ``READY`` (virtual seconds), noting
    when each item starts: when its worker is free and ready, not before."""

    READY = (0.3, 0.5, 0.5, 0.5)

    def start(self):
        super().start()
        for worker, ready in zip(self._workers, self.READY):
            worker.ready_at = worker.free_at = self.now + ready
        self.starts = []

    def send(self, worker, batch_id, indices, items):
        nbytes = super().send(worker, batch_id, indices, items)
        w = self._workers[worker]
        assert len(w.queue) == 1  # paced: a worker holds the item it runs, nothing waits behind
        self.starts.append(w.free_at)
        return nbytes


register_backend("fake-staggered", lambda specs, start_method: _StaggeredFake(specs))


def test_paced_items_wait_for_a_ready_worker_rather_than_start_together_when_it_is_up():
    # Handed to a worker that is still starting, an item starts when the worker is up, together
    # with those handed to the other starting workers meanwhile: a burst.
    steps = [Step(i, seconds=0.3) for i in range(30)]
    out = list(Pool(run_step, 4, backend="fake-staggered", max_per_second=20)(steps))
    assert out == list(range(30))
    starts = FakeBackend.made[-1].starts
    assert len(starts) == 30
    assert min(starts) >= 0.3  # no worker was ready before: the run waited rather than ended
    assert _crowded(starts, 20) == []


def _stamp(item):
    return time.monotonic()


class _GatedStamp:
    """A task behind a start gate, as a pool's workers call theirs: it returns when it started."""

    def __init__(self, gate):
        self.gate = gate

    def __call__(self, item):
        return self.gate.gated(_stamp)(item)


@pytest.mark.parametrize("kwargs", [{"backend": "threads"}, {"backend": "processes", "start_method": "fork"},
                                    {"backend": "processes", "start_method": "spawn"}],
                         ids=["threads", "fork", "spawn"])
def test_the_start_gate_keeps_starts_an_interval_apart_across_workers(kwargs):
    # Every worker is handed items at once (no rate limit in the pool): the gate alone paces them.
    assert isinstance(start_gate(40), StartGate) and start_gate(None) is None
    gate = _RecordingGate(40)
    t0 = time.monotonic()
    starts = list(Pool(_GatedStamp(gate), 4, chunk_size=1, **kwargs)(range(24)))
    assert len(starts) == 24
    assert len(gate.grants()) == 24 and _crowded(gate.grants(), 40) == []
    assert _paced_from(t0, starts, 40) == []


def test_a_start_gate_after_a_pause_gives_one_start_then_waits_an_interval():
    gate = StartGate(2)  # an interval of 0.5 s: no pause of the machine between two lines is as long
    assert gate.try_start() == 0.0
    wait = gate.try_start()
    assert 0 < wait <= 0.5 + 1e-3  # one interval (and the gate's slack) after the first
    time.sleep(wait)
    assert gate.try_start() == 0.0
    assert gate.try_start() > 0  # the second right after the first: none banked


def test_the_start_gate_file_goes_with_the_gate():
    gate = StartGate(5)
    path = gate.path
    assert os.path.exists(path)
    del gate
    gc.collect()
    assert not os.path.exists(path)


class _GatedSpec(WorkerSpec):
    """A worker spec carrying a start gate, as the pool's do under max_per_second."""

    __slots__ = ("start_gate",)


async def _note_start(item):
    started = time.monotonic()
    await asyncio.sleep(0.001)
    return started


def test_a_coroutine_worker_handed_several_items_at_once_takes_each_start_from_the_gate():
    # Two coroutine workers, each handed six items at once with room to run them all together:
    # the gate spaces their first steps, across both workers, an interval apart.
    gate = _RecordingGate(40)
    t0 = time.monotonic()
    inboxes = [queue.SimpleQueue() for _ in range(2)]
    results = queue.SimpleQueue()

    def worker(k):
        spec = _GatedSpec(k, _note_start, "single_arg", concurrency=8)
        spec.start_gate = gate
        serve_coroutines(spec, own_process=False, next_message=inboxes[k].get, ready=lambda: None,
                         init_failed=results.put,
                         done=lambda _id, _i, res, fails, _s: results.put((res, fails)),
                         progress=None, name=f"gate-test-inbox-{k}")

    threads = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(2)]
    for t in threads:
        t.start()
    for k, inbox in enumerate(inboxes):
        inbox.put((k, list(range(6)), list(range(6))))
    outcomes = [results.get(timeout=10) for _ in range(2)]
    for inbox in inboxes:
        inbox.put(None)
    for t in threads:
        t.join(10)
    assert all(fails == [] for _, fails in outcomes), outcomes
    starts = [t for res, _ in outcomes for t in res]
    assert len(starts) == 12
    assert len(gate.grants()) == 12 and _crowded(gate.grants(), 40) == []
    assert _paced_from(t0, starts, 40) == []


def test_a_coroutine_cancelled_while_waiting_for_its_start_is_closed_unstarted():
    gate = StartGate(0.5)  # the second start is due two seconds after the first
    assert gate.try_start() == 0.0
    ran = []

    async def task():
        ran.append(True)

    async def main():
        from mtasklite_like._worker.coroutines import _after_start

        coro = task()
        waiting = asyncio.ensure_future(_after_start(gate, coro))
        await asyncio.sleep(0.01)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        return coro

    coro = asyncio.run(main())
    assert ran == [] and coro.cr_frame is None  # closed without running: no "never awaited" warning


@delayed_init
class _SlowToStart:
    """Notes when each item starts; every worker but the first takes a while to be ready."""

    def __init__(self, seconds):
        time.sleep(seconds)

    def __call__(self, item):
        started = time.monotonic()
        time.sleep(0.06)
        return started


@delayed_init
class _SlowToStartAsync:
    def __init__(self, seconds):
        time.sleep(seconds)

    async def __call__(self, item):
        started = time.monotonic()
        await asyncio.sleep(0.06)
        return started


@pytest.mark.parametrize(("backend", "shell", "kwargs"), [
    ("threads", _SlowToStart, {}), ("processes", _SlowToStart, {}),
    ("threads", _SlowToStartAsync, {"concurrency": 4}), ("processes", _SlowToStartAsync, {"concurrency": 4}),
], ids=["threads", "processes", "thread-coroutines", "process-coroutines"])
def test_max_per_second_holds_in_every_window_while_workers_come_up(backend, shell, kwargs, grants):
    # Items handed to workers that are still starting must not start together once they are up.
    rate = 40
    workers = [shell(0.0 if k == 0 else 0.3) for k in range(3)]
    t0 = time.monotonic()
    starts = list(Pool(workers, 3, backend=backend, max_per_second=rate, **kwargs)(range(30)))
    assert len(starts) == 30
    assert len(grants()) == 30 and _crowded(grants(), rate) == []
    assert _paced_from(t0, starts, rate) == []


# -- pqdm ----------------------------------------------------------------------------------------------


def test_pqdm_runs_coroutines_with_a_bar_and_passes_the_options(server):
    import io

    bar = io.StringIO()
    urls = [server.url(f"/echo/{i}?ms=20") for i in range(12)]
    out = threads_pqdm(urls, h.get, n_jobs=2, concurrency=3, max_per_second=200, file=bar)
    assert list(out) == [str(i) for i in range(12)]
    assert "12/12" in bar.getvalue()
    assert max(server.max_client_in_flight.values()) <= 3


# -- wrong uses ----------------------------------------------------------------------------------------


def test_concurrency_needs_a_coroutine_worker():
    with pytest.raises(ValueError, match="concurrency=4 applies to coroutine workers"):
        Pool(_square, 2, concurrency=4)


@pytest.mark.parametrize("value", [0, -1, 2.5, "8", True])
def test_concurrency_must_be_a_whole_number(value):
    with pytest.raises(ValueError, match="concurrency must be a whole number >= 1"):
        Pool(h.get, 2, concurrency=value)


@pytest.mark.parametrize("value", [0, -3, float("nan"), float("inf"), "10", True])
def test_max_per_second_must_be_a_positive_number(value):
    with pytest.raises(ValueError, match="max_per_second must be a number of items per second > 0"):
        Pool(_square, 2, max_per_second=value)
    assert check_rate(2) == 2.0 and check_rate(None) is None


def test_a_list_of_workers_is_all_coroutines_or_none():
    with pytest.raises(TypeError, match="give a list of one kind only"):
        Pool([h.get, _square])


def test_coroutine_workers_are_recognised_in_every_form():
    import functools

    from mtasklite_like._options import is_coroutine_worker

    class Caller:
        async def __call__(self, x):
            return x

    @delayed_init
    class Delayed:
        async def __call__(self, x):
            return x

    for worker in (h.get, functools.partial(h.get), Caller(), Caller().__call__, Delayed(), h.Session("x")):
        assert is_coroutine_worker(worker), worker
    for worker in (_square, len, functools.partial(_square), lambda x: x):
        assert not is_coroutine_worker(worker), worker


def test_a_plain_function_returning_a_coroutine_fails_each_item_with_what_to_do():
    pool = Pool(lambda url: h.get(url), n_jobs=2, use_threads=True, exception_behavior="ignore")
    out = list(pool(["a", "b"]))
    assert all(isinstance(r, TypeError) and "returned a coroutine" in str(r) for r in out)
    assert "async def function itself" in str(out[0])


@pytest.mark.parametrize("source", ["coroutines", "async input"])
def test_a_plain_for_inside_a_running_loop_is_refused_where_it_would_block_it(source):
    async def main():
        if source == "coroutines":
            results = Pool(h.get, n_jobs=2, use_threads=True)(["x"])
        else:
            results = Pool(_square, n_jobs=2, use_threads=True)(_source(3))
        with pytest.raises(RuntimeError, match="async for result in pool") as err:
            next(results)
        results.close()
        return str(err.value)

    message = asyncio.run(main())
    assert ("runs coroutine workers" if source == "coroutines" else "reads an async iterable") in message


def test_a_plain_pool_still_iterates_with_a_plain_for_inside_a_running_loop():
    async def main():
        return list(Pool(_square, n_jobs=2, use_threads=True)(range(5)))

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]


def test_an_unordered_journal_refuses_coroutine_workers(tmp_path):
    with pytest.raises(ValueError, match="use an ordered journaled run"):
        Pool(h.get, 2, journal=tmp_path / "run", is_unordered=True)


def test_a_backend_that_cannot_run_coroutines_says_so():
    with pytest.raises(TypeError, match="cannot run coroutine workers"):
        list(Pool(h.get, 2, backend="fake")(["x"]))
