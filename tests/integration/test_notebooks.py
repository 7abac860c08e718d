"""Every notebook in notebooks/ runs top to bottom in a fresh kernel (nbclient, in the test extra)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[2] / "notebooks").glob("*.ipynb"))
#: the notebooks the documentation links to (mkdocs.yml's nav), each stored with its outputs
EXPECTED = {
    "quickstart.ipynb", "pqdm_migration.ipynb", "spacy_per_worker.ipynb", "per_gpu_workers.ipynb",
    "huge_generator.ipynb", "exceptions_and_faults.ipynb", "map_reduce.ipynb", "tuple_jobs.ipynb",
    "shared_arrays.ipynb", "resumable_run.ipynb", "async_download.ipynb",
}


def _text(notebook) -> str:
    parts = []
    for cell in notebook.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", "") or out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_the_notebook_is_stored_executed_with_outputs(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    code = [c for c in notebook.cells if c.cell_type == "code"]
    assert code and all(c.execution_count for c in code), f"{path.name} is stored unexecuted"
    assert any(c.outputs for c in code), f"{path.name} is stored without outputs"
    assert not any(o.output_type == "error" for c in code for o in c.outputs), path.name
    counts = [c.execution_count for c in code]
    assert counts == sorted(counts), f"{path.name}: cells were run out of order"


def test_every_notebook_of_the_docs_is_there() -> None:
    assert {nb.name for nb in NOTEBOOKS} >= EXPECTED


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
    text = _text(notebook)
    for claim in CLAIMS.get(path.name, ()):
        assert re.search(claim, text), f"{path.name}: no output matches {claim!r}:\n{text[-3000:]}"
    if path.name == "huge_generator.ipynb":
        growth = re.search(r"streaming: \+(\d+) MB", text)
        assert growth and int(growth.group(1)) < 50, "the streamed run's memory grew"
        assert any("image/png" in o.get("data", {}) for c in code for o in c.outputs), "no memory plot"


#: what each notebook's outputs must show when it runs (regular expressions)
CLAIMS = {
    "pqdm_migration.ipynb": [r"\] True list list", r"failed=10", r"mtasklite_like: RuntimeError"],
    "spacy_per_worker.ipynb": [r"x faster than loading per item", r"79005 tokens in 4000 documents"],
    "per_gpu_workers.ipynb": [r"12 batches done; True", r"worker-(cpu|gpu)\S*: device (cpu|cuda:0)"],
    "exceptions_and_faults.ipynb": [
        r"immediate: ZeroDivisionError", r"WorkerDiedError\('worker \d", r"'TaskTimeoutError', 3, 4\]",
        r"\[0, 1, 2, 3\] after 12 attempts", r"\[0, 'TaskPicklingError', 2\]",
    ],
    "quickstart.ipynb": [r"\[1, 4, 9, 16, 25, 36, 49, 64\]", r"0: failed with ZeroDivisionError"],
}
