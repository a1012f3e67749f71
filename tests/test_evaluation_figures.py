"""Evaluation figures: UTC date axes, robust learning curves, the chance line, equity curves."""

from __future__ import annotations

import io
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from _evaluation_data import MINUTE, ar_model_table, pivot_table, with_model  # noqa: E402
from conftest import START_MS  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from ettlib.errors import ConfigError, DataValidationError  # noqa: E402
from ettlib.evaluation import follow_actions, model_direction_scores  # noqa: E402
from ettlib.evaluation.figures import (  # noqa: E402
    plot_equity,
    plot_learning_curves,
    plot_predictions,
    plot_rolling_direction_accuracy,
    rolling_median,
)


def _by_gid(ax, gid):
    found = [a for a in (*ax.get_lines(), *ax.collections) if a.get_gid() == gid]
    assert len(found) == 1, f"expected one artist with gid {gid!r}, found {len(found)}"
    return found[0]


def _utc(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc)


def _assert_utc_axis(fig: Figure, first_ms: int, last_ms: int) -> None:
    """Tick labels read in UTC even when matplotlib's default timezone is not UTC."""
    ax = fig.axes[0]
    assert ax.get_xlabel() == "time (UTC)"
    assert isinstance(ax.xaxis.get_major_formatter(), mdates.ConciseDateFormatter)
    with matplotlib.rc_context({"timezone": "America/New_York"}):
        FigureCanvasAgg(fig).draw()
        locs = [loc for loc in ax.get_xticks() if ax.get_xlim()[0] <= loc <= ax.get_xlim()[1]]
        labels = [t.get_text() for t in ax.get_xticklabels()]
        offset = ax.xaxis.get_major_formatter().get_offset()
    assert locs, "no ticks drawn"
    hours_minutes = [label for label in labels if len(label) == 5 and label[2] == ":"]
    expected = {mdates.num2date(loc, tz=timezone.utc).strftime("%H:%M") for loc in locs}
    assert hours_minutes and set(hours_minutes) <= expected
    assert _utc(first_ms).strftime("%Y") in offset or _utc(last_ms).strftime("%Y") in offset
    left, right = (mdates.num2date(x, tz=timezone.utc) for x in ax.get_xlim())
    assert left <= _utc(first_ms) + pd.Timedelta(minutes=1) and right >= _utc(last_ms)


def test_predictions_figure_draws_predictions_actions_and_pivots_on_a_utc_axis():
    table = ar_model_table(120, phi=0.5, seed=0)
    pivots = pivot_table(10, hit_rate=0.7, start=START_MS + MINUTE)
    fig = plot_predictions(table, timeframe="1m", pivots=pivots)
    ax = fig.axes[0]
    predicted = _by_gid(ax, "predicted_close")
    np.testing.assert_allclose(predicted.get_ydata(), table["pred_close.model"])
    first_x = mdates.num2date(predicted.get_xdata()[0], tz=timezone.utc)
    assert first_x == _utc(int(table["target_time"].iloc[0]) + MINUTE // 2)      # the candle's centre
    np.testing.assert_allclose(_by_gid(ax, "actual_close").get_ydata(), table["actual_close"])
    for action in ("BUY", "SELL"):
        markers = _by_gid(ax, f"action_{action}")
        taken = table["action.model"] == action
        assert len(markers.get_offsets()) == taken.sum()
        np.testing.assert_allclose(markers.get_offsets()[:, 1], table.loc[taken, "actual_open"])
    lows = _by_gid(ax, "pivots_low").get_offsets()
    on_bars = pivots[pivots["implied_action"] == "BUY"]
    assert len(lows) == len(on_bars)
    bar = table.set_index("target_time").loc[on_bars["pivot_time"]]
    np.testing.assert_allclose(lows[:, 1], np.minimum(bar["actual_open"], bar["actual_close"]))
    _assert_utc_axis(fig, int(table["target_time"].iloc[0]), int(table["target_time"].iloc[-1]))


def test_learning_curves_are_robust_to_an_outlier_and_on_a_log_scale_when_losses_span_decades():
    rng = np.random.default_rng(0)
    n = 300
    candle = np.exp(rng.normal(0, 0.2, n))            # losses near 1 ...
    candle[150] = 400.0                               # ... and one near 400
    pivot = np.exp(rng.normal(-3, 0.2, n))            # a second kind, two decades lower
    times = START_MS + MINUTE * np.arange(n, dtype=np.int64)
    events = pd.concat([
        pd.DataFrame({"knowable_time": times, "event_kind": "candle", "loss": candle}),
        pd.DataFrame({"knowable_time": times + 30_000, "event_kind": "pivot", "loss": pivot}),
        pd.DataFrame({"knowable_time": times[:3], "event_kind": "pivot", "loss": [np.nan, None, np.nan]}),
    ]).sample(frac=1.0, random_state=1)               # any row order
    fig = plot_learning_curves(events, window=25)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log"
    smoothed = _by_gid(ax, "candle_median").get_ydata()
    after = smoothed[150:175]
    assert np.all(after < 1.5 * np.median(candle)) and np.all(after > np.median(candle) / 1.5)
    assert len(_by_gid(ax, "candle_loss").get_ydata()) == n and np.max(_by_gid(ax, "candle_loss").get_ydata()) == 400
    pivot_curve = _by_gid(ax, "pivot_median").get_ydata()
    assert len(pivot_curve) == n and np.all(pivot_curve < 0.1)
    first = mdates.num2date(_by_gid(ax, "candle_median").get_xdata()[0], tz=timezone.utc)
    assert first == _utc(START_MS)                    # sorted by knowable time
    _assert_utc_axis(fig, START_MS, int(times[-1]))

    narrow = plot_learning_curves(events[events["event_kind"] == "pivot"], window=25)
    assert narrow.axes[0].get_yscale() == "linear"
    with pytest.raises(ConfigError, match="log_scale"):
        plot_learning_curves(pd.DataFrame({"knowable_time": [0], "event_kind": ["c"], "loss": [0.0]}),
                             log_scale=True)
    with pytest.raises(DataValidationError, match="column 'event_kind'"):
        plot_learning_curves(events.drop(columns="event_kind"))


def test_rolling_median_against_pandas():
    x = np.random.default_rng(2).normal(size=50)
    np.testing.assert_allclose(rolling_median(x, 7), pd.Series(x).rolling(7, min_periods=1).median())
    with pytest.raises(ConfigError):
        rolling_median(x, 0)


def test_rolling_direction_accuracy_has_the_chance_line_and_the_baselines():
    table = ar_model_table(400, phi=-0.4, seed=5)
    table = with_model(table, "frozen", table["last_close"] + np.random.default_rng(1).normal(0, 0.1, 400))
    window = 50
    fig = plot_rolling_direction_accuracy(table, timeframe="1m", window=window)
    ax = fig.axes[0]
    chance = _by_gid(ax, "chance_line")
    assert set(chance.get_ydata()) == {0.5}
    names = {line.get_gid() for line in ax.get_lines()}
    assert {"model", "last candle", "majority so far", "frozen", "chance_line"} <= names
    model = _by_gid(ax, "model")
    scores = model_direction_scores(table, "model")
    scored = ~np.isnan(scores)
    expected = pd.Series(scores[scored]).rolling(window, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(model.get_ydata(), expected)
    known = mdates.num2date(model.get_xdata()[0], tz=timezone.utc)
    assert known == _utc(int(table.loc[scored, "target_time"].iloc[0]) + MINUTE)   # when the score is known
    assert np.mean(model.get_ydata()[window:]) > 0.55 > np.mean(_by_gid(ax, "last candle").get_ydata()[window:])
    _assert_utc_axis(fig, int(table["target_time"].iloc[0]), int(table["target_time"].iloc[-1]))


def test_equity_curves_of_the_diagnostic_and_buy_and_hold():
    table = ar_model_table(300, phi=0.5, seed=6)
    diagnostic = follow_actions(table, timeframe="1m", fee_bps=2)
    fig = plot_equity(diagnostic)
    ax = fig.axes[0]
    for gid, result in (("equity_strategy", diagnostic.strategy), ("equity_buy_and_hold", diagnostic.buy_and_hold)):
        line = _by_gid(ax, gid)
        np.testing.assert_allclose(line.get_ydata(), result.equity.to_numpy())
        assert mdates.num2date(line.get_xdata()[-1], tz=timezone.utc) == _utc(int(result.equity.index[-1]))
    assert "not a strategy backtest" in ax.get_title()
    _assert_utc_axis(fig, int(table["target_time"].iloc[0]), int(table["target_time"].iloc[-1]) + MINUTE)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    assert buffer.getvalue()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ConfigError, match="TradingDiagnostic"):
        plot_equity(diagnostic.strategy)


def test_figures_draw_on_a_given_axes_without_pyplot():
    fig = Figure()
    ax = fig.add_subplot()
    table = ar_model_table(50, phi=0.5, seed=7)
    assert plot_predictions(table, timeframe="1m", ax=ax) is fig
    assert plot_rolling_direction_accuracy(table, timeframe="1m", ax=fig.add_subplot(2, 1, 2)) is fig
    with pytest.raises(ConfigError, match="one symbol"):
        plot_predictions(pd.concat([table, table.assign(symbol="Y")]).sort_values("prediction_time"),
                         timeframe="1m")
