"""The documentation site builds with ``mkdocs build --strict``: no broken link, no missing page,
no docstring the API reference cannot read (mkdocs.yml; the docs extra installs MkDocs), and no
Sphinx/reST role (``:class:``, ``:meth:``, ... before a backticked name) shown literally on a
page: the reference renders docstrings as Markdown, so a docstring names a documented object with
a cross-reference (``[`X`][mtasklite_like.X]``) and anything else in plain backticks."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings")

ROOT = Path(__file__).resolve().parents[2]

# A reST role as it appears in the built HTML: the role name, then the backticked target either
# left as is or already turned into a code span by Markdown.
LITERAL_ROLE = re.compile(r":(?:py:)?(class|meth|func|attr|mod|data|exc|obj):(?:`|<code>)")


@pytest.mark.timeout(180)
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=170,
    )
    warnings = [line for line in proc.stderr.splitlines() if "WARNING" in line or "ERROR" in line]
    assert proc.returncode == 0, "\n".join(warnings) or proc.stderr[-4000:]
    for page in ("index.html", "getting_started/index.html", "api/pool/index.html",
                 "migration/pqdm/index.html", "notebooks/quickstart/index.html"):
        assert (tmp_path / "site" / page).is_file(), page
    api = (tmp_path / "site" / "api" / "pool" / "index.html").read_text(encoding="utf-8")
    assert "max_tasks_per_worker" in api  # the Pool docstring made it into the reference
    literal_roles = []
    for page in sorted((tmp_path / "site").rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        for match in LITERAL_ROLE.finditer(text):
            snippet = re.sub(r"<[^>]+>", "", text[match.start():match.start() + 120]).split("\n")[0]
            literal_roles.append(f"{page.relative_to(tmp_path / 'site')}: {snippet}")
    assert not literal_roles, (
        f"{len(literal_roles)} reST role(s) rendered literally; in docstrings use "
        "[`Name`][mtasklite_like.Name] (a documented object) or ``Name``:\n" + "\n".join(literal_roles)
    )
