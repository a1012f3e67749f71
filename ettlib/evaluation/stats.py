"""Uncertainty for autocorrelated per-prediction series: block bootstrap and Diebold-Mariano.

Per-prediction losses of a market model are not independent (volatility
clusters, and a model's errors persist), so intervals and tests here allow
for autocorrelation:

* **Intervals** come from the *stationary bootstrap* of Politis and Romano
  (1994), ``arch.bootstrap.StationaryBootstrap``: rows are resampled in
  blocks of random (geometric) length, so short-range dependence survives
  the resampling.  The **mean block length** is the Politis-White (2004)
  estimate with the Patton-Politis-White (2009) correction
  (``arch.bootstrap.optimal_block_length``, its ``"stationary"`` column),
  the largest over the columns resampled together, rounded up and clipped
  to ``[1, n // 4]``; where it is not defined (fewer than 10 rows, or
  every column constant) it is ``ceil(n ** (1/3))``, the rate-optimal order.
  The interval is the percentile interval of the statistic over the
  replications (NaN replications left out), seeded and reproducible.
* **Diebold-Mariano** (1995) compares two forecasts' per-prediction losses:
  ``d_t = baseline loss - model loss`` (positive: the model is better),
  ``DM = mean(d) / sqrt(LRV / n)``, with the long-run variance ``LRV`` the
  Newey-West (Bartlett-kernel HAC) estimate at lag ``L``.  **Lag rule**:
  ``L = max(h - 1, floor(4 * (n / 100) ** (2 / 9)))`` -- the Newey-West (1994)
  rule of thumb, and at least the ``h - 1`` an ``h``-step forecast's
  errors need; the plain ``h - 1`` would ignore the volatility clustering of
  absolute errors.  With ``small_sample=True`` (default) the statistic gets
  the Harvey-Leybourne-Newbold (1997) correction
  ``sqrt((n + 1 - 2h + h(h - 1) / n) / n)`` and is compared with Student's t
  with ``n - 1`` degrees of freedom, else with the standard normal.  Both
  the two-sided p-value and the one-sided "model better" p-value (H1: the
  model's expected loss is lower) are returned.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).normal(1.0, 1.0, 400)
>>> ci = bootstrap_interval(x, reps=200, seed=1)
>>> ci.low < 1.0 < ci.high, ci.level
(True, 0.95)
>>> newey_west_lag(100), newey_west_lag(2880), newey_west_lag(50, horizon=8)
(4, 8, 7)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ettlib.errors import ConfigError, DataValidationError

__all__ = [
    "Interval",
    "DieboldMariano",
    "block_length",
    "bootstrap_intervals",
    "bootstrap_interval",
    "newey_west_lag",
    "long_run_variance",
    "diebold_mariano",
]

_MIN_ROWS_FOR_BLOCK_RULE = 10


@dataclass(frozen=True, slots=True)
class Interval:
    """A point estimate with a two-sided confidence interval ``[low, high]`` at ``level``.

    ``block_size`` and ``reps`` say how a bootstrap interval was made.

    >>> ci = Interval(0.1, -0.02, 0.2)
    >>> ci.covers(0.0), str(ci)
    (True, '0.1 (95% CI -0.02 to 0.2)')
    """

    estimate: float
    low: float
    high: float
    level: float = 0.95
    block_size: int | None = None
    reps: int | None = None

    def covers(self, value: float) -> bool:
        """Whether ``low <= value <= high`` (False for a NaN interval)."""
        return bool(self.low <= value <= self.high)

    @property
    def is_finite(self) -> bool:
        return bool(np.isfinite([self.estimate, self.low, self.high]).all())

    def __str__(self) -> str:
        return f"{self.estimate:.4g} ({self.level:.0%} CI {self.low:.4g} to {self.high:.4g})"


@dataclass(frozen=True, slots=True)
class DieboldMariano:
    """The result of :func:`diebold_mariano` (see the module doc).

    ``statistic > 0`` means the model's losses are lower.  ``p_value`` is
    two-sided, ``p_model_better`` one-sided (H1: the model is better).
    ``note`` says why there is no test (then statistic and p-values are NaN).
    """

    statistic: float
    p_value: float
    p_model_better: float
    mean_differential: float
    lag: int
    n: int
    horizon: int = 1
    small_sample: bool = True
    note: str | None = None

    @property
    def valid(self) -> bool:
        """Whether a test was computed (no ``note``)."""
        return self.note is None


def _as_matrix(data) -> np.ndarray:
    x = np.asarray(data, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ConfigError(f"data must be 1-D or 2-D (rows x series), got {x.ndim}-D")
    return x


def block_length(data) -> int:
    """The stationary bootstrap's mean block length for ``data`` (rows x series; see the module doc).

    >>> block_length(np.arange(5.0))          # too short for the estimate: ceil(5 ** (1/3))
    2
    >>> ar = np.zeros(2000); e = np.random.default_rng(0).standard_normal(2000)
    >>> for t in range(1, 2000): ar[t] = 0.9 * ar[t - 1] + e[t]
    >>> block_length(ar) > block_length(e)
    True
    """
    from arch.bootstrap import optimal_block_length

    x = _as_matrix(data)
    n = len(x)
    if n == 0:
        raise DataValidationError("no rows to bootstrap", source="block_length")
    fallback = math.ceil(n ** (1 / 3))
    if n < _MIN_ROWS_FOR_BLOCK_RULE:
        return fallback
    varying = [j for j in range(x.shape[1]) if np.nanstd(x[:, j]) > 0 and np.isfinite(x[:, j]).all()]
    if not varying:
        return min(fallback, max(1, n // 4))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        estimates = optimal_block_length(x[:, varying])["stationary"].to_numpy(dtype=np.float64)
    estimates = estimates[np.isfinite(estimates)]
    best = math.ceil(estimates.max()) if estimates.size else fallback
    return int(min(max(best, 1), max(1, n // 4)))


def _check_bootstrap_options(reps: int, level: float) -> None:
    if not isinstance(reps, (int, np.integer)) or isinstance(reps, bool) or reps < 10:
        raise ConfigError(f"reps must be an integer >= 10, got {reps!r}")
    if not 0 < level < 1:
        raise ConfigError(f"level must be between 0 and 1, got {level!r}")


def bootstrap_intervals(
    data,
    statistic: Callable[[np.ndarray], np.ndarray],
    *,
    reps: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    block_size: int | None = None,
) -> tuple[Interval, ...]:
    """Percentile intervals of a vector of statistics, from one stationary block bootstrap.

    Parameters
    ----------
    data
        Rows in time order: 1-D, or 2-D with one column per series; the rows
        are resampled together, so statistics of several columns (a model's
        and a baseline's losses) share every replication.
    statistic
        ``f(rows) -> value or 1-D array`` of ``k`` statistics; may return NaN.
    reps, level, seed
        Replications, confidence level, seed of the resampling.
    block_size
        Mean block length; default :func:`block_length` of ``data``.

    Returns
    -------
    tuple of Interval
        One per statistic, the estimate being ``statistic(data)``.

    >>> x = np.column_stack([np.ones(50), np.arange(50.0)])
    >>> means = bootstrap_intervals(x, lambda rows: rows.mean(axis=0), reps=50)
    >>> means[0]
    Interval(estimate=1.0, low=1.0, high=1.0, level=0.95, block_size=10, reps=50)
    """
    from arch.bootstrap import StationaryBootstrap

    _check_bootstrap_options(reps, level)
    x = _as_matrix(data)
    if len(x) < 2:
        raise DataValidationError(f"needs at least 2 rows to bootstrap, got {len(x)}",
                                  source="bootstrap_intervals")
    size = block_length(x) if block_size is None else int(block_size)
    if size < 1:
        raise ConfigError(f"block_size must be >= 1, got {block_size!r}")

    def vector(rows):
        return np.atleast_1d(np.asarray(statistic(rows), dtype=np.float64))

    estimate = vector(x)
    bootstrap = StationaryBootstrap(size, x, seed=np.random.default_rng(seed))
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        draws = bootstrap.apply(vector, reps)
        tail = 100 * (1 - level) / 2
        low, high = np.nanpercentile(draws, [tail, 100 - tail], axis=0)
    nan = float("nan")
    return tuple(
        Interval(float(e), float(lo), float(hi), float(level), size, int(reps)) if np.isfinite(e)
        else Interval(nan, nan, nan, float(level), size, int(reps))
        for e, lo, hi in zip(estimate, low, high)
    )


def bootstrap_interval(x, statistic: Callable[[np.ndarray], float] = np.mean, **options) -> Interval:
    """The :func:`bootstrap_intervals` interval of one statistic (default: the mean) of a 1-D series."""
    values = np.asarray(x, dtype=np.float64).ravel()
    return bootstrap_intervals(values, lambda rows: statistic(rows[:, 0]), **options)[0]


def newey_west_lag(n: int, horizon: int = 1) -> int:
    """The HAC lag for ``n`` observations of an ``h``-step forecast: ``max(h - 1, floor(4 (n/100)^(2/9)))``."""
    if n < 1:
        raise ConfigError(f"n must be positive, got {n!r}")
    if horizon < 1:
        raise ConfigError(f"horizon must be >= 1, got {horizon!r}")
    return int(max(horizon - 1, math.floor(4 * (n / 100) ** (2 / 9))))


def long_run_variance(x, lag: int) -> float:
    """Newey-West (Bartlett-kernel) long-run variance of ``x``: ``g0 + 2 sum_j (1 - j/(L+1)) g_j``.

    ``g_j`` are the sample autocovariances (demeaned, divided by ``n``:
    ``statsmodels.tsa.stattools.acovf``), so ``long_run_variance(x, L) / n``
    is the HAC variance of the mean of ``x`` (what statsmodels' ``OLS`` of
    ``x`` on a constant reports with ``cov_type="HAC"``, ``maxlags=L`` and
    no small-sample correction).

    >>> long_run_variance([1.0, -1.0, 1.0, -1.0], 0)
    1.0
    """
    from statsmodels.tsa.stattools import acovf

    values = np.asarray(x, dtype=np.float64).ravel()
    n = len(values)
    if not isinstance(lag, (int, np.integer)) or lag < 0:
        raise ConfigError(f"lag must be a non-negative integer, got {lag!r}")
    if n < 2 or lag >= n:
        raise DataValidationError(f"needs more than max(1, lag={lag}) observations, got {n}",
                                  source="long_run_variance")
    gamma = acovf(values, adjusted=False, demean=True, fft=False, nlag=int(lag))
    weights = 1.0 - np.arange(1, lag + 1) / (lag + 1)
    return float(gamma[0] + 2.0 * np.dot(weights, gamma[1:]))


def diebold_mariano(
    model_loss,
    baseline_loss,
    *,
    horizon: int = 1,
    lag: int | None = None,
    small_sample: bool = True,
) -> DieboldMariano:
    """Diebold-Mariano test of equal expected loss, model against baseline (see the module doc).

    Pairs where either loss is NaN are dropped.  With fewer than 3 pairs, or
    a loss differential that never varies (e.g. identical forecasts), there
    is nothing to test: the result has NaN statistic and p-values and a
    ``note`` saying why, rather than an invented p-value.

    >>> rng = np.random.default_rng(0)
    >>> baseline = np.abs(rng.normal(0, 1.0, 500))
    >>> result = diebold_mariano(0.8 * baseline, baseline)
    >>> result.statistic > 0, result.p_model_better < 0.05, result.lag
    (True, True, 5)
    >>> diebold_mariano([1.0, 2.0, 3.0], [1.0, 2.0, 3.0]).note
    'the two forecasts have the same loss on every prediction'
    """
    from scipy import stats

    model = np.asarray(model_loss, dtype=np.float64).ravel()
    baseline = np.asarray(baseline_loss, dtype=np.float64).ravel()
    if model.shape != baseline.shape:
        raise DataValidationError(f"loss series differ in length: {len(model)} vs {len(baseline)}",
                                  source="diebold_mariano")
    keep = ~(np.isnan(model) | np.isnan(baseline))
    d = baseline[keep] - model[keep]
    n = len(d)
    lag_used = newey_west_lag(max(n, 1), horizon) if lag is None else int(lag)
    mean = float(d.mean()) if n else float("nan")

    def degenerate(note: str) -> DieboldMariano:
        nan = float("nan")
        return DieboldMariano(nan, nan, nan, mean, lag_used, n, horizon, small_sample, note)

    if n < 3:
        return degenerate(f"needs at least 3 paired losses, got {n}")
    if np.all(d == d[0]):
        if d[0] == 0:
            return degenerate("the two forecasts have the same loss on every prediction")
        return degenerate(f"the loss differential is the same ({d[0]:g}) on every prediction")
    lag_used = min(lag_used, n - 1)
    variance = long_run_variance(d, lag_used)
    if not variance > 0:
        return degenerate("the long-run variance of the loss differential is not positive")
    statistic = mean / math.sqrt(variance / n)
    if small_sample:
        h = horizon
        correction = (n + 1 - 2 * h + h * (h - 1) / n) / n
        if not correction > 0:
            return degenerate(f"{n} predictions are too few for a {h}-step small-sample correction")
        statistic *= math.sqrt(correction)
        two_sided = float(2 * stats.t.sf(abs(statistic), n - 1))
        one_sided = float(stats.t.sf(statistic, n - 1))
    else:
        two_sided = float(2 * stats.norm.sf(abs(statistic)))
        one_sided = float(stats.norm.sf(statistic))
    return DieboldMariano(float(statistic), two_sided, one_sided, mean, lag_used, n, horizon, small_sample)
