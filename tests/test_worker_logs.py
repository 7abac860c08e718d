"""Workers' ``logging`` records and warnings in the caller (``forward_logs``, ``mtasklite_like._logs``).

Records from process workers, thread workers, the caller itself (``n_jobs=1``) and coroutine workers
reach the caller's handlers once each, with ``worker`` and ``item``, under the caller's levels and
filters; an item that fails, is retried, or kills its worker keeps its records; warnings of process
workers are issued again in the caller, once; and a progress bar stays whole while records are
written under it.
"""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import re
import signal
import subprocess
import sys
import warnings
from collections import defaultdict
from pathlib import Path

import pytest

from mtasklite_like import Pool, WorkerDiedError

pytestmark = pytest.mark.timeout(60)

LOGGER = "tests.worker_logs"
log = logging.getLogger(LOGGER)
ROOT = Path(__file__).resolve().parents[1]


class Caught(logging.Handler):
    """Keeps the records it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def of(self, prefix: str) -> list[logging.LogRecord]:
        return [r for r in self.records if r.getMessage().startswith(prefix)]


@pytest.fixture
def caught():
    """A handler on the test logger, which is at INFO in the caller."""
    handler = Caught()
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    try:
        yield handler
    finally:
        log.removeHandler(handler)
        log.setLevel(level)


# -- what the workers run ------------------------------------------------------------------------------


def log_item(x: int) -> int:
    log.info("item %s", x)
    log.debug("hidden %s", x)
    return x


async def log_item_async(x: int) -> int:
    await asyncio.sleep(0.001 * (x % 3))  # items interleave on the loop
    log.info("item %s", x)
    await asyncio.sleep(0)
    log.debug("hidden %s", x)
    return x


def log_then_fail(x: int) -> int:
    log.info("item %s", x)
    if x % 5 == 0:
        try:
            raise ValueError(f"bad {x}")
        except ValueError:
            log.exception("failed %s", x)
            raise
    return x


def fail_first_attempt(directory: str, x: int) -> int:
    log.info("attempt %s", x)
    marker = os.path.join(directory, str(x))
    if not os.path.exists(marker):
        open(marker, "w").close()
        raise RuntimeError(f"first attempt at {x}")
    return x


def log_then_die(x: int) -> int:
    log.info("before %s", x)
    if x == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return x


def warn_item(x: int) -> int:
    warnings.warn(f"careful with {x}", RuntimeWarning, stacklevel=1)
    return x


def log_extra(x: int) -> int:
    log.info("with extras %s", x, extra={"number": x, "thing": object(), "label": f"L{x}"})
    return x


def shout(line: str) -> str:
    """For the command line: a warning record per line (no handler there: logging's last resort)."""
    logging.getLogger("tests.shout").warning("SHOUT %s", line.strip())
    return line.upper()


def _number(record: logging.LogRecord) -> int:
    return int(record.getMessage().split()[-1])


# -- records reach the caller ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fn, options",
    [
        (log_item, {"n_jobs": 2}),
        (log_item, {"n_jobs": 2, "chunk_size": 7}),
        (log_item, {"n_jobs": 3, "use_threads": True, "chunk_size": 5}),
        (log_item, {"n_jobs": 1}),
        (log_item_async, {"n_jobs": 2, "concurrency": 4}),
        (log_item_async, {"n_jobs": 2, "concurrency": 4, "use_threads": True}),
    ],
    ids=["processes", "processes-batches", "threads", "inline", "coroutines-processes", "coroutines-threads"],
)
def test_records_reach_the_caller_once_with_worker_and_item(caught, fn, options):
    n = 40
    assert list(Pool(fn, **options)(range(n))) == list(range(n))
    records = caught.of("item")
    assert sorted(_number(r) for r in records) == list(range(n))  # each once: no copy in a worker
    assert all(r.item == _number(r) for r in records)
    assert {r.worker for r in records} <= set(range(options["n_jobs"]))
    assert caught.of("hidden") == []  # DEBUG, and the caller's logger is at INFO
    if not options.get("concurrency"):
        by_worker = defaultdict(list)
        for r in records:
            by_worker[r.worker].append(r.item)
        assert all(items == sorted(items) for items in by_worker.values()), by_worker


def test_the_callers_level_and_filter_apply_to_workers_records(caught):
    with Pool(log_item, 2) as pool:
        assert list(pool(range(10))) == list(range(10))
        assert len(caught.of("item")) == 10
        # The workers are up, with the level and filters they started with: the caller decides.
        log.addFilter(lambda record: _number(record) % 2 == 0)
        try:
            assert list(pool(range(10, 20))) == list(range(10, 20))
            assert sorted(_number(r) for r in caught.of("item")[10:]) == list(range(10, 20, 2))
            log.setLevel(logging.WARNING)
            assert list(pool(range(20, 30))) == list(range(20, 30))
            assert len(caught.of("item")) == 15
        finally:
            log.filters.clear()


def test_a_spawned_worker_takes_the_callers_levels(caught):
    """A spawned worker starts with logging's defaults (root at WARNING): the caller's levels
    are taken over, so its INFO and DEBUG records are sent when the caller's logger wants them."""
    log.setLevel(logging.DEBUG)
    assert list(Pool(log_item, 2, start_method="spawn")(range(6))) == list(range(6))
    assert sorted(_number(r) for r in caught.of("item")) == list(range(6))
    assert sorted(r.item for r in caught.of("hidden")) == list(range(6))


def test_a_logger_that_does_not_propagate_forwards_too(caught):
    log.propagate = False
    try:
        assert list(Pool(log_item, 2)(range(8))) == list(range(8))
    finally:
        log.propagate = True
    assert sorted(_number(r) for r in caught.of("item")) == list(range(8))


def test_a_format_naming_worker_and_item_works_for_the_callers_records_too(caught):
    stream = io.StringIO()
    console = logging.StreamHandler(stream)
    console.setFormatter(logging.Formatter("%(worker)s %(item)s %(message)s"))
    log.addHandler(console)
    try:
        pool = Pool(log_item, 2)
        log.info("from the caller")
        assert list(pool(range(4))) == list(range(4))
    finally:
        log.removeHandler(console)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "None None from the caller"
    assert sorted(lines[1:]) == sorted(f"{r.worker} {r.item} item {r.item}" for r in caught.of("item"))
    assert len(lines) == 5


def test_added_attributes_travel_as_plain_values(caught):
    assert list(Pool(log_extra, 2)(range(3))) == list(range(3))
    records = sorted(caught.of("with extras"), key=_number)
    assert [(r.number, r.label) for r in records] == [(0, "L0"), (1, "L1"), (2, "L2")]
    assert all(r.thing.startswith("<object object at") for r in records)  # its str(), not the object


def test_forward_logs_false_leaves_the_workers_logging_alone(caught):
    pool = Pool(log_item, 2, forward_logs=False)
    assert pool.forward_logs is False
    assert list(pool(range(10))) == list(range(10))
    assert caught.records == []


# -- failures, retries, deaths -----------------------------------------------------------------------------


def test_a_task_that_logs_then_raises_keeps_its_records(caught):
    out = list(Pool(log_then_fail, 2, exception_behavior="ignore")(range(12)))
    assert [isinstance(r, ValueError) for r in out] == [x % 5 == 0 for x in range(12)]
    assert sorted(_number(r) for r in caught.of("item")) == list(range(12))
    failed = sorted(caught.of("failed"), key=_number)
    assert [r.item for r in failed] == [0, 5, 10]
    assert all(f"ValueError: bad {r.item}" in r.exc_text for r in failed)
    assert all(r.exc_info is None and r.args is None for r in failed)


def test_each_attempt_of_a_retried_item_names_the_same_item(caught, tmp_path):
    fn = functools.partial(fail_first_attempt, str(tmp_path))
    assert list(Pool(fn, 2, retries=1)(range(6))) == list(range(6))
    attempts = caught.of("attempt")
    assert sorted(_number(r) for r in attempts) == sorted([*range(6), *range(6)])
    assert all(r.item == _number(r) for r in attempts)


def test_the_record_before_a_worker_is_killed_arrives(caught):
    out = list(Pool(log_then_die, 2, chunk_size=1, on_worker_death="restart", exception_behavior="ignore")(
        range(8)
    ))
    assert isinstance(out[3], WorkerDiedError)
    assert [x for k, x in enumerate(out) if k != 3] == [0, 1, 2, 4, 5, 6, 7]
    before = caught.of("before")
    assert [r.item for r in before if _number(r) == 3] == [3]  # sent before the kill, exactly once
    assert {_number(r) for r in before} == set(range(8))  # the run went on, the restarted worker too
    assert all(r.item == _number(r) for r in before)


# -- warnings ------------------------------------------------------------------------------------------------


def test_a_warning_in_a_process_worker_is_issued_once_in_the_caller(capfd):
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert list(Pool(warn_item, 2)(range(6))) == list(range(6))
    ours = [w for w in seen if issubclass(w.category, RuntimeWarning)]
    for x in range(6):
        pattern = rf"careful with {x} \(worker [01], item {x}\)"
        matching = [w for w in ours if re.fullmatch(pattern, str(w.message))]
        assert len(matching) == 1, [str(w.message) for w in ours]
    assert len(ours) == 6
    assert all(w.filename == __file__ for w in ours)
    assert "careful with" not in capfd.readouterr().err  # not printed in a worker as well


# -- progress bars -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", ["mtasklite_like.processes", "mtasklite_like.pqdm.threads"])
def test_records_logged_under_a_pqdm_bar_are_written_above_it(capsys, module):
    import importlib

    pqdm = importlib.import_module(module).pqdm
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter("LOGGED %(item)s"))
    log.addHandler(console)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        assert list(pqdm(range(30), log_item, n_jobs=2, mininterval=0)) == list(range(30))
        assert log.handlers[-1] is console  # put back once the bar closed
    finally:
        log.removeHandler(console)
        log.setLevel(level)
    err = capsys.readouterr().err
    starts = [m.start() for m in re.finditer("LOGGED", err)]
    assert len(starts) == 30
    # Each record begins a line: the bar was cleared before it was written, and drawn again after.
    assert all(k == 0 or err[k - 1] in "\r\n" for k in starts), err
    assert "100%" in err


def test_records_logged_under_the_command_lines_bar_are_written_above_it(tmp_path):
    source = tmp_path / "in.txt"
    source.write_text("".join(f"line {i}\n" for i in range(20)))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    result = subprocess.run(
        [sys.executable, "-m", "mtasklite_like", "map", "tests.test_worker_logs:shout", str(source),
         "--n-jobs", "2"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines() == [f"LINE {i}" for i in range(20)]
    err = result.stderr
    starts = [m.start() for m in re.finditer("SHOUT", err)]
    assert len(starts) == 20, err
    assert all(k == 0 or err[k - 1] in "\r\n" for k in starts), err


def warn_from_generated_code(x: int) -> int:
    # A warning whose file is no module's (code made at run time, a notebook cell): no module name.
    warnings.warn_explicit(f"generated {x}", RuntimeWarning, "<generated>", 1)
    return x


def test_a_warning_from_code_of_no_module_is_issued_in_the_caller_too():
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        assert list(Pool(warn_from_generated_code, 2)(range(3))) == [0, 1, 2]
    texts = sorted(str(w.message) for w in seen if issubclass(w.category, RuntimeWarning))
    assert [re.sub(r"worker \d", "worker W", t) for t in texts] == [
        f"generated {x} (worker W, item {x})" for x in range(3)
    ]
    assert {w.filename for w in seen if issubclass(w.category, RuntimeWarning)} == {"<generated>"}
