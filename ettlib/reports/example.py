"""The committed example report and the structure check behind it (also used by the tests).

:func:`regenerate_example_report` rebuilds ``reports/example/02_experiment.html``
from the experiment notebook on fresh demo candles (``ett report --example``)
and checks that the HTML has the notebook's structure: the same cells, cell
tags and markdown headings, in order (:func:`notebook_structure`,
:func:`html_structure`).  Papermill's injected cells are left out of both.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ettlib.reports.parameters import DB_PARAMETER, EXPERIMENT_NOTEBOOK, notebook_parameters
from ettlib.reports.running import SKIPPED_TAGS, ReportError, ReportResult, run_report

__all__ = [
    "EXAMPLE_DIR",
    "EXAMPLE_REPORT_NAME",
    "NotebookStructure",
    "notebook_structure",
    "html_structure",
    "regenerate_example_report",
]

#: Folder of the committed example report (``reports/`` is otherwise git-ignored).
EXAMPLE_DIR = Path("reports") / "example"

#: Base name of the committed example report: ``reports/example/02_experiment.html``.
EXAMPLE_REPORT_NAME = "02_experiment"

#: Days of demo candles the example report runs on.
EXAMPLE_DEMO_DAYS = 2.0


@dataclass(frozen=True, slots=True)
class NotebookStructure:
    """The outline of a notebook: cell kinds, tags and markdown headings, in order.

    Papermill's injected-parameters cell and its error banner are left out,
    so a source notebook and a report of it have the same structure.
    """

    cell_types: tuple[str, ...]
    tags: tuple[tuple[str, ...], ...]
    headings: tuple[str, ...]

    def differences(self, other: "NotebookStructure") -> list[str]:
        """Readable differences from ``other`` (empty when they match)."""
        out = []
        if self.cell_types != other.cell_types:
            out.append(f"cell types differ: {self.cell_types} != {other.cell_types}")
        if self.tags != other.tags:
            out.append(f"cell tags differ: {self.tags} != {other.tags}")
        if self.headings != other.headings:
            out.append(f"headings differ: {self.headings} != {other.headings}")
        return out


_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")


def notebook_structure(notebook: str | Path) -> NotebookStructure:
    """The structure of a notebook file (source or executed)."""
    import nbformat

    nb = nbformat.read(str(notebook), as_version=4)
    cell_types, tags, headings = [], [], []
    for cell in nb.cells:
        cell_tags = tuple(cell.get("metadata", {}).get("tags", ()))
        if SKIPPED_TAGS.intersection(cell_tags):
            continue
        cell_types.append(cell.cell_type)
        tags.append(tuple(sorted(cell_tags)))
        if cell.cell_type == "markdown":
            in_fence = False
            for line in cell.source.splitlines():
                if line.lstrip().startswith("```"):
                    in_fence = not in_fence
                match = None if in_fence else _HEADING.match(line)
                if match:
                    headings.append(match.group(2))
    return NotebookStructure(tuple(cell_types), tuple(tags), tuple(headings))


class _CellOutline(HTMLParser):
    """Collects nbconvert-lab cells (type, celltag_ classes) and the h1-h6 texts of markdown cells.

    Headings inside outputs (e.g. ``display(Markdown("## x"))``) are not
    part of the notebook's structure and are left out.
    """

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.cells: list[tuple[str, tuple[str, ...]]] = []
        self.headings: list[str] = []
        self._div_depth = 0
        self._markdown_depth: int | None = None
        self._heading: list[str] | None = None
        self._anchor = False

    def handle_starttag(self, tag, attrs):
        classes = (dict(attrs).get("class") or "").split()
        if tag == "div":
            self._div_depth += 1
            if "jp-Cell" in classes:
                kind = "markdown" if "jp-MarkdownCell" in classes else "code" if "jp-CodeCell" in classes else "raw"
                cell_tags = tuple(sorted(c[len("celltag_"):] for c in classes if c.startswith("celltag_")))
                self.cells.append((kind, cell_tags))
            elif self.cells and self.cells[-1][0] == "markdown" and "jp-MarkdownOutput" in classes:
                self._markdown_depth = self._div_depth
        elif re.fullmatch(r"h[1-6]", tag) and self._markdown_depth is not None:
            self._heading = []
        elif tag == "a" and self._heading is not None and "anchor-link" in classes:
            self._anchor = True

    def handle_endtag(self, tag):
        if tag == "div":
            if self._markdown_depth == self._div_depth:
                self._markdown_depth = None
            self._div_depth -= 1
        elif tag == "a" and self._anchor:
            self._anchor = False
        elif re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).strip())
            self._heading = None

    def handle_data(self, data):
        if self._heading is not None and not self._anchor:
            self._heading.append(data)


def html_structure(html_path: str | Path) -> NotebookStructure:
    """The structure of an nbconvert (lab template) HTML report."""
    parser = _CellOutline()
    parser.feed(Path(html_path).read_text(encoding="utf-8"))
    kept = [(k, t) for k, t in parser.cells if not SKIPPED_TAGS.intersection(t)]
    return NotebookStructure(
        tuple(k for k, _ in kept), tuple(t for _, t in kept), tuple(parser.headings)
    )


def regenerate_example_report(
    notebook: str | Path = EXPERIMENT_NOTEBOOK,
    *,
    output_dir: str | Path = EXAMPLE_DIR,
    parameters: Mapping[str, Any] | None = None,
    name: str = EXAMPLE_REPORT_NAME,
    cwd: str | Path | None = None,
    progress: bool = False,
) -> ReportResult:
    """Rebuild the committed example report (``reports/example/02_experiment.html``).

    Runs ``notebook`` (the experiment notebook by default) with
    ``parameters``, keeps only the HTML, and checks that its structure
    (cells, tags, headings) matches the notebook's (raises
    :class:`ReportError` if not).  When the notebook declares ``db_path``
    and no ``db_path`` is given, it runs on a fresh temporary database of
    :data:`EXAMPLE_DEMO_DAYS` days of demo candles (of each symbol
    ``parameters`` name), so the example is the same on every machine.
    Command: ``ett report --example``.
    """
    params = dict(parameters or {})
    declared = notebook_parameters(notebook)
    with tempfile.TemporaryDirectory(prefix="ett-example-") as tmp:
        if DB_PARAMETER not in params and DB_PARAMETER in declared:
            from ettlib.notebooks.tools import ensure_demo_data

            db = Path(tmp) / "ett.duckdb"
            for symbol in params.get("symbols", ["ETH/USDT"]):
                ensure_demo_data(db, symbol, days=float(params.get("demo_days", EXAMPLE_DEMO_DAYS)))
            params[DB_PARAMETER] = str(db)
        result = run_report(notebook, params, output_dir=output_dir, name=name, cwd=cwd,
                            keep_executed_notebook=False, progress=progress)
    problems = notebook_structure(notebook).differences(html_structure(result.html_path))
    if problems:
        raise ReportError(f"{result.html_path} does not match {notebook}: " + "; ".join(problems))
    return result
