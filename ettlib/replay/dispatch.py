"""The replay's fast path: a span's events built from columns and handed to their callbacks.

:func:`dispatch` delivers the events ``[a, b)`` of a :class:`~ettlib.replay.plan.Plan`
to the callbacks of their streams (a snapshot of the provider's lists):
only the events of streams that have callbacks are built, each becomes the
clock's time as it is delivered, and the cyclic GC is paused for the chunk.
A subscription made or ended by a callback (``provider.version`` moves)
ends the chunk after that callback, so the caller takes a new snapshot; a
callback that raises follows the provider's ``on_error`` policy, the failing
event counted as passed.
"""

from __future__ import annotations

import numpy as np

from ettlib.gc_pause import gc_paused
from ettlib.replay.events import EVENT_CLASSES
from ettlib.replay.plan import CANDLE, PIVOT, STEP, Plan, columns

__all__ = ["dispatch", "deliver", "target_of"]


class _FanOut:
    """Several callbacks of one stream behind one call, with the provider's error policy."""

    __slots__ = ("callbacks", "provider")

    def __init__(self, callbacks: tuple, provider):
        self.callbacks = callbacks
        self.provider = provider

    def __call__(self, event) -> None:
        for cb in self.callbacks:
            try:
                cb(event)
            except Exception as exc:
                self.provider.handle_error(cb, event, exc)


def target_of(callbacks: tuple, provider):
    """What the dispatch loop calls for a stream: None, the callback, or a fan-out."""
    if not callbacks:
        return None
    if len(callbacks) == 1:
        return callbacks[0]
    return _FanOut(callbacks, provider)


def deliver(main, rows, clock, provider, version):
    """Build and deliver events: the fast path of :meth:`ReplayEngine.run`.

    ``main`` yields ``(kind, callback)`` pairs; ``rows`` holds one iterator of
    field tuples per kind, in the event classes' field order.  For each pair
    the next row of its kind becomes the event, ``clock.time`` becomes its
    knowable time, and the callback gets it.  Returns ``(event, None, None)``
    when a subscription changed (``provider.version`` moved), ``(event,
    callback, exc)`` when a callback raised (the iterators then resume after
    that event), ``None`` at the end.
    """
    next_candle, next_pivot, next_step = (r.__next__ for r in rows)
    candle, pivot, step = EVENT_CLASSES
    new = tuple.__new__  # what a named tuple's _make does, without its per-call length check
    event = callback = None
    try:
        for kind, callback in main:
            if kind == CANDLE:
                event = new(candle, next_candle())
                clock.time = event.close_time
            elif kind == PIVOT:
                event = new(pivot, next_pivot())
                clock.time = event.confirmed_at
            else:
                event = new(step, next_step())
                clock.time = event.timestamp
            callback(event)
            if provider.version != version:
                return event, None, None
    except BaseException as exc:
        return event, callback, exc
    return None


def dispatch(plan: Plan, a: int, b: int, callbacks: list, clock, provider, max_level: int, passed) -> None:
    """Deliver the span's events ``[a, b)`` to their callbacks; ``passed(local)`` moves the position.

    ``callbacks[i]`` is the tuple of callbacks of ``plan.channels[i]``;
    ``passed(local)`` is told the span position after the last event passed.
    """
    targets = [target_of(cbs, provider) for cbs in callbacks]
    has = np.fromiter((t is not None for t in targets), bool, len(targets))
    positions = a + np.flatnonzero(has[plan.channel[a:b]])
    if not len(positions):
        passed(b)
        return
    # The cyclic GC is paused for the chunk: tens of thousands of (acyclic)
    # events alive at once would trigger full collections that cost more
    # than the replay itself.  Cyclic garbage made by callbacks is
    # collected after the chunk.
    with gc_paused():
        _deliver_chunk(plan, positions, targets, b, clock, provider, max_level, passed)


def _deliver_chunk(plan, positions, targets, b, clock, provider, max_level, passed) -> None:
    kinds = plan.kind[positions]
    rows = plan.row[positions]
    ranks = plan.rank[positions]
    field_rows = []
    for kind in (CANDLE, PIVOT, STEP):
        mine = kinds == kind
        field_rows.append(zip(*columns(plan, kind, rows[mine], ranks[mine], max_level)))
    kind_list = kinds.tolist()
    kind_iter = iter(kind_list)
    by_channel = np.empty(len(targets), dtype=object)
    for i, target in enumerate(targets):  # one by one: a callable may look like a sequence
        by_channel[i] = target
    main = zip(kind_iter, by_channel[plan.channel[positions]].tolist())
    version = provider.version
    while True:
        stopped = deliver(main, field_rows, clock, provider, version)
        if stopped is None:
            passed(b)
            return
        event, cb, exc = stopped
        # events consumed so far = those the kind iterator has handed out
        done = len(kind_list) - kind_iter.__length_hint__()
        if done:
            passed(int(positions[done - 1]) + 1)  # the failing event counts as passed
        if exc is None:
            return  # a subscription changed: the caller takes a new snapshot
        if not isinstance(exc, Exception) or isinstance(cb, _FanOut):
            raise exc  # interrupts; or a fan-out that already applied the policy
        provider.handle_error(cb, event, exc)  # raises under on_error="raise"
        if provider.version != version:
            return
