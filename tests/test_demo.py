"""Demo candles: deterministic, valid, fast, and market-like (incl. pivot frequency)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from ettlib.store.demo import DEFAULT_START, demo_candles, write_demo_data
from ettlib.errors import ConfigError, UnknownNameError

MINUTE = 60_000
HOUR = 60 * MINUTE


@pytest.fixture(scope="module")
def month() -> pd.DataFrame:
    return demo_candles()  # the defaults: ETH/USDT, 28 days, seed 7


def naive_pivots(high, low, levels: int = 3) -> list[tuple[list[int], list[int]]]:
    """Williams pivots per docs/design.md (n = 1), by plain loops: [(high bars, low bars)] per level."""
    highs = [i for i in range(1, len(high) - 1) if high[i] >= high[i - 1] and high[i] > high[i + 1]]
    lows = [i for i in range(1, len(low) - 1) if low[i] <= low[i - 1] and low[i] < low[i + 1]]
    out = [(highs, lows)]
    for _ in range(1, levels):
        highs = [
            highs[j]
            for j in range(1, len(highs) - 1)
            if high[highs[j]] >= high[highs[j - 1]] and high[highs[j]] > high[highs[j + 1]]
        ]
        lows = [
            lows[j]
            for j in range(1, len(lows) - 1)
            if low[lows[j]] <= low[lows[j - 1]] and low[lows[j]] < low[lows[j + 1]]
        ]
        out.append((highs, lows))
    return out


def resample(df: pd.DataFrame, minutes: int) -> pd.DataFrame:
    indexed = df.set_index(pd.to_datetime(df["timestamp"], unit="ms"))
    return indexed.resample(f"{minutes}min").agg({"high": "max", "low": "min"}).dropna()


def autocorr(x: np.ndarray, lag: int) -> float:
    x = x - x.mean()
    return float((x[:-lag] * x[lag:]).mean() / x.var())


# ---------------------------------------------------------------- shape and validity


def test_shape_grid_and_dtypes(month):
    assert list(month.columns) == ["timestamp", "open", "high", "low", "close", "volume"]
    assert len(month) == 28 * 1440
    ts = month["timestamp"].to_numpy()
    assert ts.dtype == np.int64
    assert ts[0] == DEFAULT_START == 1_704_067_200_000  # 2024-01-01 00:00 UTC
    assert pd.Timestamp(ts[0], unit="ms") == pd.Timestamp("2024-01-01")
    assert (np.diff(ts) == MINUTE).all() and (ts % MINUTE == 0).all()
    for c in ("open", "high", "low", "close", "volume"):
        assert month[c].dtype == np.float64


@pytest.mark.parametrize("seed", [7, 0, 1, 2, 123456789])
def test_prices_positive_ohlc_consistent_no_nan(seed):
    df = demo_candles(days=7, seed=seed)
    values = df[["open", "high", "low", "close", "volume"]].to_numpy()
    assert np.isfinite(values).all()
    assert (df[["open", "high", "low", "close"]] > 0).all().all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()
    assert (df["high"] >= df[["open", "close"]].max(axis=1)).all()
    assert (df["volume"] > 0).all()
    # Prices sit on a 0.01 tick for ETH-sized prices.
    cents = df[["open", "high", "low", "close"]].to_numpy() * 100
    assert np.allclose(cents, np.round(cents), atol=1e-6)


def test_same_seed_same_frame_other_seed_or_symbol_differs():
    a = demo_candles(days=3, seed=11)
    assert a.equals(demo_candles(days=3, seed=11))
    assert not np.allclose(a["close"], demo_candles(days=3, seed=12)["close"])
    other = demo_candles("BTC/USDT", days=3, seed=11)
    assert not np.allclose(a["close"] / a["close"].iloc[0], other["close"] / other["close"].iloc[0])
    assert other["close"].iloc[0] > 10_000  # BTC-sized
    # The start time shifts the grid.
    shifted = demo_candles(days=1, seed=11, start=DEFAULT_START + 5 * MINUTE)
    assert shifted["timestamp"].iloc[0] == DEFAULT_START + 5 * MINUTE


def test_other_timeframes_are_on_their_grid():
    df = demo_candles(days=2, seed=3, timeframe="5m")
    assert len(df) == 2 * 288
    assert (np.diff(df["timestamp"]) == 5 * MINUTE).all()
    assert (df["low"] <= df[["open", "close"]].min(axis=1)).all()


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"days": 0}, ConfigError),
        ({"days": -1}, ConfigError),
        ({"days": float("nan")}, ConfigError),
        ({"start": DEFAULT_START + 1}, ConfigError),
        ({"start": "2024-01-01"}, ConfigError),
        ({"seed": 1.5}, ConfigError),
        ({"symbol": ""}, ConfigError),
        ({"timeframe": "1min"}, UnknownNameError),
    ],
)
def test_bad_arguments_are_refused(kwargs, error):
    with pytest.raises(error):
        demo_candles(**kwargs)


def test_fast():
    demo_candles(days=1)
    began = time.perf_counter()
    demo_candles(days=28)
    month_s = time.perf_counter() - began
    began = time.perf_counter()
    year = demo_candles(days=365)
    year_s = time.perf_counter() - began
    assert len(year) == 525_600
    assert month_s < 0.5, f"28 days took {month_s:.3f} s"
    assert year_s < 5.0, f"365 days took {year_s:.2f} s"


# ---------------------------------------------------------------- market-like


def test_volatility_clusters_returns_hardly_do(month):
    r = np.diff(np.log(month["close"].to_numpy()))
    for lag in (2, 5, 60):
        assert abs(autocorr(r, lag)) < 0.05, lag  # beyond one minute, no free lunch in the returns
    for lag in (1, 5, 60):
        assert autocorr(np.abs(r), lag) > 0.08, lag  # but |returns| cluster


@pytest.mark.parametrize("seed", [7, 0, 1])
def test_one_minute_returns_bounce_back(seed):
    """Microstructure noise: lag-1 autocorrelation of 1m returns is about -0.15 (documented
    range -0.2 .. -0.1), so a move partly reverses the next minute; at 5m it is far weaker."""
    df = demo_candles(days=7, seed=seed)
    r = np.diff(np.log(df["close"].to_numpy()))
    assert -0.2 < autocorr(r, 1) < -0.1
    # The same reversal seen as a rule: betting against the last move wins more often than not.
    last, following = np.sign(r[:-1]), np.sign(r[1:])
    moved = (last != 0) & (following != 0)
    assert ((-last == following) & moved).sum() / moved.sum() > 0.53
    five = np.diff(np.log(demo_candles(days=7, seed=seed, timeframe="5m")["close"].to_numpy()))
    assert abs(autocorr(five, 1)) < 0.08


def test_fat_tails(month):
    r = np.diff(np.log(month["close"].to_numpy()))
    assert pd.Series(r).kurt() > 3.0  # a normal has 0 excess kurtosis
    z = (r - r.mean()) / r.std()
    assert (np.abs(z) > 5).mean() > 20 * 5.7e-7  # far more 5-sigma moves than a normal


def test_intraday_seasonality_of_volatility_and_volume(month):
    hour = (month["timestamp"].to_numpy() % 86_400_000) // HOUR
    r = np.abs(np.diff(np.log(month["close"].to_numpy())))
    table = pd.DataFrame({"hour": hour[1:], "abs_r": r, "volume": month["volume"].to_numpy()[1:]})
    by_hour = table.groupby("hour").mean()
    assert by_hour["abs_r"].max() / by_hour["abs_r"].min() > 1.4
    assert by_hour["volume"].max() / by_hour["volume"].min() > 1.5
    # Busiest around the US open, quietest in the Asian night.
    assert 13 <= by_hour["volume"].idxmax() <= 16
    assert by_hour["volume"].idxmin() <= 6 or by_hour["volume"].idxmin() >= 22
    # Volume rises with activity.
    assert np.corrcoef(r, month["volume"].to_numpy()[1:])[0, 1] > 0.2


def test_trends_and_reversals(month):
    close = month["close"].to_numpy()
    six_hours = np.log(close[360::360] / close[:-360:360])
    assert six_hours.max() > 0.015 and six_hours.min() < -0.015  # trends both ways
    signs = np.sign(six_hours[six_hours != 0])
    assert (np.diff(signs) != 0).sum() >= 10  # and they reverse
    # Prices stay in a plausible band over four weeks.
    assert 0.4 < close.min() / close[0] and close.max() / close[0] < 2.5


def test_level_3_pivots_every_few_hours(month):
    high, low = month["high"].to_numpy(), month["low"].to_numpy()
    hours = 28 * 24
    levels_1m = naive_pivots(high, low)
    l3_1m = sorted(levels_1m[2][0] + levels_1m[2][1])
    assert hours / 6 < len(l3_1m) < hours * 4  # 1m: one every 15 min .. 6 h
    assert np.diff(l3_1m).max() < 12 * 60  # never half a day without one
    five = resample(month, 5)
    levels_5m = naive_pivots(five["high"].to_numpy(), five["low"].to_numpy())
    l3_5m = len(levels_5m[2][0]) + len(levels_5m[2][1])
    assert hours / 12 < l3_5m < hours / 1.5  # 5m: one every 1.5 .. 12 h


def test_pivot_counts_agree_with_ettlib_pivots(month):
    pivots = pytest.importorskip("ettlib.replay.pivots")
    day = month.iloc[: 3 * 1440]
    high, low = day["high"].to_numpy(), day["low"].to_numpy()
    table = pivots.detect_pivots(day["timestamp"].to_numpy(), high, low, "1m", n=1, levels=3)
    naive = naive_pivots(high, low)
    for level in (1, 2, 3):
        got_highs = sorted(table.bar_index[(table.level == level) & ~table.is_low].tolist())
        got_lows = sorted(table.bar_index[(table.level == level) & table.is_low].tolist())
        assert got_highs == naive[level - 1][0], level
        assert got_lows == naive[level - 1][1], level


# ---------------------------------------------------------------- storage


def test_write_demo_data_ingests_with_indicators(tmp_path):
    store = pytest.importorskip("ettlib.store")
    with store.DuckDBStorage(tmp_path / "demo.duckdb") as storage:
        report = write_demo_data(storage, days=2, seed=5)
        assert report.rows_added == 2 * 1440
        again = write_demo_data(storage, days=2, seed=5)
        assert again.rows_added == 0 and again.rows_unchanged == 2 * 1440
        frame = demo_candles(days=2, seed=5)
        stored = storage.con.execute(
            "SELECT timestamp, open, high, low, close, volume, macd, rsi_14 FROM ohlcv_data "
            "WHERE symbol = ? AND timeframe = ? ORDER BY timestamp",
            ["ETH/USDT", "1m"],
        ).fetchdf()
        for c in ("timestamp", "open", "high", "low", "close", "volume"):
            np.testing.assert_array_equal(stored[c].to_numpy(), frame[c].to_numpy())
        assert stored["macd"].notna().sum() == 2 * 1440 - 33
        assert stored["rsi_14"].notna().sum() == 2 * 1440 - 14


@pytest.mark.parametrize("seed", [7, 3])
def test_documented_structure_is_learnable_by_simple_rules(seed):
    """What the docstring promises a model can learn, shown by hand-written rules on 2 days."""
    pivots = pytest.importorskip("ettlib.replay.pivots")
    df = demo_candles(days=2, seed=seed)
    close = df["close"].to_numpy()
    # Next close: shrinking the last move by -0.15 beats persistence on MAE.
    last, nxt, prev = close[1:-1], close[2:], close[:-2]
    shrunk = last - 0.15 * (last - prev)
    assert np.abs(nxt - shrunk).mean() < 0.995 * np.abs(nxt - last).mean()
    # Turning points: frames up to 5 candles before a level-2 pivot (docs/design.md matching),
    # labelled BUY for a low; "BUY when the last 2 closes fell" beats the majority label.
    table = pivots.detect_pivots(df["timestamp"].to_numpy(), df["high"].to_numpy(),
                                 df["low"].to_numpy(), "1m", n=1, levels=2)
    hits, labels = [], []
    for bar, is_low in zip(table.bar_index[table.level == 2], table.is_low[table.level == 2]):
        for frame in range(max(bar - 5, 3), bar + 1):  # the frame's last closed candle: frame - 1
            hits.append((close[frame - 1] < close[frame - 3]) == is_low)
            labels.append(is_low)
    majority = max(np.mean(labels), 1 - np.mean(labels))
    assert len(hits) > 1000
    assert np.mean(hits) > majority + 0.04
