"""``python -m mtasklite_like map``: map a function over the lines of a file, resumably.

Each input line (without its line ending) is one item; each result is written as one line, in
input order (``--unordered``: as they finish). ``--resume RUN_DIR`` journals finished lines in
``RUN_DIR``; running the same command again with the same ``RUN_DIR`` after an interruption
writes the whole output again, computing only the lines that had not finished.

Exit codes: 0 done, 1 a task failed (the message names the line), 2 a usage error (a function
that cannot be imported, an unreadable input, an unwritable output, a run directory that cannot
be used), 130 interrupted (Ctrl-C, also while the command is starting; the message says how to
continue).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from typing import IO, Any

from .._errors import MtaskliteLikeError
from .interrupt import resume_hint

__all__ = ["main"]

PROG = "python -m mtasklite_like map"


class UsageError(Exception):
    """A problem the user fixes on the command line: printed on one line, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description=(
            "Map FUNCTION over the lines of INPUT in parallel and write one result per line. "
            "With --resume RUN_DIR, finished lines are journaled in RUN_DIR, and running the same "
            "command again after an interruption (Ctrl-C, a crash, a reboot) computes only the lines "
            "that had not finished and writes the complete output."
        ),
        epilog=(
            "Exit codes: 0 done; 1 a task raised (the message names the input line); 2 usage error "
            "(function not importable, input unreadable, output not writable, unusable run "
            "directory); 130 interrupted. Example: python -m mtasklite_like map mypkg.images:resize "
            "paths.txt --output sizes.txt --resume runs/resize"
        ),
    )
    parser.add_argument(
        "function",
        metavar="MODULE:FUNCTION",
        help="the function to call on each line, e.g. 'os.path:getsize' or 'mypkg.tasks:parse'; the "
        "module is imported from the current directory or the installed packages. It receives the "
        "line as a str, without its line ending",
    )
    parser.add_argument(
        "input",
        nargs="?",
        default="-",
        metavar="INPUT",
        help="text file with one item per line (default: standard input; '-' also means standard input)",
    )
    parser.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        default="-",
        help="where to write the results, one per line (default: standard output). Rewritten from the "
        "start by every run, so after --resume it holds the complete output",
    )
    parser.add_argument(
        "-j",
        "--n-jobs",
        type=int,
        default=None,
        metavar="N",
        help="number of workers (default: the number of CPUs for processes, CPUs + 4 for threads); "
        "-1 for one per usable CPU, -2 for all but one, and so on",
    )
    parser.add_argument(
        "--threads",
        action="store_true",
        help="run the workers as threads instead of processes (for I/O-bound functions)",
    )
    parser.add_argument(
        "--unordered",
        action="store_true",
        help="write results as they finish instead of in input order",
    )
    parser.add_argument(
        "--max-worker-memory",
        metavar="SIZE",
        default=None,
        help="replace a worker process once its own memory is over SIZE (e.g. 2GiB, 512MB), after the "
        "line it was running; for functions whose memory creeps up line by line",
    )
    parser.add_argument(
        "--kill-worker-memory",
        metavar="SIZE",
        default=None,
        help="kill a worker process whose own memory crosses SIZE mid-line; that line fails (exit 1), "
        "instead of the kernel's OOM killer picking a victim",
    )
    parser.add_argument(
        "--min-available-memory",
        metavar="SIZE",
        default=None,
        help="read no input and start no work while the memory available is below SIZE (e.g. 4GiB, or "
        "10%%); work in progress finishes, and the run resumes when memory is back",
    )
    parser.add_argument(
        "--resume",
        metavar="RUN_DIR",
        default=None,
        help="journal finished lines in RUN_DIR (created, private to you) and skip those already there. "
        "Give the same RUN_DIR to the first run and to every restart; without it nothing is journaled",
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="write each result as one line of JSON (JSON lines) instead of str(result)",
    )
    parser.add_argument(
        "--stats",
        action="store_true",
        help="print the run's statistics as a table at the end (per worker: items, time in tasks and "
        "waiting, start-up, bytes, restarts; and what limited the run); without it, one line",
    )
    parser.add_argument(
        "--no-progress",
        action="store_true",
        help="do not show the progress bar (shown on standard error by default)",
    )
    return parser


def _as_flags(message: str) -> str:
    """A Pool's message, with its option names spelled as this command's flags."""
    for name in ("max_worker_memory", "kill_worker_memory", "min_available_memory"):
        message = message.replace(name, "--" + name.replace("_", "-"))
    return message


def load_function(spec: str) -> Callable[[Any], Any]:
    """Import ``module:function`` (the function may be a dotted path inside the module)."""
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UsageError(f"expected MODULE:FUNCTION (e.g. 'os.path:getsize'), got {spec!r}")
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except Exception as exc:
        raise UsageError(f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}") from None
    for part in attr.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise UsageError(f"module {module_name!r} has no attribute {attr!r}") from None
    if not callable(obj):
        raise UsageError(f"{spec!r} is a {type(obj).__name__}, not a function")
    return obj  # type: ignore[no-any-return]


def _open_input(path: str) -> IO[str]:
    if path == "-":
        return sys.stdin
    try:
        return open(path, encoding="utf-8", newline="")
    except OSError as exc:
        raise UsageError(f"cannot read input {path!r}: {exc.strerror or exc}") from None


def _open_output(path: str) -> IO[str]:
    if path == "-":
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write output {path!r}: {exc.strerror or exc}") from None


def _count_lines(path: str) -> int | None:
    if path == "-":
        return None
    try:
        with open(path, "rb") as f:
            n = 0
            last = b"\n"
            for block in iter(lambda: f.read(1 << 20), b""):
                n += block.count(b"\n")
                last = block[-1:]
            return n + (last != b"\n")
    except OSError:
        return None


def _lines(stream: IO[str]) -> Iterator[str]:
    for line in stream:
        if line.endswith("\n"):
            line = line[:-2] if line.endswith("\r\n") else line[:-1]
        yield line


class _Lines:
    """The input lines with a length, so the progress bar has a total."""

    def __init__(self, stream: IO[str], total: int | None) -> None:
        self._iter = _lines(stream)
        self._total = total

    def __iter__(self) -> Iterator[str]:
        return self._iter

    def __len__(self) -> int:
        if self._total is None:
            raise TypeError("standard input has no length")
        return self._total


def _format(result: Any, as_json: bool, line_no: int, unordered: bool) -> str:
    """``result`` as one output line; ``line_no`` is its output line, the input line unless ``unordered``."""
    if as_json:
        try:
            return json.dumps(result, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            which = f"output line {line_no}" if unordered else f"input line {line_no}"
            raise _TaskFailed(f"the result of {which} is not JSON serialisable: {exc}") from None
    return str(result)


def failed_line(exc: BaseException, written: int, unordered: bool) -> str:
    """Which input line ``exc`` is the failure of, for the message.

    The run marks each failure with its 0-based input position (``exc.input_index``). Without it,
    in input order the failed line is the one after the ``written`` results; unordered, it is unknown.
    """
    index = getattr(exc, "input_index", None)
    if isinstance(index, int) and not isinstance(index, bool) and index >= 0:
        return f"input line {index + 1}"
    return "a line" if unordered else f"input line {written + 1}"


class _TaskFailed(Exception):
    pass


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .._dropins.pqdm import BarNotes
    from .._journal import check_journal_options, journaled_run
    from .._logs.console import route_console_through
    from .._options import check_n_jobs
    from .._pool import Pool

    fn = load_function(args.function)
    try:
        n_jobs = check_n_jobs(args.n_jobs, args.threads, "--n-jobs")
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    source = _open_input(args.input)
    total = _count_lines(args.input)
    try:
        pool = Pool(
            fn, n_jobs, use_threads=args.threads, is_unordered=args.unordered,
            max_worker_memory=args.max_worker_memory, kill_worker_memory=args.kill_worker_memory,
            min_available_memory=args.min_available_memory,
        )
    except (ValueError, TypeError) as exc:
        raise UsageError(_as_flags(str(exc))) from None
    items = _Lines(source, total)
    try:
        options = check_journal_options(args.resume)
        stream: Any
        if options is not None:
            try:
                stream = journaled_run(pool, items, options)
            except MtaskliteLikeError as exc:
                raise UsageError(str(exc)) from None
        else:
            stream = pool(items)
        try:
            out = _open_output(args.output)
        except UsageError:
            stream.close()
            raise
        bar = tqdm(total=total, file=sys.stderr, disable=args.no_progress, unit="line", dynamic_ncols=True)
        route_console_through(bar)  # records logged meanwhile are written above the bar
        notes = BarNotes(bar, stream)
        stream.heartbeat = notes.heartbeat
        written = 0
        try:
            with stream:
                for written, result in enumerate(stream, 1):
                    out.write(_format(result, args.json, written, args.unordered))
                    out.write("\n")
                    notes.advance(1)  # and the fractions of lines in flight (mtasklite_like.progress)
                notes.settle()
        except KeyboardInterrupt:
            bar.close()
            print(f"{PROG}: interrupted after {written} lines; {resume_hint(args.resume)}", file=sys.stderr)
            return 130
        except _TaskFailed as exc:
            print(f"{PROG}: {exc}", file=sys.stderr)
            return 1
        except Exception as exc:
            bar.close()
            where = failed_line(exc, written, args.unordered)
            print(f"{PROG}: {where} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        finally:
            bar.close()
            if out is not sys.stdout:
                out.close()
            else:
                out.flush()
        if args.stats:
            print(stream.stats(), file=sys.stderr)
        elif not args.no_progress:
            print(f"{PROG}: {stream.stats().summary()}", file=sys.stderr)
    finally:
        if source is not sys.stdin:
            source.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mtasklite_like map``; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return run(args)
    except UsageError as exc:
        print(f"{PROG}: error: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader of our output went away (e.g. `| head`): stop quietly, as shell tools do.
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        except OSError:
            pass
        return 1
    except KeyboardInterrupt:
        # Before the results started (importing the function, starting the workers): nothing was
        # written, but the hint is the same as for an interrupt during the run.
        print(f"{PROG}: interrupted; {resume_hint(args.resume)}", file=sys.stderr)
        return 130
