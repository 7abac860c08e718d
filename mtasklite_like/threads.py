"""``pqdm`` on thread workers: ``from mtasklite_like.threads import pqdm``.

A drop-in for ``pqdm.threads.pqdm`` and ``mtasklite.threads.pqdm``.
"""

from ._pqdm import PqdmResult, pqdm_wrapper

__all__ = ["PqdmResult", "pqdm"]

pqdm = pqdm_wrapper(use_threads=True)
