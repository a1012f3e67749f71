"""State carried from one chunk of a replay to the next, so that chunks give the whole range's events.

A long replay is planned chunk by chunk (:mod:`ettlib.replay.plan`); what a
chunk's events depend on from before it is carried here, and nothing else:

* :class:`AggregationCarry` -- the base candles of a higher timeframe's
  last, not yet completed bucket (a bucket missing its closing candle
  completes when a later candle arrives, possibly in the next chunk);
* :class:`PivotCarry` -- the bars of one series back to the pivots that can
  still decide later ones.

Both are fed the chunks in order and return exactly what the whole range
would give from the chunk's first knowable time on: the same candles (bit
for bit) and the same pivots, with the same confirmation times and
strengths (tested against the whole range on series cut at many places,
gapped buckets and unconfirmed pivots of every level included).

Why a pivot tail is enough
--------------------------
:func:`~ettlib.replay.pivots.detect_pivots` over a suffix of a series finds,
at every level, a *tail* of the whole series' list of that level: the
level-1 pivots with bars far enough inside the suffix, and at level ``k+1``
the promotions of every level-``k`` pivot but the suffix's first one (which
has no previous pivot there), with the same prices, confirmations and
strengths.  So the suffix is exact for every pivot confirmed after ``B`` (the
knowable time reached so far) as long as, at every level ``k`` below the top,
the first pivot of the suffix's list was decided by ``B`` -- that is, the
suffix holds the last two level-``k`` pivots of each kind confirmed by ``B``,
and, under each of them, the pivots of the lower levels it was promoted
over.  :class:`PivotCarry` keeps the bars from the earliest such pivot (and
the last ``2 n`` bars, whose level-1 status is not decided yet).  How far
back that is depends on the market, not on the range: a few hundred bars
in ordinary series, more in a long trend without top-level pivots.

Examples
--------
>>> import numpy as np
>>> ts = np.arange(10) * 60_000
>>> one = np.ones(10)
>>> carry = AggregationCarry(60_000, 300_000)
>>> [len(carry.feed(ts[:7], one[:7], one[:7], one[:7], one[:7], one[:7])),
...  len(carry.feed(ts[7:], one[7:], one[7:], one[7:], one[7:], one[7:]))]
[1, 1]
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from ettlib.replay.aggregate import AggregatedCandles, aggregate_checked
from ettlib.replay.pivots import PivotTable, detect_pivots

__all__ = ["AggregationCarry", "PivotCarry"]


def _cut(candles: AggregatedCandles, after: int | None) -> AggregatedCandles:
    """The candles that completed after knowable time ``after`` (all when ``None``)."""
    if after is None:
        return candles
    k = int(np.searchsorted(candles.close_time, after, "right"))
    return AggregatedCandles(*(getattr(candles, f.name)[k:] for f in fields(AggregatedCandles)))


class AggregationCarry:
    """One higher timeframe of one symbol, aggregated chunk by chunk from base candles.

    Parameters
    ----------
    base_ms, tf_ms
        The base timeframe and the higher one, in ms (``tf_ms`` a whole
        multiple of ``base_ms``).
    """

    def __init__(self, base_ms: int, tf_ms: int):
        self.base_ms, self.tf_ms = base_ms, tf_ms
        self._pending: tuple | None = None  # base columns of the last, open bucket
        self._known: int | None = None  # knowable time of the last base candle fed

    def feed(self, ts, o, h, l, c, v) -> AggregatedCandles:
        """The candles completed by the next base candles (checked, in time order)."""
        if self._pending is not None:
            ts, o, h, l, c, v = (np.concatenate((p, x)) for p, x in zip(self._pending, (ts, o, h, l, c, v)))
        done = _cut(aggregate_checked(ts, o, h, l, c, v, self.base_ms, self.tf_ms), self._known)
        if len(ts):
            keep = int(np.searchsorted(ts, ts[-1] - ts[-1] % self.tf_ms, "left"))
            self._pending = tuple(x[keep:] for x in (ts, o, h, l, c, v))
            self._known = int(ts[-1]) + self.base_ms
        return done


class PivotCarry:
    """The pivots of one series, detected chunk by chunk (see the module doc).

    Parameters
    ----------
    timeframe, n, levels
        As for :func:`~ettlib.replay.pivots.detect_pivots`.
    """

    def __init__(self, timeframe: str, n: int, levels: int):
        self.timeframe, self.n, self.levels = timeframe, n, levels
        empty_i, empty_f = np.empty(0, np.int64), np.empty(0, np.float64)
        self._bars = (empty_i, empty_f, empty_f, empty_i)  # ts, high, low, close time
        self._known: int | None = None

    def feed(self, ts, high, low, close_time) -> PivotTable:
        """The pivots confirmed by the next bars (in event order)."""
        ts, high, low, close_time = (np.concatenate((p, x)) for p, x in
                                     zip(self._bars, (ts, high, low, close_time)))
        if not len(ts):
            return PivotTable.empty()
        table = detect_pivots(ts, high, low, self.timeframe, n=self.n, levels=self.levels,
                              close_times=close_time)
        new = table if self._known is None else table[table.confirmed_at > self._known]
        keep = self._tail_start(table, len(ts))
        self._bars = tuple(x[keep:] for x in (ts, high, low, close_time))
        self._known = int(close_time[-1])
        return new

    def _tail_start(self, table: PivotTable, size: int) -> int:
        """First bar the next chunk's detection needs (see the module doc)."""
        start = max(0, size - 2 * self.n)
        for is_low in (True, False):
            mine = table[table.is_low == is_low]
            for level in range(1, self.levels):
                bar = self._needed_bar(mine, level)
                if bar is None:
                    return 0  # too few pivots to drop anything yet
                start = min(start, bar - self.n)
        return max(0, start)

    @staticmethod
    def _needed_bar(table: PivotTable, level: int) -> int | None:
        """Bar of the level-1 pivot under the second-to-last pivot of ``level``, or None."""
        at = np.sort(table.bar_index[table.level == level])
        if len(at) < 2:
            return None
        bar = int(at[-2])
        for lower in range(level - 1, 0, -1):
            below = np.sort(table.bar_index[table.level == lower])
            k = int(np.searchsorted(below, bar, "left")) - 1  # the one it was promoted over
            if k < 0:
                return None
            bar = int(below[k])
        return bar
