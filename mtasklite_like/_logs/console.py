"""Records written to the console while a progress bar is drawn there, without breaking the bar.

A console handler writing a line while a bar is drawn on the terminal writes it after the bar's
text, and the bar is drawn again on the next line: the output fills with broken bars. So while a
bar is shown (:func:`route_console_through`, from when it is made until it is closed), every
console handler (a ``logging.StreamHandler`` on standard output or error, file handlers excepted)
of every logger, and ``logging.lastResort`` (what writes a record when no handler is set), is
stood in for by one that formats the record as the handler would (its formatter, level and
filters) and writes it with the bar class's ``write``: the bars on that stream are cleared, the
line written, the bars drawn again. The handlers are put back when the last bar shown closes.

Handlers added while a bar is shown are not stood in for. Warnings printed by ``warnings`` are not
records: with ``logging.captureWarnings(True)`` they are, and are written through the bar too.
"""

from __future__ import annotations

import logging
import sys
import threading
import weakref
from collections.abc import Callable
from typing import Any

__all__ = ["route_console_through"]

_lock = threading.Lock()
#: bars shown now that route the console
_shown = 0
#: ``(logger, handler, stand-in)`` for each handler stood in for; for ``lastResort`` the logger is None
_stood_in: list[tuple[logging.Logger | None, logging.Handler, logging.Handler]] = []


class _ThroughBar(logging.Handler):
    """Formats a record as ``handler`` would and writes it with ``write`` (a bar class's)."""

    def __init__(self, handler: logging.StreamHandler[Any], write: Callable[..., Any]) -> None:
        super().__init__(handler.level)
        self.handler = handler
        self.filters = handler.filters  # the same list: filters it gets meanwhile apply too
        self._write = write

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._write(self.handler.format(record), file=self.handler.stream)
        except RecursionError:
            raise
        except Exception:
            self.handleError(record)


def _is_console(handler: logging.Handler) -> bool:
    if not isinstance(handler, logging.StreamHandler) or isinstance(handler, logging.FileHandler):
        return False
    stream = getattr(handler, "stream", None)
    return stream is not None and stream in (sys.stdout, sys.stderr, sys.__stdout__, sys.__stderr__)


def _stand_in(write: Callable[..., Any]) -> None:
    root = logging.getLogger()
    loggers = [root, *(logger for logger in list(logging.Logger.manager.loggerDict.values())
                       if isinstance(logger, logging.Logger))]
    for logger in loggers:
        handlers = list(logger.handlers)
        changed = False
        for i, handler in enumerate(handlers):
            if _is_console(handler):
                stand_in = _ThroughBar(handler, write)  # type: ignore[arg-type]
                _stood_in.append((logger, handler, stand_in))
                handlers[i] = stand_in
                changed = True
        if changed:
            logger.handlers = handlers  # one assignment: a record being handled meanwhile sees either list
    last = logging.lastResort
    if last is not None and _is_console(last):
        stand_in = _ThroughBar(last, write)  # type: ignore[arg-type]
        _stood_in.append((None, last, stand_in))
        logging.lastResort = stand_in


def _put_back() -> None:
    for logger, handler, stand_in in reversed(_stood_in):
        if logger is None:
            if logging.lastResort is stand_in:
                logging.lastResort = handler
            continue
        handlers = list(logger.handlers)
        if stand_in in handlers:
            handlers[handlers.index(stand_in)] = handler
            logger.handlers = handlers
    _stood_in.clear()


def _enter(write: Callable[..., Any]) -> None:
    global _shown
    with _lock:
        if _shown == 0:
            _stand_in(write)
        _shown += 1


def _leave() -> None:
    global _shown
    with _lock:
        _shown -= 1
        if _shown == 0:
            _put_back()


def route_console_through(bar: Any) -> None:
    """Write console logging through ``bar``'s class's ``write`` (``tqdm.write``) until ``bar`` is
    closed (its ``close()``, which its collection calls too). Nothing is done for a disabled bar, or
    a bar class without ``write``."""
    write = getattr(type(bar), "write", None)
    if getattr(bar, "disable", False) or not callable(write):
        return
    _enter(write)
    ref = weakref.ref(bar)  # the bar's close must not keep the bar alive
    shown_once = [True]  # popped by the first close

    def close(*args: Any, **kwargs: Any) -> Any:
        shown = ref()
        try:
            if shown is not None:
                return type(shown).close(shown, *args, **kwargs)
            return None
        finally:
            try:
                shown_once.pop()
            except IndexError:
                pass
            else:
                _leave()

    try:
        bar.close = close
    except AttributeError:  # a bar class whose instances take no attribute: left as it is
        _leave()
