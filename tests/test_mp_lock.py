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

from mtasklite_like import DeferredExceptions, Pool, RemoteTraceback, read_journal
from mtasklite_like._journal.format import KIND_DONE_RAW, decode_raw
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
    with pytest.raises(ValueError, match="cannot process bad3") as info:
        mp_lock(names, h.mp_process, lambda p, r, n: saved.extend(n), 2, out, save_batch=2,
                shared_data=shared, verbose=False)
    assert [str(e) for e in info.value.mp_lock_failures] == ["cannot process bad3"]
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



# -- calling again: a finished run does nothing, a killed one finishes what is left -----------------

# A script that runs one mp_lock* function over 40 names. Names from 20 on wait, in process, for
# the file "go" (created by the test once the first run is killed), so a first run is always
# killed midway with 20 to 40 names unfinished; later runs find "go" and finish.
RESUMABLE = '''
import os
import sys
import time

from mtasklite_like.mp_lock import mp_lock, mp_lock_value
from tests.journal_helpers import log_call


def init(shared_data):
    log_call("init")
    return {}


def process(data, shared_data, init_values):
    if int(data) >= 20:
        deadline = time.monotonic() + 60
        while not os.path.exists(shared_data["go"]):  # held here until the run is killed
            if time.monotonic() > deadline:
                raise TimeoutError("never released")
            time.sleep(0.005)
    log_call(data)
    return int(data) ** 2


def save(path, results, names):
    with open(path + ".txt", "a") as f:
        f.writelines(f"{n} {r}\\n" for n, r in zip(names, results))


if __name__ == "__main__":
    function = {"mp_lock": mp_lock, "mp_lock_value": mp_lock_value}[sys.argv[1]]
    names = [str(i) for i in range(40)]
    print(function(names, process, save, 2, "out", save_batch=5, init_function=init,
                   shared_data={"go": os.path.abspath("go")}, verbose=False))
'''


def saved_lines(out):
    """(name, result) pairs written by the RESUMABLE script's save_callback, one per line."""
    with open(os.path.join(out, "data.txt")) as f:
        return [tuple(line.split()) for line in f]


@pytest.mark.timeout(120)
@pytest.mark.parametrize("function", ["mp_lock", "mp_lock_value"])
def test_killed_midway_then_called_again_finishes_only_what_is_left(tmp_path, monkeypatch, function):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    names = [str(i) for i in range(40)]
    expected = {(n, str(int(n) ** 2)) for n in names}
    journal = tmp_path / "out" / "journal"
    run_script(tmp_path, RESUMABLE, function, kill_when=lambda: len(read_journal(journal).done) >= 5)
    journaled = read_journal(journal).finished_keys
    assert 5 <= len(journaled) <= 20 and journaled <= set(names[:20])
    (tmp_path / "go").touch()

    # The second call computes exactly the names the journal did not hold, each once.
    seen = len(h.read_log(log))
    printed = run_script(tmp_path, RESUMABLE, function)
    computed = [x for x in h.read_log(log)[seen:] if x != "init"]
    assert sorted(computed, key=int) == [n for n in names if n not in journaled]
    assert set(saved_lines(tmp_path / "out")) == expected  # every result reached save_callback
    assert is_mp_lock_completed(names, str(tmp_path / "out"))
    if function == "mp_lock_value":
        assert ast.literal_eval(printed.strip()) == [int(n) ** 2 for n in names]

    # The third call computes nothing, starts no worker and saves nothing again.
    seen, lines = len(h.read_log(log)), len(saved_lines(tmp_path / "out"))
    printed = run_script(tmp_path, RESUMABLE, function)
    assert h.read_log(log)[seen:] == []
    assert len(saved_lines(tmp_path / "out")) == lines
    if function == "mp_lock_value":
        assert ast.literal_eval(printed.strip()) == [int(n) ** 2 for n in names]
    else:
        assert printed.strip() == "None"


@pytest.mark.parametrize("num_procs", [1, 2])
@pytest.mark.parametrize("function", [mp_lock, mp_lock_value, mp_lock_batch])
def test_calls_on_a_finished_run_do_nothing(tmp_path, monkeypatch, function, num_procs):
    log = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", log)
    out = str(tmp_path / "out")
    names = [str(i) for i in range(12)]
    calls = []
    extra = {"batch_size": 3} if function is mp_lock_batch else {}
    task = h.mp_process_batch if function is mp_lock_batch else h.mp_process

    def call():
        return function(names, task, lambda p, r, n: calls.append(list(n)), num_procs, out,
                        shared_data={"offset": 1}, init_function=h.mp_init, verbose=False, **extra)

    first = call()
    assert sorted(n for ns in calls for n in ns) == sorted(names)
    seen = len(h.read_log(log))
    calls.clear()
    for _ in range(2):  # a second and a third call
        again = call()
        assert again == first
        assert h.read_log(log)[seen:] == []  # neither process nor init_function ran
        assert calls == []
    if function is mp_lock_value:
        assert first == [int(n) + 1 for n in names]


def test_calls_on_a_finished_run_show_a_complete_bar(tmp_path, capsys):
    out = str(tmp_path / "out")
    names = [str(i) for i in range(7)]
    mp_lock(names, h.mp_process, None, 2, out, verbose=False)
    mp_lock(names, h.mp_process, None, 2, out, verbose=True)
    assert "7/7" in capsys.readouterr().err


def test_a_journaled_pool_over_an_empty_input_fits_a_finished_journal(tmp_path):
    """The cause of the crash of a repeated mp_lock call, at the layer where it lived: the kind of
    key is taken from the first item, and an empty input (every name filtered out as finished)
    was given the kind 'position' and refused by a journal of names."""
    run_dir = str(tmp_path / "run")
    assert list(Pool(str.upper, 2, journal=run_dir)(["a", "b"])) == ["A", "B"]
    assert list(Pool(str.upper, 2, journal=run_dir)([])) == []
    assert list(Pool(str.upper, 2, journal=run_dir)(["a", "c"])) == ["A", "C"]
    assert read_journal(run_dir).header["keys"] == "item"


# -- a failure in process keeps its type -------------------------------------------------------------


def invalid_process(data, shared_data={}, init_values={}):  # noqa: B006 - doc_ock's own test
    import invalid_module  # noqa: F401

    return 1


@pytest.mark.parametrize("num_procs", [1, 2])
def test_an_exception_in_process_keeps_its_type_as_in_doc_ock(tmp_path, num_procs):
    """doc_ock's tests/test_error_handling.py::test_mp_lock_user_exception, with our import."""
    with pytest.raises(ModuleNotFoundError) as info:
        mp_lock([str(x) for x in range(10)], invalid_process, None, num_procs, str(tmp_path / "out"), 2,
                verbose=False)
    assert not isinstance(info.value, DeferredExceptions)
    assert len(info.value.mp_lock_failures) == 10
    assert all(type(e) is ModuleNotFoundError for e in info.value.mp_lock_failures)
    if num_procs > 1:  # the worker's traceback is still attached
        assert isinstance(info.value.__cause__, RemoteTraceback)


@pytest.mark.parametrize("function", [mp_lock, mp_lock_value])
def test_several_failures_raise_the_first_with_the_others_attached(tmp_path, monkeypatch, function):
    monkeypatch.setenv("MTL_TEST_LOG", str(tmp_path / "calls.log"))
    out = str(tmp_path / "out")
    names = ["1", "bad2", "3", "bad4", "5", "bad6", "7"]
    saved = []
    with pytest.raises(ValueError) as info:
        function(names, h.mp_process, lambda p, r, n: saved.extend(n), 2, out, save_batch=2, verbose=False)
    first = info.value
    assert str(first) == "cannot process bad2"
    assert [str(e) for e in first.mp_lock_failures] == [f"cannot process bad{i}" for i in (2, 4, 6)]
    assert first.mp_lock_failures[0] is first
    assert sorted(saved) == ["1", "3", "5", "7"]  # the others were processed and saved first
    if sys.version_info >= (3, 11):
        note = next(n for n in first.__notes__ if n.startswith("mp_lock:"))
        assert "3 item(s) failed" in note and "'bad4': ValueError" in note and "'bad6'" in note


def failing_batch(batch, shared_data={}, init_values={}):  # noqa: B006 - the documented signature
    if "4" in batch:
        raise KeyError(f"no entry for batch {batch}")
    return [int(x) for x in batch]


def test_a_failure_in_mp_lock_batch_keeps_its_type(tmp_path):
    saved = []
    with pytest.raises(KeyError, match="no entry") as info:
        mp_lock_batch([str(i) for i in range(9)], failing_batch, lambda p, r, n: saved.extend(n), 2,
                      str(tmp_path / "out"), batch_size=3, verbose=False)
    assert len(info.value.mp_lock_failures) == 1
    assert sorted(saved) == ["0", "1", "2", "6", "7", "8"]


@pytest.mark.timeout(60)
@pytest.mark.parametrize("function", [mp_lock, mp_lock_value])
def test_a_failing_init_function_keeps_its_type(tmp_path, function):
    # doc_ock lets init_function's exception through: `except ModuleNotFoundError:` must catch it.
    with pytest.raises(ModuleNotFoundError, match="mtasklite_like_no_such_module") as info:
        function(["a", "b"], h.mp_process, None, 2, str(tmp_path / "out"), shared_data={},
                 init_function=h.mp_init_missing_module, verbose=False)
    assert isinstance(info.value.__cause__, RemoteTraceback)
    assert "worker" in str(info.value.worker_init_error)
