"""The candle path's shortcuts change nothing observable.

- Without ``record_expired``, expired frames are swept every few dozen
  candles instead of at each event: the same pairs are delivered, and the
  counters and retained frames (which sweep first) are the same as with
  eager dropping.
- Buffered pairs are short rows read column by column at the flush: the
  stored ``training_events`` rows (candle and pivot, with results) are what
  the event and the subscriber's result say.
- A ``None`` state deletes only a state that was stored, and a stored one
  (also one reloaded by a resume) is deleted.
"""

from __future__ import annotations

import random

from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.coordinator.frames import InferenceFrameReference, NormParams
from ettlib.replay.events import CandleCompletionEvent, PivotEvent, event_key
from ettlib.replay.provider import DataProvider

from conftest import START_MS

M = 60_000
SYMBOL = "ETH/USDT"
PARAMS = NormParams(100.0, 2.0, 10.0, 3.0)


class Recorder(TrainingEventSubscriber):
    subscriber_name = "recorder"

    def __init__(self):
        self.seen = []

    def on_candle_completion(self, event, inference_ref):
        iid = None if inference_ref is None else inference_ref.inference_id
        self.seen.append(("candle", event.timestamp, iid))
        return None if iid is None else {"loss": 0.5, "iid": iid}

    def on_pivot_event(self, event, inference_refs):
        self.seen.append(("pivot", event.timestamp, sorted(r.inference_id for r in inference_refs)))
        return 0.25


def _run(store, record_expired: bool, run_id: str):
    """Frames of horizons 1-4 at most candles, pivots now and then; counters checked as it goes."""
    rng = random.Random(3)
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, pivot_lookback=5, retention=3, persist_every=97,
                                               run_id=run_id, record_expired=record_expired)
    rec = Recorder()
    coordinator.subscribe_to_candle_completion(rec, SYMBOL, "1m")
    coordinator.subscribe_to_pivot_events(rec, SYMBOL, "1m", ["L1L"])
    snapshots = []
    for k in range(1, 700):
        t = START_MS + k * M
        provider.publish_candle(CandleCompletionEvent(SYMBOL, "1m", t - M, t, 1.0, 1.0, 1.0, 1.0, 1.0))
        if rng.random() < 0.1:
            bar = t - rng.randint(1, 4) * M
            provider.publish_pivot(PivotEvent(SYMBOL, "1m", "L1L", 1, bar, 1.0, 1.0, t))
        if rng.random() < 0.8:
            h = rng.randint(1, 4)
            coordinator.register_inference_frame(InferenceFrameReference(
                coordinator.new_inference_id(), SYMBOL, "1m", t, t + (h - 1) * M, t - 10 * M, t - M,
                PARAMS, "BUY", (1.0,), 0.5))
        if k % 37 == 0:
            c = coordinator.counters()
            snapshots.append((c, [r.inference_id for r in coordinator.retained_frames()]))
    coordinator.close()
    return rec.seen, snapshots, coordinator.counters()


def test_swept_memory_matches_eager_dropping(store):
    eager = _run(store, True, "eager")
    swept = _run(store, False, "swept")
    assert swept == eager
    assert eager[2].expired > 100 and eager[2].matched > 500
    rows = store.con.execute(
        "SELECT run_id, count(*) FROM inference_frames GROUP BY run_id ORDER BY run_id").fetchall()
    assert rows == [("eager", eager[2].registered), ("swept", eager[2].pending)]


def test_stored_pairs_are_what_the_events_and_results_say(store):
    seen, _, counters = _run(store, False, "pairs")
    rows = store.con.execute(
        "SELECT inference_id, event_kind, event_key, subscriber, knowable_time, seq, loss, metrics"
        " FROM training_events WHERE run_id = 'pairs' ORDER BY seq, inference_id").fetchall()
    assert len(rows) == counters.delivered
    assert [r[5] for r in rows] == sorted(r[5] for r in rows) and {r[3] for r in rows} == {"recorder"}
    candles = [r for r in rows if r[1] == "candle"]
    assert len(candles) == sum(kind == "candle" for kind, *_ in seen)
    for (iid, kind, key, _, knowable, _, loss, metrics), (_, bar, seen_iid) in zip(
            candles, [s for s in seen if s[0] == "candle"]):
        event = CandleCompletionEvent(SYMBOL, "1m", bar, bar + M, 1.0, 1.0, 1.0, 1.0, 1.0)
        assert key == event_key(event) and knowable == bar + M
        assert iid == ("" if seen_iid is None else str(seen_iid))
        assert (loss, metrics) == ((None, None) if seen_iid is None
                                   else (0.5, f'{{"iid": {seen_iid}, "loss": 0.5}}'))
    pivots = [r for r in rows if r[1] == "pivot"]
    assert pivots and all(r[2].startswith(f"pivot:{SYMBOL}:1m:L1L:") and r[6] == 0.25 for r in pivots)


class Toggling(TrainingEventSubscriber):
    subscriber_name = "toggling"

    def __init__(self, state=None):
        self.state = state

    def checkpoint_state(self):
        return self.state

    def restore_state(self, state):
        self.state = state


def _states(store):
    return store.con.execute("SELECT run_id, subscriber, state FROM subscriber_states").fetchall()


def test_a_none_state_deletes_only_a_stored_state(store):
    provider = DataProvider(store)
    sub = Toggling()
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="s")
    coordinator.subscribe_to_candle_completion(sub, SYMBOL, "1m")
    coordinator.flush()
    assert _states(store) == []
    sub.state = b"1"
    coordinator.flush()
    assert _states(store) == [("s", "toggling", b"1")]
    sub.state = None
    coordinator.flush()
    assert _states(store) == []
    sub.state = b"2"
    coordinator.close()
    assert _states(store) == [("s", "toggling", b"2")]
    # a resumed run knows the state it reloaded: None deletes it
    resumed = InferenceTrainingCoordinator(DataProvider(store), store, run_id="s", resume=True)
    again = Toggling()
    resumed.subscribe_to_candle_completion(again, SYMBOL, "1m")
    assert again.state == b"2"
    again.state = None
    resumed.close()
    assert _states(store) == []
