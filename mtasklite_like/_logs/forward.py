"""In a worker process or a Ray actor: its log records and warnings, handed on to the caller.

What the worker takes over from the caller
    :func:`caller_logging`, read by the backend in the caller each time it starts a worker (so a
    worker started again sees the caller's settings as they are then), holds the levels the
    caller set (its root logger's, every logger's it gave one, ``logging.disable``) and its warning
    filters, in builtins only. The worker sets them before anything of the user's runs there, so
    its loggers are enabled for what the caller's are. The rule for what a worker sends: a record
    whose logger, with the caller's levels as they were when the worker started, is enabled for
    its level. The caller looks again when it arrives (``reemit``): levels changed since apply,
    and so do its loggers' filters and its handlers' own levels. A filter on a category the worker
    has not imported is left out there (the caller's filters apply when the warning is issued
    again anyway).

Handlers
    Under ``fork`` a worker process starts with copies of the caller's handlers: they would write
    each record a second time. So a process worker detaches every handler it started with
    (``detach``); handlers its initializer or its tasks add are kept, and see the records too. A
    Ray actor is no copy of the caller, and Ray's own handlers are left alone. The forwarding
    handler goes on the root logger, and on each logger that had handlers and does not propagate.
    A process forked from the worker (by a task, or a pool of the worker's own) does not send
    through the worker's pipe: the handler hands its records to ``logging.lastResort`` there.

Sending
    ``deliver`` takes each record's plain form (``records.pack``) as it is emitted: a process worker
    writes it on its result pipe at once (under the lock its batches' results are written under),
    so a worker that dies loses at most the record it was writing; a Ray actor keeps it for the
    result of its current call (:class:`Held`). A record that cannot be sent is dropped: logging
    never fails a task. A record emitted while another is being packed in the same thread (by a
    ``__str__`` that logs) is dropped too.

Warnings
    ``warnings.showwarning`` is replaced: a warning the worker's filters let through is sent as a
    record of ``py.warnings`` carrying its parts (``records.WARNING_KEY``), and is not printed in
    the worker; the caller issues it again (``reemit``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, cast

from .records import WARNING_KEY, install_record_factory, pack

__all__ = ["CallerLogging", "Held", "caller_logging", "category_of", "forward"]

#: what ``deliver`` receives: a record's plain form
Deliver = Callable[[tuple[Any, ...]], None]
#: a warning filter's message or module: None, a string matched whole, or ``(pattern, flags)``
_Match = str | tuple[str, int] | None
#: a warning filter, as it travels: action, message, category (module, qualified name), module, line
_Filter = tuple[str, _Match, str, str, _Match, int]


@dataclass(frozen=True)
class CallerLogging:
    """The caller's logging settings a worker takes over when it starts (see the module docstring)."""

    #: ``(logger name, level)``, the root logger as ``""``
    levels: tuple[tuple[str, int], ...]
    #: ``logging.disable``'s level
    disable: int
    filters: tuple[_Filter, ...]


def caller_logging() -> CallerLogging:
    """The settings of this process's logging a worker takes over."""
    levels = [("", logging.getLogger().level)]
    for name, logger in list(logging.Logger.manager.loggerDict.items()):
        # Ray's own loggers are Ray's to set in its processes.
        if isinstance(logger, logging.Logger) and logger.level and name.partition(".")[0] != "ray":
            levels.append((name, logger.level))
    return CallerLogging(tuple(levels), logging.getLogger().manager.disable, _filters_now())


def _filters_now() -> tuple[_Filter, ...]:
    out = []
    for action, message, category, module, lineno in warnings.filters:
        if not isinstance(category, type):
            continue
        out.append((action, _match_of(message), category.__module__, category.__qualname__, _match_of(module),
                    lineno))
    return tuple(out)


def _match_of(value: Any) -> _Match:
    if value is None or isinstance(value, str):
        return value
    return (value.pattern, value.flags)


def category_of(module: str, qualname: str) -> type[Warning] | None:
    """The warning category named so, if it is imported in this process."""
    found: Any = sys.modules.get(module)
    for part in qualname.split("."):
        found = getattr(found, part, None)
    return found if isinstance(found, type) and issubclass(found, Warning) else None


def _take_filters(filters: tuple[_Filter, ...]) -> None:
    if filters == _filters_now():
        return  # a forked worker has them already (and keeps the warnings it has seen)
    rebuilt = []
    for action, message, module_name, qualname, module, lineno in filters:
        category = category_of(module_name, qualname)
        if category is not None:
            rebuilt.append((action, _compiled(message), category, _compiled(module), lineno))
    warnings.resetwarnings()
    cast(list[Any], warnings.filters).extend(rebuilt)


def _compiled(match: _Match) -> Any:
    if match is None or isinstance(match, str):
        return match
    return re.compile(*match)


class _Forwarder(logging.Handler):
    """Hands every record that reaches it to ``deliver``; the worker's warnings too."""

    def __init__(self, worker: int, deliver: Deliver) -> None:
        super().__init__()
        self.worker = worker
        self.deliver = deliver
        #: set in a process forked from the worker: nothing is sent from there
        self.orphaned = False
        self._busy = threading.local()
        self._showwarning = warnings.showwarning
        #: module names by file name, for warnings (looked up once per file)
        self._modules: dict[str, str | None] = {}

    def handle(self, record: logging.LogRecord) -> bool:
        # No lock of the handler's own: ``deliver`` serialises what must be.
        if self.orphaned:
            last = logging.lastResort
            if last is not None and record.levelno >= last.level:
                last.handle(record)
            return False
        busy = self._busy
        if getattr(busy, "on", False):
            return False
        busy.on = True
        try:
            if self.filters and not self.filter(record):
                return False
            packed = pack(record, self.worker)
            self.deliver(packed)
        except OSError:
            return False  # the pipe is closed: the caller has stopped this worker, nobody listens
        except Exception:
            self.handleError(record)  # says so on the worker's stderr, as logging does
            return False
        finally:
            busy.on = False
        return True

    def emit(self, record: logging.LogRecord) -> None:
        self.handle(record)

    def handleError(self, record: logging.LogRecord) -> None:
        if not self.orphaned:
            super().handleError(record)

    def showwarning(self, message: Warning | str, category: type[Warning], filename: str, lineno: int,
                    file: Any = None, line: str | None = None) -> None:
        """In place of ``warnings.showwarning``: the warning travels to the caller."""
        if self.orphaned or file is not None:
            self._showwarning(message, category, filename, lineno, file, line)
            return
        try:
            text = str(message)
            record = logging.LogRecord("py.warnings", logging.WARNING, filename, lineno,
                                       f"{category.__name__}: {text}", None, None)
            record.__dict__[WARNING_KEY] = (
                category.__module__, category.__qualname__, text, filename, lineno, self._module_of(filename)
            )
            self.handle(record)
        except Exception:
            self._showwarning(message, category, filename, lineno, file, line)

    def _module_of(self, filename: str) -> str | None:
        modules = self._modules
        if filename not in modules:
            modules[filename] = next(
                (name for name, m in list(sys.modules.items()) if getattr(m, "__file__", None) == filename),
                None,
            )
        return modules[filename]


#: the forwarding handlers of this process, orphaned in a process forked from it
_forwarders: list[_Forwarder] = []


def _orphan() -> None:
    for forwarder in _forwarders:
        forwarder.orphaned = True
    _forwarders.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_orphan)


def forward(settings: CallerLogging, worker: int, deliver: Deliver, *, detach: bool) -> None:
    """Make this process (worker ``worker``) hand its records and warnings to ``deliver``, with the
    caller's ``settings``; ``detach``: drop the handlers it started with (a process worker)."""
    install_record_factory()
    for name, level in settings.levels:
        logging.getLogger(name or None).setLevel(level)
    logging.disable(settings.disable)
    _take_filters(settings.filters)
    forwarder = _Forwarder(worker, deliver)
    root = logging.getLogger()
    if detach:
        loggers = [logger for logger in list(logging.Logger.manager.loggerDict.values())
                   if isinstance(logger, logging.Logger)]
        for logger in [root, *loggers]:
            if logger.handlers:
                for handler in list(logger.handlers):
                    logger.removeHandler(handler)
                if not logger.propagate and logger is not root:
                    logger.addHandler(forwarder)
    root.addHandler(forwarder)
    warnings.showwarning = forwarder.showwarning
    _forwarders.append(forwarder)


class Held:
    """A Ray actor's records, kept until its current call returns them (at most ``limit``; past it
    they are counted, and a record of ``mtasklite_like`` says how many were dropped)."""

    def __init__(self, worker: int, limit: int = 100_000) -> None:
        self._worker = worker
        self._limit = limit
        self._records: list[tuple[Any, ...]] = []
        self._dropped = 0
        self._lock = threading.Lock()

    def put(self, packed: tuple[Any, ...]) -> None:
        with self._lock:
            if len(self._records) < self._limit:
                self._records.append(packed)
            else:
                self._dropped += 1

    def take(self) -> list[tuple[Any, ...]]:
        """The records kept so far (the list is emptied)."""
        with self._lock:
            records, self._records = self._records, []
            dropped, self._dropped = self._dropped, 0
        if dropped:
            note = logging.LogRecord(
                "mtasklite_like", logging.WARNING, __file__, 0,
                f"{dropped} log records of this worker were dropped: more than {self._limit} between two "
                "of its batches", None, None,
            )
            records.append(pack(note, self._worker))
        return records

