"""Names resolved on first use: a package's ``__getattr__`` and ``__dir__`` in one call.

Packages whose public names live in modules that import heavy libraries
(PyTorch, papermill, ipywidgets) list them as ``{name: module}``; the module
is imported the first time the name is read, and the value is then kept in
the package's namespace.

Examples
--------
>>> getattr_, dir_ = lazy_names("ettlib", {"did_you_mean": "ettlib.errors"}, {})
>>> getattr_("did_you_mean").__name__
'did_you_mean'
>>> getattr_("nothing")
Traceback (most recent call last):
...
AttributeError: module 'ettlib' has no attribute 'nothing'
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, MutableMapping

__all__ = ["lazy_names"]


def lazy_names(package: str, names: Mapping[str, str],
               namespace: MutableMapping) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """``(__getattr__, __dir__)`` for ``package`` resolving ``names`` (``{name: module}``).

    A resolved value is stored in ``namespace`` (the package's ``globals()``),
    so the lookup happens once.
    """

    def __getattr__(name: str):
        module = names.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        namespace[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(namespace) | set(names))

    return __getattr__, __dir__
