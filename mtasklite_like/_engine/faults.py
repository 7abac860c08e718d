"""Faults: a worker that died, a task past its deadline, a worker that could not start.

:func:`settle_death` and :func:`settle_overdue` decide, item by item, what a fault does to the
items the worker held: the item that was running gets the error (or a retry), the others run
again elsewhere free of charge, since their results, if any, died with the worker. The error
builders below name the worker, how it ended and the input items concerned, so the user can find
the culprit without a debugger.
"""

from __future__ import annotations

from collections.abc import Sequence

from .._backends.base import WorkerDied
from .._errors import TaskTimeoutError, WorkerDiedError, WorkerInitError, WorkerMemoryError, name_item
from .._memory.units import format_bytes
from .._memory.watch import MemoryKill
from .ledger import Ledger, Msg
from .worker_set import WorkerSet

__all__ = [
    "culprit",
    "death_error",
    "init_failed_error",
    "init_timeout_error",
    "item_death_error",
    "memory_error",
    "overrun_error",
    "settle_death",
    "settle_overdue",
    "timeout_error",
]

Held = Sequence[tuple[int, Msg]]


def settle_death(
    event: WorkerDied, ledger: Ledger, workers: WorkerSet, *, restart: bool, memory: MemoryKill | None = None
) -> tuple[list[Msg], WorkerDiedError | None]:
    """Account for a dead worker's items; return the messages it held and an error that ends the
    run (None when the run goes on with a fresh worker).

    ``memory``: the pool killed the worker itself, for crossing ``kill_worker_memory``. The worker
    is then always replaced, and the item it was running fails with ``WorkerMemoryError`` (retries
    apply), as if the task had raised it: the kill was the pool's own decision, not a crash.
    """
    held = ledger.take(event.worker)
    msgs = [m for _, m in held]
    if not restart and memory is None:
        return msgs, death_error(event, held, restarting=False)
    running = culprit(event, held)
    # Deaths blamed on an item are bounded by its retries; deaths nobody can be blamed for (a
    # crash while building the object, say) could repeat forever, so they are counted.
    if running is None:
        in_a_row = workers.death_unblamed()
        if in_a_row > max(3, 2 * workers.n_workers):
            error = death_error(event, held, restarting=True)
            error.args = (
                f"workers keep dying ({in_a_row} deaths in a row, none while running an item, none "
                f"finished a batch); the last: {error.args[0]}",
            )
            return msgs, error
    workers.replace(event.worker, kill=True, reason="death" if memory is None else "memory kill")
    target = event.running if running is not None else None
    for msg_id, msg in held:
        batch = msg.batch
        for k, pos in enumerate(msg.item_positions()):
            if (msg_id, k) == target:
                index, item = batch.indices[pos], batch.items[pos]
                error = item_death_error(event, index, item) if memory is None else (
                    memory_error(event, memory, index, item)
                )
                ledger.fail(batch, pos, error)
            else:
                # Not the culprit: either never started, or it ran earlier in the same batch and
                # its result died with the worker. Either way it goes to another worker, free of
                # charge (a finished result must not be lost; see fault_tolerance.md). With no
                # culprit at all (a kill between two batches, or while idle), nobody pays: such
                # deaths are bounded by the count of deaths in a row above.
                ledger.requeue(batch, pos)
    return msgs, None


def settle_overdue(now: float, timeout: float, ledger: Ledger, workers: WorkerSet) -> list[Msg]:
    """Stop workers whose task has run ``timeout`` seconds; their items fail (or are retried).

    Returns the messages they held.
    """
    overdue = set()
    for m in ledger.in_flight.values():
        started = workers.task_started(m.worker, m.sent_at)
        if started is not None and now - started >= timeout:
            overdue.add(m.worker)
    killed = workers.capabilities.kills_tasks
    msgs: list[Msg] = []
    for worker in sorted(overdue):
        held = ledger.take(worker)
        workers.replace(worker, kill=True, reason="timeout")
        for _, msg in held:
            for pos in msg.item_positions():
                error = timeout_error(msg.batch.indices[pos], timeout, worker, killed=killed)
                ledger.fail(msg.batch, pos, error)
            msgs.append(msg)
    return msgs


def _who(event: WorkerDied) -> str:
    return f"worker {event.worker}" + (f" (pid {event.pid})" if event.pid is not None else "")


def culprit(event: WorkerDied, held: Held) -> int | None:
    """Input index of the item a dead worker was running, when it is known."""
    running_msg, running_k = event.running or (-1, -1)
    for msg_id, msg in held:
        if msg_id == running_msg:
            positions = msg.item_positions()
            if 0 <= running_k < len(positions):
                return msg.batch.indices[positions[running_k]]
    return None


def death_error(event: WorkerDied, held: Held, *, restarting: bool) -> WorkerDiedError:
    """The error that ends a run when a worker dies (or keeps dying)."""
    indices = [i for _, m in held for i in m.indices()]
    items = [x for _, m in held for x in m.items()]
    shown = ", ".join(f"#{i}: {item!r:.60}" for i, item in zip(indices[:5], items[:5]))
    more = f" and {len(indices) - 5} more" if len(indices) > 5 else ""
    holding = f"while holding input item(s) {shown}{more}" if indices else "while idle"
    running = culprit(event, held)
    if running is not None:
        holding = f"while running input item #{running} ({holding})"
    hint = "" if restarting else ". Pass on_worker_death='restart' to replace dead workers and go on"
    error = WorkerDiedError(
        f"{_who(event)} died unexpectedly ({event.cause}) {holding}{hint}",
        worker_index=event.worker,
        pid=event.pid,
        exitcode=event.exitcode,
        indices=indices,
        items=items,
    )
    error.__cause__ = event.error
    if running is not None:
        name_item(error, running)
    return error


def item_death_error(event: WorkerDied, index: int, item: object) -> WorkerDiedError:
    """The error of the item a dead worker was running (when the run goes on)."""
    error = WorkerDiedError(
        f"{_who(event)} died unexpectedly ({event.cause}) while running input item #{index}",
        worker_index=event.worker,
        pid=event.pid,
        exitcode=event.exitcode,
        indices=[index],
        items=[item],
    )
    error.__cause__ = event.error
    return error


def memory_error(event: WorkerDied, kill: MemoryKill, index: int, item: object) -> WorkerMemoryError:
    """The error of the item that made its worker cross ``kill_worker_memory``."""
    error = WorkerMemoryError(
        f"input item #{index} took {_who(event)} to {format_bytes(kill.memory)} of its own memory, over "
        f"kill_worker_memory={format_bytes(kill.limit)}: the pool killed the worker and replaced it. "
        "Raise kill_worker_memory, or lower what one item needs",
        memory=kill.memory,
        limit=kill.limit,
        worker_index=event.worker,
        pid=event.pid,
        exitcode=event.exitcode,
        indices=[index],
        items=[item],
    )
    return error


def timeout_error(index: int, timeout: float, worker: int, *, killed: bool) -> TaskTimeoutError:
    """An item overran ``task_timeout`` and its worker was stopped."""
    how = "killed" if killed else "abandoned (a thread cannot be killed)"
    return TaskTimeoutError(
        f"input item #{index} ran longer than task_timeout={timeout} s; "
        f"worker {worker} was {how} and replaced"
    )


def overrun_error(index: int, timeout: float, elapsed: float) -> TaskTimeoutError:
    """An item overran ``task_timeout`` but finished before its deadline was checked."""
    return TaskTimeoutError(
        f"input item #{index} ran longer than task_timeout={timeout} s: it finished after "
        f"{elapsed:.3g} s, and its result was dropped"
    )


def init_timeout_error(worker: int, timeout: float) -> WorkerInitError:
    return WorkerInitError(
        f"worker {worker} did not finish starting (initializer and object construction) "
        f"within init_timeout={timeout} s",
        worker_index=worker,
    )


def init_failed_error(worker: int, error: BaseException) -> WorkerInitError:
    exc = WorkerInitError(
        f"worker {worker} failed to start: {type(error).__name__}: {error}", worker_index=worker
    )
    exc.__cause__ = error
    return exc
