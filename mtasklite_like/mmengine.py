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
measured task time, so quick tasks are not sent one by one); the bar is redrawn at most ten times a
second.
"""

from __future__ import annotations

import shutil
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TextIO

from ._pool import Pool

__all__ = ["ProgressBar", "track_iter_progress", "track_parallel_progress", "track_progress"]

#: seconds between two redraws of the bar (the last state is always drawn)
_REDRAW = 0.1


class ProgressBar:
    """A one-line text progress bar: ``[>>>>      ] 4/10, 2.0 task/s, elapsed: 2s, ETA: 3s``.

    ``task_num`` 0 shows a count without a bar. Writes to ``file`` with carriage returns.
    """

    def __init__(
        self, task_num: int = 0, bar_width: int = 50, start: bool = True, file: TextIO = sys.stdout
    ) -> None:
        self.task_num = task_num
        self.bar_width = bar_width
        self.completed = 0
        self.file = file
        self._started = 0.0
        self._drawn = 0.0
        self._shown = 0
        if start:
            self.start()

    def start(self) -> None:
        """Draw the empty bar and start the clock (again, when called a second time)."""
        if self.task_num > 0:
            self.file.write(f"[{' ' * self.bar_width}] 0/{self.task_num}, elapsed: 0s, ETA:")
        else:
            self.file.write("completed: 0, elapsed: 0s")
        self.file.flush()
        self._started = self._drawn = time.perf_counter()
        self._shown = 0

    def update(self, num_tasks: int = 1) -> None:
        """Count ``num_tasks`` more finished tasks, redrawing at most every 0.1 s (and at the end)."""
        if num_tasks <= 0:
            raise ValueError(f"update() counts finished tasks: num_tasks must be > 0, not {num_tasks}")
        self.completed += num_tasks
        now = time.perf_counter()
        if now - self._drawn >= _REDRAW or self.completed == self.task_num:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = now
        self._shown = self.completed
        elapsed = now - self._started
        rate = self.completed / elapsed if elapsed > 0 else float("inf")
        if self.task_num > 0:
            done = min(self.completed / self.task_num, 1.0)
            eta = int(elapsed * (1 - done) / done + 0.5) if done else 0
            text = (
                f"{self.completed}/{self.task_num}, {rate:.1f} task/s, elapsed: {int(elapsed + 0.5)}s, "
                f"ETA: {eta:5}s"
            )
            columns = shutil.get_terminal_size().columns
            width = max(2, min(self.bar_width, columns - len(text) - 4, int(columns * 0.6)))
            marks = int(width * done)
            self.file.write(f"\r[{'>' * marks}{' ' * (width - marks)}] {text}")
        else:
            self.file.write(
                f"\rcompleted: {self.completed}, elapsed: {int(elapsed + 0.5)}s, {rate:.1f} tasks/s"
            )
        self.file.flush()

    def finish(self) -> None:
        """Draw the final state and end the line."""
        if self.completed != self._shown:
            self._draw(time.perf_counter())
        self.file.write("\n")
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
    bar.finish()
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
    bar.finish()
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
    bar.finish()
