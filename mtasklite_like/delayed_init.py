"""mtasklite's ``delayed_init`` module at the same path: ``from mtasklite_like.delayed_init import
delayed_init, ShellObject``.

``delayed_init`` is the package's class decorator: objects are built inside each worker.
``ShellObject`` is the type of the shells it makes (``isinstance(x, ShellObject)`` holds for every
shell), and builds one by hand the way mtasklite's does: ``ShellObject(cls, *args, **kwargs)``.
"""

from __future__ import annotations

from typing import Any

from ._worker.delayed import DelayedObject, delayed_init

__all__ = ["ShellObject", "delayed_init"]

class _ShellObjectType(type):
    """``isinstance(x, ShellObject)`` is true for every shell, however it was made."""

    def __instancecheck__(cls, obj: Any) -> bool:
        return isinstance(obj, DelayedObject)

    def __subclasscheck__(cls, sub: type) -> bool:
        return isinstance(sub, type) and issubclass(sub, DelayedObject)


class ShellObject(DelayedObject[Any], metaclass=_ShellObjectType):
    """A shell that builds ``cls(*args, **kwargs)`` inside each worker, as mtasklite's ``ShellObject``.

    ``@delayed_init`` makes shells for you; this constructor is for code that builds them by hand
    with mtasklite's signature. ``isinstance(shell, ShellObject)`` is true for the shells of both.
    The class must be importable by name where the workers run (a process worker unpickles it).
    """

    __slots__ = ()

    def __init__(self, cls: type, *args: Any, **kwargs: Any) -> None:
        if not isinstance(cls, type):
            raise TypeError(
                f"ShellObject(cls, ...) takes the class to build, not {type(cls).__name__} {cls!r}"
            )
        super().__init__(cls, cls, args, kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.cls, self.args, self.kwargs))


def _rebuild(cls: type, args: tuple[Any, ...], kwargs: dict[str, Any]) -> ShellObject:
    return ShellObject(cls, *args, **kwargs)
