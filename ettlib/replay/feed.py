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

import warnings
from collections.abc import Iterable
from dataclasses import dataclass

from ettlib.errors import ConfigError
from ettlib.replay.events import validate_pivot_levels
from ettlib.timeframes import TIMEFRAMES, check_higher, sort_timeframes, validate_timeframe

__all__ = ["FeedConfig", "resolve_feed_config", "resolve_base_timeframe", "default_timeframes",
           "warn_unplanned"]


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


def resolve_base_timeframe(storage, symbols, base_timeframe: str | None = None,
                           timeframes=()) -> str:
    """The base timeframe of a replay of ``symbols``, checked against what is stored.

    ``base_timeframe=None`` picks the finest timeframe stored for every
    symbol (an hourly store replays from 1h, a minute store from 1m).  A
    base with no stored candles for some symbol, or a timeframe of
    ``timeframes`` that is not a whole multiple of the base, is a
    :class:`~ettlib.errors.ConfigError` naming what is stored.

    >>> from ettlib.store import DuckDBStorage
    >>> import pandas as pd
    >>> store = DuckDBStorage(":memory:")
    >>> hourly = pd.DataFrame({"timestamp": [0, 3_600_000], "open": 1.0, "high": 1.0, "low": 1.0,
    ...                        "close": 1.0, "volume": 1.0})
    >>> _ = store.ingest(hourly, "EURUSD", "1h")
    >>> resolve_base_timeframe(store, ["EURUSD"])
    '1h'
    >>> resolve_base_timeframe(store, ["EURUSD"], "1m")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: no 1m candles of EURUSD in :memory: (stored: EURUSD: 1h); the base timeframe is read from the store and higher ones are aggregated from it
    """
    from ettlib.store import describe_stored, stored_timeframes

    where = getattr(storage, "path", "the store")
    if not hasattr(getattr(storage, "con", storage), "execute"):  # a custom source: no catalogue
        if base_timeframe is None:
            raise ConfigError("give base_timeframe= for a candle source without a DuckDB connection")
        return validate_timeframe(base_timeframe)
    stored = stored_timeframes(storage, symbols)
    missing = [s for s in symbols if s not in stored]
    if missing:
        everything = describe_stored(stored_timeframes(storage))
        raise ConfigError(f"no candles of {', '.join(missing)} in {where} (stored: {everything})")
    if base_timeframe is None:
        common = set.intersection(*(set(tfs) for tfs in stored.values()))
        if not common:
            raise ConfigError(
                f"no timeframe is stored for every one of {', '.join(symbols)} in {where} "
                f"(stored: {describe_stored(stored)}); give base_timeframe=")
        base = sort_timeframes(common)[0]
    else:
        base = validate_timeframe(base_timeframe)
        lacking = [s for s in symbols if base not in stored[s]]
        if lacking:
            raise ConfigError(
                f"no {base} candles of {', '.join(lacking)} in {where} (stored: {describe_stored(stored)}); "
                "the base timeframe is read from the store and higher ones are aggregated from it")
    for tf in timeframes:
        if TIMEFRAMES[validate_timeframe(tf)] % TIMEFRAMES[base] or TIMEFRAMES[tf] < TIMEFRAMES[base]:
            raise ConfigError(
                f"timeframe {tf!r} is not a whole multiple of the base timeframe {base!r} "
                f"(stored: {describe_stored(stored)}); replayed timeframes are aggregated from the base")
    return base


def default_timeframes(base_timeframe: str, count: int = 3) -> list[str]:
    """The base and up to ``count`` usual higher timeframes aggregated from it.

    >>> default_timeframes("1m"), default_timeframes("1h"), default_timeframes("1d")
    (['1m', '5m', '15m', '1h'], ['1h', '4h', '1d'], ['1d'])
    """
    base = TIMEFRAMES[validate_timeframe(base_timeframe)]
    usual = [tf for tf in ("5m", "15m", "1h", "4h", "1d") if TIMEFRAMES[tf] > base and TIMEFRAMES[tf] % base == 0]
    return [base_timeframe, *usual[:count]]


def warn_unplanned(provider, symbols, config: FeedConfig) -> None:
    """Warn about subscriptions a replay of ``config`` will never serve (made too late, or elsewhere)."""
    steps = set(config.step_streams)
    late_steps = sorted(p for p in provider.subscribed_streams("step") if p[0] in symbols and p not in steps)
    other_tfs = sorted({tf for s, tf in provider.subscribed_streams()
                        if s in symbols and tf not in config.timeframes})
    if late_steps:
        warnings.warn(
            f"inference-step subscriptions {late_steps} are not scheduled by this replay "
            "(subscribe before creating the engine, or pass step_timeframes=)", stacklevel=4)
    if other_tfs:
        warnings.warn(
            f"subscriptions on timeframes {other_tfs} are not replayed (timeframes="
            f"{list(config.timeframes)})", stacklevel=4)
