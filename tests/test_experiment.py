"""The experiment runner: config validation, prequential scoring, full runs."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from ettlib.store.catalog import reading_runs
from ettlib.errors import ConfigError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.experiment.runner import ExperimentConfig
from ettlib.evaluation.scores import model_direction_scores
from ettlib.experiment.metrics import PrequentialScorer

OHLCV = ("open", "high", "low", "close", "volume")


pytestmark = pytest.mark.usefixtures("one_torch_thread")



# -- config ------------------------------------------------------------------


def test_config_round_trips_through_json():
    config = ExperimentConfig(symbols=("A/B", "C/D"), start=0, end=3_600_000, adapter="river",
                              adapter_params={"learning_rate": 0.02}, train_every=4, seed=3)
    text = config.to_json()
    again = ExperimentConfig.from_json(text)
    assert again == config and again.to_json() == text
    assert json.loads(text)["symbols"] == ["A/B", "C/D"]


def test_config_is_frozen():
    config = ExperimentConfig()
    with pytest.raises(AttributeError):
        config.seed = 2


@pytest.mark.parametrize(
    "values, error, fragment",
    [
        ({"contxt_length": 3}, UnknownNameError, "context_length"),
        ({"adapter": "transfomer"}, UnknownNameError, "transformer"),
        ({"baselines": ["persistance"]}, UnknownNameError, "persistence"),
        ({"timeframe": "5min"}, UnknownNameError, "5m"),
        ({"pivot_types": ["L2X"]}, UnknownNameError, "L2L"),
        ({"columns": ["open", "close", "volume", "rsi14"]}, UnknownNameError, "rsi_14"),
        ({"context_length": "64"}, ConfigError, "context_length"),
        ({"seed": 1.5}, ConfigError, "seed"),
        ({"symbols": "ETH/USDT"}, ConfigError, "symbols"),
        ({"symbols": []}, ConfigError, "symbols"),
        ({"start": "yesterday"}, ConfigError, "start"),
        ({"start": 10, "end": 5}, ConfigError, "after"),
        ({"train_every": 0}, ConfigError, "train_every"),
        ({"adapter_params": {"f": object()}}, ConfigError, "JSON"),
        ({"timeframe": "1m", "base_timeframe": "5m"}, ConfigError, "multiple"),
        ({"columns": ["open", "close"]}, ConfigError, "volume"),
    ],
)
def test_bad_configs_are_refused_with_a_useful_message(values, error, fragment):
    with pytest.raises(error) as err:
        ExperimentConfig.from_dict(values)
    assert fragment in str(err.value)


def test_iso_times_are_utc():
    config = ExperimentConfig.from_dict({"start": "2024-01-01", "end": "2024-01-01T01:00:00+01:00"})
    assert config.start == 1_704_067_200_000
    assert config.end == 1_704_067_200_000  # 01:00 at +01:00 is midnight UTC


# -- prequential scoring ---------------------------------------------------------


def _frame(i, params, action, candle):
    t = 60_000 * (i + 10)
    return InferenceFrameReference(i + 1, "X", "1m", t, t, t - 600_000, t - 60_000, params,
                                   action, candle, 0.5)


def test_scorer_matches_a_naive_computation():
    rng = np.random.default_rng(0)
    n = 40
    scorer = PrequentialScorer({"model": OHLCV, "persistence": OHLCV, "river": ("close",)})
    rows = []
    for i in range(n):
        params = {"price_offset": 100 + rng.normal(), "price_scale": 1 + rng.random(),
                  "volume_offset": 5.0, "volume_scale": 2.0}
        last_close = 100 + rng.normal()
        model_close_n = rng.normal()
        river_close_n = rng.normal()
        ref = _frame(i, params, "BUY" if i % 3 else "HOLD", (0, 0, 0, model_close_n, 0))
        persist_n = (last_close - params["price_offset"]) / params["price_scale"]
        scorer.record(ref, last_close=last_close, predictions={
            "persistence": ("HOLD", (persist_n,) * 4 + (0,), 1.0),
            "river": ("SELL", (river_close_n,), 0.7),
        })
        actual = last_close + (0 if i == 5 else rng.normal())
        t = ref.target_timestamp
        scorer.on_candle_completion(CandleCompletionEvent("X", "1m", t, t + 60_000, 1, 1, 1, actual, 1), ref)
        rows.append((last_close, actual,
                     model_close_n * params["price_scale"] + params["price_offset"],
                     river_close_n * params["price_scale"] + params["price_offset"]))
    last, actual, model, river = map(np.array, zip(*rows))
    m = scorer.metrics()
    assert m["model"]["mae_close"] == pytest.approx(np.abs(model - actual).mean())
    assert m["river"]["mae_close"] == pytest.approx(np.abs(river - actual).mean())
    assert m["persistence"]["mae_close"] == pytest.approx(np.abs(last - actual).mean())
    moved = actual != last
    expected_dir = (np.sign(model - last) == np.sign(actual - last))[moved].mean()
    assert m["model"]["direction_accuracy"] == pytest.approx(expected_dir)
    # the report's rule: a flat prediction is no call, half a hit, so persistence sits on the chance line
    assert m["persistence"]["direction_accuracy"] == 0.5
    table = pd.DataFrame({"last_close": last, "actual_close": actual, "pred_close.model": model,
                          "pred_close.persistence": last})
    for name in ("model", "persistence"):
        assert m[name]["direction_accuracy"] == pytest.approx(np.nanmean(model_direction_scores(table, name)))
    assert m["model"]["n_candles"] == n
    assert m["model"]["mae_close_second_half"] == pytest.approx(np.abs(model - actual)[n // 2:].mean())


def test_scorer_pivot_confusion():
    params = {"price_offset": 0.0, "price_scale": 1.0, "volume_offset": 0.0, "volume_scale": 1.0}
    scorer = PrequentialScorer({"model": OHLCV, "persistence": OHLCV})
    refs = [_frame(i, params, a, ()) for i, a in enumerate(["BUY", "SELL", "HOLD", "BUY"])]
    for ref in refs:
        scorer.record(ref, last_close=1.0, predictions={"persistence": ("HOLD", (), 1.0)})
    low = PivotEvent("X", "1m", "L2L", 2, refs[3].prediction_timestamp, 1.0, 0.1, 10**9)
    high = PivotEvent("X", "1m", "L2H", 2, refs[3].prediction_timestamp, 1.0, 0.1, 10**9)
    scorer.on_pivot_event(low, refs[:3])   # truth BUY for BUY, SELL, HOLD predictions
    scorer.on_pivot_event(high, refs[3:])  # truth SELL for a BUY prediction
    m = scorer.metrics()
    assert m["model"]["pivot_confusion"] == [[1, 1, 1], [1, 0, 0]]
    assert m["model"]["pivot_accuracy"] == pytest.approx(1 / 4)
    assert m["persistence"]["pivot_confusion"] == [[0, 0, 3], [0, 0, 1]]
    assert m["persistence"]["pivot_accuracy"] == 0.0


# -- full runs ------------------------------------------------------------------

from ettlib.errors import SubscriberError  # noqa: E402
from ettlib.training import registry  # noqa: E402
from ettlib.training.adapters import PersistenceAdapter  # noqa: E402
from ettlib.experiment.runner import ExperimentError, run_experiment  # noqa: E402

N_CANDLES = 240
TINY = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "device": "cpu"}


@pytest.fixture
def db(tmp_path, make_candles):
    from ettlib.store import DuckDBStorage

    path = tmp_path / "candles.duckdb"
    with DuckDBStorage(path) as storage:
        storage.ingest(make_candles(N_CANDLES, seed=4), "ETH/USDT", "1m")
    return path


def _config(db, **changes):
    values = dict(db_path=str(db), context_length=16, batch_size=8, adapter_params=TINY,
                  pivot_types=("L1L", "L1H", "L2L", "L2H"), pivot_lookback=3, seed=11)
    values.update(changes)
    return ExperimentConfig(**values)


def _events(path, run_id):
    with reading_runs(path) as con:
        return con.execute(
            "SELECT inference_id, event_kind, event_key, subscriber, knowable_time, seq, loss, metrics"
            " FROM training_events WHERE run_id = ? ORDER BY seq, subscriber, inference_id", [run_id]
        ).fetchall()


def _run_row(path, run_id):
    with reading_runs(path) as con:
        cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
        names = [d[0] for d in cursor.description]
        return dict(zip(names, cursor.fetchone()))


def test_a_run_records_its_manifest_metrics_and_pair_losses(db):
    config = _config(db)
    result = run_experiment(config)
    assert result.status == "completed"
    row = _run_row(db, result.run_id)
    assert row["status"] == "completed" and row["error"] is None
    # the manifest records what the store decided: the base (and model) timeframe
    assert ExperimentConfig.from_json(row["config"]) == config.replace(base_timeframe="1m", timeframe="1m")
    assert result.config.base_timeframe == "1m"
    assert row["seed"] == 11 and row["wall_s"] > 0 and row["package_version"]
    assert len(row["data_fingerprint"]) == 32
    assert json.loads(row["metrics"]) == json.loads(json.dumps(result.metrics))
    events = _events(db, result.run_id)
    learned = [e for e in events if e[3] == "transformer" and e[0] != ""]
    assert len(learned) == result.metrics["candle_pairs"] + result.metrics["pivot_pairs"] > 0
    assert all(e[6] is not None and np.isfinite(e[6]) for e in learned)  # every pair has its loss
    assert sorted(e[6] for e in learned) == sorted(result.pair_losses)
    scored = [e for e in events if e[3] == "prequential" and e[1] == "candle" and e[0] != ""]
    assert scored and all("abs_error_close.model" in json.loads(e[7]) for e in scored)
    for name in ("model", "persistence", "frozen"):
        assert result.scores[name]["n_candles"] == len(scored)
    assert result.metrics["frames"] == N_CANDLES - 16 + 1
    assert "persistence" in result.summary() and "mae_close" in result.summary()


def test_persistence_scores_match_a_pandas_reference(db, make_candles):
    """Persistence's MAE and the pivot confusion, recomputed from the candles alone."""
    result = run_experiment(_config(db, adapter="persistence", baselines=(), adapter_params={}))
    closes = make_candles(N_CANDLES, seed=4)["close"].to_numpy()
    # frames at the close of candle i (i = 15 ..) predict candle i + 1: |close[i] - close[i+1]|
    errors = np.abs(np.diff(closes))[15:]
    m = result.scores["model"]
    assert m["n_candles"] == len(errors)
    assert m["mae_close"] == pytest.approx(errors.mean(), rel=1e-5)
    assert m["direction_accuracy"] == 0.5  # never a call: the chance line
    assert m["pivot_accuracy"] == 0.0 and np.array(m["pivot_confusion"])[:, :2].sum() == 0


def test_same_config_and_seed_give_identical_metrics_and_training_events(db):
    config = _config(db)
    a = run_experiment(config)
    b = run_experiment(config)
    assert a.run_id != b.run_id
    assert a.metrics == b.metrics and a.pair_losses == b.pair_losses
    assert _events(db, a.run_id) == _events(db, b.run_id)
    c = run_experiment(config.replace(seed=12))
    assert c.pair_losses != a.pair_losses


class _Exploding(PersistenceAdapter):
    name = "exploding"

    def __init__(self, **params):
        super().__init__(**params)
        self.calls = 0

    def predict(self, window, columns=None):
        self.calls += 1
        if self.calls > 60:
            raise RuntimeError("model exploded at prediction 61")
        return super().predict(window, columns)


@pytest.fixture
def exploding():
    registry.register("exploding", _Exploding)
    yield
    registry._FACTORIES.pop("exploding", None)


def test_a_failed_run_keeps_its_partial_results_and_manifest(db, exploding):
    config = _config(db, adapter="exploding", baselines=("persistence",), adapter_params={})
    with pytest.raises(ExperimentError) as err:
        run_experiment(config)
    assert "model exploded" in str(err.value) and err.value.run_id in str(err.value)
    assert isinstance(err.value.__cause__, SubscriberError)
    row = _run_row(db, err.value.run_id)
    assert row["status"] == "failed" and "model exploded at prediction 61" in row["error"]
    partial = json.loads(row["metrics"])
    assert partial["persistence.n_candles"] > 0  # scores up to the failure were kept
    assert err.value.result.status == "failed"
    assert len(_events(db, err.value.run_id)) > 0  # delivered pairs up to the failure

    with reading_runs(db) as con:
        frames = con.execute("SELECT count(*) FROM inference_frames WHERE run_id = ?",
                             [err.value.run_id]).fetchone()[0]
    assert frames == 60


def test_results_can_go_to_a_separate_file_with_candles_read_only(db, tmp_path):
    results = tmp_path / "results" / "run1.duckdb"
    result = run_experiment(_config(db, adapter="river", baselines=("persistence",),
                                    adapter_params={}, results_db=str(results)))
    assert _run_row(results, result.run_id)["status"] == "completed"
    assert len(_events(results, result.run_id)) > 0

    with reading_runs(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_checkpoint_is_saved_and_reloads(db, tmp_path):
    from ettlib.experiment.runner import build_adapter

    path = tmp_path / "model.pt"
    config = _config(db, checkpoint=str(path), baselines=())
    run_experiment(config)
    adapter = build_adapter("transformer", config).load(path)
    assert adapter.steps > 0


def test_a_missing_database_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="no such database"):
        run_experiment(ExperimentConfig(db_path=str(tmp_path / "nope.duckdb")))


def test_parameters_an_adapter_refuses_fail_before_the_run(db):

    with pytest.raises(ConfigError, match="d_model"):
        run_experiment(_config(db, adapter="persistence"))  # TINY transformer params
    with reading_runs(db) as con:
        assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0


def test_ett_run_reads_a_config_file_and_flags(db, tmp_path, capsys):
    from ettlib.cli import main

    config_file = tmp_path / "exp.json"
    config_file.write_text(json.dumps({"adapter": "river", "context_length": 16, "baselines": []}))
    assert main(["run", str(config_file), "--db", str(db), "--seed", "3", "--no-progress",
                 "--json", "-p", "pivot_types=[\"L1L\", \"L1H\"]", "-p", "batch_size=4"]) == 0
    out = capsys.readouterr()
    metrics = json.loads(out.out)  # stdout holds the JSON alone; the run id went to stderr
    assert metrics["candle_pairs"] > 0 and "ett run: run run-" in out.err
    row = _run_row(db, _latest_run(db))
    config = ExperimentConfig.from_json(row["config"])
    assert (config.adapter, config.seed, config.batch_size, config.pivot_types) == ("river", 3, 4, ("L1L", "L1H"))
    assert main(["run", "--db", str(db), "-p", "batch_sise=4"]) == 2
    assert "did you mean 'batch_size'" in capsys.readouterr().err


def _latest_run(path):
    with reading_runs(path) as con:
        return con.execute("SELECT run_id FROM runs ORDER BY started_at DESC LIMIT 1").fetchone()[0]


def test_validating_a_config_does_not_import_torch():
    """Reports validate papermill parameters with ExperimentConfig: that must stay cheap."""
    import subprocess
    import sys

    code = ("import sys; from ettlib.experiment.runner import ExperimentConfig;"
            "ExperimentConfig.from_dict({'adapter': 'river', 'baselines': ['frozen']});"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


# -- the frozen baseline -------------------------------------------------------


def test_a_river_runs_frozen_baseline_is_its_own_untrained_model(db):
    """Not a Transformer: an untrained River model, which predicts no change (persistence's close)."""
    import subprocess
    import sys

    code = ("import sys; from ettlib.experiment.runner import ExperimentConfig, run_experiment;"
            f"r = run_experiment(ExperimentConfig(db_path={str(db)!r}, adapter='river', context_length=16,"
            " batch_size=8, seed=11), quiet=True);"
            "print(r.scores['frozen']['mae_close'], r.scores['persistence']['mae_close'], 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    frozen, persistence, torch_imported = out.stdout.split()
    assert float(frozen) == pytest.approx(float(persistence), rel=1e-9)
    assert torch_imported == "False"  # the run never built a Transformer


def test_the_frozen_baseline_of_an_adapter_object_is_a_copy_taken_before_the_run(db):
    import threading

    from ettlib.experiment.runner import build_baseline, resolve_config
    from ettlib.training.adapters import RiverAdapter, TransformerAdapter
    from ettlib.store import DuckDBStorage

    model = RiverAdapter(learning_rate=0.05)
    with DuckDBStorage(db, read_only=True) as storage:
        config = resolve_config(storage, _config(db, adapter_params={}), model)
    frozen = build_baseline("frozen", config, model)
    assert type(frozen) is RiverAdapter and frozen is not model and frozen.regressor is not model.regressor
    assert frozen.learning_rate == 0.05
    # a registered Transformer keeps the registered frozen Transformer (same parameters and seed)
    assert type(build_baseline("frozen", _config(db), None)) is TransformerAdapter
    model.lock = threading.Lock()  # cannot be deep-copied
    with pytest.raises(ConfigError, match="leave 'frozen' out of baselines"):
        build_baseline("frozen", config, model)
