"""A replay planned span by span: bounded memory, the whole range's events.

:class:`SpanPlanner` reads the base candles of a replay from the store one
time span at a time (``span_candles`` base candles), feeds them to the
window cache and to the state carried from span to span
(:mod:`ettlib.replay.carry`), and turns each span into a
:class:`~ettlib.replay.plan.Plan`: the events whose knowable time falls in
it, in the contract's order.  The spans together give exactly the events of
planning the whole range at once (tested on ranges whose span boundaries
cut higher-timeframe buckets, gaps and unconfirmed pivots of every level),
and what is held at any time -- one span of candles, the cache's recent
rows, the carried state -- does not grow with the range.

What is replayed (``docs/design.md``): the base candles with open time in
``[start, end]``; higher candles and pivots come from those only (a bucket
cut by ``start`` holds the candles it has).  The window cache also holds the
candles of ``warmup`` candles of the longest timeframe before ``start``, and
the replay's own candles of every higher timeframe aggregated from all of
them, their indicators computed continuously (:meth:`~ettlib.replay.cache.CandleCache.extend_aggregated`).
"""

from __future__ import annotations

from dataclasses import fields

import numpy as np

from ettlib.replay.aggregate import AggregatedCandles, check_base_timestamps
from ettlib.replay.carry import AggregationCarry, PivotCarry
from ettlib.replay.feed import FeedConfig
from ettlib.replay.plan import Plan, build_plan
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.timeframes import TIMEFRAMES

__all__ = ["SpanPlanner", "DEFAULT_SPAN_CANDLES"]

#: Base candles per planned span (about 23 days of 1m candles).
DEFAULT_SPAN_CANDLES = 32_768


def _since(candles: AggregatedCandles, start: int) -> AggregatedCandles:
    """The candles opening at or after ``start``."""
    k = int(np.searchsorted(candles.timestamp, start, "left"))
    return AggregatedCandles(*(getattr(candles, f.name)[k:] for f in fields(AggregatedCandles)))


def _first_stored(storage, symbols, timeframe: str, since: int) -> int:
    """The open time of the first stored candle at or after ``since`` (``since`` when unknown)."""
    con = getattr(storage, "con", storage)
    if not hasattr(con, "execute"):
        return since
    (first,) = con.execute(
        "SELECT min(timestamp) FROM ohlcv_data WHERE list_contains(?::VARCHAR[], symbol)"
        " AND timeframe = ? AND timestamp >= ?", [list(symbols), timeframe, since]).fetchone()
    return since if first is None else max(since, int(first))


class _SymbolState:
    """What one symbol carries from span to span."""

    def __init__(self, config: FeedConfig, start: int):
        base_ms = TIMEFRAMES[config.base_timeframe]
        higher = config.timeframes[1:]
        #: aggregated from every loaded candle, warm-up included: the cache's candles
        self.cached = {tf: AggregationCarry(base_ms, TIMEFRAMES[tf]) for tf in higher}
        #: aggregated from ``start`` on, where ``start`` cuts a bucket (else the cache's serve)
        self.events = {tf: AggregationCarry(base_ms, TIMEFRAMES[tf]) for tf in higher
                       if start % TIMEFRAMES[tf]}
        self.pivots = {tf: PivotCarry(tf, config.pivot_n, config.pivot_levels)
                       for tf in config.pivot_timeframes}


class SpanPlanner:
    """Plans a replay span by span (see the module docstring).

    Parameters
    ----------
    storage
        Where the base candles are read (``read_candle_rows`` of the cache's storage).
    cache
        The :class:`~ettlib.replay.cache.CandleCache` to fill as spans are planned.
    symbols, start, end, config
        What is replayed.
    warmup
        Candles of the longest timeframe held before ``start``, and candles
        of each timeframe the cache keeps behind the replay's time.
    span_candles
        Base candles per span.
    """

    def __init__(self, cache, symbols: tuple[str, ...], start: int, end: int, config: FeedConfig, *,
                 warmup: int, span_candles: int = DEFAULT_SPAN_CANDLES):
        self.cache, self.symbols, self.start, self.end, self.config = cache, symbols, start, end, config
        self.warmup = warmup
        self.base_ms = TIMEFRAMES[config.base_timeframe]
        longest = max(TIMEFRAMES[tf] for tf in config.timeframes)
        load_start = start - warmup * longest
        self._next = load_start - load_start % longest  # whole buckets of every timeframe
        self.span_ms = span_candles * self.base_ms
        # the first span reaches from there to the first stored candle, and a span beyond; a
        # range that one span from here covers needs no query (its first span ends at ``end``)
        self._first = self._next if self.end - self._next < self.span_ms else None
        self._state = {s: _SymbolState(config, start) for s in symbols}

    @property
    def done(self) -> bool:
        """True once every span was planned."""
        return self._next > self.end

    def next_plan(self, now: int | None = None) -> Plan | None:
        """The events of the next span that has any (``None`` after the last).

        ``now`` is the replay's time: the cache keeps ``warmup`` candles of
        each timeframe behind it (and behind the span), no more.
        """
        while not self.done:
            lo = self._next
            if self._first is None:
                self._first = _first_stored(self.cache.storage, self.symbols, self.config.base_timeframe, lo)
            hi = min(self.end, max(lo, self._first) + self.span_ms - 1)
            self._next = hi + 1
            behind = lo if now is None else min(lo, now)
            plan = build_plan([self._span(symbol, lo, hi, behind) for symbol in self.symbols], self.symbols,
                              self.config)
            if len(plan.time):
                return plan
        return None

    def _span(self, symbol: str, lo: int, hi: int, behind: int) -> tuple[dict, dict]:
        """One symbol's candles (per timeframe) and pivots (per pivot timeframe) of ``[lo, hi]``."""
        config, state, cache = self.config, self._state[symbol], self.cache
        base = cache.extend(symbol, config.base_timeframe, lo, hi, keep_from=behind - self.warmup * self.base_ms)
        ts = check_base_timestamps(base.timestamps, config.base_timeframe)
        columns = [np.ascontiguousarray(base.column(c)) for c in OHLCV_COLUMNS]
        first = int(np.searchsorted(ts, self.start, "left"))
        in_range = [x[first:] for x in (ts, *columns)]
        candles = {config.base_timeframe: AggregatedCandles(
            in_range[0], *in_range[1:], in_range[0] + self.base_ms, np.ones(len(in_range[0]), bool))}
        for tf in config.timeframes[1:]:
            aggregated = state.cached[tf].feed(ts, *columns)
            cache.extend_aggregated(symbol, tf, lo, hi, aggregated,
                                    keep_from=behind - self.warmup * TIMEFRAMES[tf])
            carry = state.events.get(tf)
            candles[tf] = _since(aggregated, self.start) if carry is None else carry.feed(*in_range)
        pivots = {tf: state.pivots[tf].feed(c.timestamp, c.high, c.low, c.close_time)
                  for tf, c in candles.items() if tf in state.pivots}
        return candles, pivots
