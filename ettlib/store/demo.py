"""Seeded synthetic candles that look like a crypto market, for demos and tests.

:func:`demo_candles` draws candles from a small stylized market model, fully
vectorized (a year of 1-minute candles in well under a second):

- **Volatility clustering**: log-volatility is the sum of two AR(1) processes,
  a slow one (half-life about a day) and a fast one (about an hour), so calm
  and turbulent stretches alternate the way GARCH-type models describe.
- **Intraday seasonality**: volatility and volume follow the hour of day
  (UTC): quiet Asian night, a European bump near 08:00 and the busiest hours
  around the US open (13:30-16:00).
- **Trends and reversals**: a hidden regime (up-trend, down-trend, range)
  switches after exponentially distributed durations (mean about five
  hours) and sets the drift (none in a range); a trend is followed by one
  in the other direction three times out of four.
- **Fat tails**: shocks are Student-t with 4 degrees of freedom (scaled to
  unit variance) plus rare jumps.
- **Microstructure noise (bid-ask bounce)**: the traded price is an
  efficient price plus a transient deviation (normal, sd about 0.4 of the
  current 1m volatility) that is new every candle, as in Roll's (1984)
  model of trades bouncing between bid and ask.  Part of each 1m move
  therefore reverses the next minute: the lag-1 autocorrelation of 1m
  returns is about -0.15 (-0.14 .. -0.17 over 28 days for seeds 0-3 and
  7; tested in -0.2 .. -0.1), lags of two minutes and more stay near zero,
  and at 5m the bounce is diluted to a few hundredths.  Negative lag-1
  autocorrelation of high-frequency returns is a documented feature of
  real markets (bid-ask bounce, short-lived liquidity shocks); -0.15 is on
  the strong side for liquid crypto pairs, chosen so that a small model
  can find it within a two-day demo.
- **Consistent OHLC**: each candle opens at the previous close; highs and
  lows extend beyond the body by a random amount proportional to the
  candle's volatility; prices are rounded to a tick (0.01 for ETH-sized
  prices) and ``low <= min(open, close) <= max(open, close) <= high`` holds
  after rounding.  Volume is positive and rises with volatility and |return|.

Level-3 Williams pivots (n = 1; highs and lows together) come about every
40 minutes on the 1-minute candles, every 2-3 hours on 3-minute and every
4-5 hours on 5-minute candles (28 days, seed 7: 1,091, 266 and 148 of them).

What a model can learn here (and what it cannot)
------------------------------------------------
The data are synthetic: what is predictable is exactly what the generator
above puts in, nothing more.

- *the next 1m close*, a little: betting against the last move is right
  about 55-57% of the time, and shrinking the last move by its
  autocorrelation (``close + rho * last move``) cuts the MAE of the next
  close by about 1.4% against persistence (2 days, seed 7); a longer
  history adds little, and the rest of each move is noise by construction;
- *turning points*, somewhat: frames just before a level-2 low follow a
  falling stretch and frames before a high a rising one (the bounce adds
  to this), so "BUY after the last 2-3 closes fell" labels 60% of the
  pivot pairs correctly where the majority label gets about 50%;
- *volatility and volume* (the range of the next candle), well: they
  cluster and follow the clock;
- *trends*, hardly: a regime's drift is a tenth of a minute's volatility,
  and the regime is hidden.

The same ``(symbol, start, days, seed, timeframe)`` always gives the same frame,
with a given numpy (its PCG64 generator; no global state).

Examples
--------
>>> df = demo_candles(days=1, seed=7)
>>> len(df), list(df.columns)
(1440, ['timestamp', 'open', 'high', 'low', 'close', 'volume'])
>>> int(df["timestamp"].iloc[1] - df["timestamp"].iloc[0])
60000
>>> bool((df["low"] <= df[["open", "close"]].min(axis=1)).all())
True
>>> demo_candles(days=1, seed=7).equals(df)
True
"""

from __future__ import annotations

import zlib

import numpy as np
import pandas as pd
from scipy.signal import lfilter

from ettlib.errors import ConfigError
from ettlib.symbols import validate_symbol
from ettlib.timeframes import is_aligned, timeframe_ms

__all__ = ["DEFAULT_START", "demo_candles", "write_demo_data"]

#: Default first open time: 2024-01-01 00:00 UTC, in epoch milliseconds.
DEFAULT_START = 1_704_067_200_000

_DAY_MS = 86_400_000
_MINUTE_MS = 60_000

# Starting prices for a few familiar symbols; others get one from their name.
_BASE_PRICES = {"ETH/USDT": 2300.0, "BTC/USDT": 42000.0, "SOL/USDT": 100.0, "BNB/USDT": 310.0}

# Model constants, per 1-minute step.
_SIGMA_1M = 0.0007  # typical 1m log-return volatility (about 3% a day)
_SLOW_PHI = 0.5 ** (1 / 1440)  # slow log-vol AR(1): half-life one day
_FAST_PHI = 0.5 ** (1 / 60)  # fast log-vol AR(1): half-life one hour
_SLOW_SD, _FAST_SD = 0.45, 0.35  # stationary sd of each log-vol component
_REGIME_MEAN_MIN = 300.0  # mean regime duration, minutes
_TREND_PER_MIN = 0.00006  # drift of a trend regime (about 1.8% over 5 h)
_JUMP_PROB = 1 / 5000.0  # jumps per minute
_JUMP_SD = 0.006
_T_DOF = 4.0
# Microstructure noise (bid-ask bounce): sd of the transient price component,
# relative to the efficient price's 1m volatility.  Lag-1 autocorrelation of
# 1m returns is about -k^2 / (1 + 2 k^2): -0.16 for k = 0.48.
_BOUNCE = 0.48


def _seasonality(hours: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Volatility and volume multipliers by fractional UTC hour (mean ~1)."""

    def bump(center: float, width: float) -> np.ndarray:
        d = (hours - center + 12.0) % 24.0 - 12.0  # wrap around midnight
        return np.exp(-0.5 * (d / width) ** 2)

    vol = 0.65 + 0.35 * bump(8.0, 1.5) + 0.9 * bump(14.5, 1.8) + 0.2 * bump(20.0, 2.0)
    volume = 0.55 + 0.45 * bump(8.5, 2.0) + 1.2 * bump(14.5, 2.0) + 0.25 * bump(20.0, 2.5)
    return vol / vol.mean(), volume / volume.mean()


def _ar1(rng: np.random.Generator, n: int, phi: float, sd: float) -> np.ndarray:
    """A stationary AR(1) path with coefficient ``phi`` and standard deviation ``sd``."""
    noise = rng.standard_normal(n) * sd * np.sqrt(1 - phi * phi)
    start = rng.standard_normal() * sd
    path, _ = lfilter([1.0], [1.0, -phi], noise, zi=[phi * start])
    return path


def _regimes(rng: np.random.Generator, n: int, step_min: float) -> np.ndarray:
    """Regime per candle: +1 up-trend, -1 down-trend, 0 range."""
    count = max(4, int(2 * n * step_min / _REGIME_MEAN_MIN) + 8)
    durations = rng.exponential(_REGIME_MEAN_MIN / step_min, size=count)
    lengths = np.maximum(1, np.round(durations)).astype(np.int64)
    while lengths.sum() < n:  # pragma: no cover - the draw above is ample
        lengths = np.concatenate((lengths, lengths))
    # Trends usually reverse: the sign of the next trend flips with probability 0.75.
    signs = np.where(np.cumsum(rng.random(len(lengths)) < 0.75) % 2 == 0, 1, -1)
    kinds = np.where(rng.random(len(lengths)) < 0.7, signs, 0)
    return np.repeat(kinds, lengths)[:n]


def _tick_for(price: float) -> float:
    return 10.0 ** (np.floor(np.log10(price)) - 5)


def _seed_sequence(symbol: str, seed: int) -> np.random.SeedSequence:
    return np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(symbol.encode("utf-8"))])


def demo_candles(
    symbol: str = "ETH/USDT",
    start: int = DEFAULT_START,
    days: float = 28,
    seed: int = 7,
    timeframe: str = "1m",
) -> pd.DataFrame:
    """Deterministic synthetic candles.

    Parameters
    ----------
    symbol
        Only picks the starting price and enters the seed, so two symbols
        with one seed differ.
    start
        Open time of the first candle, epoch ms UTC, on the ``timeframe`` grid.
    days
        Length of the series; ``days * 86_400_000 / timeframe_ms`` candles.
    seed
        Random seed; the same arguments always give the same frame.
    timeframe
        Candle length (default ``"1m"``); volatility scales with its square root.

    Returns
    -------
    pandas.DataFrame
        Columns ``timestamp`` (int64 ms open times, contiguous),
        ``open, high, low, close, volume`` (float64).
    """
    step = timeframe_ms(timeframe)
    validate_symbol(symbol)
    if isinstance(start, bool) or not isinstance(start, (int, np.integer)):
        raise ConfigError(f"start must be an int of epoch milliseconds, got {start!r}")
    if not is_aligned(int(start), timeframe):
        raise ConfigError(f"start {start} is not on the {timeframe} grid")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise ConfigError(f"seed must be an int, got {seed!r}")
    if not np.isfinite(days) or days <= 0:
        raise ConfigError(f"days must be positive, got {days!r}")
    n = int(round(days * _DAY_MS / step))
    if n < 1:
        raise ConfigError(f"{days} days hold no {timeframe} candle")

    rng = np.random.Generator(np.random.PCG64(_seed_sequence(symbol, seed)))
    step_min = step / _MINUTE_MS
    timestamps = int(start) + np.arange(n, dtype=np.int64) * step
    hours = (timestamps % _DAY_MS) / 3_600_000.0 + step / 7_200_000.0  # mid-candle hour
    season_vol, season_volume = _seasonality(hours)

    # Volatility: clustered (two AR(1) log-vol components) times seasonality.
    slow = _ar1(rng, n, _SLOW_PHI**step_min, _SLOW_SD)
    fast = _ar1(rng, n, _FAST_PHI**step_min, _FAST_SD)
    log_vol = slow + fast - 0.5 * (_SLOW_SD**2 + _FAST_SD**2)  # E[exp] ~ 1
    sigma = _SIGMA_1M * np.sqrt(step_min) * np.exp(log_vol) * season_vol

    # Fat-tailed shocks, rare jumps.
    shocks = rng.standard_t(_T_DOF, n) / np.sqrt(_T_DOF / (_T_DOF - 2))
    jumps = (rng.random(n) < _JUMP_PROB * step_min) * rng.normal(0.0, _JUMP_SD, n)

    # Regimes: a trend's drift, or none in a range.
    regime = _regimes(rng, n, step_min)
    drift = regime * _TREND_PER_MIN * step_min

    # Microstructure: the traded price is the efficient price plus a transient
    # bounce (a 1m-sized thing at any timeframe, scaled by the current
    # volatility); the efficient part is scaled down so that 1m returns keep
    # their volatility.
    bounce_share = 1.0 / np.sqrt(1.0 + 2.0 * _BOUNCE**2)
    bounce = _BOUNCE * bounce_share * (sigma / np.sqrt(step_min)) * rng.standard_normal(n)
    noise = sigma * bounce_share * shocks + jumps + drift
    base = _BASE_PRICES.get(symbol, 10.0 + zlib.crc32(symbol.encode("utf-8")) % 990)
    log_price = np.log(base) + np.cumsum(noise) + bounce
    close = np.exp(log_price)
    tick = _tick_for(base)
    open_ = np.concatenate(([close[0] * np.exp(-sigma[0] * shocks[0] * 0.1)], close[:-1]))
    body_high, body_low = np.maximum(open_, close), np.minimum(open_, close)
    wick_up = np.abs(rng.standard_normal(n)) * sigma * 0.6 * close
    wick_down = np.abs(rng.standard_normal(n)) * sigma * 0.6 * close
    open_ = _round(open_, tick)
    close = _round(close, tick)
    high = np.maximum(_round(body_high + wick_up, tick), np.maximum(open_, close))
    low = np.minimum(_round(body_low - wick_down, tick), np.minimum(open_, close))
    low = np.maximum(low, tick)  # positive even in a pathological draw

    traded_return = np.diff(log_price, prepend=np.log(base))
    activity = np.abs(traded_return) / (_SIGMA_1M * np.sqrt(step_min))
    volume = (
        40.0
        * step_min
        * season_volume
        * np.exp(0.6 * log_vol)
        * (0.4 + 0.6 * np.minimum(activity, 20.0))
        * rng.lognormal(0.0, 0.35, n)
    )
    volume = np.maximum(np.round(volume, 4), 1e-4)
    return pd.DataFrame(
        {"timestamp": timestamps, "open": open_, "high": high, "low": low, "close": close, "volume": volume}
    )


def _round(x: np.ndarray, tick: float) -> np.ndarray:
    return np.maximum(np.round(x / tick) * tick, tick)


def write_demo_data(
    storage,
    symbol: str = "ETH/USDT",
    days: float = 28,
    seed: int = 7,
    start: int = DEFAULT_START,
):
    """Write :func:`demo_candles` into ``storage`` as 1-minute candles.

    Parameters
    ----------
    storage
        An :class:`ettlib.store.DuckDBStorage` opened for writing.
    symbol, days, seed, start
        As for :func:`demo_candles`.

    Returns
    -------
    IngestReport
        What ``storage.ingest`` reports.  Writing the same demo twice adds
        nothing the second time (ingest is idempotent).
    """
    frame = demo_candles(symbol=symbol, start=start, days=days, seed=seed, timeframe="1m")
    return storage.ingest(frame, symbol, "1m")
