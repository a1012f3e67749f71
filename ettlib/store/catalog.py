"""Where runs keep their results, and one read-only view over all of them.

DuckDB lets one process write a file, and while it does, no other process
may open that file at all, not even read-only.  So that a notebook kernel,
``ett run``, ``ett report``, ``ett sweep`` and ``ett data info`` can all
work on one data directory at the same time:

- **The candle store is read-only for everyone who only reads candles.**
  Sessions, runs, reports, sweeps and ``ett data info`` open it read-only,
  and many processes may do so at once.  Only the commands that write
  candles (ingest, resample, indicators, pivots, a schema migration) open it
  for writing; they need it to themselves and say so when it is held.
- **Each run writes its own file.**  A run of ``data/ett.duckdb`` writes its
  ``runs`` row, frames, delivered pairs, dead letters and checkpoints into
  ``data/ett.runs/<run id>.duckdb`` (:func:`runs_folder`,
  :func:`run_results_path`), which no other process writes.  Its resume
  reopens that file.
- **A catalog unions them.**  :class:`RunCatalog` is an in-memory DuckDB
  database that ATTACHes the store and every finished run file read-only
  and shows each run table (:data:`RUN_TABLES`) as one view over all of
  them, with a ``results_file`` column on ``runs``; the store's other
  tables are views too.  Notebook 03, ``read_runs`` and the report read
  runs through it.  A run still in progress holds its file, so the catalog
  lists it in :attr:`RunCatalog.skipped` instead of failing.

Examples
--------
>>> import tempfile, pathlib
>>> from ettlib.store.db import connect
>>> from ettlib.store.schema import ensure_schema
>>> folder = pathlib.Path(tempfile.mkdtemp())
>>> store = folder / "ett.duckdb"
>>> _ = ensure_schema(connect(store))
>>> runs_folder(store).name
'ett.runs'
>>> results = run_results_path(runs_folder(store), "r1")
>>> results.parent.mkdir()
>>> con = connect(results)
>>> _ = ensure_schema(con)
>>> _ = con.execute("INSERT INTO runs (run_id, status, config) VALUES ('r1', 'completed', '{}')")
>>> con.close()
>>> with RunCatalog(store) as catalog:
...     catalog.con.execute("SELECT run_id, status FROM runs").fetchall()
...     catalog.find("r1").name
[('r1', 'completed')]
'r1.duckdb'
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ettlib.errors import ConfigError, StoreLockedError
from ettlib.store.db import attach, connect
from ettlib.store.schema import ensure_schema

__all__ = [
    "RUN_TABLES",
    "RUNS_SUFFIX",
    "runs_folder",
    "run_results_path",
    "SkippedFile",
    "RunCatalog",
    "open_runs",
    "reading_runs",
    "read_runs",
    "compare_runs",
]

#: Tables whose rows belong to a run (keyed by ``run_id``).
RUN_TABLES: tuple[str, ...] = (
    "runs", "training_events", "inference_frames", "dead_letters",
    "coordinator_checkpoints", "subscriber_states",
)

#: The folder of a store's run files is the store's name with this suffix.
RUNS_SUFFIX = ".runs"


def runs_folder(store: str | Path) -> Path:
    """The folder that holds the run files of the store ``store``.

    ``data/ett.duckdb`` -> ``data/ett.runs``; a lake folder ``lake/`` ->
    ``lake.runs`` beside it.  A URL or ``:memory:`` has no such folder.

    >>> runs_folder("data/ett.duckdb").as_posix()
    'data/ett.runs'
    >>> runs_folder("s3://bucket/lake")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: s3://bucket/lake is not a local file or folder, so its runs have no default folder: give results_db= (or --results-dir) a local path
    """
    text = str(store)
    if text == ":memory:" or "://" in text:
        raise ConfigError(f"{text} is not a local file or folder, so its runs have no default "
                          "folder: give results_db= (or --results-dir) a local path")
    path = Path(text)
    name = path.stem if path.suffix else path.name
    return path.parent / f"{name}{RUNS_SUFFIX}"


def run_results_path(folder: str | Path, run_id: str) -> Path:
    """The results file of run ``run_id`` in ``folder``.

    >>> run_results_path("data/ett.runs", "20240101-abc").as_posix()
    'data/ett.runs/20240101-abc.duckdb'
    >>> run_results_path("data/ett.runs", "../x")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: run id '../x' must be a plain file name (no '/', '\\\\' or leading '.')
    """
    if not run_id or "/" in run_id or "\\" in run_id or run_id.startswith("."):
        raise ConfigError(f"run id {run_id!r} must be a plain file name (no '/', '\\\\' or leading '.')")
    return Path(folder) / f"{run_id}.duckdb"


@dataclass(frozen=True, slots=True)
class SkippedFile:
    """A run file the catalog could not show, and why (``pid``: the process holding it)."""

    path: Path
    reason: str
    pid: int | None = None


class RunCatalog:
    """All runs of a store, read-only: its own run tables and every run file beside it.

    Parameters
    ----------
    store
        The store's file (its run tables are included when it has them), or
        ``None`` for run files only.
    folder
        The run files' folder; default :func:`runs_folder` of ``store``.

    Attributes
    ----------
    con
        An in-memory DuckDB connection: each of :data:`RUN_TABLES` is a view
        (``runs`` with a ``results_file`` column: the file the row lives in),
        and so is each other table of the store.
    skipped
        The run files left out: held by a running process ("in progress"),
        or not readable as results.
    """

    def __init__(self, store: str | Path | None = None, *, folder: str | Path | None = None):
        if store is None and folder is None:
            raise ConfigError("RunCatalog needs a store or a folder of run files")
        self.store = None if store is None else Path(store)
        self.folder = Path(folder) if folder is not None else runs_folder(self.store)
        self.con = connect(":memory:")
        ensure_schema(self.con)
        self.skipped: list[SkippedFile] = []
        self._files: dict[str, Path] = {}
        try:
            self._build()
        except BaseException:
            self.con.close()
            raise

    def _build(self) -> None:
        sources = ["memory"]
        if self.store is not None and self.store.is_file():
            attach(self.con, self.store, "store")  # a store held for writing: StoreLockedError
            sources.append("store")
        files = sorted(self.folder.glob("*.duckdb")) if self.folder.is_dir() else []
        for i, path in enumerate(files):
            alias = f"run_{i}"
            try:
                attach(self.con, path, alias)
            except StoreLockedError as exc:
                self.skipped.append(SkippedFile(path, "in progress (held by a running process)", exc.pid))
                continue
            except ConfigError as exc:  # not a DuckDB file, unreadable, ...
                self.skipped.append(SkippedFile(path, str(exc)))
                continue
            sources.append(alias)
            self._files[alias] = path
        tables: dict[str, set[str]] = {}
        for catalog, table in self.con.execute(
                "SELECT table_catalog, table_name FROM information_schema.tables "
                "WHERE table_schema = 'main'").fetchall():
            tables.setdefault(catalog, set()).add(table)
        self.con.execute("CREATE SCHEMA shape")  # empty run tables: the union's columns and types
        for table in RUN_TABLES:
            self.con.execute(f"CREATE TABLE shape.{table} AS SELECT * FROM main.{table} LIMIT 0")
            self.con.execute(f"DROP TABLE main.{table}")
            parts = [f"SELECT *{_results_file('NULL', table)} FROM memory.shape.{table}"]
            for source in sources[1:]:
                if table in tables.get(source, ()):
                    where = "NULL" if source == "store" else f"'{_sql_text(self._files[source])}'"
                    parts.append(f"SELECT *{_results_file(where, table)} FROM {source}.main.{table}")
            self.con.execute(f"CREATE VIEW main.{table} AS " + " UNION ALL BY NAME ".join(parts))
        for table in tables.get("store", ()):
            if table not in RUN_TABLES:
                self.con.execute(f"DROP TABLE IF EXISTS main.{table}")
                self.con.execute(f"CREATE VIEW main.{table} AS SELECT * FROM store.main.{table}")

    def find(self, run_id: str) -> Path | None:
        """The file that holds run ``run_id``: a run file, the store itself, or ``None``."""
        row = self.con.execute("SELECT results_file FROM runs WHERE run_id = ? LIMIT 1", [run_id]).fetchone()
        if row is None:
            return None
        return Path(row[0]) if row[0] is not None else self.store

    def close(self) -> None:
        """Detach every file and close the in-memory database."""
        self.con.close()

    def __enter__(self) -> RunCatalog:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RunCatalog({str(self.store)!r}, {len(self._files)} run files, {len(self.skipped)} skipped)"


def _results_file(where: str, table: str) -> str:
    """The ``results_file`` column of the ``runs`` view (``where``: a SQL text literal or NULL)."""
    return f", {where}::VARCHAR AS results_file" if table == "runs" else ""


def _sql_text(path: Path) -> str:
    return os.fspath(path).replace("'", "''")


def open_runs(database) -> tuple[duckdb.DuckDBPyConnection, RunCatalog | None]:
    """A connection that reads every run of ``database``, and the catalog to close after (or ``None``).

    ``database`` is an open connection (used as it is), a store file (its
    :class:`RunCatalog`), a run file inside a runs folder (that folder's
    catalog), or a folder of run files.
    """
    if isinstance(database, duckdb.DuckDBPyConnection):
        return database, None
    path = Path(database)
    if path.is_dir():
        catalog = RunCatalog(folder=path)
    elif path.is_file() and path.parent.name.endswith(RUNS_SUFFIX):
        catalog = RunCatalog(folder=path.parent)
    elif path.is_file():
        catalog = RunCatalog(path)
    else:
        raise ConfigError(f"{database}: no such database (no file, and no folder of run files)")
    return catalog.con, catalog


@contextlib.contextmanager
def reading_runs(database) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to every run of ``database`` inside the block (see :func:`open_runs`)."""
    con, catalog = open_runs(database)
    try:
        yield con
    finally:
        if catalog is not None:
            catalog.close()


def read_runs(database, run_ids: Sequence[str] | None = None):
    """The ``runs`` rows (all, or ``run_ids`` in that order) as a pandas DataFrame.

    ``database`` as for :func:`open_runs`.  ``config`` and ``metrics`` stay
    JSON strings; see :func:`compare_runs`.
    """
    with reading_runs(database) as con:
        if run_ids is None:
            return con.execute("SELECT * FROM runs ORDER BY started_at NULLS LAST, run_id").df()
        frame = con.execute(
            "SELECT * FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]
        ).df()
        order = {r: i for i, r in enumerate(run_ids)}
    return frame.sort_values("run_id", key=lambda s: s.map(order)).reset_index(drop=True)


def compare_runs(database, run_ids: Sequence[str] | None = None):
    """One row per run: id, status, wall time, then ``config.*`` and ``metrics.*`` columns.

    The comparison table of a sweep when no comparison notebook is available.
    """
    import pandas as pd

    runs = read_runs(database, run_ids)
    rows = []
    for record in runs.to_dict("records"):
        row = {"run_id": record["run_id"], "status": record["status"], "wall_s": record["wall_s"]}
        for prefix, column in (("config", "config"), ("metrics", "metrics")):
            try:
                values = json.loads(record[column]) if record[column] else {}
            except (TypeError, ValueError):
                values = {}
            if isinstance(values, dict):
                for key, value in values.items():
                    row[f"{prefix}.{key}"] = value if not isinstance(value, (list, dict)) else json.dumps(value)
        row["error"] = record["error"]
        rows.append(row)
    return pd.DataFrame(rows)
