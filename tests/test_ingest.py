"""Ingest: every source format, idempotence, replace, validation, transactions."""

from __future__ import annotations

import zipfile

import duckdb
import numpy as np
import pandas as pd
import pytest

from conftest import START_MS, make_candles
from ettlib.errors import ConfigError, DataValidationError, UnknownNameError
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.store import DuckDBStorage, IngestReport

SYMBOL = "ETH/USDT"
MINUTE = 60_000


def snapshot(store: DuckDBStorage) -> list[tuple]:
    """Every row of ohlcv_data, sorted: 'the database exactly as it was'."""
    return store.con.execute(
        "SELECT * FROM ohlcv_data ORDER BY symbol, timeframe, timestamp"
    ).fetchall()


def stored_ohlcv(store, symbol=SYMBOL, timeframe="1m") -> pd.DataFrame:
    arrays = store.read_candles(symbol, timeframe, columns=OHLCV_COLUMNS)
    frame = pd.DataFrame(arrays.values, columns=OHLCV_COLUMNS)
    frame.insert(0, "timestamp", arrays.timestamps)
    return frame


def write_binance(path, candles: pd.DataFrame, *, micro=False, header=False, tf_ms=MINUTE):
    unit = 1000 if micro else 1
    lines = []
    if header:
        lines.append("open_time,open,high,low,close,volume,close_time,quote_volume,count,"
                     "taker_buy_volume,taker_buy_quote_volume,ignore")
    for row in candles.itertuples(index=False):
        t = int(row.timestamp) * unit
        lines.append(",".join([
            str(t), repr(row.open), repr(row.high), repr(row.low), repr(row.close),
            repr(row.volume), str(t + tf_ms * unit - 1), repr(row.volume * row.close), "42",
            repr(row.volume / 2), repr(row.volume * row.close / 2), "0",
        ]))
    text = "\n".join(lines) + "\n"
    if str(path).endswith(".zip"):
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("ETHUSDT-1m-2024-01.csv", text)
    else:
        path.write_text(text)
    return path


# -- every format stores the same candles ---------------------------------------


@pytest.mark.parametrize(
    "kind",
    ["dataframe", "csv", "parquet", "binance", "binance_header_us", "binance_zip",
     "binance_zip_us", "datetime_column", "csv_iso_datetimes", "unsorted", "uppercase_names"],
)
def test_every_format_stores_the_same_candles(store, tmp_path, kind):
    candles = make_candles(40)
    if kind == "dataframe":
        source = candles
    elif kind == "csv":
        source = tmp_path / "c.csv"
        candles.to_csv(source, index=False)
    elif kind == "parquet":
        source = tmp_path / "c.parquet"
        candles.to_parquet(source, index=False)
    elif kind == "binance":
        source = write_binance(tmp_path / "b.csv", candles)
    elif kind == "binance_header_us":
        source = write_binance(tmp_path / "b.csv", candles, micro=True, header=True)
    elif kind == "binance_zip":
        source = write_binance(tmp_path / "ETHUSDT-1m.zip", candles)
    elif kind == "binance_zip_us":
        source = write_binance(tmp_path / "ETHUSDT-1m.zip", candles, micro=True)
    elif kind == "datetime_column":
        source = candles.assign(timestamp=pd.to_datetime(candles.timestamp, unit="ms", utc=True))
    elif kind == "csv_iso_datetimes":
        source = tmp_path / "iso.csv"
        iso = pd.to_datetime(candles.timestamp, unit="ms").dt.strftime("%Y-%m-%d %H:%M:%S")
        candles.assign(timestamp=iso).to_csv(source, index=False)
    elif kind == "unsorted":
        source = candles.sample(frac=1.0, random_state=3)
    else:
        source = candles.rename(columns=str.upper)
    report = store.ingest(source, SYMBOL, "1m")
    assert report == IngestReport(
        symbol=SYMBOL, timeframe="1m", source=report.source, rows_read=40, rows_added=40,
        rows_unchanged=0, rows_replaced=0, gaps=0, missing_candles=0,
        first=START_MS, last=START_MS + 39 * MINUTE,
    )
    pd.testing.assert_frame_equal(stored_ohlcv(store), candles, check_exact=True)


def test_indicator_columns_in_the_source_are_recomputed(store):
    candles = make_candles(30)
    store.ingest(candles.assign(sma_10=-1.0), SYMBOL, "1m")
    sma = store.read_candles(SYMBOL, "1m", columns=("sma_10",)).column("sma_10")
    expected = candles.close.rolling(10).mean().to_numpy()
    np.testing.assert_allclose(sma[9:], expected[9:], rtol=1e-9)
    assert np.isnan(sma[:9]).all()


# -- idempotence, replace, gaps ------------------------------------------------


def test_same_candles_twice_add_nothing(store):
    candles = make_candles(50)
    first = store.ingest(candles, SYMBOL, "1m")
    before = snapshot(store)
    again = store.ingest(candles, SYMBOL, "1m")
    assert (first.rows_added, again.rows_added, again.rows_unchanged) == (50, 0, 50)
    assert snapshot(store) == before


def test_overlapping_ingest_adds_only_new_candles_and_extends_indicators(store, tmp_path):
    candles = make_candles(160)
    store.ingest(candles.iloc[:100], SYMBOL, "1m")
    report = store.ingest(candles.iloc[80:], SYMBOL, "1m")
    assert (report.rows_added, report.rows_unchanged) == (60, 20)
    pd.testing.assert_frame_equal(stored_ohlcv(store), candles)
    with DuckDBStorage(tmp_path / "whole.duckdb") as whole:  # one ingest of everything
        whole.ingest(candles, SYMBOL, "1m")
        expected = whole.read_candles(SYMBOL, "1m").values
    np.testing.assert_allclose(store.read_candles(SYMBOL, "1m").values, expected, rtol=1e-9)


def test_backfilling_older_candles_recomputes_later_indicators(store, tmp_path):
    candles = make_candles(160)
    store.ingest(candles.iloc[80:], SYMBOL, "1m")
    assert store.ingest(candles.iloc[:80], SYMBOL, "1m").rows_added == 80
    with DuckDBStorage(tmp_path / "whole.duckdb") as whole:
        whole.ingest(candles, SYMBOL, "1m")
        expected = whole.read_candles(SYMBOL, "1m").values
    np.testing.assert_allclose(store.read_candles(SYMBOL, "1m").values, expected, rtol=1e-9)


def test_replace_overwrites_changed_candles_and_updates_indicators(store):
    candles = make_candles(30)
    store.ingest(candles, SYMBOL, "1m")
    changed = candles.copy()
    changed.loc[20, ["close", "high"]] = [changed.close[20] * 1.01, changed.high[20] * 1.02]
    report = store.ingest(changed, SYMBOL, "1m", replace=True)
    assert (report.rows_added, report.rows_unchanged, report.rows_replaced) == (0, 29, 1)
    pd.testing.assert_frame_equal(stored_ohlcv(store), changed)
    sma = store.read_candles(SYMBOL, "1m", columns=("sma_10",)).column("sma_10")
    np.testing.assert_allclose(sma[9:], changed.close.rolling(10).mean()[9:], rtol=1e-9)


def test_gaps_are_counted_not_errors(store):
    candles = make_candles(100)
    dropped = [10, 11, 12, 50, 70, 71]  # three holes, six missing candles
    report = store.ingest(candles.drop(index=dropped), SYMBOL, "1m")
    assert (report.gaps, report.missing_candles, report.rows_added) == (3, len(dropped), 94)


def test_same_timestamps_under_other_symbol_or_timeframe_are_separate(store):
    candles = make_candles(20, timeframe="5m")
    store.ingest(candles, SYMBOL, "5m")
    store.ingest(candles.assign(close=candles.close, volume=candles.volume + 1), "BTC/USDT", "5m")
    assert store.count() == 40
    assert store.symbols() == ["BTC/USDT", SYMBOL]
    assert store.timeframes(SYMBOL) == ["5m"]


def test_sql_injection_symbol_is_stored_literally(store):
    evil = "ETH/USDT'); DROP TABLE ohlcv_data; --"
    store.ingest(make_candles(15), evil, "1m")
    store.ingest(make_candles(15), SYMBOL, "1m")
    assert store.symbols() == [SYMBOL, evil]
    assert store.time_range(evil, "1m") == (START_MS, START_MS + 14 * MINUTE)
    assert len(store.read_window(evil, "1m", START_MS, START_MS + 5 * MINUTE)) == 6
    assert store.count() == 30  # the table is still there, with both symbols


@pytest.mark.parametrize("symbol", ["", " ETH", "ETH\n", "X" * 65, None, 42])
def test_bad_symbols_are_rejected(store, symbol):
    with pytest.raises(ConfigError, match="symbol"):
        store.ingest(make_candles(5), symbol, "1m")
    assert store.count() == 0


def test_read_only_store_refuses_to_ingest(tmp_path):
    path = tmp_path / "ro.duckdb"
    DuckDBStorage(path).close()
    with DuckDBStorage(path, read_only=True) as reader:
        with pytest.raises(ConfigError, match="read-only"):
            reader.ingest(make_candles(5), SYMBOL, "1m")


# -- every validation: clear error, database unchanged ---------------------------


def _frame(**changes):
    """Ten valid candles with cells changed: changes = {column: {row0: value}}."""
    candles = make_candles(10, start=START_MS + 1000 * MINUTE, seed=7)
    for column, cells in changes.items():
        if column not in candles:
            candles[column] = np.nan
        if any(isinstance(v, str) for v in cells.values()):
            candles[column] = candles[column].astype(object)
        elif any(isinstance(v, float) for v in cells.values()):
            candles[column] = candles[column].astype(float)
        for row, value in cells.items():
            candles.loc[row, column] = value
    return candles


def _csv(tmp_path, frame, name="bad.csv"):
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def _case_nan_csv(tmp_path):
    path = _csv(tmp_path, _frame())
    lines = path.read_text().splitlines()
    fields = lines[4].split(",")
    fields[4] = ""  # close of data row 4 left empty
    lines[4] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    return path


def _case_conflict(tmp_path):
    frame = make_candles(20).iloc[5:].reset_index(drop=True)  # 15 rows, 5 of them new
    frame = pd.concat([frame, make_candles(25).iloc[20:]], ignore_index=True)
    frame.loc[3, "volume"] += 1.0  # differs from the stored candle
    return frame


def _case_corrupt_zip(tmp_path):
    path = write_binance(tmp_path / "k.zip", make_candles(5))
    data = bytearray(path.read_bytes())
    data[40:80] = b"\x00" * 40
    path.write_bytes(bytes(data))
    return path


def _case_zip_bad_payload(tmp_path):
    path = write_binance(tmp_path / "k.zip", make_candles(200))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 16] = bytes(255 - b for b in data[middle:middle + 16])
    path.write_bytes(bytes(data))
    return path


def _case_truncated_zip(tmp_path):
    path = write_binance(tmp_path / "k.zip", make_candles(200))
    path.write_bytes(path.read_bytes()[:300])
    return path


def _case_corrupt_parquet(tmp_path):
    path = tmp_path / "bad.parquet"
    make_candles(5).to_parquet(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _case_ragged_csv(tmp_path):
    path = _csv(tmp_path, _frame())
    with path.open("a") as f:
        f.write("1,2,3,4,5,6,7,8\n")
    return path


def _text(tmp_path, text):
    path = tmp_path / "t.csv"
    path.write_text(text)
    return path


def _binance_lines(tmp_path, edit):
    path = write_binance(tmp_path / "b.csv", _frame())
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


def _set_field(lines, row, col, value):
    fields = lines[row - 1].split(",")
    fields[col] = value
    lines[row - 1] = ",".join(fields)


T0 = START_MS + 1000 * MINUTE
CASES = {
    # id: (make source, error type, row, column, value)
    "nan_csv": (_case_nan_csv, DataValidationError, 4, "close", None),
    "inf": (lambda p: _frame(high={2: np.inf}), DataValidationError, 3, "high", np.inf),
    "zero_price": (lambda p: _frame(open={5: 0.0}), DataValidationError, 6, "open", 0.0),
    "negative_low": (lambda p: _frame(low={1: -3.0}), DataValidationError, 2, "low", -3.0),
    "high_below_body": (lambda p: _frame(high={6: 1.0}, low={6: 0.5}), DataValidationError, 7, "high", 1.0),
    "low_above_body": (lambda p: _frame(low={8: 1e6}), DataValidationError, 9, "low", 1e6),
    "negative_volume": (lambda p: _frame(volume={9: -1.0}), DataValidationError, 10, "volume", -1.0),
    "duplicate_ts": (lambda p: _frame(timestamp={7: T0 + 2 * MINUTE}), DataValidationError, 8, "timestamp", T0 + 2 * MINUTE),
    "off_grid": (lambda p: _frame(timestamp={4: T0 + 4 * MINUTE + 1}), DataValidationError, 5, "timestamp", T0 + 4 * MINUTE + 1),
    "microseconds_in_csv": (lambda p: _csv(p, _frame(timestamp={0: T0 * 1000})), DataValidationError, 1, "timestamp", T0 * 1000),
    "negative_ts": (lambda p: _frame(timestamp={0: -MINUTE}), DataValidationError, 1, "timestamp", -MINUTE),
    "fractional_ts": (lambda p: _frame(timestamp={3: T0 + 0.5}), DataValidationError, 4, "timestamp", T0 + 0.5),
    "non_numeric_csv": (lambda p: _csv(p, _frame(close={2: "abc"})), DataValidationError, 3, "close", "abc"),
    "missing_column": (lambda p: _frame().drop(columns="volume"), DataValidationError, None, "volume", None),
    "extra_column": (lambda p: _frame(foo={0: 1.0}), DataValidationError, None, "foo", None),
    "duplicate_column": (lambda p: _frame().rename(columns={"volume": "OPEN"}), DataValidationError, None, "OPEN", None),
    "empty_file": (lambda p: _text(p, ""), DataValidationError, None, None, None),
    "header_only": (lambda p: _csv(p, _frame().iloc[:0]), DataValidationError, None, None, None),
    "empty_dataframe": (lambda p: _frame().iloc[:0], DataValidationError, None, None, None),
    "no_header_csv": (lambda p: _text(p, "1,2,3,4,5,6\n"), DataValidationError, None, None, None),
    "ragged_csv": (_case_ragged_csv, DataValidationError, None, None, None),
    "corrupt_zip": (_case_corrupt_zip, DataValidationError, None, None, None),
    "zip_bad_payload": (_case_zip_bad_payload, DataValidationError, None, None, None),
    "truncated_zip": (_case_truncated_zip, DataValidationError, None, None, None),
    "corrupt_parquet": (_case_corrupt_parquet, DataValidationError, None, None, None),
    "missing_file": (lambda p: p / "nope.csv", DataValidationError, None, None, None),
    "binance_wrong_timeframe": (lambda p: _binance_lines(p, lambda ls: _set_field(ls, 3, 6, str(T0 + 2 * MINUTE + 5 * MINUTE - 1))), DataValidationError, 3, "close_time", T0 + 7 * MINUTE - 1),
    "binance_non_numeric": (lambda p: _binance_lines(p, lambda ls: _set_field(ls, 6, 5, "n/a")), DataValidationError, 6, "volume", "n/a"),
    "binance_us_not_whole_ms": (lambda p: _binance_lines(p, lambda ls: _set_field(ls, 2, 0, str((T0 + MINUTE) * 1000 + 7))), DataValidationError, 2, "open_time", (T0 + MINUTE) * 1000 + 7),
    "conflicting_values": (_case_conflict, DataValidationError, 4, "volume", None),
    "unknown_timeframe": (lambda p: _frame(), UnknownNameError, None, None, None),
    "unknown_format": (lambda p: _csv(p, _frame()), UnknownNameError, None, None, None),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_raises_clearly_and_changes_nothing(store, tmp_path, case):
    make, error, row, column, value = CASES[case]
    store.ingest(make_candles(20), SYMBOL, "1m")  # something already stored
    store.ingest(make_candles(5, timeframe="5m"), SYMBOL, "5m")
    before = snapshot(store)
    source = make(tmp_path)
    timeframe = "7m" if case == "unknown_timeframe" else "1m"
    kwargs = {"format": "xlsx"} if case == "unknown_format" else {}
    with pytest.raises(error) as info:
        store.ingest(source, SYMBOL, timeframe, **kwargs)
    assert snapshot(store) == before
    assert len(before) == 25
    message = str(info.value)
    if error is DataValidationError:
        err = info.value
        expected_source = "DataFrame" if isinstance(source, pd.DataFrame) else str(source)
        assert err.source == expected_source and message.startswith(expected_source)
        assert err.row == row
        assert err.column == column
        if row is not None:
            assert f"row {row}" in message
        if column is not None:
            assert repr(column) in message
        if value is not None and not (isinstance(value, float) and np.isnan(value)):
            assert err.value == value
    else:
        assert ("7m" if case == "unknown_timeframe" else "xlsx") in message


def test_an_error_inside_the_transaction_rolls_everything_back(store, monkeypatch):
    """A failure after the insert (here: in the indicator update) undoes the insert."""
    import ettlib.store.indicator_table

    store.ingest(make_candles(20), SYMBOL, "1m")
    before = snapshot(store)

    def broken(con, symbol, timeframe, since=None):
        # The new rows are visible inside the transaction ...
        assert con.execute("SELECT count(*) FROM ohlcv_data").fetchone()[0] == 40
        raise RuntimeError("indicator failure")

    monkeypatch.setattr(ettlib.store.indicator_table, "update_indicators", broken)
    with pytest.raises(RuntimeError, match="indicator failure"):
        store.ingest(make_candles(40), SYMBOL, "1m")
    assert snapshot(store) == before  # ... and gone after the rollback


def test_conflict_message_names_the_stored_value(store):
    candles = make_candles(10)
    store.ingest(candles, SYMBOL, "1m")
    changed = candles.copy()
    changed.loc[4, "close"] = candles.close[4] + 0.5
    changed.loc[4, "high"] = max(changed.high[4], changed.close[4])
    with pytest.raises(DataValidationError, match="replace=True") as info:
        store.ingest(changed, SYMBOL, "1m")
    assert info.value.row == 5
    assert info.value.column in ("high", "close")


def test_report_is_frozen():
    report = IngestReport("X", "1m", "s", 1, 1, 0, 0, 0, 0, 0, 0)
    with pytest.raises(AttributeError):
        report.rows_added = 2  # type: ignore[misc]


def test_duckdb_file_holds_the_rows_after_close(tmp_path):
    path = tmp_path / "d.duckdb"
    with DuckDBStorage(path) as store:
        store.ingest(make_candles(12), SYMBOL, "1m")
    con = duckdb.connect(str(path), read_only=True)
    assert con.execute("SELECT count(*) FROM ohlcv_data WHERE symbol = ?", [SYMBOL]).fetchone()[0] == 12
    con.close()


# -- the unit of each time column, detected on its own ------------------------------


def write_klines(path, candles: pd.DataFrame, open_unit: int, close_unit: int, tf_ms=MINUTE):
    """Binance klines with open times in ``open_unit`` and close times in ``close_unit`` (ticks per ms)."""
    lines = []
    for row in candles.itertuples(index=False):
        t = int(row.timestamp)
        close = (t + tf_ms) * close_unit - 1  # the candle's last tick, in the close time's unit
        lines.append(f"{t * open_unit},{row.open!r},{row.high!r},{row.low!r},{row.close!r},"
                     f"{row.volume!r},{close},1.0,3,0.5,0.5,0")
    path.write_text("\n".join(lines) + "\n")
    return path


MS, US, NS = 1, 1_000, 1_000_000
UNIT_CASES = {
    # id: (open unit, close unit) of a kline file, or the unit of a generic file's timestamp
    "klines open µs, close ms (Binance spot 2025)": ("klines", US, MS),
    "klines open ms, close µs": ("klines", MS, US),
    "klines both ms": ("klines", MS, MS),
    "klines both µs": ("klines", US, US),
    "klines open ns, close ms": ("klines", NS, MS),
    "klines both ns": ("klines", NS, NS),
    "csv timestamp ms": ("csv", MS, None),
    "csv timestamp µs": ("csv", US, None),
    "csv timestamp ns": ("csv", NS, None),
    "parquet timestamp µs": ("parquet", US, None),
    "dataframe timestamp ns": ("dataframe", NS, None),
}


@pytest.mark.parametrize("case", list(UNIT_CASES))
def test_each_time_column_has_its_own_unit(store, tmp_path, case):
    kind, unit, close_unit = UNIT_CASES[case]
    candles = make_candles(30)
    scaled = candles.assign(timestamp=candles.timestamp * unit)
    if kind == "klines":
        source = write_klines(tmp_path / "k.csv", candles, unit, close_unit)
    elif kind == "dataframe":
        source = scaled
    else:  # a CSV or Parquet file of the scaled frame
        source = tmp_path / f"c.{kind}"
        getattr(scaled, f"to_{kind}")(source, index=False)
    report = store.ingest(source, SYMBOL, "1m")
    assert (report.rows_added, report.first, report.gaps) == (30, START_MS, 0)
    pd.testing.assert_frame_equal(stored_ohlcv(store), candles, check_exact=True)


def _klines_edited(tmp_path, open_unit, close_unit, edit):
    path = write_klines(tmp_path / "k.csv", make_candles(10), open_unit, close_unit)
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    return path


UNIT_ERRORS = {
    # id: (make source, row, column, value, words of the message)
    "one µs time in a ms column": (
        lambda p: _csv(p, _frame(timestamp={3: (T0 + 3 * MINUTE) * 1000})), 4, "timestamp",
        (T0 + 3 * MINUTE) * 1000, "looks like epoch µs while the column's values look like ms"),
    "µs open time, close time of a 5m candle": (
        lambda p: _klines_edited(p, US, MS, lambda ls: _set_field(ls, 2, 6, str(START_MS + 6 * MINUTE - 1))),
        2, "close_time", START_MS + 6 * MINUTE - 1,
        "close_time is open_time + 299999 ms (open_time in µs, close_time in ms); a 1m candle closes "
        "at open_time + 59999 ms"),
    "ns open time not a whole millisecond": (
        lambda p: _klines_edited(p, NS, MS, lambda ls: _set_field(ls, 5, 0, str((START_MS + 4 * MINUTE) * NS + 5))),
        5, "open_time", (START_MS + 4 * MINUTE) * NS + 5, "ns timestamp is not a whole millisecond"),
}


@pytest.mark.parametrize("case", list(UNIT_ERRORS))
def test_a_time_column_that_mixes_units_or_does_not_fit_is_refused_by_row(store, tmp_path, case):
    make, row, column, value, words = UNIT_ERRORS[case]
    store.ingest(make_candles(20), SYMBOL, "1m")
    before = snapshot(store)
    with pytest.raises(DataValidationError) as info:
        store.ingest(make(tmp_path), SYMBOL, "1m")
    err = info.value
    assert (err.row, err.column, err.value) == (row, column, value)
    assert words in str(err)
    assert snapshot(store) == before


# -- candles that are never adjacent look like a coarser timeframe -----------------------

COARSE_CASES = {
    # id: (candles of this timeframe, rows kept, ingested as, refused as)
    "5m candles as 1m": ("5m", slice(None), "1m", "5m"),
    "1h candles as 1m": ("1h", slice(None), "1m", "1h"),
    "1h candles as 15m, with a hole": ("1h", [0, 1, 2, 5, 6, 7, 8], "15m", "1h"),
    "every third 1m candle": ("1m", slice(None, None, 3), "1m", "3m"),
    "every 7th 1m candle (no such timeframe)": ("1m", slice(None, None, 7), "1m", "7 x 1m"),
}


@pytest.mark.parametrize("case", list(COARSE_CASES))
def test_candles_never_adjacent_are_refused_as_a_coarser_timeframe(store, tmp_path, case):
    timeframe, keep, given, coarse = COARSE_CASES[case]
    candles = make_candles(50, timeframe=timeframe)
    candles = candles.iloc[keep] if isinstance(keep, slice) else candles.iloc[keep]
    path = tmp_path / "c.csv"
    candles.to_csv(path, index=False)
    with pytest.raises(DataValidationError, match=rf"this looks like {coarse} data, not {given}") as info:
        store.ingest(path, SYMBOL, given)
    assert str(info.value).startswith(str(path)) and "allow_sparse=True" in str(info.value)
    assert store.count() == 0
    report = store.ingest(path, SYMBOL, given, allow_sparse=True)  # asked for: kept as sparse candles
    assert report.rows_added == len(candles) and report.gaps == len(candles) - 1


@pytest.mark.parametrize("rows", [[0, 5], [0, 1, 5, 6, 20], [0, 5, 6]])
def test_gapped_files_with_adjacent_candles_or_too_few_to_tell_are_accepted(store, rows):
    report = store.ingest(make_candles(30).iloc[rows], SYMBOL, "1m")
    assert report.rows_added == len(rows)


def test_ett_data_ingest_refuses_coarse_data_unless_allow_sparse(tmp_path, capsys):
    from ettlib.cli import main

    path = tmp_path / "five.csv"
    make_candles(50, timeframe="5m").to_csv(path, index=False)
    db = tmp_path / "ett.duckdb"
    args = ["data", "ingest", str(path), "--db", str(db), "--symbol", SYMBOL, "--timeframe", "1m"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "this looks like 5m data" in err and "--allow-sparse" in err
    assert main(args + ["--allow-sparse"]) == 0
    assert "49 gaps (196 candles missing)" in capsys.readouterr().out
