"""Higher-timeframe aggregation: batch (numpy) vs pandas, vs the incremental path, gaps."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import make_candles
from ettlib.replay.aggregate import IncrementalAggregator, aggregate_candles
from ettlib.errors import ConfigError, DataValidationError

M = 60_000


def _ohlcv(n, seed=0):
    """open, high, low, close, volume of ``make_candles`` (the grid's timestamps come from each test)."""
    frame = make_candles(n, seed=seed)
    return tuple(frame[c].to_numpy() for c in ("open", "high", "low", "close", "volume"))


def test_complete_data_matches_pandas_resample():
    n = 600
    ts = np.arange(n, dtype=np.int64) * M
    o, h, l, c, v = _ohlcv(n)
    frame = pd.DataFrame({"open": o, "high": h, "low": l, "close": c, "volume": v},
                         index=pd.to_datetime(ts, unit="ms"))
    for tf, rule in (("5m", "5min"), ("15m", "15min"), ("1h", "1h")):
        agg = aggregate_candles(ts, o, h, l, c, v, "1m", tf)
        want = frame.resample(rule).agg({"open": "first", "high": "max", "low": "min",
                                         "close": "last", "volume": "sum"})
        assert agg.timestamp.tolist() == list((want.index - pd.Timestamp(0)) // pd.Timedelta(milliseconds=1))
        for col in ("open", "high", "low", "close"):
            assert np.array_equal(getattr(agg, col), want[col].to_numpy())
        np.testing.assert_allclose(agg.volume, want["volume"].to_numpy(), rtol=1e-12)
        step = {"5m": 5, "15m": 15, "1h": 60}[tf] * M
        assert np.array_equal(agg.close_time, agg.timestamp + step)
        assert agg.on_time.all()


def test_volume_is_summed_in_time_order_bit_for_bit():
    n = 240
    ts = np.arange(n, dtype=np.int64) * M
    o, h, l, c, v = _ohlcv(n, seed=3)
    agg = aggregate_candles(ts, o, h, l, c, v, "1m", "1h")
    for k in range(4):
        acc = 0.0
        for x in v[k * 60:(k + 1) * 60].tolist():
            acc += x
        assert agg.volume[k] == acc


def test_gapped_bucket_completes_when_a_later_candle_arrives():
    # 5m bucket [0, 5) lacks minute 4; the next candle (minute 7) closes at 8.
    minutes = np.array([0, 1, 2, 3, 7, 8, 9])
    ts = minutes * M
    one = np.ones(len(ts))
    agg = aggregate_candles(ts, one, one + minutes, one - 0.5, one * minutes, one, "1m", "5m")
    assert agg.timestamp.tolist() == [0, 5 * M]
    assert agg.close_time.tolist() == [8 * M, 10 * M]  # late: close of minute 7; on time
    assert agg.on_time.tolist() == [False, True]
    assert agg.high.tolist() == [4.0, 10.0]  # 1 + minute, max over the bucket
    assert agg.close.tolist() == [3.0, 9.0]
    assert agg.volume.tolist() == [4.0, 3.0]


def test_last_bucket_without_its_closing_candle_never_completes():
    ts = np.array([0, 1, 2, 5, 6]) * M  # bucket [5, 10) lacks minutes 7..9
    one = np.ones(len(ts))
    agg = aggregate_candles(ts, one, one, one, one, one, "1m", "5m")
    assert agg.timestamp.tolist() == [0]
    assert agg.close_time.tolist() == [6 * M]  # minute 5 closes at 6: bucket 0 is over


def test_late_and_on_time_candles_at_the_same_instant():
    # bucket [0,5) lacks minute 4; bucket [5,10) holds only minute 9 (its closer).
    ts = np.array([0, 1, 9]) * M
    one = np.ones(3)
    agg = aggregate_candles(ts, one, one, one, one, one, "1m", "5m")
    assert agg.timestamp.tolist() == [0, 5 * M]
    assert agg.close_time.tolist() == [10 * M, 10 * M]
    assert agg.on_time.tolist() == [False, True]


def test_same_timeframe_returns_the_base_candles():
    ts = np.array([0, 2]) * M
    one = np.ones(2)
    agg = aggregate_candles(ts, one, one, one, one, one, "1m", "1m")
    assert agg.close_time.tolist() == [M, 3 * M] and agg.on_time.all()


@pytest.mark.parametrize("ts, row", [([0, 120_000, 60_000], 3), ([0, 0], 2), ([0, 30_000], 2)])
def test_bad_timestamps_are_rejected_with_their_row(ts, row):
    one = np.ones(len(ts))
    with pytest.raises(DataValidationError) as err:
        aggregate_candles(np.array(ts), one, one, one, one, one, "1m", "5m")
    assert err.value.row == row and err.value.column == "timestamp"


def test_timeframe_must_be_a_multiple_of_the_base():
    with pytest.raises(ConfigError):
        aggregate_candles(np.array([0]), [1.0], [1.0], [1.0], [1.0], [1.0], "5m", "1m")
    with pytest.raises(ConfigError):
        IncrementalAggregator("2h", "3m")


def test_incremental_rejects_out_of_order_candles():
    agg = IncrementalAggregator("1m", "5m")
    agg.update(60_000, 1, 1, 1, 1, 1)
    with pytest.raises(DataValidationError):
        agg.update(60_000, 1, 1, 1, 1, 1)
    with pytest.raises(DataValidationError):
        agg.update(90_000, 1, 1, 1, 1, 1)


@settings(max_examples=60, deadline=None)
@given(
    gaps=st.lists(st.integers(1, 9), min_size=1, max_size=120),
    tf=st.sampled_from(["3m", "5m", "15m", "1h"]),
    seed=st.integers(0, 1000),
)
def test_incremental_equals_batch(gaps, tf, seed):
    ts = np.cumsum(np.array(gaps, dtype=np.int64)) * M
    o, h, l, c, v = _ohlcv(len(ts), seed)
    batch = aggregate_candles(ts, o, h, l, c, v, "1m", tf)
    agg = IncrementalAggregator("1m", tf)
    live = [bar for row in zip(ts.tolist(), o.tolist(), h.tolist(), l.tolist(), c.tolist(), v.tolist())
            for bar in agg.update(*row)]
    expect = list(zip(batch.timestamp.tolist(), batch.open.tolist(), batch.high.tolist(),
                      batch.low.tolist(), batch.close.tolist(), batch.volume.tolist(),
                      batch.close_time.tolist(), batch.on_time.tolist()))
    assert live == expect  # exact, volumes included
    # completion: never before the close of the bucket's last base candle;
    # on time at the bucket's end, else at the close of the next candle.
    from ettlib.timeframes import timeframe_ms

    tf_ms = timeframe_ms(tf)
    for bar_ts, *_, known, on_time in expect:
        inside = ts[(ts >= bar_ts) & (ts < bar_ts + tf_ms)]
        assert known >= inside.max() + M
        if on_time:
            assert known == bar_ts + tf_ms == inside.max() + M
        else:
            assert known == ts[ts >= bar_ts + tf_ms].min() + M
