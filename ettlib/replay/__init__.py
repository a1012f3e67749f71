"""The replay: candles from the store delivered as events, in the order they became known.

Modules: :mod:`~ettlib.replay.events` (the event types and their order),
:mod:`~ettlib.replay.aggregate` (higher timeframes from the base),
:mod:`~ettlib.replay.pivots` (Williams pivots), :mod:`~ettlib.replay.feed`
(what a feed produces), :mod:`~ettlib.replay.plan` (every event of a replay,
merged, and the deliver loop), :mod:`~ettlib.replay.engine`
(:class:`ReplayEngine`), :mod:`~ettlib.replay.cache` (the window cache),
:mod:`~ettlib.replay.provider` (the :class:`DataProvider` subscriptions) and
:mod:`~ettlib.replay.live` (one candle at a time, live).
"""

from ettlib.replay.engine import ReplayCursor, ReplayEngine
from ettlib.replay.feed import default_timeframes, resolve_base_timeframe
from ettlib.replay.provider import DataProvider

__all__ = ["DataProvider", "ReplayCursor", "ReplayEngine", "default_timeframes", "resolve_base_timeframe"]
