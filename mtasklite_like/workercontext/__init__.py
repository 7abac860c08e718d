"""A drop-in for the ``workercontext`` package (0.1.1), running on [`Pool`][mtasklite_like.Pool].

Change ``from workercontext import ...`` to ``from mtasklite_like.workercontext import ...`` and
``from workercontext.reductions import ...`` to ``from mtasklite_like.workercontext.reductions
import ...``; the names and signatures stay, and the results but one (below). The list argument is
cut into the same slices as ``workercontext`` cuts it (``len // min(n_processes, len)`` items each),
so even the list of slice outputs returned without a reduction is the same.

**One number differs:** [`average_reduction`][mtasklite_like.workercontext.reductions.average_reduction]
weights each slice's output by the slice's size, so it gives the mean of the items where ``workercontext``
gives the mean of uneven slices' means (10 floats on 3 workers: 4.5, not 5.25). A
[`WeightedAverageWarning`][mtasklite_like.workercontext.reductions.WeightedAverageWarning] says so once, the
first time the slices differ in size, and
[`unweighted_average_reduction`][mtasklite_like.workercontext.reductions.unweighted_average_reduction] keeps
``workercontext``'s arithmetic.

What else changes, on purpose (docs/workflows.md lists it all): an empty list runs the function once on it
instead of dividing by zero; any sized sequence (tuple, range, NumPy array) is accepted, not only a list; a
failing slice raises its exception with the worker's traceback, a dead worker raises
[`WorkerDiedError`][mtasklite_like.WorkerDiedError] instead of hanging; ``parallelise`` stops its workers
after each call instead of leaving a pool open; nothing is printed unless ``verbose``
([`auto_parallelise`][mtasklite_like.workercontext.auto_parallelise] still says which reduction it chose). For
new code, [`mtasklite_like.mapreduce.parallelize`][mtasklite_like.mapreduce.parallelize] offers more: load
balancing, progress bars, threads, exception modes and every other ``Pool`` option.
"""

from __future__ import annotations

import functools
import inspect
import os
import threading
import typing
from collections.abc import Callable
from types import TracebackType
from typing import Any

from ..mapreduce import ParallelFunction
from . import reductions
from .reductions import (
    dict_merge_reduction,
    flatten_reduction,
    set_union_reduction,
    string_concatenation_reduction,
    to_native,
)

__all__ = [
    "MultiWorker",
    "MultiWorkerAsync",
    "auto_parallelise",
    "parallelise",
    "parallelise_async",
    "reductions",
]

_LIST_NAMES = ("list", "List", "typing.List")


def _is_list_annotation(annotation: Any) -> bool:
    if isinstance(annotation, str):
        return annotation.strip().split("[", 1)[0] in _LIST_NAMES
    return annotation is list or typing.get_origin(annotation) is list


def _positional_names(function: Callable[..., Any]) -> list[str]:
    params = inspect.signature(function).parameters.values()
    names = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if names and names[0] == "self":
        names = names[1:]
    return names


def _choose_batched_arg(function: Callable[..., Any], verbose: bool) -> str:
    """``workercontext``'s rule: the first argument annotated as a list when every argument is
    annotated, else the first argument."""
    names = _positional_names(function)
    if not names:
        raise ValueError(
            f"{getattr(function, '__qualname__', function)!r} takes no positional argument to batch on; "
            "pass batched_arg="
        )
    try:
        annotations = typing.get_type_hints(function)
    except Exception:
        annotations = dict(getattr(function, "__annotations__", {}))
    if not all(name in annotations for name in names):
        if verbose:
            print(f"No batched_arg given and not every argument is annotated: batching on {names[0]!r}")
        return names[0]
    for name in names:
        if _is_list_annotation(annotations[name]):
            if verbose:
                print(f"Batching on {name!r}, the first argument annotated as a list")
            return name
    raise ValueError(
        "No batched_arg given and no argument is annotated as a list: pass batched_arg= or annotate the "
        "list argument as list[...]"
    )


class _Slices(ParallelFunction):
    """A :class:`ParallelFunction` that cuts the list into ``workercontext``'s slices."""

    verbose = False

    def _plan(self, n_items: int) -> list[tuple[int, int]]:
        if n_items == 0:
            return [(0, 0)]
        step = n_items // min(self.n_jobs, n_items)
        if self.verbose:
            name = getattr(self.function, "__name__", self.function)
            print(f"Running {name} on {self.n_jobs} workers, {self.batched_arg!r} in slices of {step}")
        return [(start, min(start + step, n_items)) for start in range(0, n_items, step)]


def _slices(
    function: Callable[..., Any],
    n_processes: int,
    batched_arg: str | None,
    verbose: bool,
    reduction: Callable[[list[Any]], Any] | None,
) -> _Slices:
    if batched_arg is None:
        batched_arg = _choose_batched_arg(function, verbose)
    parallel = _Slices(
        function,
        n_processes,
        batched_arg=batched_arg,
        reduction=to_native(reduction),
        parts_per_worker=1,
    )
    parallel.verbose = verbose
    return parallel


class MultiWorker:
    """A context in which ``function`` runs on ``n_processes`` workers, its list argument split.

    ``with MultiWorker(f, n_processes=8) as pf: res = pf(arr)`` gives the list of slice outputs in
    order, or ``reduction(outputs)``. The workers are kept for every call inside the block and
    stopped on exit.

    Args:
        function: the function to run on each slice (its other arguments are passed unchanged).
        n_processes: the number of worker processes.
        batched_arg: the argument to split; by default the first argument annotated as a list (when
            every argument is annotated), else the first argument.
        verbose: print which argument is split and how.
        reduction: applied to the list of slice outputs.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        n_processes: int,
        batched_arg: str | None = None,
        verbose: bool = False,
        reduction: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        self.function = function
        self.n_processes = n_processes
        self._verbose = verbose
        self._reduction = reduction
        self._parallel = _slices(function, n_processes, batched_arg, verbose, reduction)
        self.batched_arg = self._parallel.batched_arg

    def batchify(self, lst: Any, chunk_size: int) -> list[Any]:
        """``lst`` cut into consecutive slices of ``chunk_size`` items."""
        return [lst[i : i + chunk_size] for i in range(0, len(lst), chunk_size)]

    def __enter__(self) -> Callable[..., Any]:
        """Start the context; returns the parallel version of the function."""
        return self._parallel.__enter__()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Stop the workers."""
        self._parallel.close()


class _Call:
    """One call of an asynchronous parallel function, running in a thread of its own."""

    def __init__(
        self, parallel: ParallelFunction, args: tuple[Any, ...], kwargs: dict[str, Any], *, report: bool
    ) -> None:
        self.outputs: list[Any] = []
        self.error: BaseException | None = None
        self._report = report
        self._parallel = parallel
        self._args = args
        self._kwargs = kwargs
        # Not a daemon: work started and never waited for still finishes before the interpreter exits.
        self.thread = threading.Thread(target=self._run, name=f"parallelise_async({parallel.function!r:.40})")
        self.thread.start()

    def _run(self) -> None:
        try:
            self.outputs = self._parallel(*self._args, **self._kwargs)
        except BaseException as exc:
            self.error = exc
            if self._report:
                raise  # nobody waits for this call: the thread prints the error


class MultiWorkerAsync(MultiWorker):
    """Like [`MultiWorker`][mtasklite_like.workercontext.MultiWorker], but a call starts the work and returns
    at once.

    On leaving the ``with`` block the work is waited for and, when ``return_container`` is given,
    the slice outputs are appended to it (those of every call, in call order). An exception raised
    by a slice is raised there.
    """

    def __init__(
        self,
        function: Callable[..., Any],
        n_processes: int,
        batched_arg: str | None = None,
        verbose: bool = False,
        return_container: list[Any] | None = None,
    ) -> None:
        super().__init__(function, n_processes, batched_arg, verbose, None)
        self.return_container = return_container
        self._calls: list[_Call] = []

    def _start(self, *args: Any, **kwargs: Any) -> None:
        # Each call gets its own workers, so calls made one after another run at the same time.
        self._parallel.signature.bind(*args, **kwargs)  # a wrong call fails here, not in the thread
        self._calls.append(_Call(self._parallel, args, kwargs, report=False))

    def __enter__(self) -> Callable[..., Any]:
        """Start the context; returns a function that starts the work and returns ``None``."""
        return self._start

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        """Wait for the work, fill ``return_container``, raise the first failure."""
        calls, self._calls = self._calls, []
        for call in calls:
            call.thread.join()
        if exc_type is not None:
            return
        for call in calls:
            if call.error is not None:
                raise call.error
            if self.return_container is not None:
                self.return_container.extend(call.outputs)


def parallelise(
    function: Callable[..., Any],
    n_processes: int,
    batched_arg: str | None = None,
    verbose: bool = False,
    reduction: Callable[[list[Any]], Any] | None = None,
) -> Callable[..., Any]:
    """The parallel version of ``function`` without a ``with`` block: each call starts
    ``n_processes`` workers and stops them when it returns."""
    return _slices(function, n_processes, batched_arg, verbose, reduction)


def auto_parallelise(function: Callable[..., Any]) -> Callable[..., Any]:
    """[`parallelise`][mtasklite_like.workercontext.parallelise] on every CPU, with the reduction chosen from
    the return annotation: list -> flatten, set -> union, dict -> merge, str -> concatenation, anything else
    -> none.

    Raises ``ValueError`` when ``function`` has no annotations or no return annotation.
    """
    n_processes = os.cpu_count() or 1
    if not getattr(function, "__annotations__", None):
        raise ValueError("auto_parallelise needs a function with type hints")
    try:
        hints = typing.get_type_hints(function)
    except Exception:
        hints = dict(function.__annotations__)
    if "return" not in hints:
        raise ValueError("auto_parallelise needs a return type hint to choose a reduction")
    returned = hints["return"]
    kind = typing.get_origin(returned) or returned
    if isinstance(kind, str):
        by_name = {"list": list, "List": list, "set": set, "Set": set, "dict": dict, "Dict": dict, "str": str}
        kind = by_name.get(kind.split("[", 1)[0])
    choices: dict[Any, tuple[Callable[[list[Any]], Any], str]] = {
        list: (flatten_reduction, "lists from the workers are flattened into one list, order kept"),
        set: (set_union_reduction, "sets from the workers are joined into one set"),
        dict: (dict_merge_reduction, "dicts from the workers are merged into one dict"),
        str: (string_concatenation_reduction, "strings from the workers are concatenated, order kept"),
    }
    reduction, note = choices.get(kind, (None, "no reduction: the list of slice outputs is returned"))
    print(f"auto_parallelise: {getattr(function, '__name__', function)} returns {returned!r}; {note}")
    return parallelise(function, n_processes, verbose=True, reduction=reduction)


def parallelise_async(
    function: Callable[..., Any],
    n_processes: int,
    batched_arg: str | None = None,
    verbose: bool = False,
) -> Callable[..., Any]:
    """A function that starts the parallel work in the background and returns ``None`` at once.

    The outputs are not kept; an exception is printed by the background thread. The interpreter
    waits for work in progress before it exits.
    """
    parallel = _slices(function, n_processes, batched_arg, verbose, None)

    @functools.wraps(function)
    def start(*args: Any, **kwargs: Any) -> None:
        parallel.signature.bind(*args, **kwargs)  # a wrong call fails here, not in the thread
        _Call(parallel, args, kwargs, report=True)

    return start
