"""mtasklite's own test suite, run against this package after renaming the import.

The ``mtasklite`` package (in the test extra) ships its tests; this copies them to a temporary
directory, replaces ``mtasklite`` by ``mtasklite_like`` in their imports and nothing else, and runs
their runner script. Code written against mtasklite, tests included, must work after that rename.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

#: largest input size the upstream runner tries (it loops over sizes below it and many options);
#: 3 covers the empty, one-item and two-item inputs in ~40 s on 2 cores
MAX_ELEM = 3


def _upstream_tests() -> Path:
    spec = importlib.util.find_spec("mtasklite")
    if spec is None or spec.origin is None:
        pytest.skip("mtasklite is not installed (it is in the test extra)")
    tests = Path(spec.origin).parent / "tests"
    if not (tests / "run_all_unittests.py").exists():
        pytest.skip("this mtasklite release ships no test runner")
    return tests


@pytest.mark.timeout(300)
def test_the_mtasklite_test_suite_passes_after_the_import_rename(tmp_path: Path) -> None:
    target = tmp_path / "upstream_tests"
    shutil.copytree(_upstream_tests(), target, ignore=shutil.ignore_patterns("__pycache__"))
    for path in target.glob("*.py"):
        source = path.read_text()
        source = re.sub(r"\bmtasklite\.tests\b", "upstream_tests", source)
        path.write_text(re.sub(r"\bmtasklite\b", "mtasklite_like", source))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, str(target / "run_all_unittests.py"), "--n_elem", str(MAX_ELEM)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280,
    )
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert "Number of tests: 4 failed: 0" in proc.stdout, tail
