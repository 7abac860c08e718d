"""In the caller: a worker's record (or warning), handed to the caller's logging (or warnings).

A record comes back as the caller's own would be handled: by the logger of its name, if that logger
is enabled for its level now (``isEnabledFor``: the caller's levels and ``logging.disable``), through
the logger's filters and the handlers it and its parents have (``Logger.handle``), with no handler
anywhere meaning ``logging.lastResort``, as for any record. Its ``worker``, ``item``, ``process``,
``thread``, time and place are the worker's.

A warning is issued again with ``warnings.warn_explicit`` at the worker's file and line, under its
category (``UserWarning`` when the category cannot be found or made here), its text followed by
where it ran: ``"... (worker 1, item 17)"``. The caller's filters apply to it; each warning a worker
let through is issued once (no registry is kept here: the worker's own filters already decided
what ``"default"`` or ``"once"`` let through there). A filter that turns it into an error in the
caller raises it from the run, as the run's other errors are.
"""

from __future__ import annotations

import importlib
import logging
import warnings
from typing import Any

from .forward import category_of
from .records import WARNING_KEY, unpack

__all__ = ["reemit"]

#: the caller's loggers by name (``logging.getLogger`` takes the module's lock on every call)
_loggers: dict[str, logging.Logger] = {}


def reemit(packed: tuple[Any, ...]) -> None:
    """Hand a worker's record, in its plain form (``records.pack``), to the caller's logging."""
    try:
        record = unpack(packed)
        if WARNING_KEY in record.__dict__:
            warning = record.__dict__[WARNING_KEY]
        else:
            name = record.name
            logger = _loggers.get(name)
            if logger is None:
                logger = _loggers[name] = logging.getLogger(None if name == "root" else name)
            if logger.isEnabledFor(record.levelno):
                logger.handle(record)
            return
    except Exception:
        return  # a record that cannot be handled here is dropped, as a failing handler's is
    _warn(warning, record.__dict__.get("worker"), record.__dict__.get("item"))


def _warn(parts: tuple[Any, ...], worker: int | None, item: int | None) -> None:
    module_name, qualname, text, filename, lineno, module = parts
    where = f"worker {worker}" if item is None else f"worker {worker}, item {item}"
    category = category_of(module_name, qualname)
    if category is None:
        try:
            importlib.import_module(module_name)
        except Exception:
            pass
        category = category_of(module_name, qualname)
    message: Warning = UserWarning(f"{qualname}: {text} ({where})")
    if category is not None:
        try:
            message = category(f"{text} ({where})")
        except Exception:  # a category whose constructor takes other arguments
            pass
    if module is None:  # (None given as the module makes warn_explicit show nothing)
        warnings.warn_explicit(message, type(message), filename, lineno)
    else:
        warnings.warn_explicit(message, type(message), filename, lineno, module=module)
