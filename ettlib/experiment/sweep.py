"""Parameter sweeps: one report per parameter set, run in parallel.

A sweep takes a notebook and a list of parameter sets (or a grid, expanded by
:func:`~ettlib.experiment.grids.expand_grid`), checks every set against the notebook **before any
kernel starts**, then runs one :func:`ettlib.reports.run_report` per set on

* ``executor="local"``: a :class:`concurrent.futures.ProcessPoolExecutor` of
  ``workers`` processes (spawned, not forked), each running one papermill
  kernel at a time; or
* ``executor="dask"``: an existing Dask cluster, ``distributed.Client(
  scheduler_address)``.  Its workers need the same ettlib installed and must
  reach the candles (``db_path``: a Parquet lake in a bucket, or a path they
  see); they need **no disk shared with this machine**.

Each task carries the notebook's text, not its path.  A worker runs it in a
temporary folder of its own (the kernel's working directory, unless ``cwd``
is given; the local executor passes this process's), with the notebook's
``results_db`` parameter, when it declares one, set to a file in that
folder, and sends back the executed notebook, its HTML report and the
results file as bytes (:attr:`SweepRun.files`).  The client lands them:
reports in ``output_dir``, results files in ``results_dir`` -- by default
the runs folder of ``database`` (``data/ett.runs`` for ``data/ett.duckdb``,
:func:`ettlib.store.catalog.runs_folder`), where every run of the store
keeps its results, so notebook 03 and ``read_runs`` see the sweep's runs
beside the others with nothing merged.  A file is landed whole (written
beside, then renamed), so a reader never sees half of one.  After the last
run the sweep builds a comparison report: ``notebooks/03_compare_runs.ipynb``
executed with ``db_path`` and ``run_ids`` when that notebook exists, else a
plain HTML table from :func:`ettlib.store.catalog.compare_runs`.

A run that fails is recorded (cell, error, its partial report) and the other
runs go on; :attr:`SweepResult.failures` lists them.

Layout::

    <output_dir>/<name>-000.ipynb, <name>-000.html, ...   one executed notebook + report per run
    <output_dir>/comparison.html                          the comparison report
    <results_dir>/<name>-000.duckdb, ...                   one results file per run
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import socket
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError, EttError, UnknownNameError, positive_int
from ettlib.experiment.grids import expand_grid
from ettlib.reports import (
    ReportError,
    notebook_parameters,
    run_report,
    validate_parameters,
)
from ettlib.store.catalog import RunCatalog, compare_runs, run_results_path, runs_folder

__all__ = [
    "EXECUTORS",
    "COMPARE_NOTEBOOK",
    "SweepTask",
    "SweepRun",
    "SweepResult",
    "execute_sweep_task",
    "run_sweep",
    "default_results_dir",
    "write_comparison_html",
]

#: The executors :func:`run_sweep` knows.
EXECUTORS: tuple[str, ...] = ("local", "dask")

#: The notebook that compares the runs of a sweep, relative to the repository root.
COMPARE_NOTEBOOK = Path("notebooks") / "03_compare_runs.ipynb"


@dataclass(frozen=True, slots=True)
class SweepTask:
    """One run of a sweep, as shipped to a worker: plain, picklable values, no client paths.

    ``notebook_text`` is the notebook's JSON; ``results_parameter`` the
    notebook parameter the worker points at its results file (``None``: the
    notebook declares none); ``cwd`` the kernel's working directory
    (``None``: the worker's own temporary folder).
    """

    index: int
    name: str
    notebook_name: str
    notebook_text: str
    parameters: dict[str, Any]
    results_parameter: str | None
    show_code: bool = False
    kernel_name: str | None = None
    cwd: str | None = None


@dataclass(frozen=True, slots=True)
class SweepRun:
    """How one run of a sweep went, and where its files landed.

    ``files`` holds what a worker sent back (``"html"``, ``"notebook"``,
    ``"results"``: bytes) until the client lands them; the paths are set then.
    """

    index: int
    name: str
    parameters: dict[str, Any]
    ok: bool
    wall_s: float
    worker: str
    html_path: Path | None = None
    executed_notebook_path: Path | None = None
    results_db: Path | None = None
    error: str | None = None
    cell_index: int | None = None
    ename: str | None = None
    evalue: str | None = None
    files: dict[str, bytes] = field(default_factory=dict, repr=False)


@dataclass(frozen=True, slots=True)
class SweepResult:
    """The outcome of :func:`run_sweep`: every run, where their results are, the comparison."""

    name: str
    output_dir: Path
    results_dir: Path
    runs: tuple[SweepRun, ...]
    run_ids: tuple[str, ...]
    comparison_path: Path | None
    comparison_error: str | None
    wall_s: float

    @property
    def failures(self) -> tuple[SweepRun, ...]:
        return tuple(r for r in self.runs if not r.ok)

    @property
    def succeeded(self) -> tuple[SweepRun, ...]:
        return tuple(r for r in self.runs if r.ok)

    def summary(self) -> str:
        """A readable table of the runs, then the failures and the comparison."""
        lines = [f"sweep {self.name}: {len(self.succeeded)} ok, {len(self.failures)} failed, "
                 f"{self.wall_s:.1f} s; {len(self.run_ids)} runs recorded in {self.results_dir}"]
        for run in self.runs:
            state = "ok    " if run.ok else "FAILED"
            lines.append(f"  {run.name}  {state} {run.wall_s:7.1f} s  {run.parameters}  {run.html_path}")
        for run in self.failures:
            lines.append(f"  failure {run.name}: {run.error}")
        if self.comparison_path is not None:
            lines.append(f"  comparison: {self.comparison_path}")
        if self.comparison_error:
            lines.append(f"  comparison failed: {self.comparison_error}")
        return "\n".join(lines)


def execute_sweep_task(task: SweepTask) -> SweepRun:
    """Run one task's report in a temporary folder; its files come back as bytes.

    Never raises for a failed notebook: the failure is recorded, with
    whatever files the run wrote.
    """
    started = time.perf_counter()
    worker = f"{socket.gethostname()}:{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix=f"ett-sweep-{task.name}-") as folder:
        folder = Path(folder)
        notebook = folder / task.notebook_name
        notebook.write_text(task.notebook_text, encoding="utf-8")
        out = folder / "out"
        results = folder / f"{task.name}.duckdb"
        params = dict(task.parameters)
        if task.results_parameter:
            params[task.results_parameter] = str(results)
        outcome: dict[str, Any] = {"ok": True}
        try:
            run_report(notebook, params, output_dir=out, name=task.name, show_code=task.show_code,
                       kernel_name=task.kernel_name, cwd=task.cwd or folder, validate=None)
        except ReportError as err:
            outcome = dict(ok=False, error=str(err).splitlines()[0], cell_index=err.cell_index,
                           ename=err.ename, evalue=err.evalue)
        except Exception as err:  # anything else: still isolate it
            outcome = dict(ok=False, error=f"{type(err).__name__}: {err}", ename=type(err).__name__,
                           evalue=str(err))
        wanted = {"html": out / f"{task.name}.html", "notebook": out / f"{task.name}.ipynb",
                  "results": results}
        files = {kind: path.read_bytes() for kind, path in wanted.items() if path.is_file()}
    return SweepRun(task.index, task.name, task.parameters, wall_s=time.perf_counter() - started,
                    worker=worker, files=files, **outcome)


def _land(run: SweepRun, output_dir: Path, results_dir: Path) -> SweepRun:
    """Write what a worker sent back; the run with its files' paths."""
    places = {"html": output_dir / f"{run.name}.html", "notebook": output_dir / f"{run.name}.ipynb",
              "results": run_results_path(results_dir, run.name)}
    landed = {}
    for kind, data in run.files.items():
        path = places[kind]
        partial = path.with_name(path.name + ".landing")  # not *.duckdb: no catalog reads it half-written
        partial.write_bytes(data)
        os.replace(partial, path)
        landed[kind] = path
    return dataclasses.replace(run, files={}, html_path=landed.get("html"),
                               executed_notebook_path=landed.get("notebook"),
                               results_db=landed.get("results"))


def _lost_run(task: SweepTask, err: BaseException) -> SweepRun:
    """A run whose worker died or could not return."""
    return SweepRun(task.index, task.name, task.parameters, False, 0.0, "?",
                    error=f"worker lost: {type(err).__name__}: {err}", ename=type(err).__name__,
                    evalue=str(err))


def _run_local(tasks: list[SweepTask], workers: int, on_done: Callable[[SweepRun], SweepRun]) -> list[SweepRun]:
    context = multiprocessing.get_context("spawn")  # no fork of a process that may hold threads/zmq
    runs = []
    with ProcessPoolExecutor(max_workers=min(workers, len(tasks)), mp_context=context) as pool:
        futures = {pool.submit(execute_sweep_task, t): t for t in tasks}
        for future in as_completed(futures):
            try:
                run = future.result()
            except Exception as err:  # BrokenProcessPool, unpicklable result
                run = _lost_run(futures[future], err)
            runs.append(on_done(run))
    return runs


def _connect_dask(scheduler_address: str, timeout_s: float):
    try:
        from distributed import Client
    except ImportError as err:  # pragma: no cover - dask[distributed] is a dependency
        raise ConfigError("the dask executor needs dask[distributed] installed") from err
    try:
        return Client(scheduler_address, timeout=f"{timeout_s}s", set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ConfigError(f"cannot reach the Dask scheduler at {scheduler_address!r}: {err}") from err


def _run_dask(tasks: list[SweepTask], client, on_done: Callable[[SweepRun], SweepRun]) -> list[SweepRun]:
    from distributed import as_completed as dask_as_completed

    runs = []
    futures = client.map(execute_sweep_task, tasks, pure=False, retries=0,
                         key=[f"ett-sweep-{t.name}-{os.getpid()}-{time.time_ns()}" for t in tasks])
    by_key = {f.key: t for f, t in zip(futures, tasks)}
    for future in dask_as_completed(futures, loop=client.loop):
        try:
            run = future.result()
        except Exception as err:  # a worker died (KilledWorker) or the task could not run
            run = _lost_run(by_key[future.key], err)
        runs.append(on_done(run))
    return runs


def default_results_dir(database: str | Path | None, output_dir: Path) -> Path:
    """Where a sweep lands its results files: the store's runs folder, else ``output_dir/runs``.

    >>> default_results_dir("data/ett.duckdb", Path("reports/sweeps/s")).as_posix()
    'data/ett.runs'
    >>> default_results_dir("s3://bucket/lake", Path("reports/sweeps/s")).as_posix()
    'reports/sweeps/s/runs'
    """
    if database is None or "://" in str(database):
        return output_dir / "runs"
    return runs_folder(database)


def run_sweep(
    notebook: str | Path,
    parameter_sets: Sequence[Mapping[str, Any]] | Mapping[str, Any],
    *,
    executor: str = "local",
    workers: int = 2,
    scheduler_address: str | None = None,
    output_dir: str | Path | None = None,
    name: str | None = None,
    database: str | Path | None = None,
    results_dir: str | Path | None = None,
    results_parameter: str = "results_db",
    show_code: bool = False,
    kernel_name: str | None = None,
    cwd: str | Path | None = None,
    compare: bool = True,
    compare_notebook: str | Path | None = None,
    compare_parameters: Callable[[Path, list[str]], dict[str, Any]] | None = None,
    progress: bool = False,
    dask_timeout_s: float = 20.0,
) -> SweepResult:
    """Run ``notebook`` once per parameter set, in parallel; land the results; compare.

    Parameters
    ----------
    parameter_sets
        A list of parameter mappings, or a grid mapping (see :func:`~ettlib.experiment.grids.expand_grid`).
    executor, workers, scheduler_address
        ``"local"`` with ``workers`` processes, or ``"dask"`` on the cluster at
        ``scheduler_address`` (e.g. ``"tcp://10.0.0.5:8786"``).
    output_dir, name
        Where reports go (default ``reports/sweeps/<name>``; ``name``
        defaults to ``<notebook stem>-sweep``).  Run ``i`` is named
        ``<name>-<i:03d>``.
    database
        The candle store the runs read (a file, a lake folder or a URL): its
        runs folder is the default ``results_dir``, and the comparison reads
        its runs (the sweep's among them).
    results_dir
        Where each run's results file lands (default
        :func:`default_results_dir`).
    results_parameter
        The notebook parameter that receives each run's own results file; a
        notebook without it runs all the same, and records nothing.
    cwd
        Working directory of every kernel.  Default: this process's for the
        local executor (so relative paths mean the same), and each worker's
        own temporary folder for Dask.
    compare, compare_notebook, compare_parameters
        Build a comparison report after the last run: ``compare_notebook``
        (default :data:`COMPARE_NOTEBOOK` when it exists) executed with
        ``compare_parameters(where, run_ids)`` (default ``{"db_path":
        str(where), "run_ids": run_ids}``, ``where`` the store file, or
        else the results folder), else a plain HTML table.

    Raises
    ------
    ConfigError
        Before anything runs: a parameter set the notebook does not accept
        (naming the set), an unknown executor, a missing scheduler address,
        an unreachable scheduler.
    """
    started = time.perf_counter()
    notebook = Path(notebook).resolve()
    if executor not in EXECUTORS:
        raise UnknownNameError("executor", executor, EXECUTORS)
    if executor == "dask" and not scheduler_address:
        raise ConfigError("the dask executor needs a scheduler address (e.g. tcp://127.0.0.1:8786)")
    positive_int("workers", workers)
    if isinstance(parameter_sets, Mapping):
        parameter_sets = expand_grid(parameter_sets)
    parameter_sets = [dict(p) for p in parameter_sets]
    if not parameter_sets:
        raise ConfigError("a sweep needs at least one parameter set")

    declared = notebook_parameters(notebook)
    for i, params in enumerate(parameter_sets):
        if results_parameter in params:
            raise ConfigError(f"parameter set {i}: {results_parameter!r} is set by the sweep (one file per run)")
        try:
            validate_parameters(notebook, params)
        except EttError as err:
            raise ConfigError(f"parameter set {i} {params}: {err}") from err

    name = name or f"{notebook.stem}-sweep"
    output_dir = Path(output_dir if output_dir is not None else Path("reports") / "sweeps" / name).resolve()
    results_dir = Path(results_dir).resolve() if results_dir is not None else default_results_dir(database, output_dir)
    if cwd is None and executor == "local":
        cwd = os.getcwd()
    text = notebook.read_text(encoding="utf-8")
    tasks = [SweepTask(i, f"{name}-{i:03d}", notebook.name, text, params,
                       results_parameter if results_parameter in declared else None, show_code,
                       kernel_name, None if cwd is None else str(Path(cwd).resolve()))
             for i, params in enumerate(parameter_sets)]

    client = _connect_dask(scheduler_address, dask_timeout_s) if executor == "dask" else None
    output_dir.mkdir(parents=True, exist_ok=True)
    results_dir.mkdir(parents=True, exist_ok=True)
    for task in tasks:  # stale, from an earlier sweep of this name
        run_results_path(results_dir, task.name).unlink(missing_ok=True)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(tasks), desc=f"sweep {name}", unit="run")

    def on_done(run: SweepRun) -> SweepRun:
        run = _land(run, output_dir, results_dir)
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{run.name} {'ok' if run.ok else 'FAILED'}")
        return run

    try:
        runs = _run_local(tasks, workers, on_done) if client is None else _run_dask(tasks, client, on_done)
    finally:
        if client is not None:
            client.close()
        if bar is not None:
            bar.close()
    runs.sort(key=lambda r: r.index)
    run_ids = _recorded_run_ids(results_dir, [r.results_db for r in runs if r.results_db is not None])

    comparison_path, comparison_error = None, None
    if compare:
        where = Path(database) if database is not None and Path(database).is_file() else results_dir
        comparison_path, comparison_error = _compare(
            output_dir, where, run_ids, runs, compare_notebook, compare_parameters, kernel_name, cwd
        )
    return SweepResult(name, output_dir, results_dir, tuple(runs), tuple(run_ids), comparison_path,
                       comparison_error, time.perf_counter() - started)


def _recorded_run_ids(results_dir: Path, files: list[Path]) -> list[str]:
    """The run ids the sweep's results files hold, in the order of the files."""
    if not files:
        return []
    with RunCatalog(folder=results_dir) as catalog:
        rows = catalog.con.execute("SELECT results_file, run_id FROM runs").fetchall()
    by_file: dict[str, list[str]] = {}
    for file, run_id in rows:
        by_file.setdefault(file, []).append(run_id)
    return [run_id for f in files for run_id in sorted(by_file.get(str(f), []))]


def _compare(output_dir, database, run_ids, runs, compare_notebook, compare_parameters, kernel_name, cwd):
    notebook = Path(compare_notebook) if compare_notebook is not None else COMPARE_NOTEBOOK
    if compare_notebook is not None or notebook.is_file():
        if not run_ids:
            return None, "no run wrote results, nothing to compare"
        params = (compare_parameters or _default_compare_parameters)(database, run_ids)
        try:
            report = run_report(notebook, params, output_dir=output_dir, name="comparison",
                                kernel_name=kernel_name, cwd=cwd)
        except EttError as err:
            path = getattr(err, "html_path", None)
            return (path if path is not None and Path(path).exists() else None), str(err).splitlines()[0]
        return report.html_path, None
    return write_comparison_html(output_dir / "comparison.html", database, run_ids, runs), None


def _default_compare_parameters(database: Path, run_ids: list[str]) -> dict[str, Any]:
    return {"db_path": str(database), "run_ids": list(run_ids)}


def write_comparison_html(path: str | Path, database: str | Path, run_ids: Sequence[str],
                          runs: Sequence[SweepRun] = ()) -> Path:
    """A plain HTML comparison of a sweep: the runs table, then links to each report."""
    from html import escape

    path = Path(path)
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{escape(path.parent.name)} comparison</title>",
             "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}.failed{color:#b00}</style>",
             f"</head><body><h1>Sweep {escape(path.parent.name)}: comparison</h1>"]
    if run_ids:
        parts.append(compare_runs(database, run_ids).to_html(index=False, na_rep="", border=0))
    else:
        parts.append("<p>No run wrote results.</p>")
    if runs:
        parts.append("<h2>Reports</h2><ul>")
        for run in runs:
            link = escape(os.path.relpath(run.html_path, path.parent)) if run.html_path else None
            label = escape(run.name) + ("" if run.ok else f" <span class='failed'>FAILED: {escape(run.error or '')}</span>")
            parts.append(f"<li><a href='{link}'>{label}</a></li>" if link else f"<li>{label}</li>")
        parts.append("</ul>")
    parts.append("</body></html>")
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
