"""The events a replay (or a live feed) delivers.

Each event carries two times: when it happened (``timestamp``: the candle's,
or the pivot bar's, open time) and when it became knowable (``close_time`` /
``confirmed_at``).  Everything downstream is driven by the knowable time,
exposed uniformly as ``knowable_time``.

At one knowable instant ``T`` and one symbol, events come in this order
(``docs/design.md``): candle completions (shortest timeframe first), pivot
confirmations (timeframe, level, lows before highs, bar time), then the
inference steps scheduled at ``T``.  :func:`event_sort_key` encodes it.

Events are immutable named tuples: plain, cheap to build (a replay makes
millions), and compared field by field (``e._replace(...)`` gives a changed
copy).

Examples
--------
>>> c = CandleCompletionEvent("ETH/USDT", "1m", 0, 60_000, 10.0, 11.0, 9.5, 10.5, 3.0)
>>> c.knowable_time, c.ohlcv
(60000, (10.0, 11.0, 9.5, 10.5, 3.0))
>>> p = PivotEvent("ETH/USDT", "1m", "L2L", 2, 0, 9.5, 1.0, 180_000)
>>> p.is_low, p.implied_action
(True, 'BUY')
"""

from __future__ import annotations

from typing import NamedTuple

from ettlib.errors import ConfigError
from ettlib.timeframes import TIMEFRAMES

__all__ = [
    "MAX_PIVOT_LEVEL",
    "CandleCompletionEvent",
    "PivotEvent",
    "InferenceStepEvent",
    "Event",
    "EVENT_CLASSES",
    "event_sort_key",
    "event_key",
    "candle_key",
    "pivot_type_name",
    "pivot_types_up_to",
    "validate_pivot_levels",
]

#: Highest Larry Williams level ettlib detects.
MAX_PIVOT_LEVEL = 5


class CandleCompletionEvent(NamedTuple):
    """A candle of ``timeframe`` opened at ``timestamp`` has closed.

    ``close_time = timestamp + timeframe_ms(timeframe)``: the moment the candle
    became known.
    """

    symbol: str
    timeframe: str
    timestamp: int
    close_time: int
    open: float
    high: float
    low: float
    close: float
    volume: float

    @property
    def knowable_time(self) -> int:
        return self.close_time

    @property
    def ohlcv(self) -> tuple[float, float, float, float, float]:
        return (self.open, self.high, self.low, self.close, self.volume)


class PivotEvent(NamedTuple):
    """A Larry Williams pivot of ``level`` at bar ``timestamp`` was confirmed.

    ``pivot_type`` is ``L{level}H`` or ``L{level}L``; ``price`` is the bar's
    high (for highs) or low (for lows); ``confirmed_at`` is the close time of
    the bar that confirmed it.
    """

    symbol: str
    timeframe: str
    pivot_type: str
    level: int
    timestamp: int
    price: float
    strength: float
    confirmed_at: int

    @property
    def knowable_time(self) -> int:
        return self.confirmed_at

    @property
    def is_low(self) -> bool:
        return self.pivot_type.endswith("L")

    @property
    def implied_action(self) -> str:
        """The label a pivot implies: a low says BUY, a high says SELL."""
        return "BUY" if self.is_low else "SELL"


class InferenceStepEvent(NamedTuple):
    """An inference step at ``timestamp`` for ``symbol``/``timeframe``.

    Delivered after every candle and pivot event of the same instant, so a
    model learns from what just became known before it predicts again.
    ``timestamp`` is the prediction time; the last closed candle of
    ``timeframe`` opened at ``timestamp - timeframe_ms(timeframe)``.
    """

    symbol: str
    timeframe: str
    timestamp: int

    @property
    def knowable_time(self) -> int:
        return self.timestamp


Event = CandleCompletionEvent | PivotEvent | InferenceStepEvent


def pivot_type_name(level: int, is_low: bool) -> str:
    """``pivot_type_name(2, True) == 'L2L'``."""
    return f"L{level}{'L' if is_low else 'H'}"


def pivot_types_up_to(levels: int) -> list[str]:
    """All pivot type names up to ``levels``, lows first at each level.

    >>> pivot_types_up_to(2)
    ['L1L', 'L1H', 'L2L', 'L2H']
    """
    return [pivot_type_name(k, low) for k in range(1, levels + 1) for low in (True, False)]


def validate_pivot_levels(levels: object, name: str = "pivot_levels") -> int:
    """``levels`` if it is an int in ``1..MAX_PIVOT_LEVEL``, else a :class:`ConfigError`.

    >>> validate_pivot_levels(6)
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: pivot_levels must be an integer in 1..5, got 6
    """
    if isinstance(levels, bool) or not isinstance(levels, int) or not 1 <= levels <= MAX_PIVOT_LEVEL:
        raise ConfigError(f"{name} must be an integer in 1..{MAX_PIVOT_LEVEL}, got {levels!r}")
    return int(levels)


def event_key(event: Event) -> str:
    """The text that names an event in ``training_events.event_key``.

    ``candle:<symbol>:<timeframe>:<open time>`` or
    ``pivot:<symbol>:<timeframe>:<pivot type>:<bar time>``.

    >>> event_key(CandleCompletionEvent("X", "1m", 0, 60_000, 1, 1, 1, 1, 1))
    'candle:X:1m:0'
    >>> event_key(PivotEvent("X", "1m", "L2L", 2, 0, 9.5, 1.0, 180_000))
    'pivot:X:1m:L2L:0'
    """
    if isinstance(event, PivotEvent):
        return f"pivot:{event.symbol}:{event.timeframe}:{event.pivot_type}:{event.timestamp}"
    return candle_key(event.symbol, event.timeframe, event.timestamp)


def candle_key(symbol: str, timeframe: str, timestamp: int) -> str:
    """:func:`event_key` of the candle ``(symbol, timeframe, timestamp)``."""
    return f"candle:{symbol}:{timeframe}:{timestamp}"


def event_sort_key(event: Event) -> tuple:
    """Total order of events, as ``docs/design.md`` defines it.

    >>> a = PivotEvent("X", "1m", "L1H", 1, 0, 1.0, 1.0, 120_000)
    >>> b = CandleCompletionEvent("X", "5m", 0, 120_000, 1, 1, 1, 1, 1)
    >>> [type(e).__name__ for e in sorted([a, b], key=event_sort_key)]
    ['CandleCompletionEvent', 'PivotEvent']
    """
    t = event.knowable_time
    if isinstance(event, CandleCompletionEvent):
        return (t, event.symbol, 0, TIMEFRAMES[event.timeframe], 0, 0, event.timestamp)
    if isinstance(event, PivotEvent):
        return (
            t,
            event.symbol,
            1,
            TIMEFRAMES[event.timeframe],
            event.level,
            0 if event.is_low else 1,
            event.timestamp,
        )
    return (t, event.symbol, 2, TIMEFRAMES[event.timeframe], 0, 0, event.timestamp)


#: The event classes, by kind (0 candle, 1 pivot, 2 inference step): their order at one instant.
EVENT_CLASSES = (CandleCompletionEvent, PivotEvent, InferenceStepEvent)
