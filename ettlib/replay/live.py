"""The live path: base candles pushed one at a time give the replay's events.

A :class:`LiveFeed` per symbol aggregates higher timeframes incrementally
(:class:`~ettlib.replay.aggregate.IncrementalAggregator`), detects pivots with
:class:`~ettlib.replay.pivot_stream.StreamingPivotDetector`, schedules inference steps and
delivers everything through the :class:`~ettlib.replay.provider.DataProvider`,
in ``docs/design.md``'s order.  :class:`FeedConfig` (shared with
:class:`~ettlib.replay.ReplayEngine`) fixes what is produced, so a live feed
and a replay of the same candles deliver the same events (tested).

Pivot confirmation times are knowable times: a pivot confirmed by a higher
candle that completed late (a gapped bucket, see :mod:`ettlib.replay.aggregate`) is
confirmed at that candle's ``close_time``.

Examples
--------
>>> from ettlib.replay.provider import DataProvider
>>> provider = DataProvider()
>>> seen = []
>>> _ = provider.subscribe_candle_completion(seen.append, "ETH/USDT", "5m")
>>> for m in range(5):
...     _ = provider.push_candle("ETH/USDT", "1m", m * 60_000, 1.0, 2.0, 0.5, 1.5, 1.0)
>>> [(e.timeframe, e.timestamp, e.close_time, e.volume) for e in seen]
[('5m', 0, 300000, 5.0)]
>>> provider.clock.now()
300000
"""

from __future__ import annotations

import math

from ettlib.clock import ReplayClock
from ettlib.errors import ConfigError, DataValidationError
from ettlib.replay.aggregate import IncrementalAggregator
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent
from ettlib.replay.feed import FeedConfig, resolve_feed_config
from ettlib.symbols import validate_symbol
from ettlib.timeframes import TIMEFRAMES

__all__ = ["LiveFeed"]


def _pivot_key(event) -> tuple:
    return (TIMEFRAMES[event.timeframe], event.level, not event.is_low, event.timestamp)


class LiveFeed:
    """One symbol's live feed into a provider (see the module docstring).

    Created by :meth:`DataProvider.start_live`; fed by
    :meth:`DataProvider.push_candle`.  ``clock`` (a
    :class:`~ettlib.clock.ReplayClock`, shared by the feeds of one provider)
    is moved to each candle's close; the provider shows its view.
    """

    def __init__(self, provider, symbol: str, *, base_timeframe: str = "1m", timeframes=None,
                 pivot_timeframes=None, pivot_n: int = 1, pivot_levels: int = 3,
                 step_timeframes=None, config: FeedConfig | None = None,
                 clock: ReplayClock | None = None):
        from ettlib.replay.pivot_stream import StreamingPivotDetector

        validate_symbol(symbol)
        if config is None:
            config = resolve_feed_config(
                provider, [symbol], base_timeframe=base_timeframe, timeframes=timeframes,
                pivot_timeframes=pivot_timeframes, pivot_n=pivot_n, pivot_levels=pivot_levels,
                step_timeframes=step_timeframes)
        self.provider = provider
        self.symbol = symbol
        self.config = config
        self._base_ms = TIMEFRAMES[config.base_timeframe]
        self._aggregators = [
            (tf, None if tf == config.base_timeframe else IncrementalAggregator(config.base_timeframe, tf))
            for tf in config.timeframes
        ]
        self._detectors = {
            tf: StreamingPivotDetector(symbol, tf, n=config.pivot_n, levels=config.pivot_levels)
            for tf in config.pivot_timeframes
        }
        self._steps = tuple(tf for s, tf in config.step_streams if s == symbol)
        self._last: int | None = None
        self._clock = ReplayClock() if clock is None else clock

    def push(self, timeframe: str, timestamp: int, open: float, high: float, low: float,
             close: float, volume: float) -> list:
        """Add one closed base candle; deliver and return the events at its close."""
        if timeframe != self.config.base_timeframe:
            raise ConfigError(
                f"the live feed of {self.symbol} takes {self.config.base_timeframe!r} candles, "
                f"got {timeframe!r}")
        ts = int(timestamp)
        now = ts + self._base_ms
        o, h, l, c, v = float(open), float(high), float(low), float(close), float(volume)
        self._check(ts, o, h, l, c, v)  # before any state changes
        symbol = self.symbol
        candles, pivots, steps = [], [], []
        for tf, agg in self._aggregators:
            done = [(ts, o, h, l, c, v, now, True)] if agg is None else agg.update(ts, o, h, l, c, v)
            on_time = False
            for bar_ts, bo, bh, bl, bc, bv, ct, ok in done:
                candles.append(CandleCompletionEvent(symbol, tf, bar_ts, ct, bo, bh, bl, bc, bv))
                on_time = on_time or ok
                det = self._detectors.get(tf)
                if det is not None:
                    for p in det.update(bar_ts, bh, bl):
                        pivots.append(p if p.confirmed_at == ct else p._replace(confirmed_at=ct))
            if on_time and tf in self._steps:
                steps.append(InferenceStepEvent(symbol, tf, now))
        pivots.sort(key=_pivot_key)
        events = candles + pivots + steps
        clock = self._clock
        if clock.time is None or now > clock.time:
            clock.time = now
        publish = self.provider.publish
        for event in events:
            publish(event)
        return events

    def _check(self, ts: int, o: float, h: float, l: float, c: float, v: float) -> None:
        source = f"live {self.symbol} {self.config.base_timeframe}"
        if ts % self._base_ms:
            raise DataValidationError(
                f"timestamp is not aligned to the {self.config.base_timeframe} grid",
                source=source, column="timestamp", value=ts)
        if self._last is not None and ts <= self._last:
            raise DataValidationError(
                f"timestamps must be strictly increasing (previous {self._last})",
                source=source, column="timestamp", value=ts)
        for name, x in (("open", o), ("high", h), ("low", l), ("close", c), ("volume", v)):
            if not math.isfinite(x):
                raise DataValidationError(f"{name} must be finite", source=source,
                                          column=name, value=x)
        if self._detectors and not l > 0:
            raise DataValidationError("prices must be positive", source=source,
                                      column="low", value=l)
        if l > h:
            raise DataValidationError("low is above high", source=source, column="low", value=l)
        self._last = ts
