"""An ipywidgets event stepper: step through a session's replay and watch it learn.

:class:`EventStepper` drives a :class:`~ettlib.session.Session` and shows,
after every step:

* a candlestick chart (:func:`ettlib.notebooks.plots.plot_candles`) of the last
  ``window_candles`` closed candles of one stream, with the pivots confirmed
  so far, the newest frame's input window shaded, the pending frames'
  targets and the pairs matched by the stream's last event (all read by
  :func:`chart_data` from the session and its coordinator);
* an event counter (``.counter``, CSS class ``ett-event-counter``) whose
  text changes on every step;
* a panel (``.panel``) with the coordinator's counters (pending, matched,
  expired, delivered, failed) and the last events.

Controls: Step, Step xN, Play/Pause (``ipywidgets.Play``: each tick is one
step, the speed slider sets its interval), a seek slider over the session's
time range, a "chart" dropdown choosing the charted stream, and filters by
event kind, timeframe and pivot type.  The filters decide which events are
*shown* in the log and which count as a step: "Step" consumes events until
one passes the filters (every event consumed is still delivered to every
subscriber).  Seeking delivers every event up to the chosen time (so
matching and training stay exact) and only moves forward, as the session does.

Rendering reuses one Figure: each step removes the data artists, draws the
new ones and writes a PNG into an ``ipywidgets.Image``; ``redraw_ms`` keeps
the time of every redraw (``median_redraw_ms()``).  Nothing here reads the
wall clock for the replay's time: the time shown is the session's clock.

Examples
--------
>>> from ettlib.store.demo import write_demo_data
>>> from ettlib.workbench import Workbench
>>> wb = Workbench(":memory:")
>>> _ = write_demo_data(wb.store, symbol="ETH/USDT", days=1)
>>> stepper = EventStepper(wb.session("ETH/USDT", timeframes=["5m"]), window_candles=30)
>>> stepper.step_button.click()
>>> stepper.consumed, stepper.counter.value.split(",")[0]
(1, '<b>1</b> events consumed')
>>> len(stepper.chart_data().candles), stepper.chart_stream.value   # the one candle closed so far
(1, ('ETH/USDT', '1m'))
"""

from __future__ import annotations

import html
import io
import time
from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from ettlib.store.candles import CandleArrays
from ettlib.errors import ConfigError
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent, pivot_types_up_to
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.timeframes import TIMEFRAMES
from ettlib.times import format_ms

__all__ = ["EventStepper", "ChartData", "chart_data", "event_kind", "describe_event"]

#: Event kinds as the filters name them.
EVENT_KINDS: tuple[str, str, str] = ("candle", "pivot", "step")
#: Counters the panel shows, in this order.
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


def describe_event(event) -> str:
    """One line for the log, e.g. ``'pivot L2L ETH/USDT 1m bar 12:03 price 101.5'``.

    >>> describe_event(CandleCompletionEvent("X", "1m", 0, 60_000, 1.0, 2.0, 0.5, 1.5, 3.0))
    'candle X 1m 00:00 close 1.5'
    """
    at = format_ms(event.timestamp)[11:16]
    kind = event_kind(event)
    if kind == "candle":
        return f"candle {event.symbol} {event.timeframe} {at} close {event.close:.6g}"
    if kind == "pivot":
        return f"pivot {event.pivot_type} {event.symbol} {event.timeframe} bar {at} price {event.price:.6g}"
    return f"step {event.symbol} {event.timeframe} at {at}"


@dataclass(frozen=True, slots=True)
class ChartData:
    """What the stepper's chart shows, read at one instant.

    ``candles`` the last closed candles (``None`` before any); ``pivots``
    those confirmed so far whose bar lies in the chart; ``pending`` the
    frames still waiting for their target candle; ``matched`` the ``(frame,
    event)`` pairs the stream's last candle or pivot event matched;
    ``current`` the newest frame (its input window is shaded); ``now`` the
    clock.
    """

    candles: CandleArrays | None
    pivots: list
    pending: list
    matched: list
    current: InferenceFrameReference | None
    now: int | None


def chart_data(session, symbol: str, timeframe: str, window_candles: int, pivots=()) -> ChartData:
    """The chart of ``symbol``/``timeframe`` now: the session's candles and its coordinator's frames.

    ``pivots`` are the pivot events seen so far (the stepper collects them
    from the session); only those of the stream inside the chart are kept.
    """
    now = session.clock.now()
    tf = TIMEFRAMES[timeframe]
    candles = None
    if now is not None:
        end = now - now % tf - tf  # the last candle closed at now
        candles = session.window(symbol, timeframe, end - (window_candles - 1) * tf, end, _OHLC)
    first = int(candles.timestamps[0]) if candles is not None else None
    shown = [p for p in pivots if p.symbol == symbol and p.timeframe == timeframe
             and first is not None and p.timestamp >= first]
    coordinator = session.coordinator
    retained = [f for f in coordinator.retained_frames() if f.symbol == symbol and f.timeframe == timeframe]
    pending = [f for f in retained if now is None or f.target_timestamp + tf > now]
    event, refs = coordinator.last_matches(symbol, timeframe)
    current = max(retained, key=lambda f: f.prediction_timestamp, default=None)
    return ChartData(candles, shown, pending, [(f, event) for f in refs], current, now)


class EventStepper:
    """Step through a session's events with buttons; watch candles, pivots and frames.

    Parameters
    ----------
    session
        The :class:`~ettlib.session.Session` to drive.
    window_candles
        Candles shown in the chart (the last ones closed).
    symbol, timeframe
        The chart's stream (also the "chart" dropdown); default: the first
        stream with inference-step subscribers, else the first symbol's base.
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
        Events consumed from the session / passing the filters so far.
    redraw_ms
        Time of every chart redraw, in ms.
    """

    def __init__(self, session, *, window_candles: int = 120, symbol: str | None = None,
                 timeframe: str | None = None, log_size: int = 12, max_scan: int = 1_000_000,
                 figsize: tuple[float, float] = (9.0, 4.0), dpi: float = 80):
        for name, value, low in (("window_candles", window_candles, 2), ("log_size", log_size, 1),
                                 ("max_scan", max_scan, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        if not callable(getattr(session, "step", None)) or not hasattr(session, "coordinator"):
            raise ConfigError(f"EventStepper drives a Session (Workbench.session(...)), got {type(session).__name__}")
        self.session = session
        self.window_candles = window_candles
        self.max_scan = max_scan
        self.streams = [(s, tf) for s in session.symbols for tf in session.timeframes]
        self.symbol, self.timeframe = self._default_stream(symbol, timeframe)
        self.consumed = 0
        self.shown = 0
        self.finished = False
        self.last_event = None
        self.last_error: str | None = None
        self.redraw_ms: list[float] = []
        self._log: deque = deque(maxlen=log_size)
        self._kind_counts = dict.fromkeys(EVENT_KINDS, 0)
        self._pivots: deque = deque(maxlen=20_000)  # every pivot the session delivered
        ptypes = pivot_types_up_to(session.pivot_levels)

        from matplotlib.figure import Figure

        self.figure = Figure(figsize=figsize, dpi=dpi)
        self.figure.subplots_adjust(left=0.1, right=0.98, top=0.91, bottom=0.13)
        self.axes = self.figure.add_subplot()
        self._dpi = dpi

        self._build_controls(ptypes)
        self._build_displays(figsize, dpi)
        self._subscriptions = [session.subscribe_pivot_events(self._pivots.append, s, tf, ptypes)
                               for s in session.symbols for tf in session.pivot_timeframes]
        self.refresh()

    def _build_controls(self, ptypes: list[str]) -> None:
        """The buttons, the Play widget, the seek slider, the filters and the chart dropdown."""
        import ipywidgets as w

        session = self.session
        self.step_button = w.Button(
            description="Step", icon="step-forward", tooltip="consume events until one passes the filters")
        self.step_button.add_class("ett-step")
        self.n_steps = w.BoundedIntText(value=10, min=1, max=1_000_000, description="×N",
                                        layout=w.Layout(width="150px"))
        self.step_n_button = w.Button(description="Step ×N", icon="fast-forward")
        self.step_n_button.add_class("ett-step-n")
        self.play = w.Play(value=0, min=0, max=10**9, step=1, interval=500, description="Play",
                           show_repeat=False)
        self.speed = w.IntSlider(value=500, min=50, max=3000, step=10, description="ms/step",
                                 continuous_update=False)
        self.step_button.on_click(lambda _b: self._guarded(self.step, 1))
        self.step_n_button.on_click(lambda _b: self._guarded(self.step, self.n_steps.value))
        self.play.observe(self._on_tick, names="value")
        self.speed.observe(lambda change: setattr(self.play, "interval", int(change["new"])), names="value")

        lo, hi = session.start, session.end
        self._seek_unit = TIMEFRAMES["1m"] if hi - lo >= TIMEFRAMES["1m"] else 1
        self.seek_slider = w.IntSlider(value=0, min=0, max=max(0, (hi - lo) // self._seek_unit),
                                       description="seek", readout=False, continuous_update=True,
                                       layout=w.Layout(width="420px"))
        self.seek_label = w.Label(value=format_ms(lo))
        self.seek_button = w.Button(description="Seek", icon="search")
        self.seek_slider.observe(
            lambda _change: setattr(self.seek_label, "value", format_ms(self._slider_time())), names="value")
        self.seek_button.on_click(lambda _b: self._guarded(self.seek, self._slider_time()))

        tfs = tuple(session.timeframes)
        self.kind_filter = w.SelectMultiple(options=EVENT_KINDS, value=EVENT_KINDS, description="kinds", rows=3)
        self.timeframe_filter = w.SelectMultiple(options=tfs, value=tfs, description="timeframes", rows=3)
        self.pivot_filter = w.SelectMultiple(options=ptypes, value=ptypes, description="pivots", rows=3)
        for f in (self.kind_filter, self.timeframe_filter, self.pivot_filter):
            f.observe(self._on_filter, names="value")
        self.chart_stream = w.Dropdown(options=[(f"{s} {tf}", (s, tf)) for s, tf in self.streams],
                                       value=(self.symbol, self.timeframe), description="chart",
                                       layout=w.Layout(width="220px"))
        self.chart_stream.observe(self._on_chart_stream, names="value")

    def _build_displays(self, figsize, dpi) -> None:
        """The chart image, the counter, the panel, and the whole UI around them."""
        import ipywidgets as w

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

    def _default_stream(self, symbol, timeframe) -> tuple[str, str]:
        if symbol is not None or timeframe is not None:
            key = (symbol or self.session.symbols[0], timeframe or self.session.base_timeframe)
            if key not in self.streams:
                raise ConfigError(f"the session does not replay {key[0]} {key[1]} (it replays "
                                  + ", ".join(f"{s} {tf}" for s, tf in self.streams) + ")")
            return key
        stepped = sorted(self.session.provider.subscribed_streams("step") & set(self.streams),
                         key=lambda k: (k[0], TIMEFRAMES[k[1]]))
        return stepped[0] if stepped else (self.session.symbols[0], self.session.base_timeframe)

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
        """Consume events until ``n`` pass the filters (or the session ends); returns those.

        Redraws once at the end.
        """
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise ConfigError(f"n must be a positive integer, got {n!r}")
        passed: list = []
        scanned = 0
        while len(passed) < n and scanned < self.max_scan:
            batch = self.session.step(int(n - len(passed)))
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
        """Deliver every event up to knowable time ``t`` (the fast path); forward only.

        The events on the way reach every subscriber -- matching and training
        stay exact -- and are counted, not logged one by one.  Seeking
        backwards is refused by the session (its coordinator has already
        learned from what came after).
        """
        t = int(t)
        now = self.session.clock.now()
        if now is not None and t < now:
            raise ConfigError(
                f"cannot seek back to {format_ms(t)}: the session is at {format_ms(now)} and only "
                "moves forward (its coordinator has learned from what came after); start a new session")
        self.consumed += self.session.run(until=t)
        self.finished = self.session.finished
        self.refresh()

    def _consume(self, event) -> bool:
        kind = event_kind(event)
        self.consumed += 1
        self._kind_counts[kind] += 1
        ok = self.passes(event)
        if ok:
            self.shown += 1
            self.last_event = event
            self._log.append(event)
        return ok

    # ---------------------------------------------------------- callbacks

    def _guarded(self, fn, *args) -> None:
        try:
            fn(*args)
            self.last_error = None
        except Exception as exc:  # shown in the UI rather than lost in a log
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._render_counter()

    def _on_chart_stream(self, change) -> None:
        if change["new"] is not None:
            self._guarded(self.show_stream, *change["new"])

    def show_stream(self, symbol: str, timeframe: str) -> None:
        """Chart ``symbol``/``timeframe`` from now on (the "chart" dropdown)."""
        if (symbol, timeframe) not in self.streams:
            raise ConfigError(f"the session does not replay {symbol} {timeframe}")
        self.symbol, self.timeframe = symbol, timeframe
        if self.chart_stream.value != (symbol, timeframe):
            self.chart_stream.value = (symbol, timeframe)
        self.refresh()

    def _on_tick(self, change) -> None:
        # the Play widget counts up while playing; "stop" resets it to 0 (no step)
        if change["new"] > change["old"] and not self.finished:
            self._guarded(self.step, 1)

    def _on_filter(self, change) -> None:
        if change["owner"] is self.pivot_filter:
            self.redraw()  # the chart's pivots follow the pivot-type filter
        self._render_panel()

    def _slider_time(self) -> int:
        return self.session.start + self.seek_slider.value * self._seek_unit

    # ---------------------------------------------------------- rendering

    def chart_data(self) -> ChartData:
        """What the chart shows now (see :func:`chart_data`)."""
        return chart_data(self.session, self.symbol, self.timeframe, self.window_candles, self._pivots)

    def refresh(self) -> None:
        """Redraw the chart, the counter and the panel; move the seek slider to the clock."""
        self.redraw()
        self._render_counter()
        self._render_panel()
        now = self.session.clock.now()
        if now is not None:
            lo, hi = self.session.start, self.session.end
            pos = (min(max(now, lo), hi) - lo) // self._seek_unit
            if pos != self.seek_slider.value:
                self.seek_slider.value = int(pos)

    def redraw(self) -> None:
        """Draw the chart into ``image`` (timed into ``redraw_ms``)."""
        from ettlib.notebooks.plots import plot_candles

        started = time.perf_counter()
        ax = self.axes
        for artist in [*ax.collections, *ax.patches, *ax.texts]:
            artist.remove()
        data = self.chart_data()
        title = f"{self.symbol} {self.timeframe} · {format_ms(data.now)}"
        if data.candles is None:
            ax.set_title(title)
            ax.text(0.5, 0.5, "no candles yet: press Step", ha="center", va="center", transform=ax.transAxes)
        else:
            pivots = [p for p in data.pivots if p.pivot_type in self.pivot_filter.value]
            plot_candles(data.candles, pivots=pivots, frames=data.pending, matched=data.matched,
                         current_frame=data.current, timeframe=self.timeframe, ax=ax, title=title)
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
            f"steps {self._kind_counts['step']}) · t = {format_ms(self.session.clock.now())} · {state}"
        )
        if self.last_error:
            text += f" · <span style='color:#c00'>error: {html.escape(self.last_error)}</span>"
        self.counter.value = text

    def _render_panel(self) -> None:
        counters = asdict(self.session.coordinator.counters())
        rows = "".join(
            f"<tr><td>{html.escape(name)}</td><td style='text-align:right'>{counters[name]}</td></tr>"
            for name in COUNTER_NAMES
        )
        log = "".join(
            f"<li>{format_ms(e.knowable_time)[11:19]} {html.escape(describe_event(e))}</li>"
            for e in reversed(self.shown_events())
        )
        self.panel.value = (
            "<div style='font-family:monospace;font-size:12px'>"
            f"<b>coordinator</b><table>{rows}</table>"
            f"<b>last events</b><ol style='padding-left:1.5em;margin:0'>{log}</ol></div>"
        )

    def close(self) -> None:
        """Stop collecting pivots from the session (the session itself stays open)."""
        for subscription in self._subscriptions:
            subscription.unsubscribe()
        self._subscriptions = []
