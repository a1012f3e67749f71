"""Figure helpers shared by the plots: a figure outside pyplot, UTC date axes, a rolling mean."""

from __future__ import annotations

from datetime import timezone

import matplotlib.dates as mdates
import numpy as np
from matplotlib.figure import Figure

from ettlib.errors import ConfigError

__all__ = ["new_figure", "figure_and_axes", "ms_to_datenum", "utc_date_axis", "rolling_mean"]


def new_figure(figsize: tuple[float, float] = (10.0, 4.5), dpi: float = 100) -> tuple[Figure, object]:
    """A fresh Figure with one Axes, outside pyplot (nothing to close)."""
    fig = Figure(figsize=figsize, dpi=dpi, layout="constrained")
    return fig, fig.add_subplot()


def figure_and_axes(ax, figsize):
    """``ax``'s figure and ``ax``, or a new figure of ``figsize`` and its axes when ``ax`` is None."""
    if ax is None:
        return new_figure(figsize)
    return ax.figure, ax


def ms_to_datenum(ms) -> np.ndarray:
    """Epoch milliseconds (int or array) to matplotlib date numbers (UTC).

    >>> float(ms_to_datenum(86_400_000) - ms_to_datenum(0))
    1.0
    """
    ms = np.asarray(ms, dtype=np.int64)
    return mdates.date2num(ms.astype("datetime64[ms]"))


def utc_date_axis(ax) -> None:
    """Date ticks in UTC on the x axis."""
    locator = mdates.AutoDateLocator(tz=timezone.utc)
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(mdates.ConciseDateFormatter(locator, tz=timezone.utc))
    ax.set_xlabel("time (UTC)")


def rolling_mean(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` items, ignoring NaN, from the first item.

    Item ``i`` is the mean of the non-NaN values among items
    ``max(0, i - window + 1) .. i`` (NaN where there are none): pandas'
    ``rolling(window, min_periods=1).mean()``.

    >>> rolling_mean([1, 2, 3, 4], 2).tolist()
    [1.0, 1.5, 2.5, 3.5]
    """
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise ConfigError(f"window must be a positive integer, got {window!r}")
    x = np.asarray(values, dtype=np.float64).ravel()
    finite = ~np.isnan(x)
    sums = np.concatenate(([0.0], np.cumsum(np.where(finite, x, 0.0))))
    counts = np.concatenate(([0], np.cumsum(finite)))
    hi = np.arange(1, len(x) + 1)
    lo = np.maximum(hi - window, 0)
    n = counts[hi] - counts[lo]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(n > 0, (sums[hi] - sums[lo]) / np.maximum(n, 1), np.nan)
