"""Every ```python block of README.md and docs/ runs, and every other block says why it does not.

The convention (CONTRIBUTING.md): the ```python blocks of one page run in order in one fresh
interpreter, in a temporary working directory, and must be quick. A block that must not run (a
shell command, printed output, a sketch that needs a cluster or a GPU) is preceded by a line
``<!-- not-run: reason -->``; a block in any other language without that line fails the check, so
nothing in the docs escapes both the runner and an explicit reason.

The blocks are read from standard input by ``python -c`` (so ``__main__`` has no file, as in a
notebook or a REPL), each compiled with the page's name and its own line numbers, so that a
traceback points at the Markdown line.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
#: seconds one page's blocks may take together (they are meant to take a few)
PAGE_TIMEOUT = 90
#: the interpreter's command: run the program given on standard input, with no __main__ file
RUNNER = [sys.executable, "-c", "import sys; exec(compile(sys.stdin.read(), '<docs>', 'exec'))"]

_FENCE = re.compile(r"^(?P<indent>\s*)(?P<fence>`{3,}|~{3,})(?P<info>.*)$")
_NOT_RUN = re.compile(r"^\s*<!--\s*not-run:\s*(?P<reason>\S.*?)\s*-->\s*$")


@dataclass
class Block:
    page: Path
    line: int  # 1-based line of the first line of code (after the opening fence)
    language: str
    code: str
    not_run: str | None  # the reason, when the block is marked


def pages() -> list[Path]:
    """README.md and every Markdown page of the site (docs/notebooks holds no Markdown)."""
    found = [p for p in DOCS.rglob("*.md") if "notebooks" not in p.relative_to(DOCS).parts]
    return [ROOT / "README.md", *sorted(found)]


def parse(page: Path) -> tuple[list[Block], list[str]]:
    """The fenced blocks of ``page`` and the problems of its markers and fences."""
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    problems: list[str] = []
    marker: tuple[int, str] | None = None  # (line, reason) of a not-run marker waiting for its block
    i = 0
    while i < len(lines):
        text = lines[i]
        m = _NOT_RUN.match(text)
        if m:
            if marker is not None:
                problems.append(f"{page.name}:{marker[0]}: a not-run marker is not followed by a code block")
            marker = (i + 1, m.group("reason"))
            i += 1
            continue
        if "not-run" in text and text.lstrip().startswith("<!--"):
            problems.append(f"{page.name}:{i + 1}: malformed marker; write <!-- not-run: reason -->")
        f = _FENCE.match(text)
        if not f:
            if text.strip() and marker is not None:
                problems.append(f"{page.name}:{marker[0]}: a not-run marker is not followed by a code block")
                marker = None
            i += 1
            continue
        indent, fence = len(f.group("indent")), f.group("fence")
        language = f.group("info").strip().split(" ")[0].lower() if f.group("info").strip() else ""
        body: list[str] = []
        j = i + 1
        while j < len(lines):
            close = _FENCE.match(lines[j])
            if close and close.group("fence").startswith(fence) and not close.group("info").strip():
                break
            body.append(lines[j][indent:] if lines[j][:indent].strip() == "" else lines[j])
            j += 1
        else:
            problems.append(f"{page.name}:{i + 1}: the code block is never closed")
        blocks.append(Block(page, i + 2, language, "\n".join(body) + "\n", marker[1] if marker else None))
        marker = None
        i = j + 1
    if marker is not None:
        problems.append(f"{page.name}:{marker[0]}: a not-run marker is not followed by a code block")
    return blocks, problems


def script(blocks: list[Block]) -> str:
    """A program that runs ``blocks`` in order, each compiled with its page's name and line numbers."""
    parts = ["import sys"]
    for b in blocks:
        source = "\n" * (b.line - 1) + b.code
        parts.append(
            f"print('--- block at line {b.line}', file=sys.stderr, flush=True)\n"
            f"exec(compile({source!r}, {str(b.page)!r}, 'exec'))"
        )
    return "\n".join(parts) + "\n"


def runnable(page: Path) -> list[Block]:
    return [b for b in parse(page)[0] if b.language == "python" and b.not_run is None]


PAGES = pages()


def test_every_page_is_found() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in PAGES}
    assert {"README.md", "docs/getting_started.md", "docs/faq.md", "docs/migration/pqdm.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_blocks_are_python_or_marked(page: Path) -> None:
    blocks, problems = parse(page)
    for b in blocks:
        if b.not_run is None and b.language != "python":
            shown = f"```{b.language}" if b.language else "``` (no language)"
            problems.append(
                f"{page.name}:{b.line - 1}: a {shown} block; make it ```python (it is then run) or put "
                "<!-- not-run: reason --> on the line before it"
            )
    assert problems == []


@pytest.mark.timeout(PAGE_TIMEOUT + 30)
@pytest.mark.parametrize(
    "page", [p for p in PAGES if runnable(p)], ids=lambda p: p.relative_to(ROOT).as_posix()
)
def test_python_blocks_run(page: Path, tmp_path: Path) -> None:
    env = dict(os.environ, MPLBACKEND="Agg", PYTHONWARNINGS="ignore::DeprecationWarning")
    env.pop("PYTHONPATH", None)
    try:
        proc = subprocess.run(
            RUNNER,
            input=script(runnable(page)),
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=PAGE_TIMEOUT,
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{page.name}: the blocks took more than {PAGE_TIMEOUT} s:\n{exc.stderr}")
    assert proc.returncode == 0, f"{page.name} failed:\n{proc.stderr[-6000:]}"


# -- the checker itself -------------------------------------------------------------------------------


def test_the_parser_sees_languages_markers_and_bad_fences(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(
        "text\n\n```python\nx = 1\n```\n\n<!-- not-run: a shell command -->\n```bash\nls\n```\n\n"
        "```text\nout\n```\n\n- item\n\n    ```python\n    y = 2\n    ```\n\n<!-- not-run: x -->\n\ntext\n"
        "```python\nopen\n"
    )
    blocks, problems = parse(page)
    assert [(b.language, b.not_run, b.code) for b in blocks] == [
        ("python", None, "x = 1\n"),
        ("bash", "a shell command", "ls\n"),
        ("text", None, "out\n"),
        ("python", None, "y = 2\n"),
        ("python", None, "open\n"),
    ]
    assert any("not followed by a code block" in p for p in problems)
    assert any("never closed" in p for p in problems)
    assert blocks[3].line == 19


def test_a_failing_block_points_at_its_markdown_line(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text("```python\nx = 1\n```\n\n```python\nassert x == 2, 'wrong'\n```\n")
    proc = subprocess.run(
        RUNNER, input=script(parse(page)[0]), capture_output=True, text=True, timeout=60
    )
    assert proc.returncode != 0
    assert f'File "{page}", line 6' in proc.stderr and "wrong" in proc.stderr
