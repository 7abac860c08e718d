"""Ctrl-C before the command line's own handlers are in place.

``python -m mtasklite_like`` (and the ``mtasklite-like`` script) import the whole package before
``main()`` runs. A SIGINT in that window would end in a bare ``KeyboardInterrupt`` traceback and a
death by signal; the command line instead exits with code 130 and says how to continue, as it does
for an interrupt during a run. The package's ``__init__`` imports this module only when its own
import is interrupted, and then exits only if this process is that command line: a program that
imports the package gets its ``KeyboardInterrupt`` as usual.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

__all__ = [
    "COMMAND",
    "exit_if_command_line",
    "forget_caught_interrupt",
    "interrupted_message",
    "main_target",
    "report_interrupt",
    "resume_hint",
    "started_as_command_line",
]

#: How the messages name the command line.
COMMAND = "python -m mtasklite_like"
#: What ``-m`` may name to run the command line.
_MODULES = ("mtasklite_like", "mtasklite_like.__main__")
#: The console script of ``[project.scripts]``.
_SCRIPT = "mtasklite-like"
#: Interpreter options that take a value (``-W ignore``, ``-Wignore``, ``-X dev``, ...); ``-c`` and
#: ``-m`` end the options.
_OPTIONS_WITH_VALUE = "cmWX"


def main_target(orig_argv: Sequence[str]) -> tuple[str, str] | None:
    """What the interpreter was told to run, read from its own arguments (``sys.orig_argv``).

    Returns ``("module", NAME)`` for ``-m NAME``, ``("script", PATH)`` for a script file, and None for
    ``-c``, standard input or an interactive session.
    """
    args = iter(orig_argv[1:])
    for arg in args:
        if arg == "-":
            return None  # the program comes from standard input
        if not arg.startswith("-"):
            return ("script", arg)
        if arg.startswith("--"):
            if arg == "--check-hash-based-pycs":
                next(args, None)  # its value is the next argument
            continue
        # One or more one-letter options: "-u", "-bb", "-Wignore", "-X dev", "-um NAME", "-mNAME".
        for i, letter in enumerate(arg[1:], 1):
            if letter in _OPTIONS_WITH_VALUE:
                value = arg[i + 1 :] or next(args, "")
                if letter == "m":
                    return ("module", value)
                if letter == "c":
                    return None
                break
    return None


def started_as_command_line() -> bool:
    """Whether this process is ``python -m mtasklite_like`` or the ``mtasklite-like`` script.

    Decided from the interpreter's own arguments, not from ``sys.argv``: a worker process that the
    start method ``spawn`` started for the command line gets a copy of its ``sys.argv``, but it is
    run with ``-c`` and is not the command line.
    """
    target = main_target(sys.orig_argv)
    if target is None:
        return False
    kind, name = target
    if kind == "module":
        return name in _MODULES
    script = os.path.basename(name)
    for suffix in (".exe", "-script.pyw", "-script.py"):
        script = script.removesuffix(suffix)
    return script == _SCRIPT


def resume_hint(run_dir: str | None) -> str:
    """How to continue after an interrupt: run again with the same run directory, or use one."""
    if run_dir:
        return f"run the same command again to continue (finished lines are in {run_dir})"
    return "pass --resume RUN_DIR to make a run resumable"


def _resume_option(args: Sequence[str]) -> str | None:
    """The value of ``--resume`` in the arguments of ``map``, as its parser would read it.

    ``--resume DIR`` and ``--resume=DIR``, or any abbreviation of the option down to ``--r`` (the
    parser accepts unique prefixes); the last one wins; nothing after ``--`` is an option.
    """
    run_dir = None
    for i, arg in enumerate(args):
        if arg == "--":
            break
        name, equals, value = arg.partition("=")
        if len(name) >= 3 and "--resume".startswith(name):
            if equals:
                run_dir = value
            elif i + 1 < len(args):
                run_dir = args[i + 1]
    return run_dir


def interrupted_message(args: Sequence[str]) -> str:
    """The message for a Ctrl-C before the command named by ``args`` (``sys.argv[1:]``) has started."""
    command = args[0] if args else ""
    if command == "map":
        return f"{COMMAND} map: interrupted; {resume_hint(_resume_option(args[1:]))}"
    if command == "demo":
        return f"{COMMAND} demo: interrupted"
    return f"{COMMAND}: interrupted"


def report_interrupt(args: Sequence[str]) -> None:
    """Print :func:`interrupted_message` on standard error (if there is one)."""
    if sys.stderr is not None:
        print(interrupted_message(args), file=sys.stderr, flush=True)


def forget_caught_interrupt() -> None:
    """Make sure the interpreter exits with the code it is given after a caught Ctrl-C.

    A ``KeyboardInterrupt`` raised in code that ``exec`` or ``eval`` runs from a string (as
    ``dataclasses`` and ``collections.namedtuple`` do while a module is imported) sets a flag in
    CPython, kept even when the exception is caught, that makes the interpreter kill itself with
    SIGINT at exit instead of exiting with code 130. Running a string of code that completes clears it.
    """
    exec("")


def exit_if_command_line() -> None:
    """Exit with code 130 and the message if this process is the command line; else return.

    Called by the package's ``__init__`` when its import is interrupted; when this returns, the
    caller re-raises the ``KeyboardInterrupt``.
    """
    if started_as_command_line():
        report_interrupt(sys.argv[1:])
        forget_caught_interrupt()
        raise SystemExit(130)
