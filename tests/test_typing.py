"""What a type checker infers from the public API: result types flow from the worker, and
option values are checked against the ones each option accepts."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("mypy")

SNIPPET = textwrap.dedent(
    """
    from mtasklite_like import Pool
    from mtasklite_like.processes import pqdm


    def square(x: int) -> int:
        return x * x


    pool = Pool(square, 2)
    reveal_type(pool)
    reveal_type(pool(range(3)))
    for r in pool(range(3)):
        reveal_type(r)
    reveal_type(pqdm(range(3), square, 2))
    Pool(square, 2, exception_behavior="sometimes")
    Pool(square, 2, argument_type="star")
    """
)


@pytest.fixture(scope="module")
def mypy_output(tmp_path_factory: pytest.TempPathFactory) -> str:
    work = tmp_path_factory.mktemp("typing")
    (work / "snippet.py").write_text(SNIPPET)
    # A config of its own: the project's one names the package as the files to check.
    (work / "mypy.ini").write_text(
        "[mypy]\nstrict = True\n[mypy-multiprocess.*,dill.*]\nignore_missing_imports = True\n"
    )
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--config-file", "mypy.ini", "--cache-dir", ".cache", "snippet.py"],
        cwd=work, capture_output=True, text=True, timeout=240,
    )
    return proc.stdout + proc.stderr


@pytest.mark.timeout(300)
def test_result_types_follow_the_worker(mypy_output: str) -> None:
    revealed = [t.replace("builtins.", "") for t in re.findall(r'Revealed type is "([^"]+)"', mypy_output)]
    assert revealed == [
        "mtasklite_like._pool.Pool[int]",
        "mtasklite_like._engine.results.ResultIterator[int]",
        "int",
        "mtasklite_like._dropins.pqdm.PqdmResult[int]",
    ], mypy_output


@pytest.mark.timeout(300)
def test_option_values_are_checked(mypy_output: str) -> None:
    errors = [line for line in mypy_output.splitlines() if ": error:" in line]
    assert any("sometimes" in e and '"exception_behavior"' in e for e in errors), mypy_output
    assert any("star" in e and '"argument_type"' in e for e in errors), mypy_output
    assert len(errors) == 2, mypy_output
