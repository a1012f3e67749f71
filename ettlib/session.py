"""A replay session: the provider, the engine, the clock, the windows and the coordinator, wired once.

A :class:`Session` (made by :meth:`ettlib.workbench.Workbench.session`) owns
every part of one replay and hands each the same clock and the same window
source, so that nothing is wired by hand:

- a :class:`~ettlib.replay.provider.DataProvider` that serves only the streams
  the replay produces (a subscription to anything else is an error, not
  silence);
- a :class:`~ettlib.replay.ReplayEngine` over the store, whose window cache
  holds the base candles and the replay's own candles of every higher
  timeframe (aggregated from the base, indicators computed causally);
- its clock, shown to everyone else as a read-only
  :class:`~ettlib.clock.ClockView` (only the replay moves it);
- an :class:`~ettlib.coordinator.InferenceTrainingCoordinator` whose windows
  come from that cache, whose candle reads go through :class:`GuardedCandles`,
  and whose frames and pairs go to ``results`` (by default an in-memory
  database: exploring never writes to the store).

The trust boundary
------------------
While a session runs, no code path hands user code data from after the
clock: windows from the cache, from the store through the session, and
``get_inference_data`` from either refuse a candle that has not closed at
``clock.now()`` (:class:`~ettlib.errors.LookAheadError`); a frame registered
at ``now`` must predict at ``now``; the clock cannot be moved by user code;
and the session only moves forward (a backward :meth:`Session.seek` after
events were delivered is refused: the coordinator has already learned from
what came after).

Ctrl-C
------
While :meth:`Session.run` or :meth:`Session.step` replays (in the main
thread), a Ctrl-C only requests a stop (:func:`ettlib.interrupts.stop_requests`):
no DuckDB statement -- a flush of the coordinator, a subscriber's window
read -- is ever interrupted, the callback under way finishes, and
``KeyboardInterrupt`` is raised between two events.  The session is then
consistent: the next ``run()`` continues with the next event; an experiment
closes it without a flush (its last commit is what a resume starts from).
A second Ctrl-C while the first is pending is raised at once (held until
a transaction in progress has rolled back), for a callback that never
returns.

Examples
--------
>>> from ettlib.workbench import Workbench
>>> from ettlib.store.demo import write_demo_data
>>> wb = Workbench(":memory:")
>>> _ = write_demo_data(wb.store, symbol="ETH/USDT", days=1)
>>> s = wb.session("ETH/USDT", timeframes=["5m"])
>>> closes = []
>>> _ = s.subscribe_candle_completion(lambda e: closes.append(e.close), "ETH/USDT", "5m")
>>> s.run(until=s.start + 3_600_000) > 0, len(closes)
(True, 12)
>>> len(s.last_candles("ETH/USDT", "5m", 6))
6
>>> s.subscribe_candle_completion(print, "ETH/USDT", "15m")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: session explore-... does not replay timeframe '15m' (it replays 1m 5m); name it in the session's timeframes= (or pivot_timeframes=)
>>> s.close(); wb.close()
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

from ettlib import interrupts
from ettlib.clock import ReplayClock
from ettlib.coordinator import InferenceTrainingCoordinator, new_run_id
from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, LookAheadError
from ettlib.replay.events import InferenceStepEvent
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.normalization import compute_norm_params
from ettlib.coordinator.windows import read_window
from ettlib.replay import ReplayCursor, ReplayEngine, resolve_base_timeframe
from ettlib.store.schema import CANDLE_COLUMNS, OHLCV_COLUMNS
from ettlib.symbols import validate_symbols
from ettlib.timeframes import TIMEFRAMES, sort_timeframes, timeframe_ms
from ettlib.times import format_ms, to_ms_or_none

__all__ = ["Session", "GuardedCandles"]


class GuardedCandles:
    """Candle reads of a store that refuse what is not knowable at a clock; writes go elsewhere.

    What a session gives its coordinator and provider as their store:
    ``read_window``, ``read_windows`` and ``read_candles`` of ``candles``,
    each refusing (:class:`~ettlib.errors.LookAheadError`) a range whose last
    candle closes after ``clock.now()``; ``con`` and ``path`` of ``results``,
    where frames, pairs and checkpoints are written.
    """

    def __init__(self, candles, results, clock):
        self.candles = candles
        self.con = results.con
        self.path = results.path
        self.clock = clock

    def _check(self, timeframe: str, end: int | None, what: str) -> None:
        now = self.clock.now()
        if end is None or now is None or int(end) + timeframe_ms(timeframe) > now:
            raise LookAheadError(
                f"{what} ending at {format_ms(end) if end is not None else 'the last stored candle'} is "
                f"not knowable yet: the clock reads {format_ms(now)} (a candle is known at its close)")

    def read_window(self, symbol: str, timeframe: str, start: int, end: int, columns=CANDLE_COLUMNS):
        self._check(timeframe, end, f"a {symbol} {timeframe} window")
        return self.candles.read_window(symbol, timeframe, start, end, columns)

    def read_windows(self, symbol: str, timeframe: str, starts, ends, columns=CANDLE_COLUMNS):
        self._check(timeframe, max(ends, default=None), f"{symbol} {timeframe} windows")
        return self.candles.read_windows(symbol, timeframe, starts, ends, columns)

    def read_candles(self, symbol: str, timeframe: str, start=None, end=None, columns=CANDLE_COLUMNS):
        self._check(timeframe, end, f"{symbol} {timeframe} candles")
        return self.candles.read_candles(symbol, timeframe, start, end, columns)


class Session:
    """One wired replay of a store (see the module docstring); make it with ``Workbench.session``.

    Parameters
    ----------
    store
        The :class:`~ettlib.store.DuckDBStorage` the candles come from.
    symbols
        One symbol or several (replayed interleaved, in name order at equal times).
    start, end
        Open times of the first and last base candle replayed (epoch ms, ISO
        text, datetimes: :func:`ettlib.times.to_ms`); default the first and
        last stored base candle of the symbols.
    timeframes
        Timeframes replayed beside the base (each a whole multiple of it).
    base_timeframe
        Timeframe read from the store (default: the finest stored for every symbol).
    pivot_timeframes, pivot_n, pivot_levels
        Where pivots are detected (default every replayed timeframe), and how.
    pivot_lookback, retention, strict, persist_every, late_registration_ms
        The coordinator's (see :class:`~ettlib.coordinator.InferenceTrainingCoordinator`).
    columns
        The window columns (default OHLCV; the indicator columns of
        ``ettlib.store.schema.CANDLE_COLUMNS`` on request: those of the
        higher timeframes are then computed as the replay aggregates them).
    run_id
        Key of the session's rows (default: a new unique id, ``explore-...``
        without ``results``, ``run-...`` with).
    results
        Where frames, pairs and checkpoints go: ``None`` (an in-memory
        database, gone when the session closes), a
        :class:`~ettlib.store.DuckDBStorage`, or a path (opened, and closed
        with the session).
    resume, replace
        Continue ``run_id`` from its last checkpoint in ``results`` / start it over.
    warmup
        Candles of the longest timeframe held before ``start`` for windows
        and indicators (see :class:`~ettlib.replay.ReplayEngine`'s ``cache_warmup``).
    on_error, progress, speed
        The provider's error policy, the replay's progress bar and pacing.
    use_cache
        ``False``: the coordinator re-reads every training window from the
        store instead of the replay's cache (the same values; for measuring
        or checking the store path).
    record_expired
        The coordinator's: a session records every frame in
        ``inference_frames`` (the audit notebooks and reports read; with a
        model in the loop its cost does not show); ``False``: only the frames
        pending at each commit, what a resume needs.
    """

    def __init__(self, store, symbols, start=None, end=None, *, timeframes: Sequence[str] = (),
                 base_timeframe: str | None = None, pivot_timeframes: Sequence[str] | None = None,
                 pivot_n: int = 1, pivot_levels: int = 3, pivot_lookback: int = 30,
                 retention: int = 60, columns: Sequence[str] = OHLCV_COLUMNS,
                 run_id: str | None = None, results=None, resume: bool = False,
                 replace: bool = False, strict: bool = False, persist_every: int = 10_000,
                 late_registration_ms: int = 0, record_expired: bool = True, warmup: int = 1_000,
                 on_error: str = "raise",
                 progress: bool = False, speed: float | None = None, use_cache: bool = True):
        self.store = store
        self.symbols = validate_symbols(symbols)
        if isinstance(timeframes, str):
            timeframes = [timeframes]
        self.base_timeframe = resolve_base_timeframe(store, self.symbols, base_timeframe, timeframes)
        self.timeframes = tuple(sort_timeframes([self.base_timeframe, *timeframes]))
        start, end = self._range(to_ms_or_none(start, "start"), to_ms_or_none(end, "end"))
        self._owned_results = None
        if results is None:
            from ettlib.store import DuckDBStorage

            results = self._owned_results = DuckDBStorage(":memory:")
            default_id = "explore"
        else:
            if isinstance(results, (str, Path)):
                from ettlib.store import DuckDBStorage

                results = self._owned_results = DuckDBStorage(results)
            elif getattr(results, "read_only", False):
                raise ConfigError(
                    f"results={results.path} is open read-only, so the session cannot record its frames "
                    "and pairs there: give results= a file of its own (e.g. 'explore.duckdb'), or open the "
                    "store with Workbench(path, read_only=False) (which takes the file for this process)")
            default_id = "run"
        self.run_id = run_id if run_id is not None else new_run_id(default_id)
        try:
            self.provider = DataProvider(None, pivot_levels=pivot_levels, on_error=on_error)
            clock = ReplayClock(start)
            self.clock = clock.view()
            self.candles = GuardedCandles(store, results, self.clock)
            self.provider.duckdb_storage = self.candles
            self._engine = ReplayEngine(
                store, self.provider, self.symbols, start, end, base_timeframe=self.base_timeframe,
                timeframes=self.timeframes, pivot_timeframes=pivot_timeframes, pivot_n=pivot_n,
                pivot_levels=pivot_levels, step_timeframes="all", clock=clock, speed=speed,
                progress=progress, cache_warmup=warmup, cache_columns=columns)
            config = self._engine.config
            self.provider.serve_only(self.symbols, config.timeframes, config.pivot_timeframes,
                                     owner=f"session {self.run_id}")
            self.coordinator = InferenceTrainingCoordinator(
                self.provider, self.candles, cache=self._engine.cache if use_cache else None,
                pivot_lookback=pivot_lookback,
                retention=retention, columns=columns, run_id=self.run_id, strict=strict,
                persist_every=persist_every, clock=self.clock,
                late_registration_ms=late_registration_ms, resume=resume, replace=replace,
                record_expired=record_expired)
            if self.coordinator.resume_time is not None:  # events before it are in the restored state
                self._engine.seek(self.coordinator.resume_time - 1)
        except BaseException:
            if self._owned_results is not None:
                self._owned_results.close()
            raise
        self.results = results
        self._delivered = False
        #: Windows the replay's cache did not cover (read from the store instead).
        self.window_misses = 0

    def _range(self, start: int | None, end: int | None) -> tuple[int, int]:
        if start is not None and end is not None:
            return start, end
        bounds = [self.store.time_range(s, self.base_timeframe) for s in self.symbols]
        first = min(b[0] for b in bounds)
        last = max(b[1] for b in bounds)
        return (first if start is None else start), (last if end is None else end)

    # -- what is replayed ---------------------------------------------------------

    @property
    def start(self) -> int:
        """Open time of the first base candle replayed (epoch ms)."""
        return self._engine.start

    @property
    def end(self) -> int:
        """Open time of the last base candle replayed (epoch ms)."""
        return self._engine.end

    @property
    def pivot_timeframes(self) -> tuple[str, ...]:
        return self._engine.config.pivot_timeframes

    @property
    def pivot_levels(self) -> int:
        return self._engine.config.pivot_levels

    @property
    def pivot_n(self) -> int:
        return self._engine.config.pivot_n

    @property
    def position(self) -> int:
        """Events of the replay passed so far (delivered or skipped)."""
        return self._engine.position

    @property
    def finished(self) -> bool:
        """True once every event of the replay has passed."""
        return self._engine.finished

    def cursor(self) -> ReplayCursor:
        """Where the replay stands (see :class:`~ettlib.replay.ReplayCursor`)."""
        return self._engine.cursor()

    # -- subscribing -----------------------------------------------------------------

    def on_inference_step(self, symbol: str, timeframe: str, callback: Callable[[InferenceStepEvent], object]):
        """Call ``callback(step)`` at each inference step of a stream, from the next instant on.

        Steps come after every candle and pivot event of their instant; a
        subscription made at any time, even from inside a callback, serves
        every later instant.  Returns the subscription handle.
        """
        return self.provider.subscribe_inference_step(callback, symbol, timeframe)

    def subscribe_candle_completion(self, callback: Callable, symbol: str, timeframe: str):
        """The provider's subscription (a plain callback, not through the coordinator)."""
        return self.provider.subscribe_candle_completion(callback, symbol, timeframe)

    def subscribe_pivot_events(self, callback: Callable, symbol: str, timeframe: str, pivot_types):
        """The provider's subscription (a plain callback, not through the coordinator)."""
        return self.provider.subscribe_pivot_events(callback, symbol, timeframe, pivot_types)

    # -- driving -----------------------------------------------------------------------

    def _stoppable(self):
        """A stop region for the replay: Ctrl-C stops it at the next event boundary (see below)."""
        return interrupts.stop_requests(self._wake)

    def _wake(self) -> None:
        # Called from the SIGINT handler: a new provider version makes the deliver
        # loop return after the current callback, and the engine checks the request.
        self.provider.version += 1

    def step(self, n: int = 1) -> list:
        """Deliver the next ``n`` events (fewer at the end) and return them."""
        with self._stoppable():
            out = self._engine.step(n)
        self._delivered = self._delivered or bool(out)
        return out

    def run(self, until=None) -> int:
        """Deliver every remaining event knowable at or before ``until`` (all: ``None``); returns how many."""
        first = self._engine.position
        try:
            with self._stoppable():
                return self._engine.run(until)
        finally:
            self._delivered = self._delivered or self._engine.position > first

    def events(self) -> Iterator:
        """Yield the remaining events in order, each delivered before it is yielded."""
        for event in self._engine.iter_events():
            self._delivered = True
            yield event

    def seek(self, t) -> None:
        """Skip, without delivering, to just after the last event knowable at ``t``; forward only.

        Before any event was delivered a seek may go anywhere (it picks where
        the session starts); afterwards only forward: the coordinator and the
        models have already seen what came after an earlier time.
        """
        t = to_ms_or_none(t, "t")
        now = self.clock.now()
        if self._delivered and now is not None and t < now:
            raise ConfigError(
                f"cannot seek back to {format_ms(t)}: this session has delivered events up to "
                f"{format_ms(now)} and only moves forward; start a new session to replay earlier")
        self._engine.seek(t)

    # -- windows -------------------------------------------------------------------------

    def window(self, symbol: str, timeframe: str, start, end, columns: Sequence[str] | None = None):
        """The candles with open time in ``[start, end]``: the replay's cache, else the store.

        Refused (:class:`~ettlib.errors.LookAheadError`) when the candle at
        ``end`` has not closed at ``clock.now()``.  ``None`` when there is
        no such candle.
        """
        window, cached = read_window(self._engine.cache, self.candles, symbol, timeframe, int(start),
                                     int(end), columns)
        self.window_misses += not cached
        return window if window is not None and len(window) else None

    def window_rows(self, symbol: str, timeframe: str, start: int, end: int,
                    columns: Sequence[str] | None = None):
        """:meth:`window`'s rows as ``(timestamps, values)``, or ``None``: the same rows, source and checks.

        The inference loop's hot path: the cache's arrays (views), no
        :class:`~ettlib.store.candles.CandleArrays` built; the store through
        :meth:`window` when the cache does not cover the range.
        """
        cache = self._engine.cache
        rows = None if cache is None else cache.window_values(symbol, timeframe, start, end, columns)
        if rows is None:
            window = self.window(symbol, timeframe, start, end, columns)
            return None if window is None else (window.timestamps, window.values)
        return rows if len(rows[0]) else None

    def last_candles(self, symbol: str, timeframe: str, n: int, columns: Sequence[str] | None = None):
        """The candles of the last ``n`` grid slots closed at the clock (fewer across gaps), or ``None``."""
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ConfigError(f"n must be a positive int, got {n!r}")
        tf = TIMEFRAMES[timeframe]
        now = self.clock.now()
        end = now - now % tf - tf
        return self.window(symbol, timeframe, end - (n - 1) * tf, end, columns)

    def register_prediction(self, step: InferenceStepEvent, context: int, *, predicted_action: str,
                            predicted_candle: Sequence[float] = (), confidence: float = 0.5,
                            norm_params=None) -> InferenceFrameReference | None:
        """Make and register the frame of a prediction at ``step`` from its last ``context`` candles.

        ``norm_params`` default to :func:`~ettlib.coordinator.normalization.compute_norm_params`
        of that window.  Returns the frame, or ``None`` when fewer than
        ``context`` candles exist yet.
        """
        window = self.last_candles(step.symbol, step.timeframe, context)
        if window is None or len(window) < context:
            return None
        ref = InferenceFrameReference.for_prediction(
            self.coordinator.new_inference_id(), step.symbol, step.timeframe, step.timestamp,
            context=context, norm_params=compute_norm_params(window) if norm_params is None else norm_params,
            predicted_action=predicted_action, predicted_candle=tuple(predicted_candle),
            confidence=confidence, timestamps=window.timestamps)
        self.coordinator.register_inference_frame(ref)
        return ref

    # -- life cycle ----------------------------------------------------------------------

    def close(self, *, flush: bool = True) -> None:
        """Close the coordinator (flushing it, unless ``flush=False``) and an owned results store.

        The replay can still step and read windows afterwards, but the
        closed coordinator refuses frames: an inference loop still attached
        raises at its next prediction rather than lose it.
        """
        try:
            self.coordinator.close(flush=flush)
        finally:
            if self._owned_results is not None:
                self._owned_results.close()
                self._owned_results = None

    def __enter__(self) -> Session:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(flush=exc_type is None)

    def __repr__(self) -> str:
        return (f"Session({self.run_id!r}, {list(self.symbols)}, {format_ms(self.start)} .. "
                f"{format_ms(self.end)}, timeframes={list(self.timeframes)}, "
                f"now={format_ms(self.clock.now())}, position={self.position})")

