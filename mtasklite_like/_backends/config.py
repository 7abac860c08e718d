"""What a pool passes a backend besides its workers' specs: where to run, and per-worker options.

Most backends need nothing more than the specs. A cluster backend also needs to know which cluster
to join (``address``) and what each worker asks of it (CPUs, GPUs, custom resources, ...): the pool
checks the shape of these once (one dict for every worker, or one per worker), the backend checks
their content, and the backend's factory receives them as a :class:`BackendOptions`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

__all__ = ["BackendOptions"]


@dataclass(frozen=True)
class BackendOptions:
    """Options for one backend, in worker order.

    Attributes:
        address: the cluster to connect to (None: the backend's default).
        per_worker: one mapping of backend-specific options per worker (empty mappings when the
            user passed none).
    """

    address: str | None
    per_worker: tuple[Mapping[str, Any], ...]
