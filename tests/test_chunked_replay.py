"""A replay planned span by span gives exactly the whole range's events, in bounded memory.

The carried state (:mod:`ettlib.replay.carry`) is checked against whole-range
aggregation and pivot detection on random series cut at random places; the
engine is checked event for event against one whole-range span, with span
boundaries that cut higher-timeframe buckets, gaps (buckets missing their
closing candle) and pivots of every level before their confirmation.
"""

from __future__ import annotations

import numpy as np
import pytest

from conftest import START_MS, make_candles
from ettlib.errors import LookAheadError
from ettlib.replay.aggregate import aggregate_checked
from ettlib.replay.carry import AggregationCarry, PivotCarry
from ettlib.replay.engine import ReplayCursor, ReplayEngine
from ettlib.replay.events import pivot_types_up_to
from ettlib.replay.pivots import detect_pivots
from ettlib.replay.provider import DataProvider
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.workbench import Workbench

M = 60_000
SYMBOLS = ("AAA", "BBB")
TIMEFRAMES = ["1m", "3m", "5m", "15m", "1h"]


def _series(n: int, seed: int, gap_p: float = 0.02):
    """``make_candles`` as arrays: timestamps, open, high, low, close, volume (gaps up to 19)."""
    frame = make_candles(n, seed=seed, gap_prob=gap_p, max_gap=19)
    return (frame["timestamp"].to_numpy(np.int64), *(frame[c].to_numpy() for c in
                                                      ("open", "high", "low", "close", "volume")))


@pytest.mark.parametrize("seed", range(12))
def test_carried_aggregation_and_pivots_equal_the_whole_range(seed):
    ts, o, h, l, c, v = _series(2_500, seed)
    rng = np.random.default_rng(100 + seed)
    cuts = np.sort(rng.choice(np.arange(1, len(ts)), int(rng.integers(1, 60)), replace=False))
    spans = list(zip(np.r_[0, cuts], np.r_[cuts, len(ts)]))
    for timeframe, tf_ms in (("5m", 5 * M), ("1h", 60 * M)):
        whole = aggregate_checked(ts, o, h, l, c, v, M, tf_ms)
        carry = AggregationCarry(M, tf_ms)
        parts = [carry.feed(*(x[a:b] for x in (ts, o, h, l, c, v))) for a, b in spans]
        for name in ("timestamp", "open", "high", "low", "close", "volume", "close_time", "on_time"):
            np.testing.assert_array_equal(np.concatenate([getattr(p, name) for p in parts]),
                                          getattr(whole, name), err_msg=name)
        for n, levels in ((1, 3), (2, 5), (1, 5)):
            full = detect_pivots(whole.timestamp, whole.high, whole.low, timeframe, n=n, levels=levels,
                                 close_times=whole.close_time)
            pivots = PivotCarry(timeframe, n, levels)
            tables = [pivots.feed(p.timestamp, p.high, p.low, p.close_time) for p in parts]
            for name in ("timestamp", "price", "level", "is_low", "strength", "confirmed_at"):
                np.testing.assert_array_equal(np.concatenate([getattr(t, name) for t in tables]),
                                              getattr(full, name), err_msg=f"{timeframe} n={n} {name}")


def test_the_pivot_tail_stays_short():
    ts, o, h, l, c, v = _series(60_000, 3, gap_p=0.0)
    carry = PivotCarry("1m", 1, 3)
    longest = 0
    for a in range(0, len(ts), 1_000):
        carry.feed(ts[a:a + 1000], h[a:a + 1000], l[a:a + 1000], ts[a:a + 1000] + M)
        longest = max(longest, len(carry._bars[0]))
    assert longest < 500  # bars back to the pivots still deciding later ones, not the range


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    wb = Workbench(tmp_path_factory.mktemp("chunks") / "ett.duckdb")
    import pandas as pd

    for k, symbol in enumerate(SYMBOLS):
        ts, o, h, l, c, v = _series(4_000, 20 + k)
        wb.store.ingest(pd.DataFrame({"timestamp": ts, "open": o, "high": h, "low": l, "close": c,
                                      "volume": v}), symbol, "1m")
    yield wb.store
    wb.close()


def _events(store, span_candles, *, start=START_MS, fast=False, levels=5, n=1):
    provider = DataProvider(pivot_levels=levels)
    engine = ReplayEngine(store, provider, SYMBOLS, start, START_MS + 6_000 * M, timeframes=TIMEFRAMES,
                          pivot_levels=levels, pivot_n=n, step_timeframes="all", span_candles=span_candles)
    if not fast:
        for symbol in SYMBOLS:
            for tf in TIMEFRAMES:  # steps are events only while subscribed
                provider.subscribe_inference_step(lambda step: None, symbol, tf)
        return list(engine.iter_events()), engine
    got = []
    for symbol in SYMBOLS:
        for tf in TIMEFRAMES:
            provider.subscribe_candle_completion(got.append, symbol, tf)
            provider.subscribe_pivot_events(got.append, symbol, tf, pivot_types_up_to(levels))
            provider.subscribe_inference_step(got.append, symbol, tf)
    engine.run()
    return got, engine


@pytest.mark.parametrize("span", [61, 97, 1_000])
def test_spans_give_the_whole_ranges_events(store, span):
    whole, _ = _events(store, 10**9)
    assert len(whole) > 10_000 and {type(e).__name__ for e in whole} == {
        "CandleCompletionEvent", "PivotEvent", "InferenceStepEvent"}
    assert any(getattr(e, "level", 0) == 5 for e in whole)  # pivots of every level are cut
    assert any(e.timeframe == "1h" and getattr(e, "level", 0) >= 2 for e in whole)
    chunked, engine = _events(store, span)
    assert chunked == whole
    fast, _ = _events(store, span, fast=True)
    assert fast == whole
    # a start that cuts buckets of every higher timeframe, and other pivot parameters
    cut = START_MS + 37 * M
    assert _events(store, span, start=cut, n=2)[0] == _events(store, 10**9, start=cut, n=2)[0]


def test_seek_and_cursors_cross_spans(store):
    whole, reference = _events(store, 10**9)
    provider = DataProvider(pivot_levels=5)
    for symbol in SYMBOLS:
        for tf in TIMEFRAMES:
            provider.subscribe_inference_step(lambda step: None, symbol, tf)
    engine = ReplayEngine(store, provider, SYMBOLS, START_MS, START_MS + 6_000 * M, timeframes=TIMEFRAMES,
                          pivot_levels=5, step_timeframes="all", span_candles=211)
    assert len(engine) == len(whole) == len(reference)
    t = whole[len(whole) // 2].knowable_time
    engine.seek(t)
    rest = [e for e in whole if e.knowable_time > t]
    assert engine.step(40) == rest[:40]
    cursor = ReplayCursor.from_json(engine.cursor().to_json())
    stepped = DataProvider(pivot_levels=5)
    for symbol in SYMBOLS:
        for tf in TIMEFRAMES:
            stepped.subscribe_inference_step(lambda step: None, symbol, tf)
    again = ReplayEngine.resume(cursor, store, stepped, span_candles=389)
    assert list(again.iter_events()) == rest[40:]
    engine.seek(START_MS)  # back: the replay starts over
    assert engine.step(25) == [e for e in whole if e.knowable_time > START_MS][:25]


def test_the_cache_holds_recent_rows_only_and_its_windows_equal_the_whole_ranges(store):
    wb = Workbench(store)
    whole = wb.session(SYMBOLS, START_MS, START_MS + 6_000 * M, timeframes=TIMEFRAMES[1:], warmup=200,
                       columns=CANDLE_COLUMNS)
    whole._engine.span_candles = 10**9
    chunked = wb.session(SYMBOLS, START_MS, START_MS + 6_000 * M, timeframes=TIMEFRAMES[1:], warmup=200,
                         columns=CANDLE_COLUMNS)
    chunked._engine.span_candles = 300
    checked = 0
    for t in range(START_MS + 1_000 * M, START_MS + 6_000 * M, 700 * M):
        whole.run(until=t)
        chunked.run(until=t)
        for tf, tf_ms, count in (("1m", M, 150), ("5m", 5 * M, 100), ("1h", 60 * M, 12)):
            end = t - t % tf_ms - tf_ms
            try:
                a = whole.window("AAA", tf, end - count * tf_ms, end, CANDLE_COLUMNS)
            except LookAheadError:  # a gapped bucket completes later: both must refuse it
                with pytest.raises(LookAheadError):
                    chunked.window("AAA", tf, end - count * tf_ms, end, CANDLE_COLUMNS)
                continue
            b = chunked.window("AAA", tf, end - count * tf_ms, end, CANDLE_COLUMNS)
            if a is None:  # no candle there (a gap)
                assert b is None
                continue
            assert a.timestamps.tolist() == b.timestamps.tolist()
            np.testing.assert_array_equal(a.values[:, :5], b.values[:, :5])
            np.testing.assert_allclose(a.values[:, 5:], b.values[:, 5:], rtol=1e-9, atol=1e-9)
            checked += 1
        cache = chunked._engine.cache._entries
        assert len(cache[("AAA", "1m")].timestamps) <= 200 + 300  # warm-up rows behind the clock, one span
        assert len(cache[("AAA", "5m")].timestamps) <= 1_200  # the indicators' margin (RSI_MARGIN rows)
    assert checked > 15
    whole.close()
    chunked.close()


def test_the_first_stored_candle_is_asked_only_for_ranges_longer_than_a_span(store, monkeypatch):
    from ettlib.replay import planner

    asked = []
    real = planner._first_stored
    monkeypatch.setattr(planner, "_first_stored", lambda *a: asked.append(a) or real(*a))
    early = START_MS - 20_000 * M  # long before the first stored candle
    whole, _ = _events(store, 10**9, start=early)  # one span covers the range: it ends at ``end``
    assert asked == [] and len(whole) > 10_000
    assert _events(store, 97, start=early)[0] == whole  # the first span jumps to the first candle
    assert len(asked) == 1
