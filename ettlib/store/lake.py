"""A Parquet lake: a store's candles as Hive-partitioned Parquet files, read through DuckDB.

The way past one file: :func:`export_parquet` writes the candles of a
:class:`~ettlib.store.storage.DuckDBStorage` (OHLCV and every indicator
column) into a folder or a bucket, one file per symbol, timeframe and month::

    <root>/symbol=ETH%2FUSDT/timeframe=1m/month=2024-01/data_0.parquet

(DuckDB writes the partition values, escaping what a path cannot hold, and
reads them back), and :class:`ParquetLake` serves them as a read-only
candle source: an in-memory DuckDB connection whose ``ohlcv_data`` is a view
over the files, so every read of a store -- windows, a replay's spans, the
catalogue, the data fingerprint -- runs unchanged on the lake, and a filter
on a symbol and a timeframe reads only their files.  A replay of the lake
gives exactly the events of the file it was exported from (tested).

Object storage goes through `fsspec <https://filesystem-spec.readthedocs.io>`_:
a root such as ``s3://bucket/prefix`` (``s3fs``), ``gs://...`` (``gcsfs``)
or ``memory://...`` is opened with ``fsspec.filesystem(protocol,
**storage_options)`` and registered on the connection
(``register_filesystem``); DuckDB's own ``httpfs`` extension is never loaded.

Examples
--------
>>> import fsspec
>>> from ettlib.store import DuckDBStorage
>>> from ettlib.store.demo import write_demo_data
>>> store = DuckDBStorage(":memory:")
>>> _ = write_demo_data(store, symbol="ETH/USDT", days=1)
>>> export_parquet(store, "memory://lake-doc").rows
1440
>>> lake = ParquetLake("memory://lake-doc")
>>> lake.symbols(), lake.time_range("ETH/USDT", "1m") == store.time_range("ETH/USDT", "1m")
(['ETH/USDT'], True)
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ettlib.errors import ConfigError, StoreOpenError
from ettlib.store.db import connect
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.store.storage import DuckDBStorage

__all__ = ["ParquetLake", "ExportReport", "export_parquet", "is_lake", "open_candles"]

_PARTITIONS = ("symbol", "timeframe", "month")
_MONTH = "strftime(make_timestamp(timestamp * 1000), '%Y-%m')"  # UTC: epoch ms -> 'YYYY-MM'


@dataclass(frozen=True, slots=True)
class ExportReport:
    """What :func:`export_parquet` wrote: where, how many candles, of which symbols."""

    root: str
    rows: int
    symbols: tuple[str, ...]


def _protocol(root: str) -> str:
    return root.split("://", 1)[0] if "://" in root else "file"


def _filesystem(root: str, storage_options: dict | None, filesystem=None):
    """The fsspec filesystem of a non-local ``root`` (``None`` for a local folder)."""
    if filesystem is not None:
        return filesystem
    protocol = _protocol(root)
    if protocol == "file":
        return None
    import fsspec

    try:
        return fsspec.filesystem(protocol, **(storage_options or {}))
    except (ImportError, ValueError) as exc:
        raise ConfigError(f"cannot open {root}: {exc} (install the fsspec implementation for "
                          f"{protocol}://, e.g. s3fs for s3://)") from exc


def is_lake(path) -> bool:
    """True for a folder or a URL (``s3://``, ``gs://``, ``memory://``...): a lake, not a DuckDB file.

    >>> is_lake("s3://bucket/candles"), is_lake("data/ett.duckdb"), is_lake(":memory:")
    (True, False, False)
    """
    text = str(path)
    return "://" in text or Path(text).is_dir()


def export_parquet(storage: DuckDBStorage, root, *, symbols=None, storage_options: dict | None = None,
                   filesystem=None) -> ExportReport:
    """Write the candles of ``storage`` (every column) into the lake at ``root``.

    One file per symbol, timeframe and month (the layout of the module doc);
    a partition exported again is overwritten whole, others are kept, so
    exporting a store again after new candles arrived brings the lake up to
    date.  ``symbols`` restricts the export (default: every stored symbol).
    """
    from ettlib.symbols import validate_symbols

    root = str(root)
    wanted = storage.symbols() if symbols is None else list(validate_symbols(symbols))
    if not wanted:
        raise ConfigError(f"{storage.path} holds no candles to export")
    fs = _filesystem(root, storage_options, filesystem)
    con = storage.con
    if fs is not None:
        con.register_filesystem(fs)
    elif not root.startswith("file://"):
        Path(root).mkdir(parents=True, exist_ok=True)
    columns = ", ".join(("timestamp",) + CANDLE_COLUMNS)  # fixed names, never user text
    try:
        rows = con.execute(
            "SELECT count(*) FROM ohlcv_data WHERE list_contains(?::VARCHAR[], symbol)", [wanted]).fetchone()[0]
        con.execute(
            f"COPY (SELECT symbol, timeframe, {columns}, {_MONTH} AS month FROM ohlcv_data"
            " WHERE list_contains(?::VARCHAR[], symbol)) TO ?"
            f" (FORMAT parquet, PARTITION_BY ({', '.join(_PARTITIONS)}), OVERWRITE_OR_IGNORE)",
            [wanted, root])
    finally:
        if fs is not None:
            con.unregister_filesystem(fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0])
    return ExportReport(root, int(rows), tuple(wanted))


class ParquetLake(DuckDBStorage):
    """The candles of a Parquet lake, read-only, with the reads of a :class:`DuckDBStorage`.

    Parameters
    ----------
    root
        The lake's folder, or a URL (``s3://bucket/prefix``...).
    storage_options
        Options of the fsspec filesystem (``{"endpoint_url": ..., "key": ...}``
        for s3fs, ...).
    filesystem
        An fsspec filesystem to use instead (already configured).
    """

    def __init__(self, root, *, storage_options: dict | None = None, filesystem=None):
        self.path = str(root).rstrip("/")
        self.read_only = True
        fs = _filesystem(self.path, storage_options, filesystem)
        pattern = f"{self.path}/**/*.parquet"
        found = fs.glob(pattern.split("://", 1)[-1]) if fs is not None else list(
            Path(self.path).glob("**/*.parquet"))
        if not found and fs is None:
            raise StoreOpenError(f"{self.path} is a folder, not a DuckDB database file, and holds no Parquet "
                                 f"lake; give the path of a file in it (e.g. {Path(self.path) / 'ett.duckdb'}),"
                                 " or write a lake there with `ett data export --parquet`")
        if not found:
            raise StoreOpenError(f"{self.path}: no Parquet files of candles there (write them with "
                                 "`ett data export --parquet ROOT`)")
        self.con = connect(":memory:")
        if fs is not None:
            self.con.register_filesystem(fs)
        types = ", ".join(f"'{p}': VARCHAR" for p in _PARTITIONS)
        # The pattern is the lake's own root (a path or URL), quoted as a SQL string.
        quoted = pattern.replace("'", "''")
        self.con.execute(
            f"CREATE VIEW ohlcv_data AS SELECT * EXCLUDE (month) FROM read_parquet('{quoted}',"
            f" hive_partitioning = true, hive_types = {{{types}}})")

    @property
    def reader(self):
        """The lake's connection (its files are read where they lie)."""
        return self.con

    def __repr__(self) -> str:
        return f"ParquetLake({self.path!r})"


def open_candles(path, *, read_only: bool = False, storage_options: dict | None = None) -> DuckDBStorage:
    """The candle source at ``path``: a :class:`ParquetLake` for a folder or URL, else a DuckDB file."""
    if is_lake(path):
        return ParquetLake(path, storage_options=storage_options)
    return DuckDBStorage(path, read_only=read_only)
