"""Did the model learn something real?  Fair baselines, uncertainty, a verdict, diagnostics.

The evaluation layer reads a run's scored predictions as two tidy tables (the
schema is in :mod:`ettlib.evaluation.table`): one row per scored candle
prediction (``symbol, prediction_time, target_time, last_open, last_close,
actual_open, actual_close`` and ``pred_close.<m>``, ``action.<m>`` per model
``m``) and one row per matched ``(pivot, frame)`` pair (``symbol,
pivot_time, confirmed_at, implied_action`` and ``action.<m>``).  All times
are int64 epoch milliseconds, UTC.

Modules, one concept each:

* :mod:`~ettlib.evaluation.table`: the schema and its validators;
* :mod:`~ettlib.evaluation.scores`: per-prediction scores and losses (the
  direction-accuracy rule: a flat prediction scores 0.5, a flat actual move
  is left out) and the skill score ``1 - model loss / baseline loss``;
* :mod:`~ettlib.evaluation.baselines`: persistence, last-candle direction,
  majority so far (of closed candles only), chance, pivot majority so far,
  the last candle reversed (pivots), and :func:`identical_predictions`;
* :mod:`~ettlib.evaluation.stats`: stationary block-bootstrap intervals and
  the Diebold-Mariano test with a Newey-West long-run variance;
* :mod:`~ettlib.evaluation.comparison`: every metric of the model against
  every baseline, with intervals and a test against the best baseline;
* :mod:`~ettlib.evaluation.verdict`: the verdict in plain English and its
  headline numbers;
* :mod:`~ettlib.evaluation.trading`: what following the actions would have
  earned (a diagnostic, not a strategy backtest);
* :mod:`~ettlib.evaluation.figures`: candles with predictions and actions,
  learning curves, rolling direction accuracy, equity curves.

Importing this package loads numpy and pandas only; statsmodels, arch and
matplotlib are loaded by the functions that need them.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> moves = rng.normal(0, 1, 301)
>>> close = 100 + np.cumsum(moves)
>>> table = pd.DataFrame({"symbol": "X", "prediction_time": np.arange(1, 301) * 60_000,
...     "target_time": np.arange(1, 301) * 60_000, "last_open": close[:-1] - moves[:-1],
...     "last_close": close[:-1], "actual_open": close[:-1], "actual_close": close[1:],
...     "pred_close.model": close[:-1] + rng.normal(0, 0.5, 300), "action.model": "HOLD"})
>>> result = verdict(compare_predictions(table, timeframe="1m", reps=200))
>>> result.headlines[0].outcome, result.headlines[0].baseline
(<Outcome.WORSE: 'significantly worse'>, 'persistence')
>>> result.text.startswith("WARNING")
True
"""

from ettlib.evaluation.baselines import (
    CHANCE_SCORE,
    identical_predictions,
    last_candle_direction,
    last_candle_reversal,
    majority_direction_so_far,
    persistence_close,
    pivot_majority_so_far,
)
from ettlib.evaluation.comparison import (
    METRICS,
    Comparison,
    Losses,
    MetricComparison,
    MetricSpec,
    compare_losses,
    compare_predictions,
    prediction_losses,
)
from ettlib.evaluation.scores import (
    action_scores,
    actual_direction,
    close_errors,
    direction_scores,
    model_direction_scores,
    pivot_scores,
    predicted_direction,
    skill_score,
)
from ettlib.evaluation.stats import (
    DieboldMariano,
    Interval,
    block_length,
    bootstrap_interval,
    bootstrap_intervals,
    diebold_mariano,
    long_run_variance,
    newey_west_lag,
)
from ettlib.evaluation.table import (
    ACTIONS,
    PIVOT_COLUMNS,
    PREDICTION_COLUMNS,
    model_names,
    validate_pivots,
    validate_predictions,
)
from ettlib.evaluation.trading import (
    TradingDiagnostic,
    TradingIntervals,
    TradingResult,
    follow_actions,
    trading_intervals,
)
from ettlib.evaluation.verdict import Headline, Outcome, Verdict, judge, verdict

__all__ = [
    "ACTIONS",
    "CHANCE_SCORE",
    "METRICS",
    "PIVOT_COLUMNS",
    "PREDICTION_COLUMNS",
    "Comparison",
    "DieboldMariano",
    "Headline",
    "Interval",
    "Losses",
    "MetricComparison",
    "MetricSpec",
    "Outcome",
    "TradingDiagnostic",
    "TradingIntervals",
    "TradingResult",
    "Verdict",
    "action_scores",
    "actual_direction",
    "block_length",
    "bootstrap_interval",
    "bootstrap_intervals",
    "close_errors",
    "compare_losses",
    "compare_predictions",
    "diebold_mariano",
    "direction_scores",
    "follow_actions",
    "identical_predictions",
    "judge",
    "last_candle_direction",
    "last_candle_reversal",
    "long_run_variance",
    "majority_direction_so_far",
    "model_direction_scores",
    "model_names",
    "newey_west_lag",
    "persistence_close",
    "pivot_majority_so_far",
    "pivot_scores",
    "predicted_direction",
    "prediction_losses",
    "skill_score",
    "trading_intervals",
    "validate_pivots",
    "validate_predictions",
    "verdict",
]
