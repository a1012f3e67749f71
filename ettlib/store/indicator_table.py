"""The indicator columns of ``ohlcv_data``: computed from the stored candles and written back.

:func:`update_indicators` recomputes one series' indicators
(:mod:`ettlib.store.indicators`: TA-Lib's definitions), all of it or only the
rows from ``since`` on, continuing the states stored in the row before.  The
caller owns the transaction.
"""

from __future__ import annotations

import duckdb
import numpy as np
import pyarrow as pa

from ettlib.store.db import registered
from ettlib.store.indicators import (
    RSI_MARGIN,
    STATE_COLUMNS,
    WARMUP,
    compute_indicators,
    continue_indicators,
    margin_start,
)
from ettlib.store.schema import INDICATOR_COLUMNS
from ettlib.symbols import validate_symbol
from ettlib.timeframes import validate_timeframe

__all__ = ["update_indicators"]

_READ_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume") + STATE_COLUMNS
# NULL indicators come back as NaN; identifiers come only from the tuples above.
_SELECT = ", ".join(
    c if c not in STATE_COLUMNS else f"coalesce({c}, 'NaN'::DOUBLE) AS {c}" for c in _READ_COLUMNS
)
_UPDATE_VIEW = "_ettlib_indicator_update"


def _read(con, where: str, params: list, order: str = "", limit: int | None = None) -> dict[str, np.ndarray]:
    """Rows of one series as arrays; ``where`` and ``order`` are fixed SQL fragments."""
    sql = (
        f"SELECT {_SELECT} FROM ohlcv_data WHERE symbol = ? AND timeframe = ? {where} "
        f"ORDER BY timestamp {order}"
    )
    if limit is not None:
        sql += " LIMIT ?"
        params = params + [limit]
    rows = con.execute(sql, params).fetchnumpy()
    out = {c: np.asarray(rows[c]) for c in _READ_COLUMNS}
    if order == "DESC":
        out = {c: a[::-1].copy() for c, a in out.items()}
    return out


def _write(con, symbol: str, timeframe: str, timestamps: np.ndarray, ind: dict[str, np.ndarray]) -> int:
    if len(timestamps) == 0:
        return 0
    table = pa.table(
        {"timestamp": pa.array(timestamps, type=pa.int64())}
        | {c: pa.array(ind[c], type=pa.float64(), from_pandas=True) for c in INDICATOR_COLUMNS}
    )
    assignments = ", ".join(f"{c} = u.{c}" for c in INDICATOR_COLUMNS)
    with registered(con, _UPDATE_VIEW, table):
        result = con.execute(
            f"UPDATE ohlcv_data SET {assignments} FROM {_UPDATE_VIEW} AS u "
            "WHERE ohlcv_data.symbol = ? AND ohlcv_data.timeframe = ? "
            "AND ohlcv_data.timestamp = u.timestamp",
            [symbol, timeframe],
        ).fetchone()
    return int(result[0]) if result else len(timestamps)


def update_indicators(
    con: duckdb.DuckDBPyConnection, symbol: str, timeframe: str, since: int | None = None
) -> int:
    """(Re)compute and store the indicator columns of one symbol and timeframe.

    Parameters
    ----------
    con
        A DuckDB connection whose ``ohlcv_data`` has the current schema.  The
        caller owns the transaction: nothing here begins or commits one.
    symbol, timeframe
        The series to update; other series are never touched.
    since
        Open time (ms) of the first row to recompute: every row at or after
        it is updated, rows before it are read but kept.  ``None`` recomputes
        the whole series.  Pass the earliest open time an ingest added or
        changed; the rows before it must hold indicators from an earlier call.
        Where they do not (NULL where a value is due), the whole series is
        recomputed.

    Returns
    -------
    int
        Number of rows updated.

    Notes
    -----
    The incremental path equals a full recomputation within rounding (about
    1e-15 relative for the filters continued from stored states, and below
    1e-12 for RSI by the margin argument of :mod:`ettlib.store.indicators`).

    Examples
    --------
    >>> import duckdb, numpy as np, pandas as pd
    >>> from ettlib.store.schema import ensure_schema
    >>> con = duckdb.connect()
    >>> _ = ensure_schema(con)
    >>> close = 100 + np.sin(np.arange(60) / 5)
    >>> df = pd.DataFrame({"symbol": "ETH/USDT", "timeframe": "1m",
    ...     "timestamp": np.arange(60) * 60_000, "open": close, "high": close + 1,
    ...     "low": close - 1, "close": close, "volume": 1.0})
    >>> _ = con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM df")
    >>> update_indicators(con, "ETH/USDT", "1m")
    60
    >>> con.execute("SELECT count(macd) FROM ohlcv_data").fetchone()[0] == 60 - WARMUP["macd"]
    True
    >>> update_indicators(con, "ETH/USDT", "1m", since=50 * 60_000)
    10
    """
    validate_timeframe(timeframe)
    validate_symbol(symbol)
    if since is None:
        return _update_all(con, symbol, timeframe)
    since = int(since)
    new = _read(con, "AND timestamp >= ?", [symbol, timeframe, since])
    if len(new["timestamp"]) == 0:
        return 0
    limit = 4 * RSI_MARGIN
    while True:
        margin = _read(con, "AND timestamp < ?", [symbol, timeframe, since], "DESC", limit)
        at_start = len(margin["timestamp"]) < limit
        start = None if at_start else margin_start(margin["close"])
        if at_start or start is not None:
            break
        limit *= 4
    states_known = len(margin["timestamp"]) > 0 and all(
        np.isfinite(margin[c][-1]) for c in STATE_COLUMNS
    )
    if not states_known and len(margin["timestamp"]) > WARMUP["macd"]:
        return _update_all(con, symbol, timeframe)
    if not at_start:
        margin = {c: a[start:] for c, a in margin.items()}
    return _write(con, symbol, timeframe, new["timestamp"], continue_indicators(margin, new, whole=at_start))


def _update_all(con, symbol: str, timeframe: str) -> int:
    rows = _read(con, "", [symbol, timeframe])
    ind = compute_indicators(rows["open"], rows["high"], rows["low"], rows["close"], rows["volume"])
    return _write(con, symbol, timeframe, rows["timestamp"], ind)
