"""Keeping committed notebooks clean: no outputs, execution counts or run metadata.

``python -m ettlib.notebooks.tools strip NOTEBOOK...`` strips them in place;
``... check NOTEBOOK...`` exits 1 when one has any (what CI runs).

Examples
--------
>>> nb = {"metadata": {"papermill": {}}, "cells": [{"cell_type": "code", "outputs": [1],
...       "execution_count": 3, "metadata": {}}]}
>>> notebook_problems(nb)
['notebook metadata: papermill', 'cell 0: 1 output(s)', 'cell 0: execution_count 3']
>>> strip_notebook(nb), notebook_problems(nb)
(True, [])
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path

__all__ = ["notebook_problems", "strip_notebook", "strip_file", "main"]


#: Notebook-level metadata that a run leaves behind.
_RUN_METADATA = ("widgets", "papermill")


def notebook_problems(nb) -> list[str]:
    """What makes a notebook unfit to commit: outputs, execution counts, run metadata."""
    problems = []
    for key in _RUN_METADATA:
        if key in nb.get("metadata", {}):
            problems.append(f"notebook metadata: {key}")
    for i, cell in enumerate(nb.get("cells", ())):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            problems.append(f"cell {i}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            problems.append(f"cell {i}: execution_count {cell['execution_count']}")
        for key in ("papermill", "execution"):
            if key in cell.get("metadata", {}):
                problems.append(f"cell {i}: metadata {key}")
    return problems


def strip_notebook(nb) -> bool:
    """Remove outputs, execution counts and run metadata in place; True when something changed."""
    changed = False
    for key in _RUN_METADATA:
        if key in nb.get("metadata", {}):
            del nb["metadata"][key]
            changed = True
    for cell in nb.get("cells", ()):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            cell["outputs"] = []
            changed = True
        if cell.get("execution_count") is not None:
            cell["execution_count"] = None
            changed = True
        for key in ("papermill", "execution"):
            if key in cell.get("metadata", {}):
                del cell["metadata"][key]
                changed = True
    return changed


def strip_file(path: str | Path) -> bool:
    """Strip the notebook at ``path`` in place (written only when it changed)."""
    import nbformat

    path = Path(path)
    nb = nbformat.read(str(path), as_version=4)
    if not strip_notebook(nb):
        return False
    nbformat.write(nb, str(path))
    return True


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m ettlib.notebooks.tools strip|check NOTEBOOK...``."""
    import argparse

    import nbformat

    parser = argparse.ArgumentParser(prog="python -m ettlib.notebooks.tools",
                                     description="Keep committed notebooks free of outputs.")
    parser.add_argument("command", choices=("strip", "check"),
                        help="strip: remove outputs in place; check: exit 1 if any notebook has some")
    parser.add_argument("notebooks", nargs="+", type=Path)
    args = parser.parse_args(argv)
    dirty = 0
    for path in args.notebooks:
        if not path.is_file():
            print(f"{path}: no such notebook", file=sys.stderr)
            return 2
        if args.command == "strip":
            if strip_file(path):
                print(f"stripped {path}")
        else:
            problems = notebook_problems(nbformat.read(str(path), as_version=4))
            if problems:
                dirty += 1
                print(f"{path}: " + "; ".join(problems))
    return 1 if dirty else 0
