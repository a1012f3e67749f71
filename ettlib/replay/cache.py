"""A columnar in-memory cache of the replayed range; windows are array slices.

The cache holds, per ``(symbol, timeframe)``, either

* a copy of the rows of ``ohlcv_data`` for the range it loaded (in chunks):
  DuckDB stays the source of truth, and ``window(symbol, timeframe, start,
  end)`` answers exactly the rows DuckDB would return for that inclusive
  open-time range; or
* the replay's own candles of a higher timeframe (:meth:`CandleCache.put_aggregated`,
  aggregated from the base candles by :mod:`ettlib.replay.aggregate`), whose
  indicator columns are computed from them on first use
  (:func:`ettlib.store.indicators.compute_indicators`, causal: a row's value
  depends on that row and earlier ones only).

Windows are views of its arrays (one copy when a subset of columns is asked
for), or ``None`` when the range is not covered (the caller then asks
DuckDB).  Cached arrays are read-only.  Nothing public hands out rows without
the look-ahead check below.

Finding a window's rows
-----------------------
A stream loaded without gaps (every open time is the first plus a whole
number of candles) is indexed arithmetically: the rows of ``[start, end]``
are ``ceil((start - first) / tf)`` to ``floor((end - first) / tf)``, in Python
ints.  A stream with gaps is searched (``np.searchsorted``).  Both give
exactly the rows DuckDB returns for the range.

No look-ahead, by construction
------------------------------
The cache may hold rows from the future (the whole replay range is preloaded),
so when a clock is attached, :meth:`CandleCache.window` refuses with
:class:`~ettlib.errors.LookAheadError` any range whose last candle would close
after ``clock.now()`` -- judged on the requested ``end`` (``end +
timeframe_ms > now``), not on the rows that happen to exist, and, for the
aggregated candles of a gapped bucket that completed late, on the knowable
time of the last row.

Examples
--------
>>> import duckdb
>>> from ettlib.store.schema import ensure_schema
>>> from ettlib.clock import ReplayClock
>>> con = duckdb.connect()
>>> _ = ensure_schema(con)
>>> for m in range(5):
...     _ = con.execute("INSERT INTO ohlcv_data (symbol, timeframe, timestamp, open, high, low, close, volume)"
...                     " VALUES ('X', '1m', ?, 1, 2, 0.5, 1.5, 10)", [m * 60_000])
>>> cache = CandleCache(con, clock=ReplayClock(180_000))
>>> len(cache.load("X", "1m", 0, 240_000))
5
>>> w = cache.window("X", "1m", 0, 120_000, ("close",))
>>> w.timestamps.tolist(), w.values[:, 0].tolist()
([0, 60000, 120000], [1.5, 1.5, 1.5])
>>> cache.window("X", "1m", 0, 180_000)   # the 3-minute candle closes at 240000 > now
Traceback (most recent call last):
...
ettlib.errors.LookAheadError: window X 1m [0, 180000] ends with a candle closing at 240000, after now (180000)
>>> cache.window("X", "1m", -120_000, 0) is None   # not loaded: ask DuckDB
True
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ettlib.store.candles import CandleArrays
from ettlib.errors import ConfigError, LookAheadError, StoreError, UnknownNameError
from ettlib.store.schema import CANDLE_COLUMNS, INDICATOR_COLUMNS, OHLCV_COLUMNS
from ettlib.timeframes import timeframe_ms, validate_timeframe

__all__ = ["CandleCache", "read_candle_rows"]

#: Default number of candles fetched from DuckDB per query when loading.
DEFAULT_CHUNK_ROWS = 262_144


def _check_columns(columns: Sequence[str]) -> tuple[str, ...]:
    columns = tuple(columns)
    for c in columns:
        if c not in CANDLE_COLUMNS:
            raise UnknownNameError("column", c, CANDLE_COLUMNS)
    return CANDLE_COLUMNS if columns == CANDLE_COLUMNS else columns  # one object: `is` compares it


def _fetch(con, symbol, timeframe, start, end, columns) -> tuple[np.ndarray, dict]:
    """The rows of ``[start, end]``: their open times (int64) and DuckDB's columns."""
    # Column names come from CANDLE_COLUMNS only (checked by the callers).
    sql = ("SELECT timestamp, " + ", ".join(columns) + " FROM ohlcv_data"
           " WHERE symbol = ? AND timeframe = ? AND timestamp BETWEEN ? AND ?")
    result = con.execute(sql, [symbol, timeframe, int(start), int(end)]).fetchnumpy()
    return np.asarray(result["timestamp"], dtype=np.int64), result


def _fetch_into(con, symbol, timeframe, start, end, columns, out_ts, out_values, at) -> int:
    """Copy the rows of ``[start, end]`` into preallocated arrays from row ``at``."""
    ts, result = _fetch(con, symbol, timeframe, start, end, columns)
    n = len(ts)
    if at + n > len(out_ts):
        raise StoreError(f"ohlcv_data rows of {symbol} {timeframe} changed while being read")
    out_ts[at:at + n] = ts
    _fetch_into_columns(result, columns, out_values, at, n)
    return n


def _fetch_into_columns(result: dict, columns, out_values: np.ndarray, at: int, n: int) -> None:
    """DuckDB's columns into rows ``[at, at + n)`` of ``out_values``, NULL as NaN."""
    for j, c in enumerate(columns):
        col = result[c]
        out_values[at:at + n, j] = np.ma.filled(col, np.nan) if np.ma.isMaskedArray(col) else col


def read_candle_rows(storage, symbol: str, timeframe: str, start: int, end: int,
                     columns: Sequence[str] = CANDLE_COLUMNS, *,
                     chunk_rows: int = DEFAULT_CHUNK_ROWS) -> CandleArrays:
    """Rows of ``ohlcv_data`` with open time in ``[start, end]``, sorted, NULL as NaN.

    Reads ``storage.reader`` (or ``storage`` itself, a DuckDB connection) with
    parameterized queries of at most ``chunk_rows`` candles each, straight
    into one preallocated array (one copy from DuckDB's result); a range of
    at most ``chunk_rows`` grid slots in one query (no count first).  A storage
    without a connection is read through its ``read_candles``.
    """
    columns = _check_columns(columns)
    con = getattr(storage, "reader", getattr(storage, "con", storage))
    if not hasattr(con, "execute"):
        return storage.read_candles(symbol, timeframe, start, end, columns)
    span = chunk_rows * timeframe_ms(timeframe)
    if int(end) - int(start) < span:  # one chunk: one query, no count first
        ts, result = _fetch(con, symbol, timeframe, start, end, columns)
        count = len(ts)
        values = np.empty((count, len(columns)), dtype=np.float64)
        _fetch_into_columns(result, columns, values, 0, count)
    else:
        count = con.execute(
            "SELECT count(*) FROM ohlcv_data WHERE symbol = ? AND timeframe = ?"
            " AND timestamp BETWEEN ? AND ?", [symbol, timeframe, int(start), int(end)]).fetchall()[0][0]
        ts = np.empty(count, dtype=np.int64)
        values = np.empty((count, len(columns)), dtype=np.float64)
        at, lo = 0, int(start)
        while lo <= end and at < count:
            hi = min(int(end), lo + span - 1)
            at += _fetch_into(con, symbol, timeframe, lo, hi, columns, ts, values, at)
            lo = hi + 1
        if at != count:
            raise StoreError(f"ohlcv_data rows of {symbol} {timeframe} changed while being read")
    if count > 1 and not np.all(ts[1:] > ts[:-1]):
        order = np.argsort(ts, kind="stable")
        ts, values = ts[order], values[order]
    return CandleArrays(ts, values, columns)


@dataclass(slots=True)
class _Entry:
    lo: int  # covered open-time range, inclusive
    hi: int
    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]
    first: int  # open time of row 0 (lo when there are no rows)
    step: int  # the timeframe when row k opens at first + k * step (no gaps), else 0
    tf_ms: int  # the timeframe
    #: knowable time of each row where some completed late (an aggregated
    #: gapped bucket), else None (every row is known at its open + tf_ms)
    late_close: np.ndarray | None = None
    #: no row was dropped since the stream's first (indicators need to know)
    whole: bool = True
    #: the replay's own candles (not rows of the store): no column can be read later
    aggregated: bool = False


def _entry(lo: int, hi: int, tf_ms: int, ts: np.ndarray, values: np.ndarray,
           columns: tuple[str, ...], close_time: np.ndarray | None = None,
           whole: bool = True, aggregated: bool = False) -> _Entry:
    """Hold read-only ``ts`` and ``values``, with their gap-free flag."""
    ts.flags.writeable = False
    values.flags.writeable = False
    n = len(ts)
    gap_free = n < 2 or bool(np.all(np.diff(ts) == tf_ms))
    first = int(ts[0]) if n else lo
    late = None
    if close_time is not None and np.any(close_time != ts + tf_ms):
        late = np.asarray(close_time, dtype=np.int64)
        late.flags.writeable = False
    return _Entry(lo, hi, ts, values, columns, first, tf_ms if gap_free else 0, tf_ms, late, whole, aggregated)


class CandleCache:
    """Rows of ``ohlcv_data`` held as numpy columns, per (symbol, timeframe).

    Parameters
    ----------
    storage
        A :class:`~ettlib.store.DuckDBStorage` (or anything with ``read_candles``
        or ``con``), or a DuckDB connection.
    clock
        Optional; when set, :meth:`window` refuses ranges not yet knowable.
    columns
        The columns to load up front (default: every candle column); others
        are loaded on first use by :meth:`window`.
    chunk_rows
        Candles fetched per query while loading.
    """

    def __init__(self, storage, *, clock=None, columns: Sequence[str] = CANDLE_COLUMNS,
                 chunk_rows: int = DEFAULT_CHUNK_ROWS):
        columns = _check_columns(dict.fromkeys(columns))
        if isinstance(chunk_rows, bool) or not isinstance(chunk_rows, int) or chunk_rows < 1:
            raise ConfigError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
        self.storage = storage
        self.clock = clock
        self.columns = columns
        self.chunk_rows = chunk_rows
        self._entries: dict[tuple[str, str], _Entry] = {}

    # -- loading -------------------------------------------------------------

    def load(self, symbol: str, timeframe: str, start: int, end: int) -> CandleArrays:
        """Load the rows with open time in ``[start, end]`` (replacing that key's rows).

        Reads DuckDB in chunks of ``chunk_rows`` candles straight into one
        array per stream; returns what it loaded (read-only arrays: the
        caller asked the store for exactly these rows).
        """
        validate_timeframe(timeframe)
        start, end = int(start), int(end)
        if start > end:
            raise ConfigError(f"start {start} is after end {end}")
        rows = read_candle_rows(self.storage, symbol, timeframe, start, end, self.columns,
                                chunk_rows=self.chunk_rows)
        entry = self._entries[(symbol, timeframe)] = _entry(
            start, end, timeframe_ms(timeframe), rows.timestamps, rows.values, self.columns)
        return CandleArrays(entry.timestamps, entry.values, entry.columns)

    def _add_columns(self, symbol: str, timeframe: str, wanted: Sequence[str]) -> _Entry:
        """Columns not held yet, for a stream's whole covered range (once): read, or computed."""
        entry = self._entries[(symbol, timeframe)]
        missing = tuple(c for c in wanted if c not in entry.columns)
        if entry.aggregated:
            raise ConfigError(
                f"{symbol} {timeframe} candles are aggregated by the replay, and its indicator columns "
                f"{list(missing)} are computed only when the replay starts with them: name them in the "
                "session's columns= (the engine's cache_columns=)")
        rows = read_candle_rows(self.storage, symbol, timeframe, entry.lo, entry.hi, missing,
                                chunk_rows=self.chunk_rows)
        if not np.array_equal(rows.timestamps, entry.timestamps):
            raise StoreError(f"ohlcv_data rows of {symbol} {timeframe} changed since they were cached")
        values = np.hstack([entry.values, rows.values])
        self._entries[(symbol, timeframe)] = _entry(
            entry.lo, entry.hi, entry.tf_ms, entry.timestamps, values, entry.columns + missing,
            entry.late_close, entry.whole)
        return self._entries[(symbol, timeframe)]

    def put(self, symbol: str, timeframe: str, start: int, end: int, arrays: CandleArrays) -> None:
        """Hold ``arrays`` as the rows of ``[start, end]`` (e.g. rows read elsewhere)."""
        ts = np.array(arrays.timestamps, dtype=np.int64)
        values = np.array(arrays.values, dtype=np.float64)
        self._entries[(symbol, validate_timeframe(timeframe))] = _entry(
            int(start), int(end), timeframe_ms(timeframe), ts, values, tuple(arrays.columns))

    def extend(self, symbol: str, timeframe: str, start: int, end: int, *, keep_from: int) -> CandleArrays:
        """Read the stored rows of ``[start, end]`` (just after what is held) and hold them too.

        Rows opened before ``keep_from`` are dropped: a replay holds only what
        windows can still ask for.  Returns the rows read (read-only), with
        every column the stream holds.
        """
        validate_timeframe(timeframe)
        old = self._entries.get((symbol, timeframe))
        columns = self.columns if old is None else old.columns
        rows = read_candle_rows(self.storage, symbol, timeframe, int(start), int(end), columns,
                                chunk_rows=self.chunk_rows)
        ts, values = rows.timestamps, rows.values
        lo = int(start)
        whole = True
        if old is not None:
            k = int(np.searchsorted(old.timestamps, keep_from, "left"))
            ts = np.concatenate((old.timestamps[k:], ts))
            values = np.concatenate((old.values[k:], values))
            lo, whole = (max(old.lo, int(keep_from)), False) if k else (old.lo, old.whole)
        entry = self._entries[(symbol, timeframe)] = _entry(lo, int(end), timeframe_ms(timeframe), ts, values,
                                                            columns, whole=whole)
        n = len(rows)
        return CandleArrays(entry.timestamps[len(ts) - n:], entry.values[len(ts) - n:], columns)

    def extend_aggregated(self, symbol: str, timeframe: str, start: int, end: int, candles, *,
                          keep_from: int) -> None:
        """Hold the replay's own ``timeframe`` candles aggregated from the base candles of ``[start, end]``.

        ``candles`` (an :class:`~ettlib.replay.aggregate.AggregatedCandles`)
        continue the stream held so far.  When the cache's columns name any
        indicator, every indicator column is computed, continuing the held
        rows (:func:`ettlib.store.indicators.continue_indicators`); else the
        stream holds OHLCV only (computing them costs the replay time).
        Rows opened before ``keep_from`` are dropped, unless a later
        indicator update still needs them.
        """
        key = (symbol, validate_timeframe(timeframe))
        tf_ms = timeframe_ms(timeframe)
        columns = CANDLE_COLUMNS if any(c in INDICATOR_COLUMNS for c in self.columns) else OHLCV_COLUMNS
        old = self._entries.get(key)
        if old is None:
            old = _entry(int(start), int(start), tf_ms, np.empty(0, np.int64), np.empty((0, len(columns))),
                         columns)
        new = {"open": candles.open, "high": candles.high, "low": candles.low, "close": candles.close,
               "volume": candles.volume}
        rows = [new[c] for c in OHLCV_COLUMNS]
        needed = None
        if columns is CANDLE_COLUMNS:
            from ettlib.store.indicators import continue_indicators, margin_start

            margin = {c: old.values[:, k] for k, c in enumerate(old.columns)}
            indicators = continue_indicators(margin, new, whole=old.whole)
            rows += [indicators[c] for c in INDICATOR_COLUMNS]
        values = np.concatenate((old.values, np.column_stack(rows)))
        ts = np.concatenate((old.timestamps, candles.timestamp))
        old_close = old.timestamps + tf_ms if old.late_close is None else old.late_close
        close = np.concatenate((old_close, candles.close_time))
        drop = int(np.searchsorted(ts, keep_from, "left"))
        if columns is CANDLE_COLUMNS:
            needed = margin_start(values[:, columns.index("close")])  # what the next update reads
            drop = min(drop, 0 if needed is None else needed)
        lo = max(old.lo, int(ts[drop - 1]) + 1) if drop else old.lo
        self._entries[key] = _entry(lo, int(end), tf_ms, ts[drop:], values[drop:], columns, close[drop:],
                                    whole=old.whole and drop == 0, aggregated=True)

    # -- reading -------------------------------------------------------------

    def covers(self, symbol: str, timeframe: str, start: int, end: int) -> bool:
        """True when ``[start, end]`` lies inside a loaded range."""
        entry = self._entries.get((symbol, timeframe))
        return entry is not None and entry.lo <= start and end <= entry.hi

    def window(self, symbol: str, timeframe: str, start: int, end: int,
               columns: Sequence[str] | None = None) -> CandleArrays | None:
        """The rows with open time in ``[start, end]`` as array slices, or None.

        ``None`` when the range is not held.  Columns not held yet are loaded
        from DuckDB for the stream's whole range on first use.  Raises
        :class:`~ettlib.errors.LookAheadError` when a clock is attached and the
        candle opened at ``end`` closes after ``clock.now()``.
        """
        rows = self.window_values(symbol, timeframe, start, end, columns)
        if rows is None:
            return None
        held = self._entries[(symbol, timeframe)].columns
        return CandleArrays(rows[0], rows[1], held if columns is None else _check_columns(columns))

    def window_values(self, symbol: str, timeframe: str, start: int, end: int,
                      columns: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray] | None:
        """:meth:`window`'s ``(timestamps, values)``, or None: the same rows, checks and errors.

        The hot path of :meth:`~ettlib.coordinator.InferenceTrainingCoordinator.get_inference_data`
        (no wrapper object is built).
        """
        entry = self._entries.get((symbol, timeframe))
        if type(start) is not int or type(end) is not int:
            start, end = int(start), int(end)
        if start > end:
            raise ConfigError(f"start {start} is after end {end}")
        if self.clock is not None:  # judged on the range asked for, held or not
            tf_ms = timeframe_ms(timeframe) if entry is None else entry.tf_ms
            now = self.clock.now()
            if now is None or end + tf_ms > now:
                raise LookAheadError(
                    f"window {symbol} {timeframe} [{start}, {end}] ends with a candle "
                    f"closing at {end + tf_ms}, after now ({now})"
                )
        if entry is None or start < entry.lo or end > entry.hi:
            if entry is None:
                validate_timeframe(timeframe)
            return None
        # the rows [i, j) with open time in [start, end]
        step = entry.step
        if step:  # no gaps: arithmetic on Python ints
            n = len(entry.timestamps)
            i = -((entry.first - start) // step)  # ceil((start - first) / step)
            j = (end - entry.first) // step + 1
            i = 0 if i < 0 else (n if i > n else i)
            j = i if j < i else (n if j > n else j)
        else:
            i = int(np.searchsorted(entry.timestamps, start, "left"))
            j = int(np.searchsorted(entry.timestamps, end, "right"))
        late = entry.late_close
        if late is not None and j > i and self.clock is not None and late[j - 1] > self.clock.now():
            raise LookAheadError(
                f"window {symbol} {timeframe} [{start}, {end}] ends with a candle of a gapped bucket "
                f"that became known at {int(late[j - 1])}, after now ({self.clock.now()})")
        if columns is None or columns is entry.columns or columns == entry.columns:  # held: checked
            return entry.timestamps[i:j], entry.values[i:j]
        columns = _check_columns(columns)
        if any(c not in entry.columns for c in columns):
            entry = self._add_columns(symbol, timeframe, columns)  # lazily, once per column
        if columns == entry.columns:
            return entry.timestamps[i:j], entry.values[i:j]
        index = [entry.columns.index(c) for c in columns]
        return entry.timestamps[i:j], entry.values[i:j, index]

    def clear(self) -> None:
        """Forget every row held (a replay that starts over)."""
        self._entries.clear()

    def __contains__(self, key: tuple[str, str]) -> bool:
        return key in self._entries

    def __repr__(self) -> str:
        return f"CandleCache({len(self._entries)} streams, columns={len(self.columns)})"


def ohlcv_columns_first(columns: Sequence[str]) -> tuple[str, ...]:
    """``columns`` with the OHLCV columns guaranteed (first, in order)."""
    return OHLCV_COLUMNS + tuple(c for c in columns if c not in OHLCV_COLUMNS)
