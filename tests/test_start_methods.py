"""Process workers under each start method: ``fork``, ``spawn`` and ``forkserver``.

``spawn`` and ``forkserver`` re-import ``__main__`` in each worker, so every case is a small script
run in a fresh interpreter: what the worker receives (a lambda, a closure, a ``__main__`` function,
a ``@delayed_init`` class of ``__main__``) must survive that trip. Each script prints one line
``RESULT <json>`` that the test checks.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mtasklite_like import Pool
from tests.helpers import pid_running

METHODS = ["fork", "spawn", "forkserver"]

# Shared by every script: imports, and the ``emit`` helper that prints the result line.
_HEADER = """\
import json
import os
import sys
import time

from mtasklite_like import Pool, delayed_init


def emit(**data):
    data["parent_pid"] = os.getpid()
    print("RESULT " + json.dumps(data), flush=True)
"""


def _run_script(
    tmp_path: Path, body: str, method: str, prelude: str = "", timeout: float = 40
) -> dict[str, Any]:
    """Write header, ``prelude`` and ``body`` to a script, run it under ``method``, parse RESULT."""
    script = tmp_path / f"case_{method}.py"
    source = "\n".join([_HEADER, f"METHOD = {method!r}", textwrap.dedent(prelude), textwrap.dedent(body)])
    script.write_text(source)
    env = {k: v for k, v in os.environ.items() if k != "MY_GPU"}
    proc = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[0][len("RESULT "):])


def _assert_ran_elsewhere(pids: list[int], parent_pid: int) -> None:
    assert parent_pid not in pids, "items ran in the parent process, not in worker processes"
    assert len(set(pids)) == 2, f"expected both worker processes to run items, got pids {sorted(set(pids))}"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_lambda_worker(tmp_path: Path, method: str) -> None:
    body = """
    if __name__ == "__main__":
        pool = Pool(lambda x: (x * 3, os.getpid()), n_jobs=2, chunk_size=1, start_method=METHOD)
        out = list(pool(range(12)))
        emit(values=[v for v, _ in out], pids=[p for _, p in out])
    """
    res = _run_script(tmp_path, body, method)
    assert res["values"] == [x * 3 for x in range(12)]
    _assert_ran_elsewhere(res["pids"], res["parent_pid"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_closure_over_local_variable(tmp_path: Path, method: str) -> None:
    # The captured value comes from the command line, so it exists only in the parent's frame.
    body = """
    def main():
        offset = int(len(sys.argv) + 1000)
        words = {"a": 1, "b": 2}

        def shift(x):
            return (x + offset + words["b"], os.getpid())

        out = list(Pool(shift, n_jobs=2, chunk_size=1, start_method=METHOD)(range(10)))
        emit(values=[v for v, _ in out], pids=[p for _, p in out])


    if __name__ == "__main__":
        main()
    """
    res = _run_script(tmp_path, body, method)
    assert res["values"] == [x + 1001 + 2 for x in range(10)]
    _assert_ran_elsewhere(res["pids"], res["parent_pid"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_function_defined_in_main(tmp_path: Path, method: str) -> None:
    body = """
    TABLE = {i: chr(ord("a") + i) for i in range(26)}


    def letter_of(x):
        return (TABLE[x % 26] * 2, os.getpid(), __name__)


    if __name__ == "__main__":
        out = list(Pool(letter_of, n_jobs=2, chunk_size=1, start_method=METHOD)(range(30)))
        emit(values=[v for v, _, _ in out], pids=[p for _, p, _ in out], names=[n for _, _, n in out])
    """
    res = _run_script(tmp_path, body, method)
    assert res["values"] == [chr(ord("a") + x % 26) * 2 for x in range(30)]
    _assert_ran_elsewhere(res["pids"], res["parent_pid"])
    if method != "fork":
        # The worker imported the script anew (as __mp_main__), it did not inherit it.
        assert set(res["names"]) == {"__mp_main__"}


# A @delayed_init class of __main__: it counts how many objects each worker process built.
_MODEL = """
@delayed_init
class Model:
    built = 0

    def __init__(self, arg):
        type(self).built += 1
        self.arg = arg
        self.calls = 0
        self.init_pid = os.getpid()
        self.gpu = os.environ.get("MY_GPU")

    def __call__(self, x):
        self.calls += 1
        time.sleep(0.002)
        return {"x": x, "arg": self.arg, "pid": os.getpid(), "calls": self.calls,
                "built": type(self).built, "init_pid": self.init_pid, "gpu": self.gpu}
"""


def _check_per_worker_objects(res: dict[str, Any], n_items: int) -> None:
    out = res["out"]
    assert [r["x"] for r in out] == list(range(n_items))
    by_arg: dict[int, list[dict[str, Any]]] = {}
    for r in out:
        by_arg.setdefault(r["arg"], []).append(r)
    assert sorted(by_arg) == [0, 1], "each worker must get its own constructor argument"
    pids = {}
    for arg, rows in by_arg.items():
        # One object per worker: its call counter runs 1, 2, 3, ... without a restart.
        assert sorted(r["calls"] for r in rows) == list(range(1, len(rows) + 1)), f"worker {arg}"
        assert {r["built"] for r in rows} == {1}, f"worker {arg} built its object more than once"
        assert len({r["pid"] for r in rows}) == 1
        assert {r["init_pid"] for r in rows} == {rows[0]["pid"]}, "object built outside its worker"
        pids[arg] = rows[0]["pid"]
    assert pids[0] != pids[1]
    assert res["parent_pid"] not in pids.values()
    assert res["parent_built"] == 0, "the parent built a @delayed_init object"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_delayed_init_class_in_main_per_worker_args(tmp_path: Path, method: str) -> None:
    body = """

    if __name__ == "__main__":
        # Two calls in one `with`: the workers and their objects are kept between them.
        with Pool([Model(i) for i in range(2)], chunk_size=1, start_method=METHOD) as pool:
            out = list(pool(range(8)))
            out += list(pool(range(8, 16)))
        emit(out=out, parent_built=Model.built)
    """
    res = _run_script(tmp_path, body, method, prelude=_MODEL)
    _check_per_worker_objects(res, 16)
    assert {r["gpu"] for r in res["out"]} == {None}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_worker_env_seen_in_init(tmp_path: Path, method: str) -> None:
    body = """

    if __name__ == "__main__":
        pool = Pool([Model(i) for i in range(2)], chunk_size=1, start_method=METHOD,
                    worker_env=[{"MY_GPU": "0"}, {"MY_GPU": "1"}])
        out = list(pool(range(10)))
        emit(out=out, parent_built=Model.built, parent_env=os.environ.get("MY_GPU"))
    """
    res = _run_script(tmp_path, body, method, prelude=_MODEL)
    _check_per_worker_objects(res, 10)
    for r in res["out"]:
        assert r["gpu"] == str(r["arg"]), r
    assert res["parent_env"] is None, "worker_env leaked into the parent's environment"


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_worker_exception_carries_remote_traceback(tmp_path: Path, method: str) -> None:
    body = """
    def reject_item_in_worker(x):
        if x == 5:
            raise ValueError(f"item {x} is not acceptable")
        return x


    if __name__ == "__main__":
        got = []
        try:
            for r in Pool(reject_item_in_worker, n_jobs=2, chunk_size=1, start_method=METHOD)(range(10)):
                got.append(r)
        except ValueError as exc:
            emit(got=got, kind=type(exc).__name__, message=str(exc), cause=str(exc.__cause__),
                 cause_kind=type(exc.__cause__).__name__)
        else:
            emit(got=got, kind=None)
    """
    res = _run_script(tmp_path, body, method)
    assert res["kind"] == "ValueError"
    assert res["message"] == "item 5 is not acceptable"
    # 'immediate' raises as soon as the failure arrives, possibly before earlier results: a prefix.
    assert res["got"] == list(range(len(res["got"]))) and len(res["got"]) <= 5
    assert res["cause_kind"] == "RemoteTraceback"
    cause = res["cause"]
    # The worker's own traceback: the function that raised, the raising line, the message.
    assert "reject_item_in_worker" in cause
    assert 'raise ValueError(f"item {x} is not acceptable")' in cause
    assert "ValueError: item 5 is not acceptable" in cause


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_task_longer_than_a_second(tmp_path: Path, method: str) -> None:
    """Regression: a worker's orphan check compared os.getppid() with the pool's pid, but under
    forkserver the parent is the fork server, so workers os._exit(1)-ed mid-task after ~1 s."""
    body = """
    def slow(x):
        time.sleep(1.3)
        return x * 10


    if __name__ == "__main__":
        try:
            out = list(Pool(slow, n_jobs=2, chunk_size=1, start_method=METHOD)(range(2)))
        except Exception as exc:
            emit(out=None, error=f"{type(exc).__name__}: {exc}")
        else:
            emit(out=out, error=None)
    """
    res = _run_script(tmp_path, body, method)
    assert res["error"] is None
    assert res["out"] == [0, 10]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_kept_workers_survive_an_idle_pause(tmp_path: Path, method: str) -> None:
    """Workers kept by ``with Pool`` survive an idle pause between calls (the same forkserver
    regression: they used to kill themselves after ~1 s idle, failing the next call)."""
    body = """
    if __name__ == "__main__":
        with Pool(lambda x: (x + 1, os.getpid()), n_jobs=2, chunk_size=1, start_method=METHOD) as pool:
            first = list(pool(range(6)))
            time.sleep(1.3)
            try:
                second = list(pool(range(6)))
            except Exception as exc:
                emit(error=f"{type(exc).__name__}: {exc}")
            else:
                emit(error=None, first=first, second=second)
    """
    res = _run_script(tmp_path, body, method)
    assert res["error"] is None
    assert [v for v, _ in res["second"]] == list(range(1, 7))
    assert {p for _, p in res["first"]} == {p for _, p in res["second"]}, "workers were not kept"


def _caller_script(method: str, prelude: str = "", from_a_thread: bool = False) -> str:
    """A caller that starts two workers, prints their pids ("PIDS [...]") once item 0 is done, then
    waits for an item that blocks for a minute; ``prelude`` runs first (also in spawned workers).
    ``from_a_thread``: all of it runs in a thread of its own, while the main thread waits for it."""
    return "import json, os, sys, threading, time\n" + prelude + textwrap.dedent(f"""
        from mtasklite_like import Pool

        def block(x):
            if x:
                time.sleep(60)
            return x

        def call():
            pool = Pool(block, n_jobs=2, chunk_size=1, start_method={method!r})
            it = pool([0, 1, 1, 1])
            next(it)
            print("PIDS " + json.dumps(pool.worker_pids), flush=True)
            next(it)

        if __name__ == "__main__":
            if {from_a_thread!r}:
                threading.Thread(target=call).start()
            else:
                call()
    """)


def _start_script_and_read_pids(script: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """Run ``script`` in a session of its own; return it and the worker pids it prints ("PIDS [...]")."""
    proc = subprocess.Popen(
        [sys.executable, str(script)], cwd=script.parent, stdout=subprocess.PIPE, text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("PIDS "), line
    return proc, json.loads(line[5:])


def _kill_session(proc: subprocess.Popen[str]) -> None:
    """End the caller, the fork server if any, and stray workers."""
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


@pytest.mark.timeout(60)
@pytest.mark.parametrize(
    "method",
    ["fork", "spawn", "forkserver"],
)
def test_workers_end_when_the_parent_is_killed(tmp_path: Path, method: str) -> None:
    # SIGKILL leaves no chance to clean up: the orphaned workers must notice and end by themselves.
    script = tmp_path / f"orphan_{method}.py"
    script.write_text(_caller_script(method))
    proc, pids = _start_script_and_read_pids(script)
    try:
        assert len(pids) == 2 and all(pid_running(p) for p in pids)
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 2.5
        while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert [p for p in pids if pid_running(p)] == [], "orphaned workers kept running"
    finally:
        _kill_session(proc)


_HOLD_WORKER_1_UNTIL_THE_CALLER_IS_GONE = """
import multiprocess
from mtasklite_like._backends import processes

_real_main = processes._process_main


def _late_main(*args):
    if multiprocess.current_process().name.endswith("-worker-1"):
        caller = int(os.environ["LATE_CALLER_PID"])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                os.kill(caller, 0)
            except ProcessLookupError:
                break
            time.sleep(0.01)
    return _real_main(*args)


processes._process_main = _late_main
os.environ.setdefault("LATE_CALLER_PID", str(os.getpid()))  # the caller's; inherited by workers
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_a_worker_still_starting_when_the_parent_is_killed_ends(tmp_path: Path, method: str) -> None:
    """Regression: a worker read its parent's pid itself, first thing in its main function. One that
    got there only after the caller was SIGKILLed (a fork child the scheduler left waiting) read the
    pid of init instead, and every parent check it made then passed: it waited for batches forever.
    Here worker 1 is held before its main function until the caller is gone."""
    script = tmp_path / f"late_{method}.py"
    script.write_text(_caller_script(method, prelude=_HOLD_WORKER_1_UNTIL_THE_CALLER_IS_GONE))
    proc, pids = _start_script_and_read_pids(script)
    try:
        late = pids[1]
        assert pid_running(late)
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 5
        while pid_running(late) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not pid_running(late), "a worker that started after its parent died kept running"
    finally:
        _kill_session(proc)


def _process_state(pid: int) -> str | None:
    """The state letter of ``pid`` in ``/proc`` ("T": stopped, "Z": zombie); None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


@pytest.mark.timeout(60)
@pytest.mark.parametrize("from_a_thread", [False, True], ids=["main_thread", "other_thread"])
@pytest.mark.parametrize("method", METHODS)
def test_a_stopped_worker_ends_when_the_parent_is_killed(
    tmp_path: Path, method: str, from_a_thread: bool
) -> None:
    """Regression: a stopped worker cannot run the watch of its own threads, so only the kernel can
    end it when its caller is killed. Workers started by a thread other than the main one did not
    ask for that (the parent-death signal follows the thread that started them, which could end
    before the pool), and outlived their killed caller for as long as they stayed stopped. Under
    ``forkserver`` a stopped worker also kept the fork server, its parent, alive: it held the pipe
    whose closing tells the fork server that its callers are gone."""
    script = tmp_path / f"stopped_{method}_{int(from_a_thread)}.py"
    script.write_text(_caller_script(method, from_a_thread=from_a_thread))
    proc, pids = _start_script_and_read_pids(script)
    try:
        assert len(pids) == 2 and all(pid_running(p) for p in pids)
        stopped = pids[0]
        os.kill(stopped, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while _process_state(stopped) != "T" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _process_state(stopped) == "T", "the worker did not stop"
        proc.kill()
        proc.wait(5)
        deadline = time.monotonic() + 20
        while any(pid_running(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = {p: _process_state(p) for p in pids if pid_running(p)}
        assert left == {}, f"workers outlived their killed caller (pid: state): {left}"
    finally:
        for pid in pids:
            if pid_running(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        _kill_session(proc)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_workers_outlive_the_thread_that_started_them(tmp_path: Path, method: str) -> None:
    """Workers that die with their parent must not die with the thread that started them: a thread
    runs the first call of a kept pool and ends, and the main thread's next call finds the same
    workers. (Linux sends the parent-death signal when the *thread* that forked a child ends.)"""
    body = """
    import threading


    def where(x):
        return (x, os.getpid())


    def thread_gone(native_id):
        # The kernel sends a parent-death signal before it drops the thread's /proc entry.
        deadline = time.monotonic() + 10
        while os.path.exists(f"/proc/self/task/{native_id}") and time.monotonic() < deadline:
            time.sleep(0.01)
        return not os.path.exists(f"/proc/self/task/{native_id}")


    if __name__ == "__main__":
        with Pool(where, n_jobs=2, chunk_size=1, start_method=METHOD) as pool:
            first, before, native = [], [], []

            def first_call():
                native.append(threading.get_native_id())
                first.extend(pool(range(6)))
                before.extend(pool.worker_pids)

            caller = threading.Thread(target=first_call)
            caller.start()
            caller.join()
            gone = thread_gone(native[0])
            try:
                second = list(pool(range(6, 12)))
            except Exception as exc:
                emit(error=f"{type(exc).__name__}: {exc}")
            else:
                emit(error=None, gone=gone, first=first, second=second, before=before,
                     after=pool.worker_pids)
    """
    res = _run_script(tmp_path, body, method)
    assert res["error"] is None
    assert res["gone"], "the thread that started the workers did not end"
    assert [x for x, _ in res["first"]] == list(range(6))
    assert [x for x, _ in res["second"]] == list(range(6, 12))
    assert len(res["before"]) == 2 and res["after"] == res["before"], "workers were replaced"
    assert {p for _, p in res["second"]} <= set(res["before"]), "the second call ran in new workers"


class _HoldsGenerator:
    """A callable whose state no pickler can serialise (dill refuses generators too)."""

    def __init__(self) -> None:
        self.source = (i for i in range(3))

    def __call__(self, x: int) -> int:
        return x


@pytest.mark.timeout(20)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_unpicklable_worker_fails_at_construction(method: str) -> None:
    with pytest.raises(TypeError, match=r"(?i)pickl") as info:
        Pool(_HoldsGenerator(), n_jobs=2, start_method=method)
    message = str(info.value)
    assert method in message
    assert "generator" in message
    assert "worker #0" in message


@pytest.mark.timeout(20)
def test_unpicklable_worker_is_fine_with_fork() -> None:
    # fork hands the object to the children as it is: no pickling, no error.
    pool = Pool(_HoldsGenerator(), n_jobs=2, chunk_size=1, start_method="fork")
    assert list(pool(range(5))) == list(range(5))



_NO_FILE_MAIN = """
import json, os
from mtasklite_like import Pool


class Box:
    def __init__(self, value):
        self.value = value


def triple(box):
    return Box(box.value * 3)


pool = Pool(triple, n_jobs=2, chunk_size=1, start_method=METHOD)
print("RESULT " + json.dumps([b.value for b in pool([Box(i) for i in range(6)])]), flush=True)
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["spawn", "forkserver"])
def test_code_in_a_main_without_a_file_reaches_new_processes(tmp_path: Path, method: str) -> None:
    # Like a notebook or a REPL: __main__ has no file, so a new process cannot re-import it to find
    # `triple` and `Box` by name; they must travel by value.
    proc = subprocess.run(
        [sys.executable, "-c", f"METHOD = {method!r}\n" + _NO_FILE_MAIN],
        cwd=tmp_path, capture_output=True, text=True, timeout=50,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.strip().splitlines()[-1] == "RESULT " + json.dumps([0, 3, 6, 9, 12, 15])


_SLOW_IMPORT_SCRIPT = """\
import sys
sys.path.insert(0, sys.argv[1])
from mtasklite_like import Pool

def items():
    import slow_module_for_fork  # takes 0.3 s, in the input thread, while the workers fork
    for i in range(20):
        yield slow_module_for_fork.Thing(i)

def task(thing):
    return thing.value * 2

if __name__ == "__main__":
    with Pool(task, n_jobs=2, start_method="fork") as pool:
        print("RESULT", sum(pool(items())), flush=True)
"""


@pytest.mark.timeout(120)
def test_a_worker_forked_while_the_input_imports_a_module_can_import_it(tmp_path: Path) -> None:
    # The input (read in a thread of its own) imports a module when the workers fork. A worker
    # forked in the middle of that import would hold a copy of the module's import lock, held
    # forever, and hang when unpickling the first item of that module: forks wait for the read.
    (tmp_path / "slow_module_for_fork.py").write_text(
        "import time\ntime.sleep(0.3)\n\nclass Thing:\n    def __init__(self, value):\n"
        "        self.value = value\n"
    )
    script = tmp_path / "slow_import.py"
    script.write_text(_SLOW_IMPORT_SCRIPT)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=str(Path(__file__).parent.parent))
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        pytest.fail("the run hung: a worker forked during the input's import waits on its import lock")
    assert proc.returncode == 0, err
    assert f"RESULT {sum(2 * i for i in range(20))}" in out


def test_a_forked_child_forgets_the_parents_input_threads() -> None:
    import threading

    from mtasklite_like._engine import input_thread

    release = threading.Event()

    def source():
        release.wait(30)  # inside the input's next() while the fork below happens
        yield 1

    reader = input_thread.InputThread(source(), None)
    reader.start(1)
    deadline = time.monotonic() + 30
    while not reader._reading.locked() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert reader._reading.locked()
    read, write = os.pipe()
    pid = os.fork()  # waits up to 0.5 s for the read, then forks anyway
    if pid == 0:
        os.close(read)
        # The parent's input thread does not exist here: a fork from this child must not wait for it.
        os.write(write, b"%d" % len(input_thread._RUNNING))
        os._exit(0)
    os.close(write)
    try:
        assert os.read(read, 16) == b"0"
    finally:
        os.close(read)
        os.waitpid(pid, 0)
        release.set()
        reader.stop()
