"""Loops compiled by numba on first use: the one place ettlib compiles code.

:func:`kernel` compiles a plain Python function with numba the first time it
is asked for (never at import: ``import ettlib`` stays light), keeps the
machine code on disk (``cache=True``: in ``__pycache__``, or numba's
user-wide cache when that is read-only) so that later processes load it
instead of compiling, and compiles in each process where numba finds no
writable cache directory at all (``NUMBA_CACHE_DIR`` names one).  The
functions stay plain Python: they are their own reference, and tests may
call them uncompiled.  ``nogil``: threads run them in parallel.

Examples
--------
>>> def total(x):
...     s = 0.0
...     for v in x:
...         s += v
...     return s
>>> import numpy as np
>>> kernel(total)(np.arange(4.0))
6.0
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["kernel"]

_COMPILED: dict[Callable, Callable] = {}


def kernel(fn: Callable) -> Callable:
    """``fn`` compiled by numba (once per process; see the module doc)."""
    compiled = _COMPILED.get(fn)
    if compiled is None:
        import numba

        try:
            compiled = numba.njit(cache=True, nogil=True)(fn)
        except RuntimeError:  # numba found no writable cache directory: compile in each process
            compiled = numba.njit(nogil=True)(fn)
        _COMPILED[fn] = compiled
    return compiled
