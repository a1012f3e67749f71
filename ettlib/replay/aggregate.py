"""Higher-timeframe candles from base candles: batch (numpy) and incremental.

The rule (``docs/design.md``, Time), made precise
--------------------------------------------
Base candles fall into epoch-aligned buckets of the higher timeframe.  A
bucket's candle has the first base open, the highest high, the lowest low, the
last base close and the sum of the base volumes (summed in time order, so the
batch and incremental paths agree to the last bit).

* **On time.** When the base candle that closes the bucket (the one opening
  at ``bucket_end - base_ms``) is present, the higher candle completes with it:
  ``close_time = bucket_end = timestamp + timeframe_ms``.
* **Late (gapped bucket).** When that last base candle is missing, nobody can
  know the bucket is over until a base candle of a *later* bucket arrives.
  The higher candle then completes at that later base candle's close, and its
  ``close_time`` is that moment -- the time it became knowable -- not
  ``bucket_end``.  (``close_time`` is the event's knowable time everywhere in
  ettlib, so this keeps "no event before its knowable time" true.)  Such a
  candle is flagged ``on_time=False``; the replay schedules no inference step
  for it (a step at that moment would have to predict a candle that is
  already running).  At that same instant the late candle comes before the
  later bucket's own candle if that one also completes (older bar first).
* **Never completed.** The last bucket of the data, when its closing base
  candle is missing, has not completed (no later candle says it is over): it
  is not emitted.  Likewise live: it completes only when a later candle comes.
* A bucket cut at its start (replay starting mid-bucket, or missing first
  candles) is aggregated from the base candles it has.

Examples
--------
>>> import numpy as np
>>> ts = np.array([0, 1, 2, 3, 4, 6]) * 60_000   # 1m candles; bucket 5m..10m is open
>>> one = np.ones(6)
>>> agg = aggregate_candles(ts, one, one + 1, one - 0.5, one, one, "1m", "5m")
>>> agg.timestamp.tolist(), agg.close_time.tolist(), agg.volume.tolist(), agg.on_time.tolist()
([0], [300000], [5.0], [True])
>>> ts = np.array([0, 1, 2, 3, 6]) * 60_000            # minute 4 missing
>>> agg = aggregate_candles(ts, one[:5], one[:5], one[:5], one[:5], one[:5], "1m", "5m")
>>> agg.close_time.tolist(), agg.on_time.tolist()   # completes when minute 6 closes
([420000], [False])
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ettlib.errors import DataValidationError
from ettlib.timeframes import check_higher, timeframe_ms

__all__ = [
    "AggregatedCandles",
    "aggregate_candles",
    "aggregate_checked",
    "IncrementalAggregator",
    "check_base_timestamps",
]


@dataclass(frozen=True, slots=True)
class AggregatedCandles:
    """Completed candles of one timeframe as aligned arrays, in bar order.

    ``close_time`` is the knowable time (see the module docstring); it is
    non-decreasing.  ``on_time`` is False for late completions of gapped
    buckets.
    """

    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    close_time: np.ndarray
    on_time: np.ndarray

    def __len__(self) -> int:
        return len(self.timestamp)


def check_base_timestamps(timestamps: np.ndarray, base_timeframe: str) -> np.ndarray:
    """Return ``timestamps`` as int64 after checking order and grid alignment."""
    ts = np.asarray(timestamps)
    if ts.ndim != 1 or (len(ts) and not np.issubdtype(ts.dtype, np.integer)):
        raise DataValidationError("timestamps must be a 1-D integer array", column="timestamp")
    ts = ts.astype(np.int64, copy=False)
    base_ms = timeframe_ms(base_timeframe)
    bad = np.flatnonzero(np.diff(ts) <= 0)
    if len(bad):
        i = int(bad[0]) + 1
        raise DataValidationError(
            "timestamps must be strictly increasing", row=i + 1, column="timestamp", value=int(ts[i])
        )
    off = np.flatnonzero(ts % base_ms)
    if len(off):
        i = int(off[0])
        raise DataValidationError(
            f"timestamp is not aligned to the {base_timeframe} grid",
            row=i + 1, column="timestamp", value=int(ts[i]),
        )
    return ts


def aggregate_candles(
    timestamps, open, high, low, close, volume, base_timeframe: str, timeframe: str
) -> AggregatedCandles:
    """Aggregate base candles into completed ``timeframe`` candles (vectorized).

    Parameters
    ----------
    timestamps
        Base open times (``int64`` epoch ms), strictly increasing, aligned to
        ``base_timeframe``; gaps allowed.
    open, high, low, close, volume
        Base candle values, aligned with ``timestamps``.
    base_timeframe, timeframe
        ``timeframe`` must be a whole multiple of ``base_timeframe`` (equal is
        allowed and returns the base candles).

    Returns
    -------
    AggregatedCandles
        Every candle that has completed by the last base candle's close.
    """
    check_higher(base_timeframe, timeframe)
    ts = check_base_timestamps(timestamps, base_timeframe)
    o, h, l, c, v = (np.asarray(a, dtype=np.float64) for a in (open, high, low, close, volume))
    return aggregate_checked(ts, o, h, l, c, v, timeframe_ms(base_timeframe), timeframe_ms(timeframe))


def aggregate_checked(ts, o, h, l, c, v, base_ms: int, tf_ms: int) -> AggregatedCandles:
    """:func:`aggregate_candles` on inputs already checked (int64 sorted aligned, float64)."""
    if tf_ms == base_ms:
        return AggregatedCandles(ts, o, h, l, c, v, ts + base_ms, np.ones(len(ts), bool))
    if len(ts) == 0:
        e = np.empty(0)
        return AggregatedCandles(ts, e, e, e, e, e, ts, np.empty(0, bool))
    bucket = ts - ts % tf_ms
    starts = np.flatnonzero(np.r_[True, bucket[1:] != bucket[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    b = bucket[starts]
    on_time = ts[ends] + base_ms == b + tf_ms
    close_time = b + tf_ms
    late = ~on_time
    late[-1] = False
    close_time[late] = ts[starts[1:][late[:-1]]] + base_ms
    keep = np.ones(len(starts), bool)
    keep[-1] = on_time[-1]  # a gapped last bucket has not completed yet
    # Volumes summed sequentially (as the incremental path does): place each
    # base volume at its slot in the bucket and accumulate along the slots.
    ratio = tf_ms // base_ms
    if len(ts) == len(starts) * ratio and ts[0] == b[0]:  # no gaps: every slot filled
        slots = np.ascontiguousarray(v).reshape(len(starts), ratio)
    else:
        slots = np.zeros((len(starts), ratio))
        group = np.repeat(np.arange(len(starts)), ends - starts + 1)
        slots[group, (ts - bucket) // base_ms] = v
    vol = np.add.accumulate(slots, axis=1)[:, -1]
    return AggregatedCandles(
        timestamp=b[keep],
        open=o[starts][keep],
        high=np.maximum.reduceat(h, starts)[keep],
        low=np.minimum.reduceat(l, starts)[keep],
        close=c[ends][keep],
        volume=vol[keep],
        close_time=close_time[keep],
        on_time=on_time[keep],
    )


class IncrementalAggregator:
    """The same aggregation, one base candle at a time (the live path).

    :meth:`update` returns the candles completed by this base candle as tuples
    ``(timestamp, open, high, low, close, volume, close_time, on_time)``, oldest
    first (a late gapped bucket, then possibly the current one).

    Examples
    --------
    >>> agg = IncrementalAggregator("1m", "5m")
    >>> [agg.update(m * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0) for m in (0, 1, 2, 3)]
    [[], [], [], []]
    >>> agg.update(6 * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0)
    [(0, 1.0, 2.0, 0.5, 1.5, 4.0, 420000, False)]
    """

    __slots__ = ("base_timeframe", "timeframe", "_base_ms", "_tf_ms", "_last", "_bar")

    def __init__(self, base_timeframe: str, timeframe: str):
        check_higher(base_timeframe, timeframe)
        self.base_timeframe = base_timeframe
        self.timeframe = timeframe
        self._base_ms = timeframe_ms(base_timeframe)
        self._tf_ms = timeframe_ms(timeframe)
        self._last: int | None = None
        self._bar: list | None = None  # [bucket, open, high, low, close, volume]

    def update(self, timestamp: int, open: float, high: float, low: float, close: float,
               volume: float) -> list[tuple]:
        """Add one base candle (called when it closes); return completed candles."""
        ts = int(timestamp)
        if self._last is not None and ts <= self._last:
            raise DataValidationError(
                f"timestamps must be strictly increasing (previous {self._last})",
                column="timestamp", value=ts,
            )
        if ts % self._base_ms:
            raise DataValidationError(
                f"timestamp is not aligned to the {self.base_timeframe} grid",
                column="timestamp", value=ts,
            )
        self._last = ts
        now = ts + self._base_ms
        bucket = ts - ts % self._tf_ms
        done = []
        bar = self._bar
        if bar is not None and bar[0] != bucket:
            done.append((*bar, now, False))
            bar = None
        if bar is None:
            bar = [bucket, float(open), float(high), float(low), float(close), float(volume)]
        else:
            bar[2] = max(bar[2], float(high))
            bar[3] = min(bar[3], float(low))
            bar[4] = float(close)
            bar[5] += float(volume)
        if now == bucket + self._tf_ms:
            done.append((*bar, now, True))
            bar = None
        self._bar = bar
        return done
