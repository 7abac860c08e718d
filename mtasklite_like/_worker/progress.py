"""Progress reported from inside a task: :func:`progress`, and how the caller reads it back.

A task calls ``mtasklite_like.progress(fraction)`` as it goes; the caller's progress bar shows the
whole items done plus the fractions of the items in flight (``ResultIterator.partial``).

The worker side is one function call, meant for tight loops: no lock, no system call, no message.
It finds the worker's :class:`~.context.WorkerContext` and writes into the integers the worker
already shares with the caller (``slots``, see ``_worker.context``), in millionths of an item:

- A worker that runs one item at a time (a process, a thread, the caller under ``n_jobs=1``, a
  Ray actor) writes the fraction into ``slots[4]``, then the ``(batch id, position)`` of the item
  that reported it into ``slots[3]`` and ``slots[2]``, only when the item changes (its context
  remembers the position it named; ``begin()`` forgets it with each batch). The fraction counts
  only while that pair is the running item's, ``slots[0:2]``, which the worker loops write as each
  item starts: a fraction left by a finished item is ignored without any reset per item. The loops
  clear ``slots[2]`` at the end of each batch, before its results are sent (``_worker.run``), so
  an idle worker's last fraction is never counted on top of its result.
- A coroutine worker runs several items at once with one set of slots. It keeps each running
  item's fraction in a dict on its context (the item is its coroutine's, ``context.running()``),
  writes their sum into ``slots[4]`` and :data:`SUM` into ``slots[2]``: "the sum over this
  worker's items in flight". An item's entry goes when it ends (``_worker.coroutines``), and the
  sum is written again; a worker whose tasks never report keeps no dict entries at all.

The caller reads each worker's slots with :func:`fraction_of` (``Backend.fractions``), at most a
few times a second, for a progress bar. The reads are not atomic with the worker's writes, so a
value may be a moment old or briefly pair with the item that starts next; never more than one
item's worth per worker.

Under ``n_jobs=1`` the task runs in the caller's thread, which cannot redraw a bar meanwhile: each
report then also calls the context's ``tick``, which runs the run's heartbeat when one is due.
"""

from __future__ import annotations

from asyncio.events import _get_running_loop as _running_loop
from collections.abc import Sequence
from math import floor

from . import context as _contexts
from .context import RUNNING, WorkerContext

__all__ = ["SCALE", "SUM", "fraction_of", "item_ended", "progress"]

#: the unit of the shared integers: millionths of an item
SCALE = 1_000_000
#: ``slots[2]`` of a coroutine worker: ``slots[4]`` is the sum over the items it runs
SUM = -2

_threads = _contexts._threads
_quick = _contexts.QUICK.get


def progress(fraction: float) -> None:
    """Tell the caller's progress bar how much of the current item is done.

    Call it from inside a task, as often as you like (a tight loop is fine: a call costs a few
    hundred nanoseconds and sends nothing). The bar then shows the whole items done plus the
    fractions of the items in flight, as in ``12.4/100``. Outside a worker (the function called
    directly, in a test) it does nothing.

    Args:
        fraction: how much of the current item is done, from 0 to 1. Values outside are clamped
            (NaN counts as 0). Each item starts from 0: its last report no longer counts once it
            has ended.

    Raises:
        TypeError: ``fraction`` is not a number.

    Example:
        ```python
        import mtasklite_like
        from mtasklite_like.threads import pqdm

        def work(n):
            total = 0
            for i in range(n):
                total += i * i
                mtasklite_like.progress((i + 1) / n)
            return total

        assert list(pqdm([1000, 2000], work, n_jobs=2, disable=True)) == [332833500, 2664667000]
        ```

    Where the fractions are not seen: from a Ray actor on another machine than the caller (the
    shared integers live in this machine's memory), and in a coroutine worker, from code that is
    not the item's coroutine (a thread it started).
    """
    # Every line here runs per call, possibly in a task's innermost loop: kept to the fewest steps.
    try:
        if not 0.0 <= fraction <= 1.0:
            fraction = 1.0 if fraction > 1.0 else 0.0  # NaN compares false both ways: 0
    except TypeError:
        raise TypeError(
            f"progress() takes the fraction of the item done, a number from 0 to 1, not "
            f"{type(fraction).__name__}"
        ) from None
    context = _quick() or _threads.context or _contexts._process
    if context is None:
        return
    value = floor(fraction * 1_000_000)  # SCALE, as a literal; floor() converts faster than int()
    slots = context.slots
    if context.fractions is not None:
        _report_item(context, value)
        return
    position = slots[1]
    if position == context.tagged:
        slots[4] = value  # the item that reported before (the batch is the same: see begin())
    else:
        # The fraction first, then whose it is, the batch id last: a reader, which reads them in
        # the opposite order, never pairs the new item with the fraction of an old one.
        slots[4] = value
        slots[3] = position
        slots[2] = slots[0]
        context.tagged = position
    if context.tick is not None:
        context.tick()


def _report_item(context: WorkerContext, value: int) -> None:
    """A coroutine worker: the item's fraction, and the new sum over the items in flight."""
    item = RUNNING.get()
    if item is None or _running_loop() is None:
        # Not an item's coroutine, or a thread it started (``asyncio.to_thread`` copies the item's
        # context variables): only the loop's thread updates the sum, so two never do at once.
        return
    fractions = context.fractions
    assert fractions is not None
    total = context.fraction_sum + value - fractions.get(item, 0)
    fractions[item] = value
    context.fraction_sum = total
    slots = context.slots
    slots[4] = total
    slots[2] = SUM


def item_ended(context: WorkerContext, item: tuple[int, int]) -> None:
    """A coroutine worker's item ended: its fraction no longer counts (called only once some item
    of the worker reported progress, and before the item's batch is reported)."""
    fractions = context.fractions
    assert fractions is not None
    value = fractions.pop(item, None)
    if value is not None:
        context.fraction_sum -= value
        context.slots[4] = context.fraction_sum


def fraction_of(slots: Sequence[int]) -> float:
    """The fraction of an item (a coroutine worker: of its items, added up) that one worker's
    tasks reported, read from its shared ``slots`` in the caller; 0.0 when none counts."""
    tag = slots[2]
    if tag == -1:
        return 0.0  # never reported, or its batch is over
    position = slots[3]
    value = slots[4]
    if tag == SUM:
        return max(value, 0) / SCALE
    if tag < 0 or tag != slots[0] or position != slots[1]:
        return 0.0  # reported by an item that has ended
    return value / SCALE
