"""String constants for the ``argument_type`` and ``exception_behavior`` options.

The values are plain strings, so ``ArgumentPassing.AS_ARGS`` and ``'args'`` are interchangeable,
as they are in the APIs this package replaces.
"""

from __future__ import annotations

__all__ = ["ArgumentPassing", "ExceptionBehaviour", "WorkerDeath"]


class ArgumentPassing:
    """How each input item is passed to the worker."""

    #: ``worker(item)``
    AS_SINGLE_ARG = "single_arg"
    #: ``worker(*item)``
    AS_ARGS = "args"
    #: ``worker(**item)``
    AS_KWARGS = "kwargs"


class ExceptionBehaviour:
    """What the result iterator does when a task raises."""

    #: the exception object is yielded in place of the result
    IGNORE = "ignore"
    #: stop reading input and raise the exception at once
    IMMEDIATE = "immediate"
    #: yield exceptions in place of results, raise all of them together at the end
    DEFERRED = "deferred"


class WorkerDeath:
    """What the pool does when a worker process dies."""

    #: raise :class:`~mtasklite_like.WorkerDiedError` from the result iterator
    RAISE = "raise"
    #: replace the worker; the items it held get a ``WorkerDiedError`` result
    RESTART = "restart"
