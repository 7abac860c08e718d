"""Backends: where workers run (the caller, threads, processes) behind one small interface.

Backends are found by name in a registry, so a new one (a cluster backend, a simulated one in
tests) joins with :func:`register_backend` and is chosen with ``Pool(..., backend=name)`` without
any change to the pool or the engine. The built-in ones are imported only when first used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Backend, BatchDone, Capabilities, Event, WorkerDied, WorkerInitFailed, WorkerReady

if TYPE_CHECKING:
    from .._worker import WorkerSpec

__all__ = [
    "Backend",
    "BackendFactory",
    "BatchDone",
    "Capabilities",
    "Event",
    "WorkerDied",
    "WorkerInitFailed",
    "WorkerReady",
    "backend_names",
    "make_backend",
    "register_backend",
]

#: ``factory(specs, start_method)`` returns a backend running one worker per spec
BackendFactory = Callable[["list[WorkerSpec]", "str | None"], Backend]


def _processes(specs: list[WorkerSpec], start_method: str | None) -> Backend:
    from .processes import ProcessBackend

    return ProcessBackend(specs, start_method)


def _threads(specs: list[WorkerSpec], start_method: str | None) -> Backend:
    from .threads import ThreadBackend

    return ThreadBackend(specs)


def _inline(specs: list[WorkerSpec], start_method: str | None) -> Backend:
    from .inline import InlineBackend

    if len(specs) != 1:
        raise ValueError(f"the inline backend runs exactly one worker, not {len(specs)}")
    return InlineBackend(specs[0])


_REGISTRY: dict[str, BackendFactory] = {
    "processes": _processes,
    "threads": _threads,
    "inline": _inline,
}


def register_backend(name: str, factory: BackendFactory) -> None:
    """Make ``Pool(..., backend=name)`` run its workers on backends made by ``factory``."""
    if not name or not isinstance(name, str):
        raise ValueError(f"a backend name is a non-empty string, not {name!r}")
    _REGISTRY[name] = factory


def backend_names() -> list[str]:
    """The names ``Pool(backend=...)`` accepts."""
    return sorted(_REGISTRY)


def make_backend(name: str, specs: list[WorkerSpec], start_method: str | None) -> Backend:
    """Build the backend registered as ``name``; a ``KeyError`` lists the known names."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no backend named {name!r}; known: {', '.join(backend_names())}") from None
    return factory(specs, start_method)
