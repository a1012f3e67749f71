"""Hand-made features of one window, for learners that do not read sequences.

Computed from the window's *normalized* close (and high/low when present),
so every feature is in the frame's normalized units and comparable across
frames.  The window is never modified.

Features (all from rows up to the window's last, closed candle):

* ``ret_{h}``: close change over the last ``h`` rows (``h`` in ``horizons``);
* ``vol``: standard deviation of one-row close changes over the window;
* ``rsi``: Wilder-style RSI over the last 14 changes, mapped to [-1, 1];
* ``sma_gap_{k}``: last close minus the mean of the last ``k`` closes;
* ``range``: last candle's high minus low (when both columns exist).

A value that is not finite becomes 0.  All of them come from one compiled
pass over the window (:func:`ettlib.compiled.kernel`: a few microseconds a
window, against some 40 for the same arithmetic as a dozen small numpy
calls); :func:`reference_features` is that numpy version, kept as the
definition the tests compare with.

Examples
--------
>>> import numpy as np
>>> close = np.arange(30, dtype=float)
>>> f = window_features(close)
>>> f["ret_1"], f["ret_5"], f["vol"], f["rsi"], f["sma_gap_10"]
(1.0, 5.0, 0.0, 1.0, 4.5)
>>> f == reference_features(close)
True
"""

from __future__ import annotations

import math

import numpy as np

from ettlib.compiled import kernel

__all__ = ["window_features", "block_features", "reference_features", "feature_names", "FEATURE_HORIZONS",
           "SMA_LENGTHS", "RSI_CHANGES"]

#: Return horizons, in rows.
FEATURE_HORIZONS: tuple[int, ...] = (1, 3, 5, 15)
#: Moving-average lengths for the distance-to-SMA features.
SMA_LENGTHS: tuple[int, ...] = (10, 30)
#: Changes the RSI reads.
RSI_CHANGES = 14



def feature_names(with_range: bool) -> tuple[str, ...]:
    """The features' names, in the order :func:`window_features` computes them."""
    return (*(f"ret_{h}" for h in FEATURE_HORIZONS), "vol", "rsi",
            *(f"sma_gap_{k}" for k in SMA_LENGTHS), *(("range",) if with_range else ()))


_NAMES = {True: feature_names(True), False: feature_names(False)}


def _features(block, close, high, low, out):
    """All features into ``out`` from ``block[:, close]`` (and ``high``, ``low`` when >= 0).

    Plain Python, compiled by :func:`window_features`; reads the window in place (any
    float dtype and layout): no column is copied.
    """
    n = block.shape[0]
    last = block[n - 1, close] if n else 0.0
    j = 0
    for h in FEATURE_HORIZONS:
        out[j] = last - block[n - 1 - h, close] if n > h else 0.0
        j += 1
    m = n - 1  # one-row changes
    vol = 0.0
    if m > 1:
        mean = (block[n - 1, close] - block[0, close]) / m
        total = 0.0
        for i in range(1, n):
            d = block[i, close] - block[i - 1, close] - mean
            total += d * d
        vol = math.sqrt(total / m)
    out[j] = vol
    gains = losses = 0.0
    for i in range(max(1, n - RSI_CHANGES), n):
        d = block[i, close] - block[i - 1, close]
        if d > 0:
            gains += d
        elif d < 0:
            losses -= d
    out[j + 1] = (gains - losses) / (gains + losses) if gains + losses > 0 else 0.0
    j += 2
    for k in SMA_LENGTHS:
        count = min(k, n)
        total = 0.0
        for i in range(n - count, n):
            total += block[i, close]
        out[j] = last - total / count if n else 0.0
        j += 1
    if high >= 0 and low >= 0 and n:
        out[j] = block[n - 1, high] - block[n - 1, low]
    for i in range(len(out)):
        if not math.isfinite(out[i]):
            out[i] = 0.0


def block_features(block: np.ndarray, close: int, high: int | None = None,
                   low: int | None = None) -> dict[str, float]:
    """:func:`window_features` of the columns ``close`` (``high``, ``low``) of a window ``[n, m]``.

    The fast path: the window is read where it is.

    >>> block = np.column_stack([np.arange(30.0) + 1, np.arange(30.0) - 1, np.arange(30.0)])
    >>> block_features(block, 2, 0, 1) == window_features(block[:, 2], block[:, 0], block[:, 1])
    True
    """
    with_range = high is not None and low is not None and block.shape[0] > 0
    names = _NAMES[with_range]
    out = np.zeros(len(names))
    kernel(_features)(block, close, high if with_range else -1, low if with_range else -1, out)
    return dict(zip(names, out.tolist()))


def window_features(
    close: np.ndarray,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
) -> dict[str, float]:
    """Features of one window (see the module doc); NaN-free floats, in :func:`feature_names` order."""
    close = np.asarray(close, dtype=np.float64)
    if high is not None and low is not None and len(close):
        return block_features(np.column_stack([close, np.asarray(high, dtype=np.float64),
                                               np.asarray(low, dtype=np.float64)]), 0, 1, 2)
    return block_features(close.reshape(-1, 1), 0)


def _finite_np(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0


def reference_features(
    close: np.ndarray,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
) -> dict[str, float]:
    """The features as numpy computes them: the definition :func:`window_features` compiles."""
    close = np.asarray(close, dtype=float)
    n = len(close)
    last = close[-1] if n else 0.0
    features: dict[str, float] = {}
    for h in FEATURE_HORIZONS:
        features[f"ret_{h}"] = _finite_np(last - close[-1 - h]) if n > h else 0.0
    diffs = np.diff(close)
    features["vol"] = _finite_np(diffs.std()) if len(diffs) > 1 else 0.0
    recent = diffs[-RSI_CHANGES:]
    gains = recent[recent > 0].sum()
    losses = -recent[recent < 0].sum()
    total = gains + losses
    features["rsi"] = _finite_np((gains - losses) / total) if total > 0 else 0.0
    for k in SMA_LENGTHS:
        features[f"sma_gap_{k}"] = _finite_np(last - close[-k:].mean()) if n else 0.0
    if high is not None and low is not None and n:
        features["range"] = _finite_np(high[-1] - low[-1])
    return features
