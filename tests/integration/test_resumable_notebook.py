"""notebooks/resumable_run.ipynb runs from top to bottom and shows what it claims."""

from __future__ import annotations

import os

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "notebooks", "resumable_run.ipynb")


def _text(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "".join(parts)


@pytest.mark.timeout(120)
def test_notebook_executes_and_resumes(tmp_path):
    nb = nbformat.read(NOTEBOOK, as_version=4)
    stored = [_text(c) for c in nb.cells if c.cell_type == "code"]
    assert any("recomputed a journaled item: False" in t for t in stored), "stored outputs are missing"
    resources = {"metadata": {"path": str(tmp_path)}}
    nbclient.NotebookClient(nb, timeout=60, kernel_name="python3", resources=resources).execute()
    outputs = [_text(c) for c in nb.cells if c.cell_type == "code"]
    joined = "\n".join(outputs)
    assert "True computed now:" in joined and "recomputed a journaled item: False" in joined
    assert "was written for another run" in joined
    assert "[25, 25, 10]" in joined
    assert "['ALPHA', 'BETA', 'GAMMA'] True" in joined
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
