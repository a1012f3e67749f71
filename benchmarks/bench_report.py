"""Benchmark the default experiment report end to end (papermill + nbconvert).

Run ``python benchmarks/bench_report.py`` or with ``--quick``.  It runs
``notebooks/02_experiment.ipynb`` with its default parameters as on a fresh
machine: ``db_path`` points at a new file in a temporary folder, which gets
the notebook's ``demo_days`` of demo candles first (0.5 with ``--quick``;
the notebook itself writes demo candles only at the default database, and
writing them takes about a second, timed apart as ``demo_s``) -- the
README's main job.  Without that notebook it times the fixture
``tests/notebooks/report_fixture.ipynb``.  Measured in the same run:

* the whole report (:func:`ettlib.reports.run_report`: validation, kernel,
  every cell, HTML export) -- ``report_wall_s``;
* the fixed cost of any report: a one-cell notebook through the same
  ``run_report`` (kernel start, papermill, export) -- ``kernel_overhead_s``;
* the HTML export alone, of the executed report -- ``export_s``.

Extra ``-p NAME VALUE`` pairs are passed to the notebook.  Prints a table,
then one JSON line.  Budget (docs/design.md): the default report <= 180 s on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import nbformat

from ettlib.reports import (EXPERIMENT_NOTEBOOK, ReportError, export_html, notebook_parameters,
                            parse_cli_parameters, run_report)

ROOT = Path(__file__).resolve().parent.parent
FIXTURE = ROOT / "tests" / "notebooks" / "report_fixture.ipynb"
BUDGET_S = 180.0


def _trivial_notebook(path: Path) -> Path:
    nb = nbformat.v4.new_notebook(metadata=nbformat.read(str(FIXTURE), as_version=4).metadata)
    nb.cells = [nbformat.v4.new_code_cell("x = 1", metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(x)")]
    nbformat.write(nb, str(path))
    return path


def _demo_database(path: Path, days: float) -> float:
    from ettlib.notebooks.tools import ensure_demo_data

    t0 = time.perf_counter()
    ensure_demo_data(path, days=days)
    return time.perf_counter() - t0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less demo data (under 60 s)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", default=[], metavar=("NAME", "VALUE"))
    parser.add_argument("--notebook", type=Path, help="notebook to time (default: the experiment notebook)")
    args = parser.parse_args(argv)

    notebook = args.notebook or (ROOT / EXPERIMENT_NOTEBOOK)
    using_fixture = not notebook.is_file()
    if using_fixture:
        notebook = FIXTURE
    parameters = parse_cli_parameters([tuple(p) for p in args.parameter])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        demo_s = None
        declared = notebook_parameters(notebook)
        if args.quick and "demo_days" in declared and "demo_days" not in parameters:
            parameters["demo_days"] = 0.5
        if "db_path" in declared and "db_path" not in parameters:
            parameters["db_path"] = str(tmp / "ett.duckdb")
            days = parameters.get("demo_days", 0.5 if args.quick else 2.0)
            demo_s = _demo_database(tmp / "ett.duckdb", float(days))

        t0 = time.perf_counter()
        trivial = run_report(_trivial_notebook(tmp / "trivial.ipynb"), {}, output_dir=tmp / "out")
        overhead_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        try:
            report = run_report(notebook, parameters, output_dir=tmp / "out", name="report", cwd=ROOT)
        except ReportError as err:
            print(f"the report failed after {time.perf_counter() - t0:.1f} s: {err}", file=sys.stderr)
            return 1
        report_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        export_html(report.executed_notebook_path, tmp / "out" / "again.html")
        export_s = time.perf_counter() - t0
        html_kib = report.html_path.stat().st_size / 1024
        del trivial

    name = notebook.relative_to(ROOT) if notebook.is_relative_to(ROOT) else notebook
    print(f"notebook: {name}" + ("  (fixture: notebooks/02_experiment.ipynb not there yet)" if using_fixture else ""))
    print(f"{'part':<44}{'seconds':>10}{'share':>8}")
    if demo_s is not None:
        print(f"{'demo candles written first (not in the report)':<44}{demo_s:>10.2f}")
    print(f"{'report end to end (run_report)':<44}{report_s:>10.2f}{1:>8.0%}")
    print(f"{'  fixed cost: one-cell notebook, same path':<44}{overhead_s:>10.2f}{overhead_s / report_s:>8.0%}")
    print(f"{'  HTML export alone':<44}{export_s:>10.2f}{export_s / report_s:>8.0%}")
    print(f"HTML size {html_kib:.0f} KiB; budget: report <= {BUDGET_S:.0f} s "
          f"({'met' if report_s <= BUDGET_S else 'MISSED'})")
    print(json.dumps({
        "report_wall_s": round(report_s, 2),
        "kernel_overhead_s": round(overhead_s, 2),
        "export_s": round(export_s, 3),
        "demo_s": None if demo_s is None else round(demo_s, 2),
        "html_kib": round(html_kib, 1),
        "notebook": str(name),
        "fixture": using_fixture,
        "quick": args.quick,
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
