"""mtasklite's lazy ``pqdm`` wrappers: README examples, the result object, kwargs routing, the bar.

``from mtasklite_like.processes import pqdm`` / ``from mtasklite_like.threads import pqdm`` return a
``PqdmResult``: lazy when iterated, a list when used as one. pqdm's eager ``pqdm``
(``mtasklite_like.pqdm.processes`` / ``.threads``) is tested in ``tests/test_pqdm_eager.py``, and
beside the real ``pqdm`` in ``tests/test_pqdm_parity.py``.
"""

from __future__ import annotations

import io
import itertools
import multiprocessing
import os
import subprocess
import sys
import textwrap
import threading
import time

import multiprocess
import pytest
import tqdm

import mtasklite_like.processes
import mtasklite_like.threads
from mtasklite_like import (
    ArgumentPassing,
    DeferredExceptions,
    Pool,
    RemoteTraceback,
    ResultIterator,
    is_exception,
)
from mtasklite_like.processes import PqdmResult

pytestmark = pytest.mark.timeout(60)

WRAPPERS = {"processes": mtasklite_like.processes.pqdm, "threads": mtasklite_like.threads.pqdm}

#: list() calls iter(result) (a lazy stream, not started yet), then len(result), which collects every
#: result into the result's own list; the stream taken first then finds the run over and yields nothing.


@pytest.fixture(params=sorted(WRAPPERS))
def pqdm(request):
    """The wrapper of one backend."""
    return WRAPPERS[request.param]


# -- module-level tasks (picklable by reference under every start method) -----------------------------


def square(x):
    return x * x


def identity(x):
    return x


def slow_first_item(x):
    if x == 0:
        time.sleep(0.5)  # the workload: a slow item that holds back every later result
    return x


def fail_on_multiples_of_3(x):
    if x % 3 == 0:
        raise ValueError(x)
    return x


def touch(name, directory):
    with open(os.path.join(directory, name), "w"):
        pass
    return name


def shape(*args, **kwargs):
    """How the item was passed."""
    return args, kwargs


#: set by ``init_worker`` in each worker (process workers: their own copy; thread workers: per thread)
INIT_STATE = {"calls": 0, "args": None}
INIT_LOCAL = threading.local()
INIT_THREADS: list[int] = []


def init_worker(tag, number):
    INIT_STATE["calls"] += 1
    INIT_STATE["args"] = (tag, number)
    INIT_LOCAL.calls = getattr(INIT_LOCAL, "calls", 0) + 1
    INIT_LOCAL.args = (tag, number)
    INIT_THREADS.append(threading.get_ident())


def report_init_in_process(x):
    return os.getpid(), INIT_STATE["calls"], INIT_STATE["args"], x


def report_init_in_thread(x):
    return threading.get_ident(), getattr(INIT_LOCAL, "calls", 0), getattr(INIT_LOCAL, "args", None), x


#: a forked worker sees the parent's current value; a spawned one re-imports this module
START_MARK = "as imported"


def read_start_mark(_x):
    return START_MARK


def report_worker_kind(x):
    """'process' in a process worker, 'thread' in a thread of the caller's process."""
    return ("thread" if os.getpid() == CALLER_PID else "process"), x


CALLER_PID = os.getpid()


def _items_counting(n, pulled):
    for i in range(n):
        pulled.append(i)
        yield i


# -- (a) the mtasklite README examples, unchanged but for the import ------------------------------------

# https://github.com/searchivarius/py_mtasklite README.md, "Use via pqdm-compatibility wrappers"
README_SQUARE = """
from mtasklite_like.processes import pqdm

def square(a):
    return a*a

input_arr = [1, 2, 3, 4, 5]

n_jobs = 4
with pqdm(input_arr, square, n_jobs) as pbar:
    result = list(pbar)

result
# Should be equal to [1, 4, 9, 16, 25]
"""

README_DELAYED_INIT = """
from mtasklite_like import delayed_init
from mtasklite_like.processes import pqdm

@delayed_init
class Square:
    def __init__(self, proc_id):
        # It is important to import the module here (when using from the notebook)
        import multiprocess as mp
        print(f'Initialized process {mp.current_process()} with argument = {proc_id}\\n')
    def __call__(self, a):
        return a*a

input_arr = [1, 2, 3, 4, 5]

# Four workers with different initialization arguments
with pqdm(input_arr, [Square(0), Square(1), Square(2), Square(3)])  as pbar:
    result = list(pbar)

result
# Should be equal to [1, 4, 9, 16, 25]
"""


def _run_example(source: str, *, iterate: bool = False) -> dict:
    """Exec an example as a module of its own; ``iterate`` reads ``pbar`` with a for loop instead."""
    if iterate:
        source = source.replace("result = list(pbar)", "result = [r for r in pbar]")
    namespace: dict = {"__name__": "readme_example"}
    exec(compile(source, "<README example>", "exec"), namespace)
    return namespace


@pytest.mark.timeout(30)
def test_readme_square_example():
    assert _run_example(README_SQUARE)["result"] == [1, 4, 9, 16, 25]


@pytest.mark.timeout(30)
def test_readme_square_example_read_with_a_for_loop():
    namespace = _run_example(README_SQUARE, iterate=True)
    assert namespace["result"] == [1, 4, 9, 16, 25]
    pbar = namespace["pbar"]
    assert pbar.pool_obj.parent_obj.n_jobs == 4
    assert pbar.pool_obj.parent_obj.exited  # the with block stopped the workers


@pytest.mark.timeout(30)
def test_readme_delayed_init_example():
    assert _run_example(README_DELAYED_INIT)["result"] == [1, 4, 9, 16, 25]


@pytest.mark.timeout(30)
def test_readme_delayed_init_example_builds_one_object_per_worker(capfd):
    namespace = _run_example(README_DELAYED_INIT, iterate=True)
    assert namespace["result"] == [1, 4, 9, 16, 25]
    lines = [line for line in capfd.readouterr().out.splitlines() if line.startswith("Initialized")]
    # each worker built its own object, with its own argument, in its own process
    assert sorted(line.rsplit("= ", 1)[1] for line in lines) == ["0", "1", "2", "3"]
    assert len({line.split(" with argument")[0] for line in lines}) == 4


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(WRAPPERS))
def test_a_mix_of_function_and_object_workers(backend):
    # docs/pqdm_compatibility.md of mtasklite: "An array of workers can include regular functions,
    # objects with delayed initialization, or a mix of both."
    source = textwrap.dedent(f"""
        import os
        import threading
        from mtasklite_like import delayed_init
        from mtasklite_like.{backend} import pqdm

        @delayed_init
        class Square:
            def __init__(self, proc_id):
                self.proc_id = proc_id
            def __call__(self, a):
                return ('object', self.proc_id, a*a)

        def square(a):
            return ('function', None, a*a)

        input_arr = list(range(40))
        with pqdm(input_arr, [square, Square(1), square, Square(3)]) as pbar:
            result = [r for r in pbar]
    """)
    result = _run_example(source)["result"]
    assert [value for _, _, value in result] == [a * a for a in range(40)]
    # every worker gets a first item, so both kinds of worker answer
    workers = {(kind, proc_id) for kind, proc_id, _ in result}
    assert workers == {("function", None), ("object", 1), ("object", 3)}


# -- (b) the result object ----------------------------------------------------------------------------------


class _CountingList(list):
    """A sized input that records what has been read from it."""

    def __init__(self, n, pulled):
        super().__init__(range(n))
        self.pulled = pulled

    def __iter__(self):
        for item in super().__iter__():
            self.pulled.append(item)
            yield item


class _ShortWhileFlagged:
    """Memory short while the flag is set (a source for min_available_memory)."""

    def __init__(self) -> None:
        import threading

        self.short = threading.Event()

    def available(self):
        return (1 << 20 if self.short.is_set() else 900 << 20), 1000 << 20


def _paused_for_a_while(x):
    time.sleep(0.005)
    return x


@pytest.mark.timeout(30)
def test_the_bar_shows_a_pause_for_memory_and_clears_it(pqdm):
    import threading
    import warnings

    from mtasklite_like import MemoryPressureWarning
    from mtasklite_like._memory.source import MemorySource, use_source

    class Source(_ShortWhileFlagged, MemorySource):
        pass

    source = Source()
    bar_file = io.StringIO()
    shown: list[str] = []
    result = pqdm(range(200), _paused_for_a_while, 2, file=bar_file, min_available_memory="10%", chunk_size=1)
    bar = result.tqdm_obj
    original = bar.set_postfix_str

    def spy(text="", refresh=True):
        shown.append(text)
        original(text, refresh=refresh)

    bar.set_postfix_str = spy
    with use_source(source), warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryPressureWarning)
        got = []
        for r in result:
            got.append(r)
            if r == 10:
                source.short.set()
                threading.Timer(0.5, source.short.clear).start()
    assert got == list(range(200))
    assert any(text.startswith("paused: ") for text in shown)
    assert shown[-1] == ""  # cleared once memory was back


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_work_runs_as_you_iterate(pqdm, sized):
    n_items = 1_000_000
    pulled: list[int] = []
    items = _CountingList(n_items, pulled) if sized else _items_counting(n_items, pulled)
    result = pqdm(items, identity, 2, disable=True)
    assert pulled == []  # nothing is read (or run) before iteration
    stream = iter(result)
    assert pulled == []
    assert next(stream) == 0
    # Read ahead, but within the bounded window, not the whole input (while one worker starts up,
    # the other may race through a window's worth of items).
    assert 0 < len(pulled) <= 300_000
    assert next(stream) == 1
    result.close()
    assert result.pool_obj.parent_obj.exited


@pytest.mark.timeout(30)
def test_with_block_and_for_loop(pqdm):
    bar_file = io.StringIO()
    with pqdm(range(20), square, 3, file=bar_file) as pbar:
        assert isinstance(pbar, PqdmResult)
        results = [r for r in pbar]
    assert results == [x * x for x in range(20)]
    assert pbar.pool_obj.parent_obj.exited
    assert bar_file.getvalue().endswith("\n")  # the bar was closed (leave=True ends its line)


@pytest.mark.timeout(30)
def test_leaving_the_with_block_early_stops_the_workers(pqdm):
    with pqdm(range(10_000), square, 2, disable=True) as pbar:
        for r in pbar:
            if r == 25:
                break
    assert pbar.pool_obj.parent_obj.exited
    assert pbar.pool_obj.finished


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_list_like_use(pqdm, sized):
    expected = [x * x for x in range(12)]
    result = pqdm(range(12) if sized else iter(range(12)), square, 4, disable=True)
    assert result[0] == 0
    assert result[-1] == 121
    assert result[2:5] == [4, 9, 16]
    assert len(result) == 12
    assert result == expected
    assert result != expected[:-1]
    assert repr(result) == repr(expected)
    assert 81 in result
    assert [r for r in result] == expected  # still iterable after use as a list, same results
    with pytest.raises(TypeError):
        hash(result)


@pytest.mark.timeout(30)
def test_a_sized_result_is_still_the_full_list_after_a_for_loop(pqdm):
    result = pqdm(range(12), square, 4, disable=True)
    assert [r for r in result] == [x * x for x in range(12)]
    assert len(result) == 12
    assert result == [x * x for x in range(12)]
    assert result[3] == 9


@pytest.mark.timeout(30)
def test_results_streamed_from_an_unsized_input_are_not_kept(pqdm):
    result = pqdm(iter(range(12)), square, 4, disable=True)
    stream = iter(result)
    assert [next(stream) for _ in range(5)] == [0, 1, 4, 9, 16]
    # list-like use now collects, and keeps, only what was not streamed yet
    assert result == [x * x for x in range(5, 12)]
    assert result[0] == 25


@pytest.mark.timeout(30)
def test_assigned_then_indexed(pqdm):
    result = pqdm([3, 1, 2], square, 4, disable=True)
    assert result[0] == 9


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
@pytest.mark.parametrize("collect", [list, tuple, sorted])
def test_list_of_the_result(pqdm, sized, collect):
    result = pqdm(range(12) if sized else iter(range(12)), square, 4, disable=True)
    assert list(collect(result)) == [x * x for x in range(12)]


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(WRAPPERS))
def test_tqdm_obj_and_pool_obj(backend):
    result = WRAPPERS[backend](range(7), square, 3, disable=True)
    assert isinstance(result.tqdm_obj, tqdm.tqdm)
    assert result.tqdm_obj.total == 7
    assert isinstance(result.pool_obj, ResultIterator)
    pool = result.pool_obj.parent_obj
    assert isinstance(pool, Pool)
    assert pool.n_jobs == 3
    assert pool.use_threads is (backend == "threads")
    assert pool.exception_behaviour == "ignore"  # pqdm's default, not Pool's
    assert [r for r in result] == [x * x for x in range(7)]


# -- (c) a discarded result still runs --------------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_discarded_result_runs_every_item(pqdm, tmp_path):
    names = [f"file-{i}" for i in range(25)]
    pqdm([(name, str(tmp_path)) for name in names], touch, 2, argument_type="args", disable=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)


_UNUSED_AT_EXIT = """
import os
import sys

from mtasklite_like.processes import pqdm
from mtasklite_like.threads import pqdm as thread_pqdm


def touch(name):
    with open(os.path.join(sys.argv[1], name), "w"):
        pass
    return name


if __name__ == "__main__":
    kept = pqdm(["p0", "p1", "p2"], touch, 2, disable=True)
    kept_on_threads = thread_pqdm(["t0", "t1", "t2"], touch, 2, disable=True)
    print("END", flush=True)
"""


@pytest.fixture(scope="module")
def unused_at_exit(tmp_path_factory):
    """Run a script whose results are assigned to globals and never used; return (process, files)."""
    base = tmp_path_factory.mktemp("unused_at_exit")
    out = base / "out"
    out.mkdir()
    script = base / "script.py"
    script.write_text(_UNUSED_AT_EXIT)
    proc = subprocess.run(
        [sys.executable, str(script), str(out)], cwd=base, capture_output=True, text=True, timeout=40
    )
    return proc, sorted(p.name for p in out.iterdir())


@pytest.mark.timeout(60)
def test_a_result_kept_in_a_variable_and_never_used_does_not_run_at_exit(unused_at_exit):
    proc, files = unused_at_exit
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "END"
    assert files == []


@pytest.mark.timeout(60)
def test_a_result_kept_in_a_variable_and_never_used_exits_silently(unused_at_exit):
    proc, _ = unused_at_exit
    assert "Exception ignored" not in proc.stderr, proc.stderr


# -- (d) keyword arguments: pool, executor and bar options ---------------------------------------------


@pytest.mark.timeout(30)
def test_pool_options_reach_the_pool(pqdm):
    result = pqdm(range(30), square, 2, chunk_size=3, chunk_prefill_ratio=1, is_unordered=True,
                  join_timeout=1.5, disable=True)
    pool = result.pool_obj.parent_obj
    assert pool.chunk_size == 3
    assert pool.chunk_prefill_ratio == 1
    assert pool.is_unordered is True
    assert pool.join_timeout == 1.5
    assert sorted(r for r in result) == [x * x for x in range(30)]


@pytest.mark.timeout(30)
def test_max_tasks_per_child_reaches_the_pool(pqdm):
    result = pqdm(range(20), square, 2, max_tasks_per_child=4, disable=True)
    assert result.pool_obj.parent_obj.max_tasks_per_worker == 4
    assert [r for r in result] == [x * x for x in range(20)]


@pytest.mark.timeout(30)
def test_initializer_runs_once_per_process_before_its_first_item():
    results = [
        r
        for r in mtasklite_like.processes.pqdm(range(40), report_init_in_process, 3, initializer=init_worker,
                                               initargs=("tag", 7), disable=True)
    ]
    assert [x for *_, x in results] == list(range(40))
    assert {(calls, args) for _, calls, args, _ in results} == {(1, ("tag", 7))}
    assert len({pid for pid, *_ in results} - {os.getpid()}) >= 1
    assert INIT_STATE["calls"] == 0  # not run in the caller


@pytest.mark.timeout(30)
def test_initializer_runs_once_per_thread_before_its_first_item():
    INIT_THREADS.clear()
    results = [
        r
        for r in mtasklite_like.threads.pqdm(range(40), report_init_in_thread, 3, initializer=init_worker,
                                             initargs=("tag", 8), disable=True)
    ]
    assert [x for *_, x in results] == list(range(40))
    assert {(calls, args) for _, calls, args, _ in results} == {(1, ("tag", 8))}
    assert len(INIT_THREADS) == 3 == len(set(INIT_THREADS))  # one call in each of the 3 workers
    assert {tid for tid, *_ in results} <= set(INIT_THREADS)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_mp_context_sets_the_start_method(method, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "START_MARK", "changed in the parent")
    result = mtasklite_like.processes.pqdm(
        range(4), read_start_mark, 2, mp_context=multiprocess.get_context(method), disable=True
    )
    assert result.pool_obj.parent_obj.start_method == method
    marks = {r for r in result}
    # a forked worker is a copy of the parent; a spawned one imported this module afresh
    assert marks == {"changed in the parent" if method == "fork" else "as imported"}


@pytest.mark.timeout(10)
def test_mp_context_of_the_standard_library_is_understood_too():
    result = mtasklite_like.processes.pqdm(
        [], identity, 2, mp_context=multiprocessing.get_context("spawn"), disable=True
    )
    assert result.pool_obj.parent_obj.start_method == "spawn"
    assert [r for r in result] == []


@pytest.mark.timeout(30)
def test_tqdm_options_reach_the_bar(pqdm):
    bar_file = io.StringIO()
    result = pqdm(range(5), square, 2, desc="squaring", unit="sq", leave=False, position=2, file=bar_file)
    bar = result.tqdm_obj
    assert (bar.desc, bar.unit, bar.leave, abs(bar.pos)) == ("squaring", "sq", False, 2)
    assert [r for r in result] == [0, 1, 4, 9, 16]
    assert "squaring" in bar_file.getvalue() and "sq/s" in bar_file.getvalue()

    silent_file = io.StringIO()
    silent = pqdm(range(5), square, 2, disable=True, file=silent_file)
    assert silent.tqdm_obj.disable is True
    assert [r for r in silent] == [0, 1, 4, 9, 16]
    assert silent_file.getvalue() == ""


@pytest.mark.timeout(10)
def test_an_unknown_keyword_fails_at_once_and_lists_the_valid_ones(pqdm):
    pulled: list[int] = []
    with pytest.raises(TypeError) as info:
        pqdm(_items_counting(10, pulled), square, 2, chunksize=4, disable=True)
    message = str(info.value)
    assert "'chunksize'" in message
    for valid in ("chunk_size", "is_unordered", "join_timeout", "mp_context", "initializer", "desc", "unit",
                  "leave", "position", "disable", "total"):
        assert valid in message
    assert pulled == []


@pytest.mark.timeout(10)
def test_naming_n_jobs_again_is_a_type_error(pqdm):
    with pytest.raises(TypeError):
        pqdm(range(4), square, 2, disable=True, n_jobs=3)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("backend", sorted(WRAPPERS))
@pytest.mark.parametrize("use_threads", [True, False])
def test_use_threads_picks_the_workers_whatever_the_module(backend, use_threads):
    # mtasklite's processes.pqdm and threads.pqdm are partials of one function with use_threads
    # bound by keyword, so passing it again overrides the module's choice.
    result = WRAPPERS[backend](range(6), report_worker_kind, 2, use_threads=use_threads, disable=True)
    assert result.pool_obj.parent_obj.use_threads is use_threads
    kinds = {kind for kind, _ in (r for r in result)}
    assert kinds == {"thread" if use_threads else "process"}


@pytest.mark.timeout(10)
def test_the_ray_wrapper_refuses_use_threads():
    import mtasklite_like.ray

    with pytest.raises(TypeError, match="use_threads"):
        mtasklite_like.ray.pqdm(range(3), square, 2, use_threads=True, disable=True)


@pytest.mark.timeout(10)
def test_each_modules_pqdm_is_a_function_of_its_own():
    # One definition per shape (mtasklite_like._dropins.pqdm), made into each module's function:
    # what help(), inspect and the API reference see is the module's own.
    import inspect

    import mtasklite_like.pqdm.processes
    import mtasklite_like.pqdm.threads
    import mtasklite_like.ray  # noqa: F401 - read through sys.modules below

    lazy = {"processes": False, "threads": True, "ray": None}
    for name, use_threads in lazy.items():
        module = f"mtasklite_like.{name}"
        function = sys.modules[module].pqdm
        assert inspect.isfunction(function)
        assert (function.__module__, function.__qualname__) == (module, "pqdm")
        parameters = inspect.signature(function).parameters
        assert list(parameters)[:3] == ["input_iterable", "worker_or_worker_arr", "n_jobs"]
        assert parameters["n_jobs"].default is None and parameters["bounded"].default is True
        if use_threads is None:
            assert "use_threads" not in parameters
        else:
            assert parameters["use_threads"].default is use_threads
            assert parameters["use_threads"].kind is inspect.Parameter.KEYWORD_ONLY
        workers = "Ray actors" if name == "ray" else name
        assert f"over ``input_iterable`` on {workers}, lazily" in function.__doc__.splitlines()[0]
    for name in ("processes", "threads"):
        module = f"mtasklite_like.pqdm.{name}"
        function = sys.modules[module].pqdm
        assert (function.__module__, function.__qualname__) == (module, "pqdm")
        parameters = inspect.signature(function).parameters
        assert list(parameters)[:3] == ["array", "function", "n_jobs"]
        assert parameters["n_jobs"].default is inspect.Parameter.empty
        assert function.__doc__.startswith(f"Run ``function`` over ``array`` on {name}; return the list")
        assert f"import it from ``mtasklite_like.{name}``" in function.__doc__
        # A wrong call is told in the module's terms.
        with pytest.raises(TypeError, match=r"pqdm.*n_jobs"):
            function(range(3), square)
        with pytest.raises(TypeError, match=r"pqdm.*too many positional"):
            function(range(3), square, 2, None, False, "ignore", tqdm.tqdm, "one too many")


@pytest.mark.timeout(30)
@pytest.mark.parametrize(
    ("argument_type", "items", "expected"),
    [
        (None, [(1, 2)], [(((1, 2),), {})]),
        ("direct", [(1, 2)], [(((1, 2),), {})]),
        ("single_arg", [(1, 2)], [(((1, 2),), {})]),
        (ArgumentPassing.AS_SINGLE_ARG, [7], [((7,), {})]),
        ("args", [(1, 2), [3]], [((1, 2), {}), ((3,), {})]),
        (ArgumentPassing.AS_ARGS, [(1, 2)], [((1, 2), {})]),
        ("kwargs", [{"a": 1, "b": 2}], [((), {"a": 1, "b": 2})]),
        (ArgumentPassing.AS_KWARGS, [{}], [((), {})]),
    ],
)
def test_argument_types(pqdm, argument_type, items, expected):
    assert [r for r in pqdm(items, shape, 2, argument_type=argument_type, disable=True)] == expected


@pytest.mark.timeout(10)
def test_an_unknown_argument_type_is_a_value_error(pqdm):
    with pytest.raises(ValueError, match="argument_type"):
        pqdm(range(3), shape, 2, argument_type="positional", disable=True)


@pytest.mark.timeout(30)
@pytest.mark.parametrize("spelling", ["exception_behaviour", "exception_behavior"])
@pytest.mark.parametrize("mode", ["ignore", "immediate", "deferred"])
def test_both_spellings_of_exception_behaviour(pqdm, spelling, mode):
    result = pqdm(range(8), fail_on_multiples_of_3, 2, disable=True, **{spelling: mode})
    assert result.pool_obj.parent_obj.exception_behavior == mode
    seen = []
    if mode == "ignore":
        seen = [r for r in result]
    elif mode == "immediate":
        with pytest.raises(ValueError):
            for r in result:
                seen.append(r)
        assert seen == []  # item 0 fails first
    else:
        with pytest.raises(DeferredExceptions) as info:
            for r in result:
                seen.append(r)
        assert [e.args for e in info.value.args] == [(0,), (3,), (6,)]
        assert info.value.exceptions == list(info.value.args)
    if mode != "immediate":
        # in place of the failed items: the exception objects, then (deferred) the raise at the end
        assert [r.args if is_exception(r) else r for r in seen] == [(0,), 1, 2, (3,), 4, 5, (6,), 7]


@pytest.mark.timeout(30)
def test_immediate_yields_what_came_before_the_failure_then_raises(pqdm):
    seen = []
    with pytest.raises(ValueError) as info:
        for r in pqdm(range(1, 30), fail_on_multiples_of_3, 2, exception_behaviour="immediate", disable=True):
            seen.append(r)
    # every result before the first failure in input order, then that failure
    assert info.value.args == (3,)
    assert seen == [1, 2]


@pytest.mark.timeout(10)
def test_the_two_spellings_must_agree(pqdm):
    with pytest.raises(ValueError, match="disagree"):
        pqdm(range(3), square, 2, exception_behaviour="deferred", exception_behavior="immediate")


@pytest.mark.timeout(30)
def test_process_exceptions_carry_the_remote_traceback_in_every_mode():
    pqdm = mtasklite_like.processes.pqdm

    def check(exc):
        assert isinstance(exc, ValueError)
        assert isinstance(exc.__cause__, RemoteTraceback)
        assert "fail_on_multiples_of_3" in str(exc.__cause__)

    ignored = [r for r in pqdm(range(7), fail_on_multiples_of_3, 2, disable=True) if is_exception(r)]
    assert len(ignored) == 3
    for exc in ignored:
        check(exc)
    with pytest.raises(ValueError) as info:
        for _ in pqdm(range(7), fail_on_multiples_of_3, 2, exception_behaviour="immediate", disable=True):
            pass
    check(info.value)
    with pytest.raises(DeferredExceptions) as deferred:
        for _ in pqdm(range(7), fail_on_multiples_of_3, 2, exception_behaviour="deferred", disable=True):
            pass
    assert len(deferred.value.args) == 3
    for exc in deferred.value.args:
        check(exc)


# -- (e) the progress bar -----------------------------------------------------------------------------


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_the_bar_counts_to_the_end(pqdm, sized):
    bar_file = io.StringIO()
    result = pqdm(list(range(50)) if sized else iter(range(50)), square, 2, file=bar_file)
    assert [r for r in result] == [x * x for x in range(50)]
    bar = result.tqdm_obj
    assert bar.n == 50
    assert bar.total == (50 if sized else None)
    assert ("50/50" if sized else "50it") in bar_file.getvalue()


@pytest.mark.timeout(30)
def test_the_total_keyword_is_respected(pqdm):
    bar_file = io.StringIO()
    result = pqdm(iter(range(40)), square, 2, total=40, file=bar_file)
    assert result.tqdm_obj.total == 40
    assert len([r for r in result]) == 40
    assert result.tqdm_obj.n == 40
    assert "40/40" in bar_file.getvalue()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("n_jobs", [1, 3])
def test_under_ignore_the_bar_goes_on_and_shows_the_failures(pqdm, n_jobs):
    bar_file = io.StringIO()
    result = pqdm(range(30), fail_on_multiples_of_3, n_jobs, file=bar_file)
    results = [r for r in result]
    assert len(results) == 30 and sum(map(is_exception, results)) == 10
    assert result.tqdm_obj.n == 30
    assert "failed=10" in result.tqdm_obj.postfix
    assert "30/30" in bar_file.getvalue() and "failed=10" in bar_file.getvalue()


@pytest.mark.timeout(30)
@pytest.mark.parametrize("sized", [True, False])
def test_a_custom_tqdm_class_is_used_and_counts_items_not_batches(pqdm, sized):
    consumed = [0]

    class RecordingBar(tqdm.tqdm):
        def __init__(self, *args, **kwargs):
            self.updates: list[tuple[int, int]] = []
            super().__init__(*args, **kwargs)

        def update(self, n=1):
            self.updates.append((n, consumed[0]))
            return super().update(n)

    n_items = 5000
    result = pqdm(range(n_items) if sized else iter(range(n_items)), identity, 2, tqdm_class=RecordingBar,
                  file=io.StringIO())
    assert isinstance(result.tqdm_obj, RecordingBar)
    for expected, r in enumerate(result):
        assert r == expected
        consumed[0] += 1
    bar = result.tqdm_obj
    assert bar.n == n_items
    assert sum(n for n, _ in bar.updates) == n_items
    previous = 0
    for n, consumed_then in bar.updates:
        # An update never counts more than the items handed over since the previous one (the item
        # being handed over when the update happens counts as handed over).
        assert 0 < n <= consumed_then - previous + 1
        previous += n


# -- (f) bounded read-ahead on a huge generator -----------------------------------------------------------


@pytest.mark.timeout(60)
def test_bounded_keeps_read_ahead_small_on_two_million_items():
    """Item 0 is slow, so in ordered mode every later result waits behind it: only the read-ahead
    window stops the other workers from reading the whole input meanwhile (with ``bounded=False``
    they read all 2 million items before item 0 is done)."""
    n_items = 2_000_000
    pulled = 0

    def items():
        nonlocal pulled
        for i in range(n_items):
            pulled += 1
            yield i

    consumed = 0
    most_ahead = 0
    for r in mtasklite_like.processes.pqdm(items(), slow_first_item, 4, bounded=True, disable=True):
        if r != consumed:
            pytest.fail(f"result {r} at position {consumed}")
        consumed += 1
        ahead = pulled - consumed
        if ahead > most_ahead:
            most_ahead = ahead
    assert consumed == n_items
    assert most_ahead <= 300_000


class _TimedWrites(io.StringIO):
    """A bar output that records when the bar redraws."""

    def __init__(self):
        super().__init__()
        self.times: list[float] = []

    def write(self, s):
        self.times.append(time.monotonic())
        return super().write(s)


@pytest.mark.timeout(30)
def test_bar_refreshes_while_waiting_on_slow_tasks():
    # Two 1.2 s tasks: no result arrives for 1.2 s, yet the bar's clock must keep moving.
    out = _TimedWrites()
    from mtasklite_like.threads import pqdm as threads_pqdm

    assert list(threads_pqdm([1.2, 1.2], time.sleep, 2, file=out)) == [None, None]
    gaps = [b - a for a, b in itertools.pairwise(out.times)]
    assert out.times[-1] - out.times[0] > 1.0
    assert max(gaps) < 0.45  # refreshed about every 0.2 s


@pytest.mark.timeout(30)
def test_rich_progress_bar_class():
    rich_console = pytest.importorskip("rich.console")
    import warnings

    import tqdm.rich

    from mtasklite_like.threads import pqdm as threads_pqdm

    console = rich_console.Console(file=io.StringIO(), force_terminal=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tqdm.rich announces itself as experimental
        result = threads_pqdm(
            range(50), abs, 2, tqdm_class=tqdm.rich.tqdm, desc="rich", options={"console": console}
        )
        assert list(result) == list(range(50))
    assert type(result.tqdm_obj) is tqdm.rich.tqdm
    assert (result.tqdm_obj.n, result.tqdm_obj.total) == (50, 50)
    with pytest.raises(TypeError, match="unknown keyword argument 'colr'"):
        threads_pqdm(range(3), abs, 2, tqdm_class=tqdm.rich.tqdm, colr=1)


# -- (e) errors of a result nobody holds ----------------------------------------------------------------


@pytest.mark.timeout(30)
def test_a_bare_statement_runs_when_dropped_and_reports_its_failure_as_a_warning(pqdm):
    # mtasklite's pqdm is lazy: the call returns before anything runs, whatever the caller does with
    # the result. A result dropped untouched runs as it is dropped; its failure can only be a
    # warning, which names the eager pqdm of mtasklite_like.pqdm for those who want it raised.
    with pytest.warns(RuntimeWarning, match=r"ValueError.*mtasklite_like\.pqdm\.processes"):
        pqdm(range(10), fail_on_multiples_of_3, 2, exception_behaviour="immediate", disable=True)


@pytest.mark.timeout(30)
def test_an_unused_result_that_fails_warns_loudly(pqdm):
    import gc

    result = pqdm(range(10), fail_on_multiples_of_3, 2, exception_behaviour="immediate", disable=True)
    with pytest.warns(RuntimeWarning, match="never used failed.*ValueError"):
        del result
        gc.collect()
