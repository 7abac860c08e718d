"""A drop-in for ``mmengine``'s progress helpers, running on [`Pool`][mtasklite_like.Pool].

``from mmengine.utils import track_parallel_progress`` (or ``from mmengine import ...``) becomes
``from mtasklite_like.mmengine import track_parallel_progress``; the signatures and results stay:

- [`track_parallel_progress`][mtasklite_like.mmengine.track_parallel_progress] runs ``func(task)`` for each
  task on ``nproc`` worker processes and returns the list of results, in task order (``keep_order=False``:
  completion order), with a text progress bar written to ``file``;
- [`track_progress`][mtasklite_like.mmengine.track_progress] does the same in a plain loop in the caller;
- [`track_iter_progress`][mtasklite_like.mmengine.track_iter_progress] yields the tasks while the bar
  advances.

``tasks`` is a sequence, or a tuple ``(iterable, total)`` for an iterator of known length. Each task
is passed to ``func`` as *one* argument, as in ``mmengine``. To spread a tuple over several
parameters without a wrapper, use the pool directly: ``Pool(func, nproc, argument_type='args')``
or ``pqdm(tasks, func, nproc, argument_type='args')``.

What changes, on purpose (docs/workflows.md): a worker that dies raises
[`WorkerDiedError`][mtasklite_like.WorkerDiedError] instead of hanging; a task's exception carries the
worker's traceback; a malformed ``(iterable, total)`` tuple raises ``TypeError`` rather than
``AssertionError``; ``chunksize`` caps the batch size (the default 1 lets batches adapt to the
measured task time, so quick tasks are not sent one by one). The bar itself
([`ProgressBar`][mtasklite_like.mmengine.ProgressBar]) writes what mmengine's writes, update for update.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from shutil import get_terminal_size
from typing import Any, TextIO

from ._pool import Pool

__all__ = [
    "ProgressBar",
    "Timer",
    "TimerError",
    "track_iter_progress",
    "track_parallel_progress",
    "track_progress",
]


class TimerError(Exception):
    """A [`Timer`][mtasklite_like.mmengine.Timer] was read while it was not running (mmengine's
    ``TimerError``)."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class Timer:
    """mmengine's ``Timer``: seconds since it started, and since the last check (wall clock).

    ``with Timer():`` prints the seconds the block took (``print_tmpl``, ``'{:.3f}'`` by default).
    """

    def __init__(self, start: bool = True, print_tmpl: str | None = None) -> None:
        self._is_running = False
        self.print_tmpl = print_tmpl if print_tmpl else "{:.3f}"
        self._t_start = 0.0
        self._t_last = 0.0
        if start:
            self.start()

    @property
    def is_running(self) -> bool:
        """Whether the timer is running."""
        return self._is_running

    def __enter__(self) -> Timer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        print(self.print_tmpl.format(self.since_last_check()))
        self._is_running = False

    def start(self) -> None:
        """Start the timer (a running one keeps its start; the last check moves to now)."""
        if not self._is_running:
            self._t_start = time.time()
            self._is_running = True
        self._t_last = time.time()

    def since_start(self) -> float:
        """Seconds since the timer started; also a check (see ``since_last_check()``)."""
        if not self._is_running:
            raise TimerError("timer is not running")
        self._t_last = time.time()
        return self._t_last - self._t_start

    def since_last_check(self) -> float:
        """Seconds since the last check (this call, or ``since_start()``)."""
        if not self._is_running:
            raise TimerError("timer is not running")
        duration = time.time() - self._t_last
        self._t_last = time.time()
        return duration


class ProgressBar:
    """mmengine's one-line text progress bar: ``[>>>>      ] 4/10, 2.0 task/s, elapsed: 2s, ETA:     3s``.

    The output is mmengine's, byte for byte: ``start()`` writes the empty bar (``completed: 0,
    elapsed: 0s`` when ``task_num`` is 0, no total known), and every ``update()`` draws the new
    state, after a carriage return when there is a bar; without a total the counts follow each
    other on one line, as mmengine writes them. The bar narrows to fit the terminal
    (``terminal_width``, from ``COLUMNS`` or the terminal), and ``timer`` is the
    [`Timer`][mtasklite_like.mmengine.Timer] that ``start()`` starts. ``update()`` refuses a count
    below 1 with ``AssertionError``, as mmengine's ``assert`` does (here under ``python -O`` too).
    """

    def __init__(
        self, task_num: int = 0, bar_width: int = 50, start: bool = True, file: TextIO = sys.stdout
    ) -> None:
        self.task_num = task_num
        self.bar_width = bar_width
        self.completed = 0
        self.file = file
        if start:
            self.start()

    @property
    def terminal_width(self) -> int:
        """The terminal's width in columns (``COLUMNS`` when set)."""
        width, _ = get_terminal_size()
        return width

    def start(self) -> None:
        """Write the empty bar and start ``timer`` (a new one, when called again)."""
        if self.task_num > 0:
            self.file.write(f"[{' ' * self.bar_width}] 0/{self.task_num}, elapsed: 0s, ETA:")
        else:
            self.file.write("completed: 0, elapsed: 0s")
        self.file.flush()
        self.timer = Timer()

    def update(self, num_tasks: int = 1) -> None:
        """Count ``num_tasks`` (>= 1) more finished tasks and draw the bar."""
        if not num_tasks > 0:
            raise AssertionError(f"update() counts finished tasks: num_tasks must be > 0, not {num_tasks}")
        self.completed += num_tasks
        elapsed = self.timer.since_start()
        fps = self.completed / elapsed if elapsed > 0 else float("inf")
        if self.task_num > 0:
            percentage = self.completed / float(self.task_num)
            eta = int(elapsed * (1 - percentage) / percentage + 0.5)
            msg = (
                f"\r[{{}}] {self.completed}/{self.task_num}, {fps:.1f} task/s, "
                f"elapsed: {int(elapsed + 0.5)}s, ETA: {eta:5}s"
            )
            columns = self.terminal_width
            # mmengine's arithmetic: len(msg) counts the '{}' placeholder and the carriage return.
            bar_width = max(2, min(self.bar_width, int(columns - len(msg)) + 2, int(columns * 0.6)))
            mark_width = int(bar_width * percentage)
            self.file.write(msg.format(">" * mark_width + " " * (bar_width - mark_width)))
        else:
            self.file.write(f"completed: {self.completed}, elapsed: {int(elapsed + 0.5)}s, {fps:.1f} tasks/s")
        self.file.flush()


def _tasks_and_total(tasks: Any) -> tuple[Iterable[Any], int]:
    if isinstance(tasks, tuple):
        if len(tasks) != 2 or not isinstance(tasks[0], Iterable) or not isinstance(tasks[1], int):
            raise TypeError(
                "a tuple of tasks must be (iterable_of_tasks, number_of_tasks); pass a list to give the "
                f"tasks themselves (got a tuple of {len(tasks)} elements)"
            )
        return tasks[0], tasks[1]
    if isinstance(tasks, Sequence):
        return tasks, len(tasks)
    raise TypeError(
        '"tasks" must be a sequence (such as a list) or a tuple (iterable_of_tasks, number_of_tasks), '
        f"not {type(tasks).__name__}"
    )


def track_progress(
    func: Callable[..., Any],
    tasks: Sequence[Any],
    bar_width: int = 50,
    file: TextIO = sys.stdout,
    **kwargs: Any,
) -> list[Any]:
    """``[func(task, **kwargs) for task in tasks]`` in the caller, with a progress bar.

    ``tasks``: a sequence, or ``(iterable, total)``.
    """
    iterable, task_num = _tasks_and_total(tasks)
    bar = ProgressBar(task_num, bar_width, file=file)
    results = []
    for task in iterable:
        results.append(func(task, **kwargs))
        bar.update()
    bar.file.write("\n")
    return results


def track_parallel_progress(
    func: Callable[..., Any],
    tasks: Sequence[Any],
    nproc: int,
    initializer: Callable[..., Any] | None = None,
    initargs: tuple[Any, ...] | None = None,
    bar_width: int = 50,
    chunksize: int = 1,
    skip_first: bool = False,
    keep_order: bool = True,
    file: TextIO = sys.stdout,
) -> list[Any]:
    """``func(task)`` for every task on ``nproc`` worker processes, with a progress bar.

    Args:
        func: called with each task as its one argument.
        tasks: a sequence of tasks, or ``(iterable, total)``.
        nproc: number of worker processes.
        initializer: ``initializer(*initargs)`` runs once in each worker.
        initargs: the arguments of ``initializer``; must be a tuple.
        bar_width: width of the bar in characters.
        chunksize: the most tasks sent to a worker at once (1, the default, lets the pool size
            batches from the measured task time).
        skip_first: leave the first ``nproc * chunksize`` results out of the bar and its rate (the
            workers' start-up time would distort it).
        keep_order: results in task order; ``False`` gives them in the order they finish.
        file: where the bar is written.

    Returns:
        The list of results.
    """
    iterable, task_num = _tasks_and_total(tasks)
    if initializer is not None and initargs is not None and not isinstance(initargs, tuple):
        raise TypeError(f'"initargs" must be a tuple, not {type(initargs).__name__}')
    if isinstance(chunksize, bool) or not isinstance(chunksize, int) or chunksize < 1:
        raise ValueError(f"chunksize must be a whole number >= 1, not {chunksize!r}")
    pool = Pool(
        func,
        nproc,
        is_unordered=not keep_order,
        chunk_size=None if chunksize == 1 else chunksize,
        initializer=initializer,
        initargs=(initargs or ()) if initializer is not None else (),
    )
    warm_up = nproc * chunksize if skip_first else 0
    bar = ProgressBar(task_num - warm_up, bar_width, start=not skip_first, file=file)
    results = []
    with pool:
        for result in pool(iterable):
            results.append(result)
            if len(results) < warm_up:
                continue
            if warm_up and len(results) == warm_up:
                bar.start()
                continue
            bar.update()
    bar.file.write("\n")
    return results


def track_iter_progress(
    tasks: Sequence[Any], bar_width: int = 50, file: TextIO = sys.stdout
) -> Iterator[Any]:
    """Yield each task, advancing a progress bar after the caller has handled it.

    ``tasks``: a sequence, or ``(iterable, total)``.
    """
    iterable, task_num = _tasks_and_total(tasks)
    bar = ProgressBar(task_num, bar_width, file=file)
    for task in iterable:
        yield task
        bar.update()
    bar.file.write("\n")
