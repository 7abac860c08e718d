"""The ``pqdm`` wrapper: a pool, one progress bar, and a result that is both lazy and list-like.

``pqdm(items, fn, n_jobs)`` returns a :class:`PqdmResult`. Iterating it streams results through
the pool while one bar counts items; using it as a list (``len``, ``[i]``, ``==``, ``repr``)
collects the remaining results first. Keyword arguments go to the pool when they name one of its
options (or one of ``concurrent.futures``' executor options, translated), to the bar otherwise,
and a name neither accepts fails at once.
"""

from __future__ import annotations

import inspect
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any

from tqdm import tqdm as tqdm_type
from tqdm.auto import tqdm as tqdm_auto

from ._pool import Pool
from ._run import ResultIterator
from .constants import ArgumentPassing, ExceptionBehaviour

__all__ = ["PqdmResult", "pqdm_wrapper"]

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
                f"pqdm() sets {key!r} itself: pass it as pqdm's own argument, not again in **kwargs"
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


class PqdmResult:
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

    def __init__(self, results: ResultIterator[Any], bar: Any) -> None:
        self.pool_obj = results
        self.tqdm_obj = bar
        # While the caller waits on slow tasks, keep the bar's clock and rate moving.
        results._run.heartbeat = bar.refresh
        self._collected: list[Any] = []
        self._exhausted = False
        self._touched = False
        self._streaming = False
        self._failures = 0

    # -- lazy -------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Any]:
        self._touched = True
        if self._exhausted:
            return iter(self._collected)
        self._streaming = True
        return self._stream(keep=self.pool_obj._run.total is not None, emit=True)

    def _stream(self, *, keep: bool, emit: bool) -> Iterator[Any]:
        bar = self.tqdm_obj
        run = self.pool_obj._run
        ready = run.ready
        nxt = self.pool_obj.__next__
        collected = self._collected if keep else None
        pending = 0
        # Check the clock once per `stride` items, and resize the stride so checks happen about
        # every _BAR_INTERVAL: the bar costs a counter increment per item, not a tqdm call.
        stride = 1
        last = time.monotonic()
        try:
            while True:
                if ready:
                    result = ready.popleft()
                else:
                    if pending:
                        self._flush(bar, run, pending)
                        pending = 0
                    try:
                        result = nxt()
                    except StopIteration:
                        break
                pending += 1
                if pending >= stride:
                    now = time.monotonic()
                    elapsed = now - last
                    if elapsed >= _BAR_INTERVAL:
                        self._flush(bar, run, pending)
                        pending = 0
                        last = now
                        stride = max(1, stride // 2)
                    elif elapsed < _BAR_INTERVAL / 4:
                        stride = min(stride * 2, 1 << 16)
                if collected is not None:
                    collected.append(result)
                if emit:
                    yield result
        except BaseException:
            if pending:
                self._flush(bar, run, pending)
            bar.close()
            raise
        if pending:
            self._flush(bar, run, pending)
        self._exhausted = True
        bar.refresh()
        if emit:
            self.tqdm_obj.close()

    def _flush(self, bar: Any, run: Any, n: int) -> None:
        failures = run.failure_count
        if failures != self._failures:
            self._failures = failures
            bar.set_postfix(failed=failures, refresh=False)
        bar.update(n)

    # -- list-like ----------------------------------------------------------------------------------

    def _materialize(self) -> list[Any]:
        self._touched = True
        if not self._exhausted:
            for _ in self._stream(keep=True, emit=False):
                pass
            self.tqdm_obj.close()
        return self._collected

    def __len__(self) -> int:
        if self._streaming and not self._exhausted:
            # list(result) asks for len() right after iter(): answer without draining the stream
            # that list() is about to read.
            total = self.pool_obj._run.total
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

    def __enter__(self) -> PqdmResult:
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
        self.tqdm_obj.close()

    def __del__(self) -> None:
        # `pqdm(items, save_file, 4)` used for its side effects, its result never looked at: with
        # pqdm that ran every item before returning, so it must run here too, as the result is
        # dropped. Anything iterated or used as a list has already run as far as it was asked to.
        run_started = getattr(self.pool_obj._run, "_started", True)
        if not self._touched and not run_started and not sys.is_finalizing():
            self._materialize()


def pqdm_wrapper(use_threads: bool) -> Callable[..., PqdmResult]:
    """Make the ``pqdm`` function of the ``processes`` or ``threads`` module."""

    def pqdm(
        input_iterable: Iterable[Any],
        worker_or_worker_arr: Any,
        n_jobs: int | None = None,
        argument_type: str | None = ArgumentPassing.AS_SINGLE_ARG,
        bounded: bool = True,
        exception_behaviour: str = ExceptionBehaviour.IGNORE,
        tqdm_class: type[tqdm_type] = tqdm_auto,
        **kwargs: Any,
    ) -> PqdmResult:
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
        pool = Pool(
            worker_or_worker_arr,
            n_jobs,
            argument_type=argument_type,
            exception_behavior=exception_behaviour,
            bounded=bounded,
            use_threads=use_threads,
            **pool_kw,
        )
        results = pool(input_iterable)
        if "total" not in bar_kw:
            bar_kw["total"] = results._run.total
        bar = tqdm_class(**bar_kw)
        return PqdmResult(results, bar)

    pqdm.__doc__ = f"""Run ``worker_or_worker_arr`` over ``input_iterable`` on {"threads" if use_threads else
        "processes"}, with a progress bar.

    The signature is that of ``pqdm`` and ``mtasklite``: ``argument_type`` is ``'single_arg'`` (also
    ``None`` or ``'direct'``), ``'args'`` or ``'kwargs'``; ``exception_behaviour`` is ``'ignore'``
    (default), ``'immediate'`` or ``'deferred'`` (``exception_behavior`` is accepted too).
    Keyword arguments naming a ``Pool`` option (``chunk_size``, ``is_unordered``, ``join_timeout``,
    ``start_method``, ``worker_env``, ...) or an executor option (``initializer``, ``initargs``,
    ``mp_context``, ``max_tasks_per_child``) go to the pool; the others go to ``tqdm_class``
    (``desc``, ``disable``, ``position``, ``leave``, ``file``, ``unit``, ``total``, ...).
    Returns a :class:`PqdmResult`: iterate it to stream results, or use it as the list of results.
    """
    return pqdm
