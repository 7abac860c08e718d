"""Backends: where workers run (the caller, threads, processes) behind one small interface.

Backends are found by name in a registry, so a new one (a cluster backend, a simulated one in
tests) joins with :func:`register_backend` and is chosen with ``Pool(..., backend=name)`` without
any change to the pool or the engine. The built-in ones are imported only when first used.

A backend that takes options (``Pool(backend_options=..., address=...)``) registers a checker with
them: the pool calls it when it is built, so a mistake fails there, and the factory receives the
options as a third argument.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from .base import Backend, BatchDone, Capabilities, Event, WorkerDied, WorkerInitFailed, WorkerReady
from .config import BackendOptions

if TYPE_CHECKING:
    from .._worker.run import WorkerSpec

__all__ = [
    "Backend",
    "BackendFactory",
    "BackendOptions",
    "BatchDone",
    "Capabilities",
    "Event",
    "OptionsChecker",
    "WorkerDied",
    "WorkerInitFailed",
    "WorkerReady",
    "backend_names",
    "check_backend_options",
    "make_backend",
    "register_backend",
]

#: ``factory(specs, start_method)`` returns a backend running one worker per spec; a backend
#: registered with an options checker is called ``factory(specs, start_method, options)``
BackendFactory = Callable[..., Backend]
#: ``checker(options, specs)`` raises (``ValueError``, ``TypeError``, ``ImportError``) when the
#: options, or the backend's own requirements, are wrong; ``options`` is None when the user passed none
OptionsChecker = Callable[["BackendOptions | None", "list[WorkerSpec]"], None]


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


def _ray(specs: list[WorkerSpec], start_method: str | None, options: BackendOptions | None = None) -> Backend:
    from .ray import RayBackend

    return RayBackend(specs, options)


def _check_ray(options: BackendOptions | None, specs: list[WorkerSpec]) -> None:
    from .ray_connect import check_options

    check_options(options, specs)


_REGISTRY: dict[str, BackendFactory] = {
    "processes": _processes,
    "threads": _threads,
    "inline": _inline,
    "ray": _ray,
}
_CHECKERS: dict[str, OptionsChecker] = {"ray": _check_ray}


def register_backend(name: str, factory: BackendFactory, check_options: OptionsChecker | None = None) -> None:
    """Make ``Pool(..., backend=name)`` run its workers on backends made by ``factory``.

    With ``check_options``, the backend takes ``backend_options`` and ``address``: the pool calls
    ``check_options(options, specs)`` when it is built and the factory gets the options as a third
    argument.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a backend name is a non-empty string, not {name!r}")
    _REGISTRY[name] = factory
    if check_options is None:
        _CHECKERS.pop(name, None)
    else:
        _CHECKERS[name] = check_options


def check_backend_options(name: str, options: BackendOptions | None, specs: list[WorkerSpec]) -> None:
    """Check ``options`` for the backend ``name`` and its workers; refuse them if it takes none."""
    checker = _CHECKERS.get(name)
    if checker is None:
        if options is not None:
            takers = ", ".join(repr(n) for n in sorted(_CHECKERS)) or "none"
            raise ValueError(
                f"backend_options and address apply to backends that take options ({takers}), not "
                f"to {name!r}; drop them or choose such a backend"
            )
        return
    checker(options, specs)


def backend_names() -> list[str]:
    """The names ``Pool(backend=...)`` accepts."""
    return sorted(_REGISTRY)


def make_backend(
    name: str, specs: list[WorkerSpec], start_method: str | None, options: BackendOptions | None = None
) -> Backend:
    """Build the backend registered as ``name``; a ``KeyError`` lists the known names."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"no backend named {name!r}; known: {', '.join(backend_names())}") from None
    if name in _CHECKERS:
        return factory(specs, start_method, options)
    return factory(specs, start_method)
