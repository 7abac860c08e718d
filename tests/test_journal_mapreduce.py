"""Journaled map-reduce calls: ``parallelize(..., journal=RUN_DIR)`` forwards the journal to its
pool, so a call that failed part-way resumes without computing its finished parts again."""

from __future__ import annotations

import pytest

from mtasklite_like import DeferredExceptions, JournalMismatchError, read_journal
from mtasklite_like.mapreduce import parallelize

from . import journal_helpers as h


@pytest.fixture
def log(tmp_path, monkeypatch) -> str:
    path = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", path)
    return path


@pytest.mark.timeout(60)
def test_parallelize_with_a_journal_resumes_and_computes_finished_parts_once(tmp_path, log, monkeypatch):
    run_dir = str(tmp_path / "run")
    xs = list(range(100))
    parallel = parallelize(
        h.logged_part_squares, 2, reduction="flatten", part_size=10, exception_behavior="deferred",
        journal=run_dir,
    )
    monkeypatch.setenv("MTL_TEST_FAIL_ITEM", "55")
    with pytest.raises(DeferredExceptions) as info:
        parallel(xs)
    assert [str(e) for e in info.value.exceptions] == ["part 50 is bad"]
    first = h.read_log(log)
    assert sorted(first) == [str(p) for p in range(0, 100, 10)]
    state = read_journal(run_dir)
    assert state.header["function"] == "tests.journal_helpers:logged_part_squares"
    assert len(state.done) == 9 and len(state.failed) == 1  # keys are part positions

    monkeypatch.delenv("MTL_TEST_FAIL_ITEM")
    assert parallel(xs) == [x * x for x in xs]
    assert h.read_log(log)[len(first):] == ["50"]  # only the failed part is computed again
    assert parallel(xs) == [x * x for x in xs]  # everything stored: nothing computed
    assert h.read_log(log)[len(first):] == ["50"]


@pytest.mark.timeout(60)
def test_parallelize_journal_of_another_function_is_refused(tmp_path):
    run_dir = str(tmp_path / "run")
    xs = list(range(40))
    options = dict(reduction="flatten", part_size=10, use_threads=True, journal=run_dir)
    assert parallelize(h.part_cubes, 2, **options)(xs) == [x**3 for x in xs]
    with pytest.raises(JournalMismatchError, match="logged_part_squares"):
        parallelize(h.logged_part_squares, 2, **options)(xs)
