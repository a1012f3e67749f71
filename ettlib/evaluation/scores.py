"""Per-prediction scores and losses, and the skill score.

Every metric of the evaluation layer is the mean of a per-prediction score,
so that a block bootstrap and a Diebold-Mariano test can work on the same
series.  Each score has a *loss* (lower is better) whose mean is what the
model and the baselines are compared on:

* **close MAE**: the loss is the absolute error ``|pred_close - actual_close|``
  in price units; the metric is its mean.
* **direction accuracy**: the score of one candle is 1 for a right call, 0
  for a wrong one and **0.5 for no call**; its loss is ``1 - score``.  The
  *actual* direction is the sign of ``actual_close - last_close`` (the move
  from the last price known at prediction time); the *predicted* direction is
  the sign of ``pred_close - last_close``.  Two decisions:

  - A candle whose actual move is exactly 0 is **left out** (score NaN):
    there is no direction to call, and counting it either way would reward
    or punish every predictor alike.
  - A **flat prediction** (``|pred_close - last_close| <= rtol * |last_close|``,
    with ``rtol = 1e-6`` by default, because a prediction that went through a
    float32 normalization comes back a hair off) scores **0.5**, a coin flip.
    Counting it as wrong (as the training scorer does) gives persistence an
    accuracy of 0.0 and sets a model against a bar at 0, which flatters any
    model; leaving it out would let a model abstain on the hard candles.  At
    0.5, persistence scores exactly the 50% chance line, and a model that
    never commits cannot beat chance.

* **pivot accuracy**: for each matched ``(pivot, frame)`` pair the score is 1
  when the action equals the pivot's implied action (BUY for a low, SELL for
  a high), 0 for the opposite action and **0.5 for HOLD** (no call, as above).

The **skill score** of a model against a baseline, for every metric, is
``1 - mean(model loss) / mean(baseline loss)``: the share of the baseline's
loss the model removes.  For MAE that is ``1 - MAE_model / MAE_baseline``; for
an accuracy it is the same on error rates, ``1 - (1 - acc_model) / (1 -
acc_baseline)`` (against the 50% chance line: ``2 * acc - 1``).  Equivalently
it is ``mean(d) / mean(baseline loss)`` with ``d = baseline loss - model
loss`` the loss differential that the Diebold-Mariano test uses, so a
positive skill is always "model better", 0 is "no better", 1 is perfect.

Examples
--------
>>> import numpy as np
>>> direction_scores([1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]).tolist()
[1.0, 0.0, 0.5, nan]
>>> skill_score([1.0, 1.0], [2.0, 2.0])
0.5
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ettlib.errors import DataValidationError
from ettlib.evaluation.table import ACTION, PRED_CLOSE

__all__ = [
    "FLAT_RTOL",
    "close_errors",
    "actual_direction",
    "predicted_direction",
    "direction_scores",
    "model_direction_scores",
    "action_scores",
    "pivot_scores",
    "skill_score",
]

#: A predicted move within this fraction of the last close counts as no move.
FLAT_RTOL = 1e-6


def _column(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise DataValidationError("missing required column", source="evaluation table", column=column)
    return table[column].to_numpy()


def close_errors(table: pd.DataFrame, model: str) -> np.ndarray:
    """Absolute errors ``|pred_close.<model> - actual_close|``, one per row.

    >>> t = pd.DataFrame({"pred_close.m": [1.0, 2.5], "actual_close": [1.5, 2.0]})
    >>> close_errors(t, "m").tolist()
    [0.5, 0.5]
    """
    predicted = _column(table, PRED_CLOSE + model).astype(np.float64)
    return np.abs(predicted - _column(table, "actual_close").astype(np.float64))


def actual_direction(table: pd.DataFrame) -> np.ndarray:
    """Sign of the target candle's move from the last known close: ``sign(actual_close - last_close)``."""
    return np.sign(_column(table, "actual_close").astype(np.float64)
                   - _column(table, "last_close").astype(np.float64))


def predicted_direction(table: pd.DataFrame, model: str, *, rtol: float = FLAT_RTOL) -> np.ndarray:
    """Sign of ``pred_close.<model> - last_close``; 0 where the move is within ``rtol * |last_close|``.

    >>> t = pd.DataFrame({"pred_close.m": [100.00001, 101.0, 99.0], "last_close": [100.0] * 3})
    >>> predicted_direction(t, "m").tolist()
    [0.0, 1.0, -1.0]
    """
    last = _column(table, "last_close").astype(np.float64)
    move = _column(table, PRED_CLOSE + model).astype(np.float64) - last
    return np.where(np.abs(move) <= rtol * np.abs(last), 0.0, np.sign(move))


def direction_scores(predicted_sign, actual_sign) -> np.ndarray:
    """Per-candle direction scores: 1 right, 0 wrong, 0.5 no call (sign 0), NaN where the actual move is 0."""
    predicted = np.sign(np.asarray(predicted_sign, dtype=np.float64))
    actual = np.sign(np.asarray(actual_sign, dtype=np.float64))
    scores = np.where(predicted == 0, 0.5, (predicted == actual).astype(np.float64))
    return np.where(actual == 0, np.nan, scores)


def model_direction_scores(table: pd.DataFrame, model: str, *, rtol: float = FLAT_RTOL) -> np.ndarray:
    """Direction scores of ``pred_close.<model>`` on every row (see the module doc)."""
    return direction_scores(predicted_direction(table, model, rtol=rtol), actual_direction(table))


def action_scores(actions, implied_actions) -> np.ndarray:
    """Per-pair action scores: 1 when ``action == implied``, 0.5 for HOLD, 0 otherwise.

    >>> action_scores(["BUY", "HOLD", "SELL"], ["BUY", "SELL", "BUY"]).tolist()
    [1.0, 0.5, 0.0]
    """
    actions = np.asarray(actions, dtype=object)
    implied = np.asarray(implied_actions, dtype=object)
    return np.where(actions == "HOLD", 0.5, (actions == implied).astype(np.float64))


def pivot_scores(pivots: pd.DataFrame, model: str) -> np.ndarray:
    """Action scores of ``action.<model>`` against ``implied_action`` on every pivot-table row."""
    return action_scores(_column(pivots, ACTION + model), _column(pivots, "implied_action"))


def skill_score(model_loss, baseline_loss) -> float:
    """``1 - mean(model_loss) / mean(baseline_loss)``; NaN where the baseline's mean loss is 0.

    NaN entries (rows left out, e.g. flat actual moves) are dropped where
    either series has one, so both means are over the same rows.

    >>> skill_score([0.5, 0.0], [0.5, 0.5])
    0.5
    >>> skill_score([1.0], [0.0])
    nan
    """
    model = np.asarray(model_loss, dtype=np.float64)
    baseline = np.asarray(baseline_loss, dtype=np.float64)
    keep = ~(np.isnan(model) | np.isnan(baseline))
    if not keep.any():
        return float("nan")
    denominator = baseline[keep].mean()
    if denominator == 0:
        return float("nan")
    return float(1.0 - model[keep].mean() / denominator)
