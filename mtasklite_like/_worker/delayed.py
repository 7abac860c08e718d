"""``@delayed_init``: build a worker's object inside the worker, not in the caller.

Decorating a class replaces it with a *factory*: calling ``Model(gpu=0)`` builds nothing, it
returns a lightweight :class:`DelayedObject` (a "shell") that remembers the class and the
arguments. The pool sends the shell to each worker, and the worker builds the real object once,
before its first item. Expensive or unpicklable state (a model, a GPU handle, a DB connection)
therefore never crosses a process boundary, and every worker gets its own.

``isinstance(Model(0), Model)`` stays true (for the shell and for built objects), and class-level
attributes such as ``Model.DEFAULTS`` or class methods remain reachable through the factory.
"""

from __future__ import annotations

from typing import Any, Generic, TypeVar

__all__ = ["DelayedObject", "delayed_init", "is_delayed_factory", "materialize"]

T = TypeVar("T")


class DelayedObject(Generic[T]):
    """A shell holding a class and its constructor arguments; the object is built later.

    ``build()`` makes a new object each time: the pool calls it once per worker (so two threads
    given the same shell still get one object each). Calling the shell itself builds one cached
    object on first use and calls it, which keeps code that treats the shell as the object working.
    """

    __slots__ = ("_factory", "_instance", "args", "cls", "kwargs")

    def __init__(self, factory: type, cls: type[T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self._factory = factory
        self.cls = cls
        self.args = args
        self.kwargs = kwargs
        self._instance: T | None = None

    def build(self) -> T:
        """Construct a new object from the stored class and arguments."""
        return self.cls(*self.args, **self.kwargs)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._instance is None:
            self._instance = self.build()
        return self._instance(*args, **kwargs)  # type: ignore[operator]

    # Pickle through the factory, which is what the module attribute of the class's name refers to:
    # the decorated class itself can no longer be found by name, so plain pickle would refuse it.
    # The cached instance stays behind: each worker builds its own.
    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild_shell, (self._factory, self.args, self.kwargs))

    def __repr__(self) -> str:
        parts = [repr(a) for a in self.args] + [f"{k}={v!r}" for k, v in self.kwargs.items()]
        return f"delayed {self.cls.__qualname__}({', '.join(parts)})"


def _rebuild_shell(factory: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> DelayedObject[Any]:
    shell: DelayedObject[Any] = factory(*args, **kwargs)
    return shell


class _DelayedFactoryMeta(type):
    """Metaclass of the factories made by :func:`delayed_init`.

    Calling a factory makes a shell; ``isinstance`` accepts shells of the factory and instances of
    the wrapped class; other attribute look-ups fall through to the wrapped class.
    """

    __wrapped__: type

    def __call__(cls, *args: Any, **kwargs: Any) -> DelayedObject[Any]:
        return DelayedObject(cls, cls.__wrapped__, args, kwargs)

    def __instancecheck__(cls, obj: Any) -> bool:
        wrapped = cls.__wrapped__
        if isinstance(obj, DelayedObject):
            return issubclass(obj.cls, wrapped)
        return isinstance(obj, wrapped)

    def __getattr__(cls, name: str) -> Any:
        # Only reached when normal look-up fails: class attributes, class and static methods.
        if name == "__wrapped__":
            raise AttributeError(name)
        return getattr(cls.__wrapped__, name)

    def __repr__(cls) -> str:
        return f"<delayed_init class {cls.__module__}.{cls.__qualname__}>"


def delayed_init(cls: type[T]) -> type[T]:
    """Class decorator: instances are built inside each worker instead of in the caller.

    The decorated class must define ``__call__``, which the pool calls with each item. Pass one
    shell to share the arguments among all workers, or a list of shells to give each worker its own
    (``Pool([Model(gpu=i) for i in range(4)])``).
    """
    if not isinstance(cls, type):
        raise TypeError(f"@delayed_init decorates a class, not {type(cls).__name__} {cls!r}")
    namespace = {
        "__wrapped__": cls,
        "__module__": cls.__module__,
        "__qualname__": cls.__qualname__,
        "__doc__": cls.__doc__,
    }
    factory = _DelayedFactoryMeta(cls.__name__, (), namespace)
    return factory  # type: ignore[return-value]


def is_delayed_factory(obj: Any) -> bool:
    """True for a class decorated with ``@delayed_init`` (the factory, not a shell)."""
    return isinstance(obj, _DelayedFactoryMeta)


def materialize(worker: Any) -> Any:
    """Return the callable a worker runs: a new object for a shell, the worker itself otherwise."""
    if isinstance(worker, DelayedObject):
        return worker.build()
    return worker
