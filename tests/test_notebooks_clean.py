"""Committed notebooks carry no outputs, and the strip tool makes them so.

``python -m ettlib.notebooks.tools strip notebooks/*.ipynb`` before a commit;
this test fails when a notebook with outputs, execution counts or saved
widget state is in ``notebooks/``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from ettlib.notebooks.tools import main, notebook_problems, strip_file

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPECTED = ("01_explore_events.ipynb", "02_experiment.ipynb", "03_compare_runs.ipynb")


@pytest.mark.parametrize("name", EXPECTED)
def test_committed_notebook_is_clean(name):
    path = NOTEBOOKS / name
    nb = nbformat.read(str(path), as_version=4)
    nbformat.validate(nb)
    problems = notebook_problems(nb)
    assert problems == [], f"{name}: {problems}; run `python -m ettlib.notebooks.tools strip notebooks/*.ipynb`"
    # independent of notebook_problems: the raw JSON
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None
    assert nb.metadata["kernelspec"]["name"] == "python3"


def dirty_notebook() -> nbformat.NotebookNode:
    nb = new_notebook(cells=[
        new_markdown_cell("# title"),
        new_code_cell("x = 1", metadata={"tags": ["parameters"], "papermill": {"duration": 1.0}}),
        new_code_cell("print(x)", execution_count=2,
                      outputs=[new_output("stream", name="stdout", text="1\n")]),
    ])
    nb.metadata["widgets"] = {"application/vnd.jupyter.widget-state+json": {"state": {}}}
    nb.metadata["papermill"] = {"parameters": {}}
    return nb


def test_strip_removes_outputs_and_keeps_sources(tmp_path):
    path = tmp_path / "dirty.ipynb"
    nb = dirty_notebook()
    nbformat.write(nb, str(path))
    assert len(notebook_problems(nb)) == 5
    assert strip_file(path) is True
    stripped = nbformat.read(str(path), as_version=4)
    assert notebook_problems(stripped) == []
    assert [c.source for c in stripped.cells] == [c.source for c in nb.cells]
    assert stripped.cells[1].metadata == {"tags": ["parameters"]}  # tags survive
    before = path.read_bytes()
    assert strip_file(path) is False and path.read_bytes() == before  # clean: not rewritten


def test_cli_check_and_strip(tmp_path):
    path = tmp_path / "dirty.ipynb"
    nbformat.write(dirty_notebook(), str(path))
    assert main(["check", str(path)]) == 1
    run = subprocess.run([sys.executable, "-m", "ettlib.notebooks.tools", "strip", str(path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0 and f"stripped {path}" in run.stdout
    assert main(["check", str(path)]) == 0
    assert main(["check", str(tmp_path / "missing.ipynb")]) == 2
