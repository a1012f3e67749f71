"""Following the actions: hand-computed cases, costs, buy-and-hold, Sharpe annualization, intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from _evaluation_data import MINUTE, ar_model_table, noise_model_table

from ettlib.errors import ConfigError, DataValidationError
from ettlib.evaluation import follow_actions, trading_intervals
from ettlib.evaluation.trading import DIAGNOSTIC_LABEL, YEAR_MS


def _three_candles(actions=("BUY", "SELL", "HOLD")) -> pd.DataFrame:
    """Opens 100, 110, 99; the last candle closes at 108.9: asset returns +10%, -10%, +10%."""
    times = np.array([1, 2, 3], dtype=np.int64) * MINUTE
    return pd.DataFrame({
        "symbol": "X", "prediction_time": times, "target_time": times,
        "last_open": [99.0, 100.0, 110.0], "last_close": [100.0, 110.0, 99.0],
        "actual_open": [100.0, 110.0, 99.0], "actual_close": [110.0, 99.0, 108.9],
        "pred_close.model": [101.0, 100.0, 99.0], "action.model": list(actions),
    })


def test_three_candles_by_hand():
    d = follow_actions(_three_candles(), timeframe="1m", fee_bps=6, slippage_bps=4)   # 10 bps a unit
    s = d.strategy
    # long +10% after entering (1 unit), short through -10% after flipping (2 units), flat (1 unit)
    expected = np.array([0.999 * 1.1 - 1, 0.998 * 1.1 - 1, 0.999 * 1.0 - 1])
    np.testing.assert_allclose(s.returns, expected, rtol=1e-12)
    np.testing.assert_allclose(s.equity.to_numpy(), np.concatenate([[1.0], np.cumprod(1 + expected)]))
    assert s.equity.index.tolist() == [MINUTE, 2 * MINUTE, 3 * MINUTE, 4 * MINUTE]
    assert s.total_return == pytest.approx(np.prod(1 + expected) - 1)
    assert s.turnover == 4.0
    assert s.hit_rate == 1.0                         # both positions earned their move
    assert s.max_drawdown == pytest.approx(0.001)    # the last period's exit fee
    per_year = YEAR_MS / MINUTE
    assert s.periods_per_year == pytest.approx(525_960.0)
    assert s.sharpe == pytest.approx(expected.mean() / expected.std(ddof=1) * math.sqrt(per_year))

    h = d.buy_and_hold
    np.testing.assert_allclose(h.returns, [0.999 * 1.1 - 1, -0.1, 0.1], rtol=1e-12)
    assert h.total_return == pytest.approx(0.999 * 108.9 / 100 - 1)
    assert h.max_drawdown == pytest.approx(0.1)
    assert h.turnover == 1.0 and h.hit_rate == pytest.approx(2 / 3)
    assert DIAGNOSTIC_LABEL in s.label and d.label == DIAGNOSTIC_LABEL
    assert list(d.summary().index) == [s.label, "buy-and-hold"]


def test_without_costs_always_buy_is_buy_and_hold_and_hold_is_flat():
    table = ar_model_table(200, phi=0.2, seed=1)
    always_buy = follow_actions(table.assign(**{"action.model": "BUY"}), timeframe="1m", fee_bps=5)
    np.testing.assert_allclose(always_buy.strategy.returns, always_buy.buy_and_hold.returns)
    first_open, last_close = table["actual_open"].iloc[0], table["actual_close"].iloc[-1]
    assert always_buy.buy_and_hold.total_return == pytest.approx(0.9995 * last_close / first_open - 1)
    flat = follow_actions(table.assign(**{"action.model": "HOLD"}), timeframe="1m", fee_bps=5)
    assert flat.strategy.total_return == 0.0 and flat.strategy.turnover == 0.0
    assert math.isnan(flat.strategy.hit_rate) and math.isnan(flat.strategy.sharpe)


def test_costs_scale_with_turnover():
    table = noise_model_table(300, noise=0.5, seed=2)
    free = follow_actions(table, timeframe="1m")
    costly = follow_actions(table, timeframe="1m", fee_bps=10, slippage_bps=5)
    assert costly.strategy.turnover == free.strategy.turnover > 50
    cost = 15e-4 * np.abs(np.diff(free.strategy.positions, prepend=0.0))
    np.testing.assert_allclose(1 + costly.strategy.returns, (1 - cost) * (1 + free.strategy.returns))
    assert costly.strategy.total_return < free.strategy.total_return


def test_planted_signal_earns_and_the_sharpe_is_annualized_from_the_spacing():
    table = ar_model_table(1000, phi=0.5, seed=3)
    d = follow_actions(table, timeframe="1m")
    assert d.strategy.total_return > 0 and d.strategy.hit_rate > 0.6
    five_minutes = table.assign(prediction_time=table["prediction_time"] * 5, target_time=table["target_time"] * 5)
    slower = follow_actions(five_minutes, timeframe="5m")
    assert slower.strategy.periods_per_year == pytest.approx(d.strategy.periods_per_year / 5)
    assert slower.strategy.sharpe == pytest.approx(d.strategy.sharpe / math.sqrt(5))


def test_trading_intervals_are_seeded_and_cover_their_estimates():
    d = follow_actions(ar_model_table(500, phi=0.5, seed=4), timeframe="1m", fee_bps=1)
    a = trading_intervals(d, reps=200, seed=1)
    assert a == trading_intervals(d, reps=200, seed=1)
    for interval, value in ((a.total_return, d.strategy.total_return), (a.sharpe, d.strategy.sharpe),
                            (a.buy_and_hold_total_return, d.buy_and_hold.total_return),
                            (a.buy_and_hold_sharpe, d.buy_and_hold.sharpe)):
        assert interval.estimate == pytest.approx(value)
        assert interval.low <= value <= interval.high
    assert a.sharpe.low > 0          # the planted signal's Sharpe is clearly positive


def test_refusals():
    table = _three_candles()
    with pytest.raises(ConfigError, match="fee_bps"):
        follow_actions(table, timeframe="1m", fee_bps=-1)
    two = pd.concat([table, table.assign(symbol="Y")]).sort_values("prediction_time", kind="stable")
    with pytest.raises(ConfigError, match="2 symbols"):
        follow_actions(two, timeframe="1m")
    assert follow_actions(two, timeframe="1m", symbol="Y").strategy.n_periods == 3
    with pytest.raises(ConfigError, match="'Z' is not in the table"):
        follow_actions(two, timeframe="1m", symbol="Z")
    overlapping = table.assign(target_time=[MINUTE, 5 * MINUTE, 3 * MINUTE])
    with pytest.raises(DataValidationError, match="target_time must increase"):
        follow_actions(overlapping, timeframe="1m")
    with pytest.raises(DataValidationError, match="column .pred_close.other.: missing"):
        follow_actions(table, timeframe="1m", model="other")
