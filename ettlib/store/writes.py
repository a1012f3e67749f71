"""Writing candles: validated rows into ``ohlcv_data``, with their indicators, atomically.

:func:`write_candles` is the one write path of candles: new rows are
inserted, identical ones left alone (ingesting a file twice adds nothing),
differing ones refused -- naming the first one in time -- unless
``replace``; the indicators are recomputed from the first touched candle on;
all in one transaction.  :func:`resample_candles` aggregates stored candles
by the replay's own rule and writes them through it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ettlib.errors import ConfigError, DataValidationError
from ettlib.store.db import registered, transaction
from ettlib.store.validation import ValidCandles
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.symbols import validate_symbol
from ettlib.timeframes import check_higher, timeframe_ms
from ettlib.times import format_ms

__all__ = ["IngestReport", "write_candles", "resample_candles"]


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



def write_candles(con, candles: ValidCandles, symbol: str, timeframe: str, *, replace: bool) -> IngestReport:
    """Store validated ``candles`` on ``con``, with their indicators, in one transaction."""
    from ettlib.store.indicator_table import update_indicators

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
            _raise_conflict(con, candles, symbol, timeframe, int(changed_ts.min()))
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

def _raise_conflict(con, candles: ValidCandles, symbol: str, timeframe: str, t: int) -> None:
    """Name the first candle (in time) that differs from the stored one."""
    stored = con.execute(
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


def resample_candles(storage, symbol: str, base_timeframe: str, timeframe: str) -> IngestReport:
    """Aggregate ``storage``'s ``base_timeframe`` candles into ``timeframe`` and store them.

    See :meth:`~ettlib.store.storage.DuckDBStorage.resample`.
    """
    symbol = validate_symbol(symbol)
    check_higher(base_timeframe, timeframe)
    if timeframe == base_timeframe:
        raise ConfigError(f"cannot resample {base_timeframe!r} into itself")
    from ettlib.replay.aggregate import aggregate_candles

    base = storage.read_candles(symbol, base_timeframe, columns=OHLCV_COLUMNS)
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
    return write_candles(storage.con, candles, symbol, timeframe, replace=True)
