"""EventStepper with real ipywidgets objects, driven in-process (no kernel)."""

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

from ettlib.errors import ConfigError  # noqa: E402
from ettlib.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent, event_sort_key  # noqa: E402
from ettlib.pivots import detect_pivots  # noqa: E402
from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber  # noqa: E402
from ettlib.data_provider import DataProvider  # noqa: E402
from ettlib.demo import demo_candles  # noqa: E402
from ettlib.frames import InferenceFrameReference  # noqa: E402
from ettlib.replay import ReplayEngine  # noqa: E402
from ettlib.store import DuckDBStorage  # noqa: E402
from ettlib.widgets import EventStepper, matched_pairs  # noqa: E402

MINUTE = 60_000
T0 = 1_700_000_040_000 - 1_700_000_040_000 % (5 * MINUTE)
SYMBOL = "ETH/USDT"


def make_events(n: int = 240, seed: int = 5) -> list:
    """1m and 5m completions, 1m pivots (detect_pivots), 1m steps, in event order."""
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 0.4, n))
    open_ = np.r_[100.0, close[:-1]]
    high = np.maximum(open_, close) + rng.random(n) * 0.3
    low = np.minimum(open_, close) - rng.random(n) * 0.3
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    events = []
    for i in range(n):
        t = int(ts[i])
        events.append(CandleCompletionEvent(SYMBOL, "1m", t, t + MINUTE, open_[i], high[i], low[i], close[i], 1.0))
        events.append(InferenceStepEvent(SYMBOL, "1m", t + MINUTE))
        if (i + 1) % 5 == 0:
            s = slice(i - 4, i + 1)
            events.append(CandleCompletionEvent(
                SYMBOL, "5m", t - 4 * MINUTE, t + MINUTE, open_[i - 4], high[s].max(), low[s].min(), close[i], 5.0
            ))
    events.extend(detect_pivots(ts, high, low, "1m", n=1, levels=3).events(SYMBOL, "1m"))
    events.sort(key=event_sort_key)
    return events


def test_step_button_changes_counter_and_chart():
    events = make_events()
    stepper = EventStepper(events, window_candles=60)
    text0, png0 = stepper.counter.value, stepper.image.value
    assert png0[:8] == b"\x89PNG\r\n\x1a\n"
    stepper.step_button.click()
    assert stepper.consumed == 1 and stepper.shown == 1
    text1, png1 = stepper.counter.value, stepper.image.value
    assert text1 != text0 and png1 != png0
    for _ in range(5):
        before = stepper.counter.value
        stepper.step_button.click()
        assert stepper.counter.value != before
    # the chart shows the candles consumed so far, last closed candle included
    candles = stepper.chart_candles()
    seen = [e for e in events[: stepper.consumed] if isinstance(e, CandleCompletionEvent) and e.timeframe == "1m"]
    assert candles.timestamps.tolist() == [e.timestamp for e in seen]
    assert stepper.last_error is None


def test_step_n_consumes_exactly_n_and_chart_never_shows_unknown_candles():
    events = make_events()
    stepper = EventStepper(events, window_candles=30)
    stepper.n_steps.value = 37
    stepper.step_n_button.click()
    assert stepper.consumed == 37 and stepper.last_time == events[36].knowable_time
    candles = stepper.chart_candles()
    assert len(candles) <= 30
    # nothing after the clock: every candle shown had closed by last_time
    assert int(candles.timestamps[-1]) + MINUTE <= stepper.last_time
    expected = [e.timestamp for e in events[:37] if isinstance(e, CandleCompletionEvent) and e.timeframe == "1m"][-30:]
    assert candles.timestamps.tolist() == expected
    (bodies,) = [c for c in stepper.axes.collections if c.get_gid() == "candle_bodies"]
    assert len(bodies.get_paths()) == len(expected)


def test_filters_decide_what_is_shown_and_what_counts_as_a_step():
    events = make_events()
    stepper = EventStepper(events, window_candles=60)
    stepper.kind_filter.value = ("pivot",)
    stepper.pivot_filter.value = ("L2L", "L2H")
    got = stepper.step(3)
    want = [e for e in events if isinstance(e, PivotEvent) and e.level == 2][:3]
    assert got == want
    assert stepper.consumed == events.index(want[-1]) + 1  # stopped at the third L2 pivot
    assert stepper.shown_events() == want
    assert all("pivot L2" in line for line in stepper.panel.value.split("<li>")[1:])
    # chart pivots follow the pivot-type filter
    gids = {c.get_gid() for c in stepper.axes.collections}
    assert not any(g.startswith("pivots_L1") for g in gids if g)
    # timeframe filter: only 5m candles count now
    stepper.kind_filter.value = ("candle",)
    stepper.timeframe_filter.value = ("5m",)
    got = stepper.step(2)
    assert [(e.timeframe, type(e)) for e in got] == [("5m", CandleCompletionEvent)] * 2
    shown = stepper.shown_events()
    assert shown and all(e.timeframe == "5m" for e in shown)


def test_new_timeframes_are_offered_and_selected():
    stepper = EventStepper(make_events(), timeframes=("1m",))
    assert stepper.timeframe_filter.options == ("1m",)
    stepper.kind_filter.value = ("candle",)
    stepper.timeframe_filter.value = ("1m",)
    stepper.step(12)
    assert stepper.timeframe_filter.options == ("1m", "5m")
    assert set(stepper.timeframe_filter.value) == {"1m", "5m"}


def test_seek_moves_the_clock_forward_without_passing_the_target():
    events = make_events()
    first = events[0].knowable_time
    stepper = EventStepper(events, time_range=(first, events[-1].knowable_time))
    target = first + 90 * MINUTE
    stepper.seek_slider.value = 90
    assert stepper.seek_label.value.endswith(":00")
    stepper.seek_button.click()
    assert stepper.last_time == target
    assert stepper.consumed == sum(e.knowable_time <= target for e in events)
    candles = stepper.chart_candles()
    assert int(candles.timestamps[-1]) == target - MINUTE  # the candle that just closed
    # stepping on continues after the seek point
    (nxt,) = stepper.step(1)
    assert nxt.knowable_time > target


def test_play_ticks_step_and_speed_sets_the_interval():
    stepper = EventStepper(make_events(30))
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


def test_with_replay_engine_and_coordinator(tmp_path):
    candles = demo_candles(SYMBOL, start=T0, days=0.25, seed=3)  # 360 one-minute candles
    storage = DuckDBStorage(str(tmp_path / "ett.duckdb"))
    storage.ingest(candles, SYMBOL, "1m")
    provider = DataProvider(storage)
    coordinator = InferenceTrainingCoordinator(provider, storage)
    recorder = Recorder()
    coordinator.subscribe_to_candle_completion(recorder, SYMBOL, "1m")

    def predict(step):
        coordinator.register_inference_frame(InferenceFrameReference.for_prediction(
            coordinator.new_inference_id(), SYMBOL, "1m", step.timestamp, context=20,
            norm_params=(100.0, 1.0, 10.0, 1.0), predicted_action="BUY", confidence=0.5))

    provider.subscribe_inference_step(predict, SYMBOL, "1m")
    last_open = int(candles.timestamp.iloc[-1])
    engine = ReplayEngine(storage, provider, SYMBOL, T0, last_open, timeframes=["1m", "5m"])
    stepper = EventStepper(engine, coordinator, window_candles=30)
    try:
        assert stepper.time_range == (T0, last_open)
        assert stepper.timeframe_filter.options == ("1m", "5m")
        stepper.kind_filter.value = ("candle",)
        stepper.timeframe_filter.value = ("1m",)
        text = stepper.counter.value
        stepper.step_n_button.click()  # x10 by default
        assert stepper.counter.value != text
        stepper.step(30)
        event = stepper.last_event
        assert (event.timeframe, stepper.shown) == ("1m", 40)
        assert stepper.last_time == engine.clock.now() == event.close_time
        counters = coordinator.counters()
        assert counters.matched == len(recorder.pairs) > 0
        for name in ("pending", "matched", "expired", "delivered", "failed"):
            cell = f"<td>{name}</td><td style='text-align:right'>{getattr(counters, name)}</td>"
            assert cell in stepper.panel.value
        # the chart: the last 30 closed candles, from the engine's cache
        end = event.timestamp
        want = candles.timestamp[(candles.timestamp <= end) & (candles.timestamp > end - 30 * MINUTE)]
        assert stepper.chart_candles().timestamps.tolist() == want.tolist()
        ax = stepper.axes
        # the frame predicted at this candle's open was matched by it: highlighted
        frame, matched_event = recorder.pairs[-1]
        assert matched_event == event and frame.target_timestamp == event.timestamp
        delivered_now = [(f, e) for f, e in recorder.pairs if e == event]
        assert matched_pairs(event, coordinator.retained_frames()) == delivered_now
        (bands,) = gid(ax, "matched_targets")
        (band,) = bands.get_paths()
        assert band.vertices[0, 0] == pytest.approx(mdates.date2num(np.datetime64(event.timestamp, "ms")), abs=1e-9)
        # right after the completion no frame waits for a target
        assert not gid(ax, "pending_targets")
        # the next inference step registers a frame: target marked, window shaded
        stepper.kind_filter.value = ("step",)
        (step,) = stepper.step(1)
        (targets,) = gid(ax, "pending_targets")
        assert len(targets.get_segments()) == 1
        (window,) = gid(ax, "current_window")
        assert window.get_x() == pytest.approx(mdates.date2num(np.datetime64(step.timestamp - 20 * MINUTE, "ms")), abs=1e-9)
        assert window.get_width() == pytest.approx(20 / 1440, rel=1e-6)
        # seek forward with the slider: the clock moves, the chart follows from the cache
        events_before = coordinator.counters().events
        stepper.seek_slider.value = 200
        stepper.seek_button.click()
        target = T0 + 200 * MINUTE
        assert stepper.last_error is None
        assert engine.clock.now() == stepper.last_time == target
        assert int(stepper.chart_candles().timestamps[-1]) == target - MINUTE
        # with a coordinator the seek delivered every event on the way: 1m and 5m candles + pivots
        closed = candles.timestamp[candles.timestamp + MINUTE <= target]
        assert coordinator.counters().events == len(closed) > events_before
        # each 1m candle but the first was predicted by the step at its open
        assert len(recorder.pairs) == len(closed) - 1
        # the chart's pivots after the seek are the full series' pivots known by then
        full = detect_pivots(candles.timestamp.to_numpy(), candles.high.to_numpy(), candles.low.to_numpy(), "1m")
        shown_lo = target - 30 * MINUTE
        want = {(e.pivot_type, e.timestamp) for e in full.events(SYMBOL, "1m")
                if e.confirmed_at <= target and e.timestamp >= shown_lo}
        got = {(e.pivot_type, e.timestamp) for e in stepper._pivots[(SYMBOL, "1m")] if e.timestamp >= shown_lo}
        assert got == want and want
        drawn = sum(len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("pivots_"))
        assert drawn == len(want)
        (nxt,) = stepper.step(1)
        assert nxt.knowable_time > target
        # back in time with a coordinator attached: refused, nothing moves
        stepper.seek(target + 10 * MINUTE)
        now = engine.clock.now()
        with pytest.raises(ConfigError, match="coordinator"):
            stepper.seek(T0)
        assert engine.clock.now() == now
        stepper.seek_slider.value = 5
        stepper.seek_button.click()
        assert "coordinator" in stepper.last_error and "error" in stepper.counter.value
        # chart another stream: the 5m candles, as pandas aggregates the 1m ones
        assert (SYMBOL, "5m") in [v for _, v in stepper.chart_stream.options]
        stepper.chart_stream.value = (SYMBOL, "5m")
        assert stepper.last_error is None and (stepper.symbol, stepper.timeframe) == (SYMBOL, "5m")
        shown = stepper.chart_candles()
        frame = candles.assign(ts=pd.to_datetime(candles.timestamp, unit="ms")).set_index("ts")
        five = frame.resample("5min").agg({"timestamp": "first", "high": "max", "low": "min"})
        five = five[five.timestamp + 5 * MINUTE <= stepper.last_time].tail(30)
        assert shown.timestamps.tolist() == five.timestamp.tolist()
        np.testing.assert_allclose(shown.column("high"), five.high.to_numpy())
        np.testing.assert_allclose(shown.column("low"), five.low.to_numpy())
        # and its pivots: those of the whole 5m series, confirmed by now, inside the chart
        all5 = frame.resample("5min").agg({"timestamp": "first", "high": "max", "low": "min"})
        all5 = all5[all5.timestamp + 5 * MINUTE <= stepper.last_time]
        table = detect_pivots(all5.timestamp.to_numpy(), all5.high.to_numpy(), all5.low.to_numpy(), "5m")
        want5 = sum(1 for e in table.events(SYMBOL, "5m")
                    if e.confirmed_at <= stepper.last_time and e.timestamp >= shown.timestamps[0])
        drawn5 = sum(len(c.get_offsets()) for c in ax.collections if (c.get_gid() or "").startswith("pivots_"))
        assert drawn5 == want5 > 0
    finally:
        coordinator.close()
        storage.close()


def test_redraw_is_timed_and_fast_enough():
    stepper = EventStepper(make_events(), window_candles=120)
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


def test_iterator_source_cannot_seek_backwards():
    events = make_events(60)
    stepper = EventStepper(events)
    stepper.seek(events[0].knowable_time + 30 * MINUTE)
    with pytest.raises(ConfigError, match="cannot seek back"):
        stepper.seek(events[0].knowable_time)


def test_importing_the_module_loads_no_widgets_and_no_pyplot():
    code = "import sys, ettlib.widgets, ettlib.plots; print('ipywidgets' in sys.modules, 'matplotlib.pyplot' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_bad_arguments_are_refused():
    with pytest.raises(ConfigError, match="step"):
        EventStepper(42)
    with pytest.raises(ConfigError, match="window_candles"):
        EventStepper([], window_candles=1)
    stepper = EventStepper([])
    with pytest.raises(ConfigError, match="positive"):
        stepper.step(0)
    stepper.step(1)
    assert stepper.finished and stepper.consumed == 0
    assert stepper.seek_button.disabled  # no time range known
    html = stepper.widget._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in html
