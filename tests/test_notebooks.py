"""Every notebook in notebooks/ runs top to bottom without an error (nbclient + ipykernel).

The notebooks' own cells assert what they show (the hand-picked XOR solution, gradients
against finite differences, ...), so a notebook that runs is a notebook whose claims hold.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tool_requirements import missing

pytestmark = pytest.mark.slow  # runs every notebook in a kernel

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # seconds per cell; the notebooks take a few seconds each


def test_the_notebooks_directory_has_notebooks():
    names = [path.name for path in NOTEBOOKS]
    assert "01_xor_backprop.ipynb" in names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs_top_to_bottom(path, tmp_path, monkeypatch):
    try:
        import nbformat
        from nbclient import NotebookClient
        import ipykernel  # noqa: F401 - the kernel the notebooks run in
    except ImportError as error:
        missing(f"the notebook packages are not installed ({error.name}); pip install -e '.[dev]'")
    # The kernel is a child process: it finds this checkout of graphcomp through PYTHONPATH,
    # and it runs in a scratch directory so files the notebook writes do not land in the repository.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(notebook, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.get("outputs", []) if output.get("output_type") == "error"]
    assert errors == []
    # files a notebook writes go into a folder of their own, not loose next to it
    assert {entry.name for entry in tmp_path.iterdir()} <= {"graphcomp-out"}
