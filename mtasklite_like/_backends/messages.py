"""What the caller and its workers tell each other: one named type per kind of message.

Process workers exchange the first ten through their pipes (``processes``, framed by ``wire``);
thread workers take ``RunBatch`` from their inbox as it is (``threads``); Ray actors return the
last three, or ``InitFailed``, from their calls (``ray_worker``). The receiving side dispatches on
the type.

On a process worker's pipes a message travels as a plain tuple, its kind's number then its fields
(:func:`to_wire`, :func:`from_wire`). Pickling the object itself would write a reference to its
class into every message (about 50 bytes), which the receiver looks up again; dill would write a
``NamedTuple``'s class by value. Measured with one item per batch through two process workers
(``chunk_size=1``, ``x * x``), the caller spent 23% more CPU time per item with the objects
pickled than with the int-tagged tuples this replaces, and 7% more with these tuples; with items
in batches (the default) neither difference shows. The tuple starts with integers (the kind, a
batch id), which :func:`~.wire.leading_fields` reads from a message that cannot be unpickled.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, fields
from operator import attrgetter
from typing import Any

__all__ = [
    "ActorDied",
    "ActorDone",
    "ActorReady",
    "Done",
    "DoneRaw",
    "Fatal",
    "InitFailed",
    "Log",
    "Message",
    "Ready",
    "Retire",
    "RunBatch",
    "Stop",
    "Unreadable",
    "from_wire",
    "to_wire",
    "wire_code",
]

#: how a failed item travels back: its position in the batch, the exception, the traceback text
PackedFailure = tuple[int, BaseException, str]


class Message:
    """The base of every message."""

    __slots__ = ()


# -- the caller to a worker ---------------------------------------------------------------------------


@dataclass(slots=True)
class RunBatch(Message):
    """Run ``items`` (the input positions ``indices``) as batch ``batch_id``.

    ``unsendable``: some items are stand-ins for items that could not be pickled, which fail alone.
    ``raw``: send the results pickled on their own (``DoneRaw``), for a run that keeps them as bytes
    (``Backend.raw_results``). Both are False for thread workers, which are handed objects.
    """

    batch_id: int
    indices: Sequence[int]
    items: list[Any]
    unsendable: bool = False
    raw: bool = False


@dataclass(slots=True)
class Stop(Message):
    """Finish: end once the batches received before this one are done."""


# -- a process worker to the caller -------------------------------------------------------------------


@dataclass(slots=True)
class Ready(Message):
    """The worker has built its object and takes batches from now on; building it took
    ``init_s`` seconds, and it was ready at ``at`` (``time.monotonic``)."""

    init_s: float = 0.0
    at: float | None = None


@dataclass(slots=True)
class InitFailed(Message):
    """The worker could not start (its object, its initializer or its environment raised); also a
    Ray actor's answer to ``ready()``."""

    error: BaseException
    traceback: str


@dataclass(slots=True)
class Done(Message):
    """Batch ``batch_id`` ran: its results in item order (None where an item failed), its
    ``failures``, the seconds it took, and the seconds the worker waited for it (``waited``)."""

    batch_id: int
    results: list[Any]
    failures: Sequence[PackedFailure]
    elapsed: float
    waited: float = 0.0


@dataclass(slots=True)
class DoneRaw(Message):
    """Batch ``batch_id`` ran without failures; ``raw`` is its results list, pickled on its own
    (asked for by ``RunBatch.raw``)."""

    batch_id: int
    raw: bytes
    elapsed: float
    waited: float = 0.0


@dataclass(slots=True)
class Unreadable(Message):
    """The worker could not unpickle batch ``batch_id``; ``error`` says why. It goes on with the
    next one."""

    batch_id: int
    error: BaseException
    traceback: str


@dataclass(slots=True)
class Fatal(Message):
    """A task raised an exception the worker does not survive (``SystemExit``, ...); its death
    follows."""

    error: BaseException
    traceback: str


@dataclass(slots=True)
class Retire(Message):
    """The worker's own memory is over its limit (``max_worker_memory``): it has answered the batch
    it was running (with the results of the items it ran, up to the one that crossed the limit)
    and ends, taking nothing more. ``memory``: its own memory measured, bytes; ``peak``: its
    largest resident size (None: not known)."""

    memory: int
    peak: int | None


@dataclass(slots=True)
class Log(Message):
    """A log record the worker emitted, or a warning it issued, in its plain form (``_logs.records``),
    sent as it is emitted (``forward_logs``)."""

    record: tuple[Any, ...]


# -- what a Ray actor's calls return ------------------------------------------------------------------


@dataclass(slots=True)
class ActorReady(Message):
    """``ready()``: the actor has built its object; its process id, and whether it writes the
    caller's progress segment (False on another machine). Otherwise ``ready()`` returns
    ``InitFailed``."""

    pid: int
    writes_progress: bool
    init_s: float = 0.0
    #: log records emitted while the actor was built, in their plain form (``_logs.records``)
    logs: Sequence[tuple[Any, ...]] = ()


@dataclass(slots=True)
class ActorDone(Message):
    """``run()``: the batch ran: results, failures, seconds, and the bytes the results pickle to.
    ``retire``: the actor went over its memory limit (``Retire``'s memory and peak): the results are
    those of the items it ran, up to the one that crossed the limit, and it runs nothing more."""

    results: list[Any]
    failures: Sequence[PackedFailure]
    elapsed: float
    nbytes: int
    retire: tuple[int, int | None] | None = None
    waited: float = 0.0
    #: log records emitted since the actor's previous answer, in their plain form (``_logs.records``)
    logs: Sequence[tuple[Any, ...]] = ()


@dataclass(slots=True)
class ActorDied(Message):
    """``run()``: a task raised an exception a worker does not survive, at ``position`` of the
    batch (-1: unknown); ``cause`` in words. The caller replaces the actor."""

    position: int
    cause: str
    error: BaseException
    traceback: str
    logs: Sequence[tuple[Any, ...]] = ()


# -- on a process worker's pipes ----------------------------------------------------------------------

#: the kinds that cross a process worker's pipes, each numbered by its place here
_PIPE_KINDS: tuple[type[Message], ...] = (
    RunBatch, Stop, Ready, InitFailed, Done, DoneRaw, Unreadable, Fatal, Retire, Log
)
_CODES: dict[type[Message], int] = {kind: code for code, kind in enumerate(_PIPE_KINDS)}


def _field_getter(kind: type[Message]) -> Callable[[Message], tuple[Any, ...]]:
    names = [f.name for f in fields(kind)]  # type: ignore[arg-type]  # every kind is a dataclass
    if len(names) > 1:
        return attrgetter(*names)
    return lambda msg: tuple([getattr(msg, name) for name in names])


_FIELDS = {kind: _field_getter(kind) for kind in _PIPE_KINDS}


def to_wire(msg: Message) -> tuple[Any, ...]:
    """What ``msg`` travels as on a pipe: its kind's number, then its fields in order."""
    kind = type(msg)
    return (_CODES[kind], *_FIELDS[kind](msg))


def from_wire(value: tuple[Any, ...]) -> Message:
    """The message :func:`to_wire` made ``value`` from."""
    kind: Callable[..., Message] = _PIPE_KINDS[value[0]]
    return kind(*value[1:])


def wire_code(kind: type[Message]) -> int:
    """The number ``kind`` travels under (the first element of :func:`to_wire`'s tuple)."""
    return _CODES[kind]
