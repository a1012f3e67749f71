"""Checking candles row by row: columns, numbers, time units, the timeframe grid, prices.

:func:`validate_candles` is what every source goes through
(:mod:`ettlib.store.ingest` reads the files; its module doc lists every
check and the time-unit rule); the result is :class:`ValidCandles`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ettlib.errors import DataValidationError
from ettlib.store.schema import INDICATOR_COLUMNS, OHLCV_COLUMNS
from ettlib.timeframes import TIMEFRAMES, timeframe_ms

__all__ = [
    "REQUIRED_COLUMNS",
    "TIME_UNITS",
    "ValidCandles",
    "validate_candles",
    "epoch_ticks",
    "numeric_column",
    "check_finite",
    "check_integral",
]

#: Columns every generic source must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp",) + OHLCV_COLUMNS

# Integer epoch times below _MAX_MS are milliseconds (up to the year 5138),
# below _MAX_US microseconds, above nanoseconds (see "Time units").
_MAX_MS = 100_000_000_000_000
_MAX_US = 100_000_000_000_000_000
#: Time units by the magnitude class of their values: (name, nanoseconds per tick).
TIME_UNITS = (("ms", 1_000_000), ("µs", 1_000), ("ns", 1))



@dataclass(frozen=True, slots=True)
class ValidCandles:
    """Validated candles of one source, sorted by open time.

    Attributes
    ----------
    timestamps
        ``int64[n]`` open times in epoch ms, strictly increasing.
    ohlcv
        ``dict`` of ``float64[n]`` arrays keyed by :data:`OHLCV_COLUMNS`.
    rows
        ``int64[n]``: the 1-based source row of each sorted candle.
    source
        A name for messages (the file path, or ``"DataFrame"``).
    gaps
        Number of holes (runs of missing candles) between the first and the
        last candle.
    missing_candles
        Number of missing candles in those holes.
    """

    timestamps: np.ndarray
    ohlcv: dict
    rows: np.ndarray
    source: str
    gaps: int
    missing_candles: int

    def __len__(self) -> int:
        return len(self.timestamps)

    def frame(self) -> pd.DataFrame:
        """The candles as a DataFrame (``timestamp`` + OHLCV)."""
        return pd.DataFrame({"timestamp": self.timestamps, **self.ohlcv})


def epoch_ticks(values: np.ndarray, column: str, source: str, label: str | None = None, *,
                 whole_ms: bool = True) -> tuple[np.ndarray, int]:
    """Integer epoch times and the index of their unit in :data:`TIME_UNITS` (see "Time units").

    Refuses a negative time, a value whose magnitude says another unit than
    the column's, and (``whole_ms``) a microsecond or nanosecond time that is
    not a whole millisecond; ``label`` names the column in messages.

    >>> ticks, unit = epoch_ticks(np.array([1_700_000_000_000_000, 1_700_000_060_000_000]), "t", "f")
    >>> TIME_UNITS[unit][0]
    'µs'
    """
    label = label or column
    if values.dtype.kind == "f":
        if np.any(np.abs(values) >= 2.0**62):
            i = int(np.flatnonzero(np.abs(values) >= 2.0**62)[0])
            raise DataValidationError("timestamp out of range", source=source, row=i + 1,
                                      column=label, value=float(values[i]))
        values = values.astype(np.int64)
    values = values.astype(np.int64, copy=False)
    bad = np.flatnonzero(values < 0)
    if bad.size:
        i = bad[0]
        raise DataValidationError("timestamp must be an epoch time >= 0 (this is a negative time)",
                                  source=source, row=i + 1, column=label, value=int(values[i]))
    magnitude = (values >= _MAX_MS).astype(np.int8) + (values >= _MAX_US)
    unit = int(np.sort(magnitude)[len(magnitude) // 2])  # the median value's unit
    bad = np.flatnonzero(magnitude != unit)
    if bad.size:
        i = bad[0]
        raise DataValidationError(
            f"this value looks like epoch {TIME_UNITS[magnitude[i]][0]} while the column's values look "
            f"like {TIME_UNITS[unit][0]}; a time column holds one unit",
            source=source, row=i + 1, column=label, value=int(values[i]))
    per_ms = 1_000_000 // TIME_UNITS[unit][1]
    bad = np.flatnonzero(values % per_ms != 0) if whole_ms else ()
    if len(bad):
        i = bad[0]
        raise DataValidationError(
            f"{TIME_UNITS[unit][0]} timestamp is not a whole millisecond",
            source=source, row=i + 1, column=label, value=int(values[i]))
    return values, unit


def numeric_column(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
    """``float64`` (or ``int64``) values of ``column``; non-numeric cells raise."""
    series = frame[column]
    if pd.api.types.is_bool_dtype(series):
        raise DataValidationError("column is boolean, not numeric", source=source, column=column)
    if pd.api.types.is_numeric_dtype(series):
        if pd.api.types.is_integer_dtype(series) and not isinstance(series.dtype, pd.api.extensions.ExtensionDtype):
            return series.to_numpy()
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    coerced = pd.to_numeric(series, errors="coerce")
    text = series.astype(object)
    blank = text.isna() | text.map(lambda v: isinstance(v, str) and v.strip() == "")
    bad = np.flatnonzero(coerced.isna().to_numpy() & ~blank.to_numpy())
    if bad.size:
        i = bad[0]
        raise DataValidationError("value is not a number", source=source, row=i + 1,
                                  column=column, value=series.iloc[i])
    return coerced.to_numpy(dtype=np.float64, na_value=np.nan)


def check_finite(values: np.ndarray, column: str, source: str, label: str | None = None) -> None:
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = bad[0]
            what = "missing (empty or NaN)" if np.isnan(values[i]) else "infinite"
            raise DataValidationError(f"value is {what}", source=source, row=i + 1,
                                      column=label or column, value=None if np.isnan(values[i]) else float(values[i]))


def check_integral(values: np.ndarray, column: str, source: str) -> None:
    if values.dtype.kind == "f":
        bad = np.flatnonzero(values != np.floor(values))
        if bad.size:
            i = bad[0]
            raise DataValidationError("timestamp is not a whole number of milliseconds",
                                      source=source, row=i + 1, column=column, value=float(values[i]))


def _all_iso_datetimes(series: pd.Series) -> bool:
    """True if every cell is an ISO-8601 date-time text ("2024-01-01 00:05:00", with or
    without zone; no zone means UTC)."""
    text = series.astype(object)
    if not text.map(lambda v: isinstance(v, str) and len(v) >= 10 and v[4:5] == "-").all():
        return False
    try:
        pd.to_datetime(series, utc=True, format="ISO8601")
    except (ValueError, TypeError):
        return False
    return True


def _timestamps_ms(frame: pd.DataFrame, source: str, column_label: str) -> np.ndarray:
    series = frame["timestamp"]
    if pd.api.types.is_datetime64_any_dtype(series):
        if series.dt.tz is not None:
            series = series.dt.tz_convert("UTC").dt.tz_localize(None)
        missing = np.flatnonzero(series.isna().to_numpy())
        if missing.size:
            raise DataValidationError("value is missing", source=source, row=missing[0] + 1,
                                      column=column_label)
        as_ns = series.to_numpy().astype("datetime64[ns]").astype(np.int64)
        bad = np.flatnonzero(as_ns % 1_000_000 != 0)
        if bad.size:
            i = bad[0]
            raise DataValidationError("timestamp is not a whole millisecond", source=source,
                                      row=i + 1, column=column_label, value=str(series.iloc[i]))
        return as_ns // 1_000_000
    if not pd.api.types.is_numeric_dtype(series) and _all_iso_datetimes(series):
        return _timestamps_ms(
            frame.assign(timestamp=pd.to_datetime(series, utc=True, format="ISO8601")),
            source, column_label)
    values = numeric_column(frame, "timestamp", source)
    check_finite(values, "timestamp", source, column_label)
    check_integral(values, column_label, source)
    ticks, unit = epoch_ticks(values, "timestamp", source, column_label)
    return ticks // (1_000_000 // TIME_UNITS[unit][1])


def _refuse_coarse(steps: np.ndarray, timeframe: str, source: str) -> None:
    """Refuse candles that are never adjacent: every step a multiple k > 1 of the timeframe.

    ``steps`` are the gaps between sorted open times, in candles; at least
    two are needed (three candles) to tell.

    >>> _refuse_coarse(np.array([5, 5, 10]), "1m", "f.csv")
    Traceback (most recent call last):
    ...
    ettlib.errors.DataValidationError: f.csv: every candle opens a whole multiple of 5 x 1m after the previous one (3 gaps, 17 candles missing): this looks like 5m data, not 1m; ingest it with timeframe 5m, or pass allow_sparse=True (ett data ingest --allow-sparse) to keep it as sparse 1m candles
    >>> _refuse_coarse(np.array([5, 1, 5]), "1m", "f.csv")   # two adjacent candles: gaps
    """
    if len(steps) < 2:
        return
    k = int(np.gcd.reduce(steps))
    if k < 2:
        return
    coarse_ms = k * timeframe_ms(timeframe)
    coarse = next((name for name, ms in TIMEFRAMES.items() if ms == coarse_ms), f"{k} x {timeframe}")
    raise DataValidationError(
        f"every candle opens a whole multiple of {k} x {timeframe} after the previous one "
        f"({len(steps)} gaps, {int(np.sum(steps - 1))} candles missing): "
        f"this looks like {coarse} data, not {timeframe}; ingest it with timeframe {coarse}, "
        f"or pass allow_sparse=True (ett data ingest --allow-sparse) to keep it as sparse "
        f"{timeframe} candles",
        source=source,
    )


def validate_candles(
    frame: pd.DataFrame,
    timeframe: str,
    *,
    source: str = "DataFrame",
    timestamp_column: str = "timestamp",
    allow_sparse: bool = False,
) -> ValidCandles:
    """Check a ``timestamp`` + OHLCV frame row by row; return it sorted.

    ``frame``'s row ``i`` (0-based position) is reported as row ``i + 1``.
    See the module docstring for the checks.
    """
    tf_ms = timeframe_ms(timeframe)
    if len(frame.columns) == 0 and len(frame) == 0:
        raise DataValidationError("no columns and no rows", source=source)
    lowered = [str(c).strip().lower() for c in frame.columns]
    seen: set[str] = set()
    for original, low in zip(frame.columns, lowered):
        if low in seen:
            raise DataValidationError("column appears twice", source=source, column=str(original))
        seen.add(low)
    missing = [c for c in REQUIRED_COLUMNS if c not in seen]
    if missing:
        raise DataValidationError(
            f"missing required column(s) {', '.join(missing)}; "
            f"expected {', '.join(REQUIRED_COLUMNS)}",
            source=source, column=missing[0],
        )
    extra = [o for o, low in zip(frame.columns, lowered)
             if low not in REQUIRED_COLUMNS and low not in INDICATOR_COLUMNS]
    if extra:
        raise DataValidationError(
            f"unexpected column(s) {', '.join(map(str, extra))}; expected "
            f"{', '.join(REQUIRED_COLUMNS)} (indicator columns are accepted and recomputed)",
            source=source, column=str(extra[0]),
        )
    frame = frame.set_axis(lowered, axis=1)
    if len(frame) == 0:
        raise DataValidationError("no data rows", source=source)

    timestamps = _timestamps_ms(frame, source, timestamp_column)
    ohlcv = {}
    for col in OHLCV_COLUMNS:
        values = numeric_column(frame, col, source).astype(np.float64, copy=False)
        check_finite(values, col, source)
        ohlcv[col] = values

    bad = np.flatnonzero(timestamps % tf_ms != 0)
    if bad.size:
        i = bad[0]
        raise DataValidationError(
            f"timestamp is not on the {timeframe} grid (open times are multiples of "
            f"{tf_ms} ms since the epoch)",
            source=source, row=i + 1, column=timestamp_column, value=int(timestamps[i]),
        )
    for col in ("open", "high", "low", "close"):
        bad = np.flatnonzero(ohlcv[col] <= 0)
        if bad.size:
            i = bad[0]
            raise DataValidationError("price must be positive", source=source, row=i + 1,
                                      column=col, value=float(ohlcv[col][i]))
    top = np.maximum(ohlcv["open"], ohlcv["close"])
    bottom = np.minimum(ohlcv["open"], ohlcv["close"])
    bad = np.flatnonzero(ohlcv["high"] < top)
    if bad.size:
        i = bad[0]
        raise DataValidationError(f"high is below max(open, close) = {float(top[i])!r}",
                                  source=source, row=i + 1, column="high",
                                  value=float(ohlcv["high"][i]))
    bad = np.flatnonzero(ohlcv["low"] > bottom)
    if bad.size:
        i = bad[0]
        raise DataValidationError(f"low is above min(open, close) = {float(bottom[i])!r}",
                                  source=source, row=i + 1, column="low",
                                  value=float(ohlcv["low"][i]))
    bad = np.flatnonzero(ohlcv["volume"] < 0)
    if bad.size:
        i = bad[0]
        raise DataValidationError("volume is negative", source=source, row=i + 1,
                                  column="volume", value=float(ohlcv["volume"][i]))

    order = np.argsort(timestamps, kind="stable")
    sorted_ts = timestamps[order]
    dup = np.flatnonzero(sorted_ts[1:] == sorted_ts[:-1])
    if dup.size:
        # Report the first row (in source order) that repeats an earlier one.
        later = np.maximum(order[dup], order[dup + 1])
        k = int(np.argmin(later))
        first_row = int(np.minimum(order[dup], order[dup + 1])[k]) + 1
        raise DataValidationError(
            f"duplicate timestamp (same as row {first_row})",
            source=source, row=int(later[k]) + 1, column=timestamp_column,
            value=int(sorted_ts[dup[k]]),
        )
    steps = np.diff(sorted_ts) // tf_ms
    holes = steps > 1
    if not allow_sparse:
        _refuse_coarse(steps, timeframe, source)
    return ValidCandles(
        timestamps=np.ascontiguousarray(sorted_ts),
        ohlcv={c: np.ascontiguousarray(v[order]) for c, v in ohlcv.items()},
        rows=(order + 1).astype(np.int64),
        source=source,
        gaps=int(np.count_nonzero(holes)),
        missing_candles=int(np.sum(steps[holes] - 1)),
    )
