"""Reading and validating candle sources before they reach the store.

:func:`read_candles_source` turns a source -- a pandas ``DataFrame``, a CSV
file, a Parquet file or a Binance kline file (plain or zipped) -- into
:class:`ValidCandles`: sorted ``int64`` open times in epoch milliseconds and
``float64`` OHLCV columns, every row checked.  Nothing here touches the
database; :meth:`ettlib.store.DuckDBStorage.ingest` writes the result in one
transaction.

Accepted shapes
---------------
``DataFrame``, CSV (with a header), Parquet
    Columns ``timestamp, open, high, low, close, volume`` (names are
    case-insensitive).  ``timestamp`` is the candle's *open* time as integer
    epoch milliseconds, microseconds or nanoseconds UTC (see "Time units"),
    or date-times (a datetime column, or ISO-8601 text such as
    ``2024-01-01 00:05:00`` in a CSV; no zone means UTC).  The
    indicator columns of :data:`ettlib.store.schema.INDICATOR_COLUMNS` may be
    present (an export of the store); they are **ignored** and recomputed by
    ettlib so that stored indicators always agree with the stored candles.
    Any other column is an error, so a mislabelled file is never half-read.
Binance kline files (``format="binance"``, or detected)
    The 12 columns of Binance's public data dumps (``open_time, open, high,
    low, close, volume, close_time, quote_volume, count,
    taker_buy_base_volume, taker_buy_quote_volume, ignore``), with or without
    a header line, as ``.csv`` or as the ``.zip`` Binance publishes (one CSV
    inside).  ``open_time`` and ``close_time`` each have their own unit
    (Binance spot dumps use microseconds from 2025; a file may give open
    times in microseconds and close times in milliseconds).  ``close_time``
    must be the last tick of the candle -- ``open_time + timeframe`` less one
    unit of ``close_time`` -- which catches a file ingested under the wrong
    timeframe.

Time units
----------
The unit of each integer time column is detected on its own, from the
magnitude of its values: below ``1e14`` milliseconds (up to the year 5138),
below ``1e17`` microseconds, above nanoseconds (both from March 1973 on;
earlier times in those units are taken for milliseconds of a far future and
refused as such).  The column's unit is the one of its median value; a value
of another magnitude is an error naming it (a column never mixes units), and
so is a microsecond or nanosecond time that is not a whole millisecond.

Validation
----------
Each problem raises :class:`~ettlib.errors.DataValidationError` naming the
source, the 1-based data row (header not counted; for a DataFrame, the
position), the column and the value: missing or unexpected columns,
non-numeric values, NaN / inf / empty cells, timestamps that are not whole
milliseconds, negative, implausibly large (microseconds or nanoseconds
given as milliseconds), off the timeframe grid or duplicated, prices that
are not positive, ``high < max(open, close)``, ``low > min(open, close)``,
``high < low``, negative volume, an empty file, a file without data rows, and an
unreadable or corrupt file.  Gaps (missing candles) are allowed and
counted -- but a file in which no two candles are adjacent, every step
between them a whole multiple ``k > 1`` of the timeframe (at least three
candles), looks like data of the coarser timeframe ``k`` times as long
(5m candles given as 1m) and is refused, saying so, unless
``allow_sparse=True`` (``ett data ingest --allow-sparse``).

Examples
--------
>>> import pandas as pd
>>> df = pd.DataFrame({"timestamp": [0, 60_000, 180_000], "open": [1.0, 2, 3],
...                    "high": [2.0, 3, 4], "low": [0.5, 1, 2], "close": [2.0, 3, 3.5],
...                    "volume": [10.0, 0, 5]})
>>> c = read_candles_source(df, "1m")
>>> c.timestamps.tolist(), c.gaps, c.missing_candles
([0, 60000, 180000], 1, 1)
>>> read_candles_source(df.assign(low=[0.5, 2.5, 2]), "1m")
Traceback (most recent call last):
...
ettlib.errors.DataValidationError: DataFrame: row 2, column 'low', value 2.5: low is above min(open, close) = 2.0
"""

from __future__ import annotations

import io
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ettlib.errors import DataValidationError, UnknownNameError
from ettlib.store.schema import INDICATOR_COLUMNS, OHLCV_COLUMNS
from ettlib.timeframes import TIMEFRAMES, timeframe_ms

__all__ = [
    "BINANCE_COLUMNS",
    "FORMATS",
    "REQUIRED_COLUMNS",
    "ValidCandles",
    "read_candles_source",
    "validate_candles",
]

#: Columns every generic source must have.
REQUIRED_COLUMNS: tuple[str, ...] = ("timestamp",) + OHLCV_COLUMNS

#: The 12 columns of a Binance kline file, in file order.
BINANCE_COLUMNS: tuple[str, ...] = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "count",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)

#: Names accepted by ``format=``; ``None`` detects from the suffix and content.
FORMATS: tuple[str, ...] = ("dataframe", "csv", "parquet", "binance")

# Integer epoch times below _MAX_MS are milliseconds (up to the year 5138),
# below _MAX_US microseconds, above nanoseconds (see "Time units").
_MAX_MS = 100_000_000_000_000
_MAX_US = 100_000_000_000_000_000
#: Time units by the magnitude class of their values: (name, nanoseconds per tick).
_UNITS = (("ms", 1_000_000), ("µs", 1_000), ("ns", 1))


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


def read_candles_source(source, timeframe: str, *, format: str | None = None,
                        allow_sparse: bool = False) -> ValidCandles:
    """Read ``source`` and validate every row for ``timeframe``.

    Parameters
    ----------
    source
        A pandas ``DataFrame`` or a path (``str`` / ``os.PathLike``) to a
        ``.csv``, ``.parquet`` / ``.pq`` or ``.zip`` file.
    timeframe
        The candles' timeframe (``"1m"``, ``"1h"``, ...): the grid open
        times must lie on.
    format
        One of :data:`FORMATS`, or ``None`` to detect it.
    allow_sparse
        Accept a file whose candles are never adjacent (see "Validation").

    Raises
    ------
    UnknownNameError
        Unknown ``timeframe`` or ``format``.
    DataValidationError
        Anything wrong with the data (see the module docstring).
    """
    tf_ms = timeframe_ms(timeframe)
    if format is not None and format not in FORMATS:
        raise UnknownNameError("format", format, FORMATS)
    if isinstance(source, pd.DataFrame):
        if format not in (None, "dataframe"):
            raise DataValidationError(
                f"a DataFrame was given but format={format!r}", source="DataFrame"
            )
        frame, name = source, "DataFrame"
        return validate_candles(frame, timeframe, source=name, allow_sparse=allow_sparse)
    if not isinstance(source, (str, os.PathLike)):
        raise DataValidationError(
            f"source must be a pandas DataFrame or a file path, not {type(source).__name__}"
        )
    path = Path(source)
    name = str(source)
    if not path.is_file():
        raise DataValidationError("file not found (or not a regular file)", source=name)
    if path.stat().st_size == 0:
        raise DataValidationError("file is empty", source=name)
    suffix = path.suffix.lower()
    if format == "parquet" or (format is None and suffix in (".parquet", ".pq")):
        return validate_candles(_read_parquet(path, name), timeframe, source=name,
                                allow_sparse=allow_sparse)
    if suffix == ".zip":
        text = _read_zip_member(path, name)
    else:
        try:
            text = path.read_bytes()
        except OSError as exc:
            raise DataValidationError(f"cannot read file: {exc}", source=name) from None
    return _from_csv_bytes(text, timeframe, tf_ms, name, format, allow_sparse)


def _read_parquet(path: Path, name: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        raise DataValidationError(f"unreadable or corrupt Parquet file: {exc}", source=name) from None
    return table.to_pandas()


def _read_zip_member(path: Path, name: str) -> bytes:
    """The bytes of the single CSV inside a (Binance) zip archive."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = [m for m in archive.infolist() if not m.is_dir()]
            csvs = [m for m in members if m.filename.lower().endswith(".csv")]
            if len(csvs) != 1:
                listed = ", ".join(m.filename for m in members) or "nothing"
                raise DataValidationError(
                    f"zip archive must hold exactly one .csv file; it holds {listed}", source=name
                )
            data = archive.read(csvs[0])
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as exc:
        raise DataValidationError(f"unreadable or corrupt zip file: {exc}", source=name) from None
    except Exception as exc:  # zlib.error and friends from a damaged member
        if isinstance(exc, DataValidationError):
            raise
        raise DataValidationError(f"unreadable or corrupt zip file: {exc}", source=name) from None
    if not data:
        raise DataValidationError("file is empty (the CSV inside the zip)", source=name)
    return data


def _first_line(data: bytes) -> list[str]:
    line = data.split(b"\n", 1)[0].decode("utf-8", errors="replace").strip().lstrip("\ufeff")
    return [f.strip().lower() for f in line.split(",")]


def _looks_numeric(field: str) -> bool:
    try:
        float(field)
    except ValueError:
        return False
    return True


def _from_csv_bytes(data: bytes, timeframe: str, tf_ms: int, name: str, format,
                    allow_sparse: bool) -> ValidCandles:
    first = _first_line(data)
    if not any(first):
        raise DataValidationError("file is empty (no header and no rows)", source=name)
    is_binance_header = len(first) == len(BINANCE_COLUMNS) and first[0] == "open_time"
    is_binance_plain = len(first) == len(BINANCE_COLUMNS) and _looks_numeric(first[0])
    if format == "binance" or (format is None and (is_binance_header or is_binance_plain)):
        if not (is_binance_header or is_binance_plain):
            raise DataValidationError(
                f"not a Binance kline file: expected {len(BINANCE_COLUMNS)} columns, "
                f"the first line has {len(first)}",
                source=name,
                row=None,
            )
        frame = _read_csv(data, name, header=0 if is_binance_header else None,
                          names=list(BINANCE_COLUMNS))
        return _validate_binance(frame, timeframe, tf_ms, name, allow_sparse)
    if _looks_numeric(first[0]) and first[0] != "":
        raise DataValidationError(
            "CSV has no header line; expected columns " + ", ".join(REQUIRED_COLUMNS)
            + " (or a 12-column Binance kline file)",
            source=name,
        )
    frame = _read_csv(data, name, header=0, names=None)
    return validate_candles(frame, timeframe, source=name, allow_sparse=allow_sparse)


def _read_csv(data: bytes, name: str, *, header, names) -> pd.DataFrame:
    try:
        frame = pd.read_csv(
            io.BytesIO(data), header=header, names=names, skipinitialspace=True,
            # Only an empty cell is missing; "n/a", "null" etc. are reported as text.
            keep_default_na=False, na_values=[""],
        )
    except pd.errors.EmptyDataError:
        raise DataValidationError("file is empty", source=name) from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise DataValidationError(f"unreadable CSV: {exc}", source=name) from None
    # A column holding any non-numeric cell comes back as text: strip it so
    # that " 1.5" still parses and "abc" is reported as it is in the file.
    for column in frame.columns:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            frame[column] = frame[column].astype(object).map(
                lambda v: v.strip() if isinstance(v, str) else v)
    return frame


def _validate_binance(frame: pd.DataFrame, timeframe: str, tf_ms: int, name: str,
                      allow_sparse: bool) -> ValidCandles:
    if len(frame) == 0:
        raise DataValidationError("file has a header but no data rows", source=name)
    times = {}
    for col in ("open_time", "close_time"):
        values = _numeric_column(frame, col, name)
        _check_finite(values, col, name)
        _check_integral(values, col, name)
        # a close time is the candle's last tick: whole milliseconds only in ms
        times[col] = _epoch_ticks(values, col, name, whole_ms=col == "open_time")
    (open_time, open_unit), (close_time, close_unit) = times["open_time"], times["close_time"]
    open_ns = open_time * _UNITS[open_unit][1]
    close_tick = _UNITS[close_unit][1]
    close_ns = close_time * close_tick
    expected = open_ns + tf_ms * 1_000_000 - close_tick  # the candle's last tick, in close_time's unit
    bad = np.flatnonzero(close_ns != expected)
    if bad.size:
        i = bad[0]
        unit = _UNITS[close_unit][0]
        raise DataValidationError(
            f"close_time is open_time + {int(close_ns[i] - open_ns[i]) // close_tick} {unit} "
            f"(open_time in {_UNITS[open_unit][0]}, close_time in {unit}); a {timeframe} candle "
            f"closes at open_time + {(tf_ms * 1_000_000 - close_tick) // close_tick} {unit} "
            "(is the timeframe right?)",
            source=name, row=i + 1, column="close_time", value=int(close_time[i]),
        )
    generic = pd.DataFrame({"timestamp": open_ns // 1_000_000})
    for col in OHLCV_COLUMNS:
        generic[col] = frame[col]
    return validate_candles(generic, timeframe, source=name, timestamp_column="open_time",
                            allow_sparse=allow_sparse)


def _epoch_ticks(values: np.ndarray, column: str, source: str, label: str | None = None, *,
                 whole_ms: bool = True) -> tuple[np.ndarray, int]:
    """Integer epoch times and the index of their unit in :data:`_UNITS` (see "Time units").

    Refuses a negative time, a value whose magnitude says another unit than
    the column's, and (``whole_ms``) a microsecond or nanosecond time that is
    not a whole millisecond; ``label`` names the column in messages.

    >>> ticks, unit = _epoch_ticks(np.array([1_700_000_000_000_000, 1_700_000_060_000_000]), "t", "f")
    >>> _UNITS[unit][0]
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
            f"this value looks like epoch {_UNITS[magnitude[i]][0]} while the column's values look "
            f"like {_UNITS[unit][0]}; a time column holds one unit",
            source=source, row=i + 1, column=label, value=int(values[i]))
    per_ms = 1_000_000 // _UNITS[unit][1]
    bad = np.flatnonzero(values % per_ms != 0) if whole_ms else ()
    if len(bad):
        i = bad[0]
        raise DataValidationError(
            f"{_UNITS[unit][0]} timestamp is not a whole millisecond",
            source=source, row=i + 1, column=label, value=int(values[i]))
    return values, unit


def _numeric_column(frame: pd.DataFrame, column: str, source: str) -> np.ndarray:
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


def _check_finite(values: np.ndarray, column: str, source: str, label: str | None = None) -> None:
    if values.dtype.kind == "f":
        bad = np.flatnonzero(~np.isfinite(values))
        if bad.size:
            i = bad[0]
            what = "missing (empty or NaN)" if np.isnan(values[i]) else "infinite"
            raise DataValidationError(f"value is {what}", source=source, row=i + 1,
                                      column=label or column, value=None if np.isnan(values[i]) else float(values[i]))


def _check_integral(values: np.ndarray, column: str, source: str) -> None:
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
    values = _numeric_column(frame, "timestamp", source)
    _check_finite(values, "timestamp", source, column_label)
    _check_integral(values, column_label, source)
    ticks, unit = _epoch_ticks(values, "timestamp", source, column_label)
    return ticks // (1_000_000 // _UNITS[unit][1])


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
        values = _numeric_column(frame, col, source).astype(np.float64, copy=False)
        _check_finite(values, col, source)
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
