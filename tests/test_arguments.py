"""Argument passing: f(x), f(*x), f(**x), and items of the wrong shape; the number of workers
(``n_jobs``) everywhere a pool is built; ``Pool(2)`` written for ``multiprocessing.Pool``."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys

import numpy as np
import pytest

from mtasklite_like import ArgumentPassing, Pool, is_exception
from mtasklite_like._cli.map import main as cli_main
from mtasklite_like.mapreduce import parallelize
from tests.helpers import add, square, whoami

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize("arg_type", [ArgumentPassing.AS_SINGLE_ARG, None, "direct"])
def test_single_arg(backend, n_jobs, arg_type):
    assert list(Pool(square, n_jobs, argument_type=arg_type, **backend)(range(10))) == [
        x * x for x in range(10)
    ]


def test_args(backend, n_jobs):
    items = [(i, 10 * i) for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type="args", **backend)(items)) == [11 * i for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type=ArgumentPassing.AS_ARGS, **backend)(iter(items))) == [
        11 * i for i in range(20)
    ]


def test_kwargs(backend, n_jobs):
    items = [{"a": i, "b": 1} for i in range(20)]
    assert list(Pool(add, n_jobs, argument_type="kwargs", **backend)(items)) == [i + 1 for i in range(20)]


@pytest.mark.parametrize(
    ("arg_type", "bad"),
    [("args", 5), ("args", (1, 2, 3)), ("kwargs", [1, 2]), ("kwargs", {"zzz": 1}), ("single_arg", None)],
)
def test_wrong_shape_fails_only_that_item(backend, n_jobs, arg_type, bad):
    good = (2, 3) if arg_type in ("args", "single_arg") else {"a": 2, "b": 3}
    fn = add if arg_type != "single_arg" else (lambda pair: add(*pair))
    items = [good, bad, good]
    results = list(Pool(fn, n_jobs, argument_type=arg_type, exception_behavior="ignore", **backend)(items))
    assert results[0] == 5 and results[2] == 5
    assert is_exception(results[1]) and isinstance(results[1], TypeError)


# -- n_jobs: joblib's negative counts, and nothing else but whole numbers ----------------------------


@pytest.fixture
def eight_cpus(monkeypatch):
    """This process may use 8 CPUs, whatever the machine has (what n_jobs=-1 counts from)."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 8, raising=False)
    return 8


@pytest.mark.parametrize(
    ("n_jobs", "use_threads", "workers"),
    [(-1, False, 8), (-2, False, 7), (-8, False, 1), (-1, True, 8), (None, False, 8), (None, True, 12),
     (3, False, 3), (np.int64(3), False, 3)],
)
def test_n_jobs_counts_back_from_the_usable_cpus(eight_cpus, n_jobs, use_threads, workers):
    pool = Pool(square, n_jobs, use_threads=use_threads)
    assert pool.num_workers == pool.n_jobs == workers


def test_n_jobs_minus_one_runs_on_worker_processes_not_in_the_caller(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(os, "process_cpu_count", lambda: 2, raising=False)
    pids = {pid for pid, _ in Pool(whoami, -1, chunk_size=1)(range(20))}
    assert os.getpid() not in pids


@pytest.mark.parametrize("n_jobs", [0, -9, -100])
def test_n_jobs_zero_or_beyond_the_cpus_is_a_value_error(eight_cpus, n_jobs):
    with pytest.raises(ValueError, match=r"n_jobs must be at least 1 .* -1 for one worker per") as info:
        Pool(square, n_jobs)
    assert "(8 here)" in str(info.value) and str(n_jobs) in str(info.value)


@pytest.mark.parametrize("n_jobs", ["2", 2.5, 2.0, True, False, [2]])
def test_n_jobs_that_is_not_a_whole_number_is_a_type_error(n_jobs):
    with pytest.raises(TypeError, match=r"n_jobs must be a whole number of workers") as info:
        Pool(square, n_jobs)
    assert repr(n_jobs) in str(info.value)


def test_n_jobs_with_a_list_of_workers_is_checked_and_counted_too(eight_cpus):
    assert Pool([square] * 8, -1).num_workers == 8
    with pytest.raises(ValueError, match=r"n_jobs=-1 \(8 workers here\) does not match the 3 workers"):
        Pool([square] * 3, -1)
    with pytest.raises(TypeError, match="n_jobs must be a whole number"):
        Pool([square] * 3, "3")


@pytest.mark.parametrize("module", ["processes", "threads"])
def test_every_pqdm_checks_n_jobs_as_the_pool_does(eight_cpus, module):
    pqdm = importlib.import_module(f"mtasklite_like.{module}").pqdm
    result = pqdm(range(4), square, -7, disable=True)  # all but 6 of the 8 CPUs
    assert list(result) == [0, 1, 4, 9]
    assert result.pool_obj.parent_obj.n_jobs == 2
    with pytest.raises(ValueError, match="n_jobs must be at least 1"):
        pqdm(range(4), square, 0, disable=True)
    with pytest.raises(TypeError, match="n_jobs must be a whole number"):
        pqdm(range(4), square, 2.5, disable=True)


def test_parallelize_checks_and_counts_n_jobs_as_the_pool_does(eight_cpus):
    assert parallelize(square_all, -2, reduction="flatten").n_jobs == 7
    with pytest.raises(ValueError, match="n_jobs must be at least 1"):
        parallelize(square_all, 0, reduction="flatten")


def test_the_command_line_takes_negative_n_jobs_and_refuses_zero(eight_cpus, tmp_path, capsys):
    source = tmp_path / "in.txt"
    source.write_text("a\nbb\nccc\n")
    output = tmp_path / "out.txt"
    assert cli_main(["builtins:len", str(source), "-o", str(output), "--threads", "--n-jobs", "-1",
                     "--no-progress"]) == 0
    assert output.read_text() == "1\n2\n3\n"
    assert cli_main(["builtins:len", str(source), "--n-jobs=-9", "--no-progress"]) == 2
    assert "--n-jobs must be at least 1" in capsys.readouterr().err


def test_n_jobs_minus_one_follows_the_cpu_affinity_of_the_process():
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity on this platform")
    script = (
        "import os\n"
        "os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})\n"
        "from mtasklite_like import Pool\n"
        "print(Pool(abs, -1).num_workers, Pool(abs).num_workers)\n"
        "try:\n"
        "    Pool(abs, -2)\n"
        "except ValueError as exc:\n"
        "    print('ValueError', 'usable CPU (1 here)' in str(exc))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert proc.stdout.split() == ["1", "1", "ValueError", "True"], proc.stderr


# -- Pool(2): code written for multiprocessing.Pool ------------------------------------------------


@pytest.mark.parametrize(
    ("first", "written"), [(2, "Pool(function, 2)(items)"), (None, "Pool(function)(items)")]
)
def test_a_worker_count_in_place_of_the_worker_says_what_to_write(first, written):
    with pytest.raises(TypeError) as info:
        Pool(first)
    message = str(info.value)
    assert "must be callable" in message and "first argument is the function" in message
    assert written in message
    assert "mtasklite_like.multiprocessing" in message


@pytest.mark.parametrize(("method", "hint"), [("map", "list(pool(items))"), ("imap", "pool(items)"),
                                              ("starmap", "argument_type='args'"),
                                              ("imap_unordered", "is_unordered=True")])
def test_multiprocessing_pool_methods_point_at_the_call_and_the_drop_in(method, hint):
    pool = Pool(square, 2)
    with pytest.raises(AttributeError) as info:
        getattr(pool, method)(square, range(3))
    assert hint in str(info.value)
    assert "mtasklite_like.multiprocessing" in str(info.value)
    assert not hasattr(pool, method)
    with pytest.raises(AttributeError, match=r"has no attribute 'no_such_thing'$"):
        pool.no_such_thing  # noqa: B018 - the lookup is what is tested


def square_all(xs: list[int]) -> list[int]:
    return [x * x for x in xs]
