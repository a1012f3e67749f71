"""The InferenceTrainingCoordinator: match predictions to the truth, deliver each pair exactly once.

Models register an :class:`~ettlib.coordinator.frames.InferenceFrameReference` at each
prediction.  The coordinator subscribes itself to the
:class:`~ettlib.replay.provider.DataProvider` (once per stream), and when the
truth becomes known it hands each (frame, event) pair to its
:class:`~ettlib.coordinator.subscriber.TrainingEventSubscriber` s:
``on_candle_completion(event, ref)`` once per frame whose target is the
candle (once with ``None`` where none), ``on_pivot_event(event, refs)`` once
with the frames made within ``pivot_lookback`` candles before the pivot's
bar.  It wires the parts (:mod:`ettlib.coordinator`): subscriptions,
matching and retention (no store), windows, delivery; and it keeps the
protocol below.

Exactly once, across crashes: the delivery protocol
---------------------------------------------------
Nothing is written per event.  The coordinator buffers delivered pairs and
dead letters, and every ``persist_every`` events, at the first event of a
*new knowable instant* (so every event of earlier instants, including the
inference steps that registered frames, is complete), it commits in **one
transaction** (see :mod:`ettlib.coordinator.persistence`):

1. the frames retained now, as the run's ``pending`` rows of
   ``inference_frames`` (replacing those of the previous commit: a few,
   what matching retains), and, with ``record_expired=True``, every frame
   that left memory since, as an ``expired`` row (written once);
2. the delivered pairs and dead letters, appended as columnar batches
   (buffered as short rows of atoms, one per pivot delivery; made columns
   at the flush): ``training_events`` has no key, because the protocol
   itself makes each pair unique (below);
3. a checkpoint (one UPDATE): ``resume_time`` (every event with a knowable
   time before it has been processed), the next seq and the id counter;
4. each subscriber's own state, on the same connection and in the same
   transaction: first its optional ``checkpoint(con)`` hook (write what you
   like), then its optional ``checkpoint_state()`` bytes, stored in
   ``subscriber_states`` under the subscriber's name.

After a crash (even SIGKILL) the database holds the state of the last
commit, consistently: the pairs recorded are exactly the pairs whose effects
the subscribers' checkpointed state contains.  ``resume=True`` reloads the
pending frames (all a resume needs of frames: an expired one can match
nothing more), counters and stored subscriber states; a subscriber with a
stored state gets it back through ``restore_state(state)`` when it first
subscribes (under the same name, before any event reaches it).  The driver
then restarts the replay at :attr:`InferenceTrainingCoordinator.resume_time`
(``engine.seek(resume_time - 1)``; events with an earlier knowable time are
ignored as already processed).  Deliveries made after the last commit are
made again -- and, because they were never committed, they are *not* repeats
of the committed state.  So:

- **exactly once** for a subscriber whose effects live in its
  ``checkpoint_state()`` or what its ``checkpoint(con)`` writes: the
  recorded pairs and the subscriber's state never disagree.  The training
  adapters (:mod:`ettlib.training.adapters`) checkpoint their whole learning
  state this way (weights, optimizer, queued pairs, undrained results), and
  :func:`~ettlib.experiment.runner.run_experiment` ``(resume=True)`` their
  runs' prequential scores too, so a killed experiment resumes bit-identically;
- the same holds only for what reaches a subscriber *through the
  coordinator*: a callback subscribed to the provider directly is not part
  of the protocol (its state is checkpointed mid-instant, at the first
  coordinator event of the instant);
- **at least once** for a subscriber with effects outside the transaction
  (a file written, a message sent): deliveries between the last commit and
  the crash happen again on resume.  Key such effects by
  ``(run_id, inference_id, event_key, subscriber)`` to make them idempotent.

Each pair is committed once: a commit holds only pairs of events before its
``resume_time``, numbered below its ``next_seq``; a resumed run handles only
events from ``resume_time`` on and numbers from ``next_seq``; and a new
coordinator refuses a ``run_id`` that already has state (unless ``resume``
or ``replace``).  A resume verifies it
(:func:`~ettlib.coordinator.persistence.check_pairs_before`: a stored pair at
or after the checkpoint, written behind the coordinator's back, is refused
loudly).  Frame ids must be unique within a run: ``new_inference_id()`` is
a counter that is part of the checkpoint; a repeated id among the retained
frames (or, with ``record_expired``, among all of them) is refused at the
flush.  The replay must also give the same events and frame ids again:
deterministic replay + deterministic model.

Isolation and threads
---------------------
A subscriber that raises is recorded in ``dead_letters`` (pair, event,
traceback), counted in ``failed``, and the other subscribers keep receiving;
``strict=True`` re-raises (as :class:`~ettlib.errors.SubscriberError`).
Every public method takes one re-entrant lock: frames may be registered from
one thread while events arrive on another.  Subscribers are called with the
lock held (they may call ``get_inference_data`` or register frames).

Examples
--------
>>> from ettlib.replay.provider import DataProvider
>>> from ettlib.replay.events import CandleCompletionEvent
>>> from ettlib.store import DuckDBStorage
>>> storage = DuckDBStorage(":memory:")
>>> provider = DataProvider(storage)
>>> coordinator = InferenceTrainingCoordinator(provider, storage)
>>> class Printer(TrainingEventSubscriber):
...     def on_candle_completion(self, event, inference_ref):
...         print(event.timestamp, inference_ref and inference_ref.inference_id)
>>> coordinator.subscribe_to_candle_completion(Printer(), "ETH/USDT", "1m")
>>> ref = InferenceFrameReference.for_prediction(
...     coordinator.new_inference_id(), "ETH/USDT", "1m", 600_000, context=10,
...     norm_params=(100.0, 1.0, 10.0, 1.0), predicted_action="BUY", confidence=0.6)
>>> coordinator.register_inference_frame(ref)
>>> provider.publish_candle(CandleCompletionEvent("ETH/USDT", "1m", 540_000, 600_000, 1, 1, 1, 1, 1))
540000 None
>>> provider.publish_candle(CandleCompletionEvent("ETH/USDT", "1m", 600_000, 660_000, 1, 1, 1, 1, 1))
600000 1
>>> c = coordinator.counters()
>>> c.registered, c.matched, c.delivered
(1, 1, 2)
>>> coordinator.close()
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ettlib.coordinator.delivery import DeliveryBuffer
from ettlib.coordinator.frames import InferenceFrameReference, check_registration
from ettlib.coordinator.matching import FrameIndex
from ettlib.coordinator.persistence import (
    Checkpoint,
    check_pairs_before,
    commit_flush,
    delete_run_state,
    load_checkpoint,
    load_pending_frames,
    load_subscriber_states,
    new_run_id,
    run_has_state,
)
from ettlib.coordinator.subscriber import Subscriptions, TrainingEventSubscriber, subscriber_name
from ettlib.coordinator.windows import InferenceData, WindowReader
from ettlib.errors import ConfigError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.times import format_ms

__all__ = [
    "new_run_id",
    "InferenceTrainingCoordinator",
    "TrainingEventSubscriber",
    "InferenceData",
    "CoordinatorCounters",
    "subscriber_name",
]


@dataclass(frozen=True, slots=True)
class CoordinatorCounters:
    """A snapshot of the coordinator's live counters.

    ``registered`` frames registered (this process); ``pending`` retained
    now; ``matched`` (frame, event) matches; ``expired`` frames dropped;
    ``delivered`` pairs delivered (rows of ``training_events``, including
    deliveries without a frame); ``failed`` pairs whose subscriber raised
    (rows of ``dead_letters``); ``events`` candle and pivot events handled.
    """

    registered: int
    pending: int
    matched: int
    expired: int
    delivered: int
    failed: int
    events: int


class InferenceTrainingCoordinator:
    """Matches registered frames to candle and pivot events; delivers pairs once.

    Parameters
    ----------
    data_provider
        The :class:`~ettlib.replay.provider.DataProvider` events come through.
    duckdb_storage
        A :class:`~ettlib.store.DuckDBStorage` (``read_window``,
        ``read_windows``, ``con``): windows are read from it and frames,
        pairs and checkpoints written to it.
    cache
        Optional object with ``window(symbol, timeframe, start, end, columns)
        -> CandleArrays | None`` (e.g. the replay's
        :class:`~ettlib.replay.cache.CandleCache`), tried before DuckDB.
    pivot_lookback
        Candles before a pivot bar whose frames it matches (default 30).
    retention
        Extra candles a frame is kept after its last possible match (default
        60); see the module doc.
    columns
        Columns returned by :meth:`get_inference_data` (default every candle
        column).
    run_id
        Key of this run's rows in the store (default: a new unique id,
        ``run-`` and 12 hex digits; see :attr:`run_id`).
    strict
        Re-raise subscriber errors instead of dead-lettering them.
    persist_every
        Flush after this many events (at the next instant boundary) and at
        :meth:`close`.
    clock
        Optional clock (``now() -> ms``; default the provider's ``clock``, set
        by a replay or live feed).  While one is known, a frame registered at
        ``now()`` must predict at ``now()``, and no window is read before it
        is knowable.  No wall clock is ever read under replay.
    late_registration_ms
        How far a frame's ``prediction_timestamp`` may lie behind the clock
        when it is registered (default 0: under replay a frame is registered
        at the instant it predicts; a live model predicting in another thread
        needs the time a prediction takes).
    resume
        Continue ``run_id`` from its last checkpoint in the store: pending
        frames and counters now, each subscriber's stored state when it
        subscribes (``restore_state``).
    replace
        Delete ``run_id``'s stored state first.  Without ``resume`` or
        ``replace``, a ``run_id`` that already has state is refused.
    record_expired
        Also record every frame that leaves memory in ``inference_frames``
        (``status = 'expired'``, ``expired_at``): an audit of every
        prediction.  Without it the table holds the frames pending at the
        last flush: what a resume needs (see the module doc).
    """

    def __init__(self, data_provider, duckdb_storage, *, cache=None, pivot_lookback: int = 30,
                 retention: int = 60, columns: Sequence[str] = CANDLE_COLUMNS, run_id: str | None = None,
                 strict: bool = False, persist_every: int = 10_000, clock=None,
                 late_registration_ms: int = 0, resume: bool = False, replace: bool = False,
                 record_expired: bool = False):
        for name, value, low in (("pivot_lookback", pivot_lookback, 0), ("retention", retention, 0),
                                 ("persist_every", persist_every, 1),
                                 ("late_registration_ms", late_registration_ms, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an int >= {low}, got {value!r}")
        if run_id is None:
            if resume:
                raise ConfigError("resume=True needs the run_id of the run to resume")
            run_id = new_run_id()
        if not isinstance(run_id, str) or not run_id:
            raise ConfigError(f"run_id must be a non-empty str, got {run_id!r}")
        if resume and replace:
            raise ConfigError("resume and replace exclude each other")
        for c in columns:
            if c not in CANDLE_COLUMNS:
                raise UnknownNameError("column", c, CANDLE_COLUMNS)
        self.data_provider = data_provider
        self.duckdb_storage = duckdb_storage
        self.pivot_lookback = pivot_lookback
        self.retention = retention
        self.run_id = run_id
        self.strict = bool(strict)
        self.persist_every = persist_every
        self.clock = clock
        self.late_registration_ms = late_registration_ms
        self.record_expired = bool(record_expired)
        self._con = duckdb_storage.con
        self._lock = threading.RLock()
        self._windows = WindowReader(duckdb_storage, cache, columns=columns, now=self._clock_time,
                                     lock=self._lock)
        self.columns = self._windows.columns
        # the reader's methods themselves (the methods below document them): no extra call per window
        self.get_inference_data = self._windows.get
        self.get_inference_data_batch = self._windows.get_batch
        self._index = FrameIndex(pivot_lookback, retention, record_expired=self.record_expired)
        self._buffer = DeliveryBuffer(strict=self.strict)
        self._subs = Subscriptions(data_provider, self._on_candle, self._on_pivot, run_id=run_id)
        self._flushed_events = 0  # self._events at the last flush
        self._time: int | None = None  # the latest knowable time handled
        self._next_id = 1
        self._stored_pending_from: int | None = None  # the stored pending rows' first prediction time
        self._stored_states: set[str] = set()  # subscribers with a row in subscriber_states
        self.resume_time: int | None = None
        self._loaded = self._events = 0  # frames reloaded by a resume; events handled
        self._closed = False

        if replace:
            delete_run_state(self._con, run_id)
        elif resume:
            self._load(run_id)
        elif run_has_state(self._con, run_id):
            raise ConfigError(
                f"run {run_id!r} already has frames or delivered pairs in {getattr(duckdb_storage, 'path', 'the store')}; "
                "pass resume=True to continue it, replace=True to start it over, or a new run_id"
            )

    @property
    def cache(self):
        """The window cache tried before DuckDB (given at construction; a session passes its replay's)."""
        return self._windows.cache

    # -- resume ----------------------------------------------------------------

    def _load(self, run_id: str) -> None:
        checkpoint = load_checkpoint(self._con, run_id)
        if checkpoint is None:
            return
        check_pairs_before(self._con, run_id, checkpoint)
        self.resume_time = checkpoint.resume_time
        self._time = checkpoint.resume_time - 1
        self._buffer.seq = checkpoint.next_seq
        self._next_id = checkpoint.next_inference_id
        self._subs.stored = load_subscriber_states(self._con, run_id)
        self._stored_states = set(self._subs.stored)
        pending = load_pending_frames(self._con, run_id)
        for ref in pending:
            self._index.add(ref, with_target=ref.target_close_time >= checkpoint.resume_time)
        self._loaded = len(pending)
        self._stored_pending_from = min((r.prediction_timestamp for r in pending), default=None)

    # -- ids, subscriptions --------------------------------------------------------

    def new_inference_id(self) -> int:
        """A new int id, unique in this run (part of the checkpoint: resumes continue it)."""
        lock = self._lock  # acquire/release: half the cost of a with block, on the hot path
        lock.acquire()
        value = self._next_id
        self._next_id = value + 1
        lock.release()
        return value

    def subscribe_to_candle_completion(self, subscriber, symbol: str, timeframe: str, *, name: str | None = None) -> None:
        """Call ``subscriber.on_candle_completion`` for each candle of the stream (refused once closed)."""
        with self._lock:
            self._refuse_if_closed(f"a subscription to candles of {symbol} {timeframe}")
            self._subs.add_candles(subscriber, symbol, timeframe, name)

    def subscribe_to_pivot_events(self, subscriber, symbol: str, timeframe: str, pivot_types: Iterable[str],
                                  *, name: str | None = None) -> None:
        """Call ``subscriber.on_pivot_event`` for each confirmed pivot of ``pivot_types`` (refused once closed)."""
        with self._lock:
            self._refuse_if_closed(f"a subscription to pivots of {symbol} {timeframe}")
            self._subs.add_pivots(subscriber, symbol, timeframe, pivot_types, name)

    def _refuse_if_closed(self, what: str) -> None:
        """A :class:`~ettlib.errors.ConfigError` naming ``what`` once closed (call it under the lock).

        A closed coordinator writes nothing more: what it matched or
        delivered after its close would be lost to the store, and a resume.
        """
        if self._closed:
            raise ConfigError(f"coordinator of run {self.run_id!r} is closed: {what} would be neither "
                              "matched nor stored; open a new session, or resume the run")

    # -- frames ------------------------------------------------------------------------

    def _clock_time(self) -> int | None:
        clock = self.clock or getattr(self.data_provider, "clock", None)
        return None if clock is None else clock.now()

    def register_inference_frame(self, ref: InferenceFrameReference) -> None:
        """Retain ``ref`` until it can no longer match; persist it at the next flush.

        While a clock is known (``clock=``, or the provider's), the frame
        must predict at its time ``now`` (live, at most ``late_registration_ms``
        behind it): a later frame would predict from the future, a backdated
        one could have seen what followed its prediction time.  Either is a
        :class:`~ettlib.errors.LookAheadError` naming both times.  (The frame
        itself guarantees that its window closed by its prediction time.)
        A closed coordinator refuses frames (a :class:`~ettlib.errors.ConfigError`):
        it receives no more events and writes nothing, so the frame would be
        neither matched nor stored.
        """
        if type(ref) is not InferenceFrameReference and not isinstance(ref, InferenceFrameReference):
            raise ConfigError(f"expected an InferenceFrameReference, got {type(ref).__name__}")
        clock = self.clock
        if clock is None:
            clock = getattr(self.data_provider, "clock", None)
        now = None if clock is None else clock.now()
        if now is not None:
            t = ref.prediction_timestamp
            if t > now or t < now - self.late_registration_ms:
                check_registration(ref, now, self.late_registration_ms)  # raises
        lock = self._lock
        lock.acquire()
        try:
            if self._closed:  # under the lock: a close between the check and the add loses nothing
                self._refuse_if_closed(f"frame {ref.inference_id!r} ({ref.symbol} {ref.timeframe}, "
                                       f"predicted at {format_ms(ref.prediction_timestamp)})")
            self._index.add(ref)
        finally:
            lock.release()

    # -- events ------------------------------------------------------------------------

    def _advance(self, t: int) -> bool:  # (inlined in _on_candle)
        """Move the coordinator's time to ``t``; False for an event already processed."""
        if self.resume_time is not None and t < self.resume_time:
            return False
        latest = self._time
        if latest is None or t > latest:
            if self._events - self._flushed_events >= self.persist_every:
                self._flush(resume_time=t)
            self._time = t
        return True

    def _on_candle(self, event: CandleCompletionEvent) -> None:
        lock = self._lock
        lock.acquire()
        try:
            t = event.close_time
            latest = self._time
            if latest is None or t > latest:  # a new instant: _advance, inlined
                if self._events - self._flushed_events >= self.persist_every:
                    self._flush(resume_time=t)
                self._time = t
            elif self.resume_time is not None and t < self.resume_time:
                return  # processed before the checkpoint resumed from
            self._events += 1
            key = (event.symbol, event.timeframe)
            refs = self._index.match_candle(event, key)
            subs = self._subs.candles.get(key)
            if subs:  # an immutable tuple
                self._buffer.deliver_candles(subs, event, refs)
        finally:
            lock.release()

    def _on_pivot(self, event: PivotEvent) -> None:
        with self._lock:
            if not self._advance(event.confirmed_at):
                return
            self._events += 1
            refs = self._index.match_pivot(event)
            subs = self._subs.pivots.get((event.symbol, event.timeframe, event.pivot_type), ())
            for label, method in tuple(subs):
                self._buffer.deliver_pivot(label, method, event, refs)

    # -- windows -----------------------------------------------------------------------

    def get_inference_data(self, ref: InferenceFrameReference) -> InferenceData | None:
        """The rows of ``[ref.data_range_start, ref.data_range_end]``, normalized; None if none.

        From the cache when it covers the range, else from DuckDB (the same
        bits).  Never a row after ``data_range_end``; while a clock is known,
        a :class:`~ettlib.errors.LookAheadError` for a window not closed by
        ``now()``.  A new float32 array each call (see :mod:`ettlib.coordinator.windows`).
        """
        return self._windows.get(ref)

    def get_inference_data_batch(self, refs: Sequence[InferenceFrameReference]) -> list[InferenceData | None]:
        """:meth:`get_inference_data` for many frames; uncached windows in one query per stream."""
        return self._windows.get_batch(refs)

    # -- persistence -------------------------------------------------------------------

    def _flush(self, resume_time: int) -> None:
        index = self._index
        if self._time is not None:
            index.drop_all_expired(self._time)
        pairs, pivot_pairs, dead = self._buffer.take()
        expired, index.expired = index.expired, []
        pending = index.retained_frames()
        commit_flush(self._con, self.run_id, pending=pending, stored_pending_from=self._stored_pending_from,
                     expired=expired, pairs=pairs, pivot_pairs=pivot_pairs, dead_letters=dead,
                     checkpoint=Checkpoint(resume_time, self._buffer.seq, self._next_id),
                     hooks=self._subs.hooks(), states=self._subs.state_getters(),
                     stored_states=self._stored_states)
        self._stored_pending_from = min((r.prediction_timestamp for r in pending), default=None)
        self._flushed_events = self._events

    def flush(self) -> None:
        """Commit everything buffered, with a checkpoint after the current instant.

        Call it between instants (a resume restarts after the latest event
        time handled); the coordinator flushes by itself as well.  On a
        closed coordinator it does nothing: its close committed the buffer,
        or (``flush=False``) dropped it on purpose, and a checkpoint written
        now would place the resume after the dropped pairs, which would then
        never be delivered again.
        """
        with self._lock:
            if self._closed:
                return
            resume = (self._time + 1) if self._time is not None else (self.resume_time or 0)
            self._flush(resume_time=resume)

    def close(self, *, flush: bool = True) -> None:
        """Flush, and stop receiving events (idempotent).

        ``flush=False`` drops what was buffered since the last commit instead
        (an interrupted run: the store keeps its last consistent commit, and
        a resume delivers the dropped pairs again).
        """
        with self._lock:
            if self._closed:
                return
            if flush:
                self.flush()
            else:
                self._buffer.take()
                self._index.expired = []
            self._subs.unsubscribe_all()
            self._closed = True

    def __enter__(self) -> InferenceTrainingCoordinator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- counters ----------------------------------------------------------------------

    def counters(self) -> CoordinatorCounters:
        """A frozen snapshot of the live counters."""
        with self._lock:
            index, buffer = self._index, self._buffer
            index.sweep()  # the frames that can no longer match, dropped now
            return CoordinatorCounters(index.added - self._loaded, index.pending, index.matched, index.dropped,
                                       buffer.delivered, buffer.failed, self._events)

    def last_matches(self, symbol: str, timeframe: str) -> tuple[object, list[InferenceFrameReference]]:
        """``(event, frames)``: the stream's last candle or pivot event handled and the frames it matched.

        ``(None, [])`` before the stream's first event.  What a stepper shows
        as "the pairs the last event matched".
        """
        with self._lock:
            return self._index.last_matches(symbol, timeframe)

    def retained_frames(self) -> list[InferenceFrameReference]:
        """Every retained frame, by stream then prediction time (a copy)."""
        with self._lock:
            self._index.sweep()
            return self._index.retained_frames()
