"""worker_env: environment variables per worker, set before the worker's object is built."""

from __future__ import annotations

import os

import pytest

from mtasklite_like import Pool
from tests.helpers import EnvReader, square

pytestmark = pytest.mark.timeout(60)


def test_one_env_per_worker(backend):
    env = [{"MTL_TEST_GPU": str(i)} for i in range(3)]
    results = list(Pool([EnvReader()] * 3, worker_env=env, chunk_size=1, **backend)(range(60)))
    seen_at_init = {r[0] for r in results}
    assert seen_at_init <= {"0", "1", "2"}
    assert len(seen_at_init) >= 2  # at least two workers took items, each saw its own value
    if backend["use_threads"]:
        # threads share the process environment: the values are set only while objects are built
        assert "MTL_TEST_GPU" not in os.environ
    else:
        # a process keeps its value for its whole life
        assert all(r[0] == r[2] for r in results)
        by_pid = {}
        for gpu, pid, _ in results:
            by_pid.setdefault(pid, set()).add(gpu)
        assert all(len(v) == 1 for v in by_pid.values())


def test_one_env_for_all_workers(backend):
    results = list(Pool(EnvReader(), 2, worker_env={"MTL_TEST_GPU": "all"}, **backend)(range(10)))
    assert {r[0] for r in results} == {"all"}


def test_env_is_applied_in_the_caller_for_n_jobs_1():
    results = list(Pool(EnvReader(), 1, worker_env={"MTL_TEST_GPU": "solo"})(range(3)))
    assert {r[0] for r in results} == {"solo"}
    assert "MTL_TEST_GPU" not in os.environ  # restored afterwards


def test_env_validation():
    with pytest.raises(ValueError, match="one dict per worker"):
        Pool(square, 2, worker_env=[{"A": "1"}])
    with pytest.raises(TypeError, match="strings"):
        Pool(square, 2, worker_env={"A": 1})
    with pytest.raises(TypeError, match="dict or a list of dicts"):
        Pool(square, 2, worker_env="A=1")
