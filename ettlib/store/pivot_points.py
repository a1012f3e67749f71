"""Pivots into the store: ``pivot_points`` rows from a detected :class:`~ettlib.replay.pivots.PivotTable`."""

from __future__ import annotations

import secrets

import pyarrow as pa

from ettlib.errors import ConfigError
from ettlib.replay.pivots import PivotTable
from ettlib.store.db import registered, transaction
from ettlib.symbols import validate_symbol
from ettlib.timeframes import validate_timeframe

__all__ = ["store_pivots"]


def store_pivots(con, symbol: str, timeframe: str, table: PivotTable, *, n: int = 1) -> int:
    """Insert ``table``, detected with ``n`` bars each side, into ``pivot_points``; return the new rows.

    ``n`` is stored with every row and is part of the key ``(symbol,
    timeframe, n, timestamp, pivot_type)``: the pivots of several ``n``
    coexist (each keeps its own levels and confirmation times).  Idempotent:
    rows already stored under that key are left as they are, so storing the
    same table twice adds nothing.  One parameterized statement from a
    registered Arrow table, in a transaction (joining the caller's if one is
    open).

    Examples
    --------
    >>> import duckdb
    >>> from ettlib.replay.pivots import detect_pivots
    >>> from ettlib.store.schema import ensure_schema
    >>> con = duckdb.connect()
    >>> _ = ensure_schema(con)
    >>> t = detect_pivots([0, 60_000, 120_000], [1.0, 2.0, 1.0], [0.5, 0.5, 0.5], "1m")
    >>> store_pivots(con, "ETH/USDT", "1m", t), store_pivots(con, "ETH/USDT", "1m", t)
    (1, 0)
    >>> con.execute("SELECT n, pivot_type, level, price, confirmed_at FROM pivot_points").fetchall()
    [(1, 'L1H', 1, 2.0, 180000)]
    >>> store_pivots(con, "ETH/USDT", "1m", t, n=2)      # another n: its own rows
    1
    """
    validate_symbol(symbol)
    validate_timeframe(timeframe)
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError(f"n must be a positive int (the bars each side of a level-1 pivot), got {n!r}")
    if not isinstance(table, PivotTable):
        raise ConfigError(f"table must be a PivotTable, got {type(table).__name__}")
    rows = pa.table(
        {
            "timestamp": pa.array(table.timestamp, pa.int64()),
            "price": pa.array(table.price, pa.float64()),
            "pivot_type": pa.array(table.pivot_type.tolist(), pa.string()),
            "level": pa.array(table.level, pa.int32()),
            "strength": pa.array(table.strength, pa.float64()),
            "confirmed_at": pa.array(table.confirmed_at, pa.int64()),
        }
    )
    view = "_ett_pivot_rows_" + secrets.token_hex(6)  # generated, never user text
    with transaction(con), registered(con, view, rows):  # joins the caller's transaction
        added = con.execute(
            "INSERT INTO pivot_points"
            " (symbol, timeframe, n, timestamp, price, pivot_type, level, strength, confirmed_at)"
            " SELECT ?, ?, ?, timestamp, price, pivot_type, level, strength, confirmed_at"
            f" FROM {view} ON CONFLICT DO NOTHING",
            [symbol, timeframe, n],
        ).fetchall()[0][0]
    return int(added)
