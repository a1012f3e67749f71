"""Matching and retention: which retained frames an event matches, and when a frame is dropped.

A :class:`FrameIndex` holds the frames a coordinator retains, per stream
``(symbol, timeframe)``.  It needs no store and no provider: give it frames
(:meth:`FrameIndex.add`) and events (:meth:`FrameIndex.match_candle`,
:meth:`FrameIndex.match_pivot`), read what matched.  The coordinator
(:class:`~ettlib.coordinator.InferenceTrainingCoordinator`) delivers and
persists around it.

Matching (``docs/design.md``)
-----------------------------
- A candle completion of ``(symbol, timeframe, timestamp)`` matches every
  retained frame with that symbol, timeframe and ``target_timestamp``.
  O(1): a dict keyed by target.
- A pivot confirmed at bar time ``t_p`` matches every retained frame of the
  stream with ``prediction_timestamp`` in ``[t_p - pivot_lookback * tf,
  t_p]``.  O(log n + matches): a list per stream sorted by prediction time,
  searched with ``bisect`` (out-of-order registrations from live threads are
  inserted in place).

Retention
---------
A frame is *retained* -- can match -- while the knowable time ``T`` of an
event satisfies ``T <= expires_at(ref)`` where::

    expires_at = max(target close time, prediction_timestamp + pivot_lookback * tf)
                 + retention * tf

i.e. until its target candle has closed and no pivot bar it could match is
left, plus ``retention`` candles of grace for late confirmations.  The rule
is exact and does not depend on when memory is cleaned (each match checks
the frame's expiry): frames past it are dropped as the stream's events
advance (``O(1)`` amortized): a stream's memory is swept every 64
candles, not at each event (:meth:`FrameIndex.sweep` drops them all at once;
``pending`` counts the frames not yet swept).  With ``record_expired`` (the
default), each dropped frame is listed in :attr:`FrameIndex.expired` as
``(frame, T)``, ``T`` the first event of its stream past its expiry: the
stream keeps its event times since the last sweep, so ``T`` is what dropping
at each event would give (each frame at the first event past its own expiry
and the expiries of the frames before it), whenever the sweep runs.  A frame
added with a prediction time before the stream's last event (late, or out of
order) sweeps the stream first, so that no event before it can be its ``T``.

Examples
--------
>>> from ettlib.coordinator.frames import InferenceFrameReference
>>> from ettlib.replay.events import CandleCompletionEvent
>>> index = FrameIndex(pivot_lookback=2, retention=0)
>>> ref = InferenceFrameReference.for_prediction(
...     1, "X", "1m", 600_000, context=3, norm_params=(0.0, 1.0, 0.0, 1.0),
...     predicted_action="BUY", confidence=0.5)
>>> index.add(ref)
>>> index.expires_at(ref)      # max(target close 660000, 600000 + 2 * 60000)
720000
>>> candle = CandleCompletionEvent("X", "1m", 600_000, 660_000, 1, 1, 1, 1, 1)
>>> index.match_candle(candle) == (ref,), index.matched
(True, 1)
>>> index.drop_expired(("X", "1m"), 780_000)
>>> index.expired == [(ref, 780_000)], index.pending
(True, 0)
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right

from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.timeframes import TIMEFRAMES

__all__ = ["FrameIndex", "NO_FRAME"]

#: What a candle that matched no frame is delivered with: one call, ``inference_ref=None``.
NO_FRAME = (None,)

_COMPACT_AFTER = 1024  # dropped slots kept at a stream's head before the lists are compacted
_SWEEP_CANDLES = 64  # candles between sweeps of a stream's expired frames


class _Stream:
    """Retained frames of one (symbol, timeframe), sorted by prediction time."""

    __slots__ = ("symbol", "timeframe", "times", "refs", "head", "targets", "tf", "span", "grace", "now",
                 "sweep_at", "sweep_every", "seen", "last_event", "last_refs")

    def __init__(self, tf: int, span: int, grace: int, sweep_every: int, *, record: bool):
        self.symbol = self.timeframe = ""  # the stream's key (set by FrameIndex)
        self.times: list[int] = []
        self.refs: list[InferenceFrameReference | None] = []
        self.head = 0  # refs[:head] are dropped (None)
        #: target_timestamp -> a frame, or a list of frames sharing the target
        self.targets: dict[int, object] = {}
        self.tf = tf  # timeframe length, ms
        self.span = span  # pivot lookback, ms
        self.grace = grace  # retention, ms
        self.now: int | None = None  # the knowable time of the stream's last event
        self.sweep_at = 0  # expired frames are dropped at the first event from this time on
        self.sweep_every = sweep_every  # ms between sweeps
        #: the knowable times of the stream's events since its last sweep (None: not recorded)
        self.seen: list[int] | None = [] if record else None
        self.last_event = None  # the stream's last event and what it matched
        self.last_refs: tuple = ()

    def expires_at(self, ref: InferenceFrameReference) -> int:
        a = ref.target_timestamp + self.tf
        b = ref.prediction_timestamp + self.span
        return (a if a > b else b) + self.grace

    def forget_target(self, ref: InferenceFrameReference) -> None:
        targets = self.targets
        key = ref.target_timestamp
        held = targets.get(key)
        if held is ref:
            del targets[key]
        elif type(held) is list and ref in held:
            held.remove(ref)
            if not held:
                del targets[key]

    def compact(self) -> None:
        del self.times[: self.head]
        del self.refs[: self.head]
        self.head = 0


class FrameIndex:
    """The retained frames of every stream: matching and retention (see the module doc).

    Parameters
    ----------
    pivot_lookback
        Candles before a pivot bar whose frames it matches.
    retention
        Extra candles a frame is kept after its last possible match.
    record_expired
        List each dropped frame in :attr:`expired` (default True; a
        coordinator that does not record expired frames needs no list).

    Attributes
    ----------
    pending, matched, dropped, added
        Frames retained now; (frame, event) matches so far; frames dropped
        so far; frames added so far.
    expired
        ``(frame, T)`` of each frame dropped since the list was last
        emptied (the coordinator takes it at each flush); empty without
        ``record_expired``.
    """

    def __init__(self, pivot_lookback: int, retention: int, *, record_expired: bool = True):
        self.pivot_lookback = pivot_lookback
        self.retention = retention
        self.record_expired = record_expired
        self._streams: dict[tuple[str, str], _Stream] = {}
        self.matched = self.dropped = self.added = 0
        self._added_to: _Stream | None = None
        self.expired: list[tuple[InferenceFrameReference, int]] = []

    @property
    def pending(self) -> int:
        """Frames retained now (added, less dropped)."""
        return self.added - self.dropped

    def _stream(self, key: tuple[str, str]) -> _Stream:
        stream = self._streams.get(key)
        if stream is None:
            tf = TIMEFRAMES[key[1]]
            stream = self._streams[key] = _Stream(tf, self.pivot_lookback * tf, self.retention * tf,
                                                  _SWEEP_CANDLES * tf, record=self.record_expired)
            stream.symbol, stream.timeframe = key
        return stream

    def expires_at(self, ref: InferenceFrameReference) -> int:
        """Last knowable time at which ``ref`` can match."""
        return self._stream((ref.symbol, ref.timeframe)).expires_at(ref)

    def add(self, ref: InferenceFrameReference, *, with_target: bool = True) -> None:
        """Retain ``ref`` (``with_target=False``: for pivots only; its target candle has passed)."""
        stream = self._added_to  # the stream of the last frame added: usually this one's
        if stream is None or ref.symbol is not stream.symbol or ref.timeframe is not stream.timeframe:
            stream = self._added_to = self._stream((ref.symbol, ref.timeframe))
            stream.symbol, stream.timeframe = ref.symbol, ref.timeframe  # equal; the frames' own strings
        t = ref.prediction_timestamp
        seen = stream.seen
        if seen and t < seen[-1]:  # late: no event before it may be the time it expires at
            self._drop(stream, seen[-1])
        times = stream.times
        if not times or t >= times[-1]:
            times.append(t)
            stream.refs.append(ref)
        else:  # out of order (live threads): keep sorted, stable for equal times
            i = bisect_right(times, t, stream.head)
            times.insert(i, t)
            stream.refs.insert(i, ref)
        if with_target:
            targets = stream.targets
            held = targets.setdefault(ref.target_timestamp, ref)
            if held is not ref:  # the target is shared
                if type(held) is list:
                    held.append(ref)
                else:
                    targets[ref.target_timestamp] = [held, ref]
        self.added += 1

    def _advance(self, stream, t: int) -> None:
        """The stream's clock to ``t`` (kept in ``seen`` when recorded); a sweep when one is due."""
        stream.now = t
        seen = stream.seen
        if seen is not None:
            seen.append(t)
        if t >= stream.sweep_at:
            self._drop(stream, t)
            stream.sweep_at = t + stream.sweep_every

    def match_candle(self, event, key: tuple[str, str] | None = None) -> tuple:
        """The retained frames whose target is the candle ``event`` (:data:`NO_FRAME` if none).

        The stream's frames past their expiry at the candle's close are
        dropped first (see :meth:`sweep`); the target is consumed (a candle
        closes once).  ``key``: ``(event.symbol, event.timeframe)``, when
        the caller has it.
        """
        stream = self._streams.get((event.symbol, event.timeframe) if key is None else key)
        if stream is None:
            stream = self._stream((event.symbol, event.timeframe))
        t = event.close_time
        self._advance(stream, t)
        held = stream.targets.pop(event.timestamp, None)
        if held is None:
            refs = NO_FRAME
        elif type(held) is not list:
            # expiry is not monotone in prediction time (horizons differ), and memory is swept
            # only now and then: a retained frame may be past its expiry, so it is checked here
            a = held.target_timestamp + stream.tf  # stream.expires_at(held), inlined
            b = held.prediction_timestamp + stream.span
            refs = (held,) if (a if a > b else b) + stream.grace >= t else NO_FRAME
        else:
            refs = tuple(r for r in held if stream.expires_at(r) >= t) or NO_FRAME
        if refs is not NO_FRAME:
            self.matched += len(refs)
        stream.last_event = event
        stream.last_refs = refs
        return refs

    def match_pivot(self, event) -> list[InferenceFrameReference]:
        """The retained frames made within ``pivot_lookback`` candles before the pivot's bar."""
        stream = self._stream((event.symbol, event.timeframe))
        t = event.confirmed_at
        self._advance(stream, t)
        lo = event.timestamp - stream.span
        i = bisect_left(stream.times, lo, stream.head)
        j = bisect_right(stream.times, event.timestamp, i)
        refs = [r for r in stream.refs[i:j] if stream.expires_at(r) >= t]
        self.matched += len(refs)
        stream.last_event = event
        stream.last_refs = tuple(refs)
        return refs

    def sweep(self) -> None:
        """Drop every stream's expired frames at the time of its last event.

        The frames that can no longer match are freed every few dozen
        candles, not at each event (matching checks each frame's expiry
        itself, so what matches never depends on it); what reads the
        retained frames or counts them sweeps first.  With
        ``record_expired`` each is listed at the time dropping at each event
        would have given (see the module doc).
        """
        for stream in self._streams.values():
            if stream.now is not None:
                self._drop(stream, stream.now)

    def drop_expired(self, key: tuple[str, str], now: int) -> None:
        """Drop the frames of stream ``key`` that can no longer match at knowable time ``now``."""
        stream = self._streams.get(key)
        if stream is not None:
            self._drop(stream, now)

    def _drop(self, stream: _Stream, now: int) -> None:
        """Drop the stream's frames expired by ``now`` (and by its events in ``seen``, recorded).

        A recorded frame expires at the first of the stream's events since
        the last sweep that is past its expiry and those of the frames
        before it (``high``), or at ``now`` when none is: the times that
        dropping at each event, then at ``now``, would give.
        """
        refs = stream.refs
        head = first = stream.head
        n = len(refs)
        seen = stream.seen
        tf, span, grace = stream.tf, stream.span, stream.grace
        targets = stream.targets
        expired = None if seen is None else self.expired
        k = 0 if seen is None else len(seen)
        limit = seen[-1] if k and seen[-1] > now else now
        high = None  # the latest expiry of the frames dropped so far, and of the next one
        j = 0  # seen[j]: the first event past ``high``
        while head < n:
            ref = refs[head]
            a = ref.target_timestamp + tf
            b = ref.prediction_timestamp + span
            e = (a if a > b else b) + grace
            if high is None or e > high:
                high = e
            if high >= limit:
                break
            refs[head] = None  # free it now; compaction removes the slot
            head += 1
            if ref.target_timestamp in targets:  # its target candle has not closed (or it shares it)
                stream.forget_target(ref)
            if expired is not None:
                while j < k and seen[j] <= high:
                    j += 1
                expired.append((ref, seen[j] if j < k else now))
        if seen:
            seen.clear()
        if head != first:
            self.dropped += head - first
            stream.head = head
            if head > _COMPACT_AFTER and head * 2 > n:
                stream.compact()

    def drop_all_expired(self, now: int) -> None:
        """:meth:`drop_expired` for every stream."""
        for key in self._streams:
            self.drop_expired(key, now)

    def last_matches(self, symbol: str, timeframe: str) -> tuple[object, list[InferenceFrameReference]]:
        """``(event, frames)``: the stream's last event matched and its frames (``(None, [])`` before any)."""
        stream = self._streams.get((symbol, timeframe))
        if stream is None or stream.last_event is None:
            return None, []
        return stream.last_event, [] if stream.last_refs is NO_FRAME else list(stream.last_refs)

    def retained_frames(self) -> list[InferenceFrameReference]:
        """Every retained frame, by stream then prediction time (a copy)."""
        return [r for s in self._streams.values() for r in s.refs[s.head:]]
