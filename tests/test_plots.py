"""Plot helpers: render to PNG and check what is drawn against the data."""

from __future__ import annotations

import io
import struct
import time
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timezone

import matplotlib

matplotlib.use("Agg")

import matplotlib.dates as mdates  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import candle_arrays, make_candles as build_candles  # noqa: E402

from ettlib.store.candles import CandleArrays  # noqa: E402
from ettlib.errors import ConfigError, UnknownNameError  # noqa: E402
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent  # noqa: E402
from ettlib.notebooks.plots import (  # noqa: E402
    plot_candles,
    plot_event_timeline,
    plot_learning_curve,
    plot_pivot_confusion,
    plot_rolling_accuracy,
)

T0 = 1_700_000_040_000 - 1_700_000_040_000 % 60_000  # a whole minute
MINUTE = 60_000


@dataclass(frozen=True, slots=True)
class Frame:
    """The attributes of an InferenceFrameReference that the plots read."""

    symbol: str
    timeframe: str
    prediction_timestamp: int
    target_timestamp: int
    data_range_start: int
    data_range_end: int


@dataclass(frozen=True, slots=True)
class Table:
    """A PivotTable's aligned arrays."""

    timestamp: np.ndarray
    price: np.ndarray
    level: np.ndarray
    is_low: np.ndarray


def make_candles(n: int = 60, seed: int = 1) -> CandleArrays:
    """The tests' candles (``conftest.make_candles``) from ``T0``, as arrays."""
    return candle_arrays(build_candles(n, start=T0, seed=seed))


def utc_num(ms: int) -> float:
    return mdates.date2num(datetime.fromtimestamp(ms / 1000, tz=timezone.utc))


def png_size(fig) -> tuple[int, int]:
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    data = buf.getvalue()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(data) > 2_000
    return struct.unpack(">II", data[16:24])


def by_gid(ax, gid):
    return [a for a in [*ax.collections, *ax.patches] if a.get_gid() == gid]


@pytest.fixture(autouse=True)
def no_pyplot_figures():
    before = plt.get_fignums()
    yield
    assert plt.get_fignums() == before, "a plot helper left a pyplot figure open"


def test_candles_one_body_and_one_wick_per_candle_at_the_data():
    candles = make_candles(60)
    fig = plot_candles(candles, title="ETH/USDT 1m")
    ax = fig.axes[0]
    (wicks,) = by_gid(ax, "candle_wicks")
    (bodies,) = by_gid(ax, "candle_bodies")
    segs = wicks.get_segments()
    assert len(segs) == len(bodies.get_paths()) == len(candles)
    o, h, l, c = (candles.values[:, i] for i in range(4))
    np.testing.assert_allclose([s[0][1] for s in segs], l)
    np.testing.assert_allclose([s[1][1] for s in segs], h)
    heights = [np.ptp(p.vertices[:4, 1]) for p in bodies.get_paths()]
    np.testing.assert_allclose(heights, np.abs(c - o))
    # wick x = candle centre = open time + 30 s, as UTC datetimes
    centres = [utc_num(int(t) + MINUTE // 2) for t in candles.timestamps]
    np.testing.assert_allclose([s[0][0] for s in segs], centres, rtol=0, atol=1e-9)
    # green where close >= open, red elsewhere
    faces = bodies.get_facecolors()
    ups = np.isclose(faces[:, 1], matplotlib.colors.to_rgba("#26a69a")[1])
    assert ups.sum() == (c >= o).sum()
    assert ax.get_xlabel() == "time (UTC)" and ax.get_ylabel() == "price"
    assert ax.get_title() == "ETH/USDT 1m"
    left = mdates.num2date(ax.get_xlim()[0])
    assert left == datetime.fromtimestamp(T0 / 1000, tz=timezone.utc)
    assert png_size(fig) == (1000, 450)


def _pivots(candles, rng):
    idx = rng.choice(len(candles), size=25, replace=False)
    idx.sort()
    level = rng.integers(1, 4, size=idx.size)
    is_low = rng.random(idx.size) < 0.5
    price = np.where(is_low, candles.values[idx, 2], candles.values[idx, 1])
    ts = candles.timestamps[idx]
    return ts, price, level, is_low


def test_pivot_markers_by_level_and_side_from_table_and_from_events():
    candles = make_candles(80)
    ts, price, level, is_low = _pivots(candles, np.random.default_rng(3))
    # one pivot before and one after the window: not drawn
    ts = np.r_[ts, T0 - 5 * MINUTE, T0 + 500 * MINUTE]
    price = np.r_[price, 90.0, 110.0]
    level = np.r_[level, 2, 2]
    is_low = np.r_[is_low, True, False]
    table = Table(ts, price, level, is_low)
    events = [
        PivotEvent("X", "1m", f"L{lv}{'L' if lo else 'H'}", int(lv), int(t), float(p), 1.0, int(t) + 2 * MINUTE)
        for t, p, lv, lo in zip(ts, price, level, is_low)
    ]
    inside = pd.DataFrame({"ts": ts, "level": level, "low": is_low})
    inside = inside[(inside.ts >= candles.timestamps[0]) & (inside.ts <= candles.timestamps[-1])]
    expected = inside.groupby(["level", "low"]).size()
    for pivots in (table, events):
        ax = plot_candles(candles, pivots=pivots).axes[0]
        drawn = {c.get_gid(): c for c in ax.collections if (c.get_gid() or "").startswith("pivots_")}
        assert len(drawn) == len(expected)
        for (lv, lo), count in expected.items():
            scatter = drawn[f"pivots_L{lv}{'L' if lo else 'H'}"]
            offsets = scatter.get_offsets()
            assert len(offsets) == count
            sel = (level == lv) & (is_low == lo) & (ts >= T0) & (ts < T0 + 500 * MINUTE)
            # lows sit below their price, highs above
            if lo:
                assert np.all(offsets[:, 1] < price[sel])
            else:
                assert np.all(offsets[:, 1] > price[sel])
        # bigger markers for higher levels
        sizes = {g: c.get_sizes()[0] for g, c in drawn.items()}
        assert sizes.get("pivots_L1L", 0) < sizes.get("pivots_L3L", 1e9)


def test_pivots_of_the_wrong_type_are_refused():
    with pytest.raises(ConfigError, match="PivotEvent"):
        plot_candles(make_candles(5), pivots=[(1, 2.0)])


def test_frames_window_shaded_targets_marked_and_matched_pairs_highlighted():
    candles = make_candles(60)
    last_closed = int(candles.timestamps[-1])
    now = last_closed + MINUTE
    frames = [
        Frame("X", "1m", now - k * MINUTE, now - k * MINUTE + MINUTE, now - (k + 20) * MINUTE, now - (k + 1) * MINUTE)
        for k in (3, 2, 1, 0)
    ]
    event = CandleCompletionEvent("X", "1m", frames[0].target_timestamp, frames[0].target_timestamp + MINUTE,
                                  1, 2, 0.5, 101.25, 3)
    fig = plot_candles(candles, frames=frames, matched=[(frames[0], event)])
    ax = fig.axes[0]
    (span,) = by_gid(ax, "current_window")
    current = frames[-1]  # latest prediction
    x0, x1 = span.get_x(), span.get_x() + span.get_width()
    assert x0 == pytest.approx(utc_num(current.data_range_start), abs=1e-9)
    assert x1 == pytest.approx(utc_num(current.data_range_end + MINUTE), abs=1e-9)
    (targets,) = by_gid(ax, "pending_targets")
    xs = sorted(s[0][0] for s in targets.get_segments())
    assert xs == pytest.approx(sorted(utc_num(f.target_timestamp + MINUTE // 2) for f in frames), abs=1e-9)
    # the latest target (the candle opening now) is inside the view
    assert ax.get_xlim()[1] >= utc_num(now + MINUTE) - 1e-9
    (matched_bands,) = by_gid(ax, "matched_targets")
    (band,) = matched_bands.get_paths()
    assert band.vertices[:4, 0].min() == pytest.approx(utc_num(frames[0].target_timestamp), abs=1e-9)
    assert band.vertices[:4, 0].max() == pytest.approx(utc_num(frames[0].target_timestamp + MINUTE), abs=1e-9)
    (stars,) = by_gid(ax, "matched_events")
    assert stars.get_offsets()[0][1] == pytest.approx(101.25)
    # an explicit current frame wins
    ax2 = plot_candles(candles, frames=frames, current_frame=frames[0]).axes[0]
    (span2,) = by_gid(ax2, "current_window")
    assert span2.get_x() == pytest.approx(utc_num(frames[0].data_range_start), abs=1e-9)
    png_size(fig)


def test_candles_drawn_on_a_given_axes_and_missing_columns_named():
    fig, axes = plt.subplots(1, 2)
    try:
        out = plot_candles(make_candles(10), ax=axes[1])
        assert out is fig
        assert not axes[0].collections and len(axes[1].collections) == 2
    finally:
        plt.close(fig)
    bad = CandleArrays(np.arange(3, dtype=np.int64) * MINUTE, np.ones((3, 2)), ("open", "close"))
    with pytest.raises(UnknownNameError, match="high"):
        plot_candles(bad)


def test_redraw_of_600_candles_is_fast():
    candles = make_candles(600)
    fig = plot_candles(candles)
    ax = fig.axes[0]
    wall, cpu = [], []
    for _ in range(5):
        start, start_cpu = time.perf_counter(), time.process_time()
        for artist in [*ax.collections, *ax.patches]:
            artist.remove()
        plot_candles(candles, ax=ax)
        fig.savefig(io.BytesIO(), format="png", dpi=80)
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    wall_ms, cpu_ms = 1000 * float(np.median(wall)), 1000 * float(np.median(cpu))
    print(f"plot_candles redraw of 600 candles + PNG: {wall_ms:.1f} ms wall, {cpu_ms:.1f} ms CPU")
    assert cpu_ms < 1000  # CPU time: other processes on a shared machine do not count


def test_learning_curve_rolling_mean_matches_pandas():
    rng = np.random.default_rng(7)
    losses = rng.exponential(1.0, 300)
    losses[[5, 17, 18]] = np.nan
    fig = plot_learning_curve(losses, window=25)
    ax = fig.axes[0]
    raw, mean = ax.get_lines()
    np.testing.assert_array_equal(raw.get_ydata(), losses)
    expected = pd.Series(losses).rolling(25, min_periods=1).mean().to_numpy()
    np.testing.assert_allclose(mean.get_ydata(), expected, rtol=1e-12)
    assert ax.get_xlabel() == "training pair" and ax.get_ylabel() == "loss"
    assert "w=25" in mean.get_label()
    png_size(fig)
    with pytest.raises(ConfigError, match="window"):
        plot_learning_curve(losses, window=0)


def test_learning_curve_of_several_models():
    fig = plot_learning_curve({"a": [1.0, 2.0], "b": [3.0, 1.0, 2.0]}, window=2)
    labels = [line.get_label() for line in fig.axes[0].get_lines()]
    assert labels == ["a (per pair)", "a (rolling mean, w=2)", "b (per pair)", "b (rolling mean, w=2)"]


def test_rolling_accuracy_matches_pandas_for_model_and_baselines():
    rng = np.random.default_rng(11)
    hits = {
        "transformer": rng.random(400) < 0.6,
        "always BUY": rng.random(400) < 0.5,
        "persistence": (rng.random(350) < 0.55).astype(int),
    }
    fig = plot_rolling_accuracy(hits, window=50)
    ax = fig.axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == set(hits)
    for name, h in hits.items():
        expected = pd.Series(np.asarray(h, dtype=float)).rolling(50, min_periods=1).mean()
        np.testing.assert_allclose(lines[name].get_ydata(), expected.to_numpy(), rtol=1e-12)
    assert lines["transformer"].get_linewidth() > lines["always BUY"].get_linewidth()
    assert lines["always BUY"].get_linestyle() == "--"
    assert ax.get_ylabel() == "accuracy (rolling, w=50)"
    png_size(fig)
    with pytest.raises(UnknownNameError, match="transformr"):
        plot_rolling_accuracy(hits, model="transformr")
    with pytest.raises(ConfigError):
        plot_rolling_accuracy({})


def test_pivot_confusion_annotations_equal_the_values():
    confusion = np.array([[12, 3, 0], [4, 20, 1], [0, 2, 9]])
    labels = ["L2L", "none", "L2H"]
    fig = plot_pivot_confusion(confusion, labels)
    ax = fig.axes[0]
    texts = {(round(t.get_position()[1]), round(t.get_position()[0])): t.get_text() for t in ax.texts}
    assert len(texts) == confusion.size
    for (i, j), value in np.ndenumerate(confusion):
        assert texts[(i, j)] == str(value)
    assert [t.get_text() for t in ax.get_xticklabels()] == labels
    assert [t.get_text() for t in ax.get_yticklabels()] == labels
    assert ax.get_xlabel() == "predicted" and ax.get_ylabel() == "actual"
    np.testing.assert_array_equal(ax.images[0].get_array(), confusion)
    png_size(fig)
    with pytest.raises(ConfigError, match="square"):
        plot_pivot_confusion(np.ones((2, 3)), ["a", "b"])
    with pytest.raises(ConfigError, match="labels"):
        plot_pivot_confusion(np.ones((2, 2)), ["a"])


def test_event_timeline_one_row_per_kind_timeframe_and_level():
    events = []
    for i in range(30):
        t = T0 + i * MINUTE
        events.append(CandleCompletionEvent("X", "1m", t, t + MINUTE, 1, 1, 1, 1, 1))
        if i % 5 == 4:
            events.append(CandleCompletionEvent("X", "5m", t - 4 * MINUTE, t + MINUTE, 1, 1, 1, 1, 1))
        if i % 7 == 3:
            events.append(PivotEvent("X", "1m", "L1H", 1, t - MINUTE, 1.0, 1.0, t + MINUTE))
        if i % 11 == 5:
            events.append(PivotEvent("X", "1m", "L2L", 2, t - 3 * MINUTE, 1.0, 1.0, t + MINUTE))
        events.append(InferenceStepEvent("X", "1m", t + MINUTE))
    fig = plot_event_timeline(events)
    ax = fig.axes[0]
    names = {
        CandleCompletionEvent: lambda e: f"candle {e.timeframe}",
        PivotEvent: lambda e: f"pivot L{e.level} {e.timeframe}",
        InferenceStepEvent: lambda e: f"step {e.timeframe}",
    }
    expected = Counter(names[type(e)](e) for e in events)
    rows = {c.get_gid(): c for c in ax.collections}
    assert {k: len(v.get_offsets()) for k, v in rows.items()} == dict(expected)
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert labels == ["candle 1m", "candle 5m", "pivot L1 1m", "pivot L2 1m", "step 1m"]
    five = rows["candle 5m"].get_offsets()[:, 0]
    want = [utc_num(e.close_time) for e in events if isinstance(e, CandleCompletionEvent) and e.timeframe == "5m"]
    np.testing.assert_allclose(five, want, atol=1e-9)
    assert ax.get_xlabel() == "time (UTC)"
    png_size(fig)
    with pytest.raises(ConfigError, match="not an ettlib event"):
        plot_event_timeline([object()])
