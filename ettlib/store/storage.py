"""The DuckDB store: validated ingest, resampling and windows by reference.

:class:`DuckDBStorage` owns one DuckDB connection to one file (default
``data/ett.duckdb``), the single source of truth for candles and their
indicators.  Every user value reaches SQL as a parameter; identifiers come
only from :data:`~ettlib.store.schema.CANDLE_COLUMNS`.

Concurrency (what DuckDB allows, measured with DuckDB 2.0.1)
-------------------------------------------------------------
DuckDB locks the *file*, per process:

* a read-write open takes an exclusive lock: while one process has the file
  open for writing, **no other process can open it at all, not even
  read-only**;
* read-only opens share the lock: any number of processes can read the file
  together, and while they do, nobody can open it for writing.

A refused open raises :class:`~ettlib.errors.StoreLockedError` naming the
file and, as DuckDB reports it, the holder's program and PID (attributes
``path``, ``holder``, ``pid``).  Within one process, opening the same file
twice shares one database; opening it once read-write and once read-only is
refused by DuckDB (also a ``StoreLockedError``).  So ettlib opens the store
for writing only to write candles (ingest, resample, indicators, pivots, a
migration); sessions, runs, reports and sweeps read it read-only
(:class:`~ettlib.workbench.Workbench` does by default for an existing file)
and write their results to files of their own (:mod:`ettlib.store.catalog`).
A connection must not be used by two threads at once; give each thread
``store.con.cursor()``.

Examples
--------
>>> import pandas as pd
>>> store = DuckDBStorage(":memory:")
>>> candles = pd.DataFrame({"timestamp": [0, 60_000, 120_000], "open": [1.0, 2, 3],
...                         "high": [2.0, 3, 4], "low": [0.5, 1, 2], "close": [2.0, 3, 3.5],
...                         "volume": [10.0, 0, 5]})
>>> report = store.ingest(candles, "ETH/USDT", "1m")
>>> report.rows_added, report.gaps
(3, 0)
>>> store.ingest(candles, "ETH/USDT", "1m").rows_unchanged
3
>>> w = store.read_window("ETH/USDT", "1m", 60_000, 120_000, columns=("close",))
>>> w.timestamps.tolist(), w.column("close").tolist()
([60000, 120000], [3.0, 3.5])
>>> [len(w) for w in store.read_windows("ETH/USDT", "1m", [0, 60_000], [60_000, 600_000])]
[2, 2]
>>> store.close()
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ettlib.store.candles import CandleArrays
from ettlib.store.db import attach, check_database_path, connect, transaction
from ettlib.errors import (
    ConfigError,
    SchemaError,
    StoreLockedError,
    StoreOpenError,
    UnknownNameError,
)
from ettlib.store.ingest import read_candles_source
from ettlib.store.window_reads import fetched_arrays, read_windows
from ettlib.store.writes import IngestReport, resample_candles, write_candles
from ettlib.store.schema import (
    CANDLE_COLUMNS,
    SCHEMA_VERSION,
    ensure_schema,
    refuse_newer,
    schema_version,
)
from ettlib.symbols import validate_symbol
from ettlib.timeframes import TIMEFRAMES, validate_timeframe
from ettlib.times import to_ms

__all__ = [
    "DEFAULT_PATH",
    "DuckDBStorage",
    "IngestReport",
    "stored_timeframes",
    "describe_stored",
]

#: Where the store lives unless a path is given (relative to the working directory).
DEFAULT_PATH = "data/ett.duckdb"

def _as_columns(columns: Sequence[str]) -> tuple[str, ...]:
    if isinstance(columns, str):
        columns = (columns,)
    out = tuple(columns)
    for name in out:
        if name not in CANDLE_COLUMNS:
            raise UnknownNameError("column", name, CANDLE_COLUMNS)
    if len(set(out)) != len(out):
        raise ConfigError(f"columns repeat a name: {out}")
    return out


#: Buffer pool of the connection replays read a read-only store through
#: (:attr:`DuckDBStorage.reader`): what the replay's reads may keep cached.
READER_MEMORY_LIMIT = "32MB"


class DuckDBStorage:
    """One DuckDB file holding candles, indicators, pivots, frames and runs.

    Parameters
    ----------
    path
        The database file (parent folders are created), or ``":memory:"``.
    read_only
        Open without taking the write lock (several readers may share the
        file).  A file written by an earlier ettlib is first migrated by a
        short read-write open (tables and columns added, rows kept), which
        needs that no other process has it open.

    Raises
    ------
    StoreOpenError
        ``path`` is a folder, not a DuckDB file (text, a SQLite database, ...),
        unreadable, missing (``read_only``), or not writable for this user
        when writing (:func:`~ettlib.store.db.check_database_path`); nothing is
        created or changed.
    StoreLockedError
        Another process holds the file (see the module docstring).
    SchemaError
        The file's schema is newer than this ettlib, or older and (read-only)
        cannot be migrated now because another process has the file open.
    """

    def __init__(self, path: str | Path = DEFAULT_PATH, *, read_only: bool = False):
        self.path = str(path)
        self.read_only = bool(read_only)
        in_memory = self.path == ":memory:"
        if in_memory and read_only:
            raise ConfigError("an in-memory store cannot be read-only")
        if not in_memory:
            check_database_path(self.path, read_only=read_only)  # before any folder is made
            if not read_only:
                Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self.con = connect(self.path, read_only=read_only)
        try:
            version = schema_version(self.con)
            if version > SCHEMA_VERSION:
                refuse_newer(version, self.path)
            if read_only and version < SCHEMA_VERSION:
                self.con.close()
                self._migrate(version)
                self.con = connect(self.path, read_only=True)
            elif not read_only:
                ensure_schema(self.con, name=self.path)
        except BaseException:
            self.con.close()
            raise

    def _migrate(self, version: int) -> None:
        """Bring an older file to this ettlib's schema with a short read-write open.

        What a read-only open of a file written by an earlier ettlib does
        first: the migrations only add tables and columns (rows are kept), and
        every read-write open would apply them anyway.  Refused while another
        process has the file open (the migration needs the write lock).
        """
        try:
            con = connect(self.path)
        except (StoreLockedError, StoreOpenError) as exc:
            raise SchemaError(
                f"{self.path} has schema version {version}, this ettlib uses {SCHEMA_VERSION}, "
                f"and it cannot be migrated now ({exc}); close the other connections to it "
                "and open it again"
            ) from exc
        try:
            ensure_schema(con, name=self.path)
        finally:
            con.close()

    # -- life cycle ---------------------------------------------------------

    _reader = None

    @property
    def reader(self):
        """The connection a replay reads candles through.

        DuckDB keeps every block it has read in its buffer pool until the
        pool reaches ``memory_limit`` (80% of RAM by default), so a long
        replay through :attr:`con` would hold the whole range's blocks.  A
        read-only file store is therefore read, for replays, through a second
        DuckDB instance that attaches the file read-only with a buffer pool
        of :data:`READER_MEMORY_LIMIT`; :attr:`con` and its settings stay the
        user's.  A writable store is read through :attr:`con` (its file is
        held by this connection alone).
        """
        if not self.read_only or self.path == ":memory:":
            return self.con
        if self._reader is None:
            reader = connect()
            reader.execute(f"SET memory_limit = '{READER_MEMORY_LIMIT}'")
            attach(reader, self.path, "candles")
            reader.execute("USE candles")
            self._reader = reader
        return self._reader

    def close(self) -> None:
        """Close the connection (releases the file lock); idempotent."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        self.con.close()

    def __enter__(self) -> DuckDBStorage:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"DuckDBStorage({self.path!r}, read_only={self.read_only})"

    def _require_writable(self) -> None:
        if self.read_only:
            raise ConfigError(f"{self.path} is open read-only; open it with read_only=False to write")

    # -- writing ------------------------------------------------------------

    def ingest(
        self,
        source,
        symbol: str,
        timeframe: str,
        *,
        replace: bool = False,
        format: str | None = None,
        allow_sparse: bool = False,
    ) -> IngestReport:
        """Validate ``source`` and store its candles as ``symbol`` / ``timeframe``.

        Parameters
        ----------
        source
            A pandas DataFrame (``timestamp, open, high, low, close, volume``)
            or the path of a CSV, Parquet or Binance kline file (``.csv`` or
            ``.zip``); see :mod:`ettlib.store.ingest` for the accepted shapes and
            every check.
        replace
            Overwrite stored candles whose values differ.  Without it such a
            candle is a :class:`~ettlib.errors.DataValidationError`.
        format
            ``"dataframe"``, ``"csv"``, ``"parquet"``, ``"binance"`` or
            ``None`` (detect).
        allow_sparse
            Accept candles that are never adjacent (every step a whole
            multiple of the timeframe): without it such a source is refused
            as data of a coarser timeframe (5m candles given as ``"1m"``).

        Candles already stored with identical values are left alone, so
        ingesting the same file twice adds nothing.  Everything -- the new
        candles and the indicator update
        (:func:`ettlib.store.indicator_table.update_indicators` from the first new or
        replaced candle on) -- happens in one transaction: on any error the
        database is exactly as it was.
        """
        self._require_writable()
        symbol = validate_symbol(symbol)
        validate_timeframe(timeframe)
        candles = read_candles_source(source, timeframe, format=format, allow_sparse=allow_sparse)
        return write_candles(self.con, candles, symbol, timeframe, replace=replace)

    def resample(self, symbol: str, base_timeframe: str, timeframe: str) -> IngestReport:
        """Aggregate ``base_timeframe`` candles into ``timeframe`` and store them.

        The rule is the replay's (:func:`ettlib.replay.aggregate.aggregate_candles`):
        buckets are epoch-aligned and labelled by open time, a bucket with a
        hole is aggregated from the candles it has once a later candle shows
        it is over, and the last bucket is written only when complete -- so
        stored rows equal the candles a replay aggregates itself, bit for bit.
        Buckets that changed since an earlier call (more base candles
        arrived) are replaced; the indicators of ``timeframe`` are updated.
        Returns the report of the write.
        """
        self._require_writable()
        return resample_candles(self, symbol, base_timeframe, timeframe)

    def update_indicators(self, symbol: str, timeframe: str) -> int:
        """Recompute every indicator of ``symbol`` / ``timeframe`` in one transaction.

        Needed once after migrating an OHLCV-only database, whose rows arrive
        without indicators.  Returns what ``update_indicators`` returns.
        """
        self._require_writable()
        from ettlib.store.indicator_table import update_indicators

        with transaction(self.con):
            return update_indicators(self.con, validate_symbol(symbol), validate_timeframe(timeframe))

    # -- reading ------------------------------------------------------------

    def read_candles(
        self,
        symbol: str,
        timeframe: str,
        start: int | None = None,
        end: int | None = None,
        columns: Sequence[str] = CANDLE_COLUMNS,
    ) -> CandleArrays:
        """Rows with open time in ``[start, end]`` (either bound optional), sorted."""
        columns = _as_columns(columns)
        validate_timeframe(timeframe)
        sql = [f"SELECT {', '.join(('timestamp',) + columns)} FROM ohlcv_data"
               " WHERE symbol = ? AND timeframe = ?"]
        params: list = [symbol, timeframe]
        if start is not None:
            sql.append("AND timestamp >= ?")
            params.append(to_ms(start, "start"))
        if end is not None:
            sql.append("AND timestamp <= ?")
            params.append(to_ms(end, "end"))
        if start is not None and end is not None and params[2] > params[3]:
            raise ConfigError(f"start {params[2]} is after end {params[3]}")
        timestamps, values = fetched_arrays(self.con.execute(" ".join(sql), params).fetchnumpy(), columns)
        return CandleArrays(timestamps, values, columns)

    def read_window(
        self,
        symbol: str,
        timeframe: str,
        start: int,
        end: int,
        columns: Sequence[str] = CANDLE_COLUMNS,
    ) -> CandleArrays:
        """Exactly the stored rows with open time in ``[start, end]`` (inclusive).

        Gaps simply yield fewer rows; never a row outside the range.
        """
        if start is None or end is None:
            raise ConfigError("read_window needs both start and end")
        return self.read_candles(symbol, timeframe, start, end, columns)

    def read_windows(
        self,
        symbol: str,
        timeframe: str,
        starts: Sequence[int],
        ends: Sequence[int],
        columns: Sequence[str] = CANDLE_COLUMNS,
    ) -> list[CandleArrays]:
        """Many windows ``[starts[k], ends[k]]`` in one query (the fast path).

        The union of the windows is fetched with one query -- a range scan
        of the covering span when the windows are close together
        (consecutive inference frames overlap almost entirely), else an
        equality join of the open times the union can hold (on the timestamp
        column alone) whose rows are then fetched by ``rowid`` -- and every
        window is cut from it by binary search on the actual open times, so
        gaps anywhere give exactly the stored rows of each range.  (A range
        join against the list of windows measured 5-10x slower.)  Each
        window owns its arrays (copies).
        """
        return read_windows(self.con, symbol, timeframe, starts, ends, _as_columns(columns))

    # -- catalogue ----------------------------------------------------------

    def symbols(self) -> list[str]:
        """Stored symbols, sorted."""
        rows = self.con.execute("SELECT DISTINCT symbol FROM ohlcv_data ORDER BY symbol").fetchall()
        return [r[0] for r in rows]

    def timeframes(self, symbol: str) -> list[str]:
        """Timeframes stored for ``symbol``, shortest first."""
        rows = self.con.execute(
            "SELECT DISTINCT timeframe FROM ohlcv_data WHERE symbol = ?", [symbol]
        ).fetchall()
        return sorted((r[0] for r in rows), key=lambda tf: (TIMEFRAMES.get(tf, float("inf")), tf))

    def time_range(self, symbol: str, timeframe: str) -> tuple[int, int] | None:
        """Open times of the first and last stored candle, or ``None``."""
        first, last = self.con.execute(
            "SELECT min(timestamp), max(timestamp) FROM ohlcv_data"
            " WHERE symbol = ? AND timeframe = ?",
            [symbol, timeframe],
        ).fetchone()
        return None if first is None else (int(first), int(last))

    def count(self, symbol: str | None = None, timeframe: str | None = None) -> int:
        """Number of stored candles (optionally of one symbol / timeframe)."""
        sql, params = "SELECT count(*) FROM ohlcv_data WHERE true", []
        if symbol is not None:
            sql += " AND symbol = ?"
            params.append(symbol)
        if timeframe is not None:
            sql += " AND timeframe = ?"
            params.append(timeframe)
        return int(self.con.execute(sql, params).fetchone()[0])


def stored_timeframes(storage, symbols=None) -> dict[str, list[str]]:
    """``{symbol: [timeframe, ...]}`` (shortest first) of the candles in ``ohlcv_data``.

    ``storage`` is a :class:`DuckDBStorage` or a DuckDB connection;
    ``symbols`` restricts it (``None``: every stored symbol).  A symbol with
    no candles is absent.

    >>> store = DuckDBStorage(":memory:")
    >>> _ = store.ingest(__import__("pandas").DataFrame({"timestamp": [0], "open": [1.0], "high": [1.0],
    ...                  "low": [1.0], "close": [1.0], "volume": [1.0]}), "EURUSD", "1h")
    >>> stored_timeframes(store)
    {'EURUSD': ['1h']}
    """
    con = getattr(storage, "con", storage)
    sql = "SELECT DISTINCT symbol, timeframe FROM ohlcv_data"
    params: list = []
    if symbols is not None:
        sql += " WHERE list_contains(?::VARCHAR[], symbol)"
        params.append(list(symbols))
    out: dict[str, list[str]] = {}
    for symbol, timeframe in con.execute(sql + " ORDER BY symbol", params).fetchall():
        out.setdefault(symbol, []).append(timeframe)
    return {s: sorted(tfs, key=lambda tf: (TIMEFRAMES.get(tf, float("inf")), tf)) for s, tfs in out.items()}


def describe_stored(stored: dict[str, list[str]]) -> str:
    """``stored_timeframes`` as text for messages: ``'A: 1m 5m; B: 1h'`` (``'nothing'`` if empty)."""
    return "; ".join(f"{s}: {' '.join(tfs)}" for s, tfs in stored.items()) or "nothing"
