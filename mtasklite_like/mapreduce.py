"""Map-reduce over one list argument: split it across workers, combine the part outputs.

Many slow functions already take a list: ``resize_images(paths, out_dir, size)``, ``count_words(documents)``.
[`parallelize`][mtasklite_like.mapreduce.parallelize] makes a parallel version with the same signature: it
cuts the list argument into parts, calls the function on each part (the other arguments unchanged) through a
[`Pool`][mtasklite_like.Pool], and combines the part outputs, in input order, with a reduction::

    from mtasklite_like.mapreduce import parallelize

    with parallelize(resize_images, n_jobs=16, batched_arg="paths", reduction="flatten") as resize:
        thumbnails = resize(paths, "out", (224, 224))

The list is cut into more parts than workers (4 per worker by default) so that a slow part does
not leave the other workers idle at the end. Everything else is the pool's: threads or processes,
start methods, exception modes, worker deaths, timeouts, retries; any ``Pool`` option given to
[`parallelize`][mtasklite_like.mapreduce.parallelize] is passed on.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import math
import sys
import typing
from collections.abc import Callable, Iterator, Mapping
from types import TracebackType
from typing import Any, overload

from ._errors import DeferredExceptions
from ._pool import Pool
from .reductions import apply_reduction, reduction_for_annotation, resolve_reduction
from .utils import is_exception

__all__ = [
    "BatchedArgumentError",
    "ParallelFunction",
    "parallelize",
    "split_ranges",
]

#: Pool options that parallelize sets itself
_OWN_OPTIONS = {
    "worker_or_worker_arr": "the function is parallelize's first argument",
    "n_jobs": "pass n_jobs as parallelize's own argument",
    "argument_type": "each part is passed as the function's own arguments",
    "is_unordered": "part outputs are always combined in input order",
}
_POOL_OPTIONS = frozenset(n for n in inspect.signature(Pool.__init__).parameters if n != "self")

_SKIPPED_FIRST = ("self", "cls")


class BatchedArgumentError(TypeError, ValueError):
    """The batched argument is not a sized sequence that can be cut into parts.

    A ``TypeError`` (the argument has the wrong type) and also a ``ValueError``, which is what
    code written for ``workercontext`` catches.
    """


def split_ranges(n_items: int, n_parts: int) -> list[tuple[int, int]]:
    """Cut ``range(n_items)`` into ``n_parts`` contiguous ``(start, stop)`` ranges whose sizes
    differ by at most one (at least one range, empty when there are no items)."""
    n_parts = max(1, min(n_parts, n_items))
    size, extra = divmod(n_items, n_parts)
    ranges = []
    start = 0
    for i in range(n_parts):
        stop = start + size + (1 if i < extra else 0)
        ranges.append((start, stop))
        start = stop
    return ranges


def _is_sequence(value: Any) -> bool:
    if isinstance(value, (Mapping, set, frozenset)):
        return False
    return hasattr(value, "__len__") and hasattr(value, "__getitem__")


def _take(sequence: Any, start: int, stop: int) -> Any:
    # pandas Series and DataFrames slice by position through .iloc; everything else directly.
    return getattr(sequence, "iloc", sequence)[start:stop]


def _wrapper_reference(function: Any) -> tuple[str, str] | None:
    """``(module, qualname)`` when that name now holds a wrapper of ``function`` (a ``@parallelize``
    decorated function or method): the function itself cannot be pickled by name, the wrapper can."""
    module_name = getattr(function, "__module__", None)
    qualname = getattr(function, "__qualname__", "")
    module = sys.modules.get(module_name or "")
    if module is None or not qualname or "<locals>" in qualname:
        return None
    target: Any = module
    for part in qualname.split("."):
        target = getattr(target, part, None)
        if target is None:
            return None
    if target is not function and getattr(target, "__wrapped__", None) is function:
        return module.__name__, qualname
    return None


def _function_from_reference(module_name: str, qualname: str) -> Callable[..., Any]:
    target: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        target = getattr(target, part)
    return typing.cast(Callable[..., Any], target.__wrapped__)


def _runner_from_reference(module_name: str, qualname: str) -> _PartRunner:
    return _PartRunner(_function_from_reference(module_name, qualname))


class _PartRunner:
    """What each worker runs: the function on one part's ``(args, kwargs)``."""

    __slots__ = ("function",)

    def __init__(self, function: Callable[..., Any]) -> None:
        self.function = function

    def __call__(self, part: tuple[tuple[Any, ...], dict[str, Any]]) -> Any:
        args, kwargs = part
        return self.function(*args, **kwargs)

    @property
    def journal_target(self) -> Callable[..., Any]:
        """What a journal's header names as the run's function: the user's, not this runner."""
        return self.function

    def __reduce__(self) -> tuple[Any, ...]:
        reference = _wrapper_reference(self.function)
        if reference is not None:
            return _runner_from_reference, reference
        return _PartRunner, (self.function,)

    def __repr__(self) -> str:
        return f"<part runner of {getattr(self.function, '__qualname__', self.function)!r}>"


def _default_batched(signature: inspect.Signature, where: str) -> str:
    params = [
        p for p in signature.parameters.values() if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    if params and params[0].name in _SKIPPED_FIRST:
        params = params[1:]
    if not params:
        raise TypeError(
            f"{where} has no positional parameter to split; name the list argument with batched_arg="
        )
    return params[0].name


def _check_batched(signature: inspect.Signature, name: str, where: str) -> None:
    params = signature.parameters
    if name in params:
        if params[name].kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise ValueError(f"{where}: batched_arg={name!r} names *args/**kwargs; name a single parameter")
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return  # taken through **kwargs: it must then be passed by keyword
    raise ValueError(
        f"{where} has no parameter {name!r} to split; its parameters are: {', '.join(params) or '(none)'}"
    )


def _annotated_reduction(function: Callable[..., Any], where: str) -> Callable[..., Any]:
    try:
        hints = typing.get_type_hints(function)
        annotation: Any = hints.get("return", inspect.Signature.empty)
    except Exception:
        # Unresolvable string annotations: read the raw text instead.
        annotation = inspect.signature(function).return_annotation
    if annotation is inspect.Signature.empty:
        raise TypeError(
            f"{where} has no return annotation to choose a reduction from; pass reduction= a name "
            "such as 'flatten', 'concat', 'sum' or 'mean', a callable taking the list of part outputs, "
            "or None to get that list"
        )
    reduction = reduction_for_annotation(annotation)
    if reduction is None:
        raise TypeError(
            f"{where} returns {annotation!r}, for which there is no automatic reduction; pass "
            "reduction= a name such as 'sum', 'mean', 'min' or 'max', a callable taking the list of "
            "part outputs, or None to get that list"
        )
    return reduction


def _describe(function: Any) -> str:
    return f"parallelize({getattr(function, '__qualname__', None) or type(function).__name__})"


class ParallelFunction:
    """The parallel version of a function whose list argument is split across workers.

    Made by [`parallelize`][mtasklite_like.mapreduce.parallelize]. Calling it has the function's signature;
    the result is the reduction of the part outputs (or their list, with ``reduction=None``). As a context
    manager it keeps its workers (and anything they built) between calls and stops them on exit; outside one,
    each call starts workers and stops them when it ends. Used as a decorator on a method, ``self`` (or
    ``cls``) is passed to every part unchanged.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        n_jobs: int | None = None,
        *,
        batched_arg: str | None = None,
        reduction: Callable[..., Any] | str | None = "auto",
        parts_per_worker: int = 4,
        part_size: int | Callable[[int], int] | None = None,
        progress: bool | Mapping[str, Any] = False,
        tqdm_class: Any = None,
        **pool_options: Any,
    ) -> None:
        where = _describe(function)
        if not callable(function):
            raise TypeError(f"parallelize() takes a callable, not {type(function).__name__} {function!r:.60}")
        for key in pool_options:
            if key in _OWN_OPTIONS:
                raise TypeError(f"{where}: {key!r} is not an option here: {_OWN_OPTIONS[key]}")
            if key not in _POOL_OPTIONS:
                valid = sorted(_POOL_OPTIONS - set(_OWN_OPTIONS))
                raise TypeError(
                    f"{where} got an unknown keyword argument {key!r}; parallelize options: batched_arg, "
                    f"reduction, parts_per_worker, part_size, progress, tqdm_class; Pool options: "
                    f"{', '.join(valid)}"
                )
        if isinstance(parts_per_worker, bool) or not isinstance(parts_per_worker, int) or (
            parts_per_worker < 1
        ):
            raise ValueError(
                f"{where}: parts_per_worker must be a whole number >= 1, not {parts_per_worker!r}"
            )
        if part_size is not None and not callable(part_size) and (
            isinstance(part_size, bool) or not isinstance(part_size, int) or part_size < 1
        ):
            raise ValueError(f"{where}: part_size must be a whole number >= 1 or None, not {part_size!r}")

        # The function's name, docstring, module and __wrapped__ (so inspect.signature shows its
        # signature); first, so that our own attributes win over any the function carries.
        functools.update_wrapper(self, function)
        self.function = function
        self.signature = inspect.signature(function)
        if batched_arg is None:
            batched_arg = _default_batched(self.signature, where)
        elif not isinstance(batched_arg, str):
            raise TypeError(f"{where}: batched_arg must be a parameter name, not {batched_arg!r}")
        _check_batched(self.signature, batched_arg, where)
        self.batched_arg = batched_arg
        if isinstance(reduction, str) and reduction == "auto":
            self.reduction: Callable[..., Any] | None = _annotated_reduction(function, where)
        else:
            self.reduction = resolve_reduction(reduction, where)
        self.parts_per_worker = parts_per_worker
        self.part_size = part_size
        self.progress = progress
        self.tqdm_class = tqdm_class
        # One part per message and one message per worker at a time: parts are large units of work,
        # and a part queued behind a slow one would wait for it while other workers idle.
        self._pool_options = {"chunk_size": 1, "chunk_prefill_ratio": 1, **pool_options}
        self._runner = _PartRunner(function)
        # Built now so that every option is checked at once (and a runner that spawn cannot pickle).
        probe = self._make_pool(n_jobs)
        self.n_jobs = probe.num_workers
        self.exception_behavior = probe.exception_behavior
        self._pool: Pool[Any] | None = None

    # -- calling ----------------------------------------------------------------------------------------

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._call(args, kwargs)

    def _call(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        where = _describe(self.function)
        bound = self.signature.bind(*args, **kwargs)
        arguments = dict(bound.arguments)
        var_kw = next(
            (p.name for p in self.signature.parameters.values() if p.kind is inspect.Parameter.VAR_KEYWORD),
            None,
        )
        name = self.batched_arg
        if name in arguments and name in self.signature.parameters:
            sequence = arguments[name]
        elif var_kw is not None and name in arguments.get(var_kw, {}):
            sequence = arguments[var_kw][name]
        else:
            raise TypeError(f"{where}: the batched argument {name!r} was not passed")
        if not _is_sequence(sequence):
            raise BatchedArgumentError(
                f"{where}: the batched argument {name!r} must be a sized sequence that can be sliced "
                f"(a list, tuple, range, NumPy array, pandas object), not {type(sequence).__name__}; "
                "wrap an iterator in list(...)"
            )
        ranges = self._plan(len(sequence))
        sizes = [stop - start for start, stop in ranges]
        parts = self._parts(bound, arguments, var_kw, sequence, ranges)

        pool = self._pool if self._pool is not None else self._make_pool(min(self.n_jobs, len(ranges)))
        bar = self._make_bar(len(sequence))
        outputs: list[Any] = []
        try:
            for output in pool(parts):
                if bar is not None:
                    bar.update(sizes[len(outputs)])
                outputs.append(output)
        finally:
            if bar is not None:
                bar.close()
        if self.reduction is None:
            return outputs
        errors = [o for o in outputs if is_exception(o)]
        if errors:
            # 'ignore': a failed part's exception takes the place of the combined result.
            return errors[0] if len(errors) == 1 else DeferredExceptions(*errors)
        return apply_reduction(self.reduction, outputs, sizes)

    def _plan(self, n_items: int) -> list[tuple[int, int]]:
        part_size = self.part_size
        if callable(part_size):
            part_size = max(1, int(part_size(n_items)))
        if part_size is not None:
            return split_ranges(n_items, math.ceil(n_items / part_size))
        return split_ranges(n_items, self.n_jobs * self.parts_per_worker)

    def _parts(
        self,
        bound: inspect.BoundArguments,
        arguments: dict[str, Any],
        var_kw: str | None,
        sequence: Any,
        ranges: list[tuple[int, int]],
    ) -> Iterator[tuple[tuple[Any, ...], dict[str, Any]]]:
        # Lay the call out once with a marker in the batched argument's place, then fill it per part.
        marker = object()
        name = self.batched_arg
        if name in self.signature.parameters:
            arguments[name] = marker
        else:
            arguments[var_kw or ""] = {**arguments[var_kw or ""], name: marker}
        laid_out = inspect.BoundArguments(bound.signature, arguments)
        args, kwargs = laid_out.args, laid_out.kwargs
        position = next((i for i, a in enumerate(args) if a is marker), None)
        for start, stop in ranges:
            part = _take(sequence, start, stop)
            if position is not None:
                yield (*args[:position], part, *args[position + 1:]), kwargs
            else:
                yield args, {**kwargs, name: part}

    def _make_pool(self, n_jobs: int | None) -> Pool[Any]:
        return Pool(self._runner, n_jobs, argument_type="single_arg", **self._pool_options)

    def _make_bar(self, total: int) -> Any:
        if not self.progress:
            return None
        options: dict[str, Any] = {"desc": getattr(self.function, "__name__", None), "unit": "item"}
        if isinstance(self.progress, Mapping):
            options.update(self.progress)
        tqdm_class = self.tqdm_class
        if tqdm_class is None:
            tqdm_class = importlib.import_module("tqdm.auto").tqdm
        return tqdm_class(total=total, **options)

    # -- workers kept inside `with` ---------------------------------------------------------------------

    def __enter__(self) -> ParallelFunction:
        if self._pool is not None:
            raise RuntimeError(f"{_describe(self.function)} is already in use as a context manager")
        pool = self._make_pool(self.n_jobs)
        pool.__enter__()
        self._pool = pool
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers kept by ``with`` (a later call starts new ones)."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.__exit__(None, None, None)

    # -- methods ------------------------------------------------------------------------------------------

    def __get__(self, instance: Any, owner: type | None = None) -> Any:
        if instance is None:
            return self
        return _BoundParallelFunction(self, instance)

    def __repr__(self) -> str:
        reduction = getattr(self.reduction, "name", None) or getattr(
            self.reduction, "__name__", self.reduction
        )
        return (
            f"<{_describe(self.function)} over {self.batched_arg!r}, {self.n_jobs} worker(s), "
            f"reduction={reduction}>"
        )


class _BoundParallelFunction:
    """A :class:`ParallelFunction` reached through an instance: ``self`` goes first to every part."""

    def __init__(self, parent: ParallelFunction, instance: Any) -> None:
        self._parent = parent
        self.__self__ = instance
        functools.update_wrapper(self, parent.function)
        params = list(parent.signature.parameters.values())[1:]
        self.__signature__ = parent.signature.replace(parameters=params)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._parent._call((self.__self__, *args), kwargs)

    def __enter__(self) -> _BoundParallelFunction:
        self._parent.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._parent.__exit__(exc_type, exc, tb)


@overload
def parallelize(
    function: Callable[..., Any],
    n_jobs: int | None = None,
    *,
    batched_arg: str | None = None,
    reduction: Callable[..., Any] | str | None = "auto",
    parts_per_worker: int = 4,
    part_size: int | Callable[[int], int] | None = None,
    progress: bool | Mapping[str, Any] = False,
    tqdm_class: Any = None,
    **pool_options: Any,
) -> ParallelFunction: ...


@overload
def parallelize(
    function: None = None,
    n_jobs: int | None = None,
    *,
    batched_arg: str | None = None,
    reduction: Callable[..., Any] | str | None = "auto",
    parts_per_worker: int = 4,
    part_size: int | Callable[[int], int] | None = None,
    progress: bool | Mapping[str, Any] = False,
    tqdm_class: Any = None,
    **pool_options: Any,
) -> Callable[[Callable[..., Any]], ParallelFunction]: ...


def parallelize(
    function: Callable[..., Any] | None = None,
    n_jobs: int | None = None,
    *,
    batched_arg: str | None = None,
    reduction: Callable[..., Any] | str | None = "auto",
    parts_per_worker: int = 4,
    part_size: int | Callable[[int], int] | None = None,
    progress: bool | Mapping[str, Any] = False,
    tqdm_class: Any = None,
    **pool_options: Any,
) -> ParallelFunction | Callable[[Callable[..., Any]], ParallelFunction]:
    """Make a parallel version of ``function`` that splits one list argument across workers.

    ``parallelize(f, n_jobs=8, batched_arg="paths", reduction="flatten")`` returns a
    [`ParallelFunction`][mtasklite_like.mapreduce.ParallelFunction] with ``f``'s name, docstring and
    signature. Without ``function`` it is a decorator (``@parallelize(n_jobs=8)``), also for methods.

    Args:
        function: the function (or bound method) to run on each part.
        n_jobs: number of workers (default: as ``Pool``, the number of CPUs for processes).
        batched_arg: the name of the argument to split; by default the first parameter (after a leading
            ``self``/``cls``). Its value must be a sized, sliceable sequence: a list, tuple, range, NumPy
            array, pandas object ([`BatchedArgumentError`][mtasklite_like.mapreduce.BatchedArgumentError]
            otherwise).
        reduction: how part outputs are combined, in input order: a name from
            ``mtasklite_like.reductions.REDUCTIONS`` (``'flatten'``, ``'concat'``,
            ``'sum'``, ``'mean'``, ``'product'``, ``'min'``, ``'max'``, ``'counter'``,
            ``'union'``, ``'merge'``, ``'and'``, ``'or'``), any callable taking the list of part
            outputs, or ``None`` for that list itself. ``'auto'`` (the default) picks from the
            return annotation (``list`` -> flatten, ``set`` -> union, ``dict`` -> merge, ``str``
            -> concat, ...) and fails at once when there is none to pick.
        parts_per_worker: parts per worker (default 4), so that a slow part does not leave
            the other workers idle while it finishes; an input shorter than that gives one item
            per part.
        part_size: items per part instead (an int, or a function of the input length).
        progress: show a progress bar counting items (``True``, or a dict of bar options such
            as ``{"desc": "resizing"}``).
        tqdm_class: the bar class (default ``tqdm.auto.tqdm``).
        **pool_options: any other [`Pool`][mtasklite_like.Pool] option: ``use_threads``,
            ``exception_behavior``, ``start_method``, ``initializer``/``initargs``,
            ``task_timeout``, ``retries``, ``worker_env``, ``max_tasks_per_worker``, ...

    Errors in a part follow ``exception_behavior``: ``'immediate'`` (default) raises the first
    failure; ``'deferred'`` runs every part, then raises
    [`DeferredExceptions`][mtasklite_like.DeferredExceptions]; ``'ignore'`` returns the exception in place of
    the combined result (a ``DeferredExceptions`` object when several parts failed), or in
    place of the failed part's output when ``reduction=None``.
    """
    options: dict[str, Any] = dict(
        batched_arg=batched_arg,
        reduction=reduction,
        parts_per_worker=parts_per_worker,
        part_size=part_size,
        progress=progress,
        tqdm_class=tqdm_class,
        **pool_options,
    )
    if function is None:

        def decorate(fn: Callable[..., Any]) -> ParallelFunction:
            return ParallelFunction(fn, n_jobs, **options)

        return decorate
    return ParallelFunction(function, n_jobs, **options)
