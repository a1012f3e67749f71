"""An ipywidgets event stepper: step through a replay and watch it learn.

:class:`EventStepper` wraps anything that yields ettlib events -- a replay
engine with ``step(n)`` (and optionally ``seek(t)``, ``clock``, ``cache``),
or a plain iterator of events -- and shows, after every step:

* a candlestick chart (:func:`ettlib.plots.plot_candles`) of the last
  ``window_candles`` closed candles of one stream, with the confirmed pivots
  seen so far, the current frame's input window shaded, the pending frames'
  targets and the pairs matched by the last event;
* an event counter (``.counter``, CSS class ``ett-event-counter``) whose
  text changes on every step;
* a panel (``.panel``) with the coordinator's counters (pending, matched,
  expired, delivered, failed) and the last events.

Controls: Step, Step xN, Play/Pause (``ipywidgets.Play``: each tick is one
step, the speed slider sets its interval), a seek slider over the replay's
time range (see :meth:`EventStepper.seek`), a "chart" dropdown choosing the
charted stream, and filters by event kind, timeframe and pivot type.  The
filters decide which events are *shown* in the log and which count as a
step: "Step" consumes events until one passes the filters (every event
consumed is still seen by the chart and, through the engine's DataProvider,
by the coordinator).

Dependencies are duck-typed and narrow:

``source``
    ``step(n) -> list of events`` (at most ``n``, empty when finished), or
    any iterable of events.  Optional: ``seek(t)``, ``clock.now()``,
    ``cache.window(symbol, timeframe, start, end, columns)``, ``start`` /
    ``end`` (the time range of the seek slider).
``coordinator`` (optional)
    read through :func:`coordinator_view`: counters, pending frames and the
    pairs matched by the last event.

The chart's candles come from ``window(symbol, timeframe, start, end)``
when given, else from ``source.cache.window`` (higher timeframes the cache
lacks are aggregated from its base candles with
:func:`ettlib.aggregate.aggregate_candles`), else from the candle
completions the stepper itself has seen.  Only candles closed by the
current time are drawn.

Rendering reuses one Figure: each step removes the data artists, draws the
new ones and writes a PNG into an ``ipywidgets.Image``; ``redraw_ms`` keeps
the time of every redraw (``median_redraw_ms()``).

Nothing here reads the wall clock for the replay's time: the time shown is
``source.clock.now()`` or the knowable time of the last event.

Examples
--------
>>> from ettlib.events import CandleCompletionEvent
>>> events = [CandleCompletionEvent("X", "1m", t, t + 60_000, 1, 2, 0.5, 1.5, 1)
...           for t in range(0, 600_000, 60_000)]
>>> stepper = EventStepper(events, window_candles=5)
>>> stepper.step_button.click()
>>> stepper.consumed, stepper.counter.value.split(",")[0]
(1, '<b>1</b> events consumed')
>>> len(stepper.step(20)), stepper.finished, len(stepper.chart_candles())
(9, True, 5)
>>> stepper.chart_stream.value
('X', '1m')
"""

from __future__ import annotations

import html
import io
import itertools
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone

import numpy as np

from ettlib.candles import CandleArrays
from ettlib.errors import ConfigError
from ettlib.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent
from ettlib.timeframes import TIMEFRAMES, bucket_start, sort_timeframes, timeframe_ms

__all__ = ["EventStepper", "IteratorSource", "coordinator_view", "matched_pairs", "event_kind", "format_ms"]

#: Event kinds as the filters name them.
EVENT_KINDS: tuple[str, str, str] = ("candle", "pivot", "step")
#: Counters the panel shows, in this order (missing ones are shown as "-").
COUNTER_NAMES: tuple[str, ...] = ("pending", "matched", "expired", "delivered", "failed")
_OHLC = ("open", "high", "low", "close")


def event_kind(event) -> str:
    """``'candle'``, ``'pivot'`` or ``'step'``."""
    if isinstance(event, CandleCompletionEvent):
        return "candle"
    if isinstance(event, PivotEvent):
        return "pivot"
    if isinstance(event, InferenceStepEvent):
        return "step"
    raise ConfigError(f"not an ettlib event: {type(event).__name__}")


def format_ms(ms: int | None) -> str:
    """Epoch ms as ``'YYYY-MM-DD HH:MM:SS'`` UTC (``'-'`` for None).

    >>> format_ms(0)
    '1970-01-01 00:00:00'
    """
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def describe_event(event) -> str:
    """One line for the log, e.g. ``'pivot L2L ETH/USDT 1m @ 12:03 price 101.5'``."""
    kind = event_kind(event)
    at = format_ms(event.timestamp)[11:16]
    if kind == "candle":
        return f"candle {event.symbol} {event.timeframe} {at} close {event.close:.6g}"
    if kind == "pivot":
        return f"pivot {event.pivot_type} {event.symbol} {event.timeframe} bar {at} price {event.price:.6g}"
    return f"step {event.symbol} {event.timeframe} at {at}"


class IteratorSource:
    """``step(n)`` over a plain iterable of events (forward only).

    ``seek(t)`` consumes (and returns) the events knowable at or before
    ``t``; it peeks one event ahead so that it never consumes an event from
    after ``t``.  It cannot go back.

    >>> from ettlib.events import InferenceStepEvent
    >>> src = IteratorSource(InferenceStepEvent("X", "1m", t) for t in (60_000, 120_000, 180_000))
    >>> [e.timestamp for e in src.seek(120_000)], [e.timestamp for e in src.step(5)]
    ([60000, 120000], [180000])
    """

    def __init__(self, events: Iterable):
        self._events = iter(events)
        self._peeked: list = []
        self.last_time: int | None = None

    def step(self, n: int = 1) -> list:
        out = self._peeked[:n]
        del self._peeked[:n]
        out.extend(itertools.islice(self._events, n - len(out)))
        if out:
            self.last_time = out[-1].knowable_time
        return out

    def seek(self, t: int) -> list:
        if self.last_time is not None and t < self.last_time:
            raise ConfigError(
                f"cannot seek back to {format_ms(t)} in an iterator of events "
                f"(already at {format_ms(self.last_time)}); use a ReplayEngine to seek backwards"
            )
        out = []
        while True:
            nxt = self.step(1)
            if not nxt:
                return out
            if nxt[0].knowable_time > t:
                self._peeked.insert(0, nxt[0])
                return out
            out.append(nxt[0])


# ------------------------------------------------------------- coordinator


def _as_dict(value) -> dict:
    if value is None:
        return {}
    if callable(value):
        value = value()
    if is_dataclass(value) and not isinstance(value, type):
        return asdict(value)
    if isinstance(value, Mapping):
        return dict(value)
    return {k: getattr(value, k) for k in COUNTER_NAMES if hasattr(value, k)}


def coordinator_view(coordinator, symbol: str | None = None, timeframe: str | None = None):
    """``(counters, retained_frames, last_matched_pairs)`` read from a coordinator.

    Duck-typed and tolerant: ``counters`` is the first of ``coordinator.counters``
    / ``.stats`` / ``.snapshot`` (a method, mapping or dataclass) that exists;
    frames come from ``retained_frames()`` (the
    :class:`~ettlib.coordinator.InferenceTrainingCoordinator`'s), or
    ``pending_frames(symbol, timeframe)`` / ``pending_frames()`` / ``.pending``,
    filtered to the stream; matched pairs from ``last_matches`` (method or
    attribute: ``(frame, event)`` pairs or frames), ``None`` when the
    coordinator has no such thing (the stepper then recomputes them with
    :func:`matched_pairs`).  Without a coordinator: ``({}, [], [])``.
    """
    if coordinator is None:
        return {}, [], []
    counters = {}
    for name in ("counters", "stats", "snapshot"):
        if hasattr(coordinator, name):
            counters = _as_dict(getattr(coordinator, name))
            break
    pending = []
    getter = getattr(coordinator, "pending_frames", None)
    if callable(getattr(coordinator, "retained_frames", None)):
        pending = list(coordinator.retained_frames())
    elif callable(getter):
        try:
            pending = list(getter(symbol, timeframe))
        except TypeError:
            pending = list(getter())
    elif hasattr(coordinator, "pending"):
        value = coordinator.pending
        pending = list(value() if callable(value) else value)
    pending = [
        f for f in pending
        if (symbol is None or f.symbol == symbol) and (timeframe is None or f.timeframe == timeframe)
    ]
    if not hasattr(coordinator, "last_matches"):
        return counters, pending, None
    matched = coordinator.last_matches
    matched = list((matched() if callable(matched) else matched) or [])
    return counters, pending, matched


def matched_pairs(event, frames: Iterable, pivot_lookback: int = 30) -> list[tuple[object, object]]:
    """The ``(frame, event)`` pairs ``event`` matches among ``frames`` (``DESIGN.md`` rules).

    A candle completion matches the frames of its stream whose
    ``target_timestamp`` is the candle's open time; a pivot matches those
    whose ``prediction_timestamp`` lies in ``[t_p - pivot_lookback * tf, t_p]``.
    Anything else matches nothing.

    >>> from types import SimpleNamespace as F
    >>> frames = [F(symbol="X", timeframe="1m", prediction_timestamp=t, target_timestamp=t) for t in (0, 60_000)]
    >>> c = CandleCompletionEvent("X", "1m", 60_000, 120_000, 1, 1, 1, 1, 1)
    >>> [f.target_timestamp for f, _ in matched_pairs(c, frames)]
    [60000]
    >>> p = PivotEvent("X", "1m", "L1L", 1, 60_000, 1.0, 1.0, 180_000)
    >>> len(matched_pairs(p, frames, pivot_lookback=0))
    1
    """
    if isinstance(event, CandleCompletionEvent):
        return [
            (f, event) for f in frames
            if f.symbol == event.symbol and f.timeframe == event.timeframe
            and f.target_timestamp == event.timestamp
        ]
    if isinstance(event, PivotEvent):
        lo = event.timestamp - pivot_lookback * TIMEFRAMES[event.timeframe]
        return [
            (f, event) for f in frames
            if f.symbol == event.symbol and f.timeframe == event.timeframe
            and lo <= f.prediction_timestamp <= event.timestamp
        ]
    return []


# ------------------------------------------------------------- the stepper


class EventStepper:
    """Step through events with buttons, watch candles, pivots and frames.

    Parameters
    ----------
    source
        A replay engine (``step(n)``, optional ``seek``, ``clock``, ``cache``,
        ``start``, ``end``) or an iterable of events.
    coordinator
        Optional (an :class:`~ettlib.coordinator.InferenceTrainingCoordinator`);
        read by :func:`coordinator_view` after every step: its counters fill
        the panel, its retained frames whose target candle has not closed are
        the chart's pending frames (the latest one's input window shaded),
        and the pairs matched by the last candle or pivot event of the
        chart's stream are highlighted.  Without a ``last_matches`` of its
        own, those pairs are recomputed by :func:`matched_pairs` -- only when
        the coordinator's ``matched`` counter moved during the step.
    window_candles
        Candles shown in the chart (the last ones closed).
    symbol, timeframe
        The chart's stream (also the "chart" dropdown); default: a replay's
        first inference-step stream, else its first symbol's base timeframe;
        for an iterator, the first step's stream (before one arrives, the
        first candle's).
    window
        ``window(symbol, timeframe, start, end) -> CandleArrays | None``: where
        the chart's candles come from (see the module docstring).
    time_range
        ``(start, end)`` epoch ms of the seek slider; default
        ``(source.start, source.end)`` when both exist, else no seeking by
        slider (``seek(t)`` still works).
    timeframes, pivot_levels
        Options of the timeframe and pivot-type filters (timeframes seen in
        the events are added as they come); defaults: a ReplayEngine's
        ``config.timeframes`` and ``config.pivot_levels``, else ``("1m",)``
        and 3.
    log_size
        Events listed in the panel.
    max_scan
        Most events one step may consume while looking for an event that
        passes the filters.
    figsize, dpi
        Size of the chart.

    Attributes
    ----------
    widget
        The whole UI (an ``ipywidgets.VBox``); the stepper displays as it.
    step_button, step_n_button, n_steps, play, speed, seek_slider, seek_button,
    kind_filter, timeframe_filter, pivot_filter, chart_stream, image, counter, panel
        The parts, for notebooks and tests.  CSS classes for browser tests:
        ``ett-step``, ``ett-step-n``, ``ett-chart``, ``ett-event-counter``,
        ``ett-panel``.
    consumed, shown
        Events consumed from the source / passing the filters so far.
    redraw_ms
        Time of every chart redraw, in ms.
    """

    def __init__(
        self,
        source,
        coordinator=None,
        *,
        window_candles: int = 120,
        symbol: str | None = None,
        timeframe: str | None = None,
        window: Callable | None = None,
        time_range: tuple[int, int] | None = None,
        timeframes: Iterable[str] | None = None,
        pivot_levels: int | None = None,
        log_size: int = 12,
        max_scan: int = 1_000_000,
        figsize: tuple[float, float] = (9.0, 4.0),
        dpi: float = 80,
    ):
        import ipywidgets as w

        if not isinstance(window_candles, int) or window_candles < 2:
            raise ConfigError(f"window_candles must be an integer >= 2, got {window_candles!r}")
        if not isinstance(log_size, int) or log_size < 1:
            raise ConfigError(f"log_size must be a positive integer, got {log_size!r}")
        if hasattr(source, "step"):
            self.source = source
        elif isinstance(source, Iterable):
            self.source = IteratorSource(source)
        else:
            raise ConfigError(
                f"source must have a step(n) method or be an iterable of events, got {type(source).__name__}"
            )
        if timeframe is not None:
            timeframe_ms(timeframe)  # validates
        self.coordinator = coordinator
        self.window_candles = window_candles
        self.symbol = symbol
        self.timeframe = timeframe
        self._wanted_stream = (symbol, timeframe)
        self._stream_from_step = False
        if self.symbol is None or self.timeframe is None:
            self._default_stream(source)
        self._window = window
        if isinstance(max_scan, bool) or not isinstance(max_scan, int) or max_scan < 1:
            raise ConfigError(f"max_scan must be a positive integer, got {max_scan!r}")
        self.max_scan = max_scan
        self.consumed = 0
        self.shown = 0
        self.finished = False
        self.last_time: int | None = None
        self.last_event = None
        self._last_truth = None  # last candle/pivot of the chart's stream
        self._last_truth_at = -1  # its position in the consumed events
        self._refresh_from = 0  # consumed count at the previous refresh
        self._matched_count = None  # coordinator's "matched" at the previous refresh
        self._pending: list = []  # frames whose target candle has not closed
        self._matched: list = []  # pairs the last truth event matched
        self._current = None  # the frame whose input window is shaded
        self.last_error: str | None = None
        self.redraw_ms: list[float] = []
        self._log: deque = deque(maxlen=log_size)
        self._candles: dict[tuple[str, str], deque] = {}
        self._pivots: dict[tuple[str, str], deque] = {}
        self._kind_counts = dict.fromkeys(EVENT_KINDS, 0)

        # --- figure, reused for every redraw (outside pyplot)
        from matplotlib.figure import Figure

        self.figure = Figure(figsize=figsize, dpi=dpi)
        self.figure.subplots_adjust(left=0.1, right=0.98, top=0.91, bottom=0.13)
        self.axes = self.figure.add_subplot()
        self._dpi = dpi

        # --- controls
        self.step_button = w.Button(
            description="Step", icon="step-forward", tooltip="consume events until one passes the filters"
        )
        self.step_button.add_class("ett-step")
        self.n_steps = w.BoundedIntText(
            value=10, min=1, max=1_000_000, description="×N", layout=w.Layout(width="150px")
        )
        self.step_n_button = w.Button(description="Step ×N", icon="fast-forward")
        self.step_n_button.add_class("ett-step-n")
        self.play = w.Play(
            value=0, min=0, max=10**9, step=1, interval=500, description="Play", show_repeat=False
        )
        self.speed = w.IntSlider(
            value=500, min=50, max=3000, step=10, description="ms/step", continuous_update=False
        )
        self.step_button.on_click(lambda _b: self._guarded(self.step, 1))
        self.step_n_button.on_click(lambda _b: self._guarded(self.step, self.n_steps.value))
        self.play.observe(self._on_tick, names="value")
        self.speed.observe(self._on_speed, names="value")

        self.time_range = time_range
        src_start, src_end = getattr(source, "start", None), getattr(source, "end", None)
        if time_range is None and src_start is not None and src_end is not None:
            self.time_range = (int(src_start), int(src_end))
        lo, hi = self.time_range if self.time_range else (0, 0)
        self._seek_unit = TIMEFRAMES["1m"] if hi - lo >= TIMEFRAMES["1m"] else 1
        self.seek_slider = w.IntSlider(
            value=0, min=0, max=max(0, (hi - lo) // self._seek_unit), description="seek",
            readout=False, continuous_update=True, disabled=self.time_range is None,
            layout=w.Layout(width="420px"),
        )
        self.seek_label = w.Label(value=format_ms(lo) if self.time_range else "no time range")
        self.seek_button = w.Button(description="Seek", icon="search", disabled=self.time_range is None)
        self.seek_slider.observe(
            lambda _change: setattr(self.seek_label, "value", format_ms(self._slider_time())), names="value"
        )
        self.seek_button.on_click(lambda _b: self._guarded(self.seek, self._slider_time()))

        if timeframes is None:  # the replay's timeframes when it says, else 1m
            timeframes = getattr(getattr(source, "config", None), "timeframes", None) or ("1m",)
        tfs = sort_timeframes(list(timeframes) + ([timeframe] if timeframe else []))
        from ettlib.events import pivot_types_up_to

        self.kind_filter = w.SelectMultiple(
            options=EVENT_KINDS, value=EVENT_KINDS, description="kinds", rows=3
        )
        self.timeframe_filter = w.SelectMultiple(options=tfs, value=tfs, description="timeframes", rows=3)
        if pivot_levels is None:
            pivot_levels = getattr(getattr(source, "config", None), "pivot_levels", None) or 3
        ptypes = pivot_types_up_to(pivot_levels)
        self.pivot_filter = w.SelectMultiple(options=ptypes, value=ptypes, description="pivots", rows=3)
        self._selected_tfs = set(tfs)
        for f in (self.kind_filter, self.timeframe_filter, self.pivot_filter):
            f.observe(self._on_filter, names="value")
        config = getattr(source, "config", None)
        self._streams = [
            (sym, tf) for sym in getattr(source, "symbols", ()) for tf in getattr(config, "timeframes", ())
        ]
        self._syncing = False
        self.chart_stream = w.Dropdown(options=[], description="chart", layout=w.Layout(width="220px"))
        self.chart_stream.observe(self._on_chart_stream, names="value")

        # --- displays
        self.image = w.Image(format="png", layout=w.Layout(
            width=f"{int(figsize[0] * dpi)}px", height="auto", object_fit="contain", flex="0 1 auto",
            align_self="flex-start"))
        self.image.add_class("ett-chart")
        self.counter = w.HTML()
        self.counter.add_class("ett-event-counter")
        self.panel = w.HTML(layout=w.Layout(width="340px"))
        self.panel.add_class("ett-panel")
        self.widget = w.VBox([
            w.HBox([self.step_button, self.n_steps, self.step_n_button, self.play, self.speed]),
            w.HBox([self.seek_slider, self.seek_label, self.seek_button]),
            w.HBox([self.kind_filter, self.timeframe_filter, self.pivot_filter, self.chart_stream]),
            self.counter,
            w.HBox([self.image, self.panel]),
        ])
        self.refresh()

    # ---------------------------------------------------------- display

    def _repr_mimebundle_(self, **kwargs):
        return self.widget._repr_mimebundle_(**kwargs)

    # ---------------------------------------------------------- filters

    def passes(self, event) -> bool:
        """True if ``event`` passes the kind, timeframe and pivot-type filters."""
        kind = event_kind(event)
        if kind not in self.kind_filter.value or event.timeframe not in self.timeframe_filter.value:
            return False
        return kind != "pivot" or event.pivot_type in self.pivot_filter.value

    def shown_events(self) -> list:
        """The last events that passed the filters (oldest first), as logged."""
        return [e for e in self._log if self.passes(e)]

    # ---------------------------------------------------------- stepping

    def step(self, n: int = 1) -> list:
        """Consume events until ``n`` pass the filters (or the source ends).

        Returns the events that passed.  Redraws once at the end.
        """
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        passed: list = []
        scanned = 0
        while len(passed) < n and scanned < self.max_scan:
            batch = self.source.step(int(n - len(passed)))
            if not batch:
                self.finished = True
                break
            scanned += len(batch)
            for event in batch:
                if self._consume(event):
                    passed.append(event)
        if self.finished and self.play.playing:
            self.play.playing = False
        self.refresh()
        return passed

    def seek(self, t: int) -> None:
        """Move the replay to knowable time ``t``.

        * With a coordinator and a source that has ``run(until)`` (a
          :class:`~ettlib.replay.ReplayEngine`), seeking forward *delivers*
          every event up to ``t`` through the fast path, so matching and
          training stay exact; seeking backward is refused (the coordinator
          has already processed those events: make a new engine and
          coordinator, or resume one from a checkpoint).
        * Otherwise the source's ``seek(t)`` is used: a ReplayEngine skips
          the events without delivering them (and restarts when ``t`` is
          behind it); an iterator of events consumes them.  Events a
          ``seek`` returns are counted and drawn, not logged one by one.

        The chart's pivots are then re-detected from the candles before
        ``t`` (:func:`ettlib.pivots.detect_pivots` over ``4 *
        window_candles`` candles, keeping those confirmed by ``t``) when the
        source's cache can give them.
        """
        t = int(t)
        behind = self.last_time is not None and t < self.last_time
        run = getattr(self.source, "run", None)
        if self.coordinator is not None and callable(run):
            if behind:
                raise ConfigError(
                    f"cannot seek back to {format_ms(t)} with a coordinator attached: it has already "
                    "processed the events after it; start a new engine and coordinator instead"
                )
            run(t)
        else:
            seek = getattr(self.source, "seek", None)
            if seek is None:
                raise ConfigError(f"{type(self.source).__name__} cannot seek")
            skipped = seek(t)
            if behind:
                self._candles.clear()
                self._pivots.clear()
                self._log.clear()
                self._last_truth = None
                self.finished = False
            for event in skipped or ():
                self._consume(event, log=False)
        self.last_time = self._clock_now(default=t)
        self._reseed_pivots()
        self.refresh()

    def _reseed_pivots(self) -> None:
        """Pivots of the chart's stream confirmed by now, from the source's cache."""
        config = getattr(self.source, "config", None)
        if self.symbol is None or self.last_time is None:
            return
        if self.timeframe not in getattr(config, "pivot_timeframes", (self.timeframe,)):
            return
        from ettlib.pivots import detect_pivots

        tf = timeframe_ms(self.timeframe)
        end = bucket_start(self.last_time, self.timeframe) - tf
        start = end - (4 * self.window_candles - 1) * tf
        candles = self._source_window(start, end)
        if candles is None or len(candles) < 3:
            return
        table = detect_pivots(
            candles.timestamps, candles.column("high"), candles.column("low"), self.timeframe,
            n=getattr(config, "pivot_n", 1), levels=getattr(config, "pivot_levels", 3),
        )
        known = [e for e in table.events(self.symbol, self.timeframe) if e.confirmed_at <= self.last_time]
        self._pivots[(self.symbol, self.timeframe)] = deque(known, maxlen=5_000)

    def _consume(self, event, *, log: bool = True) -> bool:
        kind = event_kind(event)
        self.consumed += 1
        self._kind_counts[kind] += 1
        self.last_time = event.knowable_time
        key = (event.symbol, event.timeframe)
        if event.timeframe not in self.timeframe_filter.options:
            # a new timeframe: offer it, selected, and keep the user's selection
            opts = sort_timeframes([*self.timeframe_filter.options, event.timeframe])
            wanted = tuple(tf for tf in opts if tf in self._selected_tfs or tf == event.timeframe)
            self.timeframe_filter.options = opts
            self.timeframe_filter.value = wanted
            self._selected_tfs = set(wanted)
        if kind == "candle":
            buf = self._candles.get(key)
            if buf is None:
                buf = self._candles[key] = deque(maxlen=self.window_candles)
            buf.append((event.timestamp, event.open, event.high, event.low, event.close))
            if self.timeframe is None and self._wants(key):
                self.symbol, self.timeframe = key
        elif kind == "pivot":
            self._pivots.setdefault(key, deque(maxlen=5_000)).append(event)
        elif not self._stream_from_step and self._wants(key):
            self.symbol, self.timeframe = key
            self._stream_from_step = True
        if kind != "step" and key == (self.symbol, self.timeframe):
            self._last_truth = event
            self._last_truth_at = self.consumed
        ok = self.passes(event)
        if ok:
            self.shown += 1
            self.last_event = event
            if log:
                self._log.append(event)
        return ok

    def _default_stream(self, source) -> None:
        """The chart's stream from a replay's configuration, before any event."""
        config = getattr(source, "config", None)
        streams = list(getattr(config, "step_streams", ()) or ())
        base = getattr(config, "base_timeframe", None)
        streams += [(sym, base) for sym in getattr(source, "symbols", ()) if base]
        for key in streams:
            if self._wants(key):
                self.symbol, self.timeframe = key
                self._stream_from_step = key in getattr(config, "step_streams", ())
                return

    def _wants(self, key: tuple[str, str]) -> bool:
        """True if the stream ``key`` may become the chart's stream."""
        symbol, timeframe = self._wanted_stream
        if symbol is not None and timeframe is not None:
            return False
        return symbol in (None, key[0]) and timeframe in (None, key[1])

    # ---------------------------------------------------------- callbacks

    def _guarded(self, fn, *args) -> None:
        try:
            fn(*args)
            self.last_error = None
        except Exception as exc:  # shown in the UI rather than lost in a log
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._render_counter()

    def _on_chart_stream(self, change) -> None:
        key = change["new"]
        if self._syncing or key is None or key == (self.symbol, self.timeframe):
            return
        self._guarded(self.show_stream, *key)

    def show_stream(self, symbol: str, timeframe: str) -> None:
        """Chart ``symbol``/``timeframe`` from now on (the "chart" dropdown)."""
        timeframe_ms(timeframe)  # validates
        self.symbol, self.timeframe = symbol, timeframe
        self._wanted_stream = (symbol, timeframe)
        self._last_truth, self._last_truth_at = None, -1
        self._reseed_pivots()  # the stepper may not have seen them all (after a seek)
        self.refresh()

    def _sync_stream_picker(self) -> None:
        """Offer every stream known so far in the "chart" dropdown; show the current one."""
        streams = list(dict.fromkeys([*self._streams, *self._candles]))
        if self.symbol is not None and (self.symbol, self.timeframe) not in streams:
            streams.append((self.symbol, self.timeframe))
        streams.sort(key=lambda k: (k[0], TIMEFRAMES[k[1]]))
        self._syncing = True
        try:
            if [v for _, v in self.chart_stream.options] != streams:
                self.chart_stream.options = [(f"{sym} {tf}", (sym, tf)) for sym, tf in streams]
            current = (self.symbol, self.timeframe) if self.symbol is not None else None
            if self.chart_stream.value != current:
                self.chart_stream.value = current
        finally:
            self._syncing = False

    def _on_tick(self, change) -> None:
        # the Play widget counts up while playing; "stop" resets it to 0 (no step)
        if change["new"] > change["old"] and not self.finished:
            self._guarded(self.step, 1)

    def _on_speed(self, change) -> None:
        self.play.interval = int(change["new"])

    def _on_filter(self, change) -> None:
        if change["owner"] is self.timeframe_filter:
            self._selected_tfs = set(change["new"])
        if change["owner"] is self.pivot_filter:
            self.redraw()  # the chart's pivots follow the pivot-type filter
        self._render_panel()

    def _slider_time(self) -> int:
        lo = self.time_range[0] if self.time_range else 0
        return lo + self.seek_slider.value * self._seek_unit

    def _clock_now(self, default=None):
        clock = getattr(self.source, "clock", None)
        now = getattr(clock, "now", None)
        if callable(now):
            value = now()
            if value is not None:
                return int(value)
        return default

    # ---------------------------------------------------------- rendering

    def refresh(self) -> None:
        """Redraw the chart, the counter and the panel."""
        clock = self._clock_now(default=self.last_time)
        if clock is not None:
            self.last_time = clock
        self._counters, retained, matched = coordinator_view(
            self.coordinator, self.symbol, self.timeframe
        )
        if matched is None:
            # Recompute the last truth event's pairs, but only when it came in
            # since the last refresh and the coordinator's "matched" counter
            # moved (it may not subscribe to that event at all).
            count = self._counters.get("matched")
            moved = count is None or self._matched_count is None or count > self._matched_count
            fresh = self._last_truth_at > self._refresh_from
            matched = []
            if moved and fresh:
                lookback = getattr(self.coordinator, "pivot_lookback", 30)
                matched = matched_pairs(self._last_truth, retained, lookback)
            self._matched_count = count
        self._refresh_from = self.consumed
        now = self.last_time
        # pending: frames still waiting for their target candle
        self._pending = [
            f for f in retained
            if now is None or f.target_timestamp + TIMEFRAMES[f.timeframe] > now
        ]
        # The window to shade: the newest frame, pending or just matched.
        self._current = max(retained, key=lambda f: f.prediction_timestamp, default=None)
        self._matched = matched
        self.redraw()
        self._sync_stream_picker()
        self._render_counter()
        self._render_panel()
        if self.time_range and self.last_time is not None:
            lo, hi = self.time_range
            pos = (min(max(self.last_time, lo), hi) - lo) // self._seek_unit
            if pos != self.seek_slider.value:
                self.seek_slider.value = int(pos)

    def chart_candles(self) -> CandleArrays | None:
        """The candles the chart shows now (``None`` before any is known)."""
        if self.symbol is None or self.last_time is None:
            return None
        tf = timeframe_ms(self.timeframe)
        end = bucket_start(self.last_time, self.timeframe) - tf  # last closed candle
        start = end - (self.window_candles - 1) * tf
        if self._window is not None:
            got = self._window(self.symbol, self.timeframe, start, end)
            if got is not None and len(got):
                return got
        got = self._source_window(start, end)
        if got is not None:
            return got
        buf = self._candles.get((self.symbol, self.timeframe))
        if not buf:
            return None
        rows = np.array(buf, dtype=np.float64)
        rows = rows[(rows[:, 0] >= start) & (rows[:, 0] <= end)]  # nothing stale, nothing unknown
        if not len(rows):
            return None
        return CandleArrays(rows[:, 0].astype(np.int64), rows[:, 1:], _OHLC)

    def _source_window(self, start: int, end: int) -> CandleArrays | None:
        """The chart stream's candles of ``[start, end]`` from the source's cache, or None.

        Higher timeframes the cache does not hold are aggregated from its
        base-timeframe candles.
        """
        cache = getattr(self.source, "cache", None)
        if cache is None or not hasattr(cache, "window"):
            return None
        got = self._cache_window(cache, self.timeframe, start, end)
        if got is not None and len(got):
            return got
        base = getattr(getattr(self.source, "config", None), "base_timeframe", None)
        if base is not None and base != self.timeframe:
            got = self._aggregated_window(cache, base, start, end)
            if got is not None and len(got):
                return got
        return None

    def _cache_window(self, cache, timeframe: str, start: int, end: int) -> CandleArrays | None:
        try:
            return cache.window(self.symbol, timeframe, start, end, _OHLC)
        except Exception:  # a cache that cannot serve this stream: try the next way
            return None

    def _aggregated_window(self, cache, base: str, start: int, end: int) -> CandleArrays | None:
        """The chart's higher-timeframe candles aggregated from the cached base candles.

        A replay aggregates higher timeframes itself; its cache may hold only
        the base candles.  Candles are aggregated by
        :func:`ettlib.aggregate.aggregate_candles` and kept when complete and
        knowable by now.
        """
        from ettlib.aggregate import aggregate_candles

        tf, base_ms = timeframe_ms(self.timeframe), timeframe_ms(base)
        got = self._cache_window(cache, base, start, end + tf - base_ms)
        if got is None or not len(got):
            return None
        agg = aggregate_candles(got.timestamps, *(got.column(c) for c in _OHLC), np.zeros(len(got)),
                                base, self.timeframe)
        keep = (agg.close_time <= self.last_time) & (agg.timestamp >= start) & (agg.timestamp <= end)
        values = np.column_stack([agg.open, agg.high, agg.low, agg.close])[keep]
        return CandleArrays(agg.timestamp[keep], values, _OHLC)

    def redraw(self) -> None:
        """Draw the chart into ``image`` (timed into ``redraw_ms``)."""
        from ettlib.plots import plot_candles

        started = time.perf_counter()
        ax = self.axes
        for artist in [*ax.collections, *ax.patches, *ax.texts]:
            artist.remove()
        candles = self.chart_candles()
        title = f"{self.symbol or '-'} {self.timeframe or ''} · {format_ms(self.last_time)} UTC"
        if candles is None:
            ax.set_title(title)
            ax.text(0.5, 0.5, "no candles yet: press Step", ha="center", va="center", transform=ax.transAxes)
        else:
            pivots = [
                p for p in self._pivots.get((self.symbol, self.timeframe), ())
                if p.pivot_type in self.pivot_filter.value
            ]
            plot_candles(
                candles, pivots=pivots, frames=self._pending, matched=self._matched,
                current_frame=self._current, timeframe=self.timeframe, ax=ax, title=title,
            )
        buf = io.BytesIO()
        self.figure.savefig(buf, format="png", dpi=self._dpi, pil_kwargs={"compress_level": 1})
        self.image.value = buf.getvalue()
        self.redraw_ms.append(1000 * (time.perf_counter() - started))

    def median_redraw_ms(self) -> float | None:
        """Median chart redraw time so far, in ms."""
        return float(np.median(self.redraw_ms)) if self.redraw_ms else None

    def _render_counter(self) -> None:
        state = "finished" if self.finished else "ready"
        text = (
            f"<b>{self.consumed}</b> events consumed, <b>{self.shown}</b> shown "
            f"(candles {self._kind_counts['candle']}, pivots {self._kind_counts['pivot']}, "
            f"steps {self._kind_counts['step']}) · t = {format_ms(self.last_time)} UTC · {state}"
        )
        if self.last_error:
            text += f" · <span style='color:#c00'>error: {html.escape(self.last_error)}</span>"
        self.counter.value = text

    def _render_panel(self) -> None:
        names = [*COUNTER_NAMES, *(k for k in self._counters if k not in COUNTER_NAMES)]
        rows = "".join(
            f"<tr><td>{html.escape(str(name))}</td>"
            f"<td style='text-align:right'>{html.escape(str(self._counters.get(name, '-')))}</td></tr>"
            for name in names
        )
        log = "".join(
            f"<li>{format_ms(e.knowable_time)[11:]} {html.escape(describe_event(e))}</li>"
            for e in reversed(self.shown_events())
        )
        self.panel.value = (
            "<div style='font-family:monospace;font-size:12px'>"
            f"<b>coordinator</b><table>{rows}</table>"
            f"<b>last events</b><ol style='padding-left:1.5em;margin:0'>{log}</ol></div>"
        )
