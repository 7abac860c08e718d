"""pqdm's own test suite, run against ``mtasklite_like.pqdm`` after renaming the import.

pqdm 0.2.0's wheel ships no tests, but its source distribution does: this test fetches that
archive from the package index (skipped when the index cannot be reached), replaces
``pqdm.processes`` / ``pqdm.threads`` by ``mtasklite_like.pqdm.processes`` / ``.threads`` in
its imports and nothing else, and runs it. Code written against pqdm, tests included, must work
after that one change.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

PQDM_SDIST = "pqdm==0.2.0"


def _fetch_upstream_tests(into: Path) -> Path:
    """pqdm's ``tests/test_pqdm.py`` from its source distribution, unpacked below ``into``."""
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--no-binary", ":all:",
         PQDM_SDIST, "-d", str(into)],
        capture_output=True, text=True, timeout=240,
    )
    archives = sorted(into.glob("pqdm-*.tar.gz"))
    if proc.returncode != 0 or not archives:
        pytest.skip(f"pqdm's source distribution could not be downloaded: {proc.stderr[-300:]}")
    with tarfile.open(archives[0]) as archive:
        member = next((m for m in archive.getmembers() if m.name.endswith("tests/test_pqdm.py")), None)
        if member is None:
            pytest.skip("this pqdm source distribution ships no tests")
        source = archive.extractfile(member)
        assert source is not None
        target = into / "test_pqdm_upstream.py"
        target.write_bytes(source.read())
    return target


@pytest.mark.timeout(600)
def test_the_pqdm_test_suite_passes_after_the_import_rename(tmp_path: Path) -> None:
    tests = _fetch_upstream_tests(tmp_path)
    source = tests.read_text()
    renamed, count = re.subn(
        r"\bfrom pqdm\.(processes|threads) import", r"from mtasklite_like.pqdm.\1 import", source
    )
    assert count == 2, "pqdm's tests import pqdm differently than expected"
    tests.write_text(renamed)
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tests)],
        cwd=tmp_path, capture_output=True, text=True, timeout=540,
    )
    tail = proc.stdout[-3000:] + proc.stderr[-3000:]
    assert proc.returncode == 0, tail
    assert re.search(r"\b18 passed\b", proc.stdout), tail
