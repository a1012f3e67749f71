"""InferenceTrainingCoordinator: matching, retention, windows, dead letters, persistence.

Expected results come from naive scans over every registered frame (the
coordinator uses indexes), from pandas reads of the stored candles, and from
the normalization contract applied column by column.
"""

from __future__ import annotations

import random

import numpy as np
import pytest

from ettlib.replay.cache import CandleCache
from ettlib.coordinator import InferenceData, InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, StoreError, SubscriberError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.coordinator.frames import InferenceFrameReference, NormParams
from ettlib.store.schema import CANDLE_COLUMNS

from conftest import START_MS, make_candles, shuffled_in_chunks

M = 60_000
SYMBOL = "ETH/USDT"
P = (100.0, 2.0, 10.0, 3.0)


def candle(t, symbol=SYMBOL, tf="1m", step=M):
    return CandleCompletionEvent(symbol, tf, t, t + step, 1.0, 2.0, 0.5, 1.5, 10.0)


def pivot(bar, confirmed, ptype="L1L", symbol=SYMBOL):
    return PivotEvent(symbol, "1m", ptype, int(ptype[1]), bar, 1.0, 1.0, confirmed)


def ref_at(iid, t, *, horizon=1, symbol=SYMBOL, context=10):
    return InferenceFrameReference.for_prediction(
        iid, symbol, "1m", t, context=context, norm_params=P, predicted_action="BUY",
        predicted_candle=(1.0,), confidence=0.5, horizon=horizon)


class Recorder(TrainingEventSubscriber):
    def __init__(self, name="recorder"):
        self.subscriber_name = name
        self.candles = []
        self.pivots = []

    def on_candle_completion(self, event, inference_ref):
        self.candles.append((event.timestamp, None if inference_ref is None else inference_ref.inference_id))

    def on_pivot_event(self, event, inference_refs):
        self.pivots.append((event.timestamp, event.confirmed_at, sorted(r.inference_id for r in inference_refs)))


@pytest.fixture
def setup(store):
    provider = DataProvider(store)
    return provider, store


def test_candle_matching_by_target(setup):
    provider, store = setup
    coordinator = InferenceTrainingCoordinator(provider, store)
    rec = Recorder()
    coordinator.subscribe_to_candle_completion(rec, SYMBOL, "1m")
    rng = random.Random(1)
    refs = []
    for i in range(1, 200):
        t = START_MS + rng.randrange(1, 100) * M
        refs.append(ref_at(i, t, horizon=rng.choice([1, 1, 2, 5])))
    refs.append(ref_at(999, START_MS + 10 * M, symbol="BTC/USDT"))  # another stream: never matches
    for ref in sorted(refs, key=lambda r: r.prediction_timestamp):
        coordinator.register_inference_frame(ref)
    for k in range(120):
        provider.publish_candle(candle(START_MS + k * M))
    expected = []
    for k in range(120):
        t = START_MS + k * M
        hits = [r.inference_id for r in refs if r.symbol == SYMBOL and r.target_timestamp == t]
        expected.extend((t, i) for i in hits) if hits else expected.append((t, None))
    assert sorted(rec.candles, key=lambda x: (x[0], x[1] or 0)) == sorted(expected, key=lambda x: (x[0], x[1] or 0))
    # each frame at most once, the other stream's never
    matched = [i for _, i in rec.candles if i is not None]
    assert len(matched) == len(set(matched)) and 999 not in matched
    assert coordinator.counters().matched == len(matched)
    coordinator.close()


def test_pivot_matching_window_and_exact_expiry(setup):
    provider, store = setup
    lookback, retention = 5, 3
    coordinator = InferenceTrainingCoordinator(provider, store, pivot_lookback=lookback, retention=retention)
    rec = Recorder()
    coordinator.subscribe_to_pivot_events(rec, SYMBOL, "1m", ["L1L", "L2H"])
    rng = random.Random(7)
    refs = [ref_at(i, START_MS + rng.randrange(10, 300) * M) for i in range(1, 400)]
    order = sorted(refs, key=lambda r: r.prediction_timestamp)
    for r in shuffled_in_chunks(order, rng):  # in time order, shuffled locally (as live threads may)
        coordinator.register_inference_frame(r)
    events = []
    for k in range(15, 320, 3):
        bar = START_MS + k * M
        delay = rng.choice([2, 2, 4, 9, 15])
        events.append(pivot(bar, bar + delay * M, rng.choice(["L1L", "L2H", "L3L"])))
    events.sort(key=lambda e: (e.confirmed_at, e.timestamp))
    for e in events:
        provider.publish_pivot(e)

    def expires_at(r):
        return max(r.target_timestamp + M, r.prediction_timestamp + lookback * M) + retention * M

    expected = [
        (e.timestamp, e.confirmed_at,
         sorted(r.inference_id for r in refs
                if e.timestamp - lookback * M <= r.prediction_timestamp <= e.timestamp
                and expires_at(r) >= e.confirmed_at))
        for e in events if e.pivot_type in ("L1L", "L2H")
    ]
    assert rec.pivots == expected
    assert any(len(x[2]) > 1 for x in expected) and any(not x[2] for x in expected)
    coordinator.close()


def test_int_and_str_ids_persist_as_text_with_their_pairs_and_expiries(setup):
    # ids are kept as given on the hot path and made text at the flush: int ids,
    # uuid-like str ids, deliveries without a frame, expiries within one flush
    # and across flushes must all land on the same text id
    provider, store = setup
    coordinator = InferenceTrainingCoordinator(provider, store, pivot_lookback=2, retention=3, persist_every=7,
                                               record_expired=True)
    coordinator.subscribe_to_candle_completion(Recorder(), SYMBOL, "1m")
    ids = {}
    for k in range(1, 61):
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        if k % 4:  # some candles have no frame: delivered with None
            iid = k if k % 3 else f"frame-{k}"
            ids[str(iid)] = t
            coordinator.register_inference_frame(ref_at(iid, t))
    coordinator.close()
    con = store.con
    frames = dict(con.execute("SELECT inference_id, prediction_timestamp FROM inference_frames").fetchall())
    assert frames == ids
    statuses = dict(con.execute("SELECT inference_id, status FROM inference_frames").fetchall())
    c = coordinator.counters()
    assert sum(v == "expired" for v in statuses.values()) == c.expired > 30
    # expired exactly the frames no event can match any more
    last_now = START_MS + 60 * M
    for iid, t in ids.items():
        gone = max(t + M, t + 2 * M) + 3 * M < last_now
        assert statuses[iid] == ("expired" if gone else "pending"), iid
    pairs = con.execute("SELECT inference_id, event_key FROM training_events").fetchall()
    matched = {i for i, _ in pairs if i}
    assert matched == {i for i, t in ids.items() if t < last_now}  # target candle closed
    assert sum(1 for i, _ in pairs if i == "") == len(pairs) - len(matched)
    assert len({k for _, k in pairs}) == len(pairs) == 60


def test_retention_keeps_memory_bounded_and_marks_expiry(setup):
    provider, store = setup
    lookback, retention, n = 4, 6, 5_000
    coordinator = InferenceTrainingCoordinator(provider, store, pivot_lookback=lookback, retention=retention,
                                               persist_every=500, record_expired=True)
    rec = Recorder()
    coordinator.subscribe_to_candle_completion(rec, SYMBOL, "1m")
    peak = 0
    for k in range(1, n + 1):
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        coordinator.register_inference_frame(ref_at(k, t))
        peak = max(peak, coordinator.counters().pending)
    bound = lookback + retention + 2
    assert peak <= bound
    assert len(coordinator.retained_frames()) <= bound
    c = coordinator.counters()
    assert c.registered == n and c.expired == n - c.pending and c.expired > 0.9 * n
    # every frame except the last was matched exactly once by its target candle
    assert sorted(i for _, i in rec.candles if i is not None) == list(range(1, n))
    coordinator.close()
    rows = store.con.execute(
        "SELECT inference_id, prediction_timestamp, expired_at FROM inference_frames"
        " WHERE status = 'expired' ORDER BY prediction_timestamp").fetchall()
    assert len(rows) == c.expired
    for _, t, expired_at in rows:
        assert expired_at > t + (lookback + retention) * M  # expired only after it could no longer match
    pending = store.con.execute("SELECT count(*) FROM inference_frames WHERE status = 'pending'").fetchone()[0]
    assert pending == c.pending


@pytest.fixture
def candles_store(store):
    df = make_candles(900)
    df = df.drop(index=[300, 301, 302, 450]).reset_index(drop=True)  # gaps
    store.ingest(df, SYMBOL, "1m")
    return store


def _expected_window(store, ref):
    df = store.con.execute(
        f"SELECT timestamp, {', '.join(CANDLE_COLUMNS)} FROM ohlcv_data WHERE symbol = ? AND timeframe = '1m'"
        " ORDER BY timestamp", [SYMBOL]).df()
    rows = df[(df.timestamp >= ref.data_range_start) & (df.timestamp <= ref.data_range_end)]
    p = ref.norm_params
    out = {}
    for c in CANDLE_COLUMNS:
        x = rows[c].to_numpy(dtype=float)
        if c == "volume":
            y = (x - p["volume_offset"]) / p["volume_scale"]
        elif c == "rsi_14":
            y = (x - 50) / 50
        elif c in ("macd", "macd_signal", "macd_hist", "atr_14"):
            y = x / p["price_scale"]
        else:
            y = (x - p["price_offset"]) / p["price_scale"]
        out[c] = np.nan_to_num(y, nan=0.0)
    return rows.timestamp.to_numpy(), np.column_stack([out[c] for c in CANDLE_COLUMNS])


def test_inference_data_cached_equals_uncached_and_stops_at_window_end(candles_store):
    store = candles_store
    provider = DataProvider(store)
    cache = CandleCache(store)
    cache.load(SYMBOL, "1m", START_MS - 100 * M, START_MS + 1000 * M)
    cached = InferenceTrainingCoordinator(provider, store, cache=cache, run_id="a")
    plain = InferenceTrainingCoordinator(provider, store, run_id="b")
    refs = [
        InferenceFrameReference.for_prediction(
            i, SYMBOL, "1m", START_MS + k * M, context=ctx, norm_params=(100.0 + i, 0.5, 9.0, 4.0),
            predicted_action="HOLD", confidence=0.2)
        for i, (k, ctx) in enumerate([(100, 60), (305, 30), (460, 200), (899, 600), (5, 50), (700, 1)], start=1)
    ]
    for ref in refs:
        a, b = cached.get_inference_data(ref), plain.get_inference_data(ref)
        ts, values = _expected_window(store, ref)
        for got in (a, b):
            assert isinstance(got, InferenceData) and got.ref is ref and got.columns == CANDLE_COLUMNS
            np.testing.assert_array_equal(got.timestamps, ts)
            assert got.timestamps.max() <= ref.data_range_end  # the store holds later rows
            assert got.values.dtype == np.float32
            np.testing.assert_array_equal(got.column("close"), got.values[:, CANDLE_COLUMNS.index("close")])
            np.testing.assert_allclose(got.values, values, rtol=2e-6, atol=2e-6)
        assert a.values.tobytes() == b.values.tobytes()
    # the batch gives the same arrays, cached and uncached
    for coordinator in (cached, plain):
        batch = coordinator.get_inference_data_batch(refs)
        for ref, got in zip(refs, batch):
            single = plain.get_inference_data(ref)
            assert got.values.tobytes() == single.values.tobytes()
            np.testing.assert_array_equal(got.timestamps, single.timestamps)
    # a window with no stored rows gives None (an adapter's `if not model_inputs`)
    early = ref_at(50, START_MS - 50 * M, context=20)
    assert plain.get_inference_data(early) is None and cached.get_inference_data(early) is None
    assert plain.get_inference_data_batch([early, refs[0]])[0] is None


def test_raising_subscriber_is_dead_lettered_and_others_continue(setup):
    provider, store = setup

    class Flaky(Recorder):
        def on_candle_completion(self, event, inference_ref):
            if inference_ref is not None and inference_ref.inference_id % 3 == 0:
                raise ValueError(f"bad frame {inference_ref.inference_id}")
            super().on_candle_completion(event, inference_ref)

    coordinator = InferenceTrainingCoordinator(provider, store, run_id="dl")
    flaky, good = Flaky("flaky"), Recorder("good")
    coordinator.subscribe_to_candle_completion(flaky, SYMBOL, "1m")
    coordinator.subscribe_to_candle_completion(good, SYMBOL, "1m")
    for k in range(1, 31):
        coordinator.register_inference_frame(ref_at(k, START_MS + k * M))
    for k in range(1, 31):
        provider.publish_candle(candle(START_MS + k * M))
    assert [i for _, i in good.candles] == list(range(1, 31))
    assert [i for _, i in flaky.candles] == [k for k in range(1, 31) if k % 3]
    c = coordinator.counters()
    assert c.failed == 10 and c.delivered == 50
    coordinator.close()
    rows = store.con.execute(
        "SELECT subscriber, inference_id, event_kind, event_key, event, error, traceback FROM dead_letters"
        " WHERE run_id = 'dl' ORDER BY seq").fetchall()
    assert [r[1] for r in rows] == [str(k) for k in range(3, 31, 3)]
    for sub, iid, kind, key, event, error, tb in rows:
        assert sub == "flaky" and kind == "candle" and key.endswith(str(START_MS + int(iid) * M))
        assert error == f"ValueError: bad frame {iid}" and "Traceback" in tb and "CandleCompletionEvent" in event
    delivered = store.con.execute("SELECT count(*) FROM training_events WHERE run_id = 'dl'").fetchone()[0]
    assert delivered == 50


def test_strict_mode_reraises(setup):
    provider, store = setup

    class Broken(TrainingEventSubscriber):
        def on_candle_completion(self, event, inference_ref):
            raise RuntimeError("boom")

    coordinator = InferenceTrainingCoordinator(provider, store, strict=True)
    coordinator.subscribe_to_candle_completion(Broken(), SYMBOL, "1m")
    with pytest.raises(SubscriberError) as info:
        provider.publish_candle(candle(START_MS))
    chain, err = [], info.value
    while err is not None:
        chain.append(err)
        err = err.__cause__
    assert any(isinstance(e, RuntimeError) and str(e) == "boom" for e in chain)
    assert coordinator.counters().failed == 1


def test_pairs_are_persisted_in_batches_with_results(setup):
    provider, store = setup

    class Trainer(TrainingEventSubscriber):
        subscriber_name = "trainer"

        def on_candle_completion(self, event, inference_ref):
            if inference_ref is not None:
                return {"loss": 0.5 * inference_ref.inference_id, "acc": 1}
            return None

        def on_pivot_event(self, event, inference_refs):
            return 2.0

    coordinator = InferenceTrainingCoordinator(provider, store, run_id="p", persist_every=20, record_expired=True)
    trainer = Trainer()
    coordinator.subscribe_to_candle_completion(trainer, SYMBOL, "1m")
    coordinator.subscribe_to_pivot_events(trainer, SYMBOL, "1m", "L1H")
    count = lambda table: store.con.execute(f"SELECT count(*) FROM {table} WHERE run_id = 'p'").fetchone()[0]  # noqa: E731
    for k in range(1, 101):
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        if k % 10 == 0:
            provider.publish_pivot(pivot(t - 3 * M, t, "L1H"))
        coordinator.register_inference_frame(ref_at(k, t))
        if k == 15:
            assert count("training_events") == 0 and count("inference_frames") == 0  # buffered
    assert 0 < count("training_events") < coordinator.counters().delivered
    coordinator.close()
    c = coordinator.counters()
    assert count("training_events") == c.delivered and count("inference_frames") == c.registered == 100
    losses = dict(store.con.execute(
        "SELECT inference_id, loss FROM training_events WHERE run_id = 'p' AND event_kind = 'candle'"
        " AND inference_id <> ''").fetchall())
    assert losses == {str(k): 0.5 * k for k in range(1, 100)}
    assert store.con.execute(
        "SELECT DISTINCT loss FROM training_events WHERE run_id = 'p' AND event_kind = 'pivot'").fetchall() == [(2.0,)]
    # one call per pivot, with all its frames: one seq for several rows
    per_seq = store.con.execute(
        "SELECT count(*) FROM training_events WHERE run_id = 'p' AND event_kind = 'pivot' GROUP BY seq").fetchall()
    assert len(per_seq) == 10 and max(n for (n,) in per_seq) > 1
    # a run's state is never silently mixed with a new run of the same id
    with pytest.raises(ConfigError, match="resume=True"):
        InferenceTrainingCoordinator(DataProvider(store), store, run_id="p")
    InferenceTrainingCoordinator(DataProvider(store), store, run_id="p", replace=True)
    assert count("training_events") == 0


def test_subscriber_names_must_be_unique(setup):
    provider, store = setup
    coordinator = InferenceTrainingCoordinator(provider, store)
    coordinator.subscribe_to_candle_completion(Recorder("x"), SYMBOL, "1m")
    with pytest.raises(ConfigError, match="already named"):
        coordinator.subscribe_to_candle_completion(Recorder("x"), SYMBOL, "5m")
    coordinator.subscribe_to_candle_completion(Recorder("x"), SYMBOL, "5m", name="y")
    with pytest.raises(ConfigError):
        coordinator.register_inference_frame("not a frame")
    coordinator.register_inference_frame(ref_at(1, START_MS))
    coordinator.register_inference_frame(ref_at(1, START_MS + M))
    with pytest.raises(StoreError, match="registered twice"):
        coordinator.flush()
    assert store.con.execute("SELECT count(*) FROM inference_frames").fetchone()[0] == 0  # rolled back


def test_a_flush_runs_with_the_collector_paused_and_restores_it(setup):
    import gc

    provider, store = setup
    seen = []

    class Hook(Recorder):
        def checkpoint(self, con):
            seen.append(gc.isenabled())

    coordinator = InferenceTrainingCoordinator(provider, store)
    coordinator.subscribe_to_candle_completion(Hook("h"), SYMBOL, "1m")
    assert gc.isenabled()
    coordinator.flush()
    assert seen == [False] and gc.isenabled()
    coordinator.register_inference_frame(ref_at(1, START_MS))
    coordinator.register_inference_frame(ref_at(1, START_MS + M))
    with pytest.raises(StoreError, match="registered twice"):
        coordinator.flush()
    assert gc.isenabled()  # on again after a failed flush too
    gc.disable()  # a caller that turned it off keeps it off
    try:
        InferenceTrainingCoordinator(provider, store).flush()
        assert not gc.isenabled()
    finally:
        gc.enable()


def test_frames_from_the_future_are_refused(setup):
    provider, store = setup
    from ettlib.clock import ReplayClock
    from ettlib.errors import LookAheadError

    clock = ReplayClock(START_MS + 10 * M)
    coordinator = InferenceTrainingCoordinator(provider, store, clock=clock)
    coordinator.register_inference_frame(ref_at(1, START_MS + 10 * M))  # window closed at now: fine
    with pytest.raises(LookAheadError, match="after now"):
        coordinator.register_inference_frame(ref_at(2, START_MS + 11 * M))
    assert coordinator.counters().registered == 1


def test_resume_restores_frames_counters_and_skips_processed_events(store):
    provider = DataProvider(store)
    lookback, retention = 3, 4
    first = InferenceTrainingCoordinator(provider, store, run_id="r", persist_every=10,
                                         pivot_lookback=lookback, retention=retention)
    rec = Recorder()
    first.subscribe_to_candle_completion(rec, SYMBOL, "1m")
    for k in range(1, 38):
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        first.register_inference_frame(ref_at(first.new_inference_id(), t))
    # "crash": the object is abandoned without close(); only committed flushes remain
    checkpoint = store.con.execute(
        "SELECT resume_time, next_seq, next_inference_id FROM coordinator_checkpoints WHERE run_id = 'r'").fetchone()
    resume_time, next_seq, next_id = checkpoint
    assert START_MS < resume_time < START_MS + 38 * M

    provider2 = DataProvider(store)
    second = InferenceTrainingCoordinator(provider2, store, run_id="r", resume=True,
                                          pivot_lookback=lookback, retention=retention)
    assert second.resume_time == resume_time
    assert second.new_inference_id() == next_id
    # retained: registered before the checkpoint (P < resume_time) and not expired at the
    # flush, which ran at the previous instant (resume_time - M)
    expected = sorted(
        k for k in range(1, next_id)
        if max(START_MS + k * M + M, START_MS + k * M + lookback * M) + retention * M >= resume_time - M
        and START_MS + k * M < resume_time)
    got = sorted(r.inference_id for r in second.retained_frames())
    assert got == expected and len(expected) == lookback + retention + 1
    rec2 = Recorder()
    second.subscribe_to_candle_completion(rec2, SYMBOL, "1m")
    provider2.publish_candle(candle(resume_time - 2 * M))  # knowable before resume_time: already processed
    assert rec2.candles == []
    provider2.publish_candle(candle(resume_time - M))  # closes at resume_time: delivered, to its frame
    frame_id = (resume_time - M - START_MS) // M
    assert rec2.candles == [(resume_time - M, frame_id)]
    second.close()
    seqs = [s for (s,) in store.con.execute(
        "SELECT seq FROM training_events WHERE run_id = 'r' ORDER BY seq").fetchall()]
    assert seqs == list(range(len(seqs))) and seqs[-1] == next_seq


def test_frames_table_holds_the_pending_frames_at_each_commit_and_pairs_are_checked_on_resume(store):
    # the default protocol: inference_frames holds what a resume needs (the frames retained
    # at the last commit, replaced at every flush); pairs are appended without a key and a
    # resume refuses a store holding pairs after its checkpoint
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="q", persist_every=10,
                                               pivot_lookback=2, retention=3)
    coordinator.subscribe_to_candle_completion(Recorder(), SYMBOL, "1m")
    con = store.con
    checked = 0
    for k in range(1, 60):
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        coordinator.register_inference_frame(ref_at(coordinator.new_inference_id(), t))
        committed = con.execute("SELECT resume_time FROM coordinator_checkpoints WHERE run_id = 'q'").fetchone()
        if committed and k % 10 == 1:  # just after a flush: the table is the retained set of that flush
            rows = con.execute("SELECT inference_id, status FROM inference_frames WHERE run_id = 'q'").fetchall()
            assert {s for _, s in rows} == {"pending"}
            assert 0 < len(rows) <= 2 + 3 + 2 < k
            checked += 1
    assert checked >= 4
    coordinator.close()
    rows = sorted(int(i) for (i,) in con.execute(
        "SELECT inference_id FROM inference_frames WHERE run_id = 'q' AND status = 'pending'").fetchall())
    assert rows == sorted(r.inference_id for r in coordinator.retained_frames())
    assert con.execute("SELECT count(*) FROM inference_frames WHERE run_id = 'q'").fetchone()[0] == len(rows)
    pairs = con.execute("SELECT count(*), count(DISTINCT (inference_id, event_key, subscriber)) "
                        "FROM training_events WHERE run_id = 'q'").fetchone()
    assert pairs == (coordinator.counters().delivered,) * 2
    # a run resumes from it ...
    InferenceTrainingCoordinator(DataProvider(store), store, run_id="q", resume=True).close(flush=False)
    # ... unless a pair after its checkpoint was written behind the coordinator's back
    con.execute("INSERT INTO training_events SELECT * REPLACE (knowable_time + 10 * 60000 AS knowable_time,"
                " seq + 1000 AS seq) FROM training_events WHERE run_id = 'q' ORDER BY seq DESC LIMIT 1")
    with pytest.raises(StoreError, match="after its checkpoint"):
        InferenceTrainingCoordinator(DataProvider(store), store, run_id="q", resume=True)


def test_a_closed_coordinator_refuses_frames_and_changes_nothing(store):
    # closed, it receives no events and writes nothing: a frame would be neither matched nor stored
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="closed-run")
    t = START_MS + 10 * M
    frame = InferenceFrameReference(coordinator.new_inference_id(), SYMBOL, "1m", t, t, t - 5 * M, t - M,
                                    NormParams(100.0, 2.0, 10.0, 3.0), "BUY", (), 0.5)
    coordinator.close()
    before = coordinator.counters()
    with pytest.raises(ConfigError, match=r"run 'closed-run' is closed: frame 1 \(ETH/USDT 1m, predicted at "
                                          r"2024-01-01T00:10:00Z\) would be neither matched nor stored"):
        coordinator.register_inference_frame(frame)
    # nor does it take subscribers: it would deliver events again, and write none of the pairs
    for subscribe in (lambda: coordinator.subscribe_to_candle_completion(Recorder(), SYMBOL, "1m"),
                      lambda: coordinator.subscribe_to_pivot_events(Recorder(), SYMBOL, "1m", ["L1L"])):
        with pytest.raises(ConfigError, match=r"run 'closed-run' is closed: a subscription to (candles|pivots) "
                                              r"of ETH/USDT 1m would be neither matched nor stored"):
            subscribe()
    provider.publish_candle(CandleCompletionEvent(SYMBOL, "1m", t, t + M, 1.0, 1.0, 1.0, 1.0, 1.0))
    assert coordinator.counters() == before and coordinator.retained_frames() == []
    assert store.con.execute("SELECT count(*) FROM inference_frames WHERE run_id = 'closed-run'").fetchone() == (0,)


def test_a_flush_after_close_commits_nothing(store):
    # close(flush=False) drops the buffer on purpose; a checkpoint written after it would place the
    # resume past the dropped pair, which a resumed run would then never deliver
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="dropped", persist_every=10**6)
    coordinator.subscribe_to_candle_completion(Recorder(), SYMBOL, "1m")
    t = START_MS + 10 * M
    provider.publish_candle(candle(t - 2 * M))
    coordinator.flush()

    def stored():
        return (store.con.execute("SELECT resume_time, next_seq, next_inference_id FROM coordinator_checkpoints "
                                  "WHERE run_id = 'dropped'").fetchall(),
                store.con.execute("SELECT count(*) FROM training_events WHERE run_id = 'dropped'").fetchone())

    committed = stored()
    assert committed == ([(t - M + 1, 1, 1)], (1,))
    coordinator.register_inference_frame(ref_at(coordinator.new_inference_id(), t - M))
    provider.publish_candle(candle(t - M))  # its frame's target: a pair buffered, not committed
    assert coordinator.counters().matched == 1
    coordinator.close(flush=False)
    coordinator.flush()
    assert stored() == committed
    resumed = InferenceTrainingCoordinator(DataProvider(store), store, run_id="dropped", resume=True)
    assert resumed.resume_time == t - M + 1  # the dropped pair's event is replayed, and delivered again
    resumed.close(flush=False)
