"""Timeframes: names, lengths in milliseconds, epoch-aligned buckets.

Every timestamp in ettlib is ``int64`` epoch milliseconds, UTC.  A candle's
timestamp is its *open* time; it closes (becomes known) at
``timestamp + timeframe_ms(tf)``.  Buckets are aligned to the Unix epoch, so
a ``1h`` candle opens on a whole hour and a ``1d`` candle at 00:00 UTC.

Examples
--------
>>> timeframe_ms("5m")
300000
>>> bucket_start(1_700_000_123_456, "1h")
1699999200000
>>> sort_timeframes(["1h", "1m", "15m"])
['1m', '15m', '1h']
>>> validate_timeframe("5min")
Traceback (most recent call last):
...
ettlib.errors.UnknownNameError: unknown timeframe '5min' (did you mean '5m' or '15m'?)
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from ettlib.errors import ConfigError, UnknownNameError

__all__ = [
    "TIMEFRAMES",
    "timeframe_ms",
    "validate_timeframe",
    "bucket_start",
    "is_aligned",
    "sort_timeframes",
    "close_time",
    "check_higher",
]

_SECOND = 1_000
_MINUTE = 60 * _SECOND
_HOUR = 60 * _MINUTE

#: Known timeframes and their lengths in milliseconds, shortest first.
TIMEFRAMES: dict[str, int] = {
    "1s": _SECOND,
    "1m": _MINUTE,
    "3m": 3 * _MINUTE,
    "5m": 5 * _MINUTE,
    "15m": 15 * _MINUTE,
    "30m": 30 * _MINUTE,
    "1h": _HOUR,
    "2h": 2 * _HOUR,
    "4h": 4 * _HOUR,
    "6h": 6 * _HOUR,
    "12h": 12 * _HOUR,
    "1d": 24 * _HOUR,
}


def validate_timeframe(timeframe: str) -> str:
    """Return ``timeframe`` if known, else raise with the closest names."""
    if not isinstance(timeframe, str) or timeframe not in TIMEFRAMES:
        raise UnknownNameError("timeframe", timeframe, TIMEFRAMES)
    return timeframe


def timeframe_ms(timeframe: str) -> int:
    """Length of ``timeframe`` in milliseconds."""
    return TIMEFRAMES[validate_timeframe(timeframe)]


def bucket_start(timestamp, timeframe: str):
    """Open time of the ``timeframe`` bucket holding ``timestamp``.

    Works on an ``int`` or on an ``int64`` numpy array (vectorized).

    >>> bucket_start(np.array([0, 59_999, 60_000]), "1m").tolist()
    [0, 0, 60000]
    """
    ms = timeframe_ms(timeframe)
    return timestamp - timestamp % ms


def is_aligned(timestamp, timeframe: str):
    """True where ``timestamp`` is an open time on the ``timeframe`` grid."""
    return timestamp % timeframe_ms(timeframe) == 0


def close_time(timestamp, timeframe: str):
    """When the candle opened at ``timestamp`` closes and becomes known."""
    return timestamp + timeframe_ms(timeframe)


def sort_timeframes(timeframes: Iterable[str]) -> list[str]:
    """Unique timeframes sorted by length, shortest first."""
    unique = {validate_timeframe(tf) for tf in timeframes}
    return sorted(unique, key=TIMEFRAMES.__getitem__)


def check_higher(base: str, higher: str) -> None:
    """Raise unless ``higher`` is a whole multiple of ``base`` (and longer).

    >>> check_higher("1m", "3m")
    >>> check_higher("1h", "1m")
    Traceback (most recent call last):
    ...
    ettlib.errors.ConfigError: timeframe '1m' is not a whole multiple of the base timeframe '1h'
    """
    b, h = timeframe_ms(base), timeframe_ms(higher)
    if h < b or h % b:
        raise ConfigError(
            f"timeframe {higher!r} is not a whole multiple of the base timeframe {base!r}"
        )
