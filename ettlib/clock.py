"""Clocks: where "now" comes from, injected so that replay never reads the wall.

Everything in ettlib is driven by the *knowable* time of events.  Under
replay, :class:`ReplayClock` is set by the engine to the knowable time of the
event being delivered (and never goes backwards, except when a replay is
explicitly restarted by a backward seek).  Live, the same clock kind is
advanced by :meth:`ettlib.data_provider.DataProvider.push_candle`; a
:class:`WallClock` exists for code that needs real time (pacing, logging).

Examples
--------
>>> clock = ReplayClock(60_000)
>>> clock.now()
60000
>>> clock.advance(120_000)
>>> clock.now()
120000
>>> clock.advance(60_000)
Traceback (most recent call last):
...
ettlib.errors.LookAheadError: clock cannot go backwards: 60000 < 120000
"""

from __future__ import annotations

import time

from ettlib.errors import ConfigError, LookAheadError

__all__ = ["ReplayClock", "WallClock"]


class ReplayClock:
    """A clock that shows the knowable time the replay (or feed) has reached.

    Parameters
    ----------
    start
        Initial time in epoch ms (``None``: nothing known yet; ``now()``
        returns ``None`` until the first event).
    """

    __slots__ = ("_now",)

    def __init__(self, start: int | None = None):
        if start is not None and (isinstance(start, bool) or not isinstance(start, int)):
            raise ConfigError(f"clock start must be int epoch ms or None, got {start!r}")
        self._now = start

    def now(self) -> int | None:
        """The current knowable time (epoch ms)."""
        return self._now

    def advance(self, t: int) -> None:
        """Move the clock to ``t``; moving backwards is an error."""
        if self._now is not None and t < self._now:
            raise LookAheadError(f"clock cannot go backwards: {t} < {self._now}")
        self._now = int(t)

    def reset(self, t: int | None) -> None:
        """Set the clock to ``t`` unconditionally (a replay restart)."""
        self._now = None if t is None else int(t)

    def __repr__(self) -> str:
        return f"ReplayClock({self._now!r})"


class WallClock:
    """Real time in epoch ms (for live use; never used by the replay)."""

    __slots__ = ()

    def now(self) -> int:
        """Milliseconds since the epoch, UTC, from the system clock."""
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "WallClock()"
