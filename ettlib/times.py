"""Times in and out: the one parser and the one formatter of ettlib.

Every timestamp inside ettlib is an ``int`` of epoch **milliseconds, UTC**.
:func:`to_ms` reads what a user may write for a time, with one rule each:

- an ``int`` (or numpy integer): epoch ms, as it is;
- a ``float`` with no fractional part: the same int (JSON and YAML give them);
- a ``str``: epoch ms in digits, or ISO-8601 (``"2024-01-01"``,
  ``"2024-01-01T12:00"``, ``"2024-01-01 12:00:00Z"``, ``"...+02:00"``);
- a ``datetime.datetime``, ``datetime.date``, pandas ``Timestamp`` or numpy
  ``datetime64``.

A time **without a time zone is read as UTC** (a naive ``datetime``, an ISO
string without an offset, a ``datetime64``), never as the machine's local
time: results never depend on where the code runs.  Sub-millisecond parts
are refused rather than rounded.

:func:`format_ms` writes a time back as ISO-8601 UTC text.

Examples
--------
>>> to_ms("1970-01-01T00:01:00Z"), to_ms("1970-01-01 00:01"), to_ms(60_000), to_ms("60000")
(60000, 60000, 60000, 60000)
>>> from datetime import datetime, timezone, timedelta
>>> to_ms(datetime(1970, 1, 1, 0, 1)) == to_ms(datetime(1970, 1, 1, 1, 1, tzinfo=timezone(timedelta(hours=1))))
True
>>> format_ms(1_704_067_260_000)
'2024-01-01T00:01:00Z'
>>> to_ms("yesterday", "start")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: start: cannot read 'yesterday' as a time (epoch ms, or ISO-8601 like 2024-01-31T12:00, UTC unless it gives an offset)
"""

from __future__ import annotations

import datetime as dt
import re

import numpy as np

from ettlib.errors import ConfigError

__all__ = ["to_ms", "to_ms_or_none", "format_ms"]

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.timezone.utc)
_DIGITS = re.compile(r"[+-]?\d+")
_HINT = "(epoch ms, or ISO-8601 like 2024-01-31T12:00, UTC unless it gives an offset)"


def _from_datetime(value: dt.datetime, name: str) -> int:
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.timezone.utc)
    delta = value - _EPOCH
    if delta.microseconds % 1000:
        raise ConfigError(f"{name}: {value.isoformat()} has a sub-millisecond part")
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def to_ms(value, name: str = "time") -> int:
    """Epoch milliseconds (UTC) from any accepted form of a time (see the module doc).

    Raises :class:`~ettlib.errors.ConfigError` naming ``name`` and the value.
    """
    if isinstance(value, bool) or value is None:
        raise ConfigError(f"{name}: expected a time {_HINT}, got {value!r}")
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        if np.isfinite(value) and float(value).is_integer():
            return int(value)
        raise ConfigError(f"{name}: {value!r} is not a whole number of epoch milliseconds")
    if isinstance(value, str):
        text = value.strip()
        if _DIGITS.fullmatch(text):
            return int(text)
        try:
            parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise ConfigError(f"{name}: cannot read {value!r} as a time {_HINT}") from None
        return _from_datetime(parsed, name)
    if isinstance(value, dt.datetime):  # also pandas.Timestamp (a datetime subclass)
        nanos = getattr(value, "nanosecond", 0)
        if nanos:
            raise ConfigError(f"{name}: {value} has a sub-millisecond part")
        return _from_datetime(value, name)
    if isinstance(value, dt.date):
        return _from_datetime(dt.datetime(value.year, value.month, value.day), name)
    if isinstance(value, np.datetime64):
        if np.isnat(value):
            raise ConfigError(f"{name}: expected a time, got NaT")
        ns = int(value.astype("datetime64[ns]").astype(np.int64))
        if ns % 1_000_000:
            raise ConfigError(f"{name}: {value} has a sub-millisecond part")
        return ns // 1_000_000
    raise ConfigError(f"{name}: expected a time {_HINT}, got {type(value).__name__} {value!r}")


def to_ms_or_none(value, name: str = "time") -> int | None:
    """:func:`to_ms`, with ``None`` passed through (an open bound)."""
    return None if value is None else to_ms(value, name)


def format_ms(ms: int | None, *, seconds: bool = True) -> str:
    """``ms`` as ISO-8601 UTC text (``'2024-01-01T00:01:00Z'``); ``'-'`` for ``None``.

    >>> format_ms(0, seconds=False), format_ms(None)
    ('1970-01-01T00:00Z', '-')
    """
    if ms is None:
        return "-"
    stamp = _EPOCH + dt.timedelta(milliseconds=int(ms))
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S" if seconds else "%Y-%m-%dT%H:%M")
    if seconds and ms % 1000:
        text += f".{int(ms) % 1000:03d}"
    return text + "Z"
