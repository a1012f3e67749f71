"""Larry Williams pivots detected one bar at a time, as a live feed or a replay's carry needs them.

:class:`StreamingPivotDetector` gives exactly what
:func:`ettlib.replay.pivots.detect_pivots` gives over the same bars (the
definitions, strength and order are :mod:`ettlib.replay.pivots`'), each
pivot as soon as its confirming bar arrives.
"""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from ettlib.errors import DataValidationError, LookAheadError
from ettlib.replay.events import PivotEvent, pivot_type_name
from ettlib.replay.pivots import check_pivot_params
from ettlib.timeframes import timeframe_ms, validate_timeframe

__all__ = ["StreamingPivotDetector"]


class _LevelState:
    """One level, one kind: the last two pivots and their running extremes."""

    __slots__ = ("prev_price", "cand", "gap_cand", "acc")

    def __init__(self):
        self.prev_price = None  # price of the Lk pivot before ``cand``
        self.cand = None  # (bar, timestamp, price) of the latest Lk pivot
        self.gap_cand = None  # extreme over [prev.bar, cand.bar]
        self.acc = None  # extreme over [latest L(k+1).bar, cand.bar]

    def to_list(self) -> list:
        return [self.prev_price, list(self.cand) if self.cand else None, self.gap_cand, self.acc]

    @classmethod
    def from_list(cls, items) -> _LevelState:
        st = cls()
        st.prev_price, cand, st.gap_cand, st.acc = items
        st.cand = tuple(cand) if cand is not None else None
        return st


class StreamingPivotDetector:
    """Detect pivots one bar at a time; same results as :func:`detect_pivots`.

    Keeps the last ``2n + 1`` bars and, per level and kind, the last two
    pivots with running extremes: O(n) work per bar plus O(1) per pivot
    level reached, i.e. amortized O(n + levels).  Picklable; :meth:`state`
    gives a JSON-compatible snapshot for a replay cursor.

    Parameters
    ----------
    symbol, timeframe
        Copied into the events.
    n, levels
        As for :func:`detect_pivots`.

    Examples
    --------
    >>> det = StreamingPivotDetector("ETH/USDT", "1m")
    >>> det.update(0, 1.0, 0.5), det.update(60_000, 2.0, 1.5)
    ([], [])
    >>> [(e.pivot_type, e.confirmed_at) for e in det.update(120_000, 1.5, 1.0)]
    [('L1H', 180000)]
    >>> clone = StreamingPivotDetector.from_state(det.state())
    >>> clone.state() == det.state()
    True
    """

    def __init__(self, symbol: str, timeframe: str, *, n: int = 1, levels: int = 3):
        check_pivot_params(n, levels)
        self.symbol = symbol
        self.timeframe = validate_timeframe(timeframe)
        self.n = int(n)
        self.levels = int(levels)
        self._tf_ms = timeframe_ms(timeframe)
        self._count = 0  # bars seen; index of the next bar
        self._last_ts = None
        self._last_close = None
        size = 2 * self.n + 1
        self._ts: deque = deque(maxlen=size)
        self._high: deque = deque(maxlen=size)
        self._low: deque = deque(maxlen=size)
        # Per kind (0 = lows, 1 = highs): extreme of the opposite side over
        # [latest L1 bar, current centre bar], and one _LevelState per level.
        self._run: list = [None, None]
        self._states = [[_LevelState() for _ in range(self.levels)] for _ in range(2)]

    # -- state ------------------------------------------------------------
    def state(self) -> dict:
        """A JSON-compatible snapshot; :meth:`from_state` resumes from it."""
        return {
            "symbol": self.symbol,
            "timeframe": self.timeframe,
            "n": self.n,
            "levels": self.levels,
            "count": self._count,
            "last_ts": self._last_ts,
            "last_close": self._last_close,
            "ts": list(self._ts),
            "high": list(self._high),
            "low": list(self._low),
            "run": list(self._run),
            "states": [[s.to_list() for s in kind] for kind in self._states],
        }

    @classmethod
    def from_state(cls, state: dict) -> StreamingPivotDetector:
        """A detector that continues exactly where ``state`` was taken."""
        det = cls(state["symbol"], state["timeframe"], n=state["n"], levels=state["levels"])
        det._count = state["count"]
        det._last_ts = state["last_ts"]
        det._last_close = state.get("last_close")
        det._ts.extend(state["ts"])
        det._high.extend(state["high"])
        det._low.extend(state["low"])
        det._run = list(state["run"])
        det._states = [[_LevelState.from_list(s) for s in kind] for kind in state["states"]]
        return det

    def __getstate__(self):
        return self.state()

    def __setstate__(self, state):
        other = StreamingPivotDetector.from_state(state)
        self.__dict__.update(other.__dict__)

    # -- detection --------------------------------------------------------
    def update(
        self, timestamp: int, high: float, low: float, close_time: int | None = None
    ) -> list[PivotEvent]:
        """Add the bar that opened at ``timestamp`` (called when it closes).

        Returns the pivots this bar's close confirms, in event order, all with
        ``confirmed_at == close_time``.  ``close_time`` defaults to
        ``timestamp + timeframe_ms``; pass a later time for a bar that
        completes late (see :func:`detect_pivots`).
        """
        row = self._count + 1
        if isinstance(timestamp, bool) or not isinstance(timestamp, (int, np.integer)):
            raise DataValidationError("timestamps must be integer epoch milliseconds",
                                      row=row, column="timestamp", value=timestamp)
        timestamp, high, low = int(timestamp), float(high), float(low)
        if self._last_ts is not None and timestamp <= self._last_ts:
            raise DataValidationError(
                f"timestamps must be strictly increasing (previous {self._last_ts})",
                row=row, column="timestamp", value=timestamp,
            )
        for column, value in (("high", high), ("low", low)):
            if not math.isfinite(value):
                raise DataValidationError(f"{column} must be finite", row=row,
                                          column=column, value=value)
        if not low > 0:
            raise DataValidationError("prices must be positive", row=row, column="low", value=low)
        if low > high:
            raise DataValidationError("low is above high", row=row, column="low", value=low)
        if close_time is None:
            close_time = timestamp + self._tf_ms
        else:
            close_time = int(close_time)
            if close_time < timestamp + self._tf_ms:
                raise LookAheadError(
                    f"close_time {close_time} precedes the close of bar {timestamp} "
                    f"({timestamp + self._tf_ms})"
                )
            if self._last_close is not None and close_time < self._last_close:
                raise DataValidationError(
                    f"close times must be non-decreasing (previous {self._last_close})",
                    row=row, column="close_time", value=close_time,
                )
        self._last_ts = timestamp
        self._last_close = close_time
        self._count += 1
        self._ts.append(timestamp)
        self._high.append(high)
        self._low.append(low)
        n = self.n
        if len(self._ts) < 2 * n + 1:
            return []
        found: list = [None] * (2 * self.levels)  # slot (level-1)*2 + (0 low, 1 high)
        confirmed_at = close_time
        bar = self._count - 1 - n
        for kind in (0, 1):
            x, ext_src = (self._low, self._high) if kind == 0 else (self._high, self._low)
            c = x[n]
            e = ext_src[n]
            run = self._run[kind]
            if run is not None:
                run = max(run, e) if kind == 0 else min(run, e)
            is_pivot = True
            for d in range(1, n + 1):
                b, a = x[n - d], x[n + d]
                if kind == 0:
                    if not (c <= b and c < a):
                        is_pivot = False
                        break
                elif not (c >= b and c > a):
                    is_pivot = False
                    break
            if is_pivot:
                span = max(ext_src) if kind == 0 else min(ext_src)
                strength = (span - c) / c if kind == 0 else (c - span) / c
                gap = run if self._states[kind][0].cand is not None else None
                self._run[kind] = e
                self._push(kind, 0, (bar, self._ts[n], c), gap, strength, confirmed_at, found)
            else:
                self._run[kind] = run
        return [ev for ev in found if ev is not None]

    def _push(self, kind, k, pivot, gap, strength, confirmed_at, found) -> None:
        """Record a new pivot of level ``k + 1``; promote its predecessor if due."""
        _bar, ts, price = pivot
        level = k + 1
        found[k * 2 + kind] = PivotEvent(
            self.symbol, self.timeframe, pivot_type_name(level, kind == 0),
            level, ts, price, strength, confirmed_at,
        )
        if level == self.levels:
            return
        st = self._states[kind][k]
        promote = None
        if st.cand is not None and st.prev_price is not None:
            y = st.cand[2]
            if kind == 0:
                ok = y <= st.prev_price and y < price
            else:
                ok = y >= st.prev_price and y > price
            if ok:
                span = max(st.gap_cand, gap) if kind == 0 else min(st.gap_cand, gap)
                y_strength = (span - y) / y if kind == 0 else (y - span) / y
                promote = (st.cand, st.acc, y_strength)
                st.acc = gap
            elif st.acc is not None:
                st.acc = max(st.acc, gap) if kind == 0 else min(st.acc, gap)
        st.prev_price = st.cand[2] if st.cand is not None else None
        st.cand = pivot
        st.gap_cand = gap
        if promote is not None:
            self._push(kind, k + 1, promote[0], promote[1], promote[2], confirmed_at, found)
