"""Fair baselines: what a predictor that knows nothing more than the past would score.

Each baseline uses only what was known **at the time the prediction was
made** (for pivots: when the pivot was confirmed):

* **persistence** (close MAE): the next close equals the last close,
  :func:`persistence_close`.  Under the direction rule of
  :mod:`ettlib.evaluation.scores` its direction is "no call" on every candle,
  so its direction accuracy is exactly the 50% chance line.
* **last candle** (direction): the last input candle's direction,
  ``sign(last_close - last_open)`` (momentum of one candle),
  :func:`last_candle_direction`.
* **majority so far** (direction): the most frequent actual move among the
  target candles that had *closed* by the prediction time,
  :func:`majority_direction_so_far`.  A target candle opening at
  ``target_time`` closes at ``target_time + timeframe``; only rows whose close
  time is ``<=`` this row's ``prediction_time`` count.  A tie (also: nothing
  seen yet) is no call.
* **chance** (direction and pivots): a coin flip, a score of 0.5 on every
  prediction (:data:`CHANCE_SCORE`).
* **majority so far** (pivots): the implied action seen most often among the
  pivots confirmed strictly before this pivot's ``confirmed_at`` (each pivot
  counted once, however many frames it matched), :func:`pivot_majority_so_far`.
  A tie is HOLD (no call).  It is a little generous: it knows every pivot
  confirmed before this one, while the model's prediction was made earlier.
* **last candle reversed** (pivots, where the pivot table has the frame's
  ``last_open`` and ``last_close``): BUY after a falling last candle, SELL
  after a rising one, :func:`last_candle_reversal`.  A low pivot comes after
  falls by its definition, so on a pure random walk this rule is right well
  over half the time; a model must beat it to show it knows more.

Baselines recorded in the table beside the model (``"frozen"``: the model
before any learning) are only worth showing where they differ from another
baseline; :func:`identical_predictions` says whether two models predicted
the same on every row.

Examples
--------
>>> import pandas as pd
>>> t = pd.DataFrame({"symbol": ["X"] * 3, "prediction_time": [60_000, 120_000, 180_000],
...                   "target_time": [60_000, 120_000, 180_000], "last_open": [9.0, 10.0, 11.0],
...                   "last_close": [10.0, 11.0, 10.5], "actual_open": [10.0, 11.0, 10.5],
...                   "actual_close": [11.0, 10.5, 10.0]})
>>> last_candle_direction(t).tolist()
[1.0, 1.0, -1.0]
>>> majority_direction_so_far(t, "1m").tolist()   # row 2 knows row 1 (up); row 3 a tie
[0.0, 1.0, 0.0]
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from ettlib.errors import DataValidationError
from ettlib.evaluation.scores import FLAT_RTOL, actual_direction
from ettlib.evaluation.table import ACTION, PRED_CLOSE, as_timeframe_ms

__all__ = [
    "CHANCE_SCORE",
    "persistence_close",
    "last_candle_direction",
    "majority_direction_so_far",
    "pivot_majority_so_far",
    "last_candle_reversal",
    "identical_predictions",
]

#: The score of a coin flip: the 50% chance line.
CHANCE_SCORE = 0.5


def persistence_close(table: pd.DataFrame) -> np.ndarray:
    """The persistence forecast of every row: the next close is the last close."""
    return table["last_close"].to_numpy(dtype=np.float64)


def last_candle_direction(table: pd.DataFrame) -> np.ndarray:
    """``sign(last_close - last_open)`` of every row: the last input candle's direction."""
    return np.sign(table["last_close"].to_numpy(dtype=np.float64)
                   - table["last_open"].to_numpy(dtype=np.float64))


def _counts_known_by(event_times: np.ndarray, labels: np.ndarray, query_times: np.ndarray,
                     *, inclusive: bool) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``labels > 0`` and ``labels < 0`` among events at or before (or before) each query time."""
    order = np.argsort(event_times, kind="stable")
    times = event_times[order]
    ups = np.concatenate(([0], np.cumsum(labels[order] > 0)))
    downs = np.concatenate(([0], np.cumsum(labels[order] < 0)))
    known = np.searchsorted(times, query_times, side="right" if inclusive else "left")
    return ups[known], downs[known]


def majority_direction_so_far(table: pd.DataFrame, timeframe: str | int) -> np.ndarray:
    """Per row, the sign of the majority actual move among target candles closed by its prediction time.

    Counted per symbol.  Row ``j``'s move (``sign(actual_close - last_close)``)
    is known from ``target_time[j] + timeframe``; it counts for row ``i`` when
    that is ``<= prediction_time[i]``.  A row never sees its own move (its
    target closes after it was predicted).  0 where ups and downs tie.

    Parameters
    ----------
    table
        A prediction table (:mod:`ettlib.evaluation.table`).
    timeframe
        The candles' timeframe: a name (``"1m"``) or milliseconds.
    """
    step = as_timeframe_ms(timeframe)
    moves = actual_direction(table)
    symbols = table["symbol"].to_numpy()
    predicted_at = table["prediction_time"].to_numpy(dtype=np.int64)
    closes_at = table["target_time"].to_numpy(dtype=np.int64) + step
    majority = np.zeros(len(table))
    for symbol in pd.unique(symbols):
        rows = np.flatnonzero(symbols == symbol)
        ups, downs = _counts_known_by(closes_at[rows], moves[rows], predicted_at[rows], inclusive=True)
        majority[rows] = np.sign(ups - downs)
    return majority


def pivot_majority_so_far(pivots: pd.DataFrame) -> np.ndarray:
    """Per pivot-table row, the implied action seen most often among pivots confirmed before it.

    Counted per symbol, each distinct pivot (``pivot_time``, ``implied_action``)
    once, from its ``confirmed_at``; pivots confirmed at the same instant as
    this row's do not count.  ``"HOLD"`` where BUYs and SELLs tie (no call).

    >>> p = pd.DataFrame({"symbol": ["X"] * 4, "pivot_time": [0, 0, 60_000, 120_000],
    ...                   "confirmed_at": [180_000, 180_000, 240_000, 300_000],
    ...                   "implied_action": ["BUY", "BUY", "SELL", "BUY"]})
    >>> pivot_majority_so_far(p).tolist()   # the repeated pivot counts once
    ['HOLD', 'HOLD', 'BUY', 'HOLD']
    """
    symbols = pivots["symbol"].to_numpy()
    confirmed = pivots["confirmed_at"].to_numpy(dtype=np.int64)
    labels = np.where(pivots["implied_action"].to_numpy() == "BUY", 1, -1)
    distinct = pivots.assign(_label=labels).drop_duplicates(["symbol", "pivot_time", "implied_action"])
    majority = np.zeros(len(pivots))
    for symbol in pd.unique(symbols):
        rows = np.flatnonzero(symbols == symbol)
        known = distinct[distinct["symbol"] == symbol]
        buys, sells = _counts_known_by(known["confirmed_at"].to_numpy(dtype=np.int64),
                                       known["_label"].to_numpy(), confirmed[rows], inclusive=False)
        majority[rows] = np.sign(buys - sells)
    return np.array(["SELL", "HOLD", "BUY"], dtype=object)[majority.astype(int) + 1]


def last_candle_reversal(pivots: pd.DataFrame) -> np.ndarray | None:
    """Per pivot-table row, the action that bets on the frame's last candle reversing, or None.

    BUY after a falling last candle, SELL after a rising one, HOLD after a
    flat one: what a pivot's definition makes right more often than not (a
    low comes after falls), known at the frame's prediction time.  Needs the
    frame's ``last_open`` and ``last_close`` columns in the pivot table
    (None without them).

    >>> p = pd.DataFrame({"last_open": [10.0, 10.0, 10.0], "last_close": [9.0, 11.0, 10.0]})
    >>> last_candle_reversal(p).tolist()
    ['BUY', 'SELL', 'HOLD']
    """
    if not {"last_open", "last_close"} <= set(pivots.columns):
        return None
    move = np.sign(pivots["last_close"].to_numpy(dtype=np.float64) - pivots["last_open"].to_numpy(dtype=np.float64))
    return np.array(["BUY", "HOLD", "SELL"], dtype=object)[move.astype(int) + 1]


def identical_predictions(table: pd.DataFrame, a: str, b: str, *, rtol: float = FLAT_RTOL) -> bool:
    """Whether models ``a`` and ``b`` made the same predictions on every row.

    Compares ``pred_close`` (within ``rtol`` of the larger magnitude, as for a
    flat move) where both have one, and ``action`` exactly where both have
    one; works on a prediction table and on a pivot table.  The name
    ``"persistence"`` without a column of its own means
    :func:`persistence_close` (action HOLD).

    >>> t = pd.DataFrame({"last_close": [10.0, 11.0], "pred_close.frozen": [10.0, 11.000001],
    ...                   "action.frozen": ["HOLD", "HOLD"]})
    >>> identical_predictions(t, "frozen", "persistence")
    True

    Raises
    ------
    DataValidationError
        If the two models share no column to compare.
    """
    compared = False
    closes = [_pred_close(table, name) for name in (a, b)]
    if closes[0] is not None and closes[1] is not None:
        compared = True
        x, y = closes
        if not np.all(np.abs(x - y) <= rtol * np.maximum(np.abs(x), np.abs(y))):
            return False
    actions = [_actions(table, name) for name in (a, b)]
    if actions[0] is not None and actions[1] is not None:
        compared = True
        if not np.array_equal(actions[0], actions[1]):
            return False
    if not compared:
        raise DataValidationError(f"models {a!r} and {b!r} have no pred_close or action columns in common",
                                  source="evaluation table")
    return True


def _pred_close(table: pd.DataFrame, name: str) -> np.ndarray | None:
    if PRED_CLOSE + name in table.columns:
        return table[PRED_CLOSE + name].to_numpy(dtype=np.float64)
    if name == "persistence" and "last_close" in table.columns:
        return persistence_close(table)
    return None


def _actions(table: pd.DataFrame, name: str) -> np.ndarray | None:
    if ACTION + name in table.columns:
        return table[ACTION + name].to_numpy(dtype=object)
    if name == "persistence":
        return np.full(len(table), "HOLD", dtype=object)
    return None
