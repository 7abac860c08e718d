"""A resumable run over 20,000 items, started by tests/test_journal_kill.py and killed there.

usage: python -m tests.journal_kill_script RUN_DIR OUTPUT {processes,threads} [--unordered]

Writes the results, one per line, to OUTPUT when the run completes. Each task appends its item to
the file named by MTL_TEST_LOG (see tests/journal_helpers.py).
"""

from __future__ import annotations

import sys

from mtasklite_like import Pool
from tests.journal_helpers import slow_logged_square

N_ITEMS = 20_000


def main() -> None:
    run_dir, output, kind = sys.argv[1:4]
    unordered = "--unordered" in sys.argv[4:]
    pool = Pool(slow_logged_square, 2, use_threads=kind == "threads", journal=run_dir, is_unordered=unordered)
    with pool:
        results = list(pool(range(N_ITEMS)))
    with open(output + ".tmp", "w") as f:
        f.write("\n".join(map(str, results)) + "\n")
    import os

    os.replace(output + ".tmp", output)


if __name__ == "__main__":
    main()
