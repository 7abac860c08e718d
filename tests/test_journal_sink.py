"""The journal as a sink of the user's own run: what that gives unordered and resumed runs.

An unordered journaled run used to run a second pool whose workers were wrapped to carry each
item's position; it is now the user's pool itself, with the journal fed by the release stage.
"""

from __future__ import annotations

import threading
from typing import Any

import pytest

from mtasklite_like import JournalPicklingError, Pool, delayed_init, read_journal

_built: list[int] = []
_built_lock = threading.Lock()


@delayed_init
class Counted:
    """Notes each construction (thread workers share this module's list)."""

    def __init__(self) -> None:
        with _built_lock:
            _built.append(1)

    def __call__(self, item: str) -> str:
        return item.upper()


@pytest.mark.timeout(60)
def test_one_journaled_unordered_pool_builds_its_objects_once(tmp_path: Any) -> None:
    """Inside ``with Pool(...)`` a worker's object is built once for all calls, journaled and
    unordered as for any run."""
    _built.clear()
    with Pool(Counted(), 2, use_threads=True, is_unordered=True, journal=str(tmp_path / "run")) as pool:
        for i in range(3):
            items = [f"{i}-{k}" for k in range(20)]
            assert sorted(pool(items)) == sorted(x.upper() for x in items)
    assert len(_built) == 2  # a wrapped pool per call built them once per call


def _unpicklable_on_b(item: str) -> Any:
    if item == "b":
        return threading.Lock()  # a result the journal cannot store
    return item.upper()


@pytest.mark.parametrize("unordered", [False, True], ids=["ordered", "unordered"])
@pytest.mark.timeout(60)
def test_resumed_failures_are_named_by_their_input_position(tmp_path: Any, unordered: bool) -> None:
    """The engine sees only unfinished items; a failure it reports is named by the caller's
    input position, here the result the journal cannot store (JournalPicklingError)."""
    run_dir = str(tmp_path / "run")
    first = Pool(_unpicklable_on_b, 1, journal=run_dir, exception_behavior="ignore", is_unordered=unordered)
    assert set(map(str, first(["x", "y"]))) == {"X", "Y"}
    pool = Pool(_unpicklable_on_b, 1, journal=run_dir, exception_behavior="ignore", is_unordered=unordered)
    results = list(pool(["x", "y", "a", "b", "c"]))
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], JournalPicklingError)
    assert errors[0].input_index == 3  # type: ignore[attr-defined]
    assert sorted(r for r in results if not isinstance(r, BaseException)) == ["A", "C", "X", "Y"]
    assert read_journal(run_dir).failed.keys() == {"b"}
