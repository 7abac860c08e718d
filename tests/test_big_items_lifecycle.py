"""Big items and the end of a run: nothing left behind in /dev/shm, no worker left running.

Large buffers cross to process workers and back out of band (``_backends/wire.py``). Whatever a
transport uses, a run must leave no shared-memory segment and no process behind: not after a
normal end, a ``break``, Ctrl-C, a SIGKILLed worker or a SIGKILLed caller. Each scenario runs a
script in a fresh process group. A thread in the script records every ``/dev/shm`` file mapped or
held open by the caller or its workers while big items flow; the test then checks that none of
them still exists and that every worker has ended. (The recorder is checked too: a segment made
on purpose is seen, and then removed.)
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import pid_running

SHM = Path("/dev/shm")
pytestmark = [
    pytest.mark.skipif(not SHM.is_dir(), reason="needs /dev/shm to look for leaked segments"),
    pytest.mark.timeout(90),
]

_SCRIPT = r'''
import json, os, signal, sys, threading, time
from pathlib import Path
from mtasklite_like import Pool

MODE = sys.argv[1]
MIB = 1 << 20
seen = set()
pids = []


def record():
    """Every /dev/shm file the caller and its workers map or hold open."""
    for pid in [os.getpid(), *pids]:
        try:
            with open(f"/proc/{pid}/maps") as f:
                for line in f:
                    if "/dev/shm/" in line:
                        seen.add(line.split("/dev/shm/", 1)[1].split()[0])
            for fd in os.listdir(f"/proc/{pid}/fd"):
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
                if target.startswith("/dev/shm/"):
                    seen.add(target[len("/dev/shm/"):].split()[0])
        except OSError:
            pass


def recorder():
    while True:
        record()
        time.sleep(0.01)


def items(n):
    block = bytes(2 * MIB)
    for i in range(n):
        if i % 3 == 2:
            try:
                import numpy as np
            except ImportError:
                yield bytearray(block[:MIB])
            else:
                yield np.full(MIB // 8, float(i))
        else:
            yield block[i % 7:i % 7 + MIB]


def task(x):
    if MODE == "kill-worker" and isinstance(x, bytes) and x[:1] == b"\0" and os.environ.get("KILL_ONCE"):
        if not os.path.exists(os.environ["KILL_ONCE"]):
            open(os.environ["KILL_ONCE"], "w").close()
            os.kill(os.getpid(), signal.SIGKILL)
    return x[::-1]


def report(**extra):
    record()
    print("INFO " + json.dumps({"seen": sorted(seen), "pids": pids, **extra}), flush=True)


if __name__ == "__main__":
    if MODE == "self-check":
        from multiprocessing import shared_memory
        segment = shared_memory.SharedMemory(create=True, size=MIB)
        record()
        report(name=segment.name)
        segment.close()
        segment.unlink()
        sys.exit(0)
    threading.Thread(target=recorder, daemon=True).start()
    deaths = {"on_worker_death": "restart", "exception_behavior": "deferred"} if MODE == "kill-worker" else {}
    pool = Pool(task, 2, **deaths)
    results = pool(items(60))
    n = 0
    try:
        for r in results:
            n += 1
            if n == 1:
                pids[:] = pool.worker_pids
            if n == 10:
                if MODE == "break":
                    break
                if MODE in ("sigint", "kill-caller"):
                    report()
                    print("READY", flush=True)
                    time.sleep(60)  # the signal comes meanwhile
    except Exception as exc:  # kill-worker: the deferred WorkerDiedError at the end
        print("ERROR " + type(exc).__name__, flush=True)
    pids[:] = sorted(set(pids) | {p for p in pool.worker_pids if p})  # replaced workers too
    pool.close()
    report(n=n)
'''


def _run(tmp_path: Path, mode: str) -> subprocess.Popen[str]:
    script = tmp_path / "big_lifecycle.py"
    script.write_text(_SCRIPT)
    env = {**os.environ, "KILL_ONCE": str(tmp_path / "killed-once")}
    return subprocess.Popen(
        [sys.executable, str(script), mode], cwd=tmp_path, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )


def _infos(lines: list[str]) -> list[dict[str, Any]]:
    return [json.loads(line[len("INFO "):]) for line in lines if line.startswith("INFO ")]


def _wait_until(predicate: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def _check_nothing_left(seen: list[str], pids: list[int]) -> None:
    assert pids, "the script never saw its workers"
    assert _wait_until(lambda: not any(pid_running(p) for p in pids), 10), f"workers left: {pids}"
    assert [name for name in seen if (SHM / name).exists()] == [], "segments left in /dev/shm"


def _cleanup(proc: subprocess.Popen[str]) -> None:
    if proc.poll() is None:
        proc.kill()
        proc.wait(5)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)


def test_the_recorder_sees_a_segment(tmp_path: Path) -> None:
    proc = _run(tmp_path, "self-check")
    try:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        (info,) = _infos(out.splitlines())
        assert info["name"] in info["seen"]
        assert not (SHM / info["name"]).exists()
    finally:
        _cleanup(proc)


@pytest.mark.parametrize("mode", ["end", "break", "kill-worker"])
def test_nothing_left_after_the_run(tmp_path: Path, mode: str) -> None:
    proc = _run(tmp_path, mode)
    try:
        out, err = proc.communicate(timeout=80)
        assert proc.returncode == 0, err
        info = _infos(out.splitlines())[-1]
        assert info["n"] == {"end": 60, "break": 10, "kill-worker": 60}[mode], out
        if mode == "kill-worker":
            assert "ERROR DeferredExceptions" in out, out
            assert (tmp_path / "killed-once").exists()
        _check_nothing_left(info["seen"], info["pids"])
    finally:
        _cleanup(proc)


@pytest.mark.parametrize("mode", ["sigint", "kill-caller"])
def test_nothing_left_after_ctrl_c_or_a_killed_caller(tmp_path: Path, mode: str) -> None:
    proc = _run(tmp_path, mode)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("READY"):
                break
        (info,) = _infos(lines)
        assert all(pid_running(p) for p in info["pids"])
        proc.send_signal(signal.SIGINT if mode == "sigint" else signal.SIGKILL)
        proc.wait(30)
        if mode == "sigint":
            assert "KeyboardInterrupt" in proc.stderr.read() if proc.stderr else False
        _check_nothing_left(info["seen"], info["pids"])
    finally:
        _cleanup(proc)
