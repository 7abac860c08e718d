"""Command line: ``python -m mtasklite_like demo`` runs the demonstration workloads;
``python -m mtasklite_like map MODULE:FUNCTION [INPUT] ...`` maps a function over the lines of a
file (see ``map --help``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``python -m mtasklite_like`` and of the ``mtasklite-like`` script; returns the
    exit code. Ctrl-C before a command has its own handler in place (while its modules are
    imported, say) gives 130 and a message that says how to continue, as one during a run does."""
    try:
        status = _dispatch(list(sys.argv[1:] if argv is None else argv))
    except KeyboardInterrupt:
        return _interrupted(sys.argv[1:] if argv is None else argv)
    if status == 130:  # a command that handled Ctrl-C itself
        from ._cli.interrupt import forget_caught_interrupt

        forget_caught_interrupt()
    return status


def _dispatch(args: list[str]) -> int:
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m mtasklite_like demo [--quick] [--n-jobs N] [--no-progress]")
        print("       python -m mtasklite_like map MODULE:FUNCTION [INPUT] [--output FILE] [--n-jobs N]")
        print("                                    [--threads] [--unordered] [--resume RUN_DIR] [--json]")
        print("  demo   run a CPU-bound and an I/O-bound workload serially and in parallel")
        print("  map    map a function over the lines of a file (or stdin), resumably; see 'map --help'")
        return 0 if args else 2
    if args[0] == "demo":
        from ._cli.demo import main as demo_main

        return demo_main(args[1:])
    if args[0] == "map":
        from ._cli.map import main as map_main

        return map_main(args[1:])
    if args[0] in ("-V", "--version"):
        from ._version import __version__

        print(__version__)
        return 0
    print(f"unknown command {args[0]!r}; try 'demo' or 'map'", file=sys.stderr)
    return 2


def _interrupted(args: list[str]) -> int:
    from ._cli.interrupt import forget_caught_interrupt, report_interrupt

    report_interrupt(args)
    forget_caught_interrupt()
    return 130


if __name__ == "__main__":
    # main() handles Ctrl-C itself; this also covers one that lands as the call begins.
    try:
        status = main()
    except KeyboardInterrupt:
        status = _interrupted(sys.argv[1:])
    sys.exit(status)
