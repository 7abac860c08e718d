"""Serialisation for the process backend: the fast standard pickler first, dill when it must.

The standard ``pickle`` is implemented in C and handles the plain data most items and results are
made of; dill (through ``multiprocess``) handles lambdas, closures and classes defined in
``__main__`` or a notebook, but runs in pure Python. Trying ``pickle`` first and falling back to
dill gets the speed of one and the reach of the other. Anything dill writes can be read back
with ``pickle.loads`` as long as dill is importable, so the receiving side never needs to know.
"""

from __future__ import annotations

import pickle
from typing import Any

import dill

__all__ = ["dumps", "loads"]

_PROTOCOL = pickle.HIGHEST_PROTOCOL
loads = pickle.loads


def dumps(obj: Any) -> bytes:
    """Pickle ``obj``, falling back to dill for what the standard pickler refuses.

    Raises the pickler's own exception when neither can serialise it.
    """
    try:
        return pickle.dumps(obj, _PROTOCOL)
    except Exception:
        # Standard pickle refuses lambdas, closures and __main__ classes under spawn with
        # PicklingError, AttributeError or TypeError, depending on the object.
        data: bytes = dill.dumps(obj, _PROTOCOL, byref=False, recurse=True)
        return data
