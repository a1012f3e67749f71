"""The experiment notebook's steps: check its parameters, get the data, run, evaluate.

``notebooks/02_experiment.ipynb`` calls these, so that what it does holds
however it is run (JupyterLab, ``ett report``, or ``papermill`` called
directly):

1. :func:`prepare_report` checks **every parameter before anything is
   written**: a name the notebook does not declare fails the run with a
   "did you mean" (papermill itself only warns, then runs with the
   defaults), a value of the wrong type fails it (``symbols="ETH/USDT"`` is
   a string, not a list), and the experiment config is built (its own
   checks).  Then it makes sure the candles are there: demo candles are
   written **only at the default database** (see
   :mod:`ettlib.notebooks.provenance`), elsewhere a missing file or symbol
   is an error saying how to get data.
2. :meth:`PreparedReport.run` runs the experiment
   (:func:`ettlib.experiment.runner.run_experiment`).
3. :func:`evaluate_run` reads the run's scored predictions back as the
   evaluation layer's tables (:func:`prediction_table`,
   :func:`pivot_table`) and compares the model with its fair baselines, with
   intervals, a Diebold-Mariano test and a verdict, plus what following its
   actions would have earned (:mod:`ettlib.evaluation`).

The notebook's parameters are the fields of ``ExperimentConfig`` plus
:data:`NOTEBOOK_PARAMETERS`; :data:`PARAMETER_HELP` says what each does (the
parameters cell carries the same text as its comments).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError, UnknownNameError

__all__ = [
    "NOTEBOOK_PARAMETERS",
    "PARAMETER_HELP",
    "PreparedReport",
    "RunEvaluation",
    "declared_parameters",
    "prepare_report",
    "prediction_table",
    "pivot_table",
    "learned_events",
    "evaluate_run",
]

#: Parameters of the experiment notebook that are not ``ExperimentConfig`` fields: (types, default).
NOTEBOOK_PARAMETERS: dict[str, tuple[tuple[type, ...], Any]] = {
    "make_demo_if_missing": ((bool,), True),
    "demo_days": ((int, float), 2.0),
    "fee_bps": ((int, float), 5.0),
    "slippage_bps": ((int, float), 0.0),
    "bootstrap_reps": ((int,), 1000),
}

#: What each parameter of the experiment notebook does (its comment in the parameters cell).
PARAMETER_HELP: dict[str, str] = {
    "symbols": "symbols to replay, a list (e.g. ['ETH/USDT'])",
    "base_timeframe": "timeframe of the stored candles; None: the finest stored",
    "timeframe": "timeframe the model sees; None: the base one (a higher one is aggregated)",
    "start": "first candle to replay (ISO date or epoch ms, UTC); None: the first stored",
    "end": "last candle to replay (ISO date or epoch ms, UTC); None: the last stored",
    "adapter": "model to train (transformer, river, persistence, ...)",
    "adapter_params": "the adapter's own parameters (a mapping)",
    "baselines": "baselines predicting on the same windows (persistence, frozen)",
    "context_length": "candles in each input window",
    "columns": "window columns fed to the model",
    "pivot_types": "pivot kinds the model learns actions from",
    "pivot_lookback": "candles before a pivot whose frames it labels",
    "pivot_levels": "highest Williams pivot level detected",
    "batch_size": "pairs per training step",
    "train_every": "train every N pairs; None: every batch_size pairs",
    "stride": "predict every N candles",
    "seed": "seed of the model and of the bootstrap",
    "db_path": "candle database; demo candles are written only at the default data/ett.duckdb",
    "results_db": "file for the run's results; None: its own file beside db_path (data/ett.runs/<run id>.duckdb)",
    "run_name": "prefix of the run id",
    "checkpoint": "model checkpoint file to start from; None: a fresh model",
    "torch_threads": "CPU threads for torch; None: torch's default",
    "make_demo_if_missing": "write demo candles at the default database when it lacks a symbol",
    "demo_days": "days of demo candles to write",
    "fee_bps": "fee per unit of turnover in the trading diagnostic, basis points",
    "slippage_bps": "slippage per unit of turnover in the trading diagnostic, basis points",
    "bootstrap_reps": "block-bootstrap replications for every interval",
}


def declared_parameters() -> dict[str, Any]:
    """Every parameter of the experiment notebook with its default, in the parameters cell's order.

    >>> list(declared_parameters())[:2], declared_parameters()["fee_bps"]
    (['symbols', 'base_timeframe'], 5.0)
    """
    from ettlib.experiment.config import ExperimentConfig

    defaults = {f.name: f.default for f in dataclasses.fields(ExperimentConfig)
                if f.default is not dataclasses.MISSING}
    defaults.update({f.name: f.default_factory() for f in dataclasses.fields(ExperimentConfig)
                     if f.default_factory is not dataclasses.MISSING})
    ordered = {f.name: defaults[f.name] for f in dataclasses.fields(ExperimentConfig)}
    ordered.update({name: default for name, (_, default) in NOTEBOOK_PARAMETERS.items()})
    return ordered


@dataclass(frozen=True)
class PreparedReport:
    """A checked experiment config, where its data is, and the report's own options.

    The run's results file is known once it ran: ``ExperimentResult.results_db``
    (its own file beside the store, unless the ``results_db`` parameter names one).
    """

    config: Any  #: ExperimentConfig
    db_path: Path
    values: Mapping[str, Any]  #: every parameter's value
    demo_written: tuple[str, ...]  #: symbols whose demo candles this report wrote
    fee_bps: float
    slippage_bps: float
    bootstrap_reps: int

    def run(self):
        """Run the experiment (``run_experiment``); its ``ExperimentResult``."""
        from ettlib.experiment.runner import run_experiment

        return run_experiment(self.config)

    def parameters_table(self):
        """Every parameter's value against its default, with what it does."""
        from ettlib.notebooks.provenance import parameters_table

        return parameters_table(self.values, declared_parameters(), PARAMETER_HELP)


def _check_notebook_value(name: str, value: Any) -> None:
    types, default = NOTEBOOK_PARAMETERS[name]
    if isinstance(value, bool) and bool not in types or not isinstance(value, types):
        raise ConfigError(f"parameter {name!r} expects {types[-1].__name__} (default {default!r}), "
                          f"got {type(value).__name__} {value!r}")


def prepare_report(namespace: Mapping[str, Any], before: set[str] | frozenset[str]) -> PreparedReport:
    """Check the notebook's parameters, then make sure its candles are there (see the module doc).

    Parameters
    ----------
    namespace
        The notebook's ``globals()`` after its parameters (and papermill's
        injected ones) ran.
    before
        The names ``namespace`` held before the parameters cell: every other
        name that does not start with ``_`` is a parameter, and must be declared.
    """
    from ettlib.experiment.config import ExperimentConfig
    from ettlib.notebooks.tools import provide_demo_data, resolve_db_path

    declared = declared_parameters()
    given = [n for n in namespace if n not in before and not n.startswith("_")]
    for name in given:
        if name not in declared:
            raise UnknownNameError("parameter of the experiment notebook", name, declared)
    for name in NOTEBOOK_PARAMETERS:
        if name in namespace:
            _check_notebook_value(name, namespace[name])
    values = {name: namespace.get(name, default) for name, default in declared.items()}
    fields = {f.name for f in dataclasses.fields(ExperimentConfig)}
    config = ExperimentConfig.from_dict({k: v for k, v in values.items() if k in fields})
    if values["demo_days"] <= 0:
        raise ConfigError(f"parameter 'demo_days' must be > 0, got {values['demo_days']!r}")
    if values["bootstrap_reps"] < 10:
        raise ConfigError(f"parameter 'bootstrap_reps' must be >= 10, got {values['bootstrap_reps']!r}")
    if values["fee_bps"] < 0 or values["slippage_bps"] < 0:
        raise ConfigError("parameters 'fee_bps' and 'slippage_bps' must be >= 0")
    db = resolve_db_path(config.db_path)
    results = resolve_db_path(config.results_db) if config.results_db else None
    written = provide_demo_data(db, config.symbols, make_demo_if_missing=values["make_demo_if_missing"],
                                days=float(values["demo_days"]))
    config = dataclasses.replace(config, db_path=str(db), results_db=results and str(results))
    return PreparedReport(config, db, values, written, float(values["fee_bps"]),
                          float(values["slippage_bps"]), int(values["bootstrap_reps"]))


# ---------------------------------------------------------------- the run's tables


def _rows(database, sql: str, parameters: list) -> list[tuple]:
    from ettlib.store.catalog import reading_runs

    with reading_runs(database) as con:
        return con.execute(sql, parameters).fetchall()


def prediction_table(database, run_id: str, subscriber: str = "prequential"):
    """The run's scored candle predictions as the evaluation layer's prediction table.

    One row per candle pair the prequential subscriber scored (its metrics
    hold the prediction, see :mod:`ettlib.experiment.scoring`), in
    prediction-time order; times are the frame's (``inference_frames``).  A
    row without ``last_open`` (a run whose windows lack the open) gets its
    ``last_close``: its last candle then has no direction.
    """
    import pandas as pd

    rows = _rows(database, (
        "SELECT f.symbol, f.prediction_timestamp, f.target_timestamp, e.metrics FROM training_events e"
        " JOIN inference_frames f ON f.run_id = e.run_id AND f.inference_id = e.inference_id"
        " WHERE e.run_id = ? AND e.subscriber = ? AND e.event_kind = 'candle' AND e.metrics IS NOT NULL"
        " ORDER BY f.prediction_timestamp, f.symbol, e.seq"), [run_id, subscriber])
    records = []
    for symbol, predicted_at, target, metrics in rows:
        values = json.loads(metrics)
        if "actual_close" not in values:
            continue  # a run recorded before predictions were kept
        record = {"symbol": symbol, "prediction_time": int(predicted_at), "target_time": int(target)}
        record.update({k: v for k, v in values.items() if not k.startswith(("abs_error", "direction_hit"))})
        record.setdefault("last_open", record["last_close"])
        records.append(record)
    columns = ["symbol", "prediction_time", "target_time", "last_open", "last_close", "actual_open",
               "actual_close"]
    frame = pd.DataFrame.from_records(records) if records else pd.DataFrame(columns=columns)
    models = sorted({c for c in frame.columns if c.startswith(("pred_close.", "action."))},
                    key=lambda c: (c.split(".", 1)[1] != "model", c.split(".", 1)[1], c))
    frame = frame[columns + models]
    return frame.astype({"prediction_time": "int64", "target_time": "int64"}).reset_index(drop=True)


def pivot_table(database, run_id: str, subscriber: str = "prequential"):
    """The run's matched ``(pivot, frame)`` pairs as the evaluation layer's pivot table.

    The actions are each model's for the frame, as its candle pair recorded
    them (a frame whose candle was never scored is left out), and so are the
    frame's ``last_open`` and ``last_close`` (for the "last candle reversed"
    baseline of :mod:`ettlib.evaluation.baselines`).
    """
    import pandas as pd

    rows = _rows(database, (
        "SELECT f.symbol, p.knowable_time, p.metrics, c.metrics FROM training_events p"
        " JOIN inference_frames f ON f.run_id = p.run_id AND f.inference_id = p.inference_id"
        " JOIN training_events c ON c.run_id = p.run_id AND c.inference_id = p.inference_id"
        "  AND c.subscriber = p.subscriber AND c.event_kind = 'candle'"
        " WHERE p.run_id = ? AND p.subscriber = ? AND p.event_kind = 'pivot' AND p.metrics IS NOT NULL"
        "  AND c.metrics IS NOT NULL ORDER BY p.knowable_time, p.seq, f.prediction_timestamp"),
        [run_id, subscriber])
    records = []
    for symbol, confirmed, pivot, candle in rows:
        pivot, candle = json.loads(pivot), json.loads(candle)
        actions = {k: v for k, v in candle.items() if k.startswith("action.")}
        if not actions:
            continue
        frame = {k: candle[k] for k in ("last_open", "last_close") if k in candle}
        frame.setdefault("last_open", frame.get("last_close"))
        records.append({"symbol": symbol, "pivot_time": int(pivot["pivot_time"]), "confirmed_at": int(confirmed),
                        "implied_action": pivot["implied_action"], **frame, **actions})
    columns = ["symbol", "pivot_time", "confirmed_at", "implied_action"]
    if not records:
        return pd.DataFrame(columns=columns)
    return pd.DataFrame.from_records(records).astype({"pivot_time": "int64", "confirmed_at": "int64"})


def learned_events(database, run_id: str):
    """Every pair the model learned from: ``knowable_time``, ``event_kind``, ``loss`` (a DataFrame)."""
    import pandas as pd

    rows = _rows(database, (
        "SELECT knowable_time, event_kind, loss FROM training_events WHERE run_id = ? AND loss IS NOT NULL"
        " AND subscriber <> 'prequential' ORDER BY knowable_time, seq"), [run_id])
    return pd.DataFrame(rows, columns=["knowable_time", "event_kind", "loss"])


# ---------------------------------------------------------------- evaluation


@dataclass(frozen=True)
class RunEvaluation:
    """A run's model against its fair baselines (see :func:`evaluate_run`)."""

    run_id: str
    timeframe: str
    predictions: Any  #: the prediction table
    pivots: Any  #: the pivot table
    comparison: Any  #: ettlib.evaluation.Comparison, or None without predictions
    verdict: Any  #: ettlib.evaluation.Verdict, or None
    trading: Mapping[str, Any]  #: symbol -> TradingDiagnostic
    trading_intervals: Mapping[str, Any]  #: symbol -> TradingIntervals (None where too short)

    @property
    def symbols(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(self.predictions["symbol"]))


def evaluate_run(database, run_id: str, *, timeframe: str, reps: int = 1000, seed: int = 0,
                 fee_bps: float = 5.0, slippage_bps: float = 0.0, trading: bool = True) -> RunEvaluation:
    """Compare the run's model with its baselines, and follow its actions (see the module doc).

    ``trading=False`` leaves the trading diagnostic out (empty mappings).
    """
    from ettlib.evaluation import compare_predictions, follow_actions, trading_intervals, verdict
    from ettlib.evaluation.table import ACTION

    predictions = prediction_table(database, run_id)
    pivots = pivot_table(database, run_id)
    if predictions.empty or ACTION + "model" not in predictions.columns:
        return RunEvaluation(run_id, timeframe, predictions, pivots, None, None, {}, {})
    comparison = compare_predictions(predictions, pivots if len(pivots) else None, timeframe=timeframe,
                                     reps=reps, seed=seed)
    followed, intervals = {}, {}
    for symbol in dict.fromkeys(predictions["symbol"]) if trading else ():
        rows = predictions[predictions["symbol"] == symbol].reset_index(drop=True)
        followed[symbol] = follow_actions(rows, timeframe=timeframe, fee_bps=fee_bps, slippage_bps=slippage_bps)
        intervals[symbol] = (trading_intervals(followed[symbol], reps=reps, seed=seed)
                             if len(rows) >= 2 else None)
    return RunEvaluation(run_id, timeframe, predictions, pivots, comparison, verdict(comparison),
                         followed, intervals)
