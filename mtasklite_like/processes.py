"""``pqdm`` on process workers: ``from mtasklite_like.processes import pqdm``.

A drop-in for ``pqdm.processes.pqdm`` and ``mtasklite.processes.pqdm``.
"""

from ._pqdm import PqdmResult, pqdm_wrapper

__all__ = ["PqdmResult", "pqdm"]

pqdm = pqdm_wrapper(use_threads=False)
