"""Higher timeframes aggregated from a base timeframe, inside DuckDB.

Buckets are aligned to the Unix epoch and labelled by their *open* time
(``bucket = timestamp - timestamp % timeframe_ms``, the same as pandas'
``resample(rule, label="left", closed="left", origin="epoch")``).  Each bucket
takes the first open, the highest high, the lowest low, the last close and
the sum of volumes of the base candles it holds.

Only **complete** buckets are returned: a bucket is complete once the base
series has reached its close time, i.e. ``bucket + timeframe_ms <=
last_base_timestamp + base_ms``.  A bucket with missing base candles (a gap)
is still complete -- and aggregated from the candles it has -- when a base
candle at or after its close is present, as DESIGN.md says; a bucket with no
base candle at all produces no row.  So the trailing, still-forming bucket is
left out, and appears when its last base candle arrives.

Examples
--------
>>> import duckdb, pandas as pd
>>> from ettlib.schema import ensure_schema
>>> con = duckdb.connect(); _ = ensure_schema(con)
>>> base = pd.DataFrame({"symbol": "X", "timeframe": "1m", "timestamp": [0, 60_000, 120_000, 180_000],
...                      "open": [1.0, 2, 3, 4], "high": [2.0, 3, 4, 5], "low": [0.5, 1, 2, 3],
...                      "close": [2.0, 3, 4, 4.5], "volume": [1.0, 1, 1, 1]})
>>> con.register("base", base)  # doctest: +ELLIPSIS
<...>
>>> _ = con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM base")
>>> out = resample_candles(con, "X", "1m", "3m")
>>> out["timestamp"].tolist(), out["open"].tolist(), out["high"].tolist(), out["close"].tolist()
([0], [1.0], [4.0], [4.0])
"""

from __future__ import annotations

import numpy as np

from ettlib.schema import OHLCV_COLUMNS
from ettlib.timeframes import check_higher, timeframe_ms

__all__ = ["resample_candles"]

_RESAMPLE_SQL = """
WITH base AS (
    SELECT timestamp - timestamp % $tf AS bucket, timestamp, open, high, low, close, volume
    FROM ohlcv_data WHERE symbol = $symbol AND timeframe = $base
)
SELECT bucket AS timestamp,
       arg_min(open, timestamp) AS open,
       max(high) AS high,
       min(low) AS low,
       arg_max(close, timestamp) AS close,
       fsum(volume) AS volume
FROM base
GROUP BY bucket
HAVING bucket + $tf <= (SELECT max(timestamp) FROM base) + $base_ms
ORDER BY bucket
"""


def resample_candles(con, symbol: str, base_timeframe: str, timeframe: str) -> dict:
    """Complete ``timeframe`` candles aggregated from ``base_timeframe`` rows.

    Parameters
    ----------
    con
        A DuckDB connection holding ``ohlcv_data``.
    symbol, base_timeframe, timeframe
        ``timeframe`` must be a whole multiple of ``base_timeframe``.

    Returns
    -------
    dict
        ``timestamp`` (``int64``) and the OHLCV columns (``float64``) as
        numpy arrays, sorted by open time.  ``fsum`` (compensated summation)
        makes volumes independent of DuckDB's thread scheduling.
    """
    check_higher(base_timeframe, timeframe)
    result = con.execute(
        _RESAMPLE_SQL,
        {
            "symbol": symbol,
            "base": base_timeframe,
            "tf": timeframe_ms(timeframe),
            "base_ms": timeframe_ms(base_timeframe),
        },
    ).fetchnumpy()
    out = {"timestamp": np.asarray(result["timestamp"], dtype=np.int64)}
    for column in OHLCV_COLUMNS:
        out[column] = np.asarray(result[column], dtype=np.float64)
    return out
