"""The cyclic garbage collector paused for a block: the one place ettlib turns it off.

CPython's collector runs a pass every few hundred new container objects and
walks every object still young.  Work that makes tens of thousands of
acyclic objects at once -- a replay chunk's events, a commit's Arrow
columns built from thousands of frames -- would trigger passes that cost
more than the work itself.  :func:`gc_paused` turns the collector off for
such a block and back on after it (only if it was on: a caller that turned
it off keeps it off); cyclic garbage made inside the block is collected by
the next pass after it.

Examples
--------
>>> import gc
>>> with gc_paused():
...     gc.isenabled()
False
>>> gc.isenabled()
True
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

__all__ = ["gc_paused"]


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The collector off inside the block; on again after it if it was on before (errors included)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
