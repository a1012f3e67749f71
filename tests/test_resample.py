"""Resampling into higher timeframes equals pandas' resample (epoch-aligned, open-time labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import START_MS, make_candles
from ettlib.errors import ConfigError
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.timeframes import timeframe_ms

SYMBOL = "ETH/USDT"
PANDAS_RULE = {"3m": "3min", "5m": "5min", "15m": "15min", "1h": "1h", "4h": "4h", "1d": "1D"}


def pandas_resample(base: pd.DataFrame, base_tf: str, tf: str) -> pd.DataFrame:
    """Reference: pandas resample, empty buckets dropped, only complete buckets kept."""
    indexed = base.set_index(pd.to_datetime(base.timestamp, unit="ms"))
    agg = indexed.resample(PANDAS_RULE[tf], origin="epoch", label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum"}
    )
    agg = agg[indexed.resample(PANDAS_RULE[tf], origin="epoch").size() > 0]  # no empty buckets
    bucket = np.asarray((agg.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1), np.int64)
    complete = bucket + timeframe_ms(tf) <= base.timestamp.max() + timeframe_ms(base_tf)
    out = agg[complete].reset_index(drop=True)
    out.insert(0, "timestamp", bucket[complete])
    return out


def stored(store, tf):
    arrays = store.read_candles(SYMBOL, tf, columns=OHLCV_COLUMNS)
    frame = pd.DataFrame(arrays.values, columns=OHLCV_COLUMNS)
    frame.insert(0, "timestamp", arrays.timestamps)
    return frame


def gappy_minutes() -> pd.DataFrame:
    """1m candles starting mid-bucket, with holes: a whole 5m bucket, bucket edges, a long gap,
    and ending mid-bucket (the last 5m/15m/1h buckets are incomplete)."""
    candles = make_candles(600, start=START_MS + 2 * 60_000, seed=11)
    holes = [*range(13, 18), 24, 25, 42, *range(100, 190), 301, 302, 303]
    return candles.drop(index=holes).iloc[:-3].reset_index(drop=True)


@pytest.mark.parametrize("tf", ["3m", "5m", "15m", "1h"])
def test_resample_equals_pandas_including_gaps(store, tf):
    base = gappy_minutes()
    store.ingest(base, SYMBOL, "1m")
    report = store.resample(SYMBOL, "1m", tf)
    expected = pandas_resample(base, "1m", tf)
    got = stored(store, tf)
    assert report.rows_added == len(expected) == len(got)
    np.testing.assert_array_equal(got.timestamp, expected.timestamp)
    np.testing.assert_array_equal(got[["open", "high", "low", "close"]], expected[["open", "high", "low", "close"]])
    np.testing.assert_allclose(got.volume, expected.volume, rtol=1e-12)
    assert (got.timestamp % timeframe_ms(tf) == 0).all()


def test_incomplete_last_bucket_appears_when_it_completes(store):
    minutes = make_candles(30, seed=5)  # 30 minutes from a whole hour
    store.ingest(minutes.iloc[:13], SYMBOL, "1m")
    first = store.resample(SYMBOL, "1m", "5m")
    assert first.rows_added == 2 and store.time_range(SYMBOL, "5m")[1] == START_MS + 5 * 60_000
    store.ingest(minutes.iloc[:15], SYMBOL, "1m")  # minute 14 closes the third bucket
    second = store.resample(SYMBOL, "1m", "5m")
    assert (second.rows_added, second.rows_unchanged) == (1, 2)
    pd.testing.assert_frame_equal(stored(store, "5m"), pandas_resample(minutes.iloc[:15], "1m", "5m"))


def test_a_bucket_with_a_hole_completes_when_a_later_candle_arrives_and_is_replaced_when_filled(store):
    minutes = make_candles(20, seed=6)
    store.ingest(minutes.drop(index=[4]), SYMBOL, "1m")  # minute 4 missing: bucket 0 has a hole
    store.resample(SYMBOL, "1m", "5m")
    assert stored(store, "5m").volume[0] == pytest.approx(minutes.volume[:4].sum())
    store.ingest(minutes, SYMBOL, "1m")  # the hole is filled
    report = store.resample(SYMBOL, "1m", "5m")
    assert report.rows_replaced == 1
    pd.testing.assert_frame_equal(stored(store, "5m"), pandas_resample(minutes, "1m", "5m"))


def test_resample_from_a_higher_base_and_indicators_are_stored(store):
    five = make_candles(24 * 12 * 3, timeframe="5m", seed=8)  # three days of 5m
    store.ingest(five, SYMBOL, "5m")
    store.resample(SYMBOL, "5m", "1h")
    hourly = stored(store, "1h")
    pd.testing.assert_frame_equal(hourly, pandas_resample(five, "5m", "1h"))
    sma = store.read_candles(SYMBOL, "1h", columns=("sma_10",)).column("sma_10")
    np.testing.assert_allclose(sma[9:], hourly.close.rolling(10).mean()[9:], rtol=1e-9)


@pytest.mark.parametrize("base, tf", [("5m", "3m"), ("1h", "1m"), ("1m", "1m")])
def test_resample_refuses_timeframes_that_are_not_whole_multiples(store, base, tf):
    with pytest.raises(ConfigError):
        store.resample(SYMBOL, base, tf)


def test_resample_of_nothing_writes_nothing(store):
    report = store.resample(SYMBOL, "1m", "5m")
    assert report.rows_read == 0 and store.count() == 0
