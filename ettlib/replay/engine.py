"""The replay engine: the store's candles delivered as events, as they became known.

:class:`ReplayEngine` reads the base candles of one or several symbols from
DuckDB (into a :class:`~ettlib.replay.cache.CandleCache`, in chunks), aggregates the
higher timeframes (:mod:`ettlib.replay.aggregate`), detects pivots
(:func:`ettlib.replay.pivots.detect_pivots`), schedules inference steps, merges all
of it into ``docs/design.md``'s order with one sort (:mod:`ettlib.replay.plan`), and
delivers every event through the :class:`~ettlib.replay.provider.DataProvider`.

Order (the contract)
--------------------
Events are ordered by knowable time ``T``; at equal ``T`` by symbol name; for
one symbol at ``T``: candle completions (base first, then higher timeframes by
length; older bar first), pivot confirmations (timeframe, level, lows before
highs, bar time), then inference steps (timeframe).  This is exactly
:func:`ettlib.replay.events.event_sort_key`.  An inference step ``(symbol, tf)`` is
scheduled at ``T`` when a ``tf`` candle completes on time at ``T`` (see
:mod:`ettlib.replay.aggregate` for late, gapped buckets, which get no step).

What is replayed
----------------
The base candles with open time in ``[start, end]`` (inclusive).  Higher
candles and pivots come from those candles only (a bucket cut by ``start`` is
aggregated from the candles it has; a bucket that has not completed by the
last base candle is not emitted).  The sequence depends only on the data and
the parameters: the same inputs always give the same events.

Driving it
----------
* :meth:`ReplayEngine.iter_events` -- the generator at the core; each event is
  delivered to its subscribers *before* it is yielded.
* :meth:`ReplayEngine.step` ``(n)`` -- deliver the next ``n`` events, return them.
* :meth:`ReplayEngine.run` ``(until=None)`` -- deliver every event with knowable
  time ``<= until`` (the fast path: events are built only for streams that have
  subscribers, callbacks are looked up once per chunk); returns how many
  events it passed.
* :meth:`ReplayEngine.seek` ``(t)`` -- move so that the next event is the first
  with knowable time ``> t``, delivering **nothing** (subscribers miss the
  skipped events).  Seeking backwards restarts the replay at that point.
* :meth:`ReplayEngine.cursor` -- a small frozen, JSON-serializable
  :class:`ReplayCursor`; :meth:`ReplayEngine.resume` /
  :meth:`ReplayEngine.restore` continue with exactly the same remaining events.

Time
----
``engine.clock`` (a :class:`~ettlib.clock.ReplayClock`, also set as
``data_provider.clock``) reads ``start`` before the first event, then the
knowable time of the event being delivered; after :meth:`run` ``(until=t)`` or
:meth:`seek` ``(t)`` it reads ``t``.  Nothing reads the wall clock except the
optional pacing (``speed``), through the injected ``timer`` and ``sleep``.
``engine.cache`` holds the replayed range (plus ``cache_warmup`` candles
before ``start``) and refuses windows that are not yet knowable.

Subscriber errors follow the provider's ``on_error`` policy; with
``"raise"``, the failing event counts as passed (the cursor is after it).

Inside a stop region (:func:`ettlib.interrupts.stop_requests`, which a
:class:`~ettlib.session.Session` opens while it replays), a Ctrl-C only
requests a stop; :meth:`ReplayEngine.run` and the generator honour it
between two events by raising ``KeyboardInterrupt`` there, with the cursor
after the last event delivered, so a later call continues with the next one.
(The region's ``on_request`` moves ``data_provider.version``, which makes the
deliver loop return after the current callback.)

Examples
--------
>>> import duckdb, numpy as np, pandas as pd
>>> from ettlib.store.schema import ensure_schema
>>> from ettlib.replay.provider import DataProvider
>>> con = duckdb.connect()
>>> _ = ensure_schema(con)
>>> price = 100 + np.sin(np.arange(30) / 2)
>>> rows = pd.DataFrame({"symbol": "X", "timeframe": "1m", "timestamp": np.arange(30) * 60_000,
...                      "open": price, "high": price + 1, "low": price - 1, "close": price, "volume": 1.0})
>>> _ = con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM rows")
>>> provider = DataProvider()
>>> five = []
>>> _ = provider.subscribe_candle_completion(five.append, "X", "5m")
>>> engine = ReplayEngine(con, provider, "X", 0, 29 * 60_000)
>>> engine.run() == len(engine)      # every event passed
True
>>> [(e.timestamp, e.close_time) for e in five][:2]
[(0, 300000), (300000, 600000)]
>>> engine.clock.now()
1800000
>>> engine.seek(0)
>>> [type(e).__name__ for e in engine.step(3)]
['CandleCompletionEvent', 'CandleCompletionEvent', 'CandleCompletionEvent']
>>> resumed = ReplayEngine.resume(ReplayCursor.from_json(engine.cursor().to_json()), con, DataProvider())
>>> [e.close_time for e in resumed.step(2)] == [e.close_time for e in engine.step(2)]
True
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from ettlib import interrupts
from ettlib.clock import ReplayClock
from ettlib.errors import ConfigError
from ettlib.gc_pause import gc_paused
from ettlib.replay import plan as event_plan
from ettlib.replay.cache import CandleCache, ohlcv_columns_first
from ettlib.replay.cursor import ReplayCursor
from ettlib.replay.dispatch import dispatch
from ettlib.replay.feed import FeedConfig, resolve_base_timeframe, resolve_feed_config, warn_unplanned
from ettlib.replay.plan import CANDLE, PIVOT, STEP, Plan
from ettlib.replay.planner import DEFAULT_SPAN_CANDLES, SpanPlanner
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.symbols import validate_symbols
from ettlib.timeframes import TIMEFRAMES
from ettlib.times import to_ms

__all__ = ["ReplayEngine", "ReplayCursor"]

_ITER_CHUNK = 4096  # events built at a time by the generator (it yields to user code)
_PROGRESS_CHUNK = 1024  # events dispatched between two progress-bar updates


# --------------------------------------------------------------------------
# The engine
# --------------------------------------------------------------------------


class ReplayEngine:
    """Replay candles from the store as events (see the module docstring).

    Parameters
    ----------
    storage
        A :class:`~ettlib.store.DuckDBStorage`, or anything with ``read_candles``
        or ``con``, or a DuckDB connection.
    data_provider
        The :class:`~ettlib.replay.provider.DataProvider` to deliver through.
    symbols
        One symbol or several; replayed interleaved, in name order at equal times.
    start, end
        Open-time range of the base candles to replay (inclusive); int epoch ms,
        or anything :func:`ettlib.times.to_ms` reads.
    base_timeframe
        Timeframe read from the store; higher ones are aggregated from it.
        ``None``: the finest timeframe stored for every symbol (see
        :func:`resolve_base_timeframe`).
    timeframes
        Candle timeframes to produce; ``None``: those with subscriptions in
        ``data_provider`` when the engine is made, plus the base.  Each must
        be a whole multiple of the base.
    pivot_timeframes
        Timeframes whose pivots are detected; ``None``: all of ``timeframes``.
    pivot_n, pivot_levels
        Williams pivot parameters (``pivot_levels=None``: the provider's).
    step_timeframes
        Inference steps: ``None`` for the streams with step subscriptions when
        the engine is made; ``"all"`` for every replayed stream, delivered
        whenever the stream has step subscribers (subscribe at any time
        before the instant); else timeframes and/or ``(symbol, timeframe)``
        pairs.
    clock
        A :class:`~ettlib.clock.ReplayClock` to drive (default: a new one).
    speed
        ``None``: as fast as possible; else a multiple of real time (``60``:
        one minute of market time per second), paced with ``timer``/``sleep``.
    progress
        Show a ``tqdm`` progress bar in :meth:`run` (it moves every 1,024 events).
    chunk_size
        Events built and dispatched at a time.
    cache_warmup
        Candles of the longest timeframe held before ``start`` (base candles
        from that far back, and the candles of every higher timeframe
        aggregated from them: input windows that reach back before the first
        event, indicators of the higher timeframes warmed up), and candles
        of each timeframe the cache keeps behind the replay's time.
    span_candles
        Base candles planned at a time (:mod:`ettlib.replay.planner`): what
        memory holds of the range.
    cache_columns
        Columns the cache loads up front (the OHLCV columns always); others
        are loaded on a window's first request for them.
    """

    def __init__(self, storage, data_provider, symbols, start, end, *,
                 base_timeframe: str | None = None, timeframes=None, pivot_timeframes=None,
                 pivot_n: int = 1, pivot_levels: int | None = None, step_timeframes=None,
                 clock: ReplayClock | None = None, speed: float | None = None,
                 sleep=time.sleep, timer=time.monotonic, progress: bool = False,
                 chunk_size: int = 65_536, cache_warmup: int = 1_000,
                 span_candles: int = DEFAULT_SPAN_CANDLES,
                 cache_columns=OHLCV_COLUMNS, _config: FeedConfig | None = None):
        symbols = validate_symbols(symbols)
        self.start, self.end = to_ms(start, "start"), to_ms(end, "end")
        if self.start > self.end:
            raise ConfigError(f"start {self.start} is after end {self.end}")
        if speed is not None and not (isinstance(speed, (int, float)) and speed > 0):
            raise ConfigError(f"speed must be None or a positive number, got {speed!r}")
        for name, value, low in (("chunk_size", chunk_size, 1), ("cache_warmup", cache_warmup, 0),
                                 ("span_candles", span_candles, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if clock is None:
            clock = ReplayClock(self.start)
        elif not isinstance(clock, ReplayClock):
            raise ConfigError(f"clock must be a ReplayClock, got {type(clock).__name__}")
        else:
            clock.time = self.start
        if _config is None:
            wanted = () if timeframes is None else ([timeframes] if isinstance(timeframes, str) else timeframes)
            base_timeframe = resolve_base_timeframe(storage, symbols, base_timeframe, wanted)
            _config = resolve_feed_config(
                data_provider, symbols, base_timeframe=base_timeframe, timeframes=timeframes,
                pivot_timeframes=pivot_timeframes, pivot_n=pivot_n,
                pivot_levels=data_provider.pivot_levels if pivot_levels is None else pivot_levels,
                step_timeframes=step_timeframes)
        self.storage = storage
        self.provider = data_provider
        self.symbols = symbols
        self.config = _config
        self._clock = clock  # the engine drives it; everyone else gets the view
        self.clock = clock.view()
        self.speed = speed
        self._sleep, self._timer = sleep, timer
        self.progress = progress
        self.chunk_size = chunk_size
        self.cache_warmup = cache_warmup
        self.span_candles = span_candles
        self._cache = CandleCache(storage, clock=self.clock, columns=ohlcv_columns_first(cache_columns))
        data_provider.clock = self.clock
        self._steps_on_demand = step_timeframes == "all"
        self._planner: SpanPlanner | None = None
        self._plan: Plan | None = None  # the span holding the next event
        self._base = 0  # position of the span's first event
        self._pos = 0  # events passed (delivered or skipped)
        self._last_time: int | None = None  # knowable time of the last event passed
        self._total: int | None = None
        self._pace: tuple[int, float] | None = None

    @property
    def cache(self) -> CandleCache:
        """The window cache: the base candles and the replay's own higher ones, guarded by the clock."""
        return self._cache

    # -- planning, span by span ------------------------------------------------

    def _new_planner(self, cache: CandleCache) -> SpanPlanner:
        return SpanPlanner(cache, self.symbols, self.start, self.end, self.config,
                           warmup=self.cache_warmup, span_candles=self.span_candles)

    def _current(self) -> Plan | None:
        """The span holding the next event, planned when needed; ``None`` at the end."""
        if self._planner is None:
            self._planner = self._new_planner(self._cache)
            warn_unplanned(self.provider, self.symbols, self.config)
        plan = self._plan
        while plan is None or self._pos - self._base >= len(plan.time):
            if plan is not None:
                self._base += len(plan.time)
                self._plan = None
            if self._planner.done:
                return None
            now = self._clock.time if self._last_time is None else max(self._last_time, self._clock.time)
            plan = self._plan = self._planner.next_plan(now)
        return plan

    def _restart(self) -> None:
        """Back to before the first event (a backward seek, a restore)."""
        self._cache.clear()
        self._planner, self._plan = None, None
        self._base = self._pos = 0
        self._last_time = None
        self._pace = None

    def __len__(self) -> int:
        """Number of events in the whole replay (counted once by planning every span aside)."""
        if self._total is None:
            planner = self._new_planner(CandleCache(self.storage, columns=OHLCV_COLUMNS))
            total = 0
            while (plan := planner.next_plan()) is not None:
                total += len(plan.time)
            self._total = total
        return self._total

    @property
    def position(self) -> int:
        """Events passed so far (delivered or skipped)."""
        return self._pos

    @property
    def finished(self) -> bool:
        """True once every event has passed."""
        return self._current() is None

    def _snapshot(self, plan: Plan) -> list:
        """Callbacks per channel, as tuples (a snapshot of the provider's lists)."""
        p = self.provider
        out = []
        for kind, symbol, tf, ptype in plan.channels:
            if kind == CANDLE:
                cbs = p.candle_callbacks(symbol, tf)
            elif kind == PIVOT:
                cbs = p.pivot_callbacks(symbol, tf, ptype)
            else:
                cbs = p.step_callbacks(symbol, tf)
            out.append(tuple(cbs))
        return out

    def _passed(self, plan: Plan, local: int) -> None:
        """Move the position to the span's event ``local`` (those before it have passed)."""
        self._pos = self._base + local
        if local:
            self._last_time = int(plan.time[local - 1])

    # -- the generator ---------------------------------------------------------

    def iter_events(self) -> Iterator:
        """Yield the remaining events in order, each delivered before it is yielded."""
        return self._iter(min(self.chunk_size, _ITER_CHUNK))

    def _iter(self, chunk: int) -> Iterator:
        provider = self.provider
        clock = self._clock
        while (plan := self._current()) is not None:
            interrupts.check()  # a requested stop (Ctrl-C) is honoured between events
            a = self._pos - self._base
            b = min(len(plan.time), a + chunk)
            positions = np.arange(a, b)
            version = provider.version
            if self._steps_on_demand:  # a stream's steps are events only while subscribed
                subscribed = np.fromiter((bool(cbs) for cbs in self._snapshot(plan)), bool)
                positions = positions[(plan.kind[a:b] != STEP) | subscribed[plan.channel[a:b]]]
            with gc_paused():  # building many events at once
                events = event_plan.events(plan, positions, self.config.pivot_levels)
            expected = self._pos
            for local, event, t in zip(positions.tolist(), events, plan.time[positions].tolist()):
                if self._pos != expected or provider.version != version:
                    break  # moved by seek/run, or a subscription changed: rebuild from here
                if self.speed is not None:
                    self._wait_until(t)
                clock.time = t
                self._passed(plan, local + 1)
                expected = self._pos
                provider.publish(event)
                yield event
            else:
                if self._pos == expected:
                    self._passed(plan, b)  # steps nobody subscribed to at the end of the chunk

    def step(self, n: int = 1) -> list:
        """Deliver the next ``n`` events (fewer at the end); return them."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 0:
            raise ConfigError(f"n must be an integer >= 0, got {n!r}")
        out = []
        if n:
            for event in self._iter(min(n, self.chunk_size)):
                out.append(event)
                if len(out) == n:
                    break
        return out

    def __iter__(self) -> Iterator:
        return self.iter_events()

    # -- pacing ------------------------------------------------------------------

    def _wait_until(self, t: int) -> None:
        if self._pace is None:
            self._pace = (t, self._timer())
            return
        t0, wall0 = self._pace
        delay = wall0 + (t - t0) / 1000.0 / self.speed - self._timer()
        if delay > 0:
            self._sleep(delay)

    # -- the fast path -----------------------------------------------------------

    def run(self, until=None) -> int:
        """Deliver every remaining event with knowable time ``<= until`` (all if None).

        Returns the number of events passed.  Afterwards the clock reads
        ``until`` (or the last event's time).
        """
        until = None if until is None else to_ms(until, "until")
        first = self._pos
        if self.speed is not None:
            for event in self._iter(_ITER_CHUNK):
                if until is not None and self._plan is not None and self._pos < self._base + len(self._plan.time) \
                        and int(self._plan.time[self._pos - self._base]) > until:
                    break
        else:
            bar = None
            if self.progress:
                from tqdm.auto import tqdm

                last = self.end if until is None else min(self.end, until)
                bar = tqdm(total=max(0, (last - self.start) // TIMEFRAMES[self.config.base_timeframe] + 1),
                           unit="candle", desc="replay")
            try:
                while (plan := self._current()) is not None:
                    local, n = self._pos - self._base, len(plan.time)
                    stop = n if until is None else max(local, int(np.searchsorted(plan.time, until, "right")))
                    step = min(self.chunk_size, _PROGRESS_CHUNK) if bar is not None else self.chunk_size
                    while self._pos - self._base < stop:
                        interrupts.check()  # a requested stop (Ctrl-C) is honoured between events
                        a = self._pos - self._base
                        dispatch(plan, a, min(stop, a + step), self._snapshot(plan), self._clock,
                                 self.provider, self.config.pivot_levels,
                                 lambda local, plan=plan: self._passed(plan, local))
                        if bar is not None and self._last_time is not None:
                            done = (self._last_time - self.start) // TIMEFRAMES[self.config.base_timeframe]
                            bar.update(max(0, min(bar.total, done) - bar.n))
                    if stop < n:
                        break
            finally:
                if bar is not None:
                    bar.close()
        if self._last_time is not None or until is not None:
            target = self._last_time if until is None else max(self._last_time or until, until)
            if self._clock.time is None or target >= self._clock.time:
                self._clock.time = target
        return self._pos - first

    # -- seeking and cursors -------------------------------------------------------

    def seek(self, t) -> None:
        """Skip, without delivering, to just after the last event with knowable time ``<= t``.

        Backwards (``t`` before the clock) restarts the replay at that point.
        Forwards, the spans on the way are planned (their state carried) but
        nothing is delivered.
        """
        t = to_ms(t, "t")
        if self._clock.time is not None and t < self._clock.time:
            self._restart()
        while (plan := self._current()) is not None:
            if int(plan.time[-1]) <= t:
                self._passed(plan, len(plan.time))  # the whole span is before t
                continue
            self._passed(plan, max(self._pos - self._base, int(np.searchsorted(plan.time, t, "right"))))
            break
        self._pace = None
        self._clock.time = t

    def cursor(self) -> ReplayCursor:
        """A JSON-serializable snapshot of the position and the replay's parameters."""
        return ReplayCursor(self.symbols, self.start, self.end, self.config, position=self._pos,
                            last_time=self._last_time, total=len(self))

    def restore(self, cursor: ReplayCursor) -> None:
        """Continue from ``cursor`` (taken from a replay with the same parameters)."""
        if not isinstance(cursor, ReplayCursor):
            raise ConfigError(f"expected a ReplayCursor, got {type(cursor).__name__}")
        if (cursor.symbols, cursor.start, cursor.end, cursor.feed) != \
                (self.symbols, self.start, self.end, self.config):
            raise ConfigError("the cursor belongs to a replay with other parameters")
        total = len(self)
        self._restart()
        if 0 <= cursor.position <= total:
            while self._pos < cursor.position and (plan := self._current()) is not None:
                self._passed(plan, min(len(plan.time), cursor.position - self._base))
        if cursor.total != total or self._pos != cursor.position or self._last_time != cursor.last_time:
            raise ConfigError(
                "the cursor does not fit this replay's events: the stored data changed "
                f"(cursor: {cursor.total} events, now {total})")
        self._clock.time = self.start if cursor.last_time is None else cursor.last_time

    @classmethod
    def resume(cls, cursor: ReplayCursor, storage, data_provider, **options) -> ReplayEngine:
        """A new engine on ``storage``/``data_provider`` positioned at ``cursor``.

        ``options`` are the engine's run options (``speed``, ``progress``,
        ``chunk_size``, ``clock``, ...); what is replayed comes from the cursor.
        """
        engine = cls(storage, data_provider, cursor.symbols, cursor.start, cursor.end,
                     _config=cursor.feed, **options)
        engine.restore(cursor)
        return engine

    def __repr__(self) -> str:
        return (f"ReplayEngine({list(self.symbols)}, {self.start}..{self.end}, "
                f"timeframes={list(self.config.timeframes)}, position={self._pos})")
