"""``python -m mtasklite_like map``: end to end, in subprocesses.

Ctrl-C is a SIGINT to the whole process group (what a terminal sends), the run is resumed with
the same ``--resume`` directory, and the output must be complete, with no journaled line computed
again.
"""

from __future__ import annotations

import json
import os
import select
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
        (["builtins:len", "IN", "--max-worker-memory", "lots"],
         "--max-worker-memory must be a number of bytes"),
        (["builtins:len", "IN", "--threads", "--max-worker-memory", "1GiB"],
         "thread workers share one process"),
        (["builtins:len", "IN", "--min-available-memory", "200%"], "below 100%"),
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


def test_memory_flags_reach_the_pool(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"w{i}\n" for i in range(50)))
    output = tmp_path / "out.txt"
    result = run(["builtins:len", str(source), "-o", str(output), "-j", "2", "--max-worker-memory", "2GiB",
                  "--kill-worker-memory", "3GiB", "--min-available-memory", "1%"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert output.read_text().splitlines() == [str(len(f"w{i}")) for i in range(50)]


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


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
def test_a_failing_line_is_named_by_its_input_position(tmp_path, unordered):
    # The line comes from the exception's `input_index`, not from how many results were written: in
    # order, 1 and 2 are written before the failure; unordered, the position is known all the same.
    result = run(["builtins:int", "--no-progress", *(["--unordered"] if unordered else [])], tmp_path,
                 input="1\n2\nx\n4\n")
    assert result.returncode == 1, result.stderr
    assert "input line 3 failed: ValueError" in result.stderr, result.stderr
    if unordered:
        assert set(result.stdout.splitlines()) <= {"1", "2", "4"}
    else:
        assert result.stdout == "1\n2\n"


def test_a_failure_without_its_position_is_named_as_before():
    from mtasklite_like._cli.map import failed_line

    named = ValueError("bad")
    named.input_index = 6
    assert failed_line(named, written=2, unordered=False) == "input line 7"
    assert failed_line(named, written=2, unordered=True) == "input line 7"
    assert failed_line(ValueError("bad"), written=2, unordered=False) == "input line 3"
    assert failed_line(ValueError("bad"), written=2, unordered=True) == "a line"


# Ctrl-C while the command line is still starting. A `sitecustomize` on PYTHONPATH puts an import hook
# in the child that, at the import of the module named by MTL_TEST_BLOCK_IMPORT, writes a marker on
# stderr and sleeps: the test waits for the marker, so the SIGINT lands inside that import. It sleeps
# in code run by exec() from a string, as the code dataclasses and namedtuples generate at import time
# is: a KeyboardInterrupt raised there makes CPython die by SIGINT at exit even once it is caught,
# unless the handler clears that.

BLOCKED = b"MTL-TEST-BLOCKED-IMPORT"
SITECUSTOMIZE = f'''\
"""Test hook: block (once) the import of the module named by MTL_TEST_BLOCK_IMPORT."""
import importlib.machinery
import importlib.util
import os
import select
import sys
import time


class _BlockOnce:
    blocked = False

    def find_spec(self, name, path=None, target=None):
        if not self.blocked and name == os.environ.get("MTL_TEST_BLOCK_IMPORT"):
            self.blocked = True
            os.write(2, b"{BLOCKED.decode()} " + name.encode() + b"\\n")
            exec("while True:\\n    time.sleep(1)", {{"time": time}})
        return None


sys.meta_path.insert(0, _BlockOnce())

# Run the sitecustomize this one shadows, if the interpreter has one.
_here = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _here])
if _spec is not None and _spec.loader is not None:
    _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
'''


def start_blocked(command, tmp_path, block):
    """Start `command` with the import of `block` blocked; return it once it is blocked there, and
    what it had written on stderr."""
    hooks = tmp_path / "hooks"
    hooks.mkdir(exist_ok=True)
    (hooks / "sitecustomize.py").write_text(SITECUSTOMIZE)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(hooks), ROOT, str(tmp_path)]),
               MTL_TEST_BLOCK_IMPORT=block, MTL_TEST_LOG=str(tmp_path / "calls.log"))
    proc = subprocess.Popen(command, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, bufsize=0, start_new_session=True)
    seen = b""
    deadline = time.monotonic() + 60
    while BLOCKED not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"the import of {block} was not reached; stderr so far: {seen!r}"
        if select.select([proc.stderr], [], [], left)[0]:
            chunk = os.read(proc.stderr.fileno(), 65536)
            assert chunk, f"exited with {proc.wait()} before importing {block}: {seen!r}"
            seen += chunk
    return proc, seen


def interrupt(proc, seen):
    """Ctrl-C (a SIGINT to the process group, as a terminal sends it); return (exit code, stderr)."""
    os.killpg(proc.pid, signal.SIGINT)
    _, rest = proc.communicate(timeout=30)
    return proc.returncode, (seen + rest).decode(errors="replace")


NO_RESUME = "pass --resume RUN_DIR to make a run resumable"
RESUME = "run the same command again to continue (finished lines are in {run_dir})"


@pytest.mark.timeout(120)
@pytest.mark.parametrize(
    ("block", "args", "hint"),
    [
        # in the package's import, which `-m` runs before __main__
        ("mtasklite_like._pool", ["map", "builtins:len", "in.txt"], NO_RESUME),
        ("mtasklite_like._pool", ["map", "builtins:len", "in.txt", "--resume", "{run_dir}"], RESUME),
        ("mtasklite_like._pool", ["map", "builtins:len", "in.txt", "--resume={run_dir}"], RESUME),
        ("mtasklite_like._pool", ["demo", "--quick"], "python -m mtasklite_like demo: interrupted"),
        # in main(), before the arguments of map are parsed
        ("mtasklite_like._cli.map", ["map", "builtins:len", "in.txt", "--res", "{run_dir}"], RESUME),
        ("mtasklite_like._cli.demo", ["demo", "--quick"], "python -m mtasklite_like demo: interrupted"),
        # in the run, before the pool has started: importing the function to map
        ("tests.journal_helpers", ["map", "tests.journal_helpers:logged_upper", "in.txt"], NO_RESUME),
        ("tests.journal_helpers", ["map", "tests.journal_helpers:logged_upper", "in.txt", "--resume",
                                   "{run_dir}"], RESUME),
    ],
    ids=["package-import", "package-import-resume", "package-import-resume=", "package-import-demo",
         "main-resume-abbreviated", "main-demo", "function-import", "function-import-resume"],
)
def test_ctrl_c_while_starting_exits_130_with_how_to_continue(tmp_path, block, args, hint):
    run_dir = str(tmp_path / "run")
    (tmp_path / "in.txt").write_text("a\nbb\n")
    command = [sys.executable, "-m", "mtasklite_like", *(a.format(run_dir=run_dir) for a in args)]
    proc, seen = start_blocked(command, tmp_path, block)
    try:
        code, err = interrupt(proc, seen)
    finally:
        proc.kill()
        proc.wait()
    assert code == 130, err
    assert "interrupted" in err and hint.format(run_dir=run_dir) in err, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err


@pytest.mark.timeout(120)
def test_ctrl_c_while_the_console_script_starts_exits_130(tmp_path):
    script = os.path.join(os.path.dirname(sys.executable), "mtasklite-like")
    if not os.path.exists(script):
        pytest.skip("the mtasklite-like script is not installed next to this interpreter")
    run_dir = str(tmp_path / "run")
    (tmp_path / "in.txt").write_text("a\nbb\n")
    proc, seen = start_blocked([script, "map", "builtins:len", "in.txt", "--resume", run_dir], tmp_path,
                               "mtasklite_like._pool")
    try:
        code, err = interrupt(proc, seen)
    finally:
        proc.kill()
        proc.wait()
    assert code == 130, err
    assert RESUME.format(run_dir=run_dir) in err and "Traceback" not in err, err


@pytest.mark.timeout(120)
@pytest.mark.parametrize("how", ["-c", "-m"])
def test_ctrl_c_while_a_program_imports_the_package_is_a_keyboard_interrupt(tmp_path, how):
    # A program of its own, even one run with -m and with arguments that look like ours: the
    # interrupt is the program's to handle, and unhandled it kills the process by SIGINT.
    (tmp_path / "usermain.py").write_text("import mtasklite_like\n")
    target = ["-c", "import mtasklite_like"] if how == "-c" else ["-m", "usermain"]
    command = [sys.executable, *target, "map", "builtins:len", "in.txt", "--resume", "run"]
    proc, seen = start_blocked(command, tmp_path, "mtasklite_like._pool")
    try:
        code, err = interrupt(proc, seen)
    finally:
        proc.kill()
        proc.wait()
    assert code == -signal.SIGINT, err
    assert "KeyboardInterrupt" in err and "interrupted;" not in err, err


@pytest.mark.parametrize(
    ("orig_argv", "expected"),
    [
        (["python", "-m", "mtasklite_like", "map"], True),
        (["python", "-X", "dev", "-Wignore", "-u", "-m", "mtasklite_like"], True),
        (["python", "-um", "mtasklite_like.__main__", "demo"], True),
        (["python", "-mmtasklite_like"], True),
        (["/venv/bin/python", "/venv/bin/mtasklite-like", "map"], True),
        (["python", "-m", "mtasklite_like_other"], False),
        (["python", "-m", "usermain", "-m", "mtasklite_like"], False),
        (["python", "-c", "import mtasklite_like", "-m", "mtasklite_like"], False),
        (["python", "-W", "-m", "script.py"], False),
        (["python", "script.py", "mtasklite-like"], False),
        (["python", "-", "-m", "mtasklite_like"], False),
        (["python"], False),
    ],
)
def test_the_command_line_is_told_from_the_interpreter_arguments(monkeypatch, orig_argv, expected):
    from mtasklite_like._cli import interrupt as _interrupt

    monkeypatch.setattr(sys, "orig_argv", orig_argv)
    assert _interrupt.started_as_command_line() is expected


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["map", "f:g", "--resume", "d"], "map: interrupted; " + RESUME.format(run_dir="d")),
        (["map", "f:g", "--resume=d", "--resum", "e"], "map: interrupted; " + RESUME.format(run_dir="e")),
        (["map", "f:g", "--r=d"], "map: interrupted; " + RESUME.format(run_dir="d")),
        (["map", "f:g", "--", "--resume", "d"], "map: interrupted; " + NO_RESUME),
        (["map", "f:g", "--resume"], "map: interrupted; " + NO_RESUME),
        (["demo", "--resume", "d"], "demo: interrupted"),
        ([], "mtasklite_like: interrupted"),
    ],
)
def test_the_message_before_a_start_says_how_to_continue(args, message):
    from mtasklite_like._cli.interrupt import interrupted_message

    assert interrupted_message(args).endswith(message)
