"""Training adapters chosen by name (papermill's ``engines.py`` shape).

A registry maps a name to a factory; :func:`create` builds an adapter from
notebook or config parameters.  A factory may be given as a
``"module:attribute"`` string, imported on first use: the built-ins are
registered that way, so listing or validating names (a config check) does
not import PyTorch.  Importing this module has no side effects.

Examples
--------
>>> "transformer" in names() and "river" in names()
True
>>> create("transfromer")
Traceback (most recent call last):
...
ettlib.errors.UnknownNameError: unknown adapter 'transfromer' (did you mean 'transformer'?)
"""

from __future__ import annotations

from collections.abc import Callable

from ettlib.errors import ConfigError, UnknownNameError

__all__ = ["register", "create", "names", "factory", "check_name"]

_FACTORIES: dict[str, Callable | str] = {
    "transformer": "ettlib.training.adapters.transformer:TransformerAdapter",
    "frozen": "ettlib.training.adapters.transformer:frozen_transformer",
    "river": "ettlib.training.adapters.river:RiverAdapter",
    "persistence": "ettlib.training.adapters.baselines:PersistenceAdapter",
}


def register(name: str, factory: Callable | str) -> None:
    """Register ``factory(**params) -> adapter`` (or ``"module:attr"``) under ``name``."""
    if not isinstance(name, str) or not name:
        raise ConfigError(f"adapter name must be a non-empty string, got {name!r}")
    if isinstance(factory, str):
        if ":" not in factory:
            raise ConfigError(f"a lazy factory is 'module:attribute', got {factory!r}")
    elif not callable(factory):
        raise ConfigError(f"adapter factory for {name!r} is not callable: {factory!r}")
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Registered adapter names, sorted."""
    return sorted(_FACTORIES)


def check_name(name: str) -> str:
    """``name`` if registered, else :class:`UnknownNameError` (imports nothing)."""
    if not isinstance(name, str) or name not in _FACTORIES:
        raise UnknownNameError("adapter", name, sorted(_FACTORIES))
    return name


def factory(name: str) -> Callable:
    """The factory registered under ``name`` (a lazy one is imported now)."""
    found = _FACTORIES[check_name(name)]
    if isinstance(found, str):
        import importlib

        module, _, attribute = found.partition(":")
        found = getattr(importlib.import_module(module), attribute)
        _FACTORIES[name] = found
    return found


def create(name: str, **params):
    """Build the adapter registered under ``name`` with ``params``."""
    return factory(name)(**params)
