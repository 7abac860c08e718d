"""max_tasks_per_worker: workers are replaced after N items, their objects rebuilt."""

from __future__ import annotations

import os
import uuid

import pytest

from mtasklite_like import Pool, delayed_init

pytestmark = pytest.mark.timeout(60)


@delayed_init
class Tally:
    def __init__(self):
        self.calls = 0
        # not id(self): ids are reused once an object is freed
        self.key = (os.getpid(), uuid.uuid4().hex)

    def __call__(self, x):
        self.calls += 1
        return self.key, self.calls, x


@pytest.mark.parametrize("jobs", [1, 2, 3])
@pytest.mark.parametrize("limit", [1, 3, 7])
def test_no_object_serves_more_than_the_limit(backend, jobs, limit):
    results = list(Pool(Tally(), jobs, max_tasks_per_worker=limit, **backend)(range(40)))
    assert [x for _, _, x in results] == list(range(40))
    assert max(calls for _, calls, _ in results) <= limit
    per_object: dict = {}
    for key, _, _ in results:
        per_object[key] = per_object.get(key, 0) + 1
    assert all(n <= limit for n in per_object.values())
    assert len(per_object) >= -(-40 // limit)  # at least ceil(40 / limit) objects were built


def test_processes_are_really_replaced():
    pids = {pid for (pid, _), _, _ in Pool(Tally(), 2, max_tasks_per_worker=5)(range(30))}
    assert len(pids) >= 6


def test_without_a_limit_objects_live_for_the_whole_run(backend):
    results = list(Pool(Tally(), 2, **backend)(range(100)))
    assert len({key for key, _, _ in results}) <= 2


@pytest.mark.parametrize("bad", [0, -1, 2.5, True, "3"])
def test_bad_limit(bad):
    with pytest.raises(ValueError, match="max_tasks_per_worker"):
        Pool(Tally(), 2, max_tasks_per_worker=bad)
