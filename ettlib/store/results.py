"""Per-run result files, merged into the main database after a sweep.

DuckDB allows one writing process per file, and while a process holds a file
for writing no other process may open it at all, not even read-only.  So the
runs of a sweep never write the main database.  The design:

1. **The source is read-only for everyone.**  While a sweep runs, the parent
   holds no connection to the main database; each run opens the candles
   read-only (many processes may read one file at once).
2. **Each run writes its own file.**  A run writes its ``runs`` row and its
   other run-keyed rows (:data:`RUN_TABLES`) into
   ``<sweep dir>/results/<run name>.duckdb`` (the notebook's ``results_db``
   parameter), which no other process touches.
3. **The parent merges once, at the end.**  After every run has finished,
   :func:`merge_run_results` opens the main database for writing, ATTACHes
   each per-run file read-only and copies its rows with ``INSERT ... SELECT``,
   all in **one transaction**: either every run lands in ``runs`` or, on any
   error, none does and the main database is unchanged.  Runs already in the
   main ``runs`` table are skipped, so merging twice adds nothing.

A failed run that recorded itself (``status = 'failed'``) is merged like any
other; a run that left no file is listed as missing.

Examples
--------
>>> import duckdb
>>> from ettlib.store.schema import ensure_schema
>>> con = duckdb.connect()
>>> _ = ensure_schema(con)
>>> merge_run_results(con, []).runs_added
0
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb

from ettlib.store.db import check_database_path, connect, transaction
from ettlib.errors import ConfigError, SchemaError
from ettlib.store.schema import ensure_schema, schema_version

__all__ = [
    "RUN_TABLES",
    "MergeReport",
    "run_results_path",
    "merge_run_results",
    "read_runs",
    "compare_runs",
]

#: Tables whose rows belong to a run (keyed by ``run_id``), merged in this
#: order; ``runs`` goes last so the skip-check sees the state before the merge.
RUN_TABLES: tuple[str, ...] = (
    "training_events", "inference_frames", "dead_letters", "coordinator_checkpoints",
    "subscriber_states", "runs",
)


@dataclass(frozen=True, slots=True)
class MergeReport:
    """What :func:`merge_run_results` copied into the main database."""

    files: tuple[Path, ...]
    run_ids: tuple[str, ...]
    rows_by_table: dict[str, int]
    skipped_run_ids: tuple[str, ...]
    missing_files: tuple[Path, ...]

    @property
    def runs_added(self) -> int:
        return len(self.run_ids)


def run_results_path(results_dir: str | Path, run_name: str) -> Path:
    """The per-run results file of ``run_name`` under ``results_dir``."""
    if not run_name or "/" in run_name or "\\" in run_name or run_name.startswith("."):
        raise ConfigError(f"run name {run_name!r} must be a plain file name")
    return Path(results_dir) / f"{run_name}.duckdb"


def _connect_for_write(database: str | Path | duckdb.DuckDBPyConnection) -> tuple[duckdb.DuckDBPyConnection, bool]:
    if isinstance(database, duckdb.DuckDBPyConnection):
        return database, False
    path = Path(database)
    path.parent.mkdir(parents=True, exist_ok=True)
    return connect(str(path)), True  # a held file: StoreLockedError, from connect


def _columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[str]:
    rows = con.execute(
        "SELECT column_name FROM information_schema.columns "
        "WHERE table_catalog = ? AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
        [catalog, table],
    ).fetchall()
    return [r[0] for r in rows]


def _quote(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def merge_run_results(
    database: str | Path | duckdb.DuckDBPyConnection, sources: Iterable[str | Path]
) -> MergeReport:
    """Copy every run of the per-run files ``sources`` into ``database``, atomically.

    ``database`` is a path (opened for writing, schema ensured, closed after)
    or an open connection.  Each source is ATTACHed read-only; rows of
    :data:`RUN_TABLES` whose ``run_id`` is not yet in the main ``runs``
    table are inserted, by column name.  One transaction covers all files:
    on any error nothing is merged.  Sources that do not exist are reported
    in ``missing_files``.
    """
    con, owned = _connect_for_write(database)
    try:
        ensure_schema(con)
        main_catalog = con.execute("SELECT current_database()").fetchone()[0]
        main_version = schema_version(con)
        files, missing = [], []
        for source in sources:
            path = Path(source)
            (files if path.is_file() else missing).append(path)
        rows_by_table = {t: 0 for t in RUN_TABLES}
        added: list[str] = []
        skipped: list[str] = []
        existing = {r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()}
        with transaction(con):
            for path in files:
                check_database_path(path, read_only=True)  # only DuckDB files reach ATTACH
                try:
                    con.execute("ATTACH ? AS run_src (READ_ONLY)", [str(path)])
                except duckdb.Error as err:
                    raise ConfigError(f"{path}: cannot open as a DuckDB results file: {err}") from err
                try:
                    version = con.execute(
                        "SELECT count(*) FROM information_schema.tables "
                        "WHERE table_catalog = 'run_src' AND table_name = 'schema_version'"
                    ).fetchone()[0]
                    if version:
                        version = con.execute("SELECT max(version) FROM run_src.schema_version").fetchone()[0]
                    if version != main_version:
                        raise SchemaError(
                            f"{path}: schema version {version} differs from the main database's {main_version}"
                        )
                    run_ids = [r[0] for r in con.execute("SELECT run_id FROM run_src.runs ORDER BY run_id").fetchall()]
                    new = [r for r in run_ids if r not in existing]
                    skipped.extend(r for r in run_ids if r in existing)
                    if new:
                        for table in RUN_TABLES:
                            main_cols = _columns(con, main_catalog, table)
                            src_cols = set(_columns(con, "run_src", table))
                            if not main_cols or not src_cols:
                                continue  # a table this schema does not have
                            cols = ", ".join(_quote(c) for c in main_cols if c in src_cols)
                            # Table names come from RUN_TABLES, columns from the schema itself.
                            count = con.execute(
                                f"SELECT count(*) FROM run_src.{table} WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                                [new],
                            ).fetchone()[0]
                            con.execute(
                                f"INSERT INTO main.{table} ({cols}) SELECT {cols} FROM run_src.{table} "
                                "WHERE run_id IN (SELECT unnest(?::VARCHAR[]))",
                                [new],
                            )
                            rows_by_table[table] += count
                        existing.update(new)
                        added.extend(new)
                finally:
                    con.execute("DETACH run_src")
        return MergeReport(tuple(files), tuple(added), rows_by_table, tuple(skipped), tuple(missing))
    finally:
        if owned:
            con.close()


def read_runs(database: str | Path | duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None):
    """The ``runs`` rows (all, or ``run_ids`` in that order) as a pandas DataFrame.

    ``config`` and ``metrics`` stay JSON strings; see :func:`compare_runs`.
    """
    con, catalog = open_runs(database)
    try:
        if run_ids is None:
            return con.execute("SELECT * FROM runs ORDER BY started_at NULLS LAST, run_id").df()
        frame = con.execute(
            "SELECT * FROM runs WHERE run_id IN (SELECT unnest(?::VARCHAR[]))", [list(run_ids)]
        ).df()
        order = {r: i for i, r in enumerate(run_ids)}
        return frame.sort_values("run_id", key=lambda s: s.map(order)).reset_index(drop=True)
    finally:
        if owned:
            con.close()


def compare_runs(database: str | Path | duckdb.DuckDBPyConnection, run_ids: Sequence[str] | None = None):
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
