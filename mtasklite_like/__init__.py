"""mtasklite_like: turn a slow ``for`` loop into a parallel one, on threads or processes.

Workers are fed through bounded queues, results come back lazily (in input order or as they
finish), stateful workers are built inside each worker with ``@delayed_init``, and the
``processes.pqdm`` / ``threads.pqdm`` wrappers add a progress bar. The API is a drop-in for the
``mtasklite`` package.
"""

# Ctrl-C during this import, when it is the start of `python -m mtasklite_like` or of the
# `mtasklite-like` script, exits with code 130 and says how to continue, instead of a traceback;
# any other importer gets its KeyboardInterrupt. The check is made only once interrupted.
try:
    from ._engine.results import ResultIterator
    from ._engine.stats import RunStats, WorkerStats
    from ._errors import (
        DeferredExceptions,
        MemoryPressureError,
        MemoryPressureWarning,
        MtaskliteLikeError,
        RemoteTraceback,
        TaskPicklingError,
        TaskTimeoutError,
        WorkerDiedError,
        WorkerInitError,
        WorkerMemoryError,
    )
    from ._journal import (
        JournaledIterator,
        JournalError,
        JournalMismatchError,
        JournalPicklingError,
        JournalState,
        JournalWarning,
        read_journal,
    )
    from ._memory.watch import WorkerMemory
    from ._options import PoolConfig
    from ._pool import Pool
    from ._version import __version__
    from ._worker.delayed import DelayedObject
    from ._worker.progress import progress
    from .constants import ArgumentPassing, ExceptionBehaviour, WorkerDeath

    # From the public module, as mtasklite does: importing it first binds the package's name
    # `delayed_init` to the module, and this line rebinds it to the decorator for good (a later
    # `import mtasklite_like.delayed_init` finds the module loaded and leaves the name alone).
    from .delayed_init import delayed_init
    from .utils import is_exception
except KeyboardInterrupt:
    from ._cli.interrupt import exit_if_command_line

    exit_if_command_line()
    raise

__all__ = [
    "ArgumentPassing",
    "DeferredExceptions",
    "DelayedObject",
    "ExceptionBehaviour",
    "JournalError",
    "JournalMismatchError",
    "JournalPicklingError",
    "JournalState",
    "JournalWarning",
    "JournaledIterator",
    "MemoryPressureError",
    "MemoryPressureWarning",
    "MtaskliteLikeError",
    "Pool",
    "PoolConfig",
    "RemoteTraceback",
    "ResultIterator",
    "RunStats",
    "TaskPicklingError",
    "TaskTimeoutError",
    "WorkerDeath",
    "WorkerDiedError",
    "WorkerInitError",
    "WorkerMemory",
    "WorkerMemoryError",
    "WorkerStats",
    "__version__",
    "delayed_init",
    "is_exception",
    "progress",
    "read_journal",
]
