"""Training adapters: the registry, each adapter's behaviour, and the
conformance suite (ettlib.training.checks) run for every registered adapter."""

from __future__ import annotations

import numpy as np
import pytest

from ettlib.errors import ConfigError, LookAheadError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent
from ettlib.coordinator.normalization import normalize
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.training import checks, registry
from ettlib.training.adapters import (
    PersistenceAdapter,
    RealTrainingAdapter,
    RiverAdapter,
    TransformerAdapter,
    normalized_target,
)

#: Tiny configurations so the whole suite runs in seconds on 2 cores.
SMALL = {
    "transformer": dict(context_length=8, d_model=8, n_heads=2, n_layers=1, d_ff=16, batch_size=16),
    "frozen": dict(context_length=8, d_model=8, n_heads=2, n_layers=1, d_ff=16, batch_size=16),
    "river": dict(batch_size=8),
    "persistence": dict(),
}


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def small(name: str):
    return lambda seed: registry.create(name, seed=seed, device="cpu", **SMALL.get(name, {})) \
        if name in ("transformer", "frozen") else registry.create(name, seed=seed, **SMALL.get(name, {}))


@pytest.mark.parametrize(
    "name, check",
    [(n, c) for n in registry.names() for c in checks.yield_checks()],
    ids=lambda v: v if isinstance(v, str) else v.__name__,
)
def test_conformance(name, check):
    check(small(name))


def test_every_registered_adapter_has_small_params():
    assert set(registry.names()) == set(SMALL)


def test_unknown_adapter_lists_known_names():
    with pytest.raises(UnknownNameError) as err:
        registry.create("rivr")
    assert "'river'" in str(err.value)
    with pytest.raises(UnknownNameError) as err:
        registry.create("zzzzzz")
    for name in ("transformer", "river", "persistence", "frozen"):
        assert name in str(err.value)


def test_registered_name_can_be_replaced_and_used():
    registry.register("persistence-2", PersistenceAdapter)
    try:
        assert isinstance(registry.create("persistence-2"), PersistenceAdapter)
    finally:
        registry._FACTORIES.pop("persistence-2")


def test_real_training_adapter_is_the_transformer():
    assert RealTrainingAdapter is TransformerAdapter


def test_bad_parameters_are_refused():
    with pytest.raises(ConfigError):
        TransformerAdapter(d_model=10, n_heads=4)
    with pytest.raises(ConfigError):
        TransformerAdapter(batch_size=0)
    with pytest.raises(UnknownNameError):
        RiverAdapter(model="forest")
    with pytest.raises(TypeError):
        TransformerAdapter(contxt_length=10)


def _frame_and_window(i=40, context=16):
    scenario = checks._scenario(context)
    t, kind, event, refs = scenario.steps[i]
    return scenario, event, refs[0]


def test_persistence_predicts_last_close_and_hold():
    window = np.array([[1.0, 3.0, 0.5, 2.0, 7.0], [2.0, 4.0, 1.5, 3.5, 9.0]])
    action, candle, confidence = PersistenceAdapter().predict(window, OHLCV_COLUMNS)
    assert (action, candle) == ("HOLD", (3.5, 3.5, 3.5, 3.5, 9.0))


def test_candle_target_is_the_completed_candle_in_the_frames_units():
    scenario, event, ref = _frame_and_window()
    target = normalized_target(event, ref.norm_params)
    p = ref.norm_params
    expected_close = (event.close - p["price_offset"]) / p["price_scale"]
    expected_volume = (event.volume - p["volume_offset"]) / p["volume_scale"]
    assert target[3] == pytest.approx(expected_close)
    assert target[4] == pytest.approx(expected_volume)


def test_transformer_regression_learns_a_constant_target():
    """Repeated pairs whose target is fixed: the loss must fall a lot."""
    adapter = TransformerAdapter(context_length=8, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 dropout=0.0, learning_rate=3e-3, device="cpu")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(16, 8, 5)).astype(np.float32)
    y = np.tile(np.array([0.5, 1.0, -1.0, 0.25, 0.0], dtype=np.float32), (16, 1))
    mask = np.ones(16, dtype=bool)
    actions = np.zeros(16, dtype=np.int64)
    import torch

    def loss():
        with torch.no_grad():
            return float(((adapter.model(torch.from_numpy(x)).candle.numpy() - y) ** 2).mean())

    first = loss()
    for _ in range(100):
        adapter.train_step(x, y, actions, mask)
    assert loss() < first / 10


def test_transformer_action_head_learns_pivot_labels():
    adapter = TransformerAdapter(context_length=8, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 dropout=0.0, learning_rate=3e-3, device="cpu")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(32, 8, 5)).astype(np.float32)
    labels = (x[:, -1, 3] > 0).astype(np.int64)  # 0=BUY / 1=SELL from the last close's sign
    for _ in range(120):
        adapter.train_step(x, np.zeros((32, 5), np.float32), labels, np.zeros(32, bool))
    predicted = [adapter.predict(w).action for w in x]
    accuracy = np.mean([p == ("BUY", "SELL")[l] for p, l in zip(predicted, labels)])
    assert accuracy >= 0.9


def test_pivot_label_low_is_buy_high_is_sell():
    adapter = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 batch_size=100, device="cpu")
    scenario = checks._scenario(16)
    pivots = [(e, refs) for _, kind, e, refs in scenario.steps if kind == 1][:4]
    source = checks.RecordingSource(checks.ArraySource(scenario.candles), lambda: 10**15)
    adapter.source = source
    pending = []
    for event, refs in pivots:
        adapter.on_pivot_event(event, refs)
        pending += [(event, r) for r in refs]
    pairs = [(p, d) for p, d in zip(adapter.pending, source.get_inference_data_batch([p.ref for p in adapter.pending]))]
    _, _, y_action, is_candle = adapter._tensors(pairs)
    assert not is_candle.any()
    assert [("BUY", "SELL", "HOLD")[a] for a in y_action] == [
        "BUY" if e.pivot_type.endswith("L") else "SELL" for e, _ in pending
    ]


def test_batches_train_when_full_and_at_flush():
    adapter = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 batch_size=4, device="cpu")
    scenario = checks._scenario(16)
    adapter.source = checks.ArraySource(scenario.candles)
    candles = [(e, refs[0]) for _, kind, e, refs in scenario.steps if kind == 0][:6]
    for event, ref in candles[:3]:
        adapter.on_candle_completion(event, ref)
    assert adapter.steps == 0 and len(adapter.pending) == 3
    adapter.on_candle_completion(*candles[3])
    assert adapter.steps == 1 and not adapter.pending
    adapter.on_candle_completion(*candles[4])
    adapter.on_candle_completion(candles[5][0], None)  # no frame matched: ignored
    assert len(adapter.pending) == 1
    assert len(adapter.flush()) == 1 and adapter.steps == 2


def test_auto_train_off_waits_for_flush():
    adapter = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 batch_size=2, auto_train=False, device="cpu")
    scenario = checks._scenario(16)
    adapter.source = checks.ArraySource(scenario.candles)
    for _, kind, e, refs in scenario.steps[:10]:
        if kind == 0:
            adapter.on_candle_completion(e, refs[0])
    assert adapter.steps == 0
    adapter.flush()
    assert adapter.steps >= 1 and not adapter.pending


def test_label_known_before_the_window_ends_is_refused():
    scenario, event, ref = _frame_and_window()
    early = CandleCompletionEvent("TEST", "1m", ref.data_range_end - 60_000, ref.data_range_end,
                                  1, 1, 1, 1, 1)
    adapter = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32,
                                 device="cpu")
    with pytest.raises(LookAheadError):
        adapter.on_candle_completion(early, ref)
    assert not adapter.pending


def test_checkpoint_of_another_shape_is_refused(tmp_path):
    a = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32, device="cpu")
    b = TransformerAdapter(context_length=16, d_model=32, n_heads=2, n_layers=1, d_ff=32, device="cpu")
    path = a.save(tmp_path / "a.pt")
    with pytest.raises(ConfigError):
        b.load(path)
    with pytest.raises(ConfigError):
        RiverAdapter().load(path)


def test_restoring_a_state_made_with_other_settings_is_a_config_error():
    tiny = dict(context_length=8, n_heads=2, n_layers=1, d_ff=16, device="cpu")
    state = TransformerAdapter(d_model=8, **tiny).checkpoint_state()
    for other, fragment in [
        (TransformerAdapter(d_model=16, **tiny), "d_model"),
        (TransformerAdapter(d_model=8, learning_rate=1e-3, **tiny), "optimizer"),
        (TransformerAdapter(d_model=8, batch_size=4, **tiny), "batch_size"),
        (registry.create("frozen", d_model=8, **tiny), "'transformer', not 'frozen'"),
        (RiverAdapter(), "'transformer', not 'river'"),
    ]:
        before = other.state_dict()
        with pytest.raises(ConfigError, match=fragment):
            other.restore_state(state)
        assert other.pairs_learned == before["pairs_learned"] and other.pending == []
    with pytest.raises(ConfigError, match="cannot be read"):
        PersistenceAdapter().restore_state(b"not a state")
    with pytest.raises(ConfigError, match="other settings: features"):
        PersistenceAdapter(features=("close",)).restore_state(PersistenceAdapter().checkpoint_state())


def test_river_features_are_scaled_and_predictions_stay_bounded():
    """Fat-tailed returns (Student t, df 2) must not make the River learner diverge."""
    adapter = RiverAdapter(batch_size=16)
    scenario = checks.make_scenario(n=400, context=16, seed=3)
    checks.drive(adapter, scenario)
    for probe in scenario.probes:
        _, (close,), _ = adapter.predict(probe, OHLCV_COLUMNS)
        assert abs(close) < 20


def test_predict_batch_equals_predict():
    adapter = TransformerAdapter(context_length=16, d_model=16, n_heads=2, n_layers=1, d_ff=32, device="cpu")
    scenario = checks._scenario(16)
    one = [adapter.predict(p, OHLCV_COLUMNS) for p in scenario.probes]
    many = adapter.predict_batch(scenario.probes, OHLCV_COLUMNS)
    for a, b in zip(one, many):
        assert a.action == b.action
        np.testing.assert_allclose(a.predicted_candle, b.predicted_candle, rtol=1e-5, atol=1e-6)


# -- the checks themselves can fail: broken adapters are caught ---------------

TINY = dict(context_length=8, d_model=8, n_heads=2, n_layers=1, d_ff=16, batch_size=16, device="cpu")


class _Peeking(TransformerAdapter):
    """Widens every frame by one candle: reads the candle it must predict."""

    def _train_pending(self, batch):
        import dataclasses

        for p in batch:
            p.ref = dataclasses.replace(p.ref, data_range_end=p.ref.target_timestamp,
                                        target_timestamp=p.ref.target_timestamp + 60_000,
                                        prediction_timestamp=p.ref.prediction_timestamp + 60_000)
        super()._train_pending(batch)


class _Mutating(PersistenceAdapter):
    def predict(self, window, columns=None):
        window[-1, 0] += 1.0
        return super().predict(window, columns)


class _Unseeded(TransformerAdapter):
    def __init__(self, **params):
        import torch

        super().__init__(**params)
        with torch.no_grad():
            self.model.candle_head.bias.add_(torch.rand(5))  # global RNG, not the seed


class _ForgetsOptimizer(TransformerAdapter):
    def load_state_dict(self, state):
        state = dict(state, optimizer=self.optimizer.state_dict())
        super().load_state_dict(state)


class _ForgetsPending(TransformerAdapter):
    """Checkpoints its weights but not the pairs it queued (at-least-once at best)."""

    def restore_state(self, state):
        super().restore_state(state)
        self.pending = []


class _TrainsOnce(TransformerAdapter):
    """Learns each candle pair twice (once more at flush)."""

    def _learn(self, pairs):
        return super()._learn(pairs) + super()._learn(pairs[:1])


@pytest.mark.parametrize(
    "broken, check",
    [
        (_Peeking, checks.check_no_look_ahead),
        (_Mutating, checks.check_inputs_not_mutated),
        (_Unseeded, checks.check_seeded_runs_reproduce),
        (_ForgetsOptimizer, checks.check_save_load_round_trip),
        (_ForgetsOptimizer, checks.check_checkpoint_state_round_trip),
        (_ForgetsPending, checks.check_checkpoint_state_round_trip),
        (_TrainsOnce, checks.check_results_match_events),
    ],
    ids=lambda v: v.__name__,
)
def test_checks_catch_broken_adapters(broken, check):
    params = {} if broken is _Mutating else TINY
    with pytest.raises(AssertionError):
        check(lambda seed: broken(seed=seed, **params))


def test_vectorized_targets_equal_normalize_bit_for_bit():
    scenario = checks._scenario(16)
    pairs = [(e, refs[0]) for _, kind, e, refs in scenario.steps if kind == 0][:20]
    from ettlib.training.adapters import normalized_targets

    many = normalized_targets([e for e, _ in pairs], [r.norm_params for _, r in pairs])
    for row, (event, ref) in zip(many, pairs):
        expected = normalize(np.array([event.ohlcv]), OHLCV_COLUMNS, ref.norm_params, dtype=np.float64)[0]
        assert np.array_equal(row, expected)


def test_training_leaves_the_global_rng_alone():
    import torch

    adapter = TransformerAdapter(**{k: v for k, v in TINY.items() if k != "batch_size"})
    x = np.zeros((4, 8, 5), np.float32)
    torch.manual_seed(5)
    expected = torch.rand(3)
    torch.manual_seed(5)
    adapter.train_step(x, np.zeros((4, 5), np.float32), np.zeros(4, np.int64), np.ones(4, bool))
    assert torch.equal(torch.rand(3), expected)


def test_reference_source_serves_what_the_real_coordinator_serves():
    """The checks' ArraySource and the coordinator (DuckDB) give an adapter identical windows."""
    import pandas as pd

    from ettlib.coordinator import InferenceTrainingCoordinator
    from ettlib.replay.provider import DataProvider
    from ettlib.store import DuckDBStorage

    scenario = checks._scenario(8)
    candles = scenario.candles
    frame = pd.DataFrame(candles.values, columns=list(candles.columns))
    frame.insert(0, "timestamp", candles.timestamps)
    with DuckDBStorage(":memory:") as storage:
        storage.ingest(frame, "TEST", "1m")
        coordinator = InferenceTrainingCoordinator(DataProvider(storage), storage, columns=OHLCV_COLUMNS)
        refs = [refs[0] for _, kind, _, refs in scenario.steps if kind == 0][:40]
        real = coordinator.get_inference_data_batch(refs)
        reference = checks.ArraySource(candles).get_inference_data_batch(refs)
        for a, b in zip(real, reference):
            assert np.array_equal(a.timestamps, b.timestamps)
            assert np.array_equal(a.values, b.values) and a.values.dtype == b.values.dtype
        # and an adapter driven through the real coordinator learns exactly the same
        one, two = small("transformer")(1), small("transformer")(1)
        checks.drive(one, scenario, source=checks.RecordingSource(coordinator, checks._Clock()))
        checks.drive(two, scenario)
        assert checks._predictions(one, scenario) == checks._predictions(two, scenario)


def test_compiled_features_are_the_numpy_definition():
    from ettlib.training.features import feature_names, reference_features, window_features

    rng = np.random.default_rng(3)
    for n in (1, 2, 3, 14, 15, 16, 31, 64):
        close = np.cumsum(rng.normal(size=n))
        for high, low in ((None, None), (close + 1.0, close - 0.5)):
            mine, numpy_ = window_features(close, high, low), reference_features(close, high, low)
            assert tuple(mine) == tuple(numpy_) == feature_names(high is not None)
            assert all(abs(mine[k] - numpy_[k]) <= 1e-12 for k in mine), n
    close = np.cumsum(rng.normal(size=40))
    close[5] = np.nan  # not finite: 0, as the definition says
    assert window_features(close)["vol"] == reference_features(close)["vol"] == 0.0


def test_river_features_kept_at_prediction_equal_the_learning_windows(store, make_candles):
    """Every pair a River adapter learns in a replay: the features it kept from the frame's
    prediction equal those of the window the coordinator re-reads for the pair."""
    from ettlib.training.inference_loop import InferenceLoop
    from ettlib.workbench import Workbench

    store.ingest(make_candles(400), "ETH/USDT", "1m")
    session = Workbench(store).session("ETH/USDT", columns=OHLCV_COLUMNS, warmup=33)
    adapter = RiverAdapter(batch_size=4)
    adapter.attach(session.coordinator, "ETH/USDT", "1m", ["L1L", "L1H", "L2L", "L2H"])
    compared, learn = [], adapter._learn

    def checked(pairs):
        data = session.coordinator.get_inference_data_batch([p.ref for p, _ in pairs])
        for (p, (feats, last, _, _)), d in zip(pairs, data):
            again = adapter.features_of(d.values, d.columns)
            assert adapter.memo[p.ref.inference_id][1] is feats  # kept at prediction, not recomputed
            assert feats == again and last == float(d.values[-1, d.columns.index("close")])
            compared.append(p.kind)
        return learn(pairs)

    adapter._learn = checked
    InferenceLoop(adapter, session, symbol="ETH/USDT", timeframe="1m", context_length=32).attach()
    session.run()
    adapter.flush()
    session.close()
    assert compared.count("candle") > 300 and compared.count("pivot") > 50
    assert adapter.pairs_learned == len(compared)


def test_river_one_pair_batches_learn_the_kept_features_of_the_learning_windows(store, make_candles):
    """``batch_size=1`` (each candle pair learned as it arrives, straight from its kept prediction):
    the same features as the re-read window, the same weights as a batch of one through the queue."""
    from ettlib.training.inference_loop import InferenceLoop
    from ettlib.workbench import Workbench

    store.ingest(make_candles(300), "ETH/USDT", "1m")

    def run(adapter, check):
        session = Workbench(store).session("ETH/USDT", columns=OHLCV_COLUMNS, warmup=33)
        adapter.attach(session.coordinator, "ETH/USDT", "1m", ["L1L", "L1H"])
        if check:
            learn = adapter._learn_candle

            def checked(event, ref, feats, last, guess, updates):
                d = session.coordinator.get_inference_data(ref)
                assert adapter.memo[ref.inference_id][1] is feats  # kept at prediction, not recomputed
                assert feats == adapter.features_of(d.values, d.columns)
                assert last == float(d.values[-1, d.columns.index("close")])
                compared.append(ref.inference_id)
                return learn(event, ref, feats, last, guess, updates)

            adapter._learn_candle = checked
        InferenceLoop(adapter, session, symbol="ETH/USDT", timeframe="1m", context_length=32).attach()
        session.run()
        adapter.flush()
        session.close()
        return adapter

    compared = []
    fast = run(RiverAdapter(batch_size=1), check=True)
    assert len(compared) > 200 and fast.pivots_seen > 20

    from ettlib.training.adapters.base import TrainingAdapter

    class Queued(RiverAdapter):  # the base's queue-then-train path, batch of one
        def on_candle_completion(self, event, inference_ref):
            return TrainingAdapter.on_candle_completion(self, event, inference_ref)

    slow = run(Queued(batch_size=1), check=False)
    assert fast.pairs_learned == slow.pairs_learned
    assert fast.regressor["LinearRegression"].weights == slow.regressor["LinearRegression"].weights
    assert [(r.inference_id, r.event_key, r.loss) for r in fast.results] == [
        (r.inference_id, r.event_key, r.loss) for r in slow.results]


def test_the_river_memo_keeps_the_most_recent_frames_and_evicts_the_oldest(monkeypatch):
    """Past ``MEMO_FRAMES`` each new frame evicts the oldest one kept, in registration order."""
    from ettlib.coordinator.frames import InferenceFrameReference
    from ettlib.training.adapters import river

    monkeypatch.setattr(river, "MEMO_FRAMES", 4)
    adapter = RiverAdapter(seed=1)
    window = np.column_stack([np.linspace(1.0, 2.0, 30)] * 3)
    for i in range(1, 11):
        adapter.predict(window, ("high", "low", "close"))
        t = 1_800_000 + i * 60_000
        adapter.frame_registered(InferenceFrameReference(
            i, "ETH/USDT", "1m", t, t, t - 30 * 60_000, t - 60_000, (0.0, 1.0, 0.0, 1.0), "HOLD", (), 0.5))
    assert list(adapter.memo) == [7, 8, 9, 10]
    adapter.load_state_dict(adapter.state_dict())
    assert len(adapter.memo) == 0
    adapter.predict(window, ("high", "low", "close"))
    adapter.frame_registered(InferenceFrameReference(
        11, "ETH/USDT", "1m", 3_000_000, 3_000_000, 3_000_000 - 30 * 60_000, 3_000_000 - 60_000,
        (0.0, 1.0, 0.0, 1.0), "HOLD", (), 0.5))
    assert list(adapter.memo) == [11]


def test_pair_results_pickle_compactly_and_old_pickles_still_load():
    """Checkpoints pickle every undrained result: they must round-trip, fast form or the old one."""
    import pickle

    from ettlib.training.adapters.base import PairResult, pair_result

    results = [pair_result(7, "candle", "candle:ETH/USDT:1m:0", 60_000, 0.25, {}),
               PairResult("a7", "pivot", "pivot:ETH/USDT:1m:L2L:0", 120_000, 1.5, {"hit": 1.0})]
    back = pickle.loads(pickle.dumps(results, protocol=pickle.HIGHEST_PROTOCOL))
    assert back == results and all(type(r) is PairResult for r in back)
    # what the dataclass's own pickling wrote before (a stored checkpoint of an earlier version)
    old = (b'\x80\x05\x95_\x00\x00\x00\x00\x00\x00\x00]\x94\x8c\x1dettlib.training.adapters.base\x94\x8c\n'
           b'PairResult\x94\x93\x94)\x81\x94]\x94(\x8c\x011\x94\x8c\x05pivot\x94\x8c\x01k\x94K\x03G?\xf0'
           b'\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94K\x01seba.')
    assert pickle.loads(old) == [PairResult("1", "pivot", "k", 3, 1.0, {"a": 1})]


def test_undrained_results_are_checkpointed_as_columns_and_list_states_still_restore():
    """A checkpoint stores the undrained results as six tuples; a state holding the list of results
    (what earlier versions wrote) restores the same results."""
    import pickle

    from ettlib.training.adapters.base import PairResult, pair_result

    adapter = RiverAdapter(seed=3)
    adapter.results = [pair_result(7, "candle", "candle|ETH/USDT|1m||0", 60_000, 0.25, {}),
                       pair_result("a7", "pivot", "pivot|ETH/USDT|1m|L2L|0", 120_000, 1.5, {"hit": 1.0})]
    envelope = pickle.loads(adapter.checkpoint_state())
    body = adapter._unpack(envelope["state"])
    assert body["results"] == ((7, "a7"), ("candle", "pivot"), ("candle|ETH/USDT|1m||0", "pivot|ETH/USDT|1m|L2L|0"),
                               (60_000, 120_000), (0.25, 1.5), ({}, {"hit": 1.0}))
    body["results"] = list(adapter.results)  # the state of an earlier version
    old_state = pickle.dumps({**envelope, "state": adapter._pack(body)}, protocol=pickle.HIGHEST_PROTOCOL)
    for state in (adapter.checkpoint_state(), old_state):
        restored = RiverAdapter(seed=3)
        restored.restore_state(state)
        assert restored.results == adapter.results and all(type(r) is PairResult for r in restored.results)
    restored = RiverAdapter(seed=3)
    restored.restore_state(RiverAdapter(seed=3).checkpoint_state())  # none undrained
    assert restored.results == []


def test_a_checkpoint_with_many_undrained_results_warns_once():
    """Each commit stores every undrained result again: from UNDRAINED_RESULTS_WARNING on, the adapter says so, once."""
    import warnings

    from ettlib.training.adapters.base import UNDRAINED_RESULTS_WARNING, pair_result

    adapter = RiverAdapter(seed=3)
    result = pair_result(7, "candle", "candle|ETH/USDT|1m||0", 60_000, 0.25, {})
    adapter.results = [result] * (UNDRAINED_RESULTS_WARNING - 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter.checkpoint_state()  # below the threshold: silent
    adapter.results.append(result)
    with pytest.warns(UserWarning, match=r"river adapter holds 100,000 results not yet drained.*drain_results\(\)"):
        adapter.checkpoint_state()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        adapter.checkpoint_state()  # once per adapter
