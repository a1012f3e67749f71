"""Larry Williams pivots: their definition, and batch (numpy) detection.

Definitions (``docs/design.md``, Pivots)
-----------------------------------
Bars are the rows of one series (one symbol, one timeframe), sorted by open
time; ``n`` bars means ``n`` rows, across gaps in time.

* **Level 1.** Bar ``i`` is an L1 high if ``high[i] >= high[j]`` for the ``n``
  bars before it and ``high[i] > high[j]`` for the ``n`` bars after it; an L1
  low if ``low[i] <= low[j]`` before and ``low[i] < low[j]`` after.  In a flat
  run of equal highs only the *last* bar of the run can be the pivot.  The
  first ``n`` and the last ``n`` bars lack neighbours and are never L1 pivots.
  An L1 pivot is confirmed at the close time of bar ``i + n``.
* **Level k+1.** Among the Lk pivots of one kind (highs among highs, lows
  among lows), in bar order, the pivot ``m`` is an L(k+1) high if its price is
  ``>=`` the previous Lk high's and ``>`` the next Lk high's (lows: ``<=`` and
  ``<``).  It is confirmed when that next Lk pivot is confirmed.  The first Lk
  pivot of a kind has no previous one, so it can never be L(k+1); the latest
  one has no next one *yet*, so it is not L(k+1) yet.
* A pivot of level 3 is also L2 and L1: each level is its own row (its own
  event), with its own confirmation time.  ``levels`` is 1..5.

Strength
--------
``strength`` is the pivot's *relative prominence over the span it beat*:
the bars from the neighbour it was compared with on the left to the one on
the right (inclusive).  At level 1 that span is bars ``i - n .. i + n``; at
level k+1 it runs from the previous to the next Lk pivot of the same kind.
With ``ext`` the lowest low of the span for a high, the highest high for a
low::

    high pivot:  strength = (price - ext) / price    # the drop it dominates
    low pivot:   strength = (ext - price) / price    # the rally it dominates

It is ``>= 0``; it never decreases from one level to the next for the same
bar (spans nest); and it only uses bars up to the confirming bar, so the
batch and streaming detectors compute it identically at confirmation time.
Prices must therefore be positive.

Order
-----
A :class:`PivotTable` (and each
:meth:`~ettlib.replay.pivot_stream.StreamingPivotDetector.update` result)
is in ``docs/design.md``'s event order: by ``confirmed_at``, then level (lower
first), then lows before highs, then bar time.  Within one series at most one
pivot per (confirming bar, level, kind) exists, so the last key never decides.

Examples
--------
>>> import numpy as np
>>> ts = np.arange(7) * 60_000
>>> high = np.array([1.0, 3.0, 2.0, 4.0, 2.0, 3.5, 1.0])
>>> low = high - 0.5
>>> table = detect_pivots(ts, high, low, "1m", n=1, levels=2)
>>> [(e.pivot_type, e.timestamp, e.price, e.confirmed_at) for e in table.events("X", "1m")]
... # doctest: +NORMALIZE_WHITESPACE
[('L1H', 60000, 3.0, 180000), ('L1L', 120000, 1.5, 240000),
 ('L1H', 180000, 4.0, 300000), ('L1L', 240000, 1.5, 360000),
 ('L1H', 300000, 3.5, 420000), ('L2H', 180000, 4.0, 420000)]
>>> from ettlib.replay.pivot_stream import StreamingPivotDetector
>>> det = StreamingPivotDetector("X", "1m", n=1, levels=2)
>>> streamed = [e for t, h, l in zip(ts, high, low) for e in det.update(t, h, l)]
>>> streamed == table.events("X", "1m")
True
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, fields

import numpy as np

from ettlib.errors import ConfigError, DataValidationError, LookAheadError
from ettlib.replay.events import MAX_PIVOT_LEVEL, PivotEvent, pivot_type_name, validate_pivot_levels
from ettlib.timeframes import timeframe_ms, validate_timeframe

__all__ = [
    "PivotTable",
    "detect_pivots",
    "check_pivot_params",
]


def check_pivot_params(n: int, levels: int) -> None:
    """Refuse bad Williams pivot parameters (a :class:`~ettlib.errors.ConfigError` naming them)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError(f"n (bars on each side) must be an integer >= 1, got {n!r}")
    validate_pivot_levels(int(levels) if isinstance(levels, np.integer) else levels, "levels")


# --------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PivotTable:
    """Confirmed pivots of one series as aligned arrays, in event order.

    Attributes
    ----------
    bar_index
        ``int64``: row of the pivot bar in the detected series.
    timestamp
        ``int64``: open time of the pivot bar.
    price
        ``float64``: the bar's high (highs) or low (lows).
    level
        ``int64``: 1..5.
    is_low
        ``bool``.
    strength
        ``float64``: see the module docstring.
    confirmed_index
        ``int64``: row of the bar whose close confirms the pivot.
    confirmed_at
        ``int64``: close time of that bar (the knowable time; its
        ``close_times`` entry where :func:`detect_pivots` was given one).
    """

    bar_index: np.ndarray
    timestamp: np.ndarray
    price: np.ndarray
    level: np.ndarray
    is_low: np.ndarray
    strength: np.ndarray
    confirmed_index: np.ndarray
    confirmed_at: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)

    def __getitem__(self, key) -> PivotTable:
        """Rows selected by a slice, a boolean mask or an index array.

        >>> t = PivotTable.empty()
        >>> len(t[:0])
        0
        """
        if isinstance(key, (int, np.integer)):
            key = slice(key, key + 1 or None)
        return PivotTable(*(getattr(self, f.name)[key] for f in fields(self)))

    @classmethod
    def empty(cls) -> PivotTable:
        """A table without rows."""
        i, f = np.empty(0, np.int64), np.empty(0, np.float64)
        return cls(i, i, f, i, np.empty(0, bool), f, i, i)

    @classmethod
    def concat(cls, tables: Iterable[PivotTable]) -> PivotTable:
        """Rows of several tables, re-sorted into event order.

        The sort is stable, so rows that tie on every key keep their input
        order.  ``bar_index`` keeps referring to each input's own series.
        """
        tables = list(tables)
        if not tables:
            return cls.empty()
        merged = cls(*(np.concatenate([getattr(t, f.name) for t in tables]) for f in fields(cls)))
        return merged[merged.event_order()]

    def event_order(self) -> np.ndarray:
        """Indices that sort the rows by (confirmed_at, level, lows first, timestamp)."""
        return np.lexsort((self.timestamp, ~self.is_low, self.level, self.confirmed_at))

    def knowable_by(self, t: int) -> PivotTable:
        """The rows with ``confirmed_at <= t`` (a prefix: rows are in event order)."""
        return self[: int(np.searchsorted(self.confirmed_at, t, side="right"))]

    @property
    def pivot_type(self) -> np.ndarray:
        """Type names (``'L1H'``, ``'L2L'``, ...) as a string array."""
        names = np.array(
            [[pivot_type_name(k, False), pivot_type_name(k, True)] for k in range(MAX_PIVOT_LEVEL + 1)]
        )
        return names[self.level, self.is_low.astype(np.int64)]

    def events(self, symbol: str, timeframe: str) -> list[PivotEvent]:
        """The rows as :class:`~ettlib.replay.events.PivotEvent` objects, in order."""
        validate_timeframe(timeframe)
        names = [[pivot_type_name(k, False), pivot_type_name(k, True)] for k in range(MAX_PIVOT_LEVEL + 1)]
        return [
            PivotEvent(symbol, timeframe, names[lv][lo], lv, ts, p, s, c)
            for lv, lo, ts, p, s, c in zip(
                self.level.tolist(),
                self.is_low.tolist(),
                self.timestamp.tolist(),
                self.price.tolist(),
                self.strength.tolist(),
                self.confirmed_at.tolist(),
            )
        ]

    def to_frame(self):
        """The table as a pandas DataFrame, with a ``pivot_type`` column."""
        import pandas as pd

        frame = pd.DataFrame({f.name: getattr(self, f.name) for f in fields(self)})
        frame["pivot_type"] = self.pivot_type
        return frame


# --------------------------------------------------------------------------
# Input validation (shared by both detectors)
# --------------------------------------------------------------------------


def _validate_arrays(timestamps, high, low) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ts = np.asarray(timestamps)
    hi = np.asarray(high, dtype=np.float64)
    lo = np.asarray(low, dtype=np.float64)
    if ts.ndim != 1 or hi.ndim != 1 or lo.ndim != 1:
        raise DataValidationError("timestamps, high and low must be 1-D arrays")
    if not (len(ts) == len(hi) == len(lo)):
        raise DataValidationError(
            f"timestamps, high and low differ in length ({len(ts)}, {len(hi)}, {len(lo)})"
        )
    if len(ts) and not np.issubdtype(ts.dtype, np.integer):
        raise DataValidationError(
            f"timestamps must be integer epoch milliseconds, got dtype {ts.dtype}",
            column="timestamp",
        )
    ts = ts.astype(np.int64, copy=False)
    _first_bad(np.diff(ts) <= 0, "timestamp", ts, offset=1,
               reason="timestamps must be strictly increasing")
    for name, arr in (("high", hi), ("low", lo)):
        _first_bad(~np.isfinite(arr), name, arr, reason=f"{name} must be finite")
    _first_bad(~(lo > 0), "low", lo, reason="prices must be positive")
    _first_bad(lo > hi, "low", lo, reason="low is above high")
    return ts, hi, lo


def _first_bad(bad: np.ndarray, column: str, values: np.ndarray, *, reason: str, offset: int = 0):
    if bad.any():
        row = int(np.argmax(bad)) + offset
        raise DataValidationError(reason, row=row + 1, column=column, value=values[row].item())


def _validate_close_times(close_times, ts: np.ndarray, tf_ms: int) -> np.ndarray:
    ct = np.asarray(close_times)
    if ct.shape != ts.shape:
        raise DataValidationError(
            f"close_times must have one entry per bar ({len(ts)}), got shape {ct.shape}"
        )
    if len(ct) and not np.issubdtype(ct.dtype, np.integer):
        raise DataValidationError(f"close_times must be integer epoch milliseconds, got {ct.dtype}")
    ct = ct.astype(np.int64, copy=False)
    early = ct < ts + tf_ms
    if early.any():
        row = int(np.argmax(early))
        raise LookAheadError(
            f"close_times row {row + 1} ({ct[row]}) precedes the close of its bar "
            f"({ts[row] + tf_ms})"
        )
    _first_bad(np.diff(ct) < 0, "close_times", ct, offset=1,
               reason="close_times must be non-decreasing")
    return ct


# --------------------------------------------------------------------------
# Batch detection
# --------------------------------------------------------------------------


def _level1(x: np.ndarray, ext_src: np.ndarray, n: int, is_low: bool):
    """L1 pivots of one kind; returns (bar, gap-to-previous, strength)."""
    size = len(x)
    if size < 2 * n + 1:
        e = np.empty(0, np.int64)
        return e, np.empty(0), np.empty(0)
    center = x[n : size - n]
    ok = np.ones(size - 2 * n, dtype=bool)
    for d in range(1, n + 1):
        before = x[n - d : size - n - d]
        after = x[n + d : size - n + d]
        if is_low:
            ok &= (center <= before) & (center < after)
        else:
            ok &= (center >= before) & (center > after)
    bars = np.flatnonzero(ok) + n
    # Extreme of the opposite side over bars i-n .. i+n.
    reduce = np.maximum if is_low else np.minimum
    span = ext_src[bars - n]
    for d in range(-n + 1, n + 1):
        span = reduce(span, ext_src[bars + d])
    strength = _strength(x[bars], span, is_low)
    return bars, _gaps(ext_src, bars, reduce), strength


def _gaps(ext_src: np.ndarray, bars: np.ndarray, reduce) -> np.ndarray:
    """``gap[j]`` = extreme of ``ext_src[bars[j-1] .. bars[j]]``; ``gap[0]`` NaN."""
    gap = np.full(len(bars), np.nan)
    if len(bars) > 1:
        seg = reduce.reduceat(ext_src, bars)[:-1]  # [bars[j], bars[j+1])
        gap[1:] = reduce(seg, ext_src[bars[1:]])
    return gap


def _strength(price, ext, is_low: bool):
    return (ext - price) / price if is_low else (price - ext) / price


def _next_level(bars, price, conf, gap, is_low: bool):
    """Promote Lk pivots of one kind to L(k+1); same tuple shape plus gaps."""
    if len(bars) < 3:
        e = np.empty(0, np.int64)
        return e, np.empty(0), e, np.empty(0), np.empty(0)
    mid, prev, nxt = price[1:-1], price[:-2], price[2:]
    ok = (mid <= prev) & (mid < nxt) if is_low else (mid >= prev) & (mid > nxt)
    m = np.flatnonzero(ok) + 1
    reduce = np.maximum if is_low else np.minimum
    ext = reduce(gap[m], gap[m + 1])
    strength = _strength(price[m], ext, is_low)
    up_gap = np.full(len(m), np.nan)
    if len(m) > 1:
        # gap between promoted m[j-1] and m[j] = extreme of gap[m[j-1]+1 .. m[j]]
        idx = np.append(m[:-1] + 1, m[-1] + 1)
        up_gap[1:] = reduce.reduceat(gap, idx)[:-1]
    return bars[m], price[m], conf[m + 1], up_gap, strength


def detect_pivots(
    timestamps, high, low, timeframe: str, *, n: int = 1, levels: int = 3, close_times=None
) -> PivotTable:
    """Detect the pivots of a whole series at once (vectorized).

    Parameters
    ----------
    timestamps
        Open times (``int64`` epoch ms), strictly increasing; gaps allowed.
    high, low
        Bar highs and lows (finite, positive, ``low <= high``).
    timeframe
        The series' timeframe: ``confirmed_at = timestamps[i + n] + timeframe_ms``.
    n
        Bars on each side at level 1 (``>= 1``).
    levels
        Highest level to detect, 1..5.
    close_times
        Optional knowable time of each bar (``int64``, non-decreasing, never
        before ``timestamps + timeframe_ms``), for higher-timeframe bars that
        complete late (a bucket with missing base candles completes when a
        later base candle arrives).  Then ``confirmed_at =
        close_times[confirmed_index]``.  Default: every bar's close time.

    Returns
    -------
    PivotTable
        Every pivot confirmed within the series, in event order.

    Raises
    ------
    ConfigError
        Bad ``n`` or ``levels``.
    DataValidationError
        Mismatched lengths, unsorted or duplicate timestamps, non-finite or
        non-positive prices, ``low > high`` (the row is 1-based).
    UnknownNameError
        Unknown timeframe.
    LookAheadError
        A ``close_times`` entry precedes its bar's close.

    Examples
    --------
    >>> t = detect_pivots([0, 60_000, 120_000], [1.0, 2.0, 1.0], [0.5, 0.5, 0.5], "1m")
    >>> t.pivot_type.tolist(), t.confirmed_at.tolist(), t.strength.tolist()
    (['L1H'], [180000], [0.75])
    """
    check_pivot_params(n, levels)
    tf_ms = timeframe_ms(timeframe)
    ts, hi, lo = _validate_arrays(timestamps, high, low)
    if close_times is not None:
        close_times = _validate_close_times(close_times, ts, tf_ms)

    parts = []
    for is_low, x, ext_src in ((True, lo, hi), (False, hi, lo)):
        bars, gap, strength = _level1(x, ext_src, n, is_low)
        price, conf = x[bars], bars + n
        for level in range(1, levels + 1):
            if level > 1:
                bars, price, conf, gap, strength = _next_level(bars, price, conf, gap, is_low)
            parts.append((bars, price, level, is_low, strength, conf))
            if len(bars) == 0:
                break
    bar_index = np.concatenate([p[0] for p in parts])
    conf_index = np.concatenate([p[5] for p in parts])
    level = np.concatenate([np.full(len(p[0]), p[2], np.int64) for p in parts])
    is_low = np.concatenate([np.full(len(p[0]), p[3], bool) for p in parts])
    # At most one pivot per (confirming bar, level, kind): this key is unique
    # and orders by confirmed_at, level, lows first.
    key = (conf_index * (MAX_PIVOT_LEVEL + 1) + level) * 2 + (~is_low)
    order = np.argsort(key, kind="stable")
    bar_index = bar_index[order]
    conf_index = conf_index[order]
    table = PivotTable(
        bar_index=bar_index,
        timestamp=ts[bar_index],
        price=np.concatenate([p[1] for p in parts])[order],
        level=level[order],
        is_low=is_low[order],
        strength=np.concatenate([p[4] for p in parts])[order],
        confirmed_index=conf_index,
        confirmed_at=(ts[conf_index] + tf_ms) if close_times is None else close_times[conf_index],
    )
    if close_times is not None:
        # Several bars may become knowable at one instant: full event order.
        table = table[table.event_order()]
    return table
