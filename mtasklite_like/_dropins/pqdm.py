"""The ``pqdm`` wrappers: a pool and one progress bar, run lazily or at once.

Two shapes share this module, because the two libraries they replace disagree on when work runs:

- mtasklite's ``pqdm`` (``mtasklite_like.processes`` / ``.threads`` / ``.ray``) is lazy:
  ``run_pqdm`` returns a ``PqdmResult``. Iterating it streams results through the pool
  while one bar counts items; using it as a list (``len``, ``[i]``, ``==``, ``repr``) collects the
  remaining results first.
- pqdm's ``pqdm`` (``mtasklite_like.pqdm.processes`` / ``.threads``) is eager:
  ``run_pqdm_list`` runs every item before it returns a plain ``list``, and raises a failure
  from the call itself, so ``try: r = pqdm(...) except ...:`` catches it.

Each shape's signature is written once, in ``lazy_pqdm`` and ``eager_pqdm``; ``for_backend`` makes
the ``pqdm`` of each public module from them (its defaults, its docstring, its module), so those
modules hold one line each.

Keyword arguments go to the pool when they name one of its options (or one of
``concurrent.futures``' executor options, translated), to the bar otherwise, and a name neither
accepts fails at once.
"""

from __future__ import annotations

import inspect
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import chain, islice
from operator import length_hint
from types import TracebackType
from typing import Any, Concatenate, Generic, Literal, ParamSpec, TypeVar, cast

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from .._engine.results import ResultIterator
from .._logs.console import route_console_through
from .._options import ArgumentType, ExceptionMode
from .._pool import Pool
from ..constants import ExceptionBehaviour

__all__ = ["PqdmResult", "eager_pqdm", "for_backend", "lazy_pqdm", "run_pqdm", "run_pqdm_list"]

R = TypeVar("R")
T = TypeVar("T")
P = ParamSpec("P")

#: what a public module's ``pqdm`` runs on
PqdmBackend = Literal["processes", "threads", "ray"]

#: Pool options the wrapper sets itself: naming them again in **kwargs is a mistake
_EXPLICIT = frozenset(
    {"worker_or_worker_arr", "n_jobs", "argument_type", "bounded", "exception_behavior", "use_threads"}
)
#: Pool options a caller may pass through **kwargs
_POOL_OPTIONS = frozenset(
    n for n, p in inspect.signature(Pool.__init__).parameters.items() if n != "self" and n not in _EXPLICIT
) - {"exception_behaviour"}
#: concurrent.futures executor options (what pqdm forwards to its executor), with their meaning kept
_EXECUTOR_OPTIONS = frozenset({"initializer", "initargs", "mp_context", "max_workers", "max_tasks_per_child"})
#: options of tqdm subclasses that take them through **kwargs
_TQDM_EXTRAS = {"tqdm.rich": {"progress", "options"}, "tqdm.notebook": {"display"}}

#: how often, at most, the bar is given a new count while results stream (seconds)
_BAR_INTERVAL = 0.1


def _tqdm_options(tqdm_class: Any) -> set[str] | None:
    """Names ``tqdm_class`` accepts, or None when it takes arbitrary keywords we cannot list."""
    names: set[str] = set()
    for klass in getattr(tqdm_class, "__mro__", (tqdm_class,)):
        if "__init__" not in vars(klass) or klass is object:
            continue
        module = getattr(klass, "__module__", "")
        try:
            # Through the class, not vars(): tqdm wraps __init__ in a partialmethod.
            params = inspect.signature(klass.__init__).parameters.values()
        except (TypeError, ValueError):
            continue
        for p in params:
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and p.name not in ("self", "iterable"):
                names.add(p.name)
        names |= _TQDM_EXTRAS.get(module, set())
        if not module.startswith("tqdm") and any(p.kind is p.VAR_KEYWORD for p in params):
            return None  # a user's bar class that forwards **kwargs: we cannot tell
    return names


def _split_kwargs(kwargs: dict[str, Any], tqdm_class: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    pool_kw: dict[str, Any] = {}
    bar_kw: dict[str, Any] = {}
    bar_names = _tqdm_options(tqdm_class)
    for key, value in kwargs.items():
        if key in _EXPLICIT:
            raise TypeError(
                f"pqdm() got {key!r} among its pool and bar options: it is one of pqdm's own arguments "
                "(or, for use_threads, set by the module pqdm is imported from); pass it only once, by name"
            )
        if key == "mp_context":
            method = value if isinstance(value, str) or value is None else value.get_start_method()
            pool_kw["start_method"] = method
        elif key == "max_tasks_per_child":
            pool_kw["max_tasks_per_worker"] = value
        elif key == "max_workers":
            raise TypeError("pqdm() takes the number of workers as n_jobs, not max_workers")
        elif key in _POOL_OPTIONS or key in _EXECUTOR_OPTIONS:
            pool_kw[key] = value
        elif bar_names is None or key in bar_names:
            bar_kw[key] = value
        else:
            valid_pool = sorted(_POOL_OPTIONS | {"mp_context", "max_tasks_per_child"})
            valid_bar = sorted(bar_names)
            bar_name = getattr(tqdm_class, "__name__", repr(tqdm_class))
            raise TypeError(
                f"pqdm() got an unknown keyword argument {key!r}. Pool options: {', '.join(valid_pool)}. "
                f"Progress bar ({bar_name}) options: {', '.join(valid_bar)}"
            )
    return pool_kw, bar_kw


class BarNotes:
    """What a progress bar shows beside its count: the failures so far, and what holds the run back
    (``status``: a pause while memory is short), as ``failed=2, paused: 1 GiB free < 2 GiB``.

    ``update()`` sets the postfix only when something changed (``set_postfix`` costs a formatting
    pass); ``heartbeat`` is the run's heartbeat: it updates, then refreshes the bar's clock;
    ``close()`` closes the bar and, with ``report_stats`` (``pqdm(..., stats=True)``), prints the
    run's statistics in one line under it (``RunStats.summary``).

    It also keeps the bar's count: ``advance(n)`` counts ``n`` more results. Once a task has
    reported progress from inside (``mtasklite_like.progress``), the bar shows the whole results
    (``done``, an integer kept here) plus the fractions of the items in flight
    (``results.partial``, to a tenth of an item), set as ``bar.n`` on each count and heartbeat:
    ``tqdm.update`` adds onto ``bar.n``, which must not accumulate fractions. ``settle()`` (and
    ``close()``) leaves whole results only, so a bar ends at exactly its total.
    """

    def __init__(self, bar: Any, results: Any, report_stats: bool = False) -> None:
        self.bar = bar
        self.results = results
        self.report_stats = report_stats
        self._shown: tuple[int, str | None] = (0, None)
        #: results counted on the bar (from where it starts: tqdm's ``initial``)
        self.done: int = getattr(bar, "n", 0)
        #: a task has reported progress: the bar shows fractions from now on
        self._fractions = False

    def update(self) -> None:
        results = self.results
        now = (results.failure_count, results.status)
        if now != self._shown:
            self._shown = now
            failed, status = now
            notes = [f"failed={failed}"] if failed else []
            if status:
                notes.append(status)
            self.bar.set_postfix_str(", ".join(notes), refresh=False)

    def heartbeat(self) -> None:
        self.update()
        bar = self.bar
        value = self._value()
        if value != bar.n:
            bar.n = value
        bar.refresh()

    def advance(self, n: int) -> None:
        """Count ``n`` more results (and update the notes)."""
        self.update()
        self.done += n
        bar = self.bar
        if not self._fractions:
            bar.update(n)
            return
        bar.n = self._value()
        bar.update(0)  # tqdm's own pace of redrawing, and its rate, from the value just set

    def _value(self) -> float:
        """What the bar shows: the results counted, plus the fractions of the items in flight."""
        partial = self.results.partial
        if partial <= 0.0:
            return self.done
        self._fractions = True
        tenths = int(partial * 10)
        return round(self.done + tenths / 10, 1) if tenths else self.done

    def settle(self) -> None:
        """Whole results only, on the bar (the run is over: nothing is in flight that counts)."""
        bar = self.bar
        if bar.n != self.done:
            bar.n = self.done
            bar.refresh()

    def close(self) -> None:
        self.settle()
        self.bar.close()
        if self.report_stats:
            self.report_stats = False  # once
            print(self.results.stats().summary(), file=getattr(self.bar, "fp", None) or sys.stderr)


class PqdmResult(Generic[R]):
    """The results of ``pqdm(...)``: lazy when iterated, a list when used as one.

    - ``for r in result`` streams results as they come, updating one progress bar;
    - ``with pqdm(...) as result:`` stops the workers and closes the bar on exit;
    - ``len(result)``, ``result[i]``, ``result[a:b]``, ``result == [...]``, ``repr(result)``
      collect the remaining results first (and keep them), as code written for a list expects.

    With a sized input (a list, a range) the results are also kept while they stream, so the
    object stays a full list after a ``for`` loop, as pqdm's list does; they take as much memory as
    the input already does. With an unsized input (a generator) streamed results are not kept:
    that is what lets a 100-million-item generator run in constant memory.

    ``tqdm_obj`` is the bar and ``pool_obj`` the pool's result iterator, as in ``mtasklite``.
    """

    def __init__(self, results: ResultIterator[R], bar: Any, report_stats: bool = False) -> None:
        self.pool_obj = results
        self.tqdm_obj = bar
        self._notes = BarNotes(bar, results, report_stats)
        # While the caller waits on slow tasks, keep the bar's clock, rate and notes moving.
        results.heartbeat = self._notes.heartbeat
        #: the piece a for loop is reading (see _pieces), None: none
        self._unread: Iterator[R] | None = None
        self._mark = 0  # what was left in _unread when the bar last counted
        self._pending = 0  # results read and not yet shown on the bar
        self._shown_at = time.monotonic()
        self._collected: list[R] = []
        self._exhausted = False
        self._touched = False
        self._streaming = False

    # -- lazy -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[R]:
        self._touched = True
        if self._exhausted:
            return iter(self._collected)
        self._streaming = True
        return chain.from_iterable(self._pieces(keep=self.pool_obj.total is not None))

    def _pieces(self, *, keep: bool) -> Iterator[Iterable[R]]:
        """What a ``for`` loop reads: results in pieces, which ``itertools.chain`` hands over one
        by one in C, so streaming costs no Python call per result.

        Each list the pool hands over is kept (with ``keep``) when taken, and read through one
        iterator, ``_unread``, in parts: the first of one result, then twice as many while the loop
        reads them quickly, half as many once a part takes longer than ``_BAR_INTERVAL``. The bar
        counts what the loop has read each time it comes back for more, so it lags the loop by at
        most about that long. What a loop left unread (``break``) comes first for the next loop,
        or for the list-like use of the object.
        """
        unread = self._unread
        if unread is not None and length_hint(unread):
            yield unread
            self._settle()
        size = 1
        last = time.monotonic()
        for piece in self._pull(keep=keep):
            self._unread = unread = iter(piece)
            self._mark = len(piece)
            while True:
                left = length_hint(unread)
                if not left:
                    break
                yield unread if size >= left else islice(unread, size)
                self._settle()
                now = time.monotonic()
                took, last = now - last, now
                if took >= _BAR_INTERVAL:
                    size = max(1, size // 2)
                elif took < _BAR_INTERVAL / 4:
                    size = min(size * 2, 1 << 16)
        self._unread = None

    def _settle(self) -> None:
        """Count on the bar what was read from ``_unread`` since the last count."""
        unread = self._unread
        if unread is not None:
            left = length_hint(unread)
            if left != self._mark:
                self._count(self._mark - left)
                self._mark = left

    def _pull(self, *, keep: bool) -> Iterator[list[R]]:
        """The results in the lists the pool hands them over in (everything ready, else the next
        one, waited for), kept in ``_collected`` with ``keep``; the bar's count is brought up to
        date before each wait and at the end."""
        results = self.pool_obj
        take = results.take_ready
        nxt = results.__next__
        collected = self._collected if keep else None
        try:
            while True:
                piece = take()
                if not piece:
                    self._flush_count()  # the next result may be slow: show what was read
                    try:
                        piece = [nxt()]
                    except StopIteration:
                        break
                if collected is not None:
                    collected.extend(piece)
                yield piece
        except BaseException:
            self._flush_count()
            self._notes.close()
            raise
        self._flush_count()
        self._exhausted = True
        self.tqdm_obj.refresh()
        self._notes.close()

    def _count(self, n: int) -> None:
        """``n`` more results were read: told to the bar at most every ``_BAR_INTERVAL``."""
        self._pending += n
        now = time.monotonic()
        if now - self._shown_at >= _BAR_INTERVAL:
            self._flush_count()
            self._shown_at = now

    def _flush_count(self) -> None:
        if self._pending:
            self._notes.advance(self._pending)
            self._pending = 0

    # -- list-like ----------------------------------------------------------------------------------

    def _materialize(self) -> list[R]:
        self._touched = True
        if not self._exhausted:
            self._settle()
            unread, self._unread = self._unread, None
            if unread is not None:
                rest = list(unread)  # what a loop left of the list it was reading
                self._count(len(rest))
                if self.pool_obj.total is None:
                    self._collected.extend(rest)  # streamed from an unsized input: not kept yet
            for piece in self._pull(keep=True):
                self._count(len(piece))
        return self._collected

    def __len__(self) -> int:
        if self._streaming and not self._exhausted:
            # list(result) asks for len() right after iter(): answer without draining the stream
            # that list() is about to read.
            total = self.pool_obj.total
            if total is None:
                raise TypeError("the length of a result streamed from an unsized input is not known yet")
            return total
        return len(self._materialize())

    def __getitem__(self, index: Any) -> Any:
        return self._materialize()[index]

    def __eq__(self, other: object) -> bool:
        if isinstance(other, PqdmResult):
            other = other._materialize()
        return self._materialize() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return repr(self._materialize())

    def __contains__(self, value: object) -> bool:
        return value in self._materialize()

    # -- context manager ------------------------------------------------------------------------------

    def __enter__(self) -> PqdmResult[R]:
        self._touched = True
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and close the bar."""
        self._touched = True
        self.pool_obj.close()
        self.pool_obj.parent_obj.close()
        self._notes.close()

    def __del__(self) -> None:
        # `pqdm(items, save_file, 4)` as a bare statement, or a result assigned and dropped without
        # ever being looked at: code written for pqdm's eager list expects those items to have run,
        # so they run here, as the result is dropped (at once in CPython, where the last reference
        # goes with the statement). An error can only be reported as a warning here, since nothing
        # can catch an exception raised by __del__; the eager pqdm of mtasklite_like.pqdm.processes
        # raises it from the call instead.
        if self._touched or self.pool_obj.started or sys.is_finalizing():
            return
        try:
            self._materialize()
        except Exception as exc:
            warnings.warn(
                f"a pqdm() result that was never used failed while running its remaining items: "
                f"{type(exc).__name__}: {exc}. Use the result (e.g. list(result)) to have the error raised "
                "where it can be handled, or import pqdm from mtasklite_like.pqdm.processes (or "
                ".threads), whose pqdm runs every item at the call and returns a list, as pqdm does",
                RuntimeWarning,
                stacklevel=2,
            )


def _build(
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None,
    argument_type: ArgumentType | str | None,
    bounded: bool,
    exception_behaviour: ExceptionMode,
    tqdm_class: Any,
    kwargs: dict[str, Any],
    use_threads: bool,
    backend: str | None,
) -> tuple[ResultIterator[R], Any, bool]:
    """Check the options, build the pool, its result iterator (nothing runs yet) and the bar; say
    whether the run's statistics are printed when the bar closes (``stats=True``)."""
    report_stats = kwargs.pop("stats", False)
    if not isinstance(report_stats, bool):
        raise TypeError(f"stats must be True or False (print the run's statistics when the bar closes), "
                        f"not {report_stats!r:.40}")
    # The American spelling is accepted too, as Pool accepts the British one.
    american = kwargs.pop("exception_behavior", None)
    if american is not None:
        if exception_behaviour not in (ExceptionBehaviour.IGNORE, american):
            raise ValueError(
                f"exception_behaviour={exception_behaviour!r} and exception_behavior={american!r} "
                "disagree; pass only one of the two spellings"
            )
        exception_behaviour = american
    pool_kw, bar_kw = _split_kwargs(kwargs, tqdm_class)
    if backend is not None:
        named = pool_kw.get("backend", backend)
        if named != backend:
            raise ValueError(f"this pqdm runs on {backend!r}; backend={named!r} asks for another backend")
        pool_kw["backend"] = backend
    pool: Pool[R] = Pool(
        worker_or_worker_arr,
        n_jobs,
        argument_type=argument_type,  # type: ignore[arg-type]  # checked by Pool
        exception_behavior=exception_behaviour,
        bounded=bounded,
        use_threads=use_threads,
        **pool_kw,
    )
    results = pool(input_iterable)
    if "total" not in bar_kw:
        bar_kw["total"] = results.total
    bar = tqdm_class(**bar_kw)
    route_console_through(bar)  # console logging is written through the bar while it is shown
    return results, bar, report_stats


def run_pqdm(
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None,
    argument_type: ArgumentType | str | None,
    bounded: bool,
    exception_behaviour: ExceptionMode,
    tqdm_class: Any,
    kwargs: dict[str, Any],
    *,
    use_threads: bool,
    backend: str | None = None,
) -> PqdmResult[R]:
    """The body of mtasklite's lazy ``pqdm`` (``processes``, ``threads``, ``ray``): nothing runs
    until the result is used. ``backend`` is the backend the module stands for (None: the one
    ``use_threads`` says, or what ``backend=`` in ``kwargs`` names)."""
    results, bar, report_stats = _build(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads, backend,
    )
    return PqdmResult(results, bar, report_stats)


def run_pqdm_list(
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None,
    argument_type: ArgumentType | str | None,
    bounded: bool,
    exception_behaviour: ExceptionMode,
    tqdm_class: Any,
    kwargs: dict[str, Any],
    *,
    use_threads: bool,
) -> list[R]:
    """The body of pqdm's eager ``pqdm`` (``mtasklite_like.pqdm.processes`` / ``.threads``): every
    item has run when it returns, and a failure the mode raises is raised from here. The workers
    are stopped and the bar is closed before it returns or raises."""
    results, bar, report_stats = _build(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads, None,
    )
    notes = BarNotes(bar, results, report_stats)
    try:
        return _collect(results, bar, notes)
    finally:
        notes.close()
        results.close()
        results.parent_obj.close()


def _collect(results: ResultIterator[R], bar: Any, notes: BarNotes) -> list[R]:
    """Every result of ``results``, in a list, with ``bar`` counting them.

    Results are taken in bulk (``take_ready``), so the bar and the clock cost a call per bulk, not
    per item; the bar gets a new count at most every ``_BAR_INTERVAL`` while results flow, and
    before each wait for the next one.
    """
    # While the caller waits on slow tasks, keep the bar's clock, rate and notes moving.
    results.heartbeat = notes.heartbeat
    out: list[R] = []
    take = results.take_ready
    nxt = results.__next__
    shown = 0  # results the bar has been told about
    last = time.monotonic()
    try:
        while True:
            ready = take()
            if ready:
                out.extend(ready)
                now = time.monotonic()
                if now - last < _BAR_INTERVAL:
                    continue
                last = now
            else:
                if shown == len(out):
                    try:
                        out.append(nxt())
                    except StopIteration:
                        break
                    continue
            # Tell the bar: time for a new count, or nothing is ready and the next result may be slow.
            notes.advance(len(out) - shown)
            shown = len(out)
    finally:
        if shown != len(out):
            notes.advance(len(out) - shown)
    return out


# -- the public modules' pqdm ---------------------------------------------------------------------
#
# ``lazy_pqdm`` and ``eager_pqdm`` hold each shape's signature, written once; ``for_backend`` binds
# one to a backend as the ``pqdm`` of a public module. What type checkers see is the template's
# signature less its ``backend`` (``Concatenate``); what ``inspect.signature``, ``help`` and the API
# reference see is the module's own (``__signature__``, ``__doc__``, ``__module__``).


def lazy_pqdm(
    backend: PqdmBackend,
    /,
    input_iterable: Iterable[Any],
    worker_or_worker_arr: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None = None,
    argument_type: ArgumentType | Literal["direct"] | None = "single_arg",
    bounded: bool = True,
    exception_behaviour: ExceptionMode = "ignore",
    tqdm_class: type[tqdm_type[Any]] = tqdm_auto,
    *,
    use_threads: bool = False,
    **kwargs: Any,
) -> PqdmResult[R]:
    """mtasklite's lazy ``pqdm`` on ``backend``: the body of ``mtasklite_like.processes.pqdm``,
    ``.threads.pqdm`` and ``.ray.pqdm``, made by :func:`for_backend`. ``use_threads`` defaults to
    the module's kind of worker; the Ray one has none (its workers are Ray actors)."""
    return run_pqdm(
        input_iterable, worker_or_worker_arr, n_jobs, argument_type, bounded, exception_behaviour,
        tqdm_class, kwargs, use_threads=use_threads, backend="ray" if backend == "ray" else None,
    )


def eager_pqdm(
    backend: PqdmBackend,
    /,
    array: Iterable[Any],
    function: Callable[..., R] | Sequence[Callable[..., R]],
    n_jobs: int | None,
    argument_type: ArgumentType | Literal["direct"] | None = None,
    bounded: bool = False,
    exception_behaviour: ExceptionMode = "ignore",
    tqdm_class: type[tqdm_type[Any]] = tqdm_auto,
    **kwargs: Any,
) -> list[R]:
    """pqdm's eager ``pqdm`` on ``backend``: the body of ``mtasklite_like.pqdm.processes.pqdm`` and
    ``.threads.pqdm``, made by :func:`for_backend`."""
    return run_pqdm_list(
        array, function, n_jobs, argument_type, bounded, exception_behaviour, tqdm_class, kwargs,
        use_threads=backend == "threads",
    )


def for_backend(template: Callable[Concatenate[PqdmBackend, P], T], backend: PqdmBackend) -> Callable[P, T]:
    """``template`` (:func:`lazy_pqdm` or :func:`eager_pqdm`) as the ``pqdm`` of the public module
    for ``backend``: a function whose signature is the template's less ``backend``, with that
    module's ``use_threads`` default (none for Ray), docstring, name and module."""
    lazy = template is lazy_pqdm
    if backend not in ("processes", "threads", "ray") or (
        not lazy and (template is not eager_pqdm or backend == "ray")
    ):
        raise ValueError(f"no public module's pqdm is {template!r} on {backend!r}")
    module = f"mtasklite_like.{backend}" if lazy else f"mtasklite_like.pqdm.{backend}"
    params = list(inspect.signature(template).parameters.values())[1:]
    if lazy:
        # The keyword-only use_threads: the module's kind of worker by default; Ray has none.
        params = [p.replace(default=backend == "threads") if p.name == "use_threads" else p
                  for p in params if backend != "ray" or p.name != "use_threads"]
    signature = inspect.Signature(params, return_annotation=inspect.signature(template).return_annotation)
    refused = "use_threads" if lazy and backend == "ray" else None

    def pqdm(*args: Any, **kwargs: Any) -> Any:
        # Bound against the module's signature, not the template's: its defaults apply, and a wrong
        # call is told in the module's terms (the template's would count `backend` among them).
        try:
            bound = signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise TypeError(f"pqdm(): {exc}") from None
        if refused is not None and refused in kwargs:
            raise TypeError(f"{module}.pqdm() takes no {refused!r}: its workers are Ray actors")
        bound.apply_defaults()
        return template(backend, *bound.args, **bound.kwargs)

    pqdm.__signature__ = signature  # type: ignore[attr-defined]
    pqdm.__annotations__ = {
        name: value for name, value in template.__annotations__.items()
        if name in signature.parameters or name == "return"
    }
    pqdm.__doc__ = _docstring(lazy, backend)
    pqdm.__module__ = module
    pqdm.__name__ = pqdm.__qualname__ = "pqdm"
    return cast("Callable[P, T]", pqdm)


# The docstrings of the public modules' pqdm, from parts the backends share.

_LAZY_ARGUMENTS = (
    "``argument_type`` is ``'single_arg'`` (also ``None`` or ``'direct'``), ``'args'`` or\n"
    "``'kwargs'``; ``exception_behaviour`` is ``'ignore'`` (the exception takes the failed item's\n"
    "place), ``'immediate'`` or ``'deferred'`` (``exception_behavior`` is accepted too).\n"
)
_EAGER_ARGUMENTS = (
    "``argument_type`` is ``None`` (``function(item)``; also ``'single_arg'`` or ``'direct'``),\n"
    "``'args'`` (``function(*item)``) or ``'kwargs'`` (``function(**item)``). ``exception_behaviour``\n"
    "is ``'ignore'`` (the exception takes the failed item's place), ``'immediate'`` or\n"
    "``'deferred'`` (``exception_behavior`` is accepted too). Under ``'immediate'`` the first\n"
    "failure in input order is raised from this call as soon as every item before it has its\n"
    "result, without waiting for the items after it. Under ``'deferred'`` every item runs, then\n"
    "[`DeferredExceptions`][mtasklite_like.DeferredExceptions] is raised: an ``Exception`` whose\n"
    "``.args`` are the exceptions, as pqdm's ``Exception(*excs)``. ``bounded=True`` reads the input\n"
    "at most a bounded window ahead of the results. ``n_jobs=None`` means the executor's default.\n"
)
_KEYWORDS = (
    "A keyword argument naming a ``Pool`` option (``chunk_size``, ``is_unordered``, ``task_timeout``,\n"
    "``retries``, ``start_method``, ...) or an executor option (``initializer``, ``initargs``,\n"
    "``mp_context``, ``max_tasks_per_child``) goes to the pool; the others go to ``tqdm_class``\n"
    "(``desc``, ``disable``, ``file``, ``position``, ``leave``, ``unit``, ``total``, ...); an unknown\n"
    "name fails at once, listing the valid ones."
)


def _docstring(lazy: bool, backend: PqdmBackend) -> str:
    if not lazy:
        return (
            f"Run ``function`` over ``array`` on {backend}; return the list of results. "
            "With a progress bar.\n\n"
            "pqdm's ``pqdm``, with its signature and defaults: when it returns, every item has run, and the\n"
            "results are a plain ``list`` in input order; the workers are stopped and the bar closed.\n"
            f"{_EAGER_ARGUMENTS}{_KEYWORDS}\n\n"
            "For mtasklite's lazy ``pqdm``, whose result streams, import it from "
            f"``mtasklite_like.{backend}``.\n"
        )
    if backend == "ray":
        return (
            "Run ``worker_or_worker_arr`` over ``input_iterable`` on Ray actors, lazily, with a bar.\n\n"
            "mtasklite's ``pqdm`` (as ``mtasklite_like.processes.pqdm``), with each worker a Ray actor.\n"
            "Nothing runs at the call: it returns a [`PqdmResult`][mtasklite_like.processes.PqdmResult];\n"
            "iterate it to stream results (constant memory for a generator), or use it as the list of\n"
            "results. Ray options pass through ``**kwargs`` too: ``address`` (the cluster) and\n"
            "``backend_options`` (actor options: ``num_cpus``, ``num_gpus``, ``resources``, ..., one dict\n"
            "or one per worker).\n\n"
            f"{_LAZY_ARGUMENTS}{_KEYWORDS}\n"
        )
    switch, other = ("True", "threads") if backend == "processes" else ("False", "processes")
    return (
        f"Run ``worker_or_worker_arr`` over ``input_iterable`` on {backend}, lazily, "
        "with a progress bar.\n\n"
        "mtasklite's ``pqdm``, with its signature and defaults. Nothing runs at the call: it returns a\n"
        "[`PqdmResult`][mtasklite_like.processes.PqdmResult]; iterate it to stream results (constant\n"
        "memory for a generator), or use it as the list of results. For pqdm's ``pqdm``, which runs\n"
        "every item at the call and returns a ``list``, import it from "
        f"``mtasklite_like.pqdm.{backend}``.\n\n"
        f"{_LAZY_ARGUMENTS}``use_threads={switch}`` runs it on {other} instead, as in mtasklite.\n"
        f"{_KEYWORDS}\n"
    )
