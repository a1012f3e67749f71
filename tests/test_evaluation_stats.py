"""Block-bootstrap intervals, the HAC long-run variance and Diebold-Mariano, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from _evaluation_data import ar_moves
from scipy import stats

from ettlib.errors import ConfigError, DataValidationError
from ettlib.evaluation import (
    Interval,
    block_length,
    bootstrap_interval,
    bootstrap_intervals,
    diebold_mariano,
    long_run_variance,
    newey_west_lag,
)


def _hac_variance_of_mean(x: np.ndarray, lag: int) -> float:
    """statsmodels' HAC (Newey-West) variance of a constant regression's coefficient: the mean."""
    fit = sm.OLS(x, np.ones((len(x), 1))).fit(cov_type="HAC", cov_kwds={"maxlags": lag, "use_correction": False})
    return float(fit.bse[0] ** 2)


def _bartlett_lrv_by_hand(x: np.ndarray, lag: int) -> float:
    e = x - x.mean()
    n = len(e)
    total = e @ e / n
    for j in range(1, lag + 1):
        total += 2 * (1 - j / (lag + 1)) * (e[j:] @ e[:-j]) / n
    return total


@pytest.mark.parametrize("lag", [0, 1, 4, 12])
def test_long_run_variance_agrees_with_statsmodels_hac_and_the_formula(lag):
    x = ar_moves(600, phi=0.6, seed=4)
    lrv = long_run_variance(x, lag)
    assert lrv == pytest.approx(_hac_variance_of_mean(x, lag) * len(x), rel=1e-10)
    assert lrv == pytest.approx(_bartlett_lrv_by_hand(x, lag), rel=1e-10)


def test_long_run_variance_refuses_bad_lags():
    with pytest.raises(ConfigError, match="lag"):
        long_run_variance([1.0, 2.0, 3.0], -1)
    with pytest.raises(DataValidationError, match="observations"):
        long_run_variance([1.0, 2.0, 3.0], 3)


def test_newey_west_lag_rule():
    assert [newey_west_lag(n) for n in (1, 100, 1000, 10_000)] == [1, 4, 6, 11]
    assert newey_west_lag(100, horizon=10) == 9
    with pytest.raises(ConfigError):
        newey_west_lag(0)


def test_diebold_mariano_is_the_hac_t_statistic_of_the_mean_differential():
    rng = np.random.default_rng(11)
    baseline = np.abs(ar_moves(799, phi=0.5, seed=1))
    model = baseline * 0.97 + np.abs(rng.normal(0, 0.1, 800))
    result = diebold_mariano(model, baseline, lag=6, small_sample=False)
    d = baseline - model
    t = d.mean() / math.sqrt(_hac_variance_of_mean(d, 6))
    assert result.statistic == pytest.approx(t, rel=1e-10)
    assert result.p_value == pytest.approx(2 * stats.norm.sf(abs(t)), rel=1e-10)
    assert result.p_model_better == pytest.approx(stats.norm.sf(t), rel=1e-10)
    assert result.mean_differential == pytest.approx(d.mean())
    assert (result.n, result.lag, result.horizon) == (800, 6, 1)


def test_harvey_leybourne_newbold_correction_and_t_reference():
    rng = np.random.default_rng(2)
    model, baseline = np.abs(rng.normal(0, 1, (2, 40)))
    h = 3
    plain = diebold_mariano(model, baseline, horizon=h, lag=4, small_sample=False)
    hln = diebold_mariano(model, baseline, horizon=h, lag=4)
    n = 40
    factor = math.sqrt((n + 1 - 2 * h + h * (h - 1) / n) / n)
    assert hln.statistic == pytest.approx(plain.statistic * factor, rel=1e-12)
    assert hln.p_value == pytest.approx(2 * stats.t.sf(abs(hln.statistic), n - 1), rel=1e-12)
    assert hln.p_value > plain.p_value          # a fatter-tailed reference, a smaller statistic


def test_diebold_mariano_default_lag_follows_the_rule():
    rng = np.random.default_rng(3)
    model, baseline = rng.random((2, 1000))
    assert diebold_mariano(model, baseline).lag == newey_west_lag(1000) == 6
    assert diebold_mariano(model, baseline, horizon=12).lag == 11


def test_diebold_mariano_keeps_its_size_under_autocorrelated_differentials():
    """Equal expected losses, autocorrelated differentials: a 5% test rejects about 5% of the time.

    Without the HAC variance (lag 0) it would reject far too often; the test checks both.
    """
    rejections = {"hac": 0, "lag 0": 0}
    trials = 300
    for seed in range(trials):
        d = ar_moves(399, phi=0.6, seed=1000 + seed)          # mean 0, strongly autocorrelated
        loss = np.abs(np.random.default_rng(seed).normal(0, 1, 400)) + 5.0
        rejections["hac"] += diebold_mariano(loss - d, loss).p_value < 0.05
        rejections["lag 0"] += diebold_mariano(loss - d, loss, lag=0).p_value < 0.05
    assert rejections["hac"] / trials < 0.11
    assert rejections["lag 0"] / trials > 0.2


def test_diebold_mariano_degenerate_cases_give_a_reason_not_a_p_value():
    same = diebold_mariano([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, 4.0])
    assert not same.valid and math.isnan(same.p_value) and "same loss" in same.note
    constant = diebold_mariano([1.0, 2.0, 3.0], [2.0, 3.0, 4.0])
    assert "the same (1) on every prediction" in constant.note and math.isnan(constant.statistic)
    short = diebold_mariano([1.0, np.nan, 2.0], [2.0, 1.0, np.nan])
    assert short.n == 1 and "at least 3" in short.note
    with pytest.raises(DataValidationError, match="differ in length"):
        diebold_mariano([1.0, 2.0], [1.0])


def test_bootstrap_interval_of_an_iid_mean_agrees_with_the_normal_interval():
    x = np.random.default_rng(8).normal(2.0, 3.0, 2000)
    ci = bootstrap_interval(x, reps=500, seed=0)
    half = 1.959964 * x.std(ddof=1) / math.sqrt(len(x))
    assert ci.estimate == pytest.approx(x.mean())
    assert ci.low == pytest.approx(x.mean() - half, abs=0.15 * half)
    assert ci.high == pytest.approx(x.mean() + half, abs=0.15 * half)
    assert (ci.level, ci.reps) == (0.95, 500)


def test_bootstrap_interval_widens_for_autocorrelated_data_as_the_long_run_variance_says():
    """AR(1) with phi = 0.5: the standard error of the mean is sqrt(3) times the iid formula's."""
    x = ar_moves(3999, phi=0.5, seed=9)
    ci = bootstrap_interval(x, reps=400, seed=1)
    iid_half = 1.96 * x.std(ddof=1) / math.sqrt(len(x))
    hac_half = 1.96 * math.sqrt(long_run_variance(x, 20) / len(x))
    width = (ci.high - ci.low) / 2
    assert width > 1.3 * iid_half
    assert width == pytest.approx(hac_half, rel=0.25)
    assert ci.block_size == block_length(x) > 1


def test_bootstrap_is_seeded_and_reproducible():
    x = np.random.default_rng(0).exponential(1.0, 300)
    assert bootstrap_interval(x, reps=100, seed=5) == bootstrap_interval(x, reps=100, seed=5)
    assert bootstrap_interval(x, reps=100, seed=5) != bootstrap_interval(x, reps=100, seed=6)


def test_bootstrap_intervals_share_replications_across_statistics():
    rng = np.random.default_rng(1)
    a = rng.normal(0, 1, 500)
    data = np.column_stack([a, a + 1.0])
    mean_a, mean_b, gap = bootstrap_intervals(
        data, lambda rows: [rows[:, 0].mean(), rows[:, 1].mean(), (rows[:, 1] - rows[:, 0]).mean()], reps=100)
    assert (mean_b.low, mean_b.high) == pytest.approx((mean_a.low + 1.0, mean_a.high + 1.0))
    assert (gap.low, gap.high) == pytest.approx((1.0, 1.0))


def test_bootstrap_options_and_nan_statistics():
    with pytest.raises(ConfigError, match="reps"):
        bootstrap_interval(np.ones(20), reps=5)
    with pytest.raises(ConfigError, match="level"):
        bootstrap_interval(np.ones(20), level=95)
    with pytest.raises(DataValidationError, match="at least 2 rows"):
        bootstrap_interval(np.ones(1))
    nan = bootstrap_interval(np.ones(20), statistic=lambda r: np.nan, reps=20)
    assert math.isnan(nan.estimate) and not nan.covers(0.0)


def test_block_length_rule():
    e = np.random.default_rng(0).standard_normal(2000)
    persistent = ar_moves(1999, phi=0.95, seed=0)
    assert block_length(e) <= 3
    assert block_length(persistent) > 10
    assert block_length(np.column_stack([e, persistent])) == block_length(persistent)
    assert block_length(np.ones(100)) == math.ceil(100 ** (1 / 3))     # no estimate for a constant
    assert block_length(np.cumsum(np.ones(40))) <= 10                  # clipped to n // 4


def test_interval_helpers():
    ci = Interval(0.5, 0.1, 0.9, 0.9)
    assert ci.covers(0.1) and not ci.covers(0.0) and ci.is_finite
    assert str(ci) == "0.5 (90% CI 0.1 to 0.9)"
