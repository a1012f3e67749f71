"""What following the model's actions would have earned: a diagnostic, **not a strategy backtest**.

This asks whether the actions carry information, in the units a trader
thinks in.  It is not a backtest of a tradable strategy: there is no
position sizing, no capital or margin, no funding, no latency, no fills
against an order book, and the actions were not designed to trade.

The rules:

* one unit of equity is **long** on BUY, **short** on SELL and **flat** on
  HOLD;
* each action is **executed at the open of its target candle**
  (``actual_open``, the first price after the prediction) and **held until
  the next prediction's execution** (the next row's ``actual_open``); the last
  position is held to its target candle's close (``actual_close``);
* costs: ``fee_bps + slippage_bps`` basis points per unit of turnover, paid
  at execution.  Turnover is ``|position - previous position|`` (entering
  from flat is 1, a flip from long to short is 2); the run starts flat and
  the last position is marked to market, not closed;
* one period's net return is ``(1 - cost) * (1 + position * r) - 1``, with
  ``r = exit price / entry price - 1``; the equity curve compounds them from
  1.0 at the first execution, indexed by time (int64 epoch ms, UTC: the
  first execution, then each period's exit);
* **buy-and-hold** over the same candles follows the same rules with a
  position of 1 throughout (one unit of turnover at the start).

Reported: total return, Sharpe ratio, maximum drawdown, turnover, hit rate.
The **Sharpe ratio** is ``mean / std`` (``ddof=1``) of the net period
returns, with no risk-free rate, annualized by ``sqrt(periods per year)``
where periods per year are ``365.25 days / median period length``
(markets open around the clock, as crypto markets are: 525,960 one-minute
periods a year).  **Maximum drawdown** is the largest fall of the equity
from its running peak, as a fraction of the peak.  **Hit rate** is the share
of periods with a position whose gross return ``position * r`` was positive.

Examples
--------
Three candles opening at 100, 110 and 99, the last closing at 108.9; the
model says BUY, SELL, HOLD; 10 bps of fees:

>>> import pandas as pd
>>> table = pd.DataFrame({"symbol": "X", "prediction_time": [60_000, 120_000, 180_000],
...     "target_time": [60_000, 120_000, 180_000], "last_open": [99.0, 100.0, 110.0],
...     "last_close": [100.0, 110.0, 99.0], "actual_open": [100.0, 110.0, 99.0],
...     "actual_close": [110.0, 99.0, 108.9], "pred_close.model": [101.0, 100.0, 99.0],
...     "action.model": ["BUY", "SELL", "HOLD"]})
>>> d = follow_actions(table, timeframe="1m", fee_bps=10)
>>> d.strategy.returns.round(4).tolist()        # 0.999 * 1.1 - 1, 0.998 * 1.1 - 1, 0.999 - 1
[0.0989, 0.0978, -0.001]
>>> d.strategy.turnover, d.buy_and_hold.turnover
(4.0, 1.0)
>>> d.strategy.equity.index.tolist()
[60000, 120000, 180000, 240000]
>>> round(d.buy_and_hold.total_return, 6)       # 0.999 * 108.9 / 100 - 1
0.087911
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from ettlib.errors import ConfigError, DataValidationError
from ettlib.evaluation.stats import Interval, bootstrap_intervals
from ettlib.evaluation.table import ACTION, as_timeframe_ms, validate_predictions

__all__ = [
    "DIAGNOSTIC_LABEL",
    "YEAR_MS",
    "TradingResult",
    "TradingDiagnostic",
    "TradingIntervals",
    "follow_actions",
    "trading_intervals",
]

#: The label every output of this module carries.
DIAGNOSTIC_LABEL = "diagnostic of the predictions, not a strategy backtest"
#: A year of round-the-clock trading in milliseconds (365.25 days).
YEAR_MS = 365.25 * 86_400_000
_POSITIONS = {"BUY": 1.0, "SELL": -1.0, "HOLD": 0.0}


@dataclass(frozen=True)
class TradingResult:
    """The outcome of holding ``positions`` over the periods (see the module doc)."""

    label: str
    positions: np.ndarray  #: +1 long, -1 short, 0 flat, one per period
    returns: np.ndarray  #: net return of each period, after costs
    equity: pd.Series  #: compounded equity, 1.0 at the first execution; index: time (ms)
    total_return: float
    sharpe: float
    max_drawdown: float
    turnover: float
    hit_rate: float
    periods_per_year: float

    @property
    def n_periods(self) -> int:
        return len(self.returns)


@dataclass(frozen=True)
class TradingDiagnostic:
    """Following ``model``'s actions against buy-and-hold over the same candles."""

    model: str
    strategy: TradingResult
    buy_and_hold: TradingResult
    fee_bps: float
    slippage_bps: float
    label: str = DIAGNOSTIC_LABEL

    def summary(self) -> pd.DataFrame:
        """The headline numbers of both, one row each."""
        rows = []
        for result in (self.strategy, self.buy_and_hold):
            rows.append({"": result.label, "total return": result.total_return, "Sharpe": result.sharpe,
                         "max drawdown": result.max_drawdown, "turnover": result.turnover,
                         "hit rate": result.hit_rate, "periods": result.n_periods})
        return pd.DataFrame(rows).set_index("")


@dataclass(frozen=True, slots=True)
class TradingIntervals:
    """Block-bootstrap intervals of the total returns and Sharpe ratios (:func:`trading_intervals`)."""

    total_return: Interval
    sharpe: Interval
    buy_and_hold_total_return: Interval
    buy_and_hold_sharpe: Interval


def _sharpe(returns: np.ndarray, periods_per_year: float) -> float:
    if len(returns) < 2:
        return float("nan")
    sd = returns.std(ddof=1)
    return float(returns.mean() / sd * np.sqrt(periods_per_year)) if sd > 0 else float("nan")


def _result(label: str, positions: np.ndarray, asset_returns: np.ndarray, cost_rate: float,
            times: np.ndarray, periods_per_year: float) -> TradingResult:
    trades = np.abs(np.diff(positions, prepend=0.0))
    net = (1.0 - cost_rate * trades) * (1.0 + positions * asset_returns) - 1.0
    equity = np.concatenate([[1.0], np.cumprod(1.0 + net)])
    drawdown = 1.0 - equity / np.maximum.accumulate(equity)
    held = positions != 0
    hit_rate = float(np.mean(positions[held] * asset_returns[held] > 0)) if held.any() else float("nan")
    return TradingResult(
        label=label, positions=positions, returns=net,
        equity=pd.Series(equity, index=pd.Index(times, name="time"), name=label),
        total_return=float(equity[-1] - 1.0), sharpe=_sharpe(net, periods_per_year),
        max_drawdown=float(drawdown.max()), turnover=float(trades.sum()), hit_rate=hit_rate,
        periods_per_year=periods_per_year,
    )


def follow_actions(
    predictions: pd.DataFrame,
    *,
    timeframe: str | int,
    model: str = "model",
    fee_bps: float = 0.0,
    slippage_bps: float = 0.0,
    symbol: str | None = None,
) -> TradingDiagnostic:
    """Follow ``model``'s actions on one symbol's predictions (see the module doc).

    Parameters
    ----------
    predictions
        A prediction table (:mod:`ettlib.evaluation.table`).
    timeframe
        The candles' timeframe (name or ms): when the last target candle closes.
    model
        Whose ``action.<model>`` to follow.
    fee_bps, slippage_bps
        Costs in basis points per unit of turnover (both >= 0).
    symbol
        The symbol to follow; needed when the table has more than one.
    """
    validate_predictions(predictions, [model])
    step = as_timeframe_ms(timeframe)
    if fee_bps < 0 or slippage_bps < 0:
        raise ConfigError(f"fee_bps and slippage_bps must be >= 0, got {fee_bps!r} and {slippage_bps!r}")
    symbols = pd.unique(predictions["symbol"])
    if symbol is None:
        if len(symbols) > 1:
            raise ConfigError(f"the table has {len(symbols)} symbols ({', '.join(map(str, symbols))}): "
                              f"say which to follow with symbol=")
        rows = predictions
    else:
        if symbol not in set(symbols):
            raise ConfigError(f"symbol {symbol!r} is not in the table; it has {', '.join(map(str, symbols))}")
        rows = predictions[predictions["symbol"] == symbol]
    if rows.empty:
        raise DataValidationError("no predictions to follow", source="prediction table")
    entry_times = rows["target_time"].to_numpy(dtype=np.int64)
    if np.any(np.diff(entry_times) <= 0):
        raise DataValidationError("target_time must increase from row to row to follow the actions",
                                  source="prediction table", column="target_time")
    entry = rows["actual_open"].to_numpy(dtype=np.float64)
    if np.any(entry <= 0):
        raise DataValidationError("actual_open must be positive", source="prediction table",
                                  column="actual_open")
    exit_prices = np.append(entry[1:], rows["actual_close"].to_numpy(dtype=np.float64)[-1])
    exit_times = np.append(entry_times[1:], entry_times[-1] + step)
    asset_returns = exit_prices / entry - 1.0
    periods_per_year = YEAR_MS / float(np.median(exit_times - entry_times))
    times = np.concatenate([entry_times[:1], exit_times])
    cost_rate = (fee_bps + slippage_bps) / 1e4
    positions = rows[ACTION + model].map(_POSITIONS).to_numpy(dtype=np.float64)
    strategy = _result(f"following {model!r} ({DIAGNOSTIC_LABEL})", positions, asset_returns, cost_rate,
                       times, periods_per_year)
    hold = _result("buy-and-hold", np.ones_like(positions), asset_returns, cost_rate, times, periods_per_year)
    return TradingDiagnostic(model, strategy, hold, float(fee_bps), float(slippage_bps))


def trading_intervals(
    diagnostic: TradingDiagnostic, *, reps: int = 1000, level: float = 0.95, seed: int = 0
) -> TradingIntervals:
    """Stationary block-bootstrap intervals of total return and Sharpe, for the model and buy-and-hold.

    The two net return series are resampled together (same blocks), with
    the block length rule of :mod:`ettlib.evaluation.stats`.
    """
    per_year = diagnostic.strategy.periods_per_year

    def statistic(rows):
        total = np.prod(1.0 + rows, axis=0) - 1.0
        return np.concatenate([total, [_sharpe(rows[:, 0], per_year), _sharpe(rows[:, 1], per_year)]])

    data = np.column_stack([diagnostic.strategy.returns, diagnostic.buy_and_hold.returns])
    total, hold_total, sharpe, hold_sharpe = bootstrap_intervals(data, statistic, reps=reps, level=level,
                                                                 seed=seed)
    return TradingIntervals(total, sharpe, hold_total, hold_sharpe)
