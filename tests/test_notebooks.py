"""Every notebook in notebooks/ runs top to bottom in a fresh kernel (nbclient, in the test extra)."""

from __future__ import annotations

from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))
#: the notebooks of docs/workflows.md, stored with their outputs
WORKFLOWS = {"map_reduce.ipynb", "tuple_jobs.ipynb", "shared_arrays.ipynb"}


def test_the_workflow_notebooks_are_there_with_outputs() -> None:
    assert {nb.name for nb in NOTEBOOKS} >= WORKFLOWS
    for path in NOTEBOOKS:
        if path.name in WORKFLOWS:
            notebook = nbformat.read(path, as_version=4)
            code = [c for c in notebook.cells if c.cell_type == "code"]
            assert code and all(c.execution_count for c in code), f"{path.name} is stored unexecuted"
            assert not any(o.output_type == "error" for c in code for o in c.outputs), path.name


@pytest.mark.timeout(120)
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_runs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        notebook,
        timeout=60,
        startup_timeout=60,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
    )
    client.execute()  # raises CellExecutionError, with the cell and its traceback, if a cell fails
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert [o for c in code for o in c.outputs if o.output_type == "error"] == []
