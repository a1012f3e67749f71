"""No look-ahead, proven: times of delivery, completions, confirmations, cuts, windows."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest
from conftest import make_candles
from _replay_reference import (
    MINUTE,
    Recorder,
    pivots_reference,
    write_candles,
)

from ettlib.replay.provider import DataProvider
from ettlib.errors import LookAheadError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.replay import ReplayEngine
from ettlib.store.schema import ensure_schema
from ettlib.timeframes import TIMEFRAMES

TFS = ("1m", "5m", "15m", "1h")
SYMBOLS = ["BTC/USDT", "ETH/USDT"]


@pytest.fixture(scope="module")
def market():
    data = {"ETH/USDT": make_candles(600, start=0, seed=230, gap_prob=0.1),
            "BTC/USDT": make_candles(600, start=0, seed=231, gap_prob=0.02, tick=0.05)}
    con = duckdb.connect()
    ensure_schema(con)
    for s, f in data.items():
        write_candles(con, s, "1m", f)
    return con, data


def _full(con, provider=None, end=10**9, **kw):
    return ReplayEngine(con, provider or DataProvider(), SYMBOLS, 0, end, timeframes=TFS,
                        step_timeframes=["5m"], **kw)


def test_every_event_is_delivered_at_its_knowable_time(market):
    con, _ = market
    provider = DataProvider()
    rec = Recorder(provider, SYMBOLS, TFS)
    for s in SYMBOLS:
        provider.subscribe_inference_step(rec, s, "5m")
    _full(con, provider).run()
    assert len(rec.seen) > 2000
    assert [e.knowable_time for e in rec.seen] == rec.times
    assert all(a <= b for a, b in zip(rec.times, rec.times[1:]))  # the clock never goes back


def test_higher_candles_never_complete_before_their_last_base_candle_closes(market):
    con, data = market
    events = [e for e in _full(con).iter_events()
              if isinstance(e, CandleCompletionEvent) and e.timeframe != "1m"]
    assert events
    for e in events:
        ts = data[e.symbol]["timestamp"].to_numpy()
        tf = TIMEFRAMES[e.timeframe]
        in_bucket = ts[(ts >= e.timestamp) & (ts < e.timestamp + tf)]
        assert e.close_time >= in_bucket.max() + MINUTE
        assert e.close_time >= e.timestamp + tf  # never before the bucket is over
        # and every base candle it aggregates had closed by then
        assert (in_bucket + MINUTE <= e.close_time).all()


def test_pivots_are_emitted_when_the_data_known_then_confirms_them(market):
    """Recompute each pivot from the bars known at its confirmation, and no later."""
    con, _ = market
    events = list(_full(con).iter_events())
    bars = {}
    for e in events:
        if isinstance(e, CandleCompletionEvent):
            bars.setdefault((e.symbol, e.timeframe), []).append(
                (e.timestamp, e.high, e.low, e.close_time))
    pivots = [e for e in events if isinstance(e, PivotEvent)]
    assert len(pivots) > 500
    rng = np.random.default_rng(0)
    for p in (pivots[i] for i in rng.choice(len(pivots), 60, replace=False)):
        series = bars[(p.symbol, p.timeframe)]
        known = [b for b in series if b[3] <= p.confirmed_at]
        before = [b for b in series if b[3] < p.confirmed_at]
        found = {(lv, lo, ts) for lv, lo, ts, _, _ in pivots_reference(known, 1, 3)}
        earlier = {(lv, lo, ts) for lv, lo, ts, _, _ in pivots_reference(before, 1, 3)}
        key = (p.level, p.is_low, p.timestamp)
        assert key in found  # derivable from what was known at confirmed_at
        assert key not in earlier  # and not from what was known just before
        pivot_bar = next(i for i, b in enumerate(series) if b[0] == p.timestamp)
        assert p.confirmed_at >= series[pivot_bar + 1][3]  # at least one bar after (n=1)


@pytest.mark.parametrize("cut_minutes", [37, 181, 300, 455])
def test_a_replay_cut_at_t_is_the_prefix_of_the_full_replay(market, cut_minutes):
    con, _ = market
    full = list(_full(con).iter_events())
    t = cut_minutes * MINUTE
    prefix = [e for e in full if e.knowable_time <= t]
    # cut by run(until=t)
    provider = DataProvider()
    rec = Recorder(provider, SYMBOLS, TFS)
    engine = _full(con, provider)
    engine.run(until=t)
    assert rec.seen == [e for e in prefix if type(e).__name__ != "InferenceStepEvent"]
    assert engine.clock.now() == t
    # cut by replaying only the candles that had closed by t
    cut = list(_full(con, end=t - MINUTE).iter_events())
    assert cut == prefix


def test_cache_refuses_any_window_not_yet_knowable(market):
    con, _ = market
    provider = DataProvider()
    engine = _full(con, provider)
    refused, served = [], []

    def model(event):  # what a model could try at each inference step
        now = engine.clock.now()
        assert now == event.timestamp
        last = now - 5 * MINUTE  # the candle that just closed
        served.append(engine.cache.window(event.symbol, "5m", last - 20 * 5 * MINUTE, last))
        for end in (last + MINUTE, now, now + 10**6):  # 5m candles not closed by now
            with pytest.raises(LookAheadError):
                engine.cache.window(event.symbol, "5m", last - 100 * MINUTE, end)
        assert engine.cache.window(event.symbol, "1m", now - MINUTE, now - MINUTE) is not None
        for end in (now, now + 10**6):  # 1m candles still open (or not begun)
            with pytest.raises(LookAheadError):
                engine.cache.window(event.symbol, "1m", end, end)
        refused.append(event)

    for s in SYMBOLS:
        provider.subscribe_inference_step(model, s, "5m")
    engine.run()
    assert len(refused) > 100
    # 5m rows are not stored in this database: the cache serves them empty
    # (what DuckDB holds), never None inside its range
    assert all(w is not None for w in served)
