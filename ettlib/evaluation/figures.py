"""Diagnostic figures of an evaluation, on UTC time axes.

Every function draws with matplotlib's object-oriented API only: on the
``ax`` it is given or on a fresh :class:`matplotlib.figure.Figure` (no pyplot,
nothing left open; Agg-safe), and returns the Figure.  Times are int64 epoch
milliseconds turned into matplotlib dates in UTC; every x axis is a date
axis labelled "time (UTC)" whose ticks are located and formatted in UTC,
whatever matplotlib's ``timezone`` setting.

Artists that tests and callers look up carry a ``gid``:

* :func:`plot_predictions`: ``"actual_close"``, ``"predicted_close"``,
  ``"action_BUY"``, ``"action_SELL"``, ``"pivots_low"``, ``"pivots_high"``
  (and the candles of :func:`ettlib.notebooks.plots.plot_candles`);
* :func:`plot_learning_curves`: ``"<kind>_loss"`` (every pair, faint) and
  ``"<kind>_median"`` (the rolling median) for each ``event_kind``;
* :func:`plot_rolling_direction_accuracy`: one line per model or baseline
  (``gid`` = its name) and ``"chance_line"`` at 0.5;
* :func:`plot_equity`: ``"equity_strategy"``, ``"equity_buy_and_hold"``.

Examples
--------
>>> import pandas as pd
>>> events = pd.DataFrame({"knowable_time": [60_000 * k for k in range(1, 6)],
...                        "event_kind": "candle", "loss": [1.0, 1.1, 400.0, 0.9, 1.0]})
>>> fig = plot_learning_curves(events, window=5)
>>> line = next(l for l in fig.axes[0].get_lines() if l.get_gid() == "candle_median")
>>> line.get_ydata().tolist()      # the rolling median does not jump to 400
[1.0, 1.05, 1.1, 1.05, 1.0]
>>> fig.axes[0].get_yscale(), fig.axes[0].get_xlabel()
('log', 'time (UTC)')
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from ettlib.errors import ConfigError, DataValidationError
from ettlib.evaluation.scores import FLAT_RTOL
from ettlib.evaluation.table import ACTION, PRED_CLOSE, as_timeframe_ms, validate_pivots, validate_predictions
from ettlib.notebooks.figures import figure_and_axes, ms_to_datenum, utc_date_axis

__all__ = [
    "plot_predictions",
    "plot_learning_curves",
    "plot_rolling_direction_accuracy",
    "plot_equity",
    "rolling_median",
]

_MS_PER_DAY = 86_400_000
_ACTION_STYLE = {"BUY": ("^", "#26a69a"), "SELL": ("v", "#ef5350")}
#: Positive losses spanning more than this ratio (max / min) get a log axis.
LOG_SCALE_RATIO = 10.0


def rolling_median(values, window: int) -> np.ndarray:
    """Trailing median over ``window`` items (from the first item), NaN ignored.

    Robust: one outlier moves it by at most one rank of its window.

    >>> rolling_median([1.0, 1.0, 400.0, 1.0, 1.0], 3).tolist()
    [1.0, 1.0, 1.0, 1.0, 1.0]
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be a positive integer, got {window!r}")
    series = pd.Series(np.asarray(values, dtype=np.float64).ravel())
    return series.rolling(int(window), min_periods=1).median().to_numpy()


def plot_predictions(
    predictions: pd.DataFrame,
    *,
    timeframe: str | int,
    model: str = "model",
    candles=None,
    pivots=None,
    ax=None,
    title: str | None = "predicted against actual close",
    figsize: tuple[float, float] = (11.0, 4.5),
):
    """Candles, pivots, the model's predicted close against the actual one, and its actions.

    Parameters
    ----------
    predictions
        A prediction table (one symbol) with ``pred_close.<model>`` and ``action.<model>``.
    timeframe
        The candles' timeframe (name or ms).
    candles
        :class:`~ettlib.store.candles.CandleArrays` to draw (with ``open, high,
        low, close``); by default the target candles of the table, drawn
        from their open and close only.
    pivots
        The evaluation's pivot table (a DataFrame: one marker per distinct
        pivot, at its bar's low for BUY, high for SELL, where that bar is
        among the candles), or anything :func:`ettlib.notebooks.plots.plot_candles`
        takes (a ``PivotTable``, pivot events).
    """
    from ettlib.store.candles import CandleArrays
    from ettlib.notebooks.plots import plot_candles

    validate_predictions(predictions, [model])
    step = as_timeframe_ms(timeframe)
    if predictions["symbol"].nunique() > 1:
        raise ConfigError("plot_predictions draws one symbol: select its rows first")
    target = predictions["target_time"].to_numpy(dtype=np.int64)
    if candles is None:
        o = predictions["actual_open"].to_numpy(dtype=np.float64)
        c = predictions["actual_close"].to_numpy(dtype=np.float64)
        ohlc = np.column_stack([o, np.maximum(o, c), np.minimum(o, c), c])
        candles = CandleArrays(target, ohlc, ("open", "high", "low", "close"))
    table_pivots = isinstance(pivots, pd.DataFrame)
    fig, ax = figure_and_axes(ax, figsize)
    plot_candles(candles, pivots=None if table_pivots else pivots, ax=ax, title=title,
                 timeframe=timeframe if isinstance(timeframe, str) else None)
    centre = ms_to_datenum(target) + step / _MS_PER_DAY / 2
    ax.plot(centre, predictions["actual_close"].to_numpy(dtype=np.float64), color="k", lw=1.0,
            label="actual close", gid="actual_close")
    ax.plot(centre, predictions[PRED_CLOSE + model].to_numpy(dtype=np.float64), color="#1f77b4", lw=1.0,
            ls="--", marker=".", ms=3, label=f"predicted close ({model})", gid="predicted_close")
    actions = predictions[ACTION + model].to_numpy()
    execution = ms_to_datenum(target)
    opens = predictions["actual_open"].to_numpy(dtype=np.float64)
    for action, (marker, colour) in _ACTION_STYLE.items():
        taken = actions == action
        if taken.any():
            ax.scatter(execution[taken], opens[taken], marker=marker, s=18, c=colour, edgecolors="k",
                       linewidths=0.4, zorder=5, label=f"{action} (executed at the open)",
                       gid=f"action_{action}")
    if table_pivots and len(pivots):
        _draw_table_pivots(ax, validate_pivots(pivots), candles, step)
    ax.legend(loc="best", fontsize="small")
    utc_date_axis(ax)
    return fig


def _draw_table_pivots(ax, pivots: pd.DataFrame, candles, step: int) -> None:
    distinct = pivots.drop_duplicates(["symbol", "pivot_time", "implied_action"])
    times = np.asarray(candles.timestamps, dtype=np.int64)
    at = np.searchsorted(times, distinct["pivot_time"].to_numpy(dtype=np.int64))
    inside = (at < len(times)) & (times[np.minimum(at, len(times) - 1)] == distinct["pivot_time"].to_numpy())
    styles = (("BUY", "low", "^", "pivots_low"), ("SELL", "high", "v", "pivots_high"))
    for action, column, marker, gid in styles:
        sel = inside & (distinct["implied_action"].to_numpy() == action)
        if sel.any():
            bars = at[sel]
            ax.scatter(ms_to_datenum(times[bars]) + step / _MS_PER_DAY / 2, candles.column(column)[bars],
                       marker=marker, s=70, facecolors="none", edgecolors="#9467bd", linewidths=1.2,
                       zorder=4, label=f"{'low' if action == 'BUY' else 'high'} pivot", gid=gid)


def plot_learning_curves(
    events: pd.DataFrame,
    *,
    window: int = 50,
    log_scale: bool | None = None,
    ax=None,
    title: str | None = "learning curves",
    figsize: tuple[float, float] = (10.0, 4.0),
):
    """Per-pair training losses over knowable time, one series per pair kind, smoothed robustly.

    Parameters
    ----------
    events
        One row per learned pair: ``knowable_time`` (ms), ``event_kind``
        (``"candle"``, ``"pivot"``, ...) and ``loss`` (NaN or None rows are
        left out), e.g. the ``training_events`` rows of one subscriber.
    window
        Pairs in the trailing rolling median of each kind (see :func:`rolling_median`).
    log_scale
        Log y axis; by default when the positive losses span more than
        :data:`LOG_SCALE_RATIO` (and none is <= 0).
    """
    for column in ("knowable_time", "event_kind", "loss"):
        if column not in events.columns:
            raise DataValidationError("missing required column", source="training events", column=column)
    rows = events[["knowable_time", "event_kind", "loss"]].copy()
    rows["loss"] = pd.to_numeric(rows["loss"], errors="coerce")
    rows = rows[np.isfinite(rows["loss"].to_numpy(dtype=np.float64))]
    losses = rows["loss"].to_numpy(dtype=np.float64)
    positive = len(losses) > 0 and bool((losses > 0).all())
    if log_scale is None:
        log_scale = positive and losses.max() / losses.min() > LOG_SCALE_RATIO
    elif log_scale and not positive:
        raise ConfigError("log_scale=True needs every loss > 0")
    fig, ax = figure_and_axes(ax, figsize)
    for i, (kind, group) in enumerate(rows.groupby("event_kind", sort=True)):
        group = group.sort_values("knowable_time", kind="stable")
        x = ms_to_datenum(group["knowable_time"].to_numpy(dtype=np.int64))
        y = group["loss"].to_numpy(dtype=np.float64)
        colour = f"C{i}"
        ax.plot(x, y, ls="none", marker=".", ms=2, alpha=0.3, color=colour, label=f"{kind} (per pair)",
                gid=f"{kind}_loss")
        ax.plot(x, rolling_median(y, window), lw=2.0, color=colour,
                label=f"{kind} (rolling median, {window} pairs)", gid=f"{kind}_median")
    if log_scale:
        ax.set_yscale("log")
    ax.set_ylabel("loss" + (" (log scale)" if log_scale else ""))
    ax.grid(True, alpha=0.2)
    if len(rows):
        ax.legend(loc="upper right", fontsize="small")
    utc_date_axis(ax)
    if title:
        ax.set_title(title)
    return fig


def plot_rolling_direction_accuracy(
    predictions: pd.DataFrame,
    *,
    timeframe: str | int,
    model: str = "model",
    window: int = 100,
    rtol: float = FLAT_RTOL,
    ax=None,
    title: str | None = "rolling direction accuracy",
    figsize: tuple[float, float] = (10.0, 4.0),
):
    """Rolling direction accuracy of the model and of its baselines, with the 50% chance line.

    Scores follow the rule of :mod:`ettlib.evaluation.scores` (a flat
    prediction scores 0.5); the baselines are those of
    :func:`~ettlib.evaluation.comparison.prediction_losses` (chance is the
    dotted line at 0.5).  Each line is the trailing mean over ``window``
    scored candles, drawn at the time each score became known (the target
    candle's close).
    """
    from ettlib.evaluation.comparison import prediction_losses
    from ettlib.notebooks.plots import rolling_mean

    losses = prediction_losses(predictions, timeframe=timeframe, model=model, rtol=rtol)
    direction: Mapping[str, np.ndarray] = losses.by_metric["direction_accuracy"]
    known_at = predictions["target_time"].to_numpy(dtype=np.int64) + as_timeframe_ms(timeframe)
    x = ms_to_datenum(known_at)
    fig, ax = figure_and_axes(ax, figsize)
    for i, (name, loss) in enumerate(direction.items()):
        if name == "chance":
            continue
        scored = ~np.isnan(loss)
        is_model = name == model
        ax.plot(x[scored], rolling_mean(1.0 - loss[scored], window), color=f"C{i}", label=name, gid=name,
                lw=2.2 if is_model else 1.2, ls="-" if is_model else "--", zorder=3 if is_model else 2)
    ax.axhline(0.5, color="0.3", ls=":", lw=1.2, label="chance (50%)", gid="chance_line")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel(f"direction accuracy (rolling, {window} candles)")
    ax.grid(True, alpha=0.2)
    ax.legend(loc="lower right", fontsize="small")
    utc_date_axis(ax)
    if title:
        ax.set_title(title)
    return fig


def plot_equity(
    diagnostic,
    *,
    ax=None,
    title: str | None = "following the actions (a diagnostic, not a strategy backtest)",
    figsize: tuple[float, float] = (10.0, 4.0),
):
    """Equity curves of :func:`~ettlib.evaluation.trading.follow_actions` against buy-and-hold."""
    from ettlib.evaluation.trading import TradingDiagnostic

    if not isinstance(diagnostic, TradingDiagnostic):
        raise ConfigError(f"plot_equity needs a TradingDiagnostic, got {type(diagnostic).__name__}")
    fig, ax = figure_and_axes(ax, figsize)
    curves = (
        (diagnostic.strategy, f"following {diagnostic.model!r}", "equity_strategy", dict(lw=2.0, color="C0")),
        (diagnostic.buy_and_hold, "buy-and-hold", "equity_buy_and_hold", dict(lw=1.2, color="0.4", ls="--")),
    )
    for result, name, gid, style in curves:
        equity = result.equity
        ax.plot(ms_to_datenum(equity.index.to_numpy(dtype=np.int64)), equity.to_numpy(), drawstyle="steps-post",
                label=f"{name} (total {result.total_return:+.2%})", gid=gid, **style)
    ax.axhline(1.0, color="0.6", lw=0.8)
    costs = diagnostic.fee_bps + diagnostic.slippage_bps
    ax.set_ylabel(f"equity (start = 1; costs {costs:g} bps per unit turnover)")
    ax.grid(True, alpha=0.2)
    ax.legend(loc="best", fontsize="small")
    utc_date_axis(ax)
    if title:
        ax.set_title(title)
    return fig
