"""The model against its baselines, metric by metric, with intervals and a test.

For each metric (close MAE, direction accuracy, pivot accuracy) the model and
every baseline get a per-prediction loss on the same rows (see
:mod:`ettlib.evaluation.scores`); from one stationary block bootstrap of
those rows (:mod:`ettlib.evaluation.stats`) come a 95% interval of every
value and of the model's skill score against every baseline.  The **best
baseline** is the one with the lowest mean loss, and the model is tested
against it with Diebold-Mariano.  Choosing the best baseline after looking
at the data makes "the model is better" harder to claim, which is the
cautious side for a report; it is not a test against all baselines at once
(for that, see White's reality check).

Baselines by metric (:mod:`ettlib.evaluation.baselines`):

* close MAE: ``persistence`` (computed from ``last_close``), then every other
  model in the table (``frozen``, ...);
* direction accuracy: ``chance`` (0.5 on every candle, which is also what
  persistence scores), ``last candle``, ``majority so far``, then every other
  model in the table;
* pivot accuracy: ``chance``, ``majority so far``, ``last candle reversed``
  (where the pivot table has the frames' ``last_open`` and ``last_close``),
  then every other model's actions in the pivot table.

A table model that predicts exactly what persistence predicts
(:func:`~ettlib.evaluation.baselines.identical_predictions`) is left out,
one whose predicted closes are persistence's (its actions differ) is left
out of close MAE, and a baseline whose every direction or pivot score
equals an earlier baseline's is left out of that metric; each with a note
saying so.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> baseline = np.abs(rng.normal(0, 1, 300))
>>> mc = compare_losses("mae_close", {"model": 0.9 * baseline, "persistence": baseline}, reps=100)
>>> mc.best_baseline, round(mc.skill["persistence"].estimate, 3), mc.test.p_value < 0.05
('persistence', 0.1, True)
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.evaluation.baselines import (
    CHANCE_SCORE,
    identical_predictions,
    last_candle_direction,
    last_candle_reversal,
    majority_direction_so_far,
    persistence_close,
    pivot_majority_so_far,
)
from ettlib.evaluation.scores import (
    FLAT_RTOL,
    action_scores,
    actual_direction,
    close_errors,
    direction_scores,
    model_direction_scores,
    pivot_scores,
)
from ettlib.evaluation.stats import (
    DieboldMariano,
    Interval,
    block_length,
    bootstrap_intervals,
    diebold_mariano,
)
from ettlib.evaluation.table import (
    ACTION,
    PRED_CLOSE,
    as_timeframe_ms,
    model_names,
    validate_pivots,
    validate_predictions,
)

__all__ = [
    "MetricSpec",
    "METRICS",
    "MetricComparison",
    "Comparison",
    "Losses",
    "compare_losses",
    "prediction_losses",
    "compare_predictions",
]


@dataclass(frozen=True, slots=True)
class MetricSpec:
    """What a metric is called and which way is better; its value is ``mean(loss)`` or ``1 - mean(loss)``."""

    name: str
    label: str
    higher_is_better: bool
    unit: str  #: what one row is: "candle" or "pivot pair"

    def value(self, mean_loss):
        """The metric from the mean loss: MAE itself, or an accuracy ``1 - mean loss``."""
        return 1.0 - mean_loss if self.higher_is_better else mean_loss


#: The metrics the evaluation layer knows, in report order.
METRICS: dict[str, MetricSpec] = {
    "mae_close": MetricSpec("mae_close", "close MAE", False, "candle"),
    "direction_accuracy": MetricSpec("direction_accuracy", "direction accuracy", True, "candle"),
    "pivot_accuracy": MetricSpec("pivot_accuracy", "pivot accuracy", True, "pivot pair"),
}


@dataclass(frozen=True)
class MetricComparison:
    """One metric of the model against its baselines.

    ``values[name]``: the metric of the model and of every baseline, with its
    interval; ``skill[baseline]``: the model's skill score against that
    baseline, with its interval; ``test``: Diebold-Mariano against
    ``best_baseline``; ``n``: rows scored (for direction: candles whose
    actual move was not 0).
    """

    spec: MetricSpec
    model: str
    n: int
    values: Mapping[str, Interval]
    skill: Mapping[str, Interval]
    best_baseline: str | None
    test: DieboldMariano | None
    notes: tuple[str, ...] = ()

    @property
    def metric(self) -> str:
        return self.spec.name

    @property
    def baselines(self) -> tuple[str, ...]:
        return tuple(self.skill)

    @property
    def skill_vs_best(self) -> Interval | None:
        return None if self.best_baseline is None else self.skill[self.best_baseline]


@dataclass(frozen=True)
class Comparison:
    """Every metric of one model against its baselines (:func:`compare_predictions`)."""

    model: str
    metrics: Mapping[str, MetricComparison]
    notes: tuple[str, ...] = ()


def _nan_interval(level: float) -> Interval:
    nan = float("nan")
    return Interval(nan, nan, nan, level)


def compare_losses(
    metric: str,
    losses: Mapping[str, np.ndarray],
    *,
    model: str = "model",
    horizon: int = 1,
    reps: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    notes: tuple[str, ...] = (),
) -> MetricComparison:
    """Compare a model's per-prediction losses with each baseline's (see the module doc).

    Parameters
    ----------
    metric
        A key of :data:`METRICS`.
    losses
        ``{name: per-prediction losses}``, all of one length and in time
        order: the model's under ``model``, every other entry a baseline.
        Rows where any series is NaN are left out of all of them.
    horizon
        The forecast horizon in candles (for the Diebold-Mariano lag).
    reps, level, seed
        The bootstrap's replications, confidence level and seed.
    """
    if metric not in METRICS:
        raise UnknownNameError("metric", metric, METRICS)
    spec = METRICS[metric]
    if model not in losses:
        raise UnknownNameError("model", model, list(losses))
    baselines = [name for name in losses if name != model]
    if not baselines:
        raise ConfigError(f"no baseline to compare {model!r} with: give at least one more loss series")
    names = [model, *baselines]
    columns = [np.asarray(losses[name], dtype=np.float64).ravel() for name in names]
    if len({len(c) for c in columns}) != 1:
        raise ConfigError(f"loss series differ in length: {dict(zip(names, map(len, columns)))}")
    matrix = np.column_stack(columns)
    matrix = matrix[~np.isnan(matrix).any(axis=1)]
    n = len(matrix)

    def statistic(rows):
        means = rows.mean(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            skills = np.where(means[1:] > 0, 1.0 - means[0] / means[1:], np.nan)
        return np.concatenate([spec.value(means), skills])

    if n >= 2:
        differentials = matrix[:, 1:] - matrix[:, :1]
        size = block_length(np.column_stack([matrix, differentials]))
        intervals = bootstrap_intervals(matrix, statistic, reps=reps, level=level, seed=seed, block_size=size)
    else:
        intervals = tuple(_nan_interval(level) for _ in range(2 * len(names) - 1))
    values = dict(zip(names, intervals[:len(names)]))
    skill = dict(zip(baselines, intervals[len(names):]))
    best = None
    if n:
        means = matrix.mean(axis=0)[1:]
        best = baselines[int(np.argmin(means))]
    test = diebold_mariano(matrix[:, 0], matrix[:, names.index(best)] if best else matrix[:, 1],
                           horizon=horizon)
    return MetricComparison(spec, model, n, values, skill, best, test, tuple(notes))


def _drop_repeated_scores(losses: dict[str, np.ndarray], model: str, what: str) -> tuple[dict, list[str]]:
    """Leave out baselines whose every score equals an earlier baseline's."""
    kept: dict[str, np.ndarray] = {}
    notes = []
    for name, loss in losses.items():
        twin = next((k for k, v in kept.items() if k != model and np.array_equal(v, loss, equal_nan=True)),
                    None)
        if name != model and twin is not None:
            notes.append(f"{name!r} scores exactly like {twin!r} on every {what}: left out.")
            continue
        kept[name] = loss
    return kept, notes


def _horizon(predictions: pd.DataFrame, step: int) -> int:
    if predictions.empty:
        return 1
    lead = predictions["target_time"].to_numpy(dtype=np.int64) - predictions["prediction_time"].to_numpy(
        dtype=np.int64)
    return int(lead.max() // step) + 1


@dataclass(frozen=True)
class Losses:
    """Per-prediction losses of the model and its baselines, by metric (:func:`prediction_losses`).

    ``by_metric[metric][name]`` is a float array, one loss per row of the
    prediction table (per pivot-table row for ``pivot_accuracy``), NaN
    where the row is not scored; the model comes first.  ``notes`` say which
    baselines were left out and why.
    """

    model: str
    horizon: int
    by_metric: Mapping[str, Mapping[str, np.ndarray]]
    notes: tuple[str, ...] = ()
    metric_notes: Mapping[str, tuple[str, ...]] = field(default_factory=dict)


def prediction_losses(
    predictions: pd.DataFrame,
    pivots: pd.DataFrame | None = None,
    *,
    timeframe: str | int,
    model: str = "model",
    rtol: float = FLAT_RTOL,
) -> Losses:
    """The per-prediction losses of ``model`` and of every baseline (see the module doc).

    The arguments are those of :func:`compare_predictions`.
    """
    validate_predictions(predictions)
    if model not in model_names(predictions):
        raise UnknownNameError("model", model, model_names(predictions))
    step = as_timeframe_ms(timeframe)
    notes: list[str] = []
    others = []
    for name in model_names(predictions):
        if name == model:
            continue
        if name != "persistence" and identical_predictions(predictions, name, "persistence", rtol=rtol):
            notes.append(f"{name!r} made the same predictions as persistence on every candle: left out "
                         f"(it measures nothing persistence does not).")
            continue
        others.append(name)
    if identical_predictions(predictions, model, "persistence", rtol=rtol):
        notes.append(f"{model!r} made the same predictions as persistence on every candle.")
    by_metric: dict[str, dict[str, np.ndarray]] = {}
    metric_notes: dict[str, tuple[str, ...]] = {}

    actual_close = predictions["actual_close"].to_numpy(dtype=np.float64)
    mae = {model: close_errors(predictions, model),
           "persistence": np.abs(persistence_close(predictions) - actual_close)}
    mae_notes = []
    for name in others:
        if name == "persistence":
            continue
        if PRED_CLOSE + name in predictions.columns and identical_predictions(
                predictions[[PRED_CLOSE + name, "last_close"]], name, "persistence", rtol=rtol):
            mae_notes.append(f"{name!r} predicted the same close as persistence on every candle: left out "
                             f"of close MAE (it differs only in its actions).")
            continue
        mae[name] = close_errors(predictions, name)
    by_metric["mae_close"] = mae
    metric_notes["mae_close"] = tuple(mae_notes)

    actual = actual_direction(predictions)
    direction = {model: 1.0 - model_direction_scores(predictions, model, rtol=rtol),
                 "chance": np.where(actual == 0, np.nan, 1.0 - CHANCE_SCORE),
                 "last candle": 1.0 - direction_scores(last_candle_direction(predictions), actual),
                 "majority so far": 1.0 - direction_scores(majority_direction_so_far(predictions, step),
                                                           actual)}
    direction.update({name: 1.0 - model_direction_scores(predictions, name, rtol=rtol) for name in others})
    by_metric["direction_accuracy"], dropped = _drop_repeated_scores(direction, model, "candle")
    metric_notes["direction_accuracy"] = tuple(dropped)

    if pivots is not None and len(pivots):
        validate_pivots(pivots)
        if ACTION + model not in pivots.columns:
            raise UnknownNameError("model in the pivot table", model, model_names(pivots))
        implied = pivots["implied_action"].to_numpy()
        pivot = {model: 1.0 - pivot_scores(pivots, model),
                 "chance": np.full(len(pivots), 1.0 - CHANCE_SCORE),
                 "majority so far": 1.0 - action_scores(pivot_majority_so_far(pivots), implied)}
        reversal = last_candle_reversal(pivots)
        if reversal is not None:
            pivot["last candle reversed"] = 1.0 - action_scores(reversal, implied)
        pivot.update({name: 1.0 - pivot_scores(pivots, name) for name in model_names(pivots)
                      if name != model and (name in others or PRED_CLOSE + name not in predictions.columns)})
        by_metric["pivot_accuracy"], dropped = _drop_repeated_scores(pivot, model, "pivot pair")
        metric_notes["pivot_accuracy"] = tuple(dropped)
    return Losses(model, _horizon(predictions, step), by_metric, tuple(notes), metric_notes)


def compare_predictions(
    predictions: pd.DataFrame,
    pivots: pd.DataFrame | None = None,
    *,
    timeframe: str | int,
    model: str = "model",
    reps: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    rtol: float = FLAT_RTOL,
) -> Comparison:
    """Every metric of ``model`` against its fair baselines (see the module doc).

    Parameters
    ----------
    predictions, pivots
        The tables of :mod:`ettlib.evaluation.table` (validated here);
        without ``pivots`` (or with no rows) there is no pivot metric.
    timeframe
        The candles' timeframe (name or ms): when a target candle closes.
    model
        The model under evaluation; every other model in the tables is a baseline.
    reps, level, seed
        Bootstrap replications, confidence level and seed (one seed for all metrics).
    rtol
        The flat-prediction tolerance of the direction rule.
    """
    losses = prediction_losses(predictions, pivots, timeframe=timeframe, model=model, rtol=rtol)
    metrics = {
        metric: compare_losses(metric, by_name, model=model, reps=reps, level=level, seed=seed,
                               horizon=1 if metric == "pivot_accuracy" else losses.horizon,
                               notes=losses.metric_notes.get(metric, ()))
        for metric, by_name in losses.by_metric.items()
    }
    return Comparison(model, metrics, losses.notes)
