"""The tidy tables the evaluation layer reads, and their validators.

Two pandas DataFrames describe a run's scored predictions.  Every time is an
``int64`` epoch-millisecond UTC timestamp; a candle's timestamp is its open
time and it closes (becomes known) at ``timestamp + timeframe``.

**Prediction table**: one row per scored candle prediction (a frame whose
target candle has closed), in prediction-time order:

==================  ==========================================================
``symbol``          the instrument, e.g. ``"ETH/USDT"``
``prediction_time`` the instant the prediction was made: the open time of the
                    target candle for a one-candle horizon
``target_time``     open time of the predicted candle (``>= prediction_time``;
                    equal to it for a one-candle horizon)
``last_open``       open of the last input candle (known at prediction time)
``last_close``      close of the last input candle (known at prediction time)
``actual_open``     the target candle's open  (known at ``target_time``)
``actual_close``    the target candle's close (known at ``target_time + timeframe``)
``pred_close.<m>``  model ``m``'s predicted close of the target candle
``action.<m>``      model ``m``'s action: ``"BUY"``, ``"SELL"`` or ``"HOLD"``
==================  ==========================================================

The model under evaluation is named ``"model"``; baselines recorded beside it
use their own names (``"persistence"``, ``"frozen"``, ...).

**Pivot table**: one row per matched ``(pivot, frame)`` pair:

==================  ==========================================================
``symbol``          the instrument
``pivot_time``      open time of the pivot's bar
``confirmed_at``    when the pivot was confirmed (became known)
``implied_action``  ``"BUY"`` for a low pivot, ``"SELL"`` for a high pivot
``action.<m>``      model ``m``'s action in the matched frame
==================  ==========================================================

Examples
--------
>>> import pandas as pd
>>> table = pd.DataFrame({
...     "symbol": ["X", "X"], "prediction_time": [60_000, 120_000],
...     "target_time": [60_000, 120_000], "last_open": [10.0, 10.5],
...     "last_close": [10.5, 10.4], "actual_open": [10.5, 10.4],
...     "actual_close": [10.4, 10.9], "pred_close.model": [10.6, 10.5],
...     "action.model": ["BUY", "BUY"]})
>>> model_names(validate_predictions(table))
('model',)
>>> validate_predictions(table.drop(columns="last_open"))
Traceback (most recent call last):
...
ettlib.errors.DataValidationError: prediction table: column 'last_open': missing required column
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd

from ettlib.errors import ConfigError, DataValidationError
from ettlib.timeframes import timeframe_ms

__all__ = [
    "PREDICTION_COLUMNS",
    "PIVOT_COLUMNS",
    "ACTIONS",
    "PRED_CLOSE",
    "ACTION",
    "model_names",
    "validate_predictions",
    "validate_pivots",
    "as_timeframe_ms",
]

#: Columns every prediction table has, besides the per-model ones.
PREDICTION_COLUMNS: tuple[str, ...] = (
    "symbol", "prediction_time", "target_time", "last_open", "last_close",
    "actual_open", "actual_close",
)
#: Columns every pivot table has, besides the per-model ones.
PIVOT_COLUMNS: tuple[str, ...] = ("symbol", "pivot_time", "confirmed_at", "implied_action")
#: The actions a model may take.
ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")
#: Prefix of a model's predicted-close column (``pred_close.<model>``).
PRED_CLOSE = "pred_close."
#: Prefix of a model's action column (``action.<model>``).
ACTION = "action."

_PRICE_COLUMNS = ("last_open", "last_close", "actual_open", "actual_close")


def model_names(frame: pd.DataFrame) -> tuple[str, ...]:
    """Names of the models with a ``pred_close.<m>`` or ``action.<m>`` column, in column order.

    >>> model_names(pd.DataFrame(columns=["symbol", "action.model", "pred_close.frozen"]))
    ('model', 'frozen')
    """
    names: list[str] = []
    for column in frame.columns:
        for prefix in (PRED_CLOSE, ACTION):
            if isinstance(column, str) and column.startswith(prefix):
                name = column[len(prefix):]
                if name and name not in names:
                    names.append(name)
    return tuple(names)


def _require_frame(frame, what: str) -> None:
    if not isinstance(frame, pd.DataFrame):
        raise ConfigError(f"the {what} must be a pandas DataFrame, got {type(frame).__name__}")


def _require_columns(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    for column in columns:
        if column not in frame.columns:
            raise DataValidationError("missing required column", source=what, column=column)


def _first_bad_row(mask: np.ndarray) -> int:
    return int(np.flatnonzero(mask)[0]) + 1  # 1-based data row


def _check_times(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    for column in columns:
        values = frame[column]
        if not pd.api.types.is_integer_dtype(values.dtype):
            raise DataValidationError(
                f"times must be int64 epoch milliseconds, got dtype {values.dtype}",
                source=what, column=column)


def _check_finite(frame: pd.DataFrame, columns: Iterable[str], what: str) -> None:
    for column in columns:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values.dtype):
            raise DataValidationError(f"must be numeric, got dtype {values.dtype}",
                                      source=what, column=column)
        bad = ~np.isfinite(values.to_numpy(dtype=np.float64))
        if bad.any():
            row = _first_bad_row(bad)
            raise DataValidationError("must be a finite number", source=what, row=row,
                                      column=column, value=values.iloc[row - 1])


def _check_actions(frame: pd.DataFrame, column: str, allowed: tuple[str, ...], what: str) -> None:
    bad = ~frame[column].isin(allowed).to_numpy()
    if bad.any():
        row = _first_bad_row(bad)
        raise DataValidationError(f"must be one of {', '.join(allowed)}", source=what, row=row,
                                  column=column, value=frame[column].iloc[row - 1])


def _check_models(frame: pd.DataFrame, models, what: str, *, prediction: bool) -> tuple[str, ...]:
    names = model_names(frame) if models is None else tuple(models)
    prefixes = (PRED_CLOSE, ACTION) if prediction else (ACTION,)
    for name in names:
        _require_columns(frame, [prefix + name for prefix in prefixes], what)
        if prediction:
            _check_finite(frame, [PRED_CLOSE + name], what)
        _check_actions(frame, ACTION + name, ACTIONS, what)
    return names


def validate_predictions(frame: pd.DataFrame, models: Iterable[str] | None = None) -> pd.DataFrame:
    """Check a prediction table (see the module doc) and return it unchanged.

    Parameters
    ----------
    frame
        The prediction table.
    models
        Models that must be present (both ``pred_close.<m>`` and
        ``action.<m>``); by default every model named by a column, each of
        which must then have both columns.

    Raises
    ------
    DataValidationError
        Naming the missing or malformed column (and the 1-based row where
        one row is at fault): times not integer, prices not finite, an
        unknown action, ``target_time`` before ``prediction_time``, or rows
        out of prediction-time order.
    """
    what = "prediction table"
    _require_frame(frame, what)
    _require_columns(frame, PREDICTION_COLUMNS, what)
    _check_times(frame, ("prediction_time", "target_time"), what)
    _check_finite(frame, _PRICE_COLUMNS, what)
    prediction = frame["prediction_time"].to_numpy()
    early = frame["target_time"].to_numpy() < prediction
    if early.any():
        raise DataValidationError("target_time is before prediction_time", source=what,
                                  row=_first_bad_row(early), column="target_time")
    backwards = np.diff(prediction) < 0
    if backwards.any():
        raise DataValidationError("rows are not in prediction-time order", source=what,
                                  row=_first_bad_row(backwards) + 1, column="prediction_time")
    _check_models(frame, models, what, prediction=True)
    return frame


def validate_pivots(frame: pd.DataFrame, models: Iterable[str] | None = None) -> pd.DataFrame:
    """Check a pivot table (see the module doc) and return it unchanged.

    ``models``: models whose ``action.<m>`` column must be present (default:
    every one named by a column).

    >>> pivots = pd.DataFrame({"symbol": ["X"], "pivot_time": [0], "confirmed_at": [180_000],
    ...                        "implied_action": ["HOLD"], "action.model": ["BUY"]})
    >>> validate_pivots(pivots)
    Traceback (most recent call last):
    ...
    ettlib.errors.DataValidationError: pivot table: row 1, column 'implied_action', value 'HOLD': must be one of BUY, SELL
    """
    what = "pivot table"
    _require_frame(frame, what)
    _require_columns(frame, PIVOT_COLUMNS, what)
    _check_times(frame, ("pivot_time", "confirmed_at"), what)
    _check_actions(frame, "implied_action", ("BUY", "SELL"), what)
    early = frame["confirmed_at"].to_numpy() < frame["pivot_time"].to_numpy()
    if early.any():
        raise DataValidationError("confirmed_at is before pivot_time", source=what,
                                  row=_first_bad_row(early), column="confirmed_at")
    _check_models(frame, models, what, prediction=False)
    return frame


def as_timeframe_ms(timeframe: str | int) -> int:
    """A candle length in milliseconds from a timeframe name (``"1m"``) or a positive int of ms.

    >>> as_timeframe_ms("5m"), as_timeframe_ms(60_000)
    (300000, 60000)
    """
    if isinstance(timeframe, str):
        return timeframe_ms(timeframe)
    if isinstance(timeframe, (int, np.integer)) and not isinstance(timeframe, bool) and timeframe > 0:
        return int(timeframe)
    raise ConfigError(f"timeframe must be a name such as '1m' or a positive int of ms, got {timeframe!r}")
