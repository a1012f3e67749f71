"""Matching and retention on their own: a FrameIndex, frames and events, no store, no provider."""

from __future__ import annotations

import random

from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.matching import NO_FRAME, FrameIndex
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from conftest import shuffled_in_chunks

M = 60_000
T0 = 1_704_067_200_000
SYMBOL = "ETH/USDT"


def frame(iid, t, *, horizon=1, symbol=SYMBOL, tf="1m", step=M):
    end = t - step
    return InferenceFrameReference(
        inference_id=iid, symbol=symbol, timeframe=tf, prediction_timestamp=t,
        target_timestamp=end + horizon * step, data_range_start=end - 9 * step, data_range_end=end,
        norm_params=(100.0, 2.0, 10.0, 3.0), predicted_action="BUY", predicted_candle=(), confidence=0.5)


def candle(t, symbol=SYMBOL, tf="1m", step=M):
    return CandleCompletionEvent(symbol, tf, t, t + step, 1.0, 1.0, 1.0, 1.0, 1.0)


def pivot(bar, confirmed, ptype="L1L", symbol=SYMBOL):
    return PivotEvent(symbol, "1m", ptype, int(ptype[1]), bar, 1.0, 1.0, confirmed)


def expires_at(r, lookback, retention, step=M):
    return max(r.target_timestamp + step, r.prediction_timestamp + lookback * step) + retention * step


def test_no_store_is_imported():
    # matching is testable without DuckDB: the module needs neither the store nor duckdb
    import ettlib.coordinator.matching as matching

    assert "duckdb" not in vars(matching) and "persistence" not in vars(matching)
    assert FrameIndex(0, 0).match_candle(candle(T0)) is NO_FRAME


def test_candle_matches_every_frame_with_its_target_once():
    index = FrameIndex(pivot_lookback=3, retention=5)
    a, b = frame(1, T0 + 5 * M), frame(2, T0 + 5 * M)  # two frames, one target
    c = frame(3, T0 + 3 * M, horizon=3)  # the same target, further ahead
    d = frame(4, T0 + 6 * M)
    for r in (a, b, c, d):
        index.add(r)
    assert index.pending == 4
    assert index.match_candle(candle(T0 + 4 * M)) is NO_FRAME
    assert index.match_candle(candle(T0 + 5 * M)) == (a, b, c)
    event, refs = index.last_matches(SYMBOL, "1m")
    assert event == candle(T0 + 5 * M) and refs == [a, b, c]
    assert index.match_candle(candle(T0 + 5 * M)) is NO_FRAME  # a candle closes once
    assert index.matched == 3 and index.last_matches(SYMBOL, "1m")[1] == []
    assert index.last_matches(SYMBOL, "5m") == (None, [])
    # another stream's candle with the same open time matches nothing
    assert index.match_candle(candle(T0 + 6 * M, symbol="BTC/USDT")) is NO_FRAME
    assert index.match_candle(candle(T0 + 6 * M)) == (d,)
    assert index.pending == 4  # matched frames stay retained for pivots


def test_a_target_candle_after_expiry_matches_nothing():
    # retention 0, lookback 0: a frame can match until its target closes, not after
    index = FrameIndex(pivot_lookback=0, retention=0)
    r = frame(1, T0 + M)
    index.add(r)
    late = candle(T0 + M)._replace(close_time=T0 + 3 * M)  # knowable after the expiry (a late candle)
    assert index.match_candle(late) is NO_FRAME and index.matched == 0


def test_pivot_window_and_exact_expiry_against_brute_force():
    rng = random.Random(7)
    lookback, retention = 6, 4
    index = FrameIndex(lookback, retention)
    refs = [frame(k, T0 + k * M, horizon=rng.choice([1, 2, 5])) for k in range(1, 300)]
    order = list(refs)
    for r in shuffled_in_chunks(order, rng):  # in time order, shuffled locally (as live threads may)
        index.add(r)
    events = []
    for k in range(15, 320, 3):
        bar = T0 + k * M
        events.append(pivot(bar, bar + rng.choice([2, 4, 9, 15]) * M, rng.choice(["L1L", "L2H"])))
    events.sort(key=lambda e: (e.confirmed_at, e.timestamp))
    got = [[r.inference_id for r in index.match_pivot(e)] for e in events]
    expected = [
        sorted(r.inference_id for r in refs
               if e.timestamp - lookback * M <= r.prediction_timestamp <= e.timestamp
               and expires_at(r, lookback, retention) >= e.confirmed_at)
        for e in events]
    assert got == expected
    assert any(len(x) > 1 for x in expected) and any(not x for x in expected)
    assert index.matched == sum(map(len, expected))


def test_retention_drops_exactly_the_frames_no_event_can_match():
    lookback, retention = 2, 3
    index = FrameIndex(lookback, retention)
    refs = [frame(k, T0 + k * M) for k in range(1, 61)]
    for r in refs:
        index.add(r)
    now = T0 + 40 * M
    index.drop_expired((SYMBOL, "1m"), now)
    gone = {r.inference_id for r in refs if expires_at(r, lookback, retention) < now}
    assert {r.inference_id for r, _ in index.expired} == gone and {t for _, t in index.expired} == {now}
    assert index.pending == 60 - len(gone) and index.dropped == len(gone)
    assert [r.inference_id for r in index.retained_frames()] == \
        [r.inference_id for r in refs if r.inference_id not in gone]
    # a dropped frame's target no longer matches; a retained one's does
    first_kept = min(set(range(1, 61)) - gone)
    assert index.match_candle(candle(refs[0].target_timestamp)) is NO_FRAME
    assert index.match_candle(candle(refs[first_kept - 1].target_timestamp)) == (refs[first_kept - 1],)
    index.drop_all_expired(T0 + 1000 * M)
    assert index.pending == 0 and index.dropped == 60 and index.retained_frames() == []


def test_memory_stays_bounded_over_a_long_stream():
    # one frame per candle, the stream advancing: what is retained never grows past the horizon
    lookback, retention = 5, 10
    index = FrameIndex(lookback, retention)
    peak = 0
    for k in range(1, 5000):
        t = T0 + k * M
        index.match_candle(candle(t - M))
        index.drop_expired((SYMBOL, "1m"), t)
        index.add(frame(k, t))
        peak = max(peak, index.pending)
    assert peak <= lookback + retention + 2
    stream = index._streams[(SYMBOL, "1m")]
    assert len(stream.refs) < 2 * 1024 + lookback + retention + 2  # the dropped slots are compacted
    assert index.dropped == 4999 - index.pending


def test_frames_added_without_target_match_pivots_only():
    # a resumed run re-adds pending frames whose target closed before the resume: pivots only
    index = FrameIndex(pivot_lookback=3, retention=10)
    r = frame(1, T0 + 5 * M)
    index.add(r, with_target=False)
    assert index.match_candle(candle(r.target_timestamp)) is NO_FRAME
    assert index.match_pivot(pivot(T0 + 6 * M, T0 + 8 * M)) == [r]


def test_expires_at_is_the_documented_rule():
    index = FrameIndex(pivot_lookback=4, retention=2)
    for horizon in (1, 3, 9):
        r = frame(horizon, T0 + 10 * M, horizon=horizon)
        assert index.expires_at(r) == expires_at(r, 4, 2)


class EagerDropping:
    """The retention rule applied at every event: each frame dropped at the first event (or
    explicit drop) past its own expiry and those of the frames before it, by prediction time."""

    def __init__(self, lookback, retention):
        self.lookback, self.retention = lookback, retention
        self.frames, self.expired = [], []

    def add(self, ref):
        at = len(self.frames)
        while at and self.frames[at - 1].prediction_timestamp > ref.prediction_timestamp:
            at -= 1
        self.frames.insert(at, ref)

    def drop(self, now):
        while self.frames and expires_at(self.frames[0], self.lookback, self.retention) < now:
            self.expired.append((self.frames.pop(0), now))


def test_recorded_expiry_times_are_those_of_dropping_at_each_event():
    # the index sweeps every few dozen candles; each recorded (frame, T) is still the first event
    # past its expiry: frames of mixed horizons, some registered late or out of order, pivots
    # confirmed late, explicit drops at flush-like times, and gaps in the stream's events
    rng = random.Random(11)
    lookback, retention = 5, 3
    index, eager = FrameIndex(lookback, retention), EagerDropping(lookback, retention)
    iid, t = 0, T0
    for k in range(3000):
        t += M * (1 if rng.random() < 0.97 else rng.randint(2, 40))  # now and then a gap
        event = candle(t - M)
        if rng.random() < 0.1:
            event = pivot(t - rng.randint(1, 6) * M, t)
        (index.match_candle if isinstance(event, CandleCompletionEvent) else index.match_pivot)(event)
        eager.drop(t)
        for _ in range(rng.choice([0, 1, 1, 1, 2])):
            late = rng.random() < 0.05  # predicted up to 15 candles before the stream's last event
            iid += 1
            ref = frame(iid, t - late * rng.randint(1, 15) * M, horizon=rng.choice([1, 2, 4, 9]))
            index.add(ref)
            eager.add(ref)
        if rng.random() < 0.02:  # a flush: drop at the coordinator's time, which may be later
            now = t + rng.choice([0, 0, M, 30 * M])
            index.drop_expired((SYMBOL, "1m"), now)
            eager.drop(now)
    index.sweep()
    assert [(r.inference_id, at) for r, at in index.expired] == \
        [(r.inference_id, at) for r, at in eager.expired]
    assert len(eager.expired) > 2500 and len({at for _, at in eager.expired}) > 1000
    assert [r.inference_id for r in index.retained_frames()] == [r.inference_id for r in eager.frames]
    assert index.pending == len(eager.frames) and index.dropped == len(eager.expired)


def test_a_recorded_stream_keeps_at_most_a_sweep_of_event_times():
    index = FrameIndex(pivot_lookback=5, retention=10)
    for k in range(1, 2000):
        t = T0 + k * M
        index.match_candle(candle(t - M))
        index.add(frame(k, t))
    stream = index._streams[(SYMBOL, "1m")]
    assert 0 < len(stream.seen) <= 64 and index.pending <= 5 + 10 + 2 + 64
