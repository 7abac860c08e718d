"""Proof: a journaled run over 20,000 items, SIGKILLed at random points, resumed each time.

The whole process group (the caller and its workers) is killed with SIGKILL at five or more
random points of progress, and the run is started again each time. Checked:

- the output of the run that completes equals the uninterrupted output;
- **no journaled item is computed twice**: before each restart the journal is read; the items it
  holds must not appear in the side-effect log written by that restart's tasks. Items that were
  in flight, or finished but not yet written to the journal, when the kill came may be computed
  again; that is the documented window, and the test allows it;
- every item was computed at least once, and the journal ends complete.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time

import pytest

from mtasklite_like import read_journal
from tests.journal_helpers import read_log

N_ITEMS = 20_000
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _start(run_dir, output, log, kind, unordered):
    env = dict(os.environ, MTL_TEST_LOG=log, PYTHONPATH=ROOT)
    cmd = [sys.executable, "-m", "tests.journal_kill_script", run_dir, output, kind]
    if unordered:
        cmd.append("--unordered")
    return subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _size(path):
    try:
        return os.stat(path).st_size
    except FileNotFoundError:
        return 0


def _kill_group(proc):
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    proc.wait(timeout=10)
    deadline = time.monotonic() + 10
    while _alive_in_group(proc.pid):  # the workers are in the same group: wait until all are dead
        if time.monotonic() > deadline:
            raise AssertionError("workers of the killed run are still alive")
        time.sleep(0.005)


def _alive_in_group(pgid):
    """Processes of the group that are not zombies (a dead worker may wait a while to be reaped by
    init, and ``killpg(pgid, 0)`` counts zombies)."""
    if not os.path.isdir("/proc/self"):
        try:
            os.killpg(pgid, 0)
        except ProcessLookupError:
            return False
        return True
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


@pytest.mark.timeout(120)
# each backend, and each order: the journal is written in the caller, in the order results come
@pytest.mark.parametrize(("kind", "unordered"), [("processes", False), ("threads", True)])
def test_sigkill_at_random_points_then_resume(tmp_path, kind, unordered):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    run_dir, output, log = str(tmp_path / "run"), str(tmp_path / "out.txt"), str(tmp_path / "calls.log")
    # Kill points: progress of the side-effect log, spread over the run, at least 5 of them.
    points = sorted(rng.sample(range(1_000, N_ITEMS - 1_500), 6))
    kills = 0
    for point in [*points, None]:
        journaled = read_journal(run_dir).finished_keys
        start = len(read_log(log))
        proc = _start(run_dir, output, log, kind, unordered)
        if point is None:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err.decode()
        else:
            # Poll the log's size (each line is at most 6 bytes), not its lines: cheap enough to
            # poll every 2 ms without slowing the run down.
            target = _size(log) + 6 * max(200, point - len(journaled))
            deadline = time.monotonic() + 30
            while _size(log) < target and proc.poll() is None:
                assert time.monotonic() < deadline, f"no progress (seed {seed})"
                time.sleep(0.002)
            if proc.poll() is not None:  # finished before the kill point: not a kill
                assert proc.returncode == 0, proc.stderr.read().decode()
                break
            _kill_group(proc)
            kills += 1
        computed = [int(x) for x in read_log(log)[start:]]
        twice = journaled.intersection(computed)
        assert not twice, f"journaled items computed again: {sorted(twice)[:10]} (seed {seed})"
        if point is None:
            break
    assert kills >= 5, f"only {kills} kills landed mid-run (seed {seed})"
    with open(output) as f:
        out = [int(line) for line in f]
    expected = [x * x for x in range(N_ITEMS)]
    assert (sorted(out) if unordered else out) == expected
    assert read_journal(run_dir).finished_keys == set(range(N_ITEMS))
    assert set(int(x) for x in read_log(log)) == set(range(N_ITEMS))
