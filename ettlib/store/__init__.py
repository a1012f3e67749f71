"""The store: one DuckDB file of candles, indicators, pivots, frames, pairs and runs.

Modules: :mod:`~ettlib.store.db` (connections and transactions),
:mod:`~ettlib.store.schema` (tables and migrations),
:mod:`~ettlib.store.storage` (:class:`DuckDBStorage`: ingest, resample,
windows), :mod:`~ettlib.store.ingest` (validating files),
:mod:`~ettlib.store.indicators`, :mod:`~ettlib.store.candles` (the array
form of candles), :mod:`~ettlib.store.results` (merging run files) and
:mod:`~ettlib.store.demo` (seeded demo candles).
"""

from ettlib.store.storage import DEFAULT_PATH, DuckDBStorage, IngestReport, describe_stored, stored_timeframes

__all__ = ["DEFAULT_PATH", "DuckDBStorage", "IngestReport", "describe_stored", "stored_timeframes"]
