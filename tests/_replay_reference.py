"""A naive, pure-Python reference of the replay's event stream, from docs/design.md.

Written independently of ettlib.replay.aggregate / ettlib.replay / ettlib.replay.pivots:
loops and lists, straight from the contract's sentences, slow on purpose.
Strength is not modelled (it is ettlib.replay.pivots' definition); compare events
with ``strip_strength``.  Also: a helper to write candles into DuckDB (the candles
themselves come from ``conftest.make_candles``).
"""

from __future__ import annotations

import pandas as pd

from ettlib.replay.events import (
    CandleCompletionEvent,
    InferenceStepEvent,
    PivotEvent,
    event_sort_key,
    pivot_type_name,
)
from ettlib.store.schema import ensure_schema
from ettlib.timeframes import TIMEFRAMES

MINUTE = 60_000


def write_candles(con, symbol: str, timeframe: str, frame: pd.DataFrame) -> None:
    """Insert ``frame`` rows into ``ohlcv_data`` (schema ensured)."""
    ensure_schema(con)
    rows = frame.assign(symbol=symbol, timeframe=timeframe)  # noqa: F841 (scanned by name)
    con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM rows")


def aggregate_reference(candles: list[tuple], base_ms: int, tf_ms: int) -> list[tuple]:
    """Completed bars ``(ts, o, h, l, c, v, knowable, on_time)`` of one timeframe."""
    out = []
    current = None  # [bucket, o, h, l, c, v]
    for ts, o, h, l, c, v in candles:
        now = ts + base_ms
        bucket = (ts // tf_ms) * tf_ms
        if current is not None and current[0] != bucket:
            # a later bucket's candle arrived: the gapped bucket is over now
            out.append((*current, now, False))
            current = None
        if current is None:
            current = [bucket, o, h, l, c, v]
        else:
            current[2] = h if h > current[2] else current[2]
            current[3] = l if l < current[3] else current[3]
            current[4] = c
            current[5] = current[5] + v
        if now == bucket + tf_ms:
            out.append((*current, now, True))
            current = None
    return out


def pivots_reference(bars: list[tuple], n: int, levels: int) -> list[tuple]:
    """Pivots ``(level, is_low, bar_ts, price, confirmed_at)`` of completed bars.

    ``bars`` rows are ``(ts, high, low, knowable)``; confirmation of an L1
    pivot at bar ``i`` is the knowable time of bar ``i + n``; an L(k+1) pivot
    is confirmed when the next Lk pivot of its kind is.
    """
    out = []
    for is_low in (True, False):
        x = [b[2] if is_low else b[1] for b in bars]
        current = []  # (bar index, price, confirmed_at)
        for i in range(n, len(bars) - n):
            before = all((x[i] <= x[j]) if is_low else (x[i] >= x[j]) for j in range(i - n, i))
            after = all((x[i] < x[j]) if is_low else (x[i] > x[j]) for j in range(i + 1, i + n + 1))
            if before and after:
                current.append((i, x[i], bars[i + n][3]))
        for level in range(1, levels + 1):
            out.extend((level, is_low, bars[i][0], p, conf) for i, p, conf in current)
            nxt = []
            for m in range(1, len(current) - 1):
                p, prev, after = current[m][1], current[m - 1][1], current[m + 1][1]
                ok = (p <= prev and p < after) if is_low else (p >= prev and p > after)
                if ok:
                    nxt.append((current[m][0], p, current[m + 1][2]))
            current = nxt
    return out


def reference_events(data: dict[str, pd.DataFrame], start: int, end: int, *, base="1m",
                     timeframes=("1m",), pivot_timeframes=None, n=1, levels=3,
                     step_streams=()) -> list:
    """Every event of a replay of ``data`` (symbol -> base candles), in contract order."""
    base_ms = TIMEFRAMES[base]
    pivot_timeframes = timeframes if pivot_timeframes is None else pivot_timeframes
    events = []
    for symbol, frame in data.items():
        rows = [tuple(r) for r in frame[["timestamp", "open", "high", "low", "close", "volume"]]
                .itertuples(index=False, name=None) if start <= r[0] <= end]
        rows = [(int(r[0]), *map(float, r[1:])) for r in rows]
        for tf in timeframes:
            bars = aggregate_reference(rows, base_ms, TIMEFRAMES[tf])
            for ts, o, h, l, c, v, known, on_time in bars:
                events.append(CandleCompletionEvent(symbol, tf, ts, known, o, h, l, c, v))
                if on_time and (symbol, tf) in step_streams:
                    events.append(InferenceStepEvent(symbol, tf, known))
            if tf in pivot_timeframes:
                series = [(b[0], b[2], b[3], b[6]) for b in bars]
                for level, is_low, ts, price, conf in pivots_reference(series, n, levels):
                    events.append(PivotEvent(symbol, tf, pivot_type_name(level, is_low), level,
                                             ts, price, 0.0, conf))
    return sorted(events, key=event_sort_key)


def strip_strength(events) -> list:
    """Events with pivot strength zeroed (for comparing with the reference)."""
    return [e._replace(strength=0.0) if isinstance(e, PivotEvent) else e
            for e in events]


class Recorder:
    """Subscribes one callback to every stream; records (clock time, event)."""

    def __init__(self, provider, symbols, timeframes, levels=3, clock=None):
        from ettlib.replay.events import pivot_types_up_to

        self.provider = provider
        self.seen: list = []
        self.times: list = []
        self.clock = clock
        for s in symbols:
            for tf in timeframes:
                provider.subscribe_candle_completion(self, s, tf)
                provider.subscribe_pivot_events(self, s, tf, pivot_types_up_to(levels))

    def __call__(self, event) -> None:
        self.seen.append(event)
        clock = self.clock or self.provider.clock
        self.times.append(clock.now())
