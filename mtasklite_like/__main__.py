"""Command line: ``python -m mtasklite_like demo`` runs the demonstration workloads;
``python -m mtasklite_like map MODULE:FUNCTION [INPUT] ...`` maps a function over the lines of a
file (see ``map --help``)."""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print("usage: python -m mtasklite_like demo [--quick] [--n-jobs N] [--no-progress]")
        print("       python -m mtasklite_like map MODULE:FUNCTION [INPUT] [--output FILE] [--n-jobs N]")
        print("                                    [--threads] [--unordered] [--resume RUN_DIR] [--json]")
        print("  demo   run a CPU-bound and an I/O-bound workload serially and in parallel")
        print("  map    map a function over the lines of a file (or stdin), resumably; see 'map --help'")
        return 0 if args else 2
    if args[0] == "demo":
        from ._demo import main as demo_main

        return demo_main(args[1:])
    if args[0] == "map":
        from ._cli import main as map_main

        return map_main(args[1:])
    if args[0] in ("-V", "--version"):
        from ._version import __version__

        print(__version__)
        return 0
    print(f"unknown command {args[0]!r}; try 'demo' or 'map'", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
