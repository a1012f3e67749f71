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
refused by DuckDB (also a ``StoreLockedError``).  So: a notebook that only
reads should open ``read_only=True`` and close it before a writer runs; a
writer should close (or use ``with``) as soon as it is done.  A connection
must not be used by two threads at once; give each thread ``store.con.cursor()``.

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
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa

from ettlib.store.candles import CandleArrays
from ettlib.store.db import attach, check_database_path, connect, registered, transaction
from ettlib.errors import (
    ConfigError,
    DataValidationError,
    SchemaError,
    StoreLockedError,
    StoreOpenError,
    UnknownNameError,
)
from ettlib.store.ingest import ValidCandles, read_candles_source
from ettlib.store.schema import (
    CANDLE_COLUMNS,
    OHLCV_COLUMNS,
    SCHEMA_VERSION,
    ensure_schema,
    refuse_newer,
    schema_version,
)
from ettlib.symbols import validate_symbol
from ettlib.timeframes import TIMEFRAMES, check_higher, timeframe_ms, validate_timeframe
from ettlib.times import format_ms, to_ms

__all__ = [
    "DEFAULT_PATH",
    "DuckDBStorage",
    "IngestReport",
    "stored_timeframes",
    "describe_stored",
]

#: Where the store lives unless a path is given (relative to the working directory).
DEFAULT_PATH = "data/ett.duckdb"

# The union of the windows asked for is fetched with one range scan when the
# covering span is at most this many times the union (plus a slack in rows);
# otherwise with an equality join against the expected open times.
_SPAN_FACTOR = 2
_SPAN_SLACK_ROWS = 4096
# In the join, rows are fetched by rowid when the union is at most this
# fraction of the covering span (measured: 2x faster for 32 scattered
# windows over a year of 1m candles, 10% slower for 256).
_ROWID_FRACTION = 0.15
# Never expand more open times than this for the join (a window like
# [0, 2**60] would ask for billions); scan the covering span instead.
_MAX_JOIN_ROWS = 2_000_000


@dataclass(frozen=True, slots=True)
class IngestReport:
    """What one :meth:`DuckDBStorage.ingest` (or ``resample``) did.

    Attributes
    ----------
    rows_read
        Candles in the source.
    rows_added
        Candles that were not stored before.
    rows_unchanged
        Candles already stored with identical values (idempotent re-ingest).
    rows_replaced
        Candles stored before with other values and overwritten
        (``replace=True`` only).
    gaps
        Holes (runs of missing candles) between the source's first and last
        candle; ``missing_candles`` counts the candles in them.
    first, last
        Open times of the source's first and last candle (epoch ms);
        ``None`` when there was no candle (a resample of nothing).
    """

    symbol: str
    timeframe: str
    source: str
    rows_read: int
    rows_added: int
    rows_unchanged: int
    rows_replaced: int
    gaps: int
    missing_candles: int
    first: int | None
    last: int | None


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


def _arrays(result: dict, columns: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """``fetchnumpy`` output -> (sorted int64 timestamps, float64 [n, c] with NaN for NULL).

    >>> import numpy as np
    >>> ts, v = _arrays({"timestamp": np.array([120, 60]),
    ...                  "close": np.ma.masked_array([2.0, 1.0], mask=[True, False])}, ("close",))
    >>> ts.tolist(), v.ravel().tolist()
    ([60, 120], [1.0, nan])
    """
    timestamps = np.asarray(result["timestamp"], dtype=np.int64)
    n = len(timestamps)
    order = None
    if n > 1 and not np.all(timestamps[1:] > timestamps[:-1]):
        # Joins return rows in no particular order.
        order = np.argsort(timestamps, kind="stable")
        timestamps = timestamps[order]
    values = np.empty((n, len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        data = result[column]
        if np.ma.isMaskedArray(data):
            mask = np.ma.getmaskarray(data)
            data = np.where(mask, np.nan, data.data) if mask.any() else data.data
        values[:, j] = data if order is None else data[order]
    return timestamps, values


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
        (:func:`ettlib.store.indicators.update_indicators` from the first new or
        replaced candle on) -- happens in one transaction: on any error the
        database is exactly as it was.
        """
        self._require_writable()
        symbol = validate_symbol(symbol)
        validate_timeframe(timeframe)
        candles = read_candles_source(source, timeframe, format=format, allow_sparse=allow_sparse)
        return self._write(candles, symbol, timeframe, replace=replace)

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
        symbol = validate_symbol(symbol)
        check_higher(base_timeframe, timeframe)
        if timeframe == base_timeframe:
            raise ConfigError(f"cannot resample {base_timeframe!r} into itself")
        from ettlib.replay.aggregate import aggregate_candles

        base = self.read_candles(symbol, base_timeframe, columns=OHLCV_COLUMNS)
        agg = aggregate_candles(base.timestamps, *(base.column(c) for c in OHLCV_COLUMNS),
                                base_timeframe, timeframe)
        data = {"timestamp": agg.timestamp, **{c: getattr(agg, c) for c in OHLCV_COLUMNS}}
        timestamps = data["timestamp"]
        source = f"resample {symbol} {base_timeframe}->{timeframe}"
        if len(timestamps) == 0:
            return IngestReport(symbol, timeframe, source, 0, 0, 0, 0, 0, 0, None, None)
        steps = np.diff(timestamps) // timeframe_ms(timeframe)
        candles = ValidCandles(
            timestamps=timestamps,
            ohlcv={c: data[c] for c in OHLCV_COLUMNS},
            rows=np.arange(1, len(timestamps) + 1, dtype=np.int64),
            source=source,
            gaps=int(np.count_nonzero(steps > 1)),
            missing_candles=int(np.sum(steps[steps > 1] - 1)),
        )
        return self._write(candles, symbol, timeframe, replace=True)

    def update_indicators(self, symbol: str, timeframe: str) -> int:
        """Recompute every indicator of ``symbol`` / ``timeframe`` in one transaction.

        Needed once after migrating an OHLCV-only database, whose rows arrive
        without indicators.  Returns what ``update_indicators`` returns.
        """
        self._require_writable()
        from ettlib.store.indicators import update_indicators

        with transaction(self.con):
            return update_indicators(self.con, validate_symbol(symbol), validate_timeframe(timeframe))

    def _write(self, candles: ValidCandles, symbol: str, timeframe: str, *, replace: bool) -> IngestReport:
        from ettlib.store.indicators import update_indicators

        con = self.con
        timestamps = candles.timestamps
        incoming = pa.table({"timestamp": timestamps, **candles.ohlcv})
        differs_sql = " OR ".join(f"o.{c} IS DISTINCT FROM i.{c}" for c in OHLCV_COLUMNS)
        key = "o.symbol = $symbol AND o.timeframe = $timeframe AND o.timestamp = i.timestamp"
        params = {"symbol": symbol, "timeframe": timeframe}
        with transaction(con), registered(con, "_ett_incoming", incoming) as name:
            existing = con.execute(
                f"SELECT i.timestamp, ({differs_sql}) AS differs"
                f" FROM {name} i JOIN ohlcv_data o ON {key}",
                params,
            ).fetchnumpy()
            existing_ts = np.asarray(existing["timestamp"], dtype=np.int64)
            differs = np.asarray(existing["differs"], dtype=bool)
            changed_ts = existing_ts[differs]
            if changed_ts.size and not replace:
                self._raise_conflict(candles, symbol, timeframe, int(changed_ts.min()))
            if changed_ts.size:
                assignments = ", ".join(f"{c} = i.{c}" for c in OHLCV_COLUMNS)
                con.execute(
                    f"UPDATE ohlcv_data AS o SET {assignments} FROM {name} i"
                    f" WHERE {key} AND ({differs_sql})",
                    params,
                )
            columns = ", ".join(("timestamp",) + OHLCV_COLUMNS)
            con.execute(
                f"INSERT INTO ohlcv_data (symbol, timeframe, {columns})"
                f" SELECT $symbol, $timeframe, {', '.join('i.' + c for c in ('timestamp',) + OHLCV_COLUMNS)}"
                f" FROM {name} i ANTI JOIN ohlcv_data o ON {key}",
                params,
            )
            added = len(timestamps) - len(existing_ts)
            new_ts = timestamps[~np.isin(timestamps, existing_ts, assume_unique=True)]
            touched = np.concatenate([new_ts, changed_ts])
            if touched.size:
                update_indicators(con, symbol, timeframe, since=int(touched.min()))
        return IngestReport(
            symbol=symbol,
            timeframe=timeframe,
            source=candles.source,
            rows_read=len(timestamps),
            rows_added=added,
            rows_unchanged=len(existing_ts) - len(changed_ts),
            rows_replaced=len(changed_ts),
            gaps=candles.gaps,
            missing_candles=candles.missing_candles,
            first=int(timestamps[0]),
            last=int(timestamps[-1]),
        )

    def _raise_conflict(self, candles: ValidCandles, symbol: str, timeframe: str, t: int) -> None:
        """Name the first candle (in time) that differs from the stored one."""
        stored = self.con.execute(
            f"SELECT {', '.join(OHLCV_COLUMNS)} FROM ohlcv_data"
            " WHERE symbol = ? AND timeframe = ? AND timestamp = ?",
            [symbol, timeframe, t],
        ).fetchone()
        i = int(np.searchsorted(candles.timestamps, t))
        for column, old in zip(OHLCV_COLUMNS, stored):
            new = float(candles.ohlcv[column][i])
            if old != new:
                raise DataValidationError(
                    f"the candle at {t} ({format_ms(t)}) is already stored for {symbol} {timeframe} with "
                    f"{column} = {old!r}; pass replace=True to overwrite stored candles",
                    source=candles.source, row=int(candles.rows[i]), column=column, value=new,
                )

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
        timestamps, values = _arrays(self.con.execute(" ".join(sql), params).fetchnumpy(), columns)
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
        columns = _as_columns(columns)
        tf = timeframe_ms(timeframe)
        starts = np.asarray([to_ms(s, "start") for s in starts], dtype=np.int64)
        ends = np.asarray([to_ms(e, "end") for e in ends], dtype=np.int64)
        if starts.shape != ends.shape:
            raise ConfigError(f"{len(starts)} starts but {len(ends)} ends")
        bad = np.flatnonzero(starts > ends)
        if bad.size:
            k = int(bad[0])
            raise ConfigError(f"window {k}: start {starts[k]} is after end {ends[k]}")
        if starts.size == 0:
            return []
        # Open times on the grid that each window can hold: [first, last].
        first = -(-starts // tf) * tf
        last = ends - ends % tf
        keep = first <= last
        select = f"SELECT {', '.join(('timestamp',) + columns)} FROM ohlcv_data"
        if not keep.any():
            timestamps = np.empty(0, np.int64)
            values = np.empty((0, len(columns)))
        else:
            lo, hi = _merge(first[keep], last[keep], tf)
            union_rows = int(np.sum((hi - lo) // tf + 1))
            span_rows = int((hi[-1] - lo[0]) // tf + 1)
            if (span_rows <= _SPAN_FACTOR * union_rows + _SPAN_SLACK_ROWS
                    or union_rows > _MAX_JOIN_ROWS):
                result = self.con.execute(
                    select + " WHERE symbol = ? AND timeframe = ? AND timestamp BETWEEN ? AND ?",
                    [symbol, timeframe, int(lo[0]), int(hi[-1])],
                ).fetchnumpy()
            else:
                expected = np.concatenate(
                    [np.arange(a, b + 1, tf, dtype=np.int64) for a, b in zip(lo, hi)]
                )
                with registered(self.con, "_ett_window_times", pa.table({"t": expected})) as name:
                    join = (f"SEMI JOIN {name} w ON timestamp = w.t"
                            " WHERE symbol = ? AND timeframe = ?")
                    if union_rows <= _ROWID_FRACTION * span_rows:
                        # Few rows wanted: find them on the key columns alone,
                        # then fetch all columns of just those rows by rowid
                        # (one statement, one snapshot) -- cheaper than
                        # decoding every column of every scanned row.
                        sql = f"{select} WHERE rowid IN (SELECT rowid FROM ohlcv_data {join})"
                    else:
                        sql = f"{select} {join}"
                    result = self.con.execute(sql, [symbol, timeframe]).fetchnumpy()
            timestamps, values = _arrays(result, columns)
        left = np.searchsorted(timestamps, starts, side="left")
        right = np.searchsorted(timestamps, ends, side="right")
        return [
            CandleArrays(timestamps[a:b].copy(), values[a:b].copy(), columns)
            for a, b in zip(left.tolist(), right.tolist())
        ]

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


def _merge(first: np.ndarray, last: np.ndarray, tf: int) -> tuple[np.ndarray, np.ndarray]:
    """Union of grid ranges ``[first, last]`` as sorted, disjoint ``(lo, hi)``.

    >>> lo, hi = _merge(np.array([0, 60, 300]), np.array([120, 180, 360]), 60)
    >>> lo.tolist(), hi.tolist()
    ([0, 300], [180, 360])
    """
    order = np.argsort(first, kind="stable")
    first, last = first[order], last[order]
    reach = np.maximum.accumulate(last)
    # A new interval starts where a range begins after everything before it ends (+1 step).
    starts_new = np.empty(len(first), dtype=bool)
    starts_new[0] = True
    starts_new[1:] = first[1:] > reach[:-1] + tf
    idx = np.flatnonzero(starts_new)
    lo = first[idx]
    hi = reach[np.append(idx[1:] - 1, len(first) - 1)]
    return lo, hi
