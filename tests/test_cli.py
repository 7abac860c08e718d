"""``python -m mtasklite_like map``: end to end, in subprocesses.

Ctrl-C is a SIGINT to the whole process group (what a terminal sends), the run is resumed with
the same ``--resume`` directory, and the output must be complete, with no journaled line computed
again.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mtasklite_like import read_journal
from tests.journal_helpers import read_log

pytestmark = pytest.mark.timeout(60)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAP = [sys.executable, "-m", "mtasklite_like", "map"]


def run(args, tmp_path, **kwargs):
    env = dict(os.environ, PYTHONPATH=ROOT, MTL_TEST_LOG=str(tmp_path / "calls.log"))
    return subprocess.run([*MAP, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=30,
                          **kwargs)


def test_help_documents_every_option(tmp_path):
    result = run(["--help"], tmp_path)
    assert result.returncode == 0
    for option in ("MODULE:FUNCTION", "INPUT", "--output", "--n-jobs", "--threads", "--unordered", "--resume",
                   "--json", "--no-progress", "Exit codes"):
        assert option in result.stdout, option
    top = subprocess.run([sys.executable, "-m", "mtasklite_like", "--help"], capture_output=True, text=True)
    assert "map" in top.stdout and "demo" in top.stdout


def test_ctrl_c_then_resume_gives_the_complete_output(tmp_path):
    lines = [f"line {i}" for i in range(3000)]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n")
    output, run_dir, log = tmp_path / "out.txt", tmp_path / "run", tmp_path / "calls.log"
    args = ["tests.journal_helpers:logged_upper", str(source), "--output", str(output),
            "--resume", str(run_dir), "--n-jobs", "2"]
    env = dict(os.environ, PYTHONPATH=ROOT, MTL_TEST_LOG=str(log))
    proc = subprocess.Popen([*MAP, *args], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)
    deadline = time.monotonic() + 20
    while len(read_journal(run_dir).done) < 500:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # Ctrl-C in a terminal: the whole foreground group
    _, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, err
    assert "interrupted after" in err and "run the same command again" in err
    journaled = read_journal(run_dir).finished_keys
    assert 500 <= len(journaled) < 3000

    seen = len(read_log(str(log)))
    result = run(args, tmp_path)
    assert result.returncode == 0, result.stderr
    assert output.read_text().splitlines() == [x.upper() for x in lines]
    again = read_log(str(log))[seen:]
    assert not journaled.intersection(again), "a journaled line was computed again"
    assert set(again) | journaled == set(lines)


def test_stdin_to_stdout_in_a_shell_pipe(tmp_path):
    env = dict(os.environ, PYTHONPATH=ROOT)
    command = (f"seq 1 500 | {sys.executable} -m mtasklite_like map tests.journal_helpers:logged_length_dict "
               "--json --n-jobs 2 | tail -n 2")
    result = subprocess.run(["bash", "-c", f"set -o pipefail; {command}"], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert [json.loads(x) for x in result.stdout.splitlines()] == [
        {"line": "499", "length": 3}, {"line": "500", "length": 3}]


def test_threads_unordered_json_to_a_file(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"w{i}\n" for i in range(200)))
    output = tmp_path / "out.jsonl"
    result = run(["tests.journal_helpers:logged_length_dict", str(source), "-o", str(output), "--threads",
                  "--unordered", "--json", "-j", "4"], tmp_path)
    assert result.returncode == 0, result.stderr
    got = [json.loads(x) for x in output.read_text().splitlines()]
    assert sorted(got, key=lambda d: int(d["line"][1:])) == [{"line": f"w{i}", "length": len(f"w{i}")}
                                                              for i in range(200)]
    assert "line" in result.stderr  # the progress bar counts lines on stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["nosuchmodule:f", "IN"], "cannot import module 'nosuchmodule'"),
        (["os.path:nosuchfunction", "IN"], "has no attribute 'nosuchfunction'"),
        (["os.path", "IN"], "expected MODULE:FUNCTION"),
        (["os.path:sep", "IN"], "not a function"),
        (["builtins:len", "MISSING"], "cannot read input"),
        (["builtins:len", "IN", "--output", "/nonexistent/dir/out.txt"], "cannot write output"),
        (["builtins:len", "IN", "--n-jobs", "0"], "--n-jobs must be at least 1"),
    ],
)
def test_usage_errors_are_one_line_with_exit_code_2(tmp_path, args, message):
    source = tmp_path / "in.txt"
    source.write_text("a\nbb\n")
    names = {"IN": str(source), "MISSING": str(tmp_path / "missing.txt")}
    args = [names.get(a, a) for a in args]
    result = run(args, tmp_path)
    assert result.returncode == 2
    assert message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert "Traceback" not in result.stderr


def test_a_journal_of_another_function_is_a_usage_error(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("a\nbb\n")
    assert run(["builtins:len", str(source), "--resume", str(tmp_path / "run")], tmp_path).returncode == 0
    result = run(["builtins:repr", str(source), "--resume", str(tmp_path / "run")], tmp_path)
    assert result.returncode == 2 and "written for another run" in result.stderr


def test_a_failing_line_exits_1_and_names_it(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("4\n9\nnot a number\n16\n")
    result = run(["builtins:int", str(source), "-o", str(tmp_path / "out.txt"), "-j", "1"], tmp_path)
    assert result.returncode == 1
    assert "input line 3 failed: ValueError" in result.stderr
    assert Path(tmp_path / "out.txt").read_text() == "4\n9\n"
