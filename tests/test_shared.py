"""``mtasklite_like.shared``: NumPy arrays in shared memory, written and read by workers.

Start methods other than ``fork``, signals and the caller's death are tested through small scripts
run in a subprocess (as in tests/test_start_methods.py). Each script prints one ``RESULT <json>``
line; leaks are checked by looking for the array's own segment in /dev/shm after the script ends.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mtasklite_like import Pool
from mtasklite_like.shared import NAME_PREFIX, SharedArray, share, shared_array
from tests.helpers import pid_running

SHM = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm to look for leaked segments")
METHODS = ["fork", "spawn", "forkserver"]
LEAK_WORDS = ("leaked", "resource_tracker", "Traceback")


def _exists(name: str) -> bool:
    return (SHM / name).exists()


def _wait_until(condition: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


# -- in the test process ---------------------------------------------------------------------------------


def test_shared_array_basics() -> None:
    with shared_array((4, 3), "int32") as out:
        assert isinstance(out, SharedArray) and out.name.startswith(NAME_PREFIX) and _exists(out.name)
        assert out.shape == (4, 3) and out.dtype == np.int32 and out.ndim == 2 and len(out) == 4
        assert out.size == 12 and out.nbytes == 48
        assert not out.array.any()  # zero-filled
        out[1] = [1, 2, 3]
        out[2, 1] = 7
        assert out[1].tolist() == [1, 2, 3] and out[2, 1] == 7
        assert np.asarray(out).sum() == 13 and np.asarray(out, dtype=float).dtype == np.float64
        snapshot = out.copy()
        out[0, 0] = 100
        assert snapshot[0, 0] == 0
        assert "(owner)" in repr(out)
    assert shared_array(5).shape == (5,)


def test_pickles_as_a_small_handle_not_as_data() -> None:
    with shared_array((1000, 1000), np.float64) as out:  # 8 MB
        out[999, 999] = 3.5
        blob = pickle.dumps(out)
        assert len(blob) < 1000
        same = pickle.loads(blob)
        assert same is out  # in the owner, the owner's own object


def test_share_copies_and_is_read_only_by_default() -> None:
    source = np.arange(12.0).reshape(3, 4)
    with share(source) as inp:
        np.testing.assert_array_equal(inp.array, source)
        source[0, 0] = -1
        assert inp[0, 0] == 0  # a copy
        assert inp.readonly and "read-only" in repr(inp)
        with pytest.raises(ValueError, match="read-only"):
            inp[0, 0] = 5
        with pytest.raises(ValueError, match="read-only"):
            inp.array[1] = 0
    with share([1, 2, 3], readonly=False) as writable:
        writable[0] = 10
        assert writable.array.tolist() == [10, 2, 3]


def test_freed_when_the_block_ends() -> None:
    with shared_array(10) as out:
        out[:] = 4
        view = out.array
        name = out.name
    assert not _exists(name) and out.closed and "(freed)" in repr(out)
    with pytest.raises(ValueError, match="was freed"):
        out[0]
    with pytest.raises(ValueError, match="cannot be sent to a worker"):
        pickle.dumps(out)
    assert view.sum() == 40  # a view taken inside the block stays valid until it is dropped
    out.close()  # closing again is harmless


def test_freed_when_garbage_collected() -> None:
    out = shared_array(10)
    name = out.name
    assert _exists(name)
    del out
    assert not _exists(name)


def test_wrong_dtype_or_shape_fail_clearly() -> None:
    with pytest.raises(TypeError, match="Python objects"):
        shared_array(3, object)
    with pytest.raises(ValueError, match="shape must be"):
        shared_array((2, -1))
    with pytest.raises(ValueError, match="shape must be"):
        shared_array((2.5,))  # type: ignore[arg-type]
    with shared_array((0, 4)) as empty:
        assert empty.array.shape == (0, 4)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("use_threads", [True, False], ids=["threads", "fork-processes"])
def test_four_workers_fill_the_array(use_threads: bool) -> None:
    inputs = np.random.default_rng(0).normal(size=(64, 8))
    expected = np.tanh(inputs) * 2
    with shared_array(inputs.shape) as out, share(inputs) as inp:

        def fill(i: int) -> int:
            out[i] = np.tanh(inp[i]) * 2
            return os.getpid()

        pids = list(Pool(fill, 4, use_threads=use_threads, chunk_size=4)(range(len(inputs))))
        np.testing.assert_allclose(out.array, expected)
        name = out.name
    assert not _exists(name)
    if not use_threads:
        assert os.getpid() not in pids and len(set(pids)) > 1


def test_attaching_from_a_handle_maps_the_same_memory() -> None:
    # What a spawn worker does: open the segment by name (here in this process, as a second mapping).
    from mtasklite_like import shared as module

    with shared_array(4, "int64") as out:
        handle = module._attach_segment(out.name)
        try:
            other = np.ndarray((4,), dtype="int64", buffer=handle.buf)
            other[2] = 42
            assert out[2] == 42
            del other
        finally:
            handle.close()
        assert _exists(out.name)  # closing an attachment does not free the array


# -- NumPy is optional --------------------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=30
    )


@pytest.mark.timeout(40)
def test_without_numpy_a_clear_import_error_names_the_extra() -> None:
    proc = _python("""
        import sys
        sys.modules["numpy"] = None  # as if NumPy were not installed
        import mtasklite_like, mtasklite_like.mapreduce, mtasklite_like.reductions
        import mtasklite_like.workercontext, mtasklite_like.mmengine
        try:
            import mtasklite_like.shared
        except ImportError as exc:
            print("ERROR", exc)
    """)
    assert proc.returncode == 0, proc.stderr
    assert 'ERROR mtasklite_like.shared needs NumPy' in proc.stdout
    assert 'pip install "mtasklite-like[numpy]"' in proc.stdout


@pytest.mark.timeout(40)
def test_numpy_is_imported_only_by_the_shared_module() -> None:
    proc = _python("""
        import sys
        import mtasklite_like, mtasklite_like.mapreduce, mtasklite_like.reductions
        import mtasklite_like.workercontext, mtasklite_like.mmengine, mtasklite_like.processes
        print("NUMPY", "numpy" in sys.modules)
    """)
    assert proc.stdout.strip() == "NUMPY False", proc.stderr


# -- scripts: start methods, killed workers, Ctrl-C, a killed caller ----------------------------------------

_HEADER = """\
import json
import os
import signal
import sys
import time

import numpy as np

from mtasklite_like import Pool, WorkerDiedError
from mtasklite_like.shared import share, shared_array


def emit(**data):
    print("RESULT " + json.dumps(data), flush=True)
"""


def _script(tmp_path: Path, body: str, method: str) -> Path:
    script = tmp_path / f"shared_{method}.py"
    script.write_text("\n".join([_HEADER, f"METHOD = {method!r}", textwrap.dedent(body)]))
    return script


def _run(tmp_path: Path, body: str, method: str) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, str(_script(tmp_path, body, method))],
        cwd=tmp_path, capture_output=True, text=True, timeout=40,
    )
    assert proc.returncode == 0, f"script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, f"expected one RESULT line:\n{proc.stdout}\n{proc.stderr}"
    return json.loads(lines[0][len("RESULT "):]), proc.stderr


def _assert_no_leak_warnings(stderr: str) -> None:
    for word in LEAK_WORDS:
        assert word not in stderr, f"unexpected {word!r} on stderr:\n{stderr}"


_FILL = """
def embed(row, weights):
    return np.tanh(row @ weights)


def fill_from_item(task):
    i, out, inp, weights = task                  # handles travel inside the items
    out[i] = embed(inp[i], weights.array)
    return os.getpid()


def try_to_write(task):
    i, inp = task
    inp[i] = 0                                   # read-only: NumPy refuses


if __name__ == "__main__":
    rng = np.random.default_rng(1)
    inputs = rng.normal(size=(40, 6))
    weights = rng.normal(size=(6, 3))
    expected = np.tanh(inputs @ weights)
    with shared_array((40, 3)) as out, shared_array((40, 3)) as out2, share(inputs) as inp, \\
            share(weights) as w:
        # 1. a lambda over the handles (the worker function carries them)
        pool = Pool(lambda i: out2.__setitem__(i, embed(inp[i], w.array)) or os.getpid(), 4,
                    start_method=METHOD, chunk_size=2)
        pids = list(pool(range(40)))
        # 2. handles inside each item
        pids += list(Pool(fill_from_item, 4, start_method=METHOD)((i, out, inp, w) for i in range(40)))
        # 3. read-only inputs stay read-only in the workers
        errors = list(Pool(try_to_write, 2, start_method=METHOD, exception_behavior="ignore")(
            (i, inp) for i in range(4)))
        emit(names=[out.name, out2.name, inp.name, w.name],
             equal=bool(np.allclose(out.array, expected)),
             equal_lambda=bool(np.allclose(out2.array, expected)),
             pids=sorted(set(pids)), parent=os.getpid(),
             errors=[f"{type(e).__name__}: {e}" for e in errors])
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", METHODS)
def test_four_process_workers_under_each_start_method(tmp_path: Path, method: str) -> None:
    res, stderr = _run(tmp_path, _FILL, method)
    assert res["equal"] and res["equal_lambda"], "the shared array differs from the serial result"
    assert res["parent"] not in res["pids"] and len(res["pids"]) >= 2
    assert len(res["errors"]) == 4 and all("read-only" in e for e in res["errors"]), res["errors"]
    assert [n for n in res["names"] if _exists(n)] == [], "segments left in /dev/shm"
    _assert_no_leak_warnings(stderr)


_KILL_WORKER = """
def task(args):
    i, out = args
    if i == 5:
        os.kill(os.getpid(), signal.SIGKILL)     # this worker dies mid-task
        time.sleep(10)
    out[i] = i * 10
    return i


if __name__ == "__main__":
    with shared_array(12, "int64") as out:
        pool = Pool(task, 3, start_method=METHOD, chunk_size=1)
        try:
            list(pool((i, out) for i in range(12)))
            died = None
        except WorkerDiedError as exc:
            died = exc.exitcode
        # The pool goes on after a death in 'ignore' mode: the other items are written.
        results = list(Pool(task, 3, start_method=METHOD, chunk_size=1, exception_behavior="ignore")(
            (i, out) for i in range(12)))
        emit(name=out.name, died=died, values=out.array.tolist(),
             failed=[i for i, r in enumerate(results) if isinstance(r, Exception)])
"""


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_sigkilled_worker_leaves_nothing_behind(tmp_path: Path, method: str) -> None:
    res, stderr = _run(tmp_path, _KILL_WORKER, method)
    assert res["died"] == -signal.SIGKILL
    assert res["failed"] == [5]
    assert res["values"] == [i * 10 if i != 5 else 0 for i in range(12)]
    assert not _exists(res["name"])
    _assert_no_leak_warnings(stderr)


_BLOCKED = """
def slow(args):
    i, out = args
    out[i] = i
    if i >= 2:
        time.sleep(30)                           # stuck until the caller gives up
    return os.getpid()


if __name__ == "__main__":
    with shared_array(8, "int64") as out:
        pool = Pool(slow, 2, start_method=METHOD, chunk_size=1)
        results = pool((i, out) for i in range(8))
        first = next(results)
        print("READY " + json.dumps({"name": out.name, "pids": pool.worker_pids}), flush=True)
        for _ in results:
            pass
"""


def _start(tmp_path: Path, method: str, stderr_path: Path) -> tuple[subprocess.Popen[str], dict[str, Any]]:
    with stderr_path.open("w") as err:
        proc = subprocess.Popen(
            [sys.executable, str(_script(tmp_path, _BLOCKED, method))],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True,
        )
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("READY "), f"{line!r}\n{stderr_path.read_text()}"
    info = json.loads(line[len("READY "):])
    assert _exists(info["name"]) and all(pid_running(p) for p in info["pids"])
    return proc, info


def _cleanup(proc: subprocess.Popen[str], name: str) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stray workers, the fork server, the resource tracker
    (SHM / name).unlink(missing_ok=True)  # after a failure only: the test has already judged


def _describe(pids: list[int]) -> str:
    """State, parent, command line and what each thread waits in, of each process still there,
    for a failure message."""
    rows = []
    for pid in pids:
        with contextlib.suppress(OSError):
            status = Path(f"/proc/{pid}/status").read_text().splitlines()
            fields = " ".join(ln for ln in status if ln.startswith(("State", "PPid", "SigIgn")))
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            waits = []
            for task in sorted(Path(f"/proc/{pid}/task").iterdir()):
                with contextlib.suppress(OSError):
                    name, wchan = (task / "comm").read_text().strip(), (task / "wchan").read_text().strip()
                    waits.append(f"{name}@{wchan}")
            rows.append(f"{pid}: {fields} cmd={cmd[:120]!r} threads={waits}")
    return "; ".join(rows)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_ctrl_c_frees_the_array(tmp_path: Path, method: str) -> None:
    stderr_path = tmp_path / "stderr.txt"
    proc, info = _start(tmp_path, method, stderr_path)
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(15)
        stderr = stderr_path.read_text()
        assert proc.returncode != 0 and "KeyboardInterrupt" in stderr
        assert not _exists(info["name"]), "Ctrl-C left the segment in /dev/shm"
        workers_gone = _wait_until(lambda: not any(pid_running(p) for p in info["pids"]), 5)
        assert workers_gone, "workers outlived Ctrl-C"
        assert "leaked" not in stderr and "resource_tracker" not in stderr, stderr
    finally:
        _cleanup(proc, info["name"])


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_a_sigkilled_caller_is_cleaned_up_by_the_resource_tracker(tmp_path: Path, method: str) -> None:
    stderr_path = tmp_path / "stderr.txt"
    proc, info = _start(tmp_path, method, stderr_path)
    try:
        proc.kill()  # the caller alone: no chance to run any cleanup of its own
        proc.wait(5)
        # Its workers notice and end (under fork they hold the tracker's pipe too); then the resource
        # tracker removes what the caller registered.
        workers_gone = _wait_until(lambda: not any(pid_running(p) for p in info["pids"]), 15)
        assert workers_gone, f"orphaned workers: {_describe(info['pids'])}"
        assert _wait_until(lambda: not _exists(info["name"]), 15), "the segment outlived its killed owner"
        assert _wait_until(lambda: "leaked shared_memory" in stderr_path.read_text(), 5)
    finally:
        _cleanup(proc, info["name"])
