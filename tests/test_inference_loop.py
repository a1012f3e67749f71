"""The inference loop: frames registered at each step, windows from the replay
cache, normalization reused exactly at training, stride and train_every."""

from __future__ import annotations

import numpy as np
import pytest

from conftest import START_MS
from ettlib.errors import ConfigError
from ettlib.coordinator.normalization import compute_norm_params
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.training.adapters import PersistenceAdapter, TransformerAdapter
from ettlib.training.inference_loop import InferenceLoop
from ettlib.workbench import Workbench

SYMBOL, TF, CONTEXT, N = "ETH/USDT", "1m", 16, 120
MS = 60_000
TINY = dict(context_length=CONTEXT, d_model=16, n_heads=2, n_layers=1, d_ff=32, device="cpu",
            batch_size=4)


pytestmark = pytest.mark.usefixtures("one_torch_thread")



class RecordingTransformer(TransformerAdapter):
    """Records the exact model inputs at inference and at training."""

    def __init__(self, **params):
        super().__init__(**params)
        self.inference_inputs = []  # in prediction order
        self.training_inputs = {}  # inference_id -> prepared window
        self.steps_at_predict = []

    def predict(self, window, columns=None):
        self.inference_inputs.append(self.prepare_inputs(window, columns))
        self.steps_at_predict.append(self.steps)
        return super().predict(window, columns)

    def _learn(self, pairs):
        for p, data in pairs:
            self.training_inputs[p.ref.inference_id] = self.prepare_inputs(data.values, data.columns)
        return super()._learn(pairs)


@pytest.fixture
def candles(store, make_candles):
    frame = make_candles(N)
    store.ingest(frame, SYMBOL, TF)
    return frame


def _run(store, adapter, *, start=START_MS, warmup=1_000, **loop_params):
    session = Workbench(store).session(SYMBOL, start, START_MS + (N - 1) * MS, columns=OHLCV_COLUMNS,
                                       pivot_lookback=3, warmup=warmup)
    adapter.attach(session.coordinator, SYMBOL, TF, ["L1L", "L1H"])
    seen = []
    loop = InferenceLoop(adapter, session, symbol=SYMBOL, timeframe=TF, context_length=CONTEXT,
                         on_prediction=lambda ref, w, p: seen.append((ref, w)), **loop_params)
    loop.attach()
    session.run()
    adapter.flush()
    session.close()
    return loop, seen, session


def test_frames_have_the_contract_times_and_windows(store, candles):
    loop, seen, _ = _run(store, PersistenceAdapter())
    closes = candles.set_index("timestamp")["close"]
    assert seen, "no frame was registered"
    # the first frame comes at the first step with CONTEXT closed candles
    assert seen[0][0].prediction_timestamp == START_MS + CONTEXT * MS
    assert len(seen) == N - CONTEXT + 1  # a step at each close from then on, the last included
    for ref, window in seen:
        t = ref.prediction_timestamp
        assert ref.target_timestamp == t and ref.data_range_end == t - MS
        assert ref.data_range_start == t - CONTEXT * MS
        expected_ts = np.arange(t - CONTEXT * MS, t, MS)
        np.testing.assert_array_equal(window.timestamps, expected_ts)
        assert window.timestamps[-1] + MS <= t  # every input candle had closed
        np.testing.assert_array_equal(window.column("close"), closes.loc[expected_ts].to_numpy())
        assert ref.norm_params == compute_norm_params(window)
        # persistence: the predicted close is the last input close, in the frame's units
        assert ref.predicted_candle[3] == pytest.approx(
            (window.column("close")[-1] - ref.norm_params["price_offset"]) / ref.norm_params["price_scale"],
            abs=1e-3)
    assert loop.frames_registered == len(seen)


def test_windows_are_views_of_the_replay_cache(store, candles):
    loop, seen, session = _run(store, PersistenceAdapter())
    lo, hi = min(int(w.timestamps[0]) for _, w in seen), max(int(w.timestamps[-1]) for _, w in seen)
    cached = session.window(SYMBOL, TF, lo, hi)  # a view of every row the windows read
    assert session.window_misses == 0
    assert all(np.shares_memory(w.values, cached.values) for _, w in seen)


def test_store_fallback_gives_the_same_frames(store, candles):
    """Windows reaching back before a session without warm-up come from the store: the same frames."""
    late = START_MS + 40 * MS
    _, cached, warm = _run(store, PersistenceAdapter(), start=late)
    loop, uncached, cold = _run(store, PersistenceAdapter(), start=late, warmup=0)
    assert warm.window_misses == 0 and cold.window_misses >= CONTEXT - 1 and len(uncached) > 0
    assert [(r.prediction_timestamp, r.norm_params, r.predicted_candle) for r, _ in cached] == [
        (r.prediction_timestamp, r.norm_params, r.predicted_candle) for r, _ in uncached]


def test_model_trains_on_exactly_the_tensors_it_predicted_from(store, candles):
    adapter = RecordingTransformer(**TINY)
    _, seen, _ = _run(store, adapter)
    by_id = {ref.inference_id: x for (ref, _), x in zip(seen, adapter.inference_inputs)}
    assert len(adapter.training_inputs) > N // 2
    for inference_id, x in adapter.training_inputs.items():
        assert np.array_equal(x, by_id[inference_id])  # bit for bit


def test_stride_predicts_every_kth_step(store, candles):
    _, seen, _ = _run(store, PersistenceAdapter(), stride=3)
    times = [r.prediction_timestamp for r, _ in seen]
    steps = [(t - START_MS) // MS for t in times]
    assert steps and all((s - steps[0]) % 3 == 0 for s in steps)
    assert np.all(np.diff(steps) == 3)


def test_train_every_updates_only_between_blocks(store, candles):
    k = 5
    adapter = RecordingTransformer(**{**TINY, "batch_size": 2})
    loop, seen, _ = _run(store, adapter, train_every=k)
    assert adapter.auto_train is False
    # steps_seen counts every step; flushes happen before predicting at steps 1, 1+k, 1+2k...
    first_step = (seen[0][0].prediction_timestamp - START_MS) // MS  # 1-based step index
    steps = adapter.steps_at_predict
    for i, (ref, _) in enumerate(seen):
        step_no = (ref.prediction_timestamp - START_MS) // MS
        if i and (step_no - 1) % k:  # not a flush step: weights unchanged since the last prediction
            assert steps[i] == steps[i - 1]
    assert steps[-1] > steps[0] >= 0 and first_step >= CONTEXT


def test_bad_loop_parameters_are_refused(store, candles):
    session = Workbench(store).session(SYMBOL)
    for bad in ({"stride": 0}, {"train_every": 0}, {"context_length": 0}):
        with pytest.raises(ConfigError):
            InferenceLoop(PersistenceAdapter(), session, symbol=SYMBOL, timeframe=TF,
                          **{"context_length": CONTEXT, **bad})
    session.close()
