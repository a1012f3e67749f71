"""Indicators: equal to TA-Lib, TA-Lib's warm-up, incremental == full, isolation."""

from __future__ import annotations

import time

import duckdb
import numpy as np
import pandas as pd
import pytest
import talib
from hypothesis import given, settings
from hypothesis import strategies as st

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.store.indicator_table import update_indicators
from ettlib.store.indicators import RSI_MARGIN, WARMUP, compute_indicators
from ettlib.store.schema import INDICATOR_COLUMNS, ensure_schema

MINUTE = 60_000
MACD_FAMILY = ("macd", "macd_signal", "macd_hist")


def talib_indicators(high, low, close) -> dict[str, np.ndarray]:
    """The reference: TA-Lib's own functions with the documented parameters."""
    ref = {
        "sma_10": talib.SMA(close, 10),
        "sma_20": talib.SMA(close, 20),
        "sma_50": talib.SMA(close, 50),
        "ema_12": talib.EMA(close, 12),
        "ema_26": talib.EMA(close, 26),
        "rsi_14": talib.RSI(close, 14),
        "atr_14": talib.ATR(high, low, close, 14),
    }
    ref["macd"], ref["macd_signal"], ref["macd_hist"] = talib.MACD(close, 12, 26, 9)
    ref["bb_upper"], ref["bb_middle"], ref["bb_lower"] = talib.BBANDS(
        close, 20, nbdevup=2, nbdevdn=2, matype=0
    )
    return ref


def assert_matches(actual: dict, expected: dict, close: np.ndarray, rtol: float = 1e-9) -> None:
    """Same NaN pattern; values within ``rtol`` relative.

    MACD, its signal and histogram are differences of two price-sized EMAs
    and cross zero, so their tolerance is relative to the operands' size
    (the closing price) rather than to the (possibly ~0) difference.
    """
    assert set(actual) == set(INDICATOR_COLUMNS)
    for name in INDICATOR_COLUMNS:
        a, e = np.asarray(actual[name], dtype=float), np.asarray(expected[name], dtype=float)
        assert a.shape == e.shape, name
        np.testing.assert_array_equal(np.isnan(a), np.isnan(e), err_msg=f"NaN pattern of {name}")
        ok = ~np.isnan(e)
        scale = np.abs(close[ok]) if name in MACD_FAMILY else np.abs(e[ok])
        err = np.abs(a[ok] - e[ok])
        bad = err > rtol * scale
        assert not bad.any(), f"{name}: max error {err.max()} at row {np.flatnonzero(ok)[bad][0]}"


def random_walk(n: int, seed: int, *, flat_runs: bool = True, price: float = 2000.0):
    """OHLC of a fat-tailed random walk, rounded to ticks, with flat runs."""
    rng = np.random.default_rng(seed)
    steps = rng.standard_t(3, n) * 0.002
    close = price * np.exp(np.cumsum(steps))
    if flat_runs:
        for _ in range(max(1, n // 300)):
            start = rng.integers(0, max(1, n - 60))
            close[start : start + rng.integers(2, 60)] = close[start]
    close = np.round(close, 2)
    high = close + np.round(rng.exponential(0.5, n), 2)
    low = close - np.round(rng.exponential(0.5, n), 2)
    open_ = np.clip(np.roll(close, 1), low, high)
    open_[0] = close[0]
    return open_, high, low, close, rng.exponential(10.0, n)


def frame(symbol: str, timeframe: str, ohlcv, start: int = 0, step: int = MINUTE) -> pd.DataFrame:
    o, h, l, c, v = ohlcv
    return pd.DataFrame(
        {
            "symbol": symbol,
            "timeframe": timeframe,
            "timestamp": start + np.arange(len(c), dtype=np.int64) * step,
            "open": o,
            "high": h,
            "low": l,
            "close": c,
            "volume": v,
        }
    )


def insert(con, df: pd.DataFrame) -> None:
    con.register("incoming", df)
    con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM incoming")
    con.unregister("incoming")


def stored(con, symbol: str, timeframe: str) -> dict[str, np.ndarray]:
    cols = ", ".join(("timestamp",) + INDICATOR_COLUMNS)
    df = con.execute(
        f"SELECT {cols} FROM ohlcv_data WHERE symbol = ? AND timeframe = ? ORDER BY timestamp",
        [symbol, timeframe],
    ).fetchdf()
    return {c: df[c].to_numpy(dtype=float) for c in INDICATOR_COLUMNS} | {
        "timestamp": df["timestamp"].to_numpy()
    }


@pytest.fixture
def con(tmp_path):
    connection = duckdb.connect(str(tmp_path / "ind.duckdb"))
    ensure_schema(connection)
    yield connection
    connection.close()


# ---------------------------------------------------------------- TA-Lib equality


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equals_talib_on_random_walks_with_flat_runs(seed):
    o, h, l, c, v = random_walk(5000, seed)
    assert (np.diff(c) == 0).sum() > 100  # the flat runs are really there
    assert_matches(compute_indicators(o, h, l, c, v), talib_indicators(h, l, c), c)


def test_equals_talib_on_low_priced_and_high_priced_series():
    for price in (0.0001234, 65000.0):
        o, h, l, c, v = random_walk(2000, 5, price=price)
        c = np.maximum(c, price * 0.01)
        h, l = np.maximum(h, c), np.clip(np.minimum(l, c), price * 0.001, None)
        assert_matches(compute_indicators(o, h, l, c, v), talib_indicators(h, l, c), c)


def test_equals_talib_on_flat_series_and_trailing_flat_run():
    flat = np.full(200, 5.0)
    ind = compute_indicators(flat, flat, flat, flat, flat)
    assert_matches(ind, talib_indicators(flat, flat, flat), flat)
    assert (ind["rsi_14"][14:] == 0).all()  # TA-Lib: 0 when both averages are 0
    # A rise then a very long flat run: TA-Lib's RSI keeps the ratio of the decaying averages.
    c = np.concatenate((np.linspace(10, 20, 40), np.linspace(20, 15, 20), np.full(3000, 15.0)))
    h, l = c + 0.1, c - 0.1
    ind = compute_indicators(c, h, l, c, c)
    assert_matches(ind, talib_indicators(h, l, c), c)
    assert 0 < ind["rsi_14"][-1] < 100


@pytest.mark.parametrize("n", [0, 1, 9, 10, 14, 15, 19, 20, 25, 26, 33, 34, 49, 50, 51])
def test_warm_up_matches_talib_and_is_documented(n):
    o, h, l, c, v = random_walk(max(n, 1), 11)
    o, h, l, c, v = (a[:n] for a in (o, h, l, c, v))
    ind = compute_indicators(o, h, l, c, v)
    if n:
        assert_matches(ind, talib_indicators(h, l, c), c)
    for name in INDICATOR_COLUMNS:
        assert len(ind[name]) == n
        assert int(np.isnan(ind[name]).sum()) == min(n, WARMUP[name]), name


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([-3, -1, 0, 0, 0, 1, 2, 5]), min_size=1, max_size=300),
    st.floats(min_value=1.0, max_value=1e5),
)
def test_equals_talib_property(moves, price):
    close = price + np.cumsum(np.asarray(moves, dtype=float)) * price * 1e-3
    close = np.maximum(close, price * 0.01)
    high, low = close * 1.001, close * 0.999
    ind = compute_indicators(close, high, low, close, close)
    assert_matches(ind, talib_indicators(high, low, close), close)


def test_bad_inputs_are_refused():
    with pytest.raises(ConfigError, match="same length"):
        compute_indicators(np.ones(3), np.ones(3), np.ones(2), np.ones(3), np.ones(3))
    with pytest.raises(ConfigError, match="1-D"):
        compute_indicators(*(np.ones((2, 2)),) * 5)


def test_a_year_of_minutes_is_fast():
    o, h, l, c, v = random_walk(525_600, 3, flat_runs=False)
    compute_indicators(o[:1000], h[:1000], l[:1000], c[:1000], v[:1000])
    began = time.perf_counter()
    ind = compute_indicators(o, h, l, c, v)
    elapsed = time.perf_counter() - began
    assert elapsed < 1.5, f"{elapsed:.2f} s for 525,600 rows"
    assert np.isfinite(ind["macd"][33:]).all()


# ---------------------------------------------------------------- storage


def test_update_all_stores_talib_values_and_null_warm_up(con):
    ohlcv = random_walk(3000, 21)
    insert(con, frame("ETH/USDT", "1m", ohlcv))
    assert update_indicators(con, "ETH/USDT", "1m") == 3000
    rows = stored(con, "ETH/USDT", "1m")
    _, h, l, c, _ = ohlcv
    assert_matches({k: rows[k] for k in INDICATOR_COLUMNS}, talib_indicators(h, l, c), c)
    for name in INDICATOR_COLUMNS:
        nulls = con.execute(
            f"SELECT count(*) FROM ohlcv_data WHERE {name} IS NULL"  # name from INDICATOR_COLUMNS
        ).fetchone()[0]
        assert nulls == WARMUP[name], name
        first = con.execute(f"SELECT min(timestamp) FROM ohlcv_data WHERE {name} IS NOT NULL").fetchone()[0]
        assert first == WARMUP[name] * MINUTE, name


@pytest.mark.parametrize(
    ("n", "split", "shape"),
    [
        (300, 200, "walk"),  # short history: recomputed from its first row
        (12_000, 9_000, "walk"),  # long history: margin + stored states
        (12_000, 9_000, "flat"),  # the split ends a flat run longer than RSI_MARGIN
        (12_000, 9_000, "falling"),  # no up move for 6,000 rows: the margin grows
        (12_000, 40, "walk"),  # split inside the warm-up
    ],
)
def test_incremental_equals_full(tmp_path, n, split, shape):
    ohlcv = list(random_walk(n, 4))
    o, h, l, c, v = ohlcv
    if shape == "flat":
        run = slice(split - 2 * RSI_MARGIN - 500, split)
        o[run] = h[run] = l[run] = c[run] = c[run.start - 1]
    elif shape == "falling":
        # Falling through the split: RSI there is tiny but must still match relatively.
        run = slice(split - 6_000, split + 5)
        c[run] = c[run.start - 1] * np.exp(-np.arange(1, 6_006) * 1e-4)
        o[run], h[run], l[run] = c[run] * 1.0001, c[run] * 1.0002, c[run] * 0.9999
    df = frame("ETH/USDT", "1m", ohlcv)

    incremental = duckdb.connect(str(tmp_path / "incremental.duckdb"))
    ensure_schema(incremental)
    insert(incremental, df.iloc[:split])
    assert update_indicators(incremental, "ETH/USDT", "1m") == split
    insert(incremental, df.iloc[split:])
    since = int(df["timestamp"].iloc[split])
    assert update_indicators(incremental, "ETH/USDT", "1m", since=since) == n - split

    full = duckdb.connect(str(tmp_path / "full.duckdb"))
    ensure_schema(full)
    insert(full, df)
    assert update_indicators(full, "ETH/USDT", "1m") == n

    got, want = stored(incremental, "ETH/USDT", "1m"), stored(full, "ETH/USDT", "1m")
    np.testing.assert_array_equal(got["timestamp"], want["timestamp"])
    close = ohlcv[3]
    assert_matches(
        {k: got[k] for k in INDICATOR_COLUMNS}, {k: want[k] for k in INDICATOR_COLUMNS}, close, rtol=1e-12
    )
    # And both equal TA-Lib on the whole series.
    reference = talib_indicators(ohlcv[1], ohlcv[2], close)
    assert_matches({k: got[k] for k in INDICATOR_COLUMNS}, reference, close)
    if shape == "flat":
        # TA-Lib's RSI is still the pre-flat ratio deep into the flat run.
        assert 0 < got["rsi_14"][split] < 100


def test_incremental_reads_only_a_margin(con):
    """The incremental path updates only new rows and leaves earlier rows alone."""
    ohlcv = random_walk(10_000, 8)
    df = frame("ETH/USDT", "1m", ohlcv)
    insert(con, df.iloc[:9_000])
    update_indicators(con, "ETH/USDT", "1m")
    # Mark an early row: a full recompute would overwrite the mark.
    con.execute("UPDATE ohlcv_data SET sma_10 = -1 WHERE timestamp = ?", [100 * MINUTE])
    insert(con, df.iloc[9_000:])
    assert update_indicators(con, "ETH/USDT", "1m", since=9_000 * MINUTE) == 1_000
    marked = con.execute("SELECT sma_10 FROM ohlcv_data WHERE timestamp = ?", [100 * MINUTE]).fetchone()
    assert marked[0] == -1
    c = ohlcv[3]
    last = con.execute("SELECT sma_10 FROM ohlcv_data ORDER BY timestamp DESC LIMIT 1").fetchone()[0]
    assert last == pytest.approx(c[-10:].mean(), rel=1e-12)


def test_missing_states_before_since_trigger_a_full_recompute(con):
    ohlcv = random_walk(6_000, 9)
    insert(con, frame("ETH/USDT", "1m", ohlcv))  # no indicators stored yet
    update_indicators(con, "ETH/USDT", "1m", since=5_000 * MINUTE)
    rows = stored(con, "ETH/USDT", "1m")
    _, h, l, c, _ = ohlcv
    assert_matches({k: rows[k] for k in INDICATOR_COLUMNS}, talib_indicators(h, l, c), c)


def test_since_after_last_row_updates_nothing(con):
    insert(con, frame("ETH/USDT", "1m", random_walk(100, 1)))
    assert update_indicators(con, "ETH/USDT", "1m", since=10_000 * MINUTE) == 0
    assert update_indicators(con, "ETH/USDT", "1m", since=-5 * MINUTE) == 100  # before the first row
    assert con.execute("SELECT count(sma_10) FROM ohlcv_data").fetchone()[0] == 91
    assert update_indicators(con, "NOPE/USDT", "1m") == 0


def test_other_symbols_and_timeframes_untouched(con):
    insert(con, frame("ETH/USDT", "1m", random_walk(500, 1)))
    insert(con, frame("ETH/USDT", "5m", random_walk(500, 2), step=5 * MINUTE))
    insert(con, frame("BTC/USDT", "1m", random_walk(500, 3)))
    sentinel = ", ".join(f"{c} = 42.0" for c in INDICATOR_COLUMNS)
    con.execute(f"UPDATE ohlcv_data SET {sentinel}")
    update_indicators(con, "ETH/USDT", "1m")
    for symbol, timeframe in (("ETH/USDT", "5m"), ("BTC/USDT", "1m")):
        rows = stored(con, symbol, timeframe)
        for c in INDICATOR_COLUMNS:
            assert (rows[c] == 42.0).all(), (symbol, timeframe, c)
    rows = stored(con, "ETH/USDT", "1m")
    assert np.isnan(rows["macd"][:33]).all() and not (rows["macd"][33:] == 42.0).any()


def test_ingest_in_two_parts_equals_one_ingest(tmp_path):
    """Through the store's ingest (which calls update_indicators from the first new row)."""
    store = pytest.importorskip("ettlib.store")
    df = frame("ETH/USDT", "1m", random_walk(6_000, 12)).drop(columns=["symbol", "timeframe"])
    with store.DuckDBStorage(tmp_path / "two.duckdb") as two, store.DuckDBStorage(tmp_path / "one.duckdb") as one:
        two.ingest(df.iloc[:4_500], "ETH/USDT", "1m")
        two.ingest(df.iloc[4_500:], "ETH/USDT", "1m")
        one.ingest(df, "ETH/USDT", "1m")
        got, want = stored(two.con, "ETH/USDT", "1m"), stored(one.con, "ETH/USDT", "1m")
    close = df["close"].to_numpy()
    assert_matches({k: got[k] for k in INDICATOR_COLUMNS}, {k: want[k] for k in INDICATOR_COLUMNS}, close, 1e-12)
    reference = talib_indicators(df["high"].to_numpy(), df["low"].to_numpy(), close)
    assert_matches({k: got[k] for k in INDICATOR_COLUMNS}, reference, close)


def test_caller_owns_the_transaction(con):
    insert(con, frame("ETH/USDT", "1m", random_walk(200, 1)))
    con.execute("BEGIN TRANSACTION")
    update_indicators(con, "ETH/USDT", "1m")
    assert con.execute("SELECT count(sma_10) FROM ohlcv_data").fetchone()[0] == 191
    con.execute("ROLLBACK")
    assert con.execute("SELECT count(sma_10) FROM ohlcv_data").fetchone()[0] == 0


def test_symbol_is_a_parameter_never_sql(con):
    evil = "ETH/USDT'); DROP TABLE ohlcv_data; --"
    insert(con, frame(evil, "1m", random_walk(60, 1)))
    assert update_indicators(con, evil, "1m") == 60
    assert update_indicators(con, evil, "1m", since=30 * MINUTE) == 30
    assert con.execute("SELECT count(macd) FROM ohlcv_data WHERE symbol = ?", [evil]).fetchone()[0] == 27


def test_bad_names_are_refused(con):
    with pytest.raises(UnknownNameError):
        update_indicators(con, "ETH/USDT", "5min")
    with pytest.raises(ConfigError):
        update_indicators(con, "", "1m")
