"""A drop-in for ``doc_ock.mp_lock`` (``gfickel/multiprocessing_lib``), built on journaled runs.

Change ``from doc_ock.mp_lock import mp_lock`` to ``from mtasklite_like.mp_lock import mp_lock``
and nothing else. The names, arguments and behaviour are kept:

- ``process(data, shared_data, init_values)`` runs on each item of ``data_list`` (strings, their
  own names); ``init_values = init_function(shared_data)`` runs once in each worker (``{}``
  without one);
- ``save_callback(f"{out_path}/data", results, names)`` receives at most ``save_batch`` results at
  a time, in the calling process, never two calls at once;
- a run that stopped (a crash, Ctrl-C, a reboot) is resumed by calling it again with the same
  ``out_path``: items already finished are skipped, by name; a call on a finished run does nothing
  (``mp_lock_value`` returns the stored results) and starts no worker;
- an exception in ``process`` reaches the caller in its own type;
- what ``process`` prints goes to ``out_path/user_output.txt``.

What is better than there: the record of finished items is the journal of the pool
(``out_path/journal/``), where each batch is written as soon as its ``save_callback`` returns, so
nothing saved is lost; a crash repeats at most the batch whose ``save_callback`` was running (a
user callback and the journal cannot commit together). Items
are processed in ``data_list`` order and handed out dynamically (no static slices). An exception
in ``process`` or a worker that dies fails that item only: the other items are processed and
saved, then the first failure (in ``data_list`` order) is raised in its own type, with every
failure of the call in its ``mp_lock_failures`` attribute and the failed names in a note; the
failed items are tried again by the next call.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import IO, Any

from ._errors import DeferredExceptions, WorkerInitError
from ._journal import JournalOptions, JournalState, journaled_run, read_journal
from ._pool import Pool
from ._worker.delayed import delayed_init

__all__ = [
    "InvalidArgumentsError",
    "is_mp_lock_completed",
    "mp_lock",
    "mp_lock_batch",
    "mp_lock_value",
    "mp_lock_values",
]

#: where the journal lives inside ``out_path``
JOURNAL_DIR = "journal"


class InvalidArgumentsError(ValueError):
    """An argument of an ``mp_lock*`` call has the wrong type or value (as in ``doc_ock``)."""

    def __init__(self, argument: str, expected_value: str) -> None:
        super().__init__(f"Invalid {argument}. Expected values: {expected_value}")


def _validate(
    data_list: Any, process: Any, num_procs: Any, out_path: Any, save_batch: Any, batch_size: Any = 1
) -> None:
    if not isinstance(data_list, list) or not data_list:
        raise InvalidArgumentsError("data_list", "list(str) > 0")
    if not all(isinstance(x, str) for x in data_list):
        bad = next(x for x in data_list if not isinstance(x, str))
        raise InvalidArgumentsError("data_list", f"list(str) > 0 (item {bad!r} is a {type(bad).__name__})")
    if not callable(process):
        raise InvalidArgumentsError("process", "function")
    for name, value in (("num_procs", num_procs), ("save_batch", save_batch), ("batch_size", batch_size)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise InvalidArgumentsError(name, "int > 0")
    if not isinstance(out_path, str) or not out_path:
        raise InvalidArgumentsError("out_path", "len(str) > 0")


@delayed_init
class _Process:
    """What each worker runs: ``process(item, shared_data, init_values)``, its prints appended to
    ``out_path/user_output.txt``. Built in the worker, so ``init_function`` runs there once."""

    def __init__(
        self,
        process: Callable[..., Any],
        shared_data: Any,
        init_function: Callable[[Any], Any] | None,
        output_file: str,
    ) -> None:
        self._process = process
        self._shared = shared_data
        self._output: IO[str] = open(output_file, "a", buffering=1)  # noqa: SIM115 - lives with the worker
        with contextlib.redirect_stdout(self._output):
            self._init = init_function(shared_data) if init_function is not None else {}

    def __call__(self, data: Any) -> Any:
        if sys.stdout is self._output:  # one worker in the caller: already redirected
            return self._process(data, self._shared, self._init)
        with contextlib.redirect_stdout(self._output):
            return self._process(data, self._shared, self._init)


def _names_done(out_path: str) -> set[str]:
    """Names of the items an earlier call finished (batches count for each of their names)."""
    done: set[str] = set()
    for key in read_journal(os.path.join(out_path, JOURNAL_DIR)).done:
        if isinstance(key, tuple):
            done.update(key)
        else:
            done.add(key)
    return done


def _run(
    items: Sequence[Any],
    process: Callable[..., Any],
    callback: Callable[[list[Any], list[Any]], None] | None,
    num_procs: int,
    out_path: str,
    save_batch: int,
    shared_data: Any,
    init_function: Callable[[Any], Any] | None,
    verbose: bool,
    *,
    kind: str,
    keep_results: bool,
    key: Callable[[Any], Any] | None = None,
    count: Callable[[Any], int] = lambda _item: 1,
    total: int,
    already: int,
) -> list[Any]:
    """Run ``process`` over ``items`` through the journal in ``out_path``; the results in ``items``
    order when ``keep_results``.

    When the journal already holds every item (a repeated call on a finished run), the stored
    results are returned and no worker is started, so ``init_function`` does not run for nothing.
    Failed items raise the first failure in its own type (see :func:`_first_failure`) once every
    other item is processed and saved.
    """
    os.makedirs(out_path, exist_ok=True)
    worker = _Process(process, shared_data, init_function, os.path.join(out_path, "user_output.txt"))
    pool = Pool(
        worker,
        num_procs,
        exception_behavior="deferred",
        on_worker_death="restart",
    )
    options = JournalOptions(
        run_dir=os.path.join(out_path, JOURNAL_DIR),
        key=key,
        results=keep_results,
        save_callback=callback,
        save_batch=save_batch,
        identity=f"mtasklite_like.mp_lock:{kind}",
        check_input=False,  # resume by name: the list may change between calls, as there
    )
    results: list[Any] = []
    bar: Any = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=already)
    failures: DeferredExceptions | None = None
    init_error: WorkerInitError | None = None
    try:
        # Opening the journal checks it was written by the same function and locks it; the
        # workers start only when the stream is first read.
        with journaled_run(pool, items, options) as stream:
            stored = _stored_results(stream.journal_state, items, key)
            if stored is not None:
                results = stored if keep_results else []
                if bar is not None:
                    bar.update(sum(map(count, items)))
            else:
                # Not zip(items, stream): the stream must run to its end, where failures are raised.
                for position, result in enumerate(stream):
                    if keep_results:
                        results.append(result)
                    if bar is not None:
                        bar.update(count(items[position]))
    except DeferredExceptions as exc:
        failures = exc
    except WorkerInitError as exc:
        # init_function raised: doc_ock lets that exception through, so `except ImportError:` (say)
        # around the call must catch it here too.
        init_error = exc
    finally:
        if bar is not None:
            bar.close()
    if init_error is not None:
        raise _original_init_error(init_error)
    if failures is not None:
        # Raised here, not in the except clause, so the summary is not chained as its context.
        raise _first_failure(failures, items)
    return results


def _stored_results(
    state: JournalState | None, items: Sequence[Any], key: Callable[[Any], Any] | None
) -> list[Any] | None:
    """The journal's results for ``items`` when it holds every one of them, else None."""
    if state is None:
        return None
    done = state.done
    keys = list(items) if key is None else [key(x) for x in items]
    if not all(k in done for k in keys):
        return None
    return [done[k] for k in keys]


def _original_init_error(error: WorkerInitError) -> BaseException:
    """What ``init_function`` raised, in its own type (the worker's traceback stays its cause), with
    the pool's description of the failure as a note and as ``worker_init_error``."""
    original = error.__cause__
    if not isinstance(original, Exception):
        return error
    with contextlib.suppress(AttributeError):
        original.worker_init_error = error  # type: ignore[attr-defined]
    if hasattr(original, "add_note"):
        original.add_note(f"mp_lock: {error}")
    return original


#: how many failed items the note on a raised failure names
_NAMED_FAILURES = 10


def _first_failure(failures: DeferredExceptions, items: Sequence[Any]) -> BaseException:
    """The exception an ``mp_lock*`` call raises when items failed: the first failure (in
    ``data_list`` order) in its own type, as ``doc_ock`` raises it, so ``except ValueError:``
    around the call keeps working.

    Every failure of the call, the first included, is set on it as ``mp_lock_failures``, and a note
    (printed under the traceback) names the failed items.
    """
    errors = failures.exceptions
    if not errors:  # pragma: no cover - the run raises DeferredExceptions only with failures
        return failures
    first = errors[0]
    described: list[str] = []
    for error in errors[:_NAMED_FAILURES]:
        index = getattr(error, "input_index", None)
        name = items[index] if isinstance(index, int) and 0 <= index < len(items) else "?"
        described.append(f"{name!r}: {type(error).__name__}")
    more = len(errors) - len(described)
    listed = "; ".join(described) + (f"; and {more} more" if more else "")
    with contextlib.suppress(AttributeError):
        first.mp_lock_failures = errors  # type: ignore[attr-defined]
    if hasattr(first, "add_note"):
        first.add_note(
            f"mp_lock: {len(errors)} item(s) failed in this call, this is the first ({listed}). The other "
            "items were processed and saved; every failure is in this exception's mp_lock_failures, "
            "and the failed items are tried again by the next call"
        )
    return first


def mp_lock(
    data_list: list[str],
    process: Callable[..., Any],
    save_callback: Callable[[str, list[Any], list[str]], Any] | None,
    num_procs: int,
    out_path: str,
    save_batch: int = 10,
    shared_data: Any = {},  # noqa: B006 - the signature of doc_ock
    init_function: Callable[[Any], Any] | None = None,
    verbose: bool = True,
) -> None:
    """Run ``process`` over the names in ``data_list`` on ``num_procs`` processes, resumably.

    ``process(data, shared_data, init_values)`` returns a result (picklable) or nothing;
    ``save_callback(f"{out_path}/data", results, names)`` (or None) saves batches of at most
    ``save_batch`` results. Calling again with the same ``out_path`` skips the names finished,
    and does nothing (no worker starts) when every name is finished.

    If items failed, the first failure (in ``data_list`` order) is raised in its own type once the
    other items are all processed and saved; ``mp_lock_failures`` on it lists every failure of the
    call, and a note names the failed items. The failed items are tried again by the next call.
    """
    _validate(data_list, process, num_procs, out_path, save_batch)
    names = list(dict.fromkeys(data_list))  # each name once, in order
    done = _names_done(out_path)
    todo = [n for n in names if n not in done]
    _run(
        todo, process, _adapt(save_callback, out_path), num_procs, out_path, save_batch, shared_data,
        init_function, verbose, kind="mp_lock", keep_results=False, total=len(names),
        already=len(names) - len(todo),
    )


def mp_lock_value(
    data_list: list[str],
    process: Callable[..., Any],
    save_callback: Callable[[str, list[Any], list[str]], Any] | None,
    num_procs: int,
    out_path: str,
    save_batch: int = 10,
    shared_data: Any = {},  # noqa: B006 - the signature of doc_ock
    init_function: Callable[[Any], Any] | None = None,
    verbose: bool = True,
) -> list[Any]:
    """As [`mp_lock`][mtasklite_like.mp_lock.mp_lock], and return the results of ``process`` in ``data_list``
    order.

    The results are kept in the journal, so items finished by an earlier call are not computed
    again: their stored results take their place (when all are stored, no worker starts). Failures
    are raised as by ``mp_lock``. (``mp_lock_values`` is the same function.)
    """
    _validate(data_list, process, num_procs, out_path, save_batch)
    names = list(dict.fromkeys(data_list))
    stream = _run(
        names, process, _adapt(save_callback, out_path), num_procs, out_path, save_batch, shared_data,
        init_function, verbose, kind="mp_lock_value", keep_results=True, total=len(names),
        already=0,
    )
    by_name = dict(zip(names, stream))
    return [by_name[n] for n in data_list]


#: the name the multiprocessing_lib README uses
mp_lock_values = mp_lock_value


def mp_lock_batch(
    data_list: list[str],
    process: Callable[..., Any],
    save_callback: Callable[[str, list[Any], list[str]], Any] | None,
    num_procs: int,
    out_path: str,
    batch_size: int,
    save_batch: int = 10,
    shared_data: Any = {},  # noqa: B006 - the signature of doc_ock
    init_function: Callable[[Any], Any] | None = None,
    verbose: bool = True,
) -> None:
    """As [`mp_lock`][mtasklite_like.mp_lock.mp_lock], but ``process(batch, shared_data, init_values)`` gets a
    list of at most ``batch_size`` names and returns a list of as many results.

    ``save_callback`` gets the results and names of whole batches, at most ``save_batch`` names
    per call when ``batch_size <= save_batch`` (one batch per call otherwise).
    """
    _validate(data_list, process, num_procs, out_path, save_batch, batch_size)
    names = list(dict.fromkeys(data_list))
    done = _names_done(out_path)
    todo = [n for n in names if n not in done]
    batches = [todo[i : i + batch_size] for i in range(0, len(todo), batch_size)]
    user = _adapt(save_callback, out_path)
    flat: Callable[[list[Any], list[Any]], None] | None = None
    if user is not None:
        callback = user

        def flat(results: list[Any], items: list[Any]) -> None:
            out: list[Any] = []
            for batch, result in zip(items, results):
                out.extend(_batch_results(batch, result))
            callback(out, [n for batch in items for n in batch])

    _run(
        batches, process, flat, num_procs, out_path, max(1, save_batch // batch_size), shared_data,
        init_function, verbose, kind="mp_lock_batch", keep_results=False, key=tuple, count=len,
        total=len(names), already=len(names) - len(todo),
    )


def _batch_results(batch: list[str], result: Any) -> list[Any]:
    if not isinstance(result, (list, tuple)) or len(result) != len(batch):
        raise TypeError(
            f"with mp_lock_batch, process must return a list with one result per item of its batch "
            f"({len(batch)} items), not {type(result).__name__}"
        )
    return list(result)


def _adapt(
    save_callback: Callable[[str, list[Any], list[str]], Any] | None, out_path: str
) -> Callable[[list[Any], list[Any]], None] | None:
    if save_callback is None:
        return None
    target = f"{out_path}/data"

    def callback(results: list[Any], names: list[Any]) -> None:
        save_callback(target, results, names)

    return callback


def is_mp_lock_completed(data_list: list[str], out_path: str) -> bool:
    """True when every name in ``data_list`` was finished by an earlier ``mp_lock*`` call."""
    done = _names_done(out_path)
    return all(n in done for n in data_list)

