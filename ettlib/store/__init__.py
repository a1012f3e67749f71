"""The store: a DuckDB file of candles, indicators and pivots, and the runs' results beside it.

Modules: :mod:`~ettlib.store.db` (connections and transactions),
:mod:`~ettlib.store.schema` (tables and migrations),
:mod:`~ettlib.store.storage` (:class:`DuckDBStorage`: ingest, resample,
windows), :mod:`~ettlib.store.ingest` (reading files),
:mod:`~ettlib.store.validation` (checking rows), :mod:`~ettlib.store.writes`
(writing candles), :mod:`~ettlib.store.window_reads` (many windows in one
query), :mod:`~ettlib.store.indicators` (the indicator math) and
:mod:`~ettlib.store.indicator_table` (storing it), :mod:`~ettlib.store.candles`
(the array form of candles), :mod:`~ettlib.store.catalog` (each run's own
results file, and one read-only view over all of them),
:mod:`~ettlib.store.lake` (Parquet) and :mod:`~ettlib.store.demo` (seeded
demo candles).
"""

from ettlib.store.storage import DEFAULT_PATH, DuckDBStorage, IngestReport, describe_stored, stored_timeframes

__all__ = ["DEFAULT_PATH", "DuckDBStorage", "IngestReport", "describe_stored", "stored_timeframes"]
