"""One configuration object per pool, and no layer loses an option of it.

``PoolConfig`` holds every option of ``Pool``; layers that run a pool for the user (the journal,
the pqdm wrappers, map-reduce, mp_lock, the command line, the ``multiprocessing`` and mmengine
drop-ins, the async path) must hand the engine a pool whose configuration carries every option
the user gave. Each test below catches the configuration of the pool a run actually starts (at
the engine's entry, before any worker starts) and compares it, field by field, with the one
``Pool(...)`` builds from the same options.
"""

from __future__ import annotations

import dataclasses
import inspect
import warnings
from typing import Any

import pytest

from mtasklite_like import Pool
from mtasklite_like._backends import BackendOptions, register_backend
from mtasklite_like._engine import results as results_module
from mtasklite_like._options import PoolConfig

# task_timeout with chunk_size: a warning that says chunk_size is ignored; all options are set here
pytestmark = pytest.mark.filterwarnings("ignore:with task_timeout:UserWarning")


class Captured(Exception):
    """Raised by the spy as a run starts: nothing runs, the configuration is kept."""


def square(x: int) -> int:
    return x * x


def add(a: int, b: int) -> int:
    return a + b


async def async_square(x: int) -> int:
    return x * x


def init(*args: Any) -> None:
    pass


def on_save(results: list[Any], items: list[Any]) -> None:
    pass


def key_of(item: Any) -> Any:
    return repr(item)


def _check_options(options: BackendOptions | None, specs: list[Any]) -> None:
    pass


# A backend that takes options (address, backend_options) and is never started here.
register_backend("config-probe", lambda specs, start_method, options=None: None, _check_options)

#: a value other than the default for every option of Pool (the worker aside)
NONDEFAULT: dict[str, Any] = {
    "n_jobs": 3,
    "argument_type": "args",
    "exception_behavior": "deferred",
    "bounded": False,
    "chunk_size": 5,
    "chunk_prefill_ratio": 3,
    "is_unordered": True,
    "use_threads": True,
    "task_timeout": 30.0,
    "join_timeout": 2.5,
    "exception_behaviour": "ignore",
    "start_method": "spawn",
    "worker_env": {"PROBE": "1"},
    "initializer": init,
    "initargs": (7,),
    "max_tasks_per_worker": 50,
    "on_worker_death": "restart",
    "retries": 2,
    "init_timeout": 40.0,
    "backend": "config-probe",
    "backend_options": {"slots": 2},
    "address": "probe://here",
    "input_thread": True,
    "memory_budget": 1 << 20,
    "journal": "RUN_DIR",
    "journal_key": key_of,
    "journal_fresh": True,
    "journal_keep_failures": True,
    "journal_results": False,
    "save_callback": on_save,
    "save_batch": 7,
    "concurrency": 5,
    "max_per_second": 1000.0,
    "max_worker_memory": "1GiB",
    "kill_worker_memory": 3 << 30,
    "min_available_memory": "1%",
    "memory_pause_timeout": 60.0,
    "forward_logs": False,
}

#: one consistent set of non-default options for a plain function on the probe backend
#: (use_threads and start_method are the processes/threads backends'; concurrency is for
#: coroutine workers; each is covered by its own test below)
FULL: dict[str, Any] = {
    k: v for k, v in NONDEFAULT.items()
    if k not in ("use_threads", "start_method", "exception_behaviour", "concurrency", "argument_type")
}


@pytest.fixture
def caught(monkeypatch: pytest.MonkeyPatch) -> list[PoolConfig]:
    """The configurations of the pools whose runs start (a run stops at once with Captured)."""
    seen: list[PoolConfig] = []

    def spy(self: Any, pool: Any, options: Any, workers: Any, iterable: Any, sink: Any = None) -> None:
        seen.append(pool.config)
        raise Captured

    monkeypatch.setattr(results_module.ResultIterator, "__init__", spy)
    return seen


def _options(tmp_path: Any, **changes: Any) -> dict[str, Any]:
    if changes.get("journal") is _DROP:  # a run with no journal layer at all
        changes = {**dict.fromkeys(("journal_key", "journal_fresh", "journal_keep_failures",
                                    "journal_results", "save_callback", "save_batch"), _DROP), **changes}
    options = {**FULL, **changes}
    if options.get("journal") == "RUN_DIR":
        options["journal"] = str(tmp_path / "run")
    return {k: v for k, v in options.items() if v is not _DROP}


_DROP = object()


def _direct(worker: Any, options: dict[str, Any]) -> PoolConfig:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # task_timeout with chunk_size: a warning, not an error
        return Pool(worker, **options).config


def _differences(got: PoolConfig, want: PoolConfig, allowed: set[str] = frozenset()) -> list[str]:  # type: ignore[assignment]
    out = []
    for f in dataclasses.fields(PoolConfig):
        if f.name in allowed or f.name == "workers":
            continue
        if f.name == "start_gate":  # one per pool: the same kind, not the same object
            if (got.start_gate is None) != (want.start_gate is None):
                out.append(f"start_gate: {got.start_gate!r} vs {want.start_gate!r}")
            continue
        if getattr(got, f.name) != getattr(want, f.name):
            out.append(f"{f.name}: {getattr(got, f.name)!r} != {getattr(want, f.name)!r}")
    return out


# -- the configuration object itself -------------------------------------------------------------------


def test_every_pool_option_is_in_the_configuration() -> None:
    """Pool's signature and PoolConfig.build's are one to one, and each option changes the
    configuration: an option added to Pool and forgotten by the configuration fails here."""
    pool_params = [p for p in inspect.signature(Pool.__init__).parameters if p != "self"]
    build_params = [p for p in inspect.signature(PoolConfig.build).parameters if p not in ("stacklevel",)]
    assert pool_params == build_params
    assert set(NONDEFAULT) == set(pool_params) - {"worker_or_worker_arr"}
    base = Pool(square, 2).config
    for name, value in NONDEFAULT.items():
        worker: Any = square
        extra: dict[str, Any] = {name: value}
        if name == "concurrency":
            worker = async_square
        elif name == "backend_options" or name == "address":
            extra["backend"] = "config-probe"
        elif name in ("journal_key", "journal_fresh", "journal_keep_failures", "journal_results",
                      "save_callback", "save_batch"):
            extra["journal"] = "/tmp/never-created"
        elif name == "journal":
            extra[name] = "/tmp/never-created"
        if name == "n_jobs":
            extra[name] = 3
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            config = Pool(worker, **({"n_jobs": 2} | extra)).config
        assert _differences(config, base), f"{name}={value!r} left no trace in the configuration"


def test_a_derived_configuration_is_checked_again() -> None:
    config = Pool(square, 2).config
    with pytest.raises(ValueError, match="retries must be a whole number"):
        dataclasses.replace(config, retries=-1)
    with pytest.raises(ValueError, match="concurrency"):
        dataclasses.replace(config, concurrency=4)  # a plain function runs one item at a time
    derived = dataclasses.replace(config, retries=3)
    assert derived.retries == 3 and config.retries == 0
    pool = Pool.from_config(derived)
    assert pool.retries == 3 and pool.config is derived


# -- layers -------------------------------------------------------------------------------------------


def test_plain_run_keeps_every_option(caught: list[PoolConfig], tmp_path: Any) -> None:
    options = _options(tmp_path, journal=_DROP)
    with pytest.raises(Captured):
        Pool(square, **options)([1, 2, 3])
    assert _differences(caught[0], _direct(square, options)) == []


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
def test_journaled_run_keeps_every_option(caught: list[PoolConfig], tmp_path: Any, unordered: bool) -> None:
    """An unordered journaled run used to rebuild its pool option by option and lose six of them
    (backend, max_per_second, memory_budget, input_thread, backend_options, address)."""
    options = _options(tmp_path, is_unordered=unordered)
    with pytest.raises(Captured):
        Pool(square, **options)(["a", "b", "c"])
    # The journal is a sink of the user's own pool's run: nothing is rebuilt.
    assert _differences(caught[-1], _direct(square, options)) == []


def test_async_journaled_run_keeps_concurrency(caught: list[PoolConfig], tmp_path: Any) -> None:
    options = _options(tmp_path, is_unordered=False, concurrency=5)
    with pytest.raises(Captured):
        Pool(async_square, **options)(["a", "b"])
    assert caught[-1].concurrency == 5
    assert _differences(caught[-1], _direct(async_square, options)) == []


def test_async_for_keeps_every_option(caught: list[PoolConfig], tmp_path: Any) -> None:
    import asyncio

    options = _options(tmp_path, journal=_DROP, concurrency=5)

    async def main() -> None:
        async def items() -> Any:
            for i in range(3):
                yield i

        async for _ in Pool(async_square, **options)(items()):
            pass

    with pytest.raises(Captured):
        asyncio.run(main())
    assert _differences(caught[-1], _direct(async_square, options)) == []


@pytest.mark.parametrize(
    "module", ["mtasklite_like.processes", "mtasklite_like.threads", "mtasklite_like.pqdm.processes",
               "mtasklite_like.pqdm.threads"]
)
def test_pqdm_wrappers_keep_every_option(caught: list[PoolConfig], tmp_path: Any, module: str) -> None:
    import importlib

    pqdm = importlib.import_module(module).pqdm
    # (threads share one process: the limits on workers' own memory are refused there)
    options = _options(tmp_path, journal=_DROP, backend="threads", backend_options=_DROP, address=_DROP,
                       max_worker_memory=_DROP, kill_worker_memory=_DROP)
    options.pop("n_jobs")
    with pytest.raises(Captured):
        result = pqdm([1, 2, 3], square, 3, disable=True, **options)
        list(result)
    want = _direct(square, {"n_jobs": 3, **options})
    assert _differences(caught[-1], want) == []


def test_ray_pqdm_keeps_every_option(caught: list[PoolConfig], tmp_path: Any, monkeypatch: Any) -> None:
    """The Ray wrapper names its backend; the rest is the caller's (Ray's option checker is
    replaced by the probe's, so no Ray is needed)."""
    from mtasklite_like import _backends
    from mtasklite_like.ray import pqdm

    monkeypatch.setitem(_backends._CHECKERS, "ray", _check_options)
    # (the hard ceiling watches processes on this machine: refused on Ray)
    options = _options(tmp_path, journal=_DROP, backend=_DROP, kill_worker_memory=_DROP)
    options.pop("n_jobs")
    with pytest.raises(Captured):
        list(pqdm([1, 2, 3], square, 3, disable=True, **options))
    want = _direct(square, {"n_jobs": 3, "backend": "ray", **options})
    assert caught[-1].backend == "ray"
    assert _differences(caught[-1], want) == []


def test_mapreduce_keeps_every_option(caught: list[PoolConfig], tmp_path: Any) -> None:
    from mtasklite_like.mapreduce import parallelize

    def total(values: list[int]) -> int:
        return sum(values)

    options = _options(tmp_path, journal=_DROP, is_unordered=_DROP, chunk_size=_DROP,
                       chunk_prefill_ratio=_DROP)
    options.pop("n_jobs")
    run = parallelize(total, 3, reduction=sum, **options)
    with pytest.raises(Captured):
        run(list(range(30)))
    want = caught[-1]
    direct = _direct(run._runner, {"n_jobs": 3, "chunk_size": 1, "chunk_prefill_ratio": 1, **options})
    assert _differences(want, direct) == []


def test_multiprocessing_dropin_keeps_every_option(caught: list[PoolConfig], tmp_path: Any) -> None:
    from mtasklite_like.multiprocessing import Pool as MpPool

    options = {"retries": 2, "task_timeout": 30.0, "join_timeout": 2.5, "memory_budget": 1 << 20,
               "max_per_second": 1000.0, "worker_env": {"PROBE": "1"}, "init_timeout": 40.0}
    pool = MpPool(1, init, (7,), 5, **options)
    try:
        config = pool._core.engine.config
    finally:
        pool.terminate()
    assert not config.inline_alone and not config.runs_inline  # one process is a process
    for name, value in options.items():
        want = (value,) if name == "worker_env" else value
        assert getattr(config, name) == want, name
    assert (config.initializer, config.initargs, config.max_tasks_per_worker) == (init, (7,), 5)


def test_mmengine_keeps_its_options(caught: list[PoolConfig]) -> None:
    import io

    from mtasklite_like.mmengine import track_parallel_progress

    with pytest.raises(Captured):
        track_parallel_progress(square, [1, 2, 3], 3, initializer=init, initargs=(7,), chunksize=4,
                                keep_order=False, file=io.StringIO())
    config = caught[-1]
    assert (config.num_workers, config.initializer, config.initargs) == (3, init, (7,))
    assert (config.chunk_size, config.is_unordered) == (4, True)


def test_mp_lock_keeps_its_options(caught: list[PoolConfig], tmp_path: Any) -> None:
    from mtasklite_like.mp_lock import mp_lock

    def process(data: str, shared: Any, init_values: Any) -> None:
        pass

    with pytest.raises(Captured):
        mp_lock(["a", "b"], process, None, 3, str(tmp_path / "out"), save_batch=4, verbose=False)
    config = caught[-1]
    assert config.num_workers == 3
    assert config.journal is None  # the journal is mp_lock's own layer, above the pool


def test_command_line_keeps_its_options(caught: list[PoolConfig], tmp_path: Any) -> None:
    from mtasklite_like._cli.map import main

    source = tmp_path / "in.txt"
    source.write_text("1\n2\n")
    with pytest.raises(Captured):
        main(["tests.test_config:square", str(source), "--n-jobs", "3", "--threads", "--unordered",
              "--resume", str(tmp_path / "run"), "--output", str(tmp_path / "out.txt")])
    config = caught[-1]
    assert (config.num_workers, config.backend, config.is_unordered) == (3, "threads", True)
