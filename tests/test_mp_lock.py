"""The ``doc_ock.mp_lock`` drop-in: its documented usage unchanged, resumed after SIGKILL, and the
semantics of each function (``gfickel/multiprocessing_lib`` is not on PyPI, so it cannot run
beside ours here; its README example and ``examples/dummy.py`` usage are re-typed as scripts
below, with only the import changed)."""

from __future__ import annotations

import ast
import os
import pickle
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mtasklite_like import DeferredExceptions, read_journal
from mtasklite_like._journal_format import KIND_DONE_RAW, decode_raw
from mtasklite_like.mp_lock import (
    InvalidArgumentsError,
    is_mp_lock_completed,
    mp_lock,
    mp_lock_batch,
    mp_lock_value,
    mp_lock_values,
)
from tests import journal_helpers as h
from tests.journal_helpers import journal_records

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# examples/dummy.py of multiprocessing_lib, as documented; only the import line differs.
DUMMY = '''
import argparse
import random
import time

from mtasklite_like.mp_lock import mp_lock_value


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description='Script dummy')
    parser.add_argument('--num_procs', type=int, required=True,
            help='Number of processes')
    args = parser.parse_args()

    data_list = [str(i) for i in range(10)]

    def process(data, shared_data={}, init_values={}):
        time.sleep(random.random())
        return data

    vals = mp_lock_value(data_list, process, None, args.num_procs, "dummy_out", verbose=False)
    print(vals)
'''

# The README example; load_model is the user's own (the README leaves it out), defined first.
README = '''
import time

from mtasklite_like.mp_lock import mp_lock


class Model:
    def process(self, data):
        time.sleep(0.3)
        return f"result of {data}"


def load_model(path):
    return Model()


if __name__ == '__main__':
    data_list = [str(i) for i in range(10)]
    shared_data = {
        'some_data': 42,
        'big_model_path': 'path.bin',
    }
    def my_init(shared_data):
        ml_model = load_model(shared_data['big_model_path'])
        return {'model': ml_model}

    def process(data, shared_data={}, init_values={}):
        my_model = init_values['model']
        res = my_model.process(data)
        print(res, shared_data['some_data'])

    mp_lock(data_list, process, None, 4, "dummy_output", shared_data=shared_data, init_function=my_init)
'''


def journal_key_counts(run_dir):
    """How many times each key was journaled as finished (every record, not the merged view)."""
    counts: Counter = Counter()
    for kind, payload in journal_records(run_dir):
        if kind == KIND_DONE_RAW:
            counts.update(decode_raw(payload)[0])
        elif kind == 1:
            counts.update(pickle.loads(payload)[0])
        elif kind == 2:
            counts.update(pickle.loads(payload))
    return counts


def run_script(tmp_path, text, *args, kill_when=None):
    """Run a script in tmp_path; with kill_when, SIGKILL its process group once kill_when() holds."""
    script = tmp_path / "script.py"
    script.write_text(text)
    env = dict(os.environ, PYTHONPATH=ROOT)
    proc = subprocess.Popen([sys.executable, str(script), *args], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    if kill_when is None:
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 0, err.decode()
        return out.decode()
    deadline = time.monotonic() + 20
    while not kill_when():
        assert proc.poll() is None, f"finished before the kill point: {proc.communicate()}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=10)
    return None


def test_dummy_example_runs_unchanged_and_resumes_after_sigkill(tmp_path):
    journal = tmp_path / "dummy_out" / "journal"
    run_script(tmp_path, DUMMY, "--num_procs", "2",
               kill_when=lambda: len(read_journal(journal).done) >= 3)
    done_before = read_journal(journal).finished_keys
    assert 3 <= len(done_before) < 10
    out = run_script(tmp_path, DUMMY, "--num_procs", "2")
    assert ast.literal_eval(out.strip()) == [str(i) for i in range(10)]
    counts = journal_key_counts(journal)
    assert set(counts) == {str(i) for i in range(10)} and max(counts.values()) == 1  # none computed twice
    # a third run computes nothing and prints the same
    out = run_script(tmp_path, DUMMY, "--num_procs", "2")
    assert ast.literal_eval(out.strip()) == [str(i) for i in range(10)]
    assert max(journal_key_counts(journal).values()) == 1


def test_readme_example_runs_unchanged_and_resumes_after_sigkill(tmp_path):
    journal = tmp_path / "dummy_output" / "journal"
    run_script(tmp_path, README, kill_when=lambda: len(read_journal(journal).done) >= 2)
    names = [str(i) for i in range(10)]
    assert not is_mp_lock_completed(names, str(tmp_path / "dummy_output"))
    run_script(tmp_path, README)
    assert is_mp_lock_completed(names, str(tmp_path / "dummy_output"))
    printed = (tmp_path / "dummy_output" / "user_output.txt").read_text().splitlines()
    assert {f"result of {n} 42" for n in names} <= set(printed)  # what process printed went there
    assert max(journal_key_counts(journal).values()) == 1


def test_save_callback_batches_names_and_resume_by_name(tmp_path, monkeypatch):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    out = str(tmp_path / "out")
    calls = []

    def save(path, results, names):
        calls.append((path, list(results), list(names)))

    names = [str(i) for i in range(23)]
    mp_lock(names[:15], h.mp_process, save, 2, out, save_batch=4, shared_data={"offset": 0}, verbose=False)
    assert all(path == f"{out}/data" for path, _, _ in calls)
    assert all(len(r) <= 4 for _, r, _ in calls)
    assert sorted(n for _, _, ns in calls for n in ns) == sorted(names[:15])
    assert all(r == [int(n) for n in ns] for _, r, ns in calls)
    assert is_mp_lock_completed(names[:15], out) and not is_mp_lock_completed(names, out)

    # more names, in another order: only the new ones run (resume by name, as there)
    calls.clear()
    seen = len(h.read_log(log))
    mp_lock(names[::-1], h.mp_process, save, 2, out, save_batch=4, shared_data={"offset": 0}, verbose=False)
    assert sorted(n for _, _, ns in calls for n in ns) == sorted(names[15:])
    assert sorted(h.read_log(log)[seen:]) == sorted(names[15:])
    assert is_mp_lock_completed(names, out)


def test_mp_lock_value_order_init_function_and_alias(tmp_path, monkeypatch):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    assert mp_lock_values is mp_lock_value
    names = [str(i) for i in range(30)]
    out = str(tmp_path / "out")
    values = mp_lock_values(names, h.mp_process, None, 3, out, shared_data={"offset": 100},
                            init_function=h.mp_init, verbose=False)
    assert values == [i + 100 for i in range(30)]
    inits = [x for x in h.read_log(log) if x.startswith("init")]
    assert 1 <= len(inits) <= 3 and len(set(inits)) == len(inits)  # once per worker process
    seen = len(h.read_log(log))
    assert mp_lock_value([*names, "3"], h.mp_process, None, 3, out, shared_data={"offset": 100},
                         init_function=h.mp_init, verbose=False) == [i + 100 for i in range(30)] + [103]
    assert [x for x in h.read_log(log)[seen:] if not x.startswith("init")] == []
    assert "processing 7" in (Path(out) / "user_output.txt").read_text()


def test_a_failing_item_does_not_stop_the_others_and_is_retried(tmp_path, monkeypatch):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    out = str(tmp_path / "out")
    fixed = tmp_path / "fixed"
    names = ["1", "2", "bad3", "4", "5"]
    saved = []
    shared = {"fixed": str(fixed)}
    with pytest.raises(DeferredExceptions) as info:
        mp_lock(names, h.mp_process, lambda p, r, n: saved.extend(n), 2, out, save_batch=2,
                shared_data=shared, verbose=False)
    assert [str(e) for e in info.value.exceptions] == ["cannot process bad3"]
    assert sorted(saved) == ["1", "2", "4", "5"]
    fixed.touch()
    seen = len(h.read_log(log))
    mp_lock(names, h.mp_process, lambda p, r, n: saved.extend(n), 2, out, shared_data=shared, verbose=False)
    assert h.read_log(log)[seen:] == ["bad3"]
    assert is_mp_lock_completed(names, out)


def test_mp_lock_batch(tmp_path, monkeypatch):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    out = str(tmp_path / "out")
    calls = []
    names = [str(i) for i in range(20)]
    mp_lock_batch(names[:11], h.mp_process_batch, lambda p, r, n: calls.append((list(r), list(n))), 2, out,
                  batch_size=3, save_batch=6, verbose=False)
    batches = [x.split(",") for x in h.read_log(log)]
    assert all(len(b) <= 3 for b in batches) and sorted(n for b in batches for n in b) == sorted(names[:11])
    assert all(len(n) <= 6 for _, n in calls)
    saved = sorted((n, r) for rs, ns in calls for n, r in zip(ns, rs))
    assert saved == sorted((n, int(n) * 2) for n in names[:11])
    seen = len(h.read_log(log))
    mp_lock_batch(names, h.mp_process_batch, None, 2, out, batch_size=3, verbose=False)
    assert sorted(n for x in h.read_log(log)[seen:] for n in x.split(",")) == sorted(names[11:])
    assert is_mp_lock_completed(names, out)


@pytest.mark.parametrize(
    ("args", "name"),
    [
        (([], h.mp_process, None, 2, "out"), "data_list"),
        ((["a", 1], h.mp_process, None, 2, "out"), "data_list"),
        ((["a"], "not callable", None, 2, "out"), "process"),
        ((["a"], h.mp_process, None, 0, "out"), "num_procs"),
        ((["a"], h.mp_process, None, 2, ""), "out_path"),
    ],
)
def test_invalid_arguments(args, name):
    with pytest.raises(InvalidArgumentsError, match=f"Invalid {name}"):
        mp_lock(*args, verbose=False)


def test_is_mp_lock_completed_without_a_run(tmp_path):
    assert not is_mp_lock_completed(["a"], str(tmp_path / "nothing"))

