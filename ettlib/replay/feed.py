"""What a feed produces: the streams of a replay or a live feed, resolved and validated once.

A :class:`FeedConfig` is shared by :class:`~ettlib.replay.engine.ReplayEngine`
and :class:`~ettlib.replay.live.LiveFeed`, so a live feed and a replay of the
same candles deliver the same events.

Examples
--------
>>> config = resolve_feed_config(None, ["X"], base_timeframe="1m", timeframes=["5m"], step_timeframes="all")
>>> config.timeframes, config.step_streams
(('1m', '5m'), (('X', '1m'), ('X', '5m')))
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ettlib.errors import ConfigError
from ettlib.replay.events import validate_pivot_levels
from ettlib.timeframes import TIMEFRAMES, check_higher, sort_timeframes, validate_timeframe

__all__ = ["FeedConfig", "resolve_feed_config"]


@dataclass(frozen=True, slots=True)
class FeedConfig:
    """What a feed produces, for every symbol it serves.

    Attributes
    ----------
    base_timeframe
        Timeframe of the candles read (replay) or pushed (live).
    timeframes
        Candle streams produced, shortest first; includes the base.
    pivot_timeframes
        Timeframes whose pivots are detected (a subset of ``timeframes``).
    pivot_n, pivot_levels
        Williams pivot parameters.
    step_streams
        ``(symbol, timeframe)`` pairs that get an :class:`InferenceStepEvent`
        whenever a candle of theirs completes on time.
    """

    base_timeframe: str
    timeframes: tuple[str, ...]
    pivot_timeframes: tuple[str, ...]
    pivot_n: int
    pivot_levels: int
    step_streams: tuple[tuple[str, str], ...]


def resolve_feed_config(provider, symbols: Iterable[str], *, base_timeframe: str = "1m",
                        timeframes=None, pivot_timeframes=None, pivot_n: int = 1,
                        pivot_levels: int = 3, step_timeframes=None) -> FeedConfig:
    """Fill in the defaults and validate; shared by replay and live.

    * ``timeframes=None``: the timeframes ``provider`` has subscriptions for
      (among ``symbols``), plus the base.
    * ``pivot_timeframes=None``: every timeframe of the feed.
    * ``step_timeframes=None``: the streams with inference-step subscriptions
      when the feed is configured; ``"all"``: every stream of the feed (a
      replay then delivers a stream's steps whenever it has step
      subscribers, however late they subscribe); else timeframes (for every
      symbol) and/or ``(symbol, timeframe)`` pairs.
    """
    symbols = tuple(symbols)
    base = validate_timeframe(base_timeframe)
    if timeframes is None:
        wanted = {tf for s, tf in provider.subscribed_streams() if s in symbols} if provider else set()
    else:
        wanted = {timeframes} if isinstance(timeframes, str) else set(timeframes)
    tfs = tuple(sort_timeframes(wanted | {base}))
    for tf in tfs:
        check_higher(base, tf)
    if pivot_timeframes is None:
        ptfs = tfs
    else:
        ptfs = tuple(sort_timeframes([pivot_timeframes] if isinstance(pivot_timeframes, str)
                                     else pivot_timeframes))
        for tf in ptfs:
            if tf not in tfs:
                raise ConfigError(f"pivot timeframe {tf!r} is not one of the feed's timeframes {tfs}")
    if isinstance(pivot_n, bool) or not isinstance(pivot_n, int) or pivot_n < 1:
        raise ConfigError(f"pivot_n must be an integer >= 1, got {pivot_n!r}")
    validate_pivot_levels(pivot_levels)
    if step_timeframes is None:
        steps = {(s, tf) for s, tf in provider.subscribed_streams("step") if s in symbols} \
            if provider else set()
    elif step_timeframes == "all":
        steps = {(s, tf) for s in symbols for tf in tfs}
    else:
        items = [step_timeframes] if isinstance(step_timeframes, str) else list(step_timeframes)
        steps = set()
        for item in items:
            if isinstance(item, str):
                steps |= {(s, validate_timeframe(item)) for s in symbols}
            else:
                s, tf = item
                steps.add((s, validate_timeframe(tf)))
    for s, tf in steps:
        if tf not in tfs:
            raise ConfigError(
                f"inference steps on {s} {tf} need {tf!r} among the feed's timeframes {tfs}")
    step_streams = tuple(sorted(steps, key=lambda p: (p[0], TIMEFRAMES[p[1]])))
    return FeedConfig(base, tfs, ptfs, int(pivot_n), int(pivot_levels), step_streams)
