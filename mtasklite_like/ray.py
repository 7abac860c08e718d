"""``pqdm`` on Ray actors: ``from mtasklite_like.ray import pqdm``.

The same call as ``mtasklite_like.processes.pqdm``, with each worker a Ray actor, on this machine
or a cluster. ``address=`` picks the cluster and ``backend_options=`` the actor options of the
workers (``{"num_gpus": 1}``, or a list with one dict per worker); see docs/distributed.md. Ray is
an optional extra: ``pip install "mtasklite-like[ray]"``. Importing this module does not import Ray.
"""

from __future__ import annotations

from ._dropins.pqdm import PqdmResult, for_backend, lazy_pqdm

__all__ = ["PqdmResult", "pqdm"]

# The signature and docstring are lazy_pqdm's, without use_threads, on backend="ray".
pqdm = for_backend(lazy_pqdm, "ray")
