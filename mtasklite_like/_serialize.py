"""Serialisation for the process backend: the fast standard pickler first, dill when it must.

The standard ``pickle`` is implemented in C and handles the plain data most items and results are
made of; dill (through ``multiprocess``) handles lambdas, closures and classes defined in
``__main__`` or a notebook, but runs in pure Python. Trying ``pickle`` first and falling back to
dill gets the speed of one and the reach of the other. Anything dill writes can be read back
with ``pickle.loads`` as long as dill is importable, so the receiving side never needs to know.

One case the standard pickler gets wrong without failing: it saves a function or class defined in
``__main__`` by name. A process started by ``spawn`` or ``forkserver`` finds that name again when
``__main__`` is a script (it is re-imported there), but not when it is a notebook, a REPL or
standard input, which have no file to re-import. For those, :func:`dumps` with ``main_by_value``
sends anything that refers to ``__main__`` through dill, which saves it by value.
"""

from __future__ import annotations

import os
import pickle
import sys
from typing import Any

import dill

__all__ = ["dumps", "loads", "main_needs_by_value"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads


def main_needs_by_value() -> bool:
    """True when ``__main__`` cannot be re-imported by a new process (a notebook, a REPL, stdin)."""
    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return not (isinstance(path, str) and os.path.exists(path))


def dumps(obj: Any, *, main_by_value: bool = False) -> bytes:
    """Pickle ``obj``, falling back to dill for what the standard pickler refuses.

    With ``main_by_value``, anything that refers to ``__main__`` goes through dill too (see the
    module docstring). Raises the pickler's own exception when neither can serialise it.
    """
    try:
        data = pickle.dumps(obj, _PROTOCOL)
    except Exception:
        # Standard pickle refuses lambdas, closures and __main__ classes under spawn with
        # PicklingError, AttributeError or TypeError, depending on the object.
        pass
    else:
        if not main_by_value or b"__main__" not in data:
            return data
    by_value: bytes = dill.dumps(obj, _PROTOCOL, byref=False, recurse=True)
    return by_value
