"""mtasklite's lazy ``pqdm`` on process workers: ``from mtasklite_like.processes import pqdm``.

A drop-in for ``mtasklite.processes.pqdm``: the result is lazy, and nothing runs until it is used.
For pqdm's ``pqdm``, which runs every item at the call and returns a ``list``, import it from
``mtasklite_like.pqdm.processes``.
"""

from __future__ import annotations

from ._dropins.pqdm import PqdmResult, for_backend, lazy_pqdm
from .pqdm import _pqdm as _pqdm  # mtasklite's module imports it too

__all__ = ["PqdmResult", "pqdm"]

# The signature, defaults and docstring are lazy_pqdm's, with use_threads=False.
pqdm = for_backend(lazy_pqdm, "processes")
