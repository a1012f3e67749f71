"""Live use: frames registered on one thread while events arrive on another.

The registering thread runs ahead, registering frames in locally shuffled
(out-of-order) batches; the event thread publishes candle ``k`` (and a pivot
at bar ``k``) as soon as frame ``k`` and every earlier frame is registered.
So every frame that can match an event is registered before it, whatever the
interleaving, and the expected deliveries are known exactly.
"""

from __future__ import annotations

import random
import sys
import threading

import pytest

from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.coordinator.frames import InferenceFrameReference

from conftest import START_MS

M = 60_000
SYMBOL = "ETH/USDT"
N = 3_000
LOOKBACK = 5


class Recorder(TrainingEventSubscriber):
    def __init__(self):
        self.candles = []
        self.pivots = []
        self.threads = set()

    def on_candle_completion(self, event, inference_ref):
        self.threads.add(threading.get_ident())
        self.candles.append((event.timestamp, None if inference_ref is None else inference_ref.inference_id))

    def on_pivot_event(self, event, inference_refs):
        self.pivots.append((event.timestamp, sorted(r.inference_id for r in inference_refs)))


@pytest.mark.timeout(120)
def test_register_and_match_on_different_threads(store):
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # switch threads often
    try:
        provider = DataProvider(store)
        coordinator = InferenceTrainingCoordinator(provider, store, pivot_lookback=LOOKBACK, retention=10,
                                                   persist_every=250, record_expired=True)
        rec = Recorder()
        coordinator.subscribe_to_candle_completion(rec, SYMBOL, "1m")
        coordinator.subscribe_to_pivot_events(rec, SYMBOL, "1m", ["L1L"])
        prefix = [0]  # frames 1..prefix[0] are all registered
        registered = set()
        ready = threading.Condition()
        errors = []

        def register():
            try:
                rng = random.Random(3)
                for a in range(1, N + 1, 8):
                    batch = list(range(a, min(a + 8, N + 1)))
                    rng.shuffle(batch)
                    for k in batch:
                        t = START_MS + k * M
                        coordinator.register_inference_frame(InferenceFrameReference.for_prediction(
                            k, SYMBOL, "1m", t, context=10, norm_params=(1.0, 1.0, 1.0, 1.0),
                            predicted_action="BUY", confidence=0.5))
                        with ready:
                            registered.add(k)
                            while prefix[0] + 1 in registered:
                                prefix[0] += 1
                            ready.notify_all()
            except BaseException as exc:  # pragma: no cover - reported below
                errors.append(exc)

        def events():
            try:
                for k in range(1, N + 1):
                    with ready:
                        while prefix[0] < k:
                            ready.wait(5)
                    t = START_MS + k * M
                    provider.publish_candle(CandleCompletionEvent(SYMBOL, "1m", t, t + M, 1, 1, 1, 1, 1))
                    provider.publish_pivot(PivotEvent(SYMBOL, "1m", "L1L", 1, t, 1.0, 1.0, t + M))
            except BaseException as exc:  # pragma: no cover
                errors.append(exc)

        threads = [threading.Thread(target=register), threading.Thread(target=events)]
        for th in threads:
            th.start()
        for th in threads:
            th.join(60)
        assert not errors, errors
        assert not any(th.is_alive() for th in threads)
    finally:
        sys.setswitchinterval(old)

    assert rec.threads and threading.get_ident() not in rec.threads
    assert rec.candles == [(START_MS + k * M, k) for k in range(1, N + 1)]
    expected = [(START_MS + k * M, list(range(max(1, k - LOOKBACK), k + 1))) for k in range(1, N + 1)]
    assert rec.pivots == expected
    c = coordinator.counters()
    assert c.registered == N and c.matched == N + sum(len(x[1]) for x in expected)
    coordinator.close()
    rows = store.con.execute("SELECT count(*) FROM inference_frames").fetchone()[0]
    assert rows == N
