"""Technical indicators, computed vectorized and stored beside the candles.

Every indicator equals TA-Lib's function of the same name on the same input
(within about 1e-12 relative; the tests demand 1e-9), with TA-Lib's warm-up:
the first :data:`WARMUP` ``[name]`` rows of a series are NaN (NULL in
``ohlcv_data``).  TA-Lib itself is only a test dependency.

=============  ========================================  ======
column         TA-Lib call                               warm-up
=============  ========================================  ======
sma_10         ``SMA(close, 10)``                        9
sma_20         ``SMA(close, 20)``                        19
sma_50         ``SMA(close, 50)``                        49
ema_12         ``EMA(close, 12)``                        11
ema_26         ``EMA(close, 26)``                        25
rsi_14         ``RSI(close, 14)``                        14
macd           ``MACD(close, 12, 26, 9)[0]``             33
macd_signal    ``MACD(close, 12, 26, 9)[1]``             33
macd_hist      ``MACD(close, 12, 26, 9)[2]``             33
atr_14         ``ATR(high, low, close, 14)``             14
bb_upper       ``BBANDS(close, 20, 2, 2, SMA)[0]``       19
bb_middle      ``BBANDS(close, 20, 2, 2, SMA)[1]``       19
bb_lower       ``BBANDS(close, 20, 2, 2, SMA)[2]``       19
=============  ========================================  ======

TA-Lib conventions reproduced here (unstable periods at TA-Lib's default 0):

- EMA(n) is seeded with the SMA of the first ``n`` values, then
  ``ema = ema + k * (x - ema)`` with ``k = 2 / (n + 1)``.
- MACD's fast EMA is *not* ``EMA(close, 12)``: TA-Lib starts both of MACD's
  EMAs at the slow EMA's first row (25), so the fast one is seeded there with
  the SMA of closes 14..25.  The signal is EMA(9) of MACD seeded with the mean
  of its first 9 values, so all three MACD outputs start at row 33.
- RSI and ATR use Wilder smoothing (``avg = (avg * (n - 1) + x) / n``).  RSI is
  seeded at row 14 with the plain means of the first 14 gains and losses; it
  is 0 where both averages are exactly 0 (a series flat since its start).
  ATR is seeded at row 14 with the mean of true ranges 1..14 (row 0 has no
  previous close).
- Bollinger bands use the population standard deviation over 20 rows.

Recursive filters run as one compiled loop (:mod:`ettlib.compiled`), so a year
of 1-minute candles takes a few tens of milliseconds.

Incremental updates
-------------------
:func:`continue_indicators` computes the rows after a margin of earlier ones
-- how :func:`ettlib.store.indicator_table.update_indicators` with ``since``
recomputes only the stored rows at or after ``since``:

- EMA(12), EMA(26), MACD's signal and ATR continue from their values stored
  at the row before ``since`` (those columns *are* the filter states); MACD's
  fast EMA is ``macd + ema_26`` of that row.
- The Wilder averages of RSI are not stored (RSI is only their ratio), so RSI
  is recomputed from a margin of earlier rows.  A margin start ``s`` whose
  seed differs from the full history's state by at most the largest price
  change ``D`` leaves an error of ``D * (13/14) ** m`` after ``m`` rows, while
  the average gain is at least ``G_j * (13/14) ** k / 14`` where ``G_j`` is the
  last up move, ``k`` rows back (likewise losses).  The margin therefore
  reaches :data:`RSI_MARGIN` (1,000) rows *before the last up move and the
  last down move*: the relative error is then below
  ``14 * (13/14) ** 1000 * D / G_j ~ 1e-31 * D / G_j``, i.e. far below 1e-12
  for any real price series, including ones that end in a long flat run
  (during which TA-Lib's RSI keeps the ratio of the decaying averages).
  Where that margin would reach the first row, the whole history is used,
  which is exactly the full computation.
- SMAs and bands need only the 49 preceding rows, which the margin holds.

Examples
--------
>>> import numpy as np
>>> close = np.linspace(100.0, 120.0, 60)
>>> ind = compute_indicators(close, close + 1, close - 1, close, np.ones(60))
>>> int(np.isnan(ind["macd"]).sum()) == WARMUP["macd"] == 33
True
>>> round(float(ind["sma_10"][9]), 6) == round(float(close[:10].mean()), 6)
True
>>> float(ind["rsi_14"][-1])
100.0
"""

from __future__ import annotations

import numpy as np

from ettlib.compiled import kernel
from ettlib.errors import ConfigError

__all__ = ["WARMUP", "RSI_MARGIN", "STATE_COLUMNS", "compute_indicators", "continue_indicators",
           "margin_start"]

#: Rows at the start of a series for which each indicator is NaN / NULL.
WARMUP: dict[str, int] = {
    "sma_10": 9,
    "sma_20": 19,
    "sma_50": 49,
    "ema_12": 11,
    "ema_26": 25,
    "rsi_14": 14,
    "macd": 33,
    "macd_signal": 33,
    "macd_hist": 33,
    "atr_14": 14,
    "bb_upper": 19,
    "bb_middle": 19,
    "bb_lower": 19,
}

#: Rows of margin an incremental RSI update keeps before the last up move and
#: the last down move preceding ``since`` (see the module docstring).
RSI_MARGIN = 1000

_FAST, _SLOW, _SIGNAL = 12, 26, 9
_RSI_N = 14
_ATR_N = 14
_BB_N, _BB_DEV = 20, 2.0

#: Columns whose stored value at the row before ``since`` is a filter state.
STATE_COLUMNS = ("ema_12", "ema_26", "macd", "macd_signal", "atr_14")


# --------------------------------------------------------------------------
# Building blocks
# --------------------------------------------------------------------------


def _nan(n: int) -> np.ndarray:
    return np.full(n, np.nan)


def _smooth_rows(x, alpha, y0, out):
    """The recursion of :func:`_smooth`, one row at a time (compiled by :func:`~ettlib.compiled.kernel`)."""
    keep = 1.0 - alpha
    y = y0
    for i in range(x.shape[0]):
        y = alpha * x[i] + keep * y
        out[i] = y


def _smooth(x: np.ndarray, alpha: float, y0: float) -> np.ndarray:
    """``y[i] = y[i-1] + alpha * (x[i] - y[i-1])`` starting from ``y[-1] = y0``.

    As ``alpha * x[i] + (1 - alpha) * y[i-1]``: the first-order filter
    ``scipy.signal.lfilter([alpha], [1, alpha - 1], x)`` computes, in the
    same operations (one compiled loop, without importing ``scipy.signal``,
    which costs seconds at the start of a process).
    """
    out = np.empty(len(x))
    if len(x):
        kernel(_smooth_rows)(np.ascontiguousarray(x, dtype=np.float64), float(alpha), float(y0), out)
    return out


def _seeded(x: np.ndarray, n: int, alpha: float) -> np.ndarray:
    """A smoothing of ``x`` seeded at row ``n - 1`` with the mean of ``x[:n]``."""
    out = _nan(len(x))
    if len(x) >= n:
        seed = x[:n].mean()
        out[n - 1] = seed
        out[n:] = _smooth(x[n:], alpha, seed)
    return out


def _window_sums(x: np.ndarray, n: int) -> np.ndarray:
    """Sums of the ``n`` rows ending at each row >= ``n - 1`` (exact-ish, no cumsum drift)."""
    m = len(x) - n + 1
    acc = x[n - 1 :].copy()
    for lag in range(1, n):
        acc += x[n - 1 - lag : n - 1 - lag + m]
    return acc


def _sma(x: np.ndarray, n: int, sums_10: np.ndarray | None = None) -> np.ndarray:
    out = _nan(len(x))
    if len(x) < n:
        return out
    if sums_10 is not None and n % 10 == 0:
        # Sum of n rows = sum of n/10 consecutive 10-row sums (fewer passes).
        m = len(x) - n + 1
        acc = sums_10[n - 10 :].copy()
        for block in range(1, n // 10):
            acc += sums_10[n - 10 - 10 * block : n - 10 - 10 * block + m]
        out[n - 1 :] = acc / n
    else:
        out[n - 1 :] = _window_sums(x, n) / n
    return out


def _rolling_std(x: np.ndarray, mean: np.ndarray, n: int) -> np.ndarray:
    """Population standard deviation over ``n`` rows (two-pass, around ``mean``)."""
    out = _nan(len(x))
    if len(x) < n:
        return out
    m = len(x) - n + 1
    mu = mean[n - 1 :]
    acc = np.zeros(m)
    for lag in range(n):
        d = x[n - 1 - lag : n - 1 - lag + m] - mu
        acc += d * d
    out[n - 1 :] = np.sqrt(acc / n)
    return out


def _gains_losses(close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    change = np.diff(close)
    return np.maximum(change, 0.0), np.maximum(-change, 0.0)


def _rsi(close: np.ndarray, n: int = _RSI_N) -> np.ndarray:
    out = _nan(len(close))
    if len(close) <= n:
        return out
    gain, loss = _gains_losses(close)
    avg_gain = _seeded(gain, n, 1.0 / n)[n - 1 :]
    avg_loss = _seeded(loss, n, 1.0 / n)[n - 1 :]
    total = avg_gain + avg_loss
    with np.errstate(invalid="ignore", divide="ignore"):
        out[n:] = np.where(total == 0.0, 0.0, 100.0 * (avg_gain / total))
    return out


def _true_range(high: np.ndarray, low: np.ndarray, prev_close: np.ndarray) -> np.ndarray:
    return np.maximum(high, prev_close) - np.minimum(low, prev_close)


def _atr(high: np.ndarray, low: np.ndarray, close: np.ndarray, n: int = _ATR_N) -> np.ndarray:
    out = _nan(len(close))
    if len(close) <= n:
        return out
    tr = _true_range(high[1:], low[1:], close[:-1])
    out[1:] = _seeded(tr, n, 1.0 / n)
    return out


def _macd(close: np.ndarray, ema_slow: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    size = len(close)
    macd, signal = _nan(size), _nan(size)
    start = _SLOW - 1  # both EMAs start here, as in TA-Lib
    if size >= start + _SIGNAL:
        fast_seed = close[start - _FAST + 1 : start + 1].mean()
        fast = np.empty(size - start)
        fast[0] = fast_seed
        fast[1:] = _smooth(close[start + 1 :], 2.0 / (_FAST + 1), fast_seed)
        raw = fast - ema_slow[start:]
        signal[start:] = _seeded(raw, _SIGNAL, 2.0 / (_SIGNAL + 1))
        first = start + _SIGNAL - 1
        macd[first:] = raw[_SIGNAL - 1 :]
    return macd, signal, macd - signal


# --------------------------------------------------------------------------
# Public API
# --------------------------------------------------------------------------


def _as_float_arrays(*arrays) -> list[np.ndarray]:
    out = [np.ascontiguousarray(a, dtype=np.float64) for a in arrays]
    if len({len(a) for a in out}) > 1:
        raise ConfigError(
            "open, high, low, close and volume must have the same length; got "
            + ", ".join(str(len(a)) for a in out)
        )
    if any(a.ndim != 1 for a in out):
        raise ConfigError("indicator inputs must be 1-D arrays")
    return out


def compute_indicators(open, high, low, close, volume) -> dict[str, np.ndarray]:  # noqa: A002
    """Every column of :data:`~ettlib.store.schema.INDICATOR_COLUMNS` for one series.

    Parameters
    ----------
    open, high, low, close, volume
        Equal-length 1-D arrays of one symbol and timeframe, in time order.
        (``open`` and ``volume`` are accepted for a uniform signature; no
        current indicator uses them.)

    Returns
    -------
    dict[str, numpy.ndarray]
        ``float64`` arrays of the input's length, keyed by column name, NaN
        during each indicator's warm-up (:data:`WARMUP`).

    Examples
    --------
    >>> import numpy as np
    >>> close = np.array([1.0, 2.0, 3.0, 2.0, 1.0] * 4)
    >>> ind = compute_indicators(close, close + 0.5, close - 0.5, close, np.ones(20))
    >>> from ettlib.store.schema import INDICATOR_COLUMNS
    >>> sorted(ind) == sorted(INDICATOR_COLUMNS)
    True
    >>> float(ind["bb_middle"][19]), float(ind["sma_10"][-1])
    (1.8, 1.8)
    """
    _, high, low, close, _ = _as_float_arrays(open, high, low, close, volume)
    sums_10 = _window_sums(close, 10) if len(close) >= 10 else None
    sma_10 = _nan(len(close))
    if sums_10 is not None:
        sma_10[9:] = sums_10 / 10
    sma_20 = _sma(close, 20, sums_10)
    ema_12 = _seeded(close, _FAST, 2.0 / (_FAST + 1))
    ema_26 = _seeded(close, _SLOW, 2.0 / (_SLOW + 1))
    macd, macd_signal, macd_hist = _macd(close, ema_26)
    band = _BB_DEV * _rolling_std(close, sma_20, _BB_N)
    return {
        "sma_10": sma_10,
        "sma_20": sma_20,
        "sma_50": _sma(close, 50, sums_10),
        "ema_12": ema_12,
        "ema_26": ema_26,
        "rsi_14": _rsi(close),
        "macd": macd,
        "macd_signal": macd_signal,
        "macd_hist": macd_hist,
        "atr_14": _atr(high, low, close),
        "bb_upper": sma_20 + band,
        "bb_middle": sma_20.copy(),
        "bb_lower": sma_20 - band,
    }


def _continue_from_state(
    margin: dict[str, np.ndarray], new: dict[str, np.ndarray], ind: dict[str, np.ndarray]
) -> None:
    """Overwrite the recursive indicators of the new rows, continuing stored states."""
    state = {c: float(margin[c][-1]) for c in STATE_COLUMNS}
    close = new["close"]
    ema_12 = _smooth(close, 2.0 / (_FAST + 1), state["ema_12"])
    ema_26 = _smooth(close, 2.0 / (_SLOW + 1), state["ema_26"])
    fast = _smooth(close, 2.0 / (_FAST + 1), state["macd"] + state["ema_26"])
    macd = fast - ema_26
    signal = _smooth(macd, 2.0 / (_SIGNAL + 1), state["macd_signal"])
    prev_close = np.concatenate(([margin["close"][-1]], close[:-1]))
    tr = _true_range(new["high"], new["low"], prev_close)
    ind["ema_12"] = ema_12
    ind["ema_26"] = ema_26
    ind["macd"] = macd
    ind["macd_signal"] = signal
    ind["macd_hist"] = macd - signal
    ind["atr_14"] = _smooth(tr, 1.0 / _ATR_N, state["atr_14"])


def margin_start(close: np.ndarray) -> int | None:
    """First row of ``close`` that a later incremental update needs, or None if it is too short.

    The RSI margin (see the module docstring): ``RSI_MARGIN`` rows before the
    last up move and the last down move.  Rows before it can be dropped.
    """
    change = np.diff(close)
    ups = np.flatnonzero(change > 0)
    downs = np.flatnonzero(change < 0)
    if len(ups) == 0 or len(downs) == 0:
        return None
    start = min(ups[-1], downs[-1]) - RSI_MARGIN - _RSI_N
    return int(start) if start >= 0 else None


def continue_indicators(margin, new, *, whole: bool) -> dict[str, np.ndarray]:
    """The indicators of the rows ``new``, continuing the rows ``margin`` just before them.

    ``margin`` and ``new`` map ``open, high, low, close, volume`` (and, for
    ``margin``, the indicator columns it holds) to arrays.  With ``whole``
    (``margin`` is the series from its first row) the result is exactly a
    computation over all rows; otherwise SMAs, bands and RSI are computed
    over ``margin + new`` and the recursive filters continue the states in
    the margin's last row, which equals a full computation within rounding
    as long as ``margin`` starts at :func:`margin_start` or before (see the
    module docstring).

    >>> close = 100 + np.sin(np.arange(80) / 5)
    >>> rows = {"open": close, "high": close + 1, "low": close - 1, "close": close, "volume": np.ones(80)}
    >>> full = compute_indicators(*rows.values())
    >>> head = {c: a[:50] for c, a in rows.items()} | {c: a[:50] for c, a in full.items()}
    >>> tail = continue_indicators(head, {c: a[50:] for c, a in rows.items()}, whole=True)
    >>> bool(np.allclose(tail["macd"], full["macd"][50:]))
    True
    """
    both = {c: np.concatenate((margin[c], new[c])) for c in ("open", "high", "low", "close", "volume")}
    ind_all = compute_indicators(both["open"], both["high"], both["low"], both["close"], both["volume"])
    skip = len(margin["close"])
    ind = {c: a[skip:] for c, a in ind_all.items()}
    if not whole and skip:
        _continue_from_state(margin, new, ind)
    return ind
