"""EventStepper with real ipywidgets objects on a real session, driven in-process (no kernel)."""

from __future__ import annotations

import subprocess
import sys
import time

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ettlib.coordinator import TrainingEventSubscriber  # noqa: E402
from ettlib.store.demo import demo_candles  # noqa: E402
from ettlib.errors import ConfigError  # noqa: E402
from ettlib.replay.events import CandleCompletionEvent, PivotEvent  # noqa: E402
from ettlib.replay.pivots import detect_pivots  # noqa: E402
from ettlib.notebooks.widgets import EventStepper  # noqa: E402
from ettlib.workbench import Workbench  # noqa: E402

MINUTE = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % (5 * MINUTE)
SYMBOL = "ETH/USDT"


@pytest.fixture
def market(tmp_path):
    """A workbench on a real file holding 360 demo 1m candles from T0."""
    candles = demo_candles(SYMBOL, start=T0, days=0.25, seed=3)
    wb = Workbench(tmp_path / "ett.duckdb")
    wb.store.ingest(candles, SYMBOL, "1m")
    yield wb, candles
    wb.close()


def _session(wb, **options):
    return wb.session(SYMBOL, timeframes=["5m"], pivot_levels=3, **options)


def test_step_button_changes_counter_and_chart(market):
    wb, candles = market
    stepper = EventStepper(_session(wb), window_candles=60)
    text0, png0 = stepper.counter.value, stepper.image.value
    assert png0[:8] == b"\x89PNG\r\n\x1a\n"
    stepper.step_button.click()
    assert stepper.consumed == 1 and stepper.shown == 1
    assert stepper.counter.value != text0 and stepper.image.value != png0
    for _ in range(5):
        before = stepper.counter.value
        stepper.step_button.click()
        assert stepper.counter.value != before
    # the chart shows the candles closed so far, the last closed one included
    shown = stepper.chart_data().candles
    now = stepper.session.clock.now()
    assert shown.timestamps.tolist() == [t for t in candles.timestamp if t + MINUTE <= now]
    assert stepper.last_error is None


def test_step_n_consumes_exactly_n_and_the_chart_never_shows_unknown_candles(market):
    wb, candles = market
    stepper = EventStepper(_session(wb), window_candles=30)
    stepper.n_steps.value = 37
    stepper.step_n_button.click()
    assert stepper.consumed == 37
    now = stepper.session.clock.now()
    assert now == stepper.last_event.knowable_time
    shown = stepper.chart_data().candles
    assert int(shown.timestamps[-1]) + MINUTE == now  # closed by now, no later
    expected = candles[candles.timestamp + MINUTE <= now].tail(30)
    assert shown.timestamps.tolist() == expected.timestamp.tolist()
    np.testing.assert_array_equal(shown.column("close"), expected.close.to_numpy())
    (bodies,) = [c for c in stepper.axes.collections if c.get_gid() == "candle_bodies"]
    assert len(bodies.get_paths()) == len(expected)


def test_filters_decide_what_is_shown_and_what_counts_as_a_step(market):
    wb, _ = market
    reference = [e for e in _session(wb).events()]  # the same replay, every event
    stepper = EventStepper(_session(wb), window_candles=60)
    stepper.kind_filter.value = ("pivot",)
    stepper.pivot_filter.value = ("L2L", "L2H")
    got = stepper.step(3)
    want = [e for e in reference if isinstance(e, PivotEvent) and e.level == 2][:3]
    assert got == want
    assert stepper.consumed == reference.index(want[-1]) + 1  # stopped at the third L2 pivot
    assert stepper.shown_events() == want
    assert all("pivot L2" in line for line in stepper.panel.value.split("<li>")[1:])
    gids = {c.get_gid() for c in stepper.axes.collections}
    assert not any(g.startswith("pivots_L1") for g in gids if g)  # chart pivots follow the filter
    stepper.kind_filter.value = ("candle",)
    stepper.timeframe_filter.value = ("5m",)
    got = stepper.step(2)
    assert [(e.timeframe, type(e)) for e in got] == [("5m", CandleCompletionEvent)] * 2
    assert all(e.timeframe == "5m" for e in stepper.shown_events())


def test_play_ticks_step_and_speed_sets_the_interval(market):
    wb, _ = market
    stepper = EventStepper(_session(wb, end=T0 + 30 * MINUTE))
    stepper.speed.value = 120
    assert stepper.play.interval == 120
    stepper.play.value += 1  # what the browser's timer does
    stepper.play.value += 1
    assert stepper.consumed == 2
    stepper.play.value = 0  # the Play widget's stop button: no step
    assert stepper.consumed == 2
    stepper.play.playing = True
    stepper.step(10_000)  # to the end
    assert stepper.finished and not stepper.play.playing
    assert "finished" in stepper.counter.value


def gid(ax, name):
    return [a for a in [*ax.collections, *ax.patches] if a.get_gid() == name]


class Recorder(TrainingEventSubscriber):
    def __init__(self):
        self.pairs = []

    def on_candle_completion(self, event, inference_ref):
        if inference_ref is not None:
            self.pairs.append((inference_ref, event))
        return 0.5


def test_with_a_coordinator_frames_matches_and_pivots_are_drawn(market):
    wb, candles = market
    session = _session(wb)
    recorder = Recorder()
    session.coordinator.subscribe_to_candle_completion(recorder, SYMBOL, "1m")
    session.on_inference_step(SYMBOL, "1m", lambda step: session.register_prediction(
        step, 20, predicted_action="BUY", norm_params=(100.0, 1.0, 10.0, 1.0)))
    stepper = EventStepper(session, window_candles=30)
    coordinator = session.coordinator
    assert (stepper.symbol, stepper.timeframe) == (SYMBOL, "1m")  # the stream with steps
    assert stepper.timeframe_filter.options == ("1m", "5m")
    stepper.kind_filter.value = ("candle",)
    stepper.timeframe_filter.value = ("1m",)
    stepper.step_n_button.click()  # x10 by default
    stepper.step(30)
    event = stepper.last_event
    assert (event.timeframe, stepper.shown) == ("1m", 40)
    assert session.clock.now() == event.close_time
    counters = coordinator.counters()
    assert counters.matched == len(recorder.pairs) > 0
    for name in ("pending", "matched", "expired", "delivered", "failed"):
        assert f"<td>{name}</td><td style='text-align:right'>{getattr(counters, name)}</td>" in stepper.panel.value
    ax = stepper.axes
    # the frame predicted at this candle's open was matched by it: highlighted
    frame, matched_event = recorder.pairs[-1]
    assert matched_event == event and frame.target_timestamp == event.timestamp
    assert stepper.chart_data().matched == [(f, e) for f, e in recorder.pairs if e == event]
    (bands,) = gid(ax, "matched_targets")
    (band,) = bands.get_paths()
    assert band.vertices[0, 0] == pytest.approx(mdates.date2num(np.datetime64(event.timestamp, "ms")), abs=1e-9)
    assert not gid(ax, "pending_targets")  # right after the completion no frame waits for a target
    # the next inference step registers a frame: target marked, window shaded
    stepper.kind_filter.value = ("step",)
    (step,) = stepper.step(1)
    (targets,) = gid(ax, "pending_targets")
    assert len(targets.get_segments()) == 1
    (window,) = gid(ax, "current_window")
    assert window.get_x() == pytest.approx(mdates.date2num(np.datetime64(step.timestamp - 20 * MINUTE, "ms")), abs=1e-9)
    # seek forward: every event on the way is delivered, the chart follows
    events_before = coordinator.counters().events
    stepper.seek_slider.value = 200
    stepper.seek_button.click()
    target = T0 + 200 * MINUTE
    assert stepper.last_error is None and session.clock.now() == target
    assert int(stepper.chart_data().candles.timestamps[-1]) == target - MINUTE
    closed = candles.timestamp[candles.timestamp + MINUTE <= target]
    five = closed[(closed + MINUTE) % (5 * MINUTE) == 0]
    assert coordinator.counters().events > events_before
    assert len(recorder.pairs) == len(closed) - 20  # each 1m candle after the first full window
    # the chart's pivots are the full series' pivots known by now, inside the chart
    full = detect_pivots(candles.timestamp.to_numpy(), candles.high.to_numpy(), candles.low.to_numpy(), "1m",
                         levels=3)
    shown_lo = target - 30 * MINUTE
    want = {(e.pivot_type, e.timestamp) for e in full.events(SYMBOL, "1m")
            if e.confirmed_at <= target and e.timestamp >= shown_lo}
    assert {(p.pivot_type, p.timestamp) for p in stepper.chart_data().pivots} == want and want
    drawn = sum(len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("pivots_"))
    assert drawn == len(want)
    (nxt,) = stepper.step(1)
    assert nxt.knowable_time > target
    # back in time: refused, nothing moves, the error is shown
    now = session.clock.now()
    with pytest.raises(ConfigError, match="only moves forward"):
        stepper.seek(T0)
    stepper.seek_slider.value = 5
    stepper.seek_button.click()
    assert session.clock.now() == now and "forward" in stepper.last_error and "error" in stepper.counter.value
    # chart another stream: the replay's own 5m candles, as pandas aggregates the 1m ones
    stepper.chart_stream.value = (SYMBOL, "5m")
    assert stepper.last_error is None and (stepper.symbol, stepper.timeframe) == (SYMBOL, "5m")
    shown = stepper.chart_data().candles
    frame = candles.assign(ts=pd.to_datetime(candles.timestamp, unit="ms")).set_index("ts")
    agg = frame.resample("5min").agg({"timestamp": "first", "high": "max", "low": "min"})
    agg = agg[agg.timestamp + 5 * MINUTE <= now]
    assert shown.timestamps.tolist() == agg.timestamp.tail(30).tolist() and len(five)
    np.testing.assert_allclose(shown.column("high"), agg.high.tail(30).to_numpy())
    table = detect_pivots(agg.timestamp.to_numpy(), agg.high.to_numpy(), agg.low.to_numpy(), "5m", levels=3)
    want5 = sum(1 for e in table.events(SYMBOL, "5m")
                if e.confirmed_at <= now and e.timestamp >= shown.timestamps[0])
    drawn5 = sum(len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("pivots_"))
    assert drawn5 == want5 > 0
    stepper.close()
    session.close()


def test_redraw_is_timed_and_fast_enough(market):
    wb, _ = market
    stepper = EventStepper(_session(wb), window_candles=120)
    stepper.step(150)
    cpu = []
    for _ in range(10):
        start = time.process_time()
        stepper.step(1)
        cpu.append(1000 * (time.process_time() - start))
    median = stepper.median_redraw_ms()
    print(f"EventStepper median redraw: {median:.1f} ms wall, step {np.median(cpu):.1f} ms CPU")
    assert len(stepper.redraw_ms) == 12  # the first view + 11 steps
    assert np.median(cpu) < 1000  # CPU time: other processes on a shared machine do not count


def test_importing_the_module_loads_no_widgets_and_no_pyplot():
    code = "import sys, ettlib.notebooks.widgets, ettlib.notebooks.plots; print('ipywidgets' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bad_arguments_are_refused(market):
    wb, _ = market
    with pytest.raises(ConfigError, match="Session"):
        EventStepper([])
    session = _session(wb)
    with pytest.raises(ConfigError, match="window_candles"):
        EventStepper(session, window_candles=1)
    with pytest.raises(ConfigError, match="does not replay ETH/USDT 15m"):
        EventStepper(session, timeframe="15m")
    stepper = EventStepper(session)
    with pytest.raises(ConfigError, match="positive"):
        stepper.step(0)
    assert "application/vnd.jupyter.widget-view+json" in stepper.widget._repr_mimebundle_()
