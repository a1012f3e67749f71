"""The subscriber interface: what a training adapter implements to receive (frame, event) pairs.

A subscriber is any object with ``on_candle_completion(event, inference_ref)``
and/or ``on_pivot_event(event, inference_refs)``; :class:`TrainingEventSubscriber`
gives both as no-ops, plus the optional checkpoint hooks the coordinator's
flush calls (see :mod:`ettlib.coordinator.coordinator`, "the delivery protocol").
"""

from __future__ import annotations

from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.errors import ConfigError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.timeframes import validate_timeframe

__all__ = ["TrainingEventSubscriber", "Subscriptions", "subscriber_name"]


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
        """Persist state on ``con`` (inside the coordinator's transaction).

        Write your own tables.  The protocol's tables (``inference_frames``,
        ``training_events``, ``coordinator_checkpoints``, ``subscriber_states``)
        belong to the coordinator: a row written there is not what the
        coordinator recorded (a ``subscriber_states`` row it did not write is
        not deleted when :meth:`checkpoint_state` returns ``None``, and comes
        back through :meth:`restore_state` on resume).  Return state for
        ``subscriber_states`` from :meth:`checkpoint_state` instead.
        """
        return None

    def checkpoint_state(self) -> bytes | None:
        """The subscriber's state, stored with each flush (``None``: nothing to store)."""
        return None

    def restore_state(self, state: bytes) -> None:
        """Continue from ``state``, as :meth:`checkpoint_state` returned it at the last commit."""
        raise ConfigError(
            f"{type(self).__name__} has a stored state but does not implement restore_state(state)"
        )


def subscriber_name(subscriber: object) -> str:
    """``subscriber.subscriber_name`` if set, else the class's qualified name."""
    name = getattr(subscriber, "subscriber_name", None)
    return name if isinstance(name, str) and name else type(subscriber).__qualname__


class Subscriptions:
    """A coordinator's subscribers: their names, their streams, their stored states.

    The coordinator's own callbacks (``on_candle``, ``on_pivot``) are
    subscribed to ``provider`` once per stream, when a first subscriber asks
    for it.  Names key the delivered pairs: one name, one subscriber.  On a
    resumed run, ``stored`` holds the states of the last commit; each is
    handed to its subscriber's ``restore_state`` once, when it first
    subscribes under that name.  Not locked: the coordinator holds its lock.
    """

    def __init__(self, provider, on_candle, on_pivot, *, run_id: str):
        self.provider = provider
        self.run_id = run_id
        self._on_candle, self._on_pivot = on_candle, on_pivot
        self.by_name: dict[str, object] = {}
        self.stored: dict[str, bytes] = {}
        #: (symbol, timeframe) -> ((name, on_candle_completion), ...): a tuple, replaced on change
        self.candles: dict[tuple[str, str], tuple[tuple[str, object], ...]] = {}
        #: (symbol, timeframe, pivot type) -> [(name, on_pivot_event), ...]
        self.pivots: dict[tuple[str, str, str], list[tuple[str, object]]] = {}
        self._handles: dict[tuple, object] = {}

    def _name(self, subscriber, name: str | None) -> str:
        name = name or subscriber_name(subscriber)
        known = self.by_name.get(name)
        if known is not None and known is not subscriber:
            raise ConfigError(
                f"another subscriber is already named {name!r}; give subscriber_name or name= "
                "(names key the delivered pairs and must be stable across a resume)"
            )
        if known is None:
            self._restore(name, subscriber)
        self.by_name[name] = subscriber
        return name

    def _restore(self, name: str, subscriber) -> None:
        """Hand a resumed run's stored state of ``name`` to ``subscriber.restore_state`` (once)."""
        state = self.stored.pop(name, None)
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
            self.stored[name] = state  # not consumed: a corrected subscriber may try again
            raise

    def add_candles(self, subscriber, symbol: str, timeframe: str, name: str | None) -> None:
        """``subscriber.on_candle_completion`` for each candle of the stream."""
        if not callable(getattr(subscriber, "on_candle_completion", None)):
            raise ConfigError(f"{subscriber!r} has no on_candle_completion method")
        key = (symbol, validate_timeframe(timeframe))
        if key not in self._handles:
            self._handles[key] = self.provider.subscribe_candle_completion(self._on_candle, *key)
        label = self._name(subscriber, name)
        entries = self.candles.get(key, ())
        if any(n == label for n, _ in entries):
            raise ConfigError(f"{label!r} is already subscribed to candles of {symbol} {timeframe}")
        # a new tuple (copy on write): delivery iterates it without copying
        self.candles[key] = (*entries, (label, subscriber.on_candle_completion))

    def add_pivots(self, subscriber, symbol: str, timeframe: str, pivot_types, name: str | None) -> None:
        """``subscriber.on_pivot_event`` for each confirmed pivot of ``pivot_types``."""
        if not callable(getattr(subscriber, "on_pivot_event", None)):
            raise ConfigError(f"{subscriber!r} has no on_pivot_event method")
        if isinstance(pivot_types, str):
            pivot_types = [pivot_types]
        types = list(dict.fromkeys(pivot_types))
        timeframe = validate_timeframe(timeframe)
        new = [t for t in types if (symbol, timeframe, t) not in self._handles]
        if new or not types:
            handle = self.provider.subscribe_pivot_events(self._on_pivot, symbol, timeframe, new)
            for t in new:
                self._handles[(symbol, timeframe, t)] = handle
        label = self._name(subscriber, name)
        for t in types:
            entries = self.pivots.setdefault((symbol, timeframe, t), [])
            if not any(n == label for n, _ in entries):
                entries.append((label, subscriber.on_pivot_event))

    def hooks(self) -> list:
        """Each subscriber's ``checkpoint(con)`` method, where it has one."""
        return [sub.checkpoint for sub in self.by_name.values() if callable(getattr(sub, "checkpoint", None))]

    def state_getters(self) -> list[tuple[str, object]]:
        """``(name, subscriber.checkpoint_state)`` of each subscriber that has one.

        A subscriber registered under several names is stored under the first.
        """
        seen: set[int] = set()
        out = []
        for name, sub in self.by_name.items():
            get = getattr(sub, "checkpoint_state", None)
            if callable(get) and id(sub) not in seen:
                seen.add(id(sub))
                out.append((name, get))
        return out

    def unsubscribe_all(self) -> None:
        """Stop the coordinator's provider subscriptions."""
        seen = set()
        for handle in self._handles.values():
            if id(handle) not in seen:
                seen.add(id(handle))
                handle.unsubscribe()
        self._handles = {}
