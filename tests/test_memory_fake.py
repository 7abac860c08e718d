"""Memory governance in the engine, on the simulated backend: deterministic, every mode, fast.

Recycling: a scripted item grows its (simulated) worker's own memory; a worker over
``max_worker_memory`` stops after that item, answers with what it ran and retires, as a process
worker does (``tests/fake_backend.py``). Pressure: the memory available is read through an
injected :class:`~mtasklite_like._memory.source.MemorySource` driven by the backend's virtual
clock, so pauses and resumptions happen at known instants.
"""

from __future__ import annotations

import warnings

import pytest

from mtasklite_like import (
    DeferredExceptions,
    MemoryPressureError,
    MemoryPressureWarning,
    Pool,
    is_exception,
)
from mtasklite_like._memory.source import MemorySource, use_source
from tests.fake_backend import FakeBackend, Step, run_step

pytestmark = pytest.mark.timeout(30)

MODES = ["immediate", "ignore", "deferred"]
MiB = 1 << 20


def _items(n: int, grows: int = 30 * MiB, failing: tuple[int, ...] = ()) -> list[Step]:
    return [Step(i, grows=grows, raises=ValueError(f"bad {i}") if i in failing else None) for i in range(n)]


# -- recycling --------------------------------------------------------------------------------------


@pytest.mark.parametrize("chunk_size", [None, 1, 3, 8])
@pytest.mark.parametrize("unordered", [False, True])
@pytest.mark.parametrize("mode", MODES)
def test_recycling_keeps_every_result_in_every_mode(chunk_size, unordered, mode):
    # 30 MiB per item against 100 MiB: each worker retires after its fourth item, in the middle
    # of a batch or at its end; what it had not run goes to other workers, free of charge.
    items = _items(40, failing=(5, 17) if mode != "immediate" else ())
    pool = Pool(run_step, 2, backend="fake", chunk_size=chunk_size, is_unordered=unordered,
                exception_behavior=mode, max_worker_memory=100 * MiB)
    out: list[object] = []
    try:
        for r in pool(items):
            out.append(r)
    except DeferredExceptions as exc:
        assert mode == "deferred" and {e.input_index for e in exc.exceptions} == {5, 17}
    backend = FakeBackend.made[-1]
    assert backend.retirements >= 40 // 4 - 1
    assert [kill for _, kill in backend.replaced] == [False] * backend.retirements
    values = [r for r in out if not is_exception(r)]
    expected = [i for i in range(40) if mode == "immediate" or i not in (5, 17)]
    assert (sorted(values) if unordered else values) == expected
    assert len(out) == 40
    # Every item ran once: nothing was lost with a worker, nothing ran twice.
    assert all(step.attempts == 1 for step in items)
    report = pool.worker_memory()
    assert sum(w.recycled for w in report) == backend.retirements
    assert all(w.killed == 0 for w in report)


def test_an_item_over_the_limit_by_itself_still_gets_its_result():
    # The worker finishes the item that takes it over (the result is kept), then retires.
    items = [Step(0, grows=500 * MiB), Step(1), Step(2, grows=500 * MiB), Step(3)]
    pool = Pool(run_step, 1, backend="fake", max_worker_memory=100 * MiB, chunk_size=4)
    assert list(pool(items)) == [0, 1, 2, 3]
    assert FakeBackend.made[-1].retirements == 2
    assert [s.attempts for s in items] == [1, 1, 1, 1]


def test_recycling_with_retries_charges_nothing():
    # Items requeued from a retiring worker are not attempts: a retry budget of 0 is enough.
    items = _items(30, grows=45 * MiB)
    out = list(Pool(run_step, 3, backend="fake", max_worker_memory=100 * MiB, chunk_size=5)(items))
    assert out == list(range(30))


# -- pressure ---------------------------------------------------------------------------------------


class ScriptedAvailable(MemorySource):
    """Memory available by the virtual clock of the newest simulated backend: ``low`` between
    ``start`` and ``end`` (virtual seconds), plenty otherwise."""

    def __init__(self, start: float, end: float, total: int = 1000 * MiB) -> None:
        self.start, self.end, self.total = start, end, total
        self.low = 10 * MiB

    def available(self) -> tuple[int, int]:
        # (also read when the pool is built, before any backend: plenty then)
        now = FakeBackend.made[-1].now if FakeBackend.made else -1.0
        short = self.start <= now < self.end
        return (self.low if short else self.total // 2), self.total


class _Timed(FakeBackend):
    """Records the virtual instant of every message sent."""

    def send(self, worker, batch_id, indices, items):
        self.sent_at = [*getattr(self, "sent_at", []), (self.now, list(indices))]
        return super().send(worker, batch_id, indices, items)


def _register_timed() -> None:
    from mtasklite_like._backends import register_backend

    register_backend("fake-timed", lambda specs, start_method: _Timed(specs))


_register_timed()


@pytest.mark.parametrize("threshold", ["10%", 100 * MiB])
@pytest.mark.parametrize("unordered", [False, True])
def test_pressure_pauses_sending_and_resumes(threshold, unordered):
    # Items take 10 ms of virtual time; memory is short from 0.1 s to 1.0 s.
    source = ScriptedAvailable(0.1, 1.0)
    items = [Step(i, seconds=0.01) for i in range(200)]
    pool = Pool(run_step, 2, backend="fake-timed", chunk_size=1, is_unordered=unordered,
                min_available_memory=threshold)
    with use_source(source), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = list(pool(items))
    assert sorted(out) == list(range(200))
    sent = FakeBackend.made[-1].sent_at
    # Nothing sent while memory is short, once the gate has looked (every 50 ms).
    during = [(t, i) for t, i in sent if 0.1 + 0.05 <= t < 1.0]
    assert during == []
    assert any(t >= 1.0 for t, _ in sent)  # resumed
    messages = [str(w.message) for w in caught if issubclass(w.category, MemoryPressureWarning)]
    assert len(messages) == 2
    assert "reading no more input" in messages[0] and "resumes" in messages[1]


def test_pressure_status_is_shown_while_paused():
    source = ScriptedAvailable(0.05, 0.5)
    seen: set[str | None] = set()
    items = [Step(i, seconds=0.01) for i in range(100)]
    results = Pool(run_step, 2, backend="fake-timed", chunk_size=1, min_available_memory="20%")(items)
    results.heartbeat = lambda: seen.add(results.status)
    with use_source(source), warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryPressureWarning)
        out = []
        for r in results:
            out.append(r)
            seen.add(results.status)
    assert out == list(range(100))
    assert any(s is not None and s.startswith("paused") for s in seen)
    assert results.status is None


def test_pressure_with_nothing_in_flight_ends_with_a_clear_error():
    # Memory never comes back: the work in flight finishes and is delivered, then the run fails
    # after memory_pause_timeout (virtual) seconds instead of waiting forever.
    source = ScriptedAvailable(0.1, float("inf"))
    items = [Step(i, seconds=0.01) for i in range(100)]
    pool = Pool(run_step, 2, backend="fake-timed", chunk_size=1, min_available_memory="10%",
                memory_pause_timeout=5)
    got = []
    with use_source(source), warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryPressureWarning)
        with pytest.raises(MemoryPressureError, match="memory_pause_timeout"):
            for r in pool(items):
                got.append(r)
    assert got == list(range(len(got))) and 5 <= len(got) < 100
    backend = FakeBackend.made[-1]
    assert backend.now >= 0.1 + 5
    assert not backend.alive  # the workers were stopped


def test_pressure_holds_retries_back_too():
    source = ScriptedAvailable(0.0, 0.5)
    items = [Step(i, seconds=0.01, raises=None) for i in range(10)]
    items[3].dies = 1
    pool = Pool(run_step, 2, backend="fake-timed", chunk_size=1, min_available_memory="10%", retries=1,
                on_worker_death="restart")
    with use_source(source), warnings.catch_warnings():
        warnings.simplefilter("ignore", MemoryPressureWarning)
        assert list(pool(items)) == list(range(10))
    assert all(t >= 0.5 for t, _ in FakeBackend.made[-1].sent_at)


def test_a_ceiling_the_backend_cannot_enforce_is_refused():
    # The simulated workers are no processes: nothing could watch them, so the run says so.
    pool = Pool(run_step, 2, backend="fake", kill_worker_memory="1GiB")
    with pytest.raises(ValueError, match="kill_worker_memory watches worker processes"):
        list(pool([Step(1)]))


# -- sizes and readings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "size"),
    [("512MiB", 512 * MiB), ("1.5 GiB", 3 << 29), ("2g", 2 << 30), ("2GB", 2 * 10**9), ("100 kB", 100_000),
     ("4096", 4096), (1 << 20, 1 << 20), ("1T", 1 << 40)],
)
def test_sizes_as_users_write_them(text, size):
    from mtasklite_like._memory.units import parse_bytes

    assert parse_bytes(text, "x") == size


def test_thresholds_in_bytes_or_shares():
    from mtasklite_like._memory.units import format_bytes, parse_threshold

    assert parse_threshold("10%", "x").of(1000) == 100
    assert parse_threshold("1KiB", "x").of(10) == 1024
    assert str(parse_threshold("12.5%", "x")) == "12.5%"
    assert format_bytes(3 << 29) == "1.5 GiB" and format_bytes(12) == "12 B"


def test_this_machine_s_memory_is_readable():
    import os

    from mtasklite_like._memory.source import ProcSource

    if not os.path.exists("/proc/self/statm"):
        pytest.skip("no /proc here")
    source = ProcSource()
    rss, own, peak = source.rss(), source.own(), source.peak()
    assert rss and own and peak
    assert own <= rss <= peak
    assert source.rss(os.getpid()) == pytest.approx(rss, rel=0.5)
    available, total = source.available()
    assert 0 <= available <= total
    assert source.oom_kills() is None or source.oom_kills() >= 0


def test_the_pressure_warnings_are_shown_by_default():
    # Not a ResourceWarning (ignored by Python's default filters): users see the pause.
    import subprocess
    import sys

    code = (
        "from tests.test_memory_fake import ScriptedAvailable, Step\n"
        "from tests.fake_backend import FakeBackend\n"
        "from mtasklite_like import Pool\n"
        "from mtasklite_like._memory.source import use_source\n"
        "from tests.fake_backend import run_step\n"
        "with use_source(ScriptedAvailable(0.1, 0.3)):\n"
        "    list(Pool(run_step, 2, backend='fake-timed', chunk_size=1, min_available_memory=100 << 20)"
        "([Step(i, seconds=0.01) for i in range(100)]))\n"
    )
    import os

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("MemoryPressureWarning") == 2, result.stderr
    assert "min_available_memory=100 MiB:" in result.stderr  # bytes: no share in brackets
