"""Symbol names: the one rule every part of ettlib checks them with.

A symbol is any printable text of 1 to 64 characters without leading or
trailing blanks (``"ETH/USDT"``, ``"BTCUSDT"``, ``"ES 2025-03"``).  It is
stored literally and only ever reaches SQL as a parameter.  The same rule
holds for ingest, subscriptions, replays, live feeds, frames, pivots and
experiment configs, so a name one part accepts every other part accepts,
and ``"ETH/USDT "`` is refused everywhere instead of silently matching
nothing.

Examples
--------
>>> validate_symbol("ETH/USDT")
'ETH/USDT'
>>> validate_symbol("ETH/USDT ")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: invalid symbol 'ETH/USDT ': leading or trailing blanks
>>> validate_symbols(["B", "A", "B"])
('A', 'B')
"""

from __future__ import annotations

from collections.abc import Iterable

from ettlib.errors import ConfigError

__all__ = ["MAX_SYMBOL_LENGTH", "validate_symbol", "validate_symbols"]

#: Longest accepted symbol.
MAX_SYMBOL_LENGTH = 64


def validate_symbol(symbol: object) -> str:
    """Return ``symbol`` if it is an acceptable symbol name, else raise :class:`ConfigError`."""
    if (type(symbol) is str and 0 < len(symbol) <= MAX_SYMBOL_LENGTH and symbol.isprintable()
            and symbol == symbol.strip()):
        return symbol
    if not isinstance(symbol, str):
        raise ConfigError(f"symbol must be a string, not {type(symbol).__name__} {symbol!r}")
    if not symbol:
        problem = "empty"
    elif len(symbol) > MAX_SYMBOL_LENGTH:
        problem = f"longer than {MAX_SYMBOL_LENGTH} characters"
    elif symbol != symbol.strip():
        problem = "leading or trailing blanks"
    else:
        problem = "control or non-printable characters"
    raise ConfigError(f"invalid symbol {symbol!r}: {problem}")


def validate_symbols(symbols: str | Iterable[str]) -> tuple[str, ...]:
    """One symbol or several, each validated, unique and sorted; refuses none.

    A single string is one symbol (never its characters).
    """
    if isinstance(symbols, str):
        symbols = [symbols]
    try:
        items = list(symbols)
    except TypeError:
        raise ConfigError(f"symbols must be a symbol or a list of symbols, got {symbols!r}") from None
    if not items:
        raise ConfigError("symbols is empty: give at least one symbol")
    return tuple(sorted({validate_symbol(s) for s in items}))
