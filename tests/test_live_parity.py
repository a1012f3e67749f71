"""Live parity: candles pushed one at a time give exactly the replay's events."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from conftest import make_candles
from _replay_reference import (
    MINUTE,
    Recorder,
    reference_events,
    strip_strength,
    write_candles,
)
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, SubscriberError
from ettlib.replay import ReplayEngine
from ettlib.store.schema import ensure_schema

TFS = ("1m", "3m", "5m", "15m", "1h")


def _market(seed, symbols=("ETH/USDT", "BTC/USDT"), count=500, gap_prob=0.1):
    data = {s: make_candles(count, start=0, seed=10 * seed + i, gap_prob=gap_prob, tick=0.05 if i else 0.0)
            for i, s in enumerate(symbols)}
    con = duckdb.connect()
    ensure_schema(con)
    for s, frame in data.items():
        write_candles(con, s, "1m", frame)
    return con, data


def _subscribe_all(provider, symbols, step_tfs=("5m", "1m")):
    rec = Recorder(provider, symbols, TFS)
    for s in symbols:
        for tf in step_tfs:
            provider.subscribe_inference_step(rec, s, tf)
    return rec


def _push_all(provider, data, end):
    """Push every candle with open time <= end, in (close time, symbol) order (a live feed)."""
    rows = sorted(
        (int(r.timestamp) + MINUTE, s, r) for s, f in data.items()
        for r in f.itertuples(index=False) if r.timestamp <= end)
    returned = []
    for _, s, r in rows:
        returned += provider.push_candle(s, "1m", r.timestamp, r.open, r.high, r.low, r.close,
                                         r.volume)
    return returned


@pytest.mark.parametrize("seed, n", [(1, 1), (2, 1), (3, 2)])
def test_pushed_candles_give_the_replay_events(seed, n):
    con, data = _market(seed)
    end = 10**9
    symbols = sorted(data)

    replay_provider = DataProvider()
    replay_rec = _subscribe_all(replay_provider, symbols)
    engine = ReplayEngine(con, replay_provider, symbols, 0, end, timeframes=TFS, pivot_n=n)
    engine.run()

    live_provider = DataProvider()
    live_rec = _subscribe_all(live_provider, symbols)
    for s in symbols:
        live_provider.start_live(s, timeframes=TFS, pivot_n=n)
    returned = _push_all(live_provider, data, end)

    assert len(replay_rec.seen) > 1500
    assert live_rec.seen == replay_rec.seen  # same events, same order, same values (strength too)
    assert live_rec.times == replay_rec.times  # and the same clock at each delivery
    assert returned == replay_rec.seen  # push_candle returns what it delivered
    gaps = np.diff(data[symbols[0]]["timestamp"].to_numpy())
    assert (gaps > MINUTE).any()  # the data really had gaps


def test_live_feed_defaults_follow_the_subscriptions_like_the_replay():
    con, data = _market(7, symbols=("ETH/USDT",), count=300)
    replay_provider, live_provider = DataProvider(), DataProvider()
    got = {}
    for name, provider in (("replay", replay_provider), ("live", live_provider)):
        seen = got.setdefault(name, [])
        provider.subscribe_candle_completion(seen.append, "ETH/USDT", "15m")
        provider.subscribe_pivot_events(seen.append, "ETH/USDT", "5m", ["L1L", "L2H", "L3L"])
        provider.subscribe_inference_step(seen.append, "ETH/USDT", "5m")
    ReplayEngine(con, replay_provider, "ETH/USDT", 0, 10**9).run()
    _push_all(live_provider, data, 10**9)  # first push starts the feed with the defaults
    assert got["live"] == got["replay"] and len(got["live"]) > 50


def test_push_candle_rejects_bad_candles_and_changes_nothing():
    provider = DataProvider()
    seen = []
    provider.subscribe_candle_completion(seen.append, "X", "5m")
    provider.start_live("X", timeframes=["1m", "5m"])
    for m in range(3):
        provider.push_candle("X", "1m", m * MINUTE, 10, 11, 9, 10, 1)
    with pytest.raises(ConfigError):
        provider.push_candle("X", "5m", 3 * MINUTE, 10, 11, 9, 10, 1)  # not the base
    for bad in ((2 * MINUTE, 10, 11, 9, 10, 1),  # not after the last one
                (3 * MINUTE + 5, 10, 11, 9, 10, 1),  # off the grid
                (3 * MINUTE, 10, 11, 12, 10, 1),  # low above high
                (3 * MINUTE, 10, float("nan"), 9, 10, 1)):
        with pytest.raises(ValueError):
            provider.push_candle("X", "1m", *bad)
    provider.push_candle("X", "1m", 3 * MINUTE, 10, 11, 9, 10, 1)
    provider.push_candle("X", "1m", 4 * MINUTE, 10, 12, 8, 10, 1)
    assert [(e.timestamp, e.high, e.low, e.volume) for e in seen] == [(0, 12.0, 8.0, 5.0)]


def test_live_callback_errors_follow_the_policy():
    provider = DataProvider(on_error="raise")

    def boom(event):
        raise KeyError("x")

    provider.subscribe_candle_completion(boom, "X", "1m")
    with pytest.raises(SubscriberError) as err:
        provider.push_candle("X", "1m", 0, 10, 11, 9, 10, 1)
    assert err.value.event.timestamp == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    gaps=st.lists(st.integers(1, 12), min_size=1, max_size=150),
    seed=st.integers(0, 10_000),
    n=st.integers(1, 2),
    levels=st.integers(1, 4),
    tick=st.sampled_from([0.0, 0.5]),
)
def test_property_live_equals_replay_equals_reference(gaps, seed, n, levels, tick):
    frame = make_candles(len(gaps), start=0, seed=seed, tick=tick)
    frame["timestamp"] = np.cumsum(np.array(gaps, dtype=np.int64)) * MINUTE
    con = duckdb.connect()
    ensure_schema(con)
    write_candles(con, "X", "1m", frame)
    tfs = ("1m", "3m", "15m")
    replayed = list(ReplayEngine(con, DataProvider(pivot_levels=levels), "X", 0, 10**9,
                                 timeframes=tfs, pivot_n=n, step_timeframes=["3m"]).iter_events())
    provider = DataProvider(pivot_levels=levels)
    provider.start_live("X", timeframes=tfs, pivot_n=n, step_timeframes=["3m"])
    live = _push_all(provider, {"X": frame}, 10**9)
    assert live == replayed
    want = reference_events({"X": frame}, 0, 10**9, timeframes=tfs, n=n, levels=levels,
                            step_streams={("X", "3m")})
    assert strip_strength(replayed) == want
