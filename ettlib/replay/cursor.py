"""Where a replay stands, and what it replays: a small frozen, JSON-serializable cursor.

A :class:`ReplayCursor` holds the replay's range (``symbols``, ``start``,
``end``), what it produces (``feed``, a :class:`~ettlib.replay.feed.FeedConfig`)
and its position; :meth:`~ettlib.replay.ReplayEngine.resume` continues from
it with exactly the same remaining events.  Its JSON form is flat: the
feed's fields beside the others.

Examples
--------
>>> from ettlib.replay.feed import FeedConfig
>>> feed = FeedConfig("1m", ("1m", "5m"), ("1m",), 1, 3, (("X", "5m"),))
>>> cursor = ReplayCursor(("X",), 0, 600_000, feed, position=4, last_time=120_000, total=20)
>>> ReplayCursor.from_json(cursor.to_json()) == cursor
True
>>> cursor.to_dict()["timeframes"], cursor.feed.pivot_levels
(['1m', '5m'], 3)
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields

from ettlib.errors import ConfigError
from ettlib.replay.feed import FeedConfig

__all__ = ["ReplayCursor"]

_FEED_FIELDS = tuple(f.name for f in fields(FeedConfig))
_OWN_FIELDS = ("symbols", "start", "end", "position", "last_time", "total")


@dataclass(frozen=True, slots=True)
class ReplayCursor:
    """Where a replay stands, and what it replays: enough to resume it exactly.

    ``symbols``, ``start``, ``end`` and ``feed`` are the replay's parameters;
    ``position`` counts the events passed (delivered or skipped);
    ``last_time`` is the knowable time of the last one (``None`` at the
    start); ``total`` the number of events of the whole replay (a check that
    the data did not change).
    """

    symbols: tuple[str, ...]
    start: int
    end: int
    feed: FeedConfig
    position: int
    last_time: int | None
    total: int

    def to_dict(self) -> dict:
        """Plain JSON types only, one flat mapping (the feed's fields beside the others)."""
        f = self.feed
        return {
            "symbols": list(self.symbols), "start": self.start, "end": self.end,
            "base_timeframe": f.base_timeframe, "timeframes": list(f.timeframes),
            "pivot_timeframes": list(f.pivot_timeframes), "pivot_n": f.pivot_n,
            "pivot_levels": f.pivot_levels, "step_streams": [list(p) for p in f.step_streams],
            "position": self.position, "last_time": self.last_time, "total": self.total,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict) -> ReplayCursor:
        names = set(_OWN_FIELDS) | set(_FEED_FIELDS)
        if set(d) != names:
            raise ConfigError(f"not a replay cursor: keys {sorted(d)} (expected {sorted(names)})")
        feed = FeedConfig(
            base_timeframe=d["base_timeframe"], timeframes=tuple(d["timeframes"]),
            pivot_timeframes=tuple(d["pivot_timeframes"]), pivot_n=int(d["pivot_n"]),
            pivot_levels=int(d["pivot_levels"]), step_streams=tuple(tuple(p) for p in d["step_streams"]))
        return cls(
            symbols=tuple(d["symbols"]), start=int(d["start"]), end=int(d["end"]), feed=feed,
            position=int(d["position"]),
            last_time=None if d["last_time"] is None else int(d["last_time"]),
            total=int(d["total"]),
        )

    @classmethod
    def from_json(cls, text: str) -> ReplayCursor:
        return cls.from_dict(json.loads(text))
