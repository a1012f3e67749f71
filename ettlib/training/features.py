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

Examples
--------
>>> import numpy as np
>>> close = np.arange(30, dtype=float)
>>> f = window_features(close)
>>> f["ret_1"], f["ret_5"], f["vol"], f["rsi"], f["sma_gap_10"]
(1.0, 5.0, 0.0, 1.0, 4.5)
"""

from __future__ import annotations

import numpy as np

__all__ = ["window_features", "FEATURE_HORIZONS", "SMA_LENGTHS"]

#: Return horizons, in rows.
FEATURE_HORIZONS: tuple[int, ...] = (1, 3, 5, 15)
#: Moving-average lengths for the distance-to-SMA features.
SMA_LENGTHS: tuple[int, ...] = (10, 30)


def _finite(x: float) -> float:
    return float(x) if np.isfinite(x) else 0.0


def window_features(
    close: np.ndarray,
    high: np.ndarray | None = None,
    low: np.ndarray | None = None,
) -> dict[str, float]:
    """Features of one window (see the module doc); NaN-free floats."""
    close = np.asarray(close, dtype=float)
    n = len(close)
    last = close[-1] if n else 0.0
    features: dict[str, float] = {}
    for h in FEATURE_HORIZONS:
        features[f"ret_{h}"] = _finite(last - close[-1 - h]) if n > h else 0.0
    diffs = np.diff(close)
    features["vol"] = _finite(diffs.std()) if len(diffs) > 1 else 0.0
    recent = diffs[-14:]
    gains = recent[recent > 0].sum()
    losses = -recent[recent < 0].sum()
    total = gains + losses
    features["rsi"] = _finite((gains - losses) / total) if total > 0 else 0.0
    for k in SMA_LENGTHS:
        features[f"sma_gap_{k}"] = _finite(last - close[-k:].mean()) if n else 0.0
    if high is not None and low is not None and n:
        features["range"] = _finite(high[-1] - low[-1])
    return features
