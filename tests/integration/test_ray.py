"""The Ray backend: what is particular to it (the backend-generic tests run on it too: see conftest).

Options and resources checked up front, Ray's GPU assignment, actor deaths (killed from outside,
``os._exit``), timeouts, streaming, journaled runs, the workflow layers and the pqdm wrapper on
Ray; connecting to a separately started cluster, starting a local Ray when none runs, and running
without Ray installed. Most tests use the test run's local Ray (2 CPUs, two simulated GPUs and two
``mtl_slot`` resources: ``tests/conftest.py``); the connection tests run their own in a subprocess.
"""

from __future__ import annotations

import functools
import os
import signal
import socket
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

import pytest

from mtasklite_like import (
    Pool,
    TaskPicklingError,
    TaskTimeoutError,
    WorkerDiedError,
    WorkerInitError,
    is_exception,
)
from tests.conftest import RAY_ENV
from tests.helpers import pid_running, square
from tests.integration import ray_helpers as rh

pytestmark = [pytest.mark.ray, pytest.mark.timeout(60)]

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def ray(ray_session):
    return ray_session


def _gone(pids, within=5.0):
    """True once none of ``pids`` runs any more (polled until ``within`` seconds)."""
    deadline = time.monotonic() + within
    while any(pid_running(p) for p in pids):
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _actors(pool):
    return pool._workers.backend._actors


# -- options, checked when the pool is built ------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"num_cpu": 1}, ValueError, "unknown Ray actor option 'num_cpu'"),
        ({"max_restarts": 3}, ValueError, "on_worker_death='restart'"),
        ({"max_concurrency": 4}, ValueError, "one batch at a time"),
        ({"num_gpus": "one"}, TypeError, "num_gpus must be a number"),
        ({"num_cpus": -1}, TypeError, "num_cpus must be a number >= 0"),
        ({"resources": ["TPU"]}, TypeError, "resources must be a dict"),
        ({"resources": {"GPU": 1}}, ValueError, "num_gpus"),
        ([{}, {}, {}], ValueError, "3 dicts for 2 workers"),
        ("num_gpus=1", TypeError, "a dict or a list of dicts"),
    ],
)
def test_bad_backend_options_fail_when_the_pool_is_built(options, error, match):
    with pytest.raises(error, match=match):
        Pool(square, 2, backend="ray", backend_options=options)


def test_backend_options_and_address_only_for_a_backend_that_takes_them():
    with pytest.raises(ValueError, match="backend_options and address apply to"):
        Pool(square, 2, backend_options={"num_cpus": 1})
    with pytest.raises(ValueError, match="backend_options and address apply to"):
        Pool(square, 2, use_threads=True, address="auto")
    with pytest.raises(ValueError, match="use_threads=True asks for threads"):
        Pool(square, 2, use_threads=True, backend="ray")


def test_cuda_visible_devices_is_ray_s_to_set_when_it_assigns_gpus():
    with pytest.raises(ValueError, match="drop it from worker_env"):
        Pool(square, 2, backend="ray", backend_options={"num_gpus": 1},
             worker_env={"CUDA_VISIBLE_DEVICES": "0"})


def test_a_worker_that_cannot_be_pickled_fails_when_the_pool_is_built():
    lock = threading.Lock()
    with pytest.raises(TypeError, match="cannot be pickled to send them to a Ray actor"):
        Pool(lambda x: (lock, x), 2, backend="ray")


# -- resources --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"num_cpus": 1}, r"ask for 3 CPU in all but the Ray cluster has 2 CPU"),
        ({"num_gpus": 3}, r"worker 0 asks for 3 GPU but no node"),
        ({"resources": {"TPU": 1}}, r"worker 0 asks for 1 TPU but no node"),
        ({"memory": 2**50}, r"GiB of memory but no node"),
        # Ray's own default: one CPU held by an actor that asks for other resources only
        ({"num_gpus": 0.5}, r"3 CPU in all .* one CPU for each actor that asks for other resources"),
    ],
)
def test_asking_for_more_than_the_cluster_has_is_a_clear_error(ray, options, match):
    pool = Pool(square, 3, backend="ray", backend_options=options)
    with pytest.raises(ValueError, match=match):  # refused: actors left pending would hang the test
        list(pool(range(3)))
    assert not pool.workers_alive


def test_gpus_are_assigned_by_ray_and_visible_in_each_actor(ray):
    # The test Ray has two simulated GPUs: one each, as Ray assigns them.
    pool = Pool(rh.gpu_view, 2, backend="ray", backend_options={"num_gpus": 1}, chunk_size=1)
    seen = {pid: (cvd, ids) for pid, cvd, ids in pool(range(40))}
    assert len(seen) == 2
    devices = sorted(cvd for cvd, _ in seen.values())
    assert devices == ["0", "1"]
    assert all(ids == (int(cvd),) for cvd, ids in seen.values())


def test_fractional_gpus_and_per_worker_resources(ray):
    # Four workers on two GPUs at half a GPU each; per-worker options, one of them a custom resource.
    options = [{"num_gpus": 0.5}, {"num_gpus": 0.5}, {"num_gpus": 0.5, "resources": {"mtl_slot": 2}},
               {"num_gpus": 0.5}]
    # Ray reserves one CPU for an actor that asks for other resources but not for CPUs: half each.
    options = [{**o, "num_cpus": 0.5} for o in options]
    pool = Pool(rh.gpu_view, 4, backend="ray", backend_options=options, chunk_size=1)
    seen = {pid: cvd for pid, cvd, _ in pool(range(80))}
    assert len(seen) == 4
    assert sorted(seen.values()) == ["0", "0", "1", "1"]


# -- deaths, timeouts, stopping -------------------------------------------------------------------


@pytest.mark.parametrize("how", ["ray.kill", "SIGKILL"])
def test_an_actor_killed_mid_run_is_reported_at_once_and_restart_loses_nothing(ray, how):
    pool = Pool(rh.slow_square, 2, backend="ray", on_worker_death="restart", retries=1, chunk_size=1)
    results = []
    killed_at = None
    victim = None
    for r in pool(range(100)):
        results.append(r)
        if len(results) == 10:
            victim = _actors(pool)[0]
            killed_at = time.monotonic()
            if how == "ray.kill":
                ray.kill(victim.handle)
            else:
                os.kill(victim.pid, signal.SIGKILL)
    # Every item came out once, in order, with its result: the item the actor was running was
    # run again (retries=1), nothing else was lost.
    assert results == [x * x for x in range(100)]
    assert killed_at is not None and _gone([victim.pid])


@pytest.mark.timeout(30)
def test_death_is_reported_against_the_running_item_while_the_other_actor_is_busy(ray):
    # The items after item 7 take 60 s, past the test's timeout: only the death can end the run.
    pool = Pool(functools.partial(rh.exit_on, bad=7, then=60), 2, backend="ray", chunk_size=4,
                join_timeout=0.1)
    seen = []
    with pytest.raises(WorkerDiedError) as info:
        for r in pool(range(40)):
            seen.append(r)
    err = info.value
    assert 7 in err.indices and err.pid and "while running input item #7" in str(err)
    assert seen == list(range(len(seen))) and len(seen) <= 7


def test_a_death_in_a_batch_fails_only_the_running_item(ray):
    # Batches of 8: the actor dies on the 4th item of a batch; the 3 before it and the 4 after
    # it are run again elsewhere, free of charge, and only item 11 gets the error.
    pool = Pool(functools.partial(rh.exit_on, bad=11, how="SIGKILL"), 2, backend="ray",
                chunk_size=8, exception_behavior="ignore")
    results = list(pool(range(40)))
    errors = [(i, r) for i, r in enumerate(results) if is_exception(r)]
    assert [i for i, _ in errors] == [11]
    assert isinstance(errors[0][1], WorkerDiedError) and errors[0][1].indices == [11]
    assert [r for r in results if not is_exception(r)] == [x for x in range(40) if x != 11]


@pytest.mark.parametrize("unordered", [False, True])
def test_an_actor_over_max_worker_memory_is_replaced_and_nothing_is_lost(ray, unordered):
    # 24 MiB kept per item against 300 MiB of the actor's own memory: each actor retires after
    # about a dozen items, in the middle of a batch or at its end, and a fresh one takes over.
    pool = Pool(rh.keep_memory, 2, backend="ray", max_worker_memory="300MiB", is_unordered=unordered)
    out = list(pool(range(60)))
    got = [x for x, _ in out]
    assert (sorted(got) if unordered else got) == list(range(60))
    pids = {pid for _, pid in out}
    assert len(pids) >= 3
    assert sum(w.recycled for w in pool.worker_memory()) >= 1
    # A retired actor ends: its process goes away.
    assert _gone(pids - set(pool._workers.backend.pids if pool._workers.backend else ()), within=30)


def test_task_timeout_kills_the_actor_and_fails_the_item(ray):
    # Item 1 would take 120 s, past the test's timeout: only its task_timeout ends it.
    pool = Pool(rh.fail_or_wait, 2, backend="ray", task_timeout=1.0, exception_behavior="ignore")
    items = [0.01, 120, 0.01, 0.01]
    results = []
    pids = set()
    for r in pool(items):
        results.append(r)
        pids.update(p for p in pool.worker_pids if p)
    assert results[0] == 0.01 and results[2:] == [0.01, 0.01]
    assert isinstance(results[1], TaskTimeoutError) and "killed" in str(results[1])
    assert _gone(pids)  # the stuck actor was killed, the others stopped with the pool


def test_init_timeout(ray):
    pool = Pool(rh.SlowInit(120), 2, backend="ray", init_timeout=1.0)  # an init past the test's timeout
    t0 = time.monotonic()
    with pytest.raises(WorkerInitError, match="init_timeout"):
        list(pool(range(4)))
    assert time.monotonic() - t0 >= 1.0  # not before init_timeout


def test_immediate_does_not_wait_for_long_tasks_in_flight(ray):
    # Unordered: at once. (Ordered, the earlier item's result comes first: tests/test_item_errors.py.)
    pool = Pool(rh.fail_or_wait, 2, backend="ray", join_timeout=0.2, is_unordered=True)
    results = pool([120, "boom"])  # 120 s: past the test's timeout
    with pytest.raises(LookupError, match="fails fast") as info:
        list(results)
    assert "fail_or_wait" in str(info.value.__cause__)  # the actor's traceback, as text


def test_initializer_runs_in_each_actor_before_its_object(ray):
    results = list(Pool(rh.tag_from_env, 2, backend="ray", initializer=rh.set_tag, initargs=("ready",))(
        range(20)
    ))
    assert results == [("ready", x) for x in range(20)]


def test_items_and_results_that_cannot_be_pickled_fail_alone(ray):
    items = [1, (i for i in range(2)), 3]
    results = list(Pool(lambda x: 7, 2, backend="ray", exception_behavior="ignore")(items))
    assert results[0] == 7 and results[2] == 7
    assert isinstance(results[1], TaskPicklingError) and "input item #1" in str(results[1])
    results = list(Pool(lambda x: (i for i in range(x)) if x == 2 else x, 2, backend="ray",
                        exception_behavior="ignore")(range(4)))
    assert results[:2] == [0, 1] and results[3] == 3
    assert isinstance(results[2], TaskPicklingError) and "item #2" in str(results[2])


def test_a_pool_never_shuts_down_a_ray_it_did_not_start_and_kills_its_actors(ray):
    with Pool(rh.Pid(), 2, backend="ray") as pool:
        first = {pid for pid, _ in pool(range(10))}
        assert {pid for pid, _ in pool(range(10))} == first  # the same actors across calls
        files = [f"/dev/shm/{a.progress.name.lstrip('/')}" for a in _actors(pool)]
        assert all(a.writes_progress for a in _actors(pool))
        assert all(os.path.exists(path) for path in files)
    assert ray.is_initialized()
    assert _gone(first)
    # The actors' progress segments went with them.
    assert not any(os.path.exists(path) for path in files)


def test_max_tasks_per_worker_replaces_actors(ray):
    results = list(Pool(rh.pid_and_item, 2, backend="ray", max_tasks_per_worker=5, chunk_size=1)(range(30)))
    assert [x for _, x in results] == list(range(30))
    assert len({pid for pid, _ in results}) >= 6


# -- the layers on top: streaming, journal, map-reduce, pqdm, NumPy --------------------------------


def test_results_flow_while_the_input_stalls(ray):
    gate = threading.Event()

    def source():
        yield from range(3)
        gate.wait(30)  # stalls until the three results have been seen
        yield 3

    results = Pool(square, 2, backend="ray")(source())
    try:
        assert [next(results) for _ in range(3)] == [0, 1, 4]
    finally:
        gate.set()
    assert list(results) == [9]


def test_journaled_runs_resume_on_ray(ray, tmp_path):
    folder = tmp_path / "done"
    folder.mkdir()
    task = functools.partial(rh.record_then_square, str(folder))
    run_dir = str(tmp_path / "run")
    first = Pool(task, 2, backend="ray", journal=run_dir, chunk_size=1)(range(20))
    taken = [next(first) for _ in range(8)]
    first.close()
    ran_before = {int(p.name.split("-")[1]) for p in folder.iterdir()}
    assert taken == [x * x for x in range(8)]
    second = list(Pool(task, 2, backend="ray", journal=run_dir)(range(20)))
    assert second == [x * x for x in range(20)]
    runs = [int(p.name.split("-")[1]) for p in folder.iterdir()]
    # Journaled items were not computed again.
    assert all(runs.count(x) == 1 for x in range(8))
    assert set(runs) == set(range(20)) and set(range(8)) <= ran_before


def test_map_reduce_and_pqdm_accept_the_backend(ray):
    from mtasklite_like.mapreduce import parallelize
    from mtasklite_like.processes import pqdm as pqdm_processes
    from mtasklite_like.ray import pqdm

    def total(values):
        return sum(values)

    assert parallelize(total, 2, reduction="sum", backend="ray")(list(range(100))) == 4950
    assert pqdm(range(10), square, 2, disable=True) == [x * x for x in range(10)]
    assert pqdm_processes(range(10), square, 2, backend="ray", disable=True) == [x * x for x in range(10)]
    with pytest.raises(ValueError, match="runs on 'ray'"):
        pqdm(range(3), square, 2, backend="threads", disable=True)


def test_large_arrays_travel_through_the_object_store(ray):
    np = pytest.importorskip("numpy")
    arrays = list(Pool(rh.array_of, 2, backend="ray")([2**21] * 4))
    assert all(a.nbytes == 2**21 and int(a[0]) == 7 for a in arrays)
    # Read where Ray put them: zero-copy views of the object store are read-only.
    assert not any(a.flags.writeable for a in arrays)
    sums = list(Pool(rh.array_sum, 2, backend="ray")([np.ones(2**20, dtype=np.uint8)] * 3))
    assert sums == [(2**20, False)] * 3


def test_progress_reported_by_a_task_reaches_the_caller(ray, tmp_path):
    """Through the actor's progress segment, on the caller's machine."""
    release = tmp_path / "release"
    with Pool(rh.report_then_wait, 1, backend="ray") as pool:
        results = pool([(0.5, str(release))])
        out: list[float] = []
        consumer = threading.Thread(target=lambda: out.extend(results), daemon=True)
        consumer.start()
        deadline = time.monotonic() + 50
        while results.partial != 0.5 and time.monotonic() < deadline:
            time.sleep(0.005)
        seen = results.partial
        release.touch()
        consumer.join(50)
        assert seen == 0.5
        assert out == [0.5]
        assert results.partial == 0.0


def test_sizes_reported_count_large_buffers(ray):
    np = pytest.importorskip("numpy")
    from mtasklite_like._backends.ray_worker import measure

    assert measure([np.zeros(2**20, dtype=np.uint8)]) >= 2**20
    assert measure(list(range(1000))) < 10_000


# -- connecting -------------------------------------------------------------------------------------


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_script(code, env, timeout=90):
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=timeout,
    )


@pytest.mark.timeout(120)
def test_a_separately_started_cluster_through_address():
    pytest.importorskip("ray")
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    port = _free_port()
    # A short temp dir of its own (Ray's socket paths must stay short), so this cluster is told
    # apart from the test run's Ray; stopped by signalling its own `ray start --block`.
    temp = tempfile.mkdtemp(prefix="mtlray", dir="/tmp")
    head = subprocess.Popen(
        [sys.executable, "-m", "ray.scripts.scripts", "start", "--head", f"--port={port}",
         "--node-ip-address=127.0.0.1", "--num-cpus=1", "--include-dashboard=false",
         "--object-store-memory=80000000", f"--temp-dir={temp}", "--disable-usage-stats", "--block"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )
    try:
        done = _run_script(f"""
            import os
            from mtasklite_like import Pool
            import ray
            def where(x):
                return x * x, os.getpid()
            # The cluster may take a few seconds to come up: retry connecting until it answers.
            import time
            deadline = time.monotonic() + 60
            while True:
                try:
                    results = list(Pool(where, 2, backend="ray", address="127.0.0.1:{port}")(range(20)))
                    break
                except Exception:
                    if time.monotonic() > deadline:
                        raise
                    ray.shutdown()
                    time.sleep(0.5)
            assert [r for r, _ in results] == [x * x for x in range(20)]
            assert os.getpid() not in {{pid for _, pid in results}}
            # Joined, not started: the session is the cluster's, with its one CPU.
            assert ray.cluster_resources()["CPU"] == 1.0, ray.cluster_resources()
            print("OK", len({{pid for _, pid in results}}))
        """, env)
        assert done.returncode == 0, done.stderr[-3000:]
        assert "OK" in done.stdout
    finally:
        head.send_signal(signal.SIGINT)  # `ray start --block` stops its own cluster on Ctrl-C
        try:
            head.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait(5)
        subprocess.run(["rm", "-rf", temp], check=False)
    left = subprocess.run(["pgrep", "-f", temp], capture_output=True, text=True).stdout.split()
    assert left == [], "processes of the separately started cluster outlived it"


@pytest.mark.timeout(120)
def test_without_a_running_ray_the_pool_starts_a_local_one_and_leaves_it_up():
    pytest.importorskip("ray")
    env = {**os.environ, **RAY_ENV}
    env.pop("RAY_ADDRESS", None)
    done = _run_script("""
        import ray
        from mtasklite_like import Pool
        from tests.helpers import square
        assert not ray.is_initialized()
        assert list(Pool(square, 2, backend="ray")(range(10))) == [x * x for x in range(10)]
        assert ray.is_initialized()  # kept for the next pool of this process
        assert list(Pool(square, 2, backend="ray")(range(5))) == [x * x for x in range(5)]
        assert ray.cluster_resources()["object_store_memory"] <= 2 * 2**30
        print("OK")
    """, env)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


def test_without_ray_installed_the_error_names_the_extra():
    code = """
        import sys
        class NoRay:
            def find_spec(self, name, path=None, target=None):
                if name == "ray" or name.startswith("ray."):
                    raise ModuleNotFoundError("No module named 'ray'")
                return None
        sys.meta_path.insert(0, NoRay())
        from mtasklite_like import Pool
        import mtasklite_like.ray  # importing the module needs no Ray
        for make in (lambda: Pool(abs, 2, backend="ray"), lambda: mtasklite_like.ray.pqdm([1], abs, 2)):
            try:
                make()
            except ImportError as exc:
                assert 'pip install "mtasklite-like[ray]"' in str(exc), exc
            else:
                raise AssertionError("no ImportError")
        assert "ray" not in sys.modules
        print("OK")
    """
    done = _run_script(code, dict(os.environ), timeout=60)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "OK" in done.stdout


def test_records_and_warnings_of_actors_reach_the_callers_logging(ray):
    """Records travel back with their batch and are handed to the caller's logger, with the worker
    and the item; the caller's level (INFO) is the actors' too; a warning is issued again here."""
    import logging
    import warnings

    logger = logging.getLogger("tests.ray_logs")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record)

    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            assert list(Pool(rh.log_item, 2, backend="ray")(range(12))) == list(range(12))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
    numbers = [int(r.getMessage().split()[-1]) for r in records]
    assert sorted(numbers) == list(range(12))
    assert all(r.getMessage().startswith("ray item") for r in records)  # no DEBUG record
    assert [r.item for r in records] == numbers
    assert {r.worker for r in records} <= {0, 1}
    ours = [str(w.message) for w in seen if issubclass(w.category, RuntimeWarning)]
    assert len(ours) == 1 and ours[0].startswith("careful on ray (worker ") and ours[0].endswith(", item 5)")
