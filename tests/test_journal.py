"""Journaled runs: resume, keys, failures, save_callback, the file format and its refusals.

Each test that resumes checks two things: the output equals an uninterrupted run's, and the
side-effect log (``tests/journal_helpers.py``) shows that no item the journal held when the run
started was computed again.
"""

from __future__ import annotations

import os
import stat
import struct
import threading
from collections import Counter
from pathlib import Path

import pytest

from mtasklite_like import (
    DeferredExceptions,
    JournaledIterator,
    JournalError,
    JournalMismatchError,
    JournalPicklingError,
    JournalWarning,
    Pool,
    is_exception,
    read_journal,
)
from mtasklite_like._journal import JOURNAL_FILE, MAGIC
from mtasklite_like._journal.format import KIND_DONE_RAW, KIND_FAILED
from mtasklite_like.processes import pqdm as pqdm_processes
from tests import journal_helpers as h

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def log(tmp_path, monkeypatch) -> str:
    path = str(tmp_path / "calls.log")
    monkeypatch.setenv("MTL_TEST_LOG", path)
    return path


@pytest.fixture
def run_dir(tmp_path) -> str:
    return str(tmp_path / "run")


def take(iterator, n):
    out = []
    for r in iterator:
        out.append(r)
        if len(out) == n:
            break
    iterator.close()
    return out


def computed_since(log: str, start: int) -> list[str]:
    return h.read_log(log)[start:]


# -- resume ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
def test_resume_skips_journaled_items_and_output_is_complete(backend, log, run_dir, unordered):
    items = list(range(3000))
    pool = Pool(h.logged_square, 2, journal=run_dir, is_unordered=unordered, **backend)
    first = take(pool(items), 700)
    assert len(first) == 700
    journaled = read_journal(run_dir).finished_keys
    assert len(journaled) >= 700  # what the caller saw was journaled before it was handed over
    seen = len(h.read_log(log))

    out = list(Pool(h.logged_square, 2, journal=run_dir, is_unordered=unordered, **backend)(items))
    expected = [x * x for x in items]
    assert (sorted(out) if unordered else out) == expected
    again = {int(k) for k in computed_since(log, seen)}
    assert not again & journaled, "a journaled item was computed again"
    assert again | journaled == set(items)
    # a third call computes nothing
    seen = len(h.read_log(log))
    assert sorted(Pool(h.logged_square, 2, journal=run_dir, **backend)(items)) == expected
    assert computed_since(log, seen) == []


def test_resume_from_a_generator_and_n_jobs_1(log, run_dir):
    first = take(Pool(h.logged_square, 1, journal=run_dir)(x for x in range(100)), 40)
    assert first == [x * x for x in range(40)]
    seen = len(h.read_log(log))
    out = list(Pool(h.logged_square, 1, journal=run_dir)(x for x in range(100)))
    assert out == [x * x for x in range(100)]
    assert {int(k) for k in computed_since(log, seen)} == set(range(40, 100))


def test_journaled_iterator_is_sized_and_a_context_manager(run_dir):
    pool = Pool(h.logged_square, 2, journal=run_dir)
    with pool(range(50)) as results:
        assert isinstance(results, JournaledIterator)
        assert len(results) == 50
        assert results.parent_obj is pool
        assert next(results) == 0
    # leaving `with` closed the journal: a new run may open it
    assert list(Pool(h.logged_square, 2, journal=run_dir)(range(50))) == [x * x for x in range(50)]


def test_stored_results_come_back_even_from_another_order_of_str_items(log, run_dir):
    words = [f"w{i}" for i in range(30)]
    pool = Pool(len, 2, use_threads=True, journal=run_dir)
    assert list(pool(words)) == [len(w) for w in words]
    assert read_journal(run_dir).done == {w: len(w) for w in words}


# -- keys --------------------------------------------------------------------------------------------


def test_position_keys_for_other_items_and_custom_keys(log, run_dir, tmp_path):
    records = [{"name": f"n{i}"} for i in range(60)]
    first = take(Pool(h.logged_name, 2, journal=run_dir)(records), 20)
    assert first == [f"N{i}" for i in range(20)]
    state = read_journal(run_dir)
    assert state.header["keys"] == "position"
    assert all(isinstance(k, int) for k in state.done)
    seen = len(h.read_log(log))
    assert list(Pool(h.logged_name, 2, journal=run_dir)(records)) == [f"N{i}" for i in range(60)]
    assert not set(computed_since(log, seen)) & {f"n{k}" for k in state.done}

    # the same items with a key function: named by their "name", whatever their position
    custom = str(tmp_path / "custom")
    take(Pool(h.logged_name, 2, journal=custom, journal_key=lambda r: r["name"])(records), 10)
    assert read_journal(custom).header["keys"] == "custom"
    done = read_journal(custom).finished_keys
    shuffled = records[::-1]
    seen = len(h.read_log(log))
    out = list(Pool(h.logged_name, 2, journal=custom, journal_key=lambda r: r["name"])(shuffled))
    assert out == [r["name"].upper() for r in shuffled]
    assert not set(computed_since(log, seen)) & done


def test_position_keys_refuse_another_input(run_dir):
    records = [{"name": f"n{i}"} for i in range(20)]
    take(Pool(h.logged_name, 2, journal=run_dir)(records), 5)
    other = [{"name": f"x{i}"} for i in range(20)]
    with pytest.raises(JournalMismatchError, match="input"):
        Pool(h.logged_name, 2, journal=run_dir)(other)


def test_an_item_of_another_kind_is_refused_with_advice(run_dir):
    items = [1, 2, 3, ("a", 4), 5]
    take(Pool(h.other_function, 1, journal=run_dir)(items[:2]), 1)
    with pytest.raises(JournalError, match="journal_key"):
        list(Pool(h.other_function, 1, journal=run_dir)(items))


def test_unhashable_custom_keys_are_refused(run_dir):
    with pytest.raises(JournalError, match="hashable"):
        list(Pool(h.other_function, 1, journal=run_dir, journal_key=lambda x: [x])(range(5)))


# -- failures ---------------------------------------------------------------------------------------------


def test_failures_are_journaled_and_retried_on_resume(backend, log, run_dir):
    items = list(range(40))
    out = list(Pool(h.logged_fail_on_3, 2, exception_behavior="ignore", journal=run_dir, **backend)(items))
    failed = [x for x in items if x % 10 == 3]
    assert [i for i, r in enumerate(out) if is_exception(r)] == failed
    state = read_journal(run_dir)
    assert sorted(state.failed) == failed
    assert all(isinstance(e, ValueError) for e in state.failed.values())

    seen = len(h.read_log(log))
    out = list(Pool(h.logged_fail_on_3, 2, exception_behavior="ignore", journal=run_dir, **backend)(items))
    assert sorted(int(k) for k in computed_since(log, seen)) == failed  # only the failures ran again
    assert [i for i, r in enumerate(out) if is_exception(r)] == failed


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
def test_keep_failures_yields_the_stored_exception(log, run_dir, unordered):
    items = list(range(20))
    opts = dict(exception_behavior="ignore", journal=run_dir, is_unordered=unordered)
    list(Pool(h.logged_fail_on_3, 2, **opts)(items))
    seen = len(h.read_log(log))
    out = list(Pool(h.logged_fail_on_3, 2, journal_keep_failures=True, **opts)(items))
    assert computed_since(log, seen) == []
    errors = [r for r in out if is_exception(r)]
    assert sorted(str(e) for e in errors) == ["item 13 is bad", "item 3 is bad"]
    if not unordered:
        assert [i for i, r in enumerate(out) if is_exception(r)] == [3, 13]


def test_deferred_raises_all_failures_stored_and_new(log, run_dir):
    items = list(range(20))
    with pytest.raises(DeferredExceptions) as info:
        list(Pool(h.logged_fail_on_3, 2, exception_behavior="deferred", journal=run_dir)(items[:10]))
    assert [str(e) for e in info.value.exceptions] == ["item 3 is bad"]
    pool = Pool(
        h.logged_fail_on_3, 2, exception_behavior="deferred", journal=run_dir, journal_keep_failures=True
    )
    got = []
    with pytest.raises(DeferredExceptions) as info:
        for r in pool(items):
            got.append(r)
    assert [str(e) for e in info.value.exceptions] == ["item 3 is bad", "item 13 is bad"]
    assert len(got) == 20


def test_immediate_raises_and_journals_what_came_before(log, run_dir):
    pool = Pool(h.logged_fail_on_3, 1, journal=run_dir)
    got = []
    with pytest.raises(ValueError, match="item 3 is bad"):
        for r in pool(range(10)):
            got.append(r)
    assert got == [0, 1, 4]
    state = read_journal(run_dir)
    assert state.finished_keys == {0, 1, 2}
    assert not state.failed  # raised, not yielded: the item is simply computed again next time


# -- results that cannot be pickled ---------------------------------------------------------------------


def test_unpicklable_result_fails_that_item(run_dir):
    out = list(Pool(h.unpicklable_for_7, 1, exception_behavior="ignore", journal=run_dir)(range(10)))
    assert isinstance(out[7], JournalPicklingError)
    assert "journal_results=False" in str(out[7])
    assert [r for i, r in enumerate(out) if i != 7] == [x * x for x in range(10) if x != 7]
    assert 7 in read_journal(run_dir).failed


def test_unpicklable_result_under_immediate_raises_after_the_results_before_it(tmp_path):
    pool = Pool(h.unpicklable_for_7, 1, journal=str(tmp_path / "r"))
    got = []
    with pytest.raises(JournalPicklingError):
        for r in pool(range(10)):
            got.append(r)
    assert got == [x * x for x in range(7)]


def test_journal_results_false_stores_only_completion_and_skips_finished_items(log, run_dir):
    pool = Pool(h.unpicklable_for_7, 1, journal=run_dir, journal_results=False)
    first = take(pool(range(10)), 8)
    assert first[:7] == [x * x for x in range(7)] and first[7] is not None
    state = read_journal(run_dir)
    assert state.header["results"] is False
    with pytest.raises(KeyError, match="not stored"):
        state.result(0)
    seen = len(h.read_log(log))
    rest = list(Pool(h.unpicklable_for_7, 1, journal=run_dir, journal_results=False)(range(10)))
    computed = [int(k) for k in computed_since(log, seen)]
    assert rest == [x * x for x in computed]  # finished items are skipped, not yielded again
    assert set(computed) == set(range(10)) - state.finished_keys
    # switching to stored results on the same directory is refused
    with pytest.raises(JournalMismatchError, match="journal_results"):
        Pool(h.unpicklable_for_7, 1, journal=run_dir)(range(10))


# -- save_callback -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
def test_save_callback_batches_in_the_caller_one_at_a_time(backend, run_dir, unordered):
    calls = []
    busy = threading.Lock()
    caller = threading.get_ident()

    def save(results, items):
        assert busy.acquire(blocking=False), "save_callback called while another call runs"
        try:
            assert threading.get_ident() == caller
            assert read_journal(run_dir).finished_keys.isdisjoint(items)  # journaled after the call
            calls.append((list(results), list(items)))
        finally:
            busy.release()

    pool = Pool(h.logged_square, 2, journal=run_dir, save_callback=save, save_batch=7,
                is_unordered=unordered, **backend)
    out = list(pool(range(100)))
    assert sorted(out) == [x * x for x in range(100)]
    assert all(len(r) <= 7 for r, _ in calls) and all(len(r) == 7 for r, _ in calls[:-1])
    saved = [(x, r) for results, items in calls for x, r in zip(items, results)]
    assert sorted(saved) == [(x, x * x) for x in range(100)]
    assert read_journal(run_dir).finished_keys == set(range(100))


def test_save_callback_failure_leaves_its_batch_unjournaled(log, run_dir):
    def save(results, items):
        if 25 in items:
            raise OSError("disk full")

    pool = Pool(h.logged_square, 1, journal=run_dir, save_callback=save, save_batch=10)
    with pytest.raises(OSError, match="disk full"):  # the callback's own exception
        list(pool(range(50)))
    done = read_journal(run_dir).finished_keys
    assert done == set(range(20))  # the failing batch (20..29) and later ones are not journaled
    saved = []
    seen = len(h.read_log(log))
    pool = Pool(h.logged_square, 1, journal=run_dir, save_callback=lambda r, i: saved.extend(i),
                save_batch=10)
    assert list(pool(range(50))) == [x * x for x in range(50)]
    assert saved == list(range(20, 50))
    assert {int(k) for k in computed_since(log, seen)} == set(range(20, 50))


def test_save_callback_gets_pending_results_on_close(run_dir):
    saved = []
    pool = Pool(h.logged_square, 1, journal=run_dir, save_callback=lambda r, i: saved.extend(i),
                save_batch=100)
    results = pool(range(1000))
    for _ in range(30):
        next(results)
    results.close()
    assert saved and saved == list(range(len(saved)))
    assert read_journal(run_dir).finished_keys == set(saved)


def test_save_callback_without_journal(tmp_path):
    batches = []
    pool = Pool(h.logged_square, 2, save_callback=lambda r, i: batches.append(list(i)), save_batch=16)
    assert list(pool(range(40))) == [x * x for x in range(40)]
    assert [len(b) for b in batches] == [16, 16, 8]
    assert os.listdir(tmp_path) == []


# -- the file: format, damage, refusals -----------------------------------------------------------------


def test_file_format_header_and_private_directory(run_dir):
    list(Pool(h.logged_square, 2, journal=run_dir)(range(10)))
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700
    path = os.path.join(run_dir, JOURNAL_FILE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    data = Path(path).read_bytes()
    assert data.startswith(MAGIC)
    version, _ = struct.unpack_from("<HI", data, len(MAGIC))
    assert version == 1
    header = read_journal(run_dir).header
    assert header["function"] == "tests.journal_helpers:logged_square"
    assert header["keys"] == "item" and header["results"] is True and len(header["input"]) == 16


def _records(path):
    """(offset, end) of each record of a journal file."""
    data = Path(path).read_bytes()
    _, length = struct.unpack_from("<HI", data, len(MAGIC))
    pos = len(MAGIC) + 6 + length + 4
    spans = []
    while pos < len(data):
        size, _, _ = struct.unpack_from("<IIB", data, pos)
        spans.append((pos, pos + 9 + size))
        pos += 9 + size
    return spans


def test_torn_last_record_is_dropped_with_a_warning_and_recomputed(log, run_dir):
    items = list(range(200))
    list(Pool(h.logged_square, 1, journal=run_dir, save_callback=lambda r, i: None, save_batch=50)(items))
    path = os.path.join(run_dir, JOURNAL_FILE)
    spans = _records(path)
    assert len(spans) == 4
    _, last_end = spans[-1]
    os.truncate(path, last_end - 5)  # a write cut short by a crash
    state = read_journal(run_dir)  # reading alone changes nothing
    assert state.finished_keys == set(range(150)) and state.torn_bytes > 0
    seen = len(h.read_log(log))
    with pytest.warns(JournalWarning, match="torn"):
        out = list(Pool(h.logged_square, 1, journal=run_dir)(items))
    assert out == [x * x for x in items]
    assert sorted(int(k) for k in computed_since(log, seen)) == list(range(150, 200))
    assert read_journal(run_dir).torn_bytes == 0  # cut off, then appended to


def test_damaged_last_record_is_torn_but_damage_in_the_middle_is_refused(run_dir):
    pool = Pool(h.logged_square, 1, journal=run_dir, save_callback=lambda r, i: None, save_batch=50)
    list(pool(range(200)))
    path = os.path.join(run_dir, JOURNAL_FILE)
    spans = _records(path)
    data = bytearray(Path(path).read_bytes())
    data[spans[1][0] + 20] ^= 0xFF  # flip a byte inside the second record
    Path(path).write_bytes(data)
    with pytest.raises(JournalError, match="damaged"):
        Pool(h.logged_square, 1, journal=run_dir)(range(200))
    data[spans[1][0] + 20] ^= 0xFF
    data[spans[-1][0] + 20] ^= 0xFF  # now the last one
    Path(path).write_bytes(data)
    with pytest.warns(JournalWarning):
        assert list(Pool(h.logged_square, 1, journal=run_dir)(range(200))) == [x * x for x in range(200)]


def test_a_file_without_the_header_is_refused(run_dir):
    os.makedirs(run_dir, mode=0o700)
    with open(os.path.join(run_dir, JOURNAL_FILE), "wb") as f:
        f.write(b"\x80\x04not a journal, maybe a pickle")
    with pytest.raises(JournalError, match="not a journal"):
        Pool(h.logged_square, 1, journal=run_dir)(range(3))


def test_a_header_torn_by_a_crash_starts_over(run_dir):
    os.makedirs(run_dir, mode=0o700)
    with open(os.path.join(run_dir, JOURNAL_FILE), "wb") as f:
        f.write(MAGIC[:5])
    with pytest.warns(JournalWarning):
        assert list(Pool(h.logged_square, 1, journal=run_dir)(range(3))) == [0, 1, 4]


def test_journal_of_another_function_is_refused_and_fresh_starts_over(log, run_dir):
    list(Pool(h.logged_square, 2, journal=run_dir)(range(10)))
    with pytest.raises(JournalMismatchError, match="other_function") as info:
        Pool(h.other_function, 2, journal=run_dir)(range(10))
    assert "journal_fresh=True" in str(info.value)
    fresh = Pool(h.other_function, 2, journal=run_dir, journal_fresh=True)
    assert list(fresh(range(10))) == list(range(1, 11))
    assert read_journal(run_dir).header["function"] == "tests.journal_helpers:other_function"


def test_read_only_run_directory_is_refused_before_anything_runs(log, run_dir):
    take(Pool(h.logged_square, 1, journal=run_dir)(range(10)), 3)
    seen = len(h.read_log(log))
    os.chmod(run_dir, 0o500)
    try:
        with pytest.raises(JournalError, match="read-only"):
            Pool(h.logged_square, 1, journal=run_dir)(range(10))
    finally:
        os.chmod(run_dir, 0o700)
    path = os.path.join(run_dir, JOURNAL_FILE)
    os.chmod(path, 0o400)
    with pytest.raises(JournalError, match="read-only"):
        Pool(h.logged_square, 1, journal=run_dir)(range(10))
    assert computed_since(log, seen) == []
    os.chmod(path, 0o600)
    assert list(Pool(h.logged_square, 1, journal=run_dir)(range(10))) == [x * x for x in range(10)]


def test_a_directory_others_can_write_is_refused(run_dir):
    os.makedirs(run_dir)
    os.chmod(run_dir, 0o777)
    with pytest.raises(JournalError, match="other users"):
        Pool(h.logged_square, 1, journal=run_dir)(range(3))


def test_one_run_per_directory_at_a_time(run_dir):
    first = Pool(h.logged_square, 1, journal=run_dir)(range(10))
    with pytest.raises(JournalError, match="in use"):
        Pool(h.logged_square, 1, journal=run_dir)(range(10))
    first.close()
    assert list(Pool(h.logged_square, 1, journal=run_dir)(range(10))) == [x * x for x in range(10)]


def test_a_pool_kept_up_between_runs_does_not_keep_the_journal_locked(log, run_dir):
    # process workers forked during the first run live on inside `with`: they must not hold the lock
    with Pool(h.logged_square, 2, journal=run_dir) as pool:
        assert list(pool(range(300))) == [x * x for x in range(300)]
        seen = len(h.read_log(log))
        assert list(pool(range(400))) == [x * x for x in range(400)]
        assert sorted(int(k) for k in computed_since(log, seen)) == list(range(300, 400))


# -- options ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"journal_key": len}, "also pass journal="),
        ({"journal_fresh": True}, "also pass journal="),
        ({"save_batch": 5}, "also pass save_callback"),
        ({"journal": 5}, "path of a run directory"),
        ({"journal": "d", "journal_key": 3}, "journal_key must be a function"),
        ({"save_callback": 3}, "save_callback must be callable"),
        ({"save_callback": print, "save_batch": 0}, "save_batch must be"),
    ],
)
def test_bad_options_fail_at_once(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        Pool(h.logged_square, 1, **kwargs)


def test_pqdm_with_journal_resumes(log, run_dir):
    items = [f"item {i}" for i in range(400)]  # about 1 ms each: the first run stops part-way
    with pqdm_processes(items, h.logged_upper, 2, journal=run_dir, disable=True) as results:
        first = []
        for r in results:
            first.append(r)
            if len(first) == 100:
                break
    journaled = read_journal(run_dir).finished_keys
    assert 100 <= len(journaled) < 400
    seen = len(h.read_log(log))
    out = pqdm_processes(items, h.logged_upper, 2, journal=run_dir, disable=True)
    assert out == [x.upper() for x in items]
    counts = Counter(computed_since(log, seen))
    assert not set(counts) & journaled and set(counts) | journaled == set(items)
    assert max(counts.values()) == 1


def test_items_that_are_their_own_keys_may_be_reordered_or_replaced(log, run_dir):
    words = [f"w{i}" for i in range(40)]
    take(Pool(h.logged_upper, 2, use_threads=True, journal=run_dir)(words), 20)
    done = read_journal(run_dir).finished_keys
    seen = len(h.read_log(log))
    shuffled = words[1::2] + words[::2]
    assert list(Pool(h.logged_upper, 2, use_threads=True, journal=run_dir)(shuffled)) == [
        w.upper() for w in shuffled
    ]
    assert not set(computed_since(log, seen)) & done
    # another input only shares what it has in common: each stored result is reused for its own key
    seen = len(h.read_log(log))
    other = [f"w{i}" for i in range(30, 50)]
    pool = Pool(h.logged_upper, 2, use_threads=True, journal=run_dir)
    assert list(pool(other)) == [w.upper() for w in other]
    assert sorted(computed_since(log, seen)) == sorted(f"w{i}" for i in range(40, 50))


@pytest.mark.timeout(60)
@pytest.mark.parametrize("use_threads", [False, True])
def test_a_generator_read_in_the_background_keeps_items_and_results_paired(tmp_path, use_threads):
    # The pool reads an unsized input in a thread of its own: the items handed to save_callback
    # must still be the ones each result came from, in order.
    def words():
        for i in range(3000):
            yield f"item-{i}"

    seen: list = []
    pool = Pool(
        str.upper, 2, use_threads=use_threads, journal=str(tmp_path / "run"), input_thread=True,
        save_callback=lambda results, items: seen.extend(zip(items, results)), save_batch=64,
    )
    assert list(pool(words())) == [f"ITEM-{i}" for i in range(3000)]
    assert seen == [(f"item-{i}", f"ITEM-{i}") for i in range(3000)]


# -- the workers' pickled results, journaled as they are ---------------------------------------------


def _record_kinds(run_dir):
    return Counter(kind for kind, _ in h.journal_records(run_dir))


@pytest.mark.parametrize("items", [range(5000), list(range(5000)), iter(range(5000))],
                         ids=["range", "list", "generator"])
def test_process_workers_results_are_journaled_as_they_pickled_them(log, run_dir, items):
    expected = [x * x for x in range(5000)]
    out = list(Pool(h.logged_square, 2, journal=run_dir)(items))
    assert out == expected
    kinds = _record_kinds(run_dir)
    assert kinds and set(kinds) == {KIND_DONE_RAW}, kinds
    state = read_journal(run_dir)
    assert state.done == {x: x * x for x in range(5000)}
    # A second run reads those records back and computes nothing.
    before = len(h.read_log(log))
    again = items if isinstance(items, (range, list)) else iter(range(5000))
    assert list(Pool(h.logged_square, 2, journal=run_dir)(again)) == expected
    assert len(h.read_log(log)) == before


def test_batches_with_failures_are_pickled_by_the_caller(log, run_dir):
    out = list(Pool(h.logged_fail_on_3, 2, journal=run_dir, exception_behavior="ignore")(range(2000)))
    assert [r for r in out if not isinstance(r, Exception)] == [x * x for x in range(2000) if x % 10 != 3]
    kinds = _record_kinds(run_dir)
    assert kinds[KIND_FAILED] >= 1 and kinds[1] + kinds[KIND_DONE_RAW] >= 1
    state = read_journal(run_dir)
    assert state.done == {x: x * x for x in range(2000) if x % 10 != 3}
    assert set(state.failed) == {x for x in range(2000) if x % 10 == 3}


def test_thread_workers_pickle_nothing_so_the_caller_does(run_dir):
    assert list(Pool(h.logged_square, 2, use_threads=True, journal=run_dir)(range(3000))) == [
        x * x for x in range(3000)
    ]
    assert set(_record_kinds(run_dir)) == {1}


def test_coroutine_workers_on_processes_journal_and_resume(log, run_dir):
    expected = [x * x for x in range(600)]
    results = Pool(h.async_logged_square, 2, concurrency=8, journal=run_dir)(range(600))
    assert [next(results) for _ in range(200)] == expected[:200]
    results.close()
    first = len(h.read_log(log))
    assert list(Pool(h.async_logged_square, 2, concurrency=8, journal=run_dir)(range(600))) == expected
    # The second run computes none of the first 200, which the first run had delivered (and so
    # journaled); items the first run computed but had not delivered may run again.
    assert not {int(k) for k in h.read_log(log)[first:]} & set(range(200))
    assert read_journal(run_dir).done == {x: x * x for x in range(600)}
