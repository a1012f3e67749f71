"""The DataProvider: subscriptions to candle completions, pivots and steps.

Replay and live feeds both publish through a DataProvider; subscribers never
know which one drives them (backtest and live differ only by what is plugged
in).  The two subscription methods of the original design keep their signatures, each
returning a :class:`Subscription` handle that unsubscribes.

Callback errors
---------------
``on_error="raise"`` (the default) stops delivery and raises
:class:`~ettlib.errors.SubscriberError` naming the callback and carrying the
event that caused it (``err.event``); the original exception is its
``__cause__``.  ``on_error="warn"`` warns, records ``(callback, event,
exception)`` in :attr:`DataProvider.errors`, and keeps delivering to the other
subscribers.  The coordinator isolates its own subscribers further (dead
letters).

Live path
---------
:meth:`DataProvider.push_candle` feeds one closed base candle of a live
exchange feed; the symbol's :class:`~ettlib.replay.live.LiveFeed` aggregates higher
timeframes, detects pivots, schedules inference steps and delivers exactly the
events a :class:`~ettlib.replay.ReplayEngine` would deliver for the same
candles.  ``provider.clock`` is the driving feed's clock (set by a replay, or
created by the first push).

Examples
--------
>>> from ettlib.replay.events import CandleCompletionEvent
>>> provider = DataProvider()
>>> seen = []
>>> sub = provider.subscribe_candle_completion(seen.append, "ETH/USDT", "1m")
>>> provider.publish_candle(CandleCompletionEvent("ETH/USDT", "1m", 0, 60_000, 1, 2, 0.5, 1.5, 10))
>>> len(seen)
1
>>> sub.unsubscribe()
>>> provider.publish_candle(CandleCompletionEvent("ETH/USDT", "1m", 60_000, 120_000, 1, 2, 0.5, 1.5, 10))
>>> len(seen)
1
>>> provider.subscribe_pivot_events(print, "ETH/USDT", "1m", ["L2X"])
Traceback (most recent call last):
...
ettlib.errors.UnknownNameError: unknown pivot type 'L2X' (did you mean 'L2L' or 'L2H'?)
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ettlib.errors import ConfigError, SubscriberError, UnknownNameError
from ettlib.replay.events import (
    CandleCompletionEvent,
    InferenceStepEvent,
    PivotEvent,
    pivot_types_up_to,
    validate_pivot_levels,
)
from ettlib.symbols import validate_symbol
from ettlib.timeframes import validate_timeframe

__all__ = ["DataProvider", "Subscription"]


@dataclass(eq=False)
class Subscription:
    """Handle returned by every ``subscribe_*`` call; ``unsubscribe()`` ends it.

    Also a context manager: the subscription ends when the block exits.
    """

    _registry: list = field(repr=False)
    callback: Callable
    key: tuple
    active: bool = True
    _owner: object = field(default=None, repr=False)

    def unsubscribe(self) -> None:
        """Stop delivering to this callback (idempotent)."""
        if self.active:
            self._registry.remove(self.callback)
            self.active = False
            if self._owner is not None:
                self._owner.version += 1

    def __enter__(self) -> Subscription:
        return self

    def __exit__(self, *exc) -> None:
        self.unsubscribe()


class DataProvider:
    """Routes events to subscribed callbacks, keyed by symbol and timeframe.

    Parameters
    ----------
    duckdb_storage
        The store events come from (``data_provider.duckdb_storage``, as adapters expect);
        optional for a provider fed by hand.
    pivot_levels
        Highest pivot level subscribers may ask for (1..5, default 3).
    on_error
        ``"raise"`` or ``"warn"``: what a raising callback does (see module doc).
    """

    def __init__(self, duckdb_storage=None, *, pivot_levels: int = 3, on_error: str = "raise"):
        validate_pivot_levels(pivot_levels)
        if on_error not in ("raise", "warn"):
            raise ConfigError(f"on_error must be 'raise' or 'warn', got {on_error!r}")
        self.duckdb_storage = duckdb_storage
        self.pivot_levels = pivot_levels
        self.on_error = on_error
        self.errors: list[tuple[Callable, object, BaseException]] = []
        self._candle_subs: dict[tuple[str, str], list[Callable]] = {}
        self._pivot_subs: dict[tuple[str, str, str], list[Callable]] = {}
        self._step_subs: dict[tuple[str, str], list[Callable]] = {}
        #: The clock of the feed driving this provider (set by a ReplayEngine,
        #: or created by :meth:`push_candle`); ``None`` until one drives it.
        self.clock = None
        #: Bumped on every (un)subscription (read-only): fast loops take a new snapshot when it moves.
        self.version = 0
        self._live: dict[str, object] = {}
        self._served: tuple | None = None  # (symbols, timeframes, pivot timeframes, who) or None
        self._live_clock = None  # the clock the live feeds drive (created by start_live)

    # -- subscribing -------------------------------------------------------

    def serve_only(self, symbols, timeframes, pivot_timeframes, *, owner: str) -> None:
        """Refuse, from now on, subscriptions to streams outside these (``owner`` cannot serve them).

        A session's replay produces a fixed set of streams: a subscription to
        anything else would silently receive nothing, so it is a
        :class:`~ettlib.errors.ConfigError` naming what is replayed.
        """
        self._served = (frozenset(symbols), tuple(timeframes), tuple(pivot_timeframes), owner)

    def _check_served(self, symbol: str, timeframe: str, *, pivots: bool = False) -> None:
        if self._served is None:
            return
        symbols, timeframes, pivot_timeframes, owner = self._served
        if symbol not in symbols:
            raise ConfigError(f"{owner} does not replay {symbol!r} (it replays {', '.join(sorted(symbols))})")
        allowed = pivot_timeframes if pivots else timeframes
        if timeframe not in allowed:
            what = "pivots on" if pivots else "timeframe"
            raise ConfigError(
                f"{owner} does not replay {what} {timeframe!r} (it replays {' '.join(allowed)}); "
                "name it in the session's timeframes= (or pivot_timeframes=)")

    def subscribe_candle_completion(
        self, callback: Callable[[CandleCompletionEvent], object], symbol: str, timeframe: str
    ) -> Subscription:
        """Call ``callback(event)`` when a ``timeframe`` candle of ``symbol`` closes."""
        key = (validate_symbol(symbol), validate_timeframe(timeframe))
        self._check_served(*key)
        return self._add(self._candle_subs, key, callback)

    def subscribe_pivot_events(
        self,
        callback: Callable[[PivotEvent], object],
        symbol: str,
        timeframe: str,
        pivot_types: Iterable[str],
    ) -> Subscription:
        """Call ``callback(event)`` when a pivot of one of ``pivot_types`` is confirmed.

        Returns one handle covering every requested type.
        """
        symbol = validate_symbol(symbol)
        timeframe = validate_timeframe(timeframe)
        self._check_served(symbol, timeframe, pivots=True)
        if isinstance(pivot_types, str):
            pivot_types = [pivot_types]
        known = pivot_types_up_to(self.pivot_levels)
        types = list(dict.fromkeys(pivot_types))
        if not types:
            raise ConfigError("pivot_types is empty; known: " + ", ".join(known))
        for pivot_type in types:
            if pivot_type not in known:
                raise UnknownNameError("pivot type", pivot_type, known)
        subs = [self._add(self._pivot_subs, (symbol, timeframe, t), callback) for t in types]
        return _MultiSubscription(subs)

    def subscribe_inference_step(
        self, callback: Callable[[InferenceStepEvent], object], symbol: str, timeframe: str
    ) -> Subscription:
        """Call ``callback(step)`` at each inference step of ``symbol``/``timeframe``.

        Steps come after every candle and pivot event of the same instant.
        """
        key = (validate_symbol(symbol), validate_timeframe(timeframe))
        self._check_served(*key)
        return self._add(self._step_subs, key, callback)

    def _add(self, table: dict, key: tuple, callback: Callable) -> Subscription:
        if not callable(callback):
            raise ConfigError(f"callback must be callable, got {callback!r}")
        registry = table.setdefault(key, [])
        registry.append(callback)
        self.version += 1
        return Subscription(registry, callback, key, _owner=self)

    # -- what is subscribed --------------------------------------------------

    def subscribed_streams(self, kind: str | None = None) -> set[tuple[str, str]]:
        """Every ``(symbol, timeframe)`` with at least one live subscription.

        ``kind`` (``"candle"``, ``"pivot"`` or ``"step"``) restricts it to one
        kind of subscription.
        """
        tables = {"candle": self._candle_subs, "pivot": self._pivot_subs, "step": self._step_subs}
        if kind is not None and kind not in tables:
            raise UnknownNameError("subscription kind", kind, tables)
        chosen = tables.values() if kind is None else (tables[kind],)
        return {key[:2] for table in chosen for key, callbacks in table.items() if callbacks}

    def candle_callbacks(self, symbol: str, timeframe: str) -> list[Callable]:
        """The live list of candle callbacks for a stream (do not mutate)."""
        return self._candle_subs.get((symbol, timeframe), [])

    def pivot_callbacks(self, symbol: str, timeframe: str, pivot_type: str) -> list[Callable]:
        """The live list of pivot callbacks for a stream and type (do not mutate)."""
        return self._pivot_subs.get((symbol, timeframe, pivot_type), [])

    def step_callbacks(self, symbol: str, timeframe: str) -> list[Callable]:
        """The live list of inference-step callbacks for a stream (do not mutate)."""
        return self._step_subs.get((symbol, timeframe), [])

    # -- publishing ----------------------------------------------------------

    def publish_candle(self, event: CandleCompletionEvent) -> None:
        """Deliver a candle completion to its subscribers, in subscription order."""
        self._deliver(self._candle_subs.get((event.symbol, event.timeframe)), event)

    def publish_pivot(self, event: PivotEvent) -> None:
        """Deliver a pivot confirmation to its subscribers."""
        self._deliver(
            self._pivot_subs.get((event.symbol, event.timeframe, event.pivot_type)), event
        )

    def publish_step(self, event: InferenceStepEvent) -> None:
        """Deliver an inference step to its subscribers."""
        self._deliver(self._step_subs.get((event.symbol, event.timeframe)), event)

    def publish(self, event) -> None:
        """Deliver any event to the subscribers of its kind."""
        if isinstance(event, CandleCompletionEvent):
            self.publish_candle(event)
        elif isinstance(event, PivotEvent):
            self.publish_pivot(event)
        else:
            self.publish_step(event)

    # -- the live path -------------------------------------------------------

    def start_live(
        self,
        symbol: str,
        *,
        base_timeframe: str = "1m",
        timeframes=None,
        pivot_timeframes=None,
        pivot_n: int = 1,
        pivot_levels: int | None = None,
        step_timeframes=None,
    ):
        """Configure the live feed of ``symbol`` (see :class:`ettlib.replay.live.LiveFeed`).

        The parameters mean what they mean for
        :class:`~ettlib.replay.ReplayEngine`, with the same defaults (derived
        from this provider's subscriptions), so a live feed and a replay of the
        same candles deliver the same events.  Returns the feed.
        """
        from ettlib.replay.live import LiveFeed

        from ettlib.clock import ReplayClock

        if self._live_clock is None:
            if self.clock is not None:
                raise ConfigError("this provider is driven by a replay; give the live feed its own DataProvider")
            self._live_clock = ReplayClock()
            self.clock = self._live_clock.view()
        feed = LiveFeed(
            self, symbol, base_timeframe=base_timeframe, timeframes=timeframes,
            pivot_timeframes=pivot_timeframes, pivot_n=pivot_n,
            pivot_levels=self.pivot_levels if pivot_levels is None else pivot_levels,
            step_timeframes=step_timeframes, clock=self._live_clock,
        )
        self._live[symbol] = feed
        return feed

    def push_candle(self, symbol: str, timeframe: str, timestamp: int, open: float,
                    high: float, low: float, close: float, volume: float) -> list:
        """Feed one closed base candle live; deliver and return the events it causes.

        Candle completions (base, then aggregated higher timeframes), pivot
        confirmations and inference steps come exactly as a replay of the same
        candles would deliver them (``docs/design.md`` order).  The first push for a
        symbol starts its feed with :meth:`start_live` defaults (base =
        ``timeframe``) unless :meth:`start_live` was called.
        """
        feed = self._live.get(symbol)
        if feed is None:
            feed = self.start_live(symbol, base_timeframe=validate_timeframe(timeframe))
        return feed.push(timeframe, timestamp, open, high, low, close, volume)

    def _deliver(self, callbacks: list[Callable] | None, event) -> None:
        if not callbacks:
            return
        for callback in tuple(callbacks):  # a callback may unsubscribe itself
            try:
                callback(event)
            except Exception as exc:
                self.handle_error(callback, event, exc)

    def handle_error(self, callback: Callable, event, exc: Exception) -> None:
        """Apply the ``on_error`` policy to ``callback`` raising ``exc`` on ``event``.

        ``"raise"``: a :class:`~ettlib.errors.SubscriberError`; ``"warn"``: a
        warning, and ``(callback, event, exc)`` kept in :attr:`errors`.  The
        delivery loops of a replay call it too.
        """
        name = getattr(callback, "__qualname__", repr(callback))
        if self.on_error == "raise":
            if isinstance(exc, SubscriberError):  # a coordinator's strict mode named it already
                raise exc
            raise SubscriberError(
                f"subscriber {name} raised {type(exc).__name__}: {exc} on {event!r}",
                event=event,
                callback=callback,
            ) from exc
        self.errors.append((callback, event, exc))
        warnings.warn(
            f"subscriber {name} raised {type(exc).__name__}: {exc} on {event!r}; "
            "continuing (on_error='warn')",
            stacklevel=3,
        )


class _MultiSubscription(Subscription):
    """One handle over several subscriptions (a pivot subscription's types)."""

    def __init__(self, parts: list[Subscription]):
        self.parts = parts
        self.callback = parts[0].callback
        self.key = tuple(p.key for p in parts)
        self.active = True

    def unsubscribe(self) -> None:
        for part in self.parts:
            part.unsubscribe()
        self.active = False
