"""pqdm's ``pqdm`` on process workers: ``from mtasklite_like.pqdm.processes import pqdm``.

A drop-in for ``pqdm.processes.pqdm``: every item has run when the call returns, and the results
come back as a ``list`` in input order. For a lazy result that streams (mtasklite's ``pqdm``),
import it from ``mtasklite_like.processes``.
"""

from __future__ import annotations

from .._dropins.pqdm import eager_pqdm, for_backend

__all__ = ["pqdm"]

# The signature, defaults and docstring are eager_pqdm's.
pqdm = for_backend(eager_pqdm, "processes")
