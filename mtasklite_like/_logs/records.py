"""Log records as they travel: the ``worker`` and ``item`` attributes, and a record's plain form.

Attributes
    :func:`install_record_factory` chains a factory over the one in place (``logging``'s
    ``setLogRecordFactory``), once per process: every record made afterwards gets ``worker`` and
    ``item`` from the worker context of the code that emits it (``_worker.context.current``), None
    and None outside workers. So a caller's format string may name ``%(worker)s %(item)s`` for its
    own records too. A pool installs it when it is made (``forward_logs=True``), and a worker process
    or Ray actor in its turn, before anything of the user's runs there.

The plain form
    What a worker sends is a tuple of builtins, never the record: its logger's name, level,
    message (``getMessage()``: ``msg`` formatted with ``args``, which stay behind), the exception's
    text (``exc_info`` formatted, as a formatter would), the stack's text, the worker and the item
    it runs as the record is handled there (a record relayed from a pool inside the worker names
    the worker's own item, not the inner pool's), the standard attributes in ``logging``'s own
    order, then the other attributes a user added (``extra=``: strings, numbers, booleans and None
    as they are, anything else as its ``str()``; None when there are none). So it pickles,
    unpickles in any caller, and costs one tuple to pickle. :func:`unpack` makes the record again
    in the caller, through the caller's record factory when one is installed that is not ours over
    the default (what ``logging.makeLogRecord`` does), directly otherwise.

A warning travels as a record of the logger ``py.warnings`` that carries its parts under
:data:`WARNING_KEY` (``forward``); the caller issues it again (``reemit``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from operator import itemgetter
from typing import Any

from .._worker.context import current

__all__ = ["WARNING_KEY", "install_record_factory", "pack", "unpack"]

#: the added attribute under which a warning travels: ``(category's module, category's qualified
#: name, text, file name, line number, module name)``
WARNING_KEY = "mtasklite_like_warning"

_lock = threading.Lock()
#: the factory :func:`install_record_factory` installed in this process, and the one it chains over
_installed: Callable[..., logging.LogRecord] | None = None
_chained: Callable[..., logging.LogRecord] | None = None


def install_record_factory() -> None:
    """Give every record made from now on ``worker`` and ``item`` (once per process)."""
    global _installed, _chained
    with _lock:
        if _installed is not None:
            return
        previous = logging.getLogRecordFactory()

        def make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            attributes = record.__dict__
            context = current()
            if context is None:
                attributes["worker"] = attributes["item"] = None
            else:
                attributes["worker"] = context.worker
                attributes["item"] = context.item()
            return record

        logging.setLogRecordFactory(make_record)
        _installed, _chained = make_record, previous


_SAMPLE = logging.LogRecord("", logging.INFO, "", 0, "", None, None).__dict__
#: attributes the plain form carries in its head (the rest are copied as they are)
_HEAD = ("name", "levelno", "msg", "args", "exc_info", "exc_text", "stack_info")
#: standard attributes copied as they are, in this order, after the head
_COPIED = tuple(name for name in _SAMPLE if name not in _HEAD)
_copy = itemgetter(*_COPIED)
#: the attributes of the plain form, in order (the added ones follow, in a dict or None)
_KEYS = ("name", "levelno", "msg", "exc_text", "stack_info", "worker", "item", *_COPIED)
#: attributes that are not a user's: the standard ones, ours, and those formatters add
_KNOWN = frozenset(_SAMPLE) | {"worker", "item", "message", "asctime"}
#: a record with more attributes than this, ours left out, has some of a user's (or a formatter's)
_PLAIN_SIZE = len(_SAMPLE)
_AS_THEY_ARE = frozenset({str, int, float, bool, type(None)})
_formatter = logging.Formatter()


def pack(record: logging.LogRecord, worker: int) -> tuple[Any, ...]:
    """The plain form of ``record``, emitted in ``worker`` (see the module docstring)."""
    attributes = record.__dict__
    exc_text = record.exc_text
    if record.exc_info and not exc_text:
        exc_text = _formatter.formatException(record.exc_info)
    # The item this worker runs now, as the record reaches its handler (in the thread and context
    # that emit it: the item it was made in), not the record's own attribute: a record a pool
    # inside this worker relayed carries that pool's worker and item, and the caller wants ours.
    context = current()
    item = None if context is None else context.item()
    extras = None
    if len(attributes) - ("worker" in attributes) - ("item" in attributes) > _PLAIN_SIZE:
        added = attributes.keys() - _KNOWN
        if added:
            extras = {name: _plain(attributes[name]) for name in added}
            if WARNING_KEY in extras:
                extras[WARNING_KEY] = attributes[WARNING_KEY]  # builtins already
    return (record.name, record.levelno, record.getMessage(), exc_text, record.stack_info, worker, item,
            *_copy(attributes), extras)


def _plain(value: Any) -> Any:
    if type(value) in _AS_THEY_ARE:
        return value
    try:
        return str(value)
    except Exception:
        return f"<{type(value).__name__} that str() refused>"


def unpack(packed: tuple[Any, ...]) -> logging.LogRecord:
    """The record :func:`pack` made ``packed`` from, in the caller."""
    if len(packed) == len(_KEYS) + 1:
        attributes = dict(zip(_KEYS, packed))  # (the added attributes, last, are left out)
    else:  # another Python's record (a Ray actor's): only the head is known to be the same
        attributes = dict(_SAMPLE, levelname=logging.getLevelName(packed[1]))
        attributes.update(zip(_KEYS[:7], packed))
    attributes["args"] = attributes["exc_info"] = None
    extras = packed[-1]
    if extras:
        attributes.update(extras)
    factory = logging.getLogRecordFactory()
    if factory is logging.LogRecord or (factory is _installed and _chained is logging.LogRecord):
        # What makeLogRecord would make, without a record made and overwritten first.
        record = logging.LogRecord.__new__(logging.LogRecord)
        record.__dict__ = attributes
        return record
    return logging.makeLogRecord(attributes)
