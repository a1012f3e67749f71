"""Delivery: call a subscriber with a (frame, event) pair, and buffer what the next flush commits.

A :class:`DeliveryBuffer` numbers every delivery (``seq``, part of the
checkpoint), isolates a subscriber that raises (a dead letter: pair, event,
traceback; re-raised as :class:`~ettlib.errors.SubscriberError` when
``strict``), and buffers the rows of ``training_events`` and
``dead_letters`` until the coordinator's next flush takes them
(:meth:`DeliveryBuffer.take`).

A buffered candle pair is a short row of atoms (the garbage collector soon
stops tracking it), :data:`~ettlib.coordinator.persistence.PAIR_FIELDS`: the
frame's id as is, the candle's stream and times, the subscriber, the seq
and what the subscriber returned; a pivot delivery is one row for all its
frames (:data:`~ettlib.coordinator.persistence.PIVOT_DELIVERY_FIELDS`).
The flush turns them into columns.

Examples
--------
>>> from ettlib.replay.events import CandleCompletionEvent
>>> buffer = DeliveryBuffer()
>>> event = CandleCompletionEvent("X", "1m", 0, 60_000, 1.0, 1.0, 1.0, 1.0, 1.0)
>>> buffer.deliver_candles((("printer", lambda event, ref: 0.5),), event, (None,))
>>> buffer.candle_pairs, buffer.delivered
([(None, 'X', '1m', 0, 60000, 'printer', 0, 0.5, None)], 1)
"""

from __future__ import annotations

import json
import math
import traceback

import numpy as np

from ettlib.errors import SubscriberError
from ettlib.replay.events import event_key

__all__ = ["DeliveryBuffer", "loss_and_metrics"]


def loss_and_metrics(result) -> tuple[float | None, str | None]:
    """What a subscriber's return value stores: ``(loss, metrics JSON)``.

    >>> loss_and_metrics(0.25), loss_and_metrics({"loss": 1, "n": 2})
    ((0.25, None), (1.0, '{"loss": 1, "n": 2}'))
    """
    if result is None:
        return None, None
    if type(result) is float:
        return (result if result - result == 0.0 else None), None  # NaN and inf: no loss
    if isinstance(result, (int, float, np.floating, np.integer)) and not isinstance(result, bool):
        value = float(result)
        return (value if math.isfinite(value) else None), None
    if isinstance(result, dict):
        loss = result.get("loss")
        try:
            loss = float(loss) if loss is not None else None
        except (TypeError, ValueError):
            loss = None
        return loss, json.dumps(result, default=str, sort_keys=True)
    return None, None


class DeliveryBuffer:
    """Delivers pairs and buffers their rows until the next flush (see the module doc).

    Attributes
    ----------
    seq
        The next delivery's sequence number.
    candle_pairs, pivot_pairs, dead
        Buffered since the last :meth:`take`: delivered candle pairs (rows of
        :data:`~ettlib.coordinator.persistence.PAIR_FIELDS`), pivot
        deliveries (one row each, :data:`~ettlib.coordinator.persistence.PIVOT_DELIVERY_FIELDS`),
        rows of ``dead_letters``.
    delivered, failed
        Pairs delivered (including deliveries without a frame) / whose
        subscriber raised, so far.
    """

    def __init__(self, *, strict: bool = False, seq: int = 0):
        self.strict = strict
        self.seq = seq
        self.candle_pairs: list[tuple] = []
        self.pivot_pairs: list[tuple] = []
        self.dead: list[tuple] = []
        self.delivered = self.failed = 0

    def take(self) -> tuple[list, list, list]:
        """``(candle_pairs, pivot_pairs, dead)`` buffered so far; the buffers start empty again."""
        out = (self.candle_pairs, self.pivot_pairs, self.dead)
        self.candle_pairs, self.pivot_pairs, self.dead = [], [], []
        return out

    def _dead_letter(self, exc, label, method, event, ids, kind, event_key, t, seq) -> None:
        """Record a failed delivery (one row per frame); re-raise in strict mode."""
        tb = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}"
        for iid in ids:
            self.dead.append((label, iid, kind, event_key, repr(event), error, tb, t, seq))
        self.failed += len(ids)
        if self.strict:
            raise SubscriberError(
                f"subscriber {label!r} raised {error} on {event!r}", event=event, callback=method
            ) from exc

    def deliver_candles(self, subs, event, refs) -> None:
        """``method(event, ref)`` for each ``(label, method)`` of ``subs`` and each of ``refs``.

        The hot path of a replay: ``refs`` is the matched frames, or
        ``(None,)`` for none.  Each call gets its own seq, taken before it
        (a subscriber may cause deliveries itself).
        """
        append = self.candle_pairs.append
        n = 0
        for label, method in subs:
            for ref in refs:
                seq = self.seq
                self.seq = seq + 1
                try:
                    result = method(event, ref)
                except Exception as exc:
                    iid = "" if ref is None else str(ref.inference_id)
                    self._dead_letter(exc, label, method, event, [iid], "candle", event_key(event),
                                      event.close_time, seq)
                    continue
                # the frame's id as is (int or str; None for no frame): made text at the flush
                if result is None:
                    append((None if ref is None else ref.inference_id, event.symbol, event.timeframe,
                            event.timestamp, event.close_time, label, seq, None, None))
                else:
                    loss, metrics = loss_and_metrics(result)
                    append((None if ref is None else ref.inference_id, event.symbol, event.timeframe,
                            event.timestamp, event.close_time, label, seq, loss, metrics))
                n += 1
        self.delivered += n

    def deliver_candle(self, label, method, event, ref) -> None:
        """``method(event, ref)``: one candle pair."""
        self.deliver_candles(((label, method),), event, (ref,))

    def deliver_pivot(self, label, method, event, refs) -> None:
        """``method(event, refs)``: the pairs of a pivot with each of ``refs`` (or none), in one call."""
        seq = self.seq
        self.seq += 1
        t = event.confirmed_at
        try:
            result = method(event, list(refs))
        except Exception as exc:
            ids = [str(r.inference_id) for r in refs] or [""]
            self._dead_letter(exc, label, method, event, ids, "pivot", event_key(event), t, seq)
            return
        loss, metrics = loss_and_metrics(result)
        # one row for the delivery, its frames' ids as a tuple (of atoms: the garbage collector
        # stops tracking it), expanded to one row per pair at the flush; made text there
        self.pivot_pairs.append((tuple([r.inference_id for r in refs]) or (None,), event, label, seq, loss, metrics))
        self.delivered += max(1, len(refs))
