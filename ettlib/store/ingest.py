"""Reading candle sources -- DataFrames, CSV, Parquet, Binance klines -- and validating them.

:func:`read_candles_source` turns a source -- a pandas ``DataFrame``, a CSV
file, a Parquet file or a Binance kline file (plain or zipped) -- into
:class:`ValidCandles`: sorted ``int64`` open times in epoch milliseconds and
``float64`` OHLCV columns, every row checked (:mod:`ettlib.store.validation`).  Nothing here touches the
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
from pathlib import Path

import numpy as np
import pandas as pd

from ettlib.errors import DataValidationError, UnknownNameError
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.store.validation import (
    REQUIRED_COLUMNS,
    TIME_UNITS,
    ValidCandles,
    check_finite,
    check_integral,
    epoch_ticks,
    numeric_column,
    validate_candles,
)
from ettlib.timeframes import timeframe_ms

__all__ = ["BINANCE_COLUMNS", "FORMATS", "read_candles_source"]

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
        values = numeric_column(frame, col, name)
        check_finite(values, col, name)
        check_integral(values, col, name)
        # a close time is the candle's last tick: whole milliseconds only in ms
        times[col] = epoch_ticks(values, col, name, whole_ms=col == "open_time")
    (open_time, open_unit), (close_time, close_unit) = times["open_time"], times["close_time"]
    open_ns = open_time * TIME_UNITS[open_unit][1]
    close_tick = TIME_UNITS[close_unit][1]
    close_ns = close_time * close_tick
    expected = open_ns + tf_ms * 1_000_000 - close_tick  # the candle's last tick, in close_time's unit
    bad = np.flatnonzero(close_ns != expected)
    if bad.size:
        i = bad[0]
        unit = TIME_UNITS[close_unit][0]
        raise DataValidationError(
            f"close_time is open_time + {int(close_ns[i] - open_ns[i]) // close_tick} {unit} "
            f"(open_time in {TIME_UNITS[open_unit][0]}, close_time in {unit}); a {timeframe} candle "
            f"closes at open_time + {(tf_ms * 1_000_000 - close_tick) // close_tick} {unit} "
            "(is the timeframe right?)",
            source=name, row=i + 1, column="close_time", value=int(close_time[i]),
        )
    generic = pd.DataFrame({"timestamp": open_ns // 1_000_000})
    for col in OHLCV_COLUMNS:
        generic[col] = frame[col]
    return validate_candles(generic, timeframe, source=name, timestamp_column="open_time",
                            allow_sparse=allow_sparse)
