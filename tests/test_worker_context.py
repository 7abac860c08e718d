"""What code running in a worker knows of its worker and item (``_worker.context``), on every
backend: the ground under log records' ``worker``/``item`` and progress reported from tasks."""

from __future__ import annotations

import asyncio

import pytest

from mtasklite_like import Pool
from mtasklite_like._worker.context import current

pytestmark = pytest.mark.timeout(60)


def where(x: int) -> tuple[int, int | None, int | None]:
    context = current()
    assert context is not None
    return x, context.worker, context.item()


async def where_async(x: int) -> tuple[int, int | None, int | None]:
    await asyncio.sleep(0.001 * (x % 3))  # items interleave on the loop
    context = current()
    assert context is not None
    return x, context.worker, context.item()


@pytest.mark.parametrize(
    "options",
    [
        {"n_jobs": 2},
        {"n_jobs": 2, "chunk_size": 7},
        {"n_jobs": 3, "use_threads": True, "chunk_size": 5},
        {"n_jobs": 1},  # in the caller
        {"n_jobs": 1, "use_threads": True},
    ],
    ids=["processes", "processes-batches", "threads", "inline", "inline-threads"],
)
def test_a_task_knows_its_worker_and_input_item(options):
    out = list(Pool(where, **options)(range(60)))
    assert [x for x, _, _ in out] == list(range(60))
    assert all(item == x for x, _, item in out)
    assert {w for _, w, _ in out} <= set(range(options["n_jobs"]))


@pytest.mark.parametrize("use_threads", [False, True])
def test_a_coroutine_knows_its_own_item_among_those_in_flight(use_threads):
    out = list(Pool(where_async, 2, concurrency=8, use_threads=use_threads)(range(60)))
    assert all(item == x for x, _, item in out)


def test_outside_workers_there_is_no_context():
    assert current() is None
    list(Pool(where, 1)(range(3)))  # the caller ran items itself, and is a caller again
    assert current() is None
