"""Clocks: where "now" comes from, injected so that replay never reads the wall.

Everything in ettlib is driven by the *knowable* time of events.  A
:class:`ReplayClock` shows the knowable time a replay (or a live feed) has
reached.  Only its driver moves it -- the :class:`~ettlib.replay.ReplayEngine`
sets it to the knowable time of each event it delivers, a
:class:`~ettlib.replay.live.LiveFeed` to each pushed candle's close -- by assigning
:attr:`ReplayClock.time` (or through :meth:`ReplayClock.advance`).  Everyone else
(subscribers, the coordinator, the window cache, notebooks) gets
:meth:`ReplayClock.view`: a :class:`ClockView` that reads the same time and
cannot move it, so no user code can move a replay's clock.  A
:class:`WallClock` exists for code that needs real time (pacing, logging);
nothing under replay reads it.

Examples
--------
>>> clock = ReplayClock(60_000)
>>> view = clock.view()
>>> clock.advance(120_000)
>>> view.now()
120000
>>> clock.advance(60_000)
Traceback (most recent call last):
...
ettlib.errors.ClockError: clock cannot go backwards: 60000 < 120000
>>> view.advance(180_000)
Traceback (most recent call last):
...
ettlib.errors.ClockError: this clock is a read-only view: only the replay or live feed that drives it moves it
"""

from __future__ import annotations

import time

from ettlib.errors import ClockError, ConfigError

__all__ = ["ReplayClock", "ClockView", "WallClock"]


def _check_time(t) -> int | None:
    if t is not None and (isinstance(t, bool) or not isinstance(t, int)):
        raise ConfigError(f"a clock time must be int epoch ms or None, got {t!r}")
    return t


class ReplayClock:
    """The knowable time a replay (or feed) has reached; moved by its driver only.

    Parameters
    ----------
    start
        Initial time in epoch ms (``None``: nothing known yet; ``now()``
        returns ``None`` until the first event).

    Attributes
    ----------
    time
        The time ``now()`` reads.  Assigning it is the driver's setter (no
        check, either direction: events, seeks, restarts); code that does
        not drive the clock holds a :meth:`view` and cannot.
    """

    __slots__ = ("time",)

    def __init__(self, start: int | None = None):
        self.time = _check_time(start)

    def now(self) -> int | None:
        """The current knowable time (epoch ms)."""
        return self.time

    def advance(self, t: int) -> None:
        """Move the clock forward to ``t``; backwards is a :class:`~ettlib.errors.ClockError`."""
        if self.time is not None and t < self.time:
            raise ClockError(f"clock cannot go backwards: {t} < {self.time}")
        self.time = int(t)

    def view(self) -> ClockView:
        """A read-only view of this clock, for everyone but its driver."""
        return ClockView(self)

    def __repr__(self) -> str:
        return f"ReplayClock({self.time!r})"


class ClockView:
    """Reads a :class:`ReplayClock`'s time (``now()``); cannot move it."""

    __slots__ = ("now",)

    def __init__(self, clock: ReplayClock):
        object.__setattr__(self, "now", clock.now)  # the bound method itself: no extra call per read

    def __setattr__(self, name, value) -> None:
        raise ClockError("a clock view is read-only")

    def advance(self, t: int) -> None:
        """Refused: a :class:`~ettlib.errors.ClockError` (only the clock's driver moves it)."""
        raise ClockError(
            "this clock is a read-only view: only the replay or live feed that drives it moves it")

    def __repr__(self) -> str:
        return f"ClockView({self.now()!r})"


class WallClock:
    """Real time in epoch ms (for live use; never used by the replay)."""

    __slots__ = ()

    def now(self) -> int:
        """Milliseconds since the epoch, UTC, from the system clock."""
        return time.time_ns() // 1_000_000

    def __repr__(self) -> str:
        return "WallClock()"
