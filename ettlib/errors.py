"""The exceptions ettlib raises: one root class, a few precise children.

Every error a user can cause derives from :class:`EttError`, so a notebook
can catch everything ettlib raises with one ``except EttError``.  Errors about
bad data carry *where* the problem is (source, row, column, value) as
attributes as well as in the message.

Examples
--------
>>> err = DataValidationError("high is below max(open, close)",
...                           source="btc.csv", row=3, column="high", value=9.5)
>>> str(err)
"btc.csv: row 3, column 'high', value 9.5: high is below max(open, close)"
>>> isinstance(err, EttError) and isinstance(err, ValueError)
True

A value of the wrong type is a :class:`ConfigTypeError`, both a
:class:`ConfigError` and a ``TypeError``:

>>> positive_int("batch_size", 0)
Traceback (most recent call last):
...
ettlib.errors.ConfigError: batch_size must be a positive int, got 0
>>> positive_int("batch_size", "32")
Traceback (most recent call last):
...
ettlib.errors.ConfigTypeError: batch_size must be a positive int, got '32' (a str)
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "EttError",
    "ConfigError",
    "ConfigTypeError",
    "UnknownNameError",
    "DataValidationError",
    "StoreError",
    "StoreLockedError",
    "SchemaError",
    "StoreOpenError",
    "LookAheadError",
    "ClockError",
    "SubscriberError",
    "did_you_mean",
    "positive_int",
]


class EttError(Exception):
    """Root of every exception raised by ettlib."""


class ConfigError(EttError, ValueError):
    """A parameter, option or configuration value is invalid."""


class ConfigTypeError(ConfigError, TypeError):
    """A parameter or configuration value is of the wrong type (a ``TypeError`` too)."""


class UnknownNameError(ConfigError, KeyError):
    """A name (timeframe, pivot type, adapter, parameter) is not known.

    The message lists the closest known names.
    """

    def __init__(self, kind: str, name: object, known: Iterable[str]):
        self.kind = kind
        self.name = name
        self.known = tuple(known)
        super().__init__(f"unknown {kind} {name!r}{did_you_mean(name, self.known)}")

    def __str__(self) -> str:  # KeyError would repr() the message
        return self.args[0]


class DataValidationError(EttError, ValueError):
    """Input data is malformed; says where (source, row, column, value).

    ``row`` is the 1-based data row of the input (the header, if any, is not
    counted); ``None`` where the problem is not tied to one row.
    """

    def __init__(
        self,
        message: str,
        *,
        source: str | None = None,
        row: int | None = None,
        column: str | None = None,
        value: Any = None,
    ):
        self.reason = message
        self.source = source
        self.row = row
        self.column = column
        self.value = value
        where = []
        if row is not None:
            where.append(f"row {row}")
        if column is not None:
            where.append(f"column {column!r}")
        if value is not None:
            where.append(f"value {value!r}")
        prefix = f"{source}: " if source else ""
        located = f"{', '.join(where)}: " if where else ""
        super().__init__(f"{prefix}{located}{message}")


class StoreError(EttError):
    """The store's contents fail an integrity check: rows changed while read, a state that does not add up."""


class StoreLockedError(EttError):
    """The DuckDB file is held by another process for writing."""

    # path: the file; holder: the holding program as DuckDB names it, "this process"
    # (open here in the other mode) or None; pid: its process id, or None.
    def __init__(self, message: str, *, path: str | None = None, holder: str | None = None,
                 pid: int | None = None):
        super().__init__(message)
        self.path = path
        self.holder = holder
        self.pid = pid


class SchemaError(EttError):
    """The database schema is newer than this ettlib, or cannot be migrated."""


class StoreOpenError(ConfigError):
    """A path cannot be opened as a store as asked: a folder, not a DuckDB file, unreadable, read-only.

    A :class:`ConfigError`: the path given is the problem, and nothing was changed.
    """


class LookAheadError(EttError):
    """Data from after the prediction time was requested or would be used."""


class ClockError(EttError):
    """A clock was moved the wrong way: backwards, or by code that does not drive it."""


class SubscriberError(EttError):
    """A subscriber callback raised; carries the event that caused it."""

    def __init__(self, message: str, *, event: object = None, callback: object = None):
        self.event = event
        self.callback = callback
        super().__init__(message)


def did_you_mean(name: object, known: Iterable[str]) -> str:
    """Return a ``" (did you mean ...?)"`` suffix, or a list of known names.

    Examples
    --------
    >>> did_you_mean("5min", ["1m", "5m", "15m"])
    " (did you mean '5m' or '15m'?)"
    >>> did_you_mean("zzz", ["a", "b"])
    '; known: a, b'
    """
    known = list(known)
    close = difflib.get_close_matches(str(name), known, n=3, cutoff=0.5)
    if close:
        return " (did you mean " + " or ".join(repr(c) for c in close) + "?)"
    return "; known: " + ", ".join(known)


def positive_int(name: str, value: object) -> int:
    """``value`` when it is an ``int >= 1`` (not a bool).

    Another type is a :class:`ConfigTypeError`, an int below 1 a
    :class:`ConfigError`; both name ``name`` and the value.
    """
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigTypeError(f"{name} must be a positive int, got {value!r} (a {type(value).__name__})")
    if value < 1:
        raise ConfigError(f"{name} must be a positive int, got {value!r}")
    return value
