"""The InferenceTrainingCoordinator: match predictions to the truth, exactly once.

Models register an :class:`~ettlib.coordinator.frames.InferenceFrameReference` at each
prediction.  The coordinator subscribes itself to the
:class:`~ettlib.replay.provider.DataProvider` (once per stream), and when the
truth becomes known it hands each (frame, event) pair to its
:class:`TrainingEventSubscriber` s:

Matching (``docs/design.md``)
------------------------
- A candle completion of ``(symbol, timeframe, timestamp)`` matches every
  retained frame with that symbol, timeframe and ``target_timestamp``;
  ``on_candle_completion(event, ref)`` is called once per matching frame, or
  once with ``None`` where none matched.  O(1): a dict keyed by target.
- A pivot confirmed at bar time ``t_p`` matches every retained frame of the
  stream with ``prediction_timestamp`` in ``[t_p - pivot_lookback * tf, t_p]``;
  ``on_pivot_event(event, refs)`` is called once with all of them (an empty
  list where none matched).  O(log n + matches): a list per stream sorted by
  prediction time, searched with ``bisect`` (out-of-order registrations from
  live threads are inserted in place).

Retention
---------
A frame is *retained* -- can match -- while the knowable time ``T`` of an
event satisfies ``T <= expires_at(ref)`` where::

    expires_at = max(target close time, prediction_timestamp + pivot_lookback * tf)
                 + retention * tf

i.e. until its target candle has closed and no pivot bar it could match is
left, plus ``retention`` candles of grace for late confirmations (a level-3
pivot is confirmed many bars after its bar).  The rule is exact and does not
depend on when memory is cleaned: frames past it are dropped from memory as
the stream's events advance (``O(1)`` amortized) and marked ``expired`` (with
``expired_at``) in ``inference_frames`` at the next flush.  Memory is bounded
by the frames registered within ``pivot_lookback + retention`` candles (plus
the prediction horizon).

Exactly once, across crashes: the delivery protocol
---------------------------------------------------
Nothing is written per event.  The coordinator buffers new frames, expiries,
delivered pairs and dead letters, and every ``persist_every`` events, at the
first event of a *new knowable instant* (so every event of earlier instants,
including the inference steps that registered frames, is complete), it
commits in **one transaction** (see :mod:`ettlib.coordinator.persistence`):

1. the buffered frames, expiries, pairs and dead letters;
2. a checkpoint: ``resume_time`` (every event with a knowable time before it
   has been processed), the delivery sequence number and the id counter;
3. each subscriber's own state, on the same connection and in the same
   transaction: first its optional ``checkpoint(con)`` hook (write what you
   like), then its optional ``checkpoint_state()`` bytes, stored in
   ``subscriber_states`` under the subscriber's name.

After a crash (even SIGKILL) the database holds the state of the last
commit, consistently: the pairs recorded are exactly the pairs whose effects
the subscribers' checkpointed state contains.  ``resume=True`` reloads the
pending frames, counters and stored subscriber states; a subscriber with a
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

``training_events`` has a primary key on that tuple, so a pair committed
twice (a replay restarted before ``resume_time`` in a fresh coordinator) is
refused loudly instead of being counted twice.  The replay must also give
the same events and frame ids again (``new_inference_id()`` is a counter that
is part of the checkpoint): deterministic replay + deterministic model.

Isolation
---------
A subscriber that raises is recorded in ``dead_letters`` (pair, event,
traceback), counted in ``failed``, and the other subscribers keep receiving;
``strict=True`` re-raises (as :class:`~ettlib.errors.SubscriberError`).

Threads
-------
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

import json
import math
import threading
import traceback
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from ettlib.replay.cache import CandleCache
from ettlib.store.candles import CandleArrays
from ettlib.errors import ConfigError, LookAheadError, SubscriberError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent, candle_key, event_key
from ettlib.coordinator.persistence import (
    Checkpoint,
    commit_flush,
    delete_run_state,
    load_checkpoint,
    load_pending_frames,
    load_subscriber_states,
    run_has_state,
)
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.normalization import ColumnNormalizer
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.timeframes import TIMEFRAMES, validate_timeframe
from ettlib.times import format_ms

__all__ = [
    "new_run_id",
    "InferenceTrainingCoordinator",
    "TrainingEventSubscriber",
    "InferenceData",
    "CoordinatorCounters",
    "subscriber_name",
]


class TrainingEventSubscriber:
    """What a training adapter implements (both methods default to no-ops).

    The return value of a callback, if a number, is stored as the pair's
    ``loss`` in ``training_events``; if a mapping, as ``metrics`` (JSON),
    with its ``"loss"`` entry, if any, as ``loss``.

    Optional: ``subscriber_name`` (a class or instance attribute; default the
    class name) identifies the subscriber in ``training_events`` and must be
    stable across a resume.  Two ways to make a subscriber's state part of
    the coordinator's flush transaction (see the module doc), so that a
    resumed run continues exactly where the committed pairs stop:

    - ``checkpoint_state() -> bytes | None`` / ``restore_state(state)``: the
      coordinator stores the bytes in ``subscriber_states`` at every flush
      and, when it was made with ``resume=True``, hands them back to
      ``restore_state`` once, when the subscriber first subscribes (under
      the same name).  The simple way: a learner returns its whole state.
    - ``checkpoint(con)``: write anything on the coordinator's connection,
      inside the transaction (hooks run before ``checkpoint_state``).

    Examples
    --------
    >>> class Counter(TrainingEventSubscriber):
    ...     def __init__(self):
    ...         self.seen = 0
    ...     def on_candle_completion(self, event, inference_ref):
    ...         self.seen += 1
    ...     def checkpoint_state(self):
    ...         return str(self.seen).encode()
    ...     def restore_state(self, state):
    ...         self.seen = int(state)
    >>> counter = Counter()
    >>> counter.restore_state(counter.checkpoint_state()); counter.seen
    0
    """

    def on_candle_completion(self, event: CandleCompletionEvent, inference_ref: InferenceFrameReference | None):
        """The candle ``event`` closed; ``inference_ref`` predicted it (or ``None``)."""
        return None

    def on_pivot_event(self, event: PivotEvent, inference_refs: list[InferenceFrameReference]):
        """The pivot ``event`` was confirmed; ``inference_refs`` were made near its bar."""
        return None

    def checkpoint(self, con) -> None:
        """Persist state on ``con`` (inside the coordinator's transaction)."""
        return None

    def checkpoint_state(self) -> bytes | None:
        """The subscriber's state, stored with each flush (``None``: nothing to store)."""
        return None

    def restore_state(self, state: bytes) -> None:
        """Continue from ``state``, as :meth:`checkpoint_state` returned it at the last commit."""
        raise ConfigError(
            f"{type(self).__name__} has a stored state but does not implement restore_state(state)"
        )


def new_run_id(prefix: str = "run") -> str:
    """A new unique run id: ``prefix``, a dash and 12 hex digits.

    >>> len(new_run_id()), new_run_id("explore").startswith("explore-")
    (16, True)
    """
    import uuid

    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def subscriber_name(subscriber: object) -> str:
    """``subscriber.subscriber_name`` if set, else the class's qualified name."""
    name = getattr(subscriber, "subscriber_name", None)
    return name if isinstance(name, str) and name else type(subscriber).__qualname__


@dataclass(frozen=True, slots=True)
class InferenceData:
    """A frame's input window, re-read by reference and normalized.

    ``timestamps`` (int64 open times, exactly the stored rows of
    ``[ref.data_range_start, ref.data_range_end]``), ``values`` (float32
    ``[n, len(columns)]``, normalized with ``ref.norm_params``; NaN -> 0),
    ``columns`` and the ``ref`` itself.
    """

    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]
    ref: InferenceFrameReference

    def __len__(self) -> int:
        return len(self.timestamps)

    def column(self, name: str) -> np.ndarray:
        """One normalized column (a view)."""
        return CandleArrays.column(self, name)  # same lookup rule


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


class _Stream:
    """Retained frames of one (symbol, timeframe), sorted by prediction time."""

    __slots__ = ("times", "refs", "head", "targets", "tf", "span", "grace")

    def __init__(self, tf: int, span: int, grace: int):
        self.times: list[int] = []
        self.refs: list[InferenceFrameReference] = []
        self.head = 0
        #: target_timestamp -> a frame, or a list of frames sharing the target
        self.targets: dict[int, object] = {}
        self.tf = tf  # timeframe length, ms
        self.span = span  # pivot lookback, ms
        self.grace = grace  # retention, ms

    def expires_at(self, ref: InferenceFrameReference) -> int:
        """Last knowable time at which ``ref`` can match (see the module doc)."""
        a = ref.target_timestamp + self.tf
        b = ref.prediction_timestamp + self.span
        return (a if a > b else b) + self.grace

    def add(self, ref: InferenceFrameReference) -> None:
        t = ref.prediction_timestamp
        if not self.times or t >= self.times[-1]:
            self.times.append(t)
            self.refs.append(ref)
        else:  # out of order (live threads): keep sorted, stable for equal times
            i = bisect_right(self.times, t, self.head)
            self.times.insert(i, t)
            self.refs.insert(i, ref)

    def compact(self) -> None:
        if self.head > 1024 and self.head * 2 > len(self.times):
            del self.times[: self.head]
            del self.refs[: self.head]
            self.head = 0

    def __len__(self) -> int:
        return len(self.times) - self.head


def _loss_and_metrics(result) -> tuple[float | None, str | None]:
    if result is None:
        return None, None
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
        by a replay or live feed).  While one is known, the trust boundary
        holds (see "Time" in the module doc): a frame registered at ``now()``
        must predict at ``now()``, and no window is read before it is
        knowable.  Matching and retention run on the knowable times of the
        events handled; no wall clock is ever read under replay.
    late_registration_ms
        How far a frame's ``prediction_timestamp`` may lie behind the clock
        when it is registered (default 0: under replay a frame is registered
        at the instant it predicts).  A live feed whose model predicts in
        another thread needs the time a prediction takes (the clock moves on
        with each pushed candle meanwhile); a frame later than this is refused.
    resume
        Continue ``run_id`` from its last checkpoint in the store: pending
        frames and counters now, each subscriber's stored state when it
        subscribes (``restore_state``).
    replace
        Delete ``run_id``'s stored state first.  Without ``resume`` or
        ``replace``, a ``run_id`` that already has state is refused.
    """

    def __init__(
        self,
        data_provider,
        duckdb_storage,
        *,
        cache=None,
        pivot_lookback: int = 30,
        retention: int = 60,
        columns: Sequence[str] = CANDLE_COLUMNS,
        run_id: str | None = None,
        strict: bool = False,
        persist_every: int = 10_000,
        clock=None,
        late_registration_ms: int = 0,
        resume: bool = False,
        replace: bool = False,
    ):
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
        columns = CANDLE_COLUMNS if tuple(columns) == CANDLE_COLUMNS else tuple(columns)  # the cache's object
        for c in columns:
            if c not in CANDLE_COLUMNS:
                raise UnknownNameError("column", c, CANDLE_COLUMNS)
        self.data_provider = data_provider
        self.duckdb_storage = duckdb_storage
        self._cache = cache
        self.pivot_lookback = pivot_lookback
        self.retention = retention
        self.columns = columns
        self._normalize = ColumnNormalizer(columns)
        self.run_id = run_id
        self.strict = bool(strict)
        self.persist_every = persist_every
        self.clock = clock
        self.late_registration_ms = late_registration_ms
        self._con = duckdb_storage.con
        self._lock = threading.RLock()
        self._subscribers: dict[str, object] = {}
        self._stored_states: dict[str, bytes] = {}  # resume: handed back at subscription
        self._candle_subs: dict[tuple[str, str], tuple[tuple[str, object], ...]] = {}
        self._pivot_subs: dict[tuple[str, str, str], list[tuple[str, object]]] = {}
        self._provider_subs: dict[tuple, object] = {}
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._pending = 0
        self._new_frames: list[InferenceFrameReference] = []
        self._expired: list[tuple[str, int]] = []
        self._pairs: list[tuple] = []
        self._dead: list[tuple] = []
        self._events_since_flush = 0
        self._now: int | None = None
        self._seq = 0
        self._next_id = 1
        self.resume_time: int | None = None
        self._registered = self._matched = self._expired_n = 0
        self._delivered = self._failed = self._events = 0
        self._closed = False
        #: (symbol, timeframe) -> (the last candle or pivot event of the stream, the frames it matched)
        self._last_matches: dict[tuple[str, str], tuple[object, tuple]] = {}

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
        return self._cache

    # -- resume ----------------------------------------------------------------

    def _load(self, run_id: str) -> None:
        checkpoint = load_checkpoint(self._con, run_id)
        if checkpoint is None:
            return
        self.resume_time = checkpoint.resume_time
        self._now = checkpoint.resume_time - 1
        self._seq = checkpoint.next_seq
        self._next_id = checkpoint.next_inference_id
        self._stored_states = load_subscriber_states(self._con, run_id)
        for ref in load_pending_frames(self._con, run_id):
            self._index(ref, with_target=ref.target_close_time >= checkpoint.resume_time)

    # -- ids, subscriptions --------------------------------------------------------

    def new_inference_id(self) -> int:
        """A new int id, unique in this run (part of the checkpoint: resumes continue it)."""
        with self._lock:
            value = self._next_id
            self._next_id += 1
            return value

    def _name(self, subscriber, name: str | None) -> str:
        name = name or subscriber_name(subscriber)
        known = self._subscribers.get(name)
        if known is not None and known is not subscriber:
            raise ConfigError(
                f"another subscriber is already named {name!r}; give subscriber_name or name= "
                "(names key the delivered pairs and must be stable across a resume)"
            )
        if known is None:
            self._restore(name, subscriber)
        self._subscribers[name] = subscriber
        return name

    def _restore(self, name: str, subscriber) -> None:
        """Hand a resumed run's stored state of ``name`` to ``subscriber.restore_state`` (once)."""
        state = self._stored_states.pop(name, None)
        if state is None:
            return
        restore = getattr(subscriber, "restore_state", None)
        try:
            if not callable(restore):
                raise ConfigError(
                    f"run {self.run_id!r} has a stored state for subscriber {name!r}, but "
                    f"{type(subscriber).__name__} has no restore_state(state) method"
                )
            restore(state)
        except BaseException:
            self._stored_states[name] = state  # not consumed: a corrected subscriber may try again
            raise

    def subscribe_to_candle_completion(self, subscriber, symbol: str, timeframe: str, *, name: str | None = None) -> None:
        """Call ``subscriber.on_candle_completion`` for each candle of the stream."""
        if not callable(getattr(subscriber, "on_candle_completion", None)):
            raise ConfigError(f"{subscriber!r} has no on_candle_completion method")
        with self._lock:
            key = (symbol, validate_timeframe(timeframe))
            if key not in self._provider_subs:
                self._provider_subs[key] = self.data_provider.subscribe_candle_completion(
                    self._on_candle, symbol, timeframe
                )
            label = self._name(subscriber, name)
            entries = self._candle_subs.get(key, ())
            if any(n == label for n, _ in entries):
                raise ConfigError(f"{label!r} is already subscribed to candles of {symbol} {timeframe}")
            # a new tuple (copy on write): delivery iterates it without copying
            self._candle_subs[key] = (*entries, (label, subscriber.on_candle_completion))

    def subscribe_to_pivot_events(
        self, subscriber, symbol: str, timeframe: str, pivot_types: Iterable[str], *, name: str | None = None
    ) -> None:
        """Call ``subscriber.on_pivot_event`` for each confirmed pivot of ``pivot_types``."""
        if not callable(getattr(subscriber, "on_pivot_event", None)):
            raise ConfigError(f"{subscriber!r} has no on_pivot_event method")
        if isinstance(pivot_types, str):
            pivot_types = [pivot_types]
        types = list(dict.fromkeys(pivot_types))
        with self._lock:
            timeframe = validate_timeframe(timeframe)
            new = [t for t in types if (symbol, timeframe, t) not in self._provider_subs]
            if new or not types:
                handle = self.data_provider.subscribe_pivot_events(self._on_pivot, symbol, timeframe, new)
                for t in new:
                    self._provider_subs[(symbol, timeframe, t)] = handle
            label = self._name(subscriber, name)
            for t in types:
                entries = self._pivot_subs.setdefault((symbol, timeframe, t), [])
                if not any(n == label for n, _ in entries):
                    entries.append((label, subscriber.on_pivot_event))

    # -- frames ------------------------------------------------------------------------

    def _stream(self, symbol: str, timeframe: str) -> _Stream:
        stream = self._streams.get((symbol, timeframe))
        if stream is None:
            tf = TIMEFRAMES[timeframe]
            stream = self._streams[(symbol, timeframe)] = _Stream(
                tf, self.pivot_lookback * tf, self.retention * tf
            )
        return stream

    def _index(self, ref: InferenceFrameReference, *, with_target: bool = True) -> None:
        self._pending += 1
        stream = self._stream(ref.symbol, ref.timeframe)
        stream.add(ref)
        if with_target:
            targets = stream.targets
            key = ref.target_timestamp
            held = targets.get(key)
            if held is None:
                targets[key] = ref
            elif isinstance(held, list):
                held.append(ref)
            else:
                targets[key] = [held, ref]

    def _now_of_clock(self) -> int | None:
        clock = self.clock
        if clock is None:
            clock = getattr(self.data_provider, "clock", None)
        return None if clock is None else clock.now()

    def register_inference_frame(self, ref: InferenceFrameReference) -> None:
        """Retain ``ref`` until it can no longer match; persist it at the next flush.

        While a clock is known (``clock=``, or the provider's, set by a replay
        or live feed), ``ref.prediction_timestamp`` must be the clock's time
        ``now`` (or, live, at most ``late_registration_ms`` behind it): a
        frame from later than ``now`` would predict from the future, an
        earlier (backdated) one could have seen what happened after its
        prediction time.  Either is a :class:`~ettlib.errors.LookAheadError`
        naming both times.  (The frame itself guarantees that its window
        closed by its prediction time.)
        """
        if type(ref) is not InferenceFrameReference and not isinstance(ref, InferenceFrameReference):
            raise ConfigError(f"expected an InferenceFrameReference, got {type(ref).__name__}")
        now = self._now_of_clock()
        if now is not None:
            t = ref.prediction_timestamp
            if t > now or t < now - self.late_registration_ms:
                self._refuse_registration(ref, now)
        with self._lock:
            # as _index (inlined: the replay hot path)
            stream = self._streams.get((ref.symbol, ref.timeframe))
            if stream is None:
                stream = self._stream(ref.symbol, ref.timeframe)
            times = stream.times
            t = ref.prediction_timestamp
            if not times or t >= times[-1]:
                times.append(t)
                stream.refs.append(ref)
            else:
                stream.add(ref)
            targets = stream.targets
            key = ref.target_timestamp
            held = targets.get(key)
            if held is None:
                targets[key] = ref
            elif type(held) is list:
                held.append(ref)
            else:
                targets[key] = [held, ref]
            self._pending += 1
            self._new_frames.append(ref)
            self._registered += 1

    def _refuse_registration(self, ref: InferenceFrameReference, now: int) -> None:
        t = ref.prediction_timestamp
        if t > now:
            why = "after now: a frame cannot be registered before the instant it predicts at"
        else:
            allowed = (f"more than the late-registration tolerance of {self.late_registration_ms} ms "
                       if self.late_registration_ms else "")
            why = (f"{allowed}before now: a frame registered at {format_ms(now)} must predict at "
                   f"{format_ms(now)} (a backdated frame could have seen what happened after its "
                   "prediction time)")
        raise LookAheadError(
            f"frame {ref.inference_id!r}: prediction_timestamp {format_ms(t)} ({t}) is {why}; "
            f"the clock reads {format_ms(now)} ({now})")

    def _drop(self, stream: _Stream, now: int) -> None:
        refs = stream.refs
        head = stream.head
        n = len(refs)
        if head >= n:
            return
        tf, span, grace = stream.tf, stream.span, stream.grace
        first = head
        targets = stream.targets
        expired = self._expired
        while head < n:
            ref = refs[head]
            a = ref.target_timestamp + tf
            b = ref.prediction_timestamp + span
            if (a if a > b else b) + grace >= now:
                break
            refs[head] = None  # free it now; compaction removes the slot
            head += 1
            # forget it: drop it from the target index, record its expiry
            key = ref.target_timestamp
            held = targets.get(key)
            if held is ref:
                del targets[key]
            elif type(held) is list and ref in held:
                held.remove(ref)
                if not held:
                    del targets[key]
            expired.append((ref.inference_id, now))
        if head != first:
            dropped = head - first
            self._pending -= dropped
            self._expired_n += dropped
            stream.head = head
            if head > 1024 and head * 2 > n:
                stream.compact()

    # -- events ------------------------------------------------------------------------

    def _advance(self, t: int) -> bool:
        """Move the coordinator's time to ``t``; False for an event already processed."""
        if self.resume_time is not None and t < self.resume_time:
            return False
        now = self._now
        if now is None or t > now:
            if self._events_since_flush >= self.persist_every:
                self._flush(resume_time=t)
            self._now = t
        return True

    def _dead_letter(self, exc, label, method, event, ids, kind, event_key, t, seq) -> None:
        """Record a failed delivery (one row per frame); re-raise in strict mode."""
        tb = traceback.format_exc()
        error = f"{type(exc).__name__}: {exc}"
        for iid in ids:
            self._dead.append((label, iid, kind, event_key, repr(event), error, tb, t, seq))
        self._failed += len(ids)
        if self.strict:
            raise SubscriberError(
                f"subscriber {label!r} raised {error} on {event!r}", event=event, callback=method
            ) from exc

    def _deliver_one(self, label, method, event, ref, event_key, t) -> None:
        """A candle pair: the fast path of :meth:`_deliver`."""
        seq = self._seq
        self._seq = seq + 1
        try:
            result = method(event, ref)
        except Exception as exc:
            iid = "" if ref is None else str(ref.inference_id)
            self._dead_letter(exc, label, method, event, [iid], "candle", event_key, t, seq)
            return
        # The frame's id as is (int or str; None for no frame): made text at the flush.
        iid = None if ref is None else ref.inference_id
        if result is None:
            self._pairs.append((iid, "candle", event_key, label, t, seq, None, None))
        else:
            loss, metrics = _loss_and_metrics(result)
            self._pairs.append((iid, "candle", event_key, label, t, seq, loss, metrics))
        self._delivered += 1

    def _deliver(self, label, method, event, arg, refs, kind, event_key, t) -> None:
        seq = self._seq
        self._seq += 1
        try:
            result = method(event, arg)
        except Exception as exc:
            ids = [str(r.inference_id) for r in refs] or [""]
            self._dead_letter(exc, label, method, event, ids, kind, event_key, t, seq)
            return
        ids = [r.inference_id for r in refs] or [None]  # made text at the flush
        loss, metrics = _loss_and_metrics(result)
        for iid in ids:
            self._pairs.append((iid, kind, event_key, label, t, seq, loss, metrics))
        self._delivered += len(ids)

    def _on_candle(self, event: CandleCompletionEvent) -> None:
        with self._lock:
            t = event.close_time
            now = self._now
            if now is None or t > now or self.resume_time is not None:
                if not self._advance(t):
                    return
            self._events += 1
            self._events_since_flush += 1
            symbol, timeframe = event.symbol, event.timeframe
            stream_key = (symbol, timeframe)
            stream = self._streams.get(stream_key)
            held = None if stream is None else stream.targets.pop(event.timestamp, None)
            if held is None:
                refs = (None,)
            elif type(held) is not list:
                a = held.target_timestamp + stream.tf  # stream.expires_at(held), inlined
                b = held.prediction_timestamp + stream.span
                if (a if a > b else b) + stream.grace >= t:
                    refs = (held,)
                    self._matched += 1
                else:
                    refs = (None,)
            else:
                refs = [r for r in held if stream.expires_at(r) >= t] or (None,)
                if refs[0] is not None:
                    self._matched += len(refs)
            self._last_matches[stream_key] = (event, refs if refs[0] is not None else ())
            subs = self._candle_subs.get(stream_key)
            if subs:
                key = candle_key(symbol, timeframe, event.timestamp)
                deliver = self._deliver_one
                for label, method in subs:  # an immutable tuple
                    for ref in refs:
                        deliver(label, method, event, ref, key, t)
            if stream is not None and stream.head < len(stream.refs):
                self._drop(stream, t)

    def _on_pivot(self, event: PivotEvent) -> None:
        with self._lock:
            t = event.confirmed_at
            if not self._advance(t):
                return
            self._events += 1
            self._events_since_flush += 1
            stream = self._streams.get((event.symbol, event.timeframe))
            refs: list[InferenceFrameReference] = []
            if stream is not None:
                self._drop(stream, t)
                lo = event.timestamp - self.pivot_lookback * TIMEFRAMES[event.timeframe]
                i = bisect_left(stream.times, lo, stream.head)
                j = bisect_right(stream.times, event.timestamp, i)
                refs = [r for r in stream.refs[i:j] if stream.expires_at(r) >= t]
            self._matched += len(refs)
            self._last_matches[(event.symbol, event.timeframe)] = (event, tuple(refs))
            subs = self._pivot_subs.get((event.symbol, event.timeframe, event.pivot_type), ())
            key = event_key(event)
            for label, method in tuple(subs):
                self._deliver(label, method, event, list(refs), refs, "pivot", key, t)

    # -- windows -----------------------------------------------------------------------

    def _data(self, ref: InferenceFrameReference, ts: np.ndarray, values: np.ndarray) -> InferenceData | None:
        """``ref``'s window from its rows (all inside it), normalized; None when there are none."""
        if len(ts) == 0:
            return None
        return InferenceData(ts, self._normalize(values, ref.norm_params), self.columns, ref)

    @staticmethod
    def _inside(ref: InferenceFrameReference, arrays: CandleArrays) -> tuple[np.ndarray, np.ndarray]:
        """The rows of ``arrays`` inside ``ref``'s window: never a row outside it."""
        ts, values = arrays.timestamps, arrays.values
        n = len(ts)
        if n and (ts[0] < ref.data_range_start or ts[n - 1] > ref.data_range_end):
            i = int(np.searchsorted(ts, ref.data_range_start, "left"))
            j = int(np.searchsorted(ts, ref.data_range_end, "right"))
            ts, values = ts[i:j], values[i:j]
        return ts, values

    def _cached(self, ref: InferenceFrameReference) -> tuple[np.ndarray, np.ndarray] | None:
        """The cache's ``(timestamps, values)`` of ``ref``'s window (``None``: no cache, or not covered).

        A :class:`~ettlib.replay.cache.CandleCache` gives exactly the rows of the
        window (O(1) for a gap-free stream); any other cache's rows are
        clipped to the window.
        """
        cache = self._cache
        if cache is None:
            return None
        start, end = ref.data_range_start, ref.data_range_end
        if type(cache) is CandleCache:
            return cache.window_values(ref.symbol, ref.timeframe, start, end, self.columns)
        arrays = cache.window(ref.symbol, ref.timeframe, start, end, self.columns)
        return None if arrays is None else self._inside(ref, arrays)

    def _check_knowable(self, ref: InferenceFrameReference) -> None:
        """Refuse a window whose last candle has not closed at the clock (whatever its source)."""
        now = self._now_of_clock()
        if now is not None and ref.data_range_end + TIMEFRAMES[ref.timeframe] > now:
            raise LookAheadError(
                f"frame {ref.inference_id!r}: its window ends with the candle opened at "
                f"{format_ms(ref.data_range_end)}, which closes after now ({format_ms(now)})")

    def get_inference_data(self, ref: InferenceFrameReference) -> InferenceData | None:
        """The rows of ``[ref.data_range_start, ref.data_range_end]``, normalized; None if none.

        From the cache when it covers the range, else from DuckDB: the same
        values either way (bit for bit).  Never a row after ``data_range_end``,
        and, while a clock is known, a :class:`~ettlib.errors.LookAheadError`
        for a window not closed by ``now()``.  Each call builds a new
        ``InferenceData`` whose ``values`` are a new float32 array (nothing
        is kept between calls).
        """
        self._check_knowable(ref)
        rows = self._cached(ref)
        if rows is None:
            with self._lock:
                arrays = self.duckdb_storage.read_window(
                    ref.symbol, ref.timeframe, ref.data_range_start, ref.data_range_end, self.columns
                )
            if arrays is None:
                return None
            rows = self._inside(ref, arrays)
        return self._data(ref, *rows)

    def get_inference_data_batch(self, refs: Sequence[InferenceFrameReference]) -> list[InferenceData | None]:
        """:meth:`get_inference_data` for many frames; uncached windows in one query per stream."""
        out: list[InferenceData | None] = [None] * len(refs)
        missing: dict[tuple[str, str], list[int]] = {}
        for ref in refs:
            self._check_knowable(ref)
        for k, ref in enumerate(refs):
            rows = self._cached(ref)
            if rows is None:
                missing.setdefault((ref.symbol, ref.timeframe), []).append(k)
            else:
                out[k] = self._data(ref, *rows)
        for (symbol, timeframe), positions in missing.items():
            with self._lock:
                windows = self.duckdb_storage.read_windows(
                    symbol,
                    timeframe,
                    [refs[k].data_range_start for k in positions],
                    [refs[k].data_range_end for k in positions],
                    self.columns,
                )
            for k, arrays in zip(positions, windows):
                if arrays is not None:
                    out[k] = self._data(refs[k], *self._inside(refs[k], arrays))
        return out

    # -- persistence -------------------------------------------------------------------

    def _flush(self, resume_time: int) -> None:
        if self._now is not None:
            for stream in self._streams.values():
                self._drop(stream, self._now)
        hooks = [
            sub.checkpoint for sub in self._subscribers.values() if callable(getattr(sub, "checkpoint", None))
        ]
        commit_flush(
            self._con,
            self.run_id,
            frames=self._new_frames,
            expired=self._expired,
            pairs=self._pairs,
            dead_letters=self._dead,
            checkpoint=Checkpoint(resume_time, self._seq, self._next_id),
            hooks=hooks,
            states=self._state_getters(),
        )
        self._new_frames = []
        self._expired = []
        self._pairs = []
        self._dead = []
        self._events_since_flush = 0

    def _state_getters(self) -> list[tuple[str, object]]:
        """``(name, subscriber.checkpoint_state)`` of each subscriber that has one.

        A subscriber registered under several names is stored under the first.
        """
        seen: set[int] = set()
        out = []
        for name, sub in self._subscribers.items():
            get = getattr(sub, "checkpoint_state", None)
            if callable(get) and id(sub) not in seen:
                seen.add(id(sub))
                out.append((name, get))
        return out

    def flush(self) -> None:
        """Commit everything buffered, with a checkpoint after the current instant.

        Call it between instants (a resume restarts after the latest event
        time handled); the coordinator flushes by itself every
        ``persist_every`` events and at :meth:`close`.
        """
        with self._lock:
            resume = (self._now + 1) if self._now is not None else (self.resume_time or 0)
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
                self._new_frames, self._expired, self._pairs, self._dead = [], [], [], []
            seen = set()
            for handle in self._provider_subs.values():
                if id(handle) not in seen:
                    seen.add(id(handle))
                    handle.unsubscribe()
            self._closed = True

    def __enter__(self) -> InferenceTrainingCoordinator:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- counters ----------------------------------------------------------------------

    def counters(self) -> CoordinatorCounters:
        """A frozen snapshot of the live counters."""
        with self._lock:
            return CoordinatorCounters(
                registered=self._registered,
                pending=self._pending,
                matched=self._matched,
                expired=self._expired_n,
                delivered=self._delivered,
                failed=self._failed,
                events=self._events,
            )

    def last_matches(self, symbol: str, timeframe: str) -> tuple[object, list[InferenceFrameReference]]:
        """``(event, frames)``: the stream's last candle or pivot event handled and the frames it matched.

        ``(None, [])`` before the stream's first event.  What a stepper shows
        as "the pairs the last event matched".
        """
        with self._lock:
            event, refs = self._last_matches.get((symbol, timeframe), (None, ()))
            return event, list(refs)

    def retained_frames(self) -> list[InferenceFrameReference]:
        """Every retained frame, by stream then prediction time (a copy)."""
        with self._lock:
            return [r for s in self._streams.values() for r in s.refs[s.head:]]

