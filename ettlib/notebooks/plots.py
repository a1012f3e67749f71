"""Plot helpers: candles with pivots and frames, learning, accuracy, timelines.

Every function draws with matplotlib only and never touches pyplot's global
state: it draws on the ``ax`` it is given, or on a fresh
:class:`matplotlib.figure.Figure` (Agg-safe, nothing left open), and returns
the :class:`~matplotlib.figure.Figure`.  In a notebook, ``display(fig)``
shows it; in a report, ``fig.savefig(path)`` writes it.

Time axes show UTC datetimes.  Timestamps are ``int64`` epoch milliseconds,
as everywhere in ettlib; they are turned into matplotlib date numbers in
one vectorized step (:func:`ms_to_datenum`).

Artists that tests and callers look up carry a ``gid``: ``"candle_wicks"``
(a :class:`~matplotlib.collections.LineCollection`, one segment per candle),
``"candle_bodies"`` (a :class:`~matplotlib.collections.PolyCollection`, one
rectangle per candle), ``"pivots_L{k}L"``/``"pivots_L{k}H"`` (one scatter per
level and side), ``"current_window"`` (the shaded input window of the
current frame), ``"pending_targets"`` (one vertical segment per pending
frame), ``"matched_targets"`` / ``"matched_events"`` (the pairs matched by
the last event).

Examples
--------
>>> import numpy as np
>>> from ettlib.store.candles import CandleArrays
>>> ts = np.arange(5, dtype=np.int64) * 60_000
>>> ohlc = np.array([[1, 2, 0.5, 1.5], [1.5, 2.5, 1, 2], [2, 2.2, 1.1, 1.2],
...                  [1.2, 1.4, 0.8, 1.0], [1.0, 1.9, 0.9, 1.8]], dtype=float)
>>> fig = plot_candles(CandleArrays(ts, ohlc, ("open", "high", "low", "close")))
>>> [c.get_gid() for c in fig.axes[0].collections]
['candle_wicks', 'candle_bodies']
>>> len(fig.axes[0].collections[1].get_paths())
5
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.collections import LineCollection, PolyCollection
from matplotlib.colors import to_rgba
from matplotlib.figure import Figure
from matplotlib.transforms import blended_transform_factory

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.notebooks.figures import figure_and_axes, ms_to_datenum, new_figure, rolling_mean, utc_date_axis
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent
from ettlib.timeframes import TIMEFRAMES, timeframe_ms

__all__ = [
    "plot_candles",
    "plot_learning_curve",
    "plot_rolling_accuracy",
    "plot_pivot_confusion",
    "plot_event_timeline",
    "ms_to_datenum",
    "rolling_mean",
    "new_figure",
]

_MS_PER_DAY = 86_400_000
_UP_COLOUR = "#26a69a"
_DOWN_COLOUR = "#ef5350"
#: Marker colour per pivot level (level 1 first); higher levels reuse the last.
LEVEL_COLOURS = ("#7f7f7f", "#1f77b4", "#9467bd", "#ff7f0e", "#d62728")
#: Marker area (points^2) per pivot level (level 1 first).
LEVEL_SIZES = (14.0, 36.0, 70.0, 110.0, 160.0)


def _infer_step_ms(timestamps: np.ndarray) -> int:
    if len(timestamps) < 2:
        return TIMEFRAMES["1m"]
    return int(np.min(np.diff(timestamps)))


def _pivot_arrays(pivots):
    """``(timestamp, price, level, is_low)`` arrays from a PivotTable or events."""
    if pivots is None:
        return None
    if hasattr(pivots, "is_low") and np.ndim(pivots.is_low) == 1:  # a PivotTable
        return (
            np.asarray(pivots.timestamp, dtype=np.int64),
            np.asarray(pivots.price, dtype=np.float64),
            np.asarray(pivots.level, dtype=np.int64),
            np.asarray(pivots.is_low, dtype=bool),
        )
    events = list(pivots)
    for e in events:
        if not isinstance(e, PivotEvent):
            raise ConfigError(
                f"pivots must be a PivotTable or PivotEvent objects, got {type(e).__name__}"
            )
    return (
        np.fromiter((e.timestamp for e in events), dtype=np.int64, count=len(events)),
        np.fromiter((e.price for e in events), dtype=np.float64, count=len(events)),
        np.fromiter((e.level for e in events), dtype=np.int64, count=len(events)),
        np.fromiter((e.is_low for e in events), dtype=bool, count=len(events)),
    )


def _as_matched_pairs(matched) -> list[tuple[object, object]]:
    pairs = []
    for item in matched or ():
        if isinstance(item, tuple) and len(item) == 2:
            pairs.append(item)
        else:
            pairs.append((item, None))
    return pairs


# ---------------------------------------------------------------- candles


def plot_candles(
    candles,
    *,
    pivots=None,
    frames: Sequence | None = None,
    matched: Iterable | None = None,
    current_frame=None,
    timeframe: str | None = None,
    ax=None,
    title: str | None = None,
    figsize: tuple[float, float] = (10.0, 4.5),
) -> Figure:
    """Candlestick chart with pivots, frame windows and matched pairs.

    Parameters
    ----------
    candles
        :class:`~ettlib.store.candles.CandleArrays` with at least the columns
        ``open, high, low, close`` (open times in epoch ms).
    pivots
        A ``PivotTable`` (aligned arrays ``timestamp, price, level, is_low``)
        or an iterable of :class:`~ettlib.replay.events.PivotEvent`.  Only pivots
        whose bar lies inside the candles' time range are drawn: lows as
        ``^`` below their price, highs as ``v`` above, larger and darker
        with the level.
    frames
        Pending frames (objects with ``timeframe, prediction_timestamp,
        target_timestamp, data_range_start, data_range_end``, e.g.
        ``InferenceFrameReference``).  Each target gets a dotted vertical
        mark at its candle's centre (``gid="pending_targets"``).
    matched
        The pairs matched by the last event: ``(frame, event)`` tuples, or
        frames alone.  Each frame's target candle is highlighted by a
        full-height band (``gid="matched_targets"``, one PolyCollection, one
        rectangle per pair) and each event marked with a star at its
        price (pivot price, or the completed candle's close).
    current_frame
        The frame whose input window is shaded, from ``data_range_start`` to
        ``data_range_end + timeframe`` (``gid="current_window"``).  Defaults
        to the pending frame with the latest ``prediction_timestamp``.
    timeframe
        Candle length, for the body width; inferred from the timestamps
        (smallest gap) when omitted.
    ax, title, figsize
        Draw on ``ax`` (else a new Figure of ``figsize``); set the title.

    Returns
    -------
    matplotlib.figure.Figure
        The figure that holds the axes.

    Notes
    -----
    Wicks are one LineCollection and bodies one PolyCollection, so a redraw
    of a few hundred candles costs a few artists, not a few hundred.
    """
    fig, ax = figure_and_axes(ax, figsize)
    ts = np.asarray(candles.timestamps, dtype=np.int64)
    o, h, l, c = (candles.column(name) for name in ("open", "high", "low", "close"))
    step_ms = timeframe_ms(timeframe) if timeframe is not None else _infer_step_ms(ts)
    step_days = step_ms / _MS_PER_DAY
    x = ms_to_datenum(ts) + step_days / 2  # candle centres
    n = len(ts)

    up = c >= o
    colours = np.where(up[:, None], _to_rgba(_UP_COLOUR), _to_rgba(_DOWN_COLOUR))
    wicks = np.empty((n, 2, 2))
    wicks[:, 0, 0] = wicks[:, 1, 0] = x
    wicks[:, 0, 1], wicks[:, 1, 1] = l, h
    ax.add_collection(LineCollection(wicks, colors=colours, linewidths=0.8, gid="candle_wicks"))

    half = step_days * 0.35
    bottom, top = np.minimum(o, c), np.maximum(o, c)
    bodies = np.empty((n, 4, 2))
    bodies[:, 0, 0] = bodies[:, 3, 0] = x - half
    bodies[:, 1, 0] = bodies[:, 2, 0] = x + half
    bodies[:, 0, 1] = bodies[:, 1, 1] = bottom
    bodies[:, 2, 1] = bodies[:, 3, 1] = top
    ax.add_collection(
        PolyCollection(bodies, facecolors=colours, edgecolors=colours, linewidths=0.5, gid="candle_bodies")
    )

    if n:
        x_lo, x_hi = ms_to_datenum(ts[0]), ms_to_datenum(ts[-1]) + step_days
        y_lo, y_hi = float(np.nanmin(l)), float(np.nanmax(h))
    else:
        x_lo = x_hi = None
        y_lo = y_hi = None
    span = (y_hi - y_lo) if n and y_hi > y_lo else 1.0
    pad = 0.02 * span

    table = _pivot_arrays(pivots)
    if table is not None and n:
        p_ts, p_price, p_level, p_low = table
        inside = (p_ts >= ts[0]) & (p_ts <= ts[-1])
        p_x = ms_to_datenum(p_ts) + step_days / 2
        for level in np.unique(p_level[inside]):
            colour = LEVEL_COLOURS[min(level, len(LEVEL_COLOURS)) - 1]
            size = LEVEL_SIZES[min(level, len(LEVEL_SIZES)) - 1]
            for is_low in (True, False):
                sel = inside & (p_level == level) & (p_low == is_low)
                if not sel.any():
                    continue
                offset = -pad * (0.8 + 0.4 * level) if is_low else pad * (0.8 + 0.4 * level)
                ax.scatter(
                    p_x[sel], p_price[sel] + offset, s=size, c=colour,
                    marker="^" if is_low else "v", zorder=3,
                    gid=f"pivots_L{level}{'L' if is_low else 'H'}",
                    label=f"L{level}{'L' if is_low else 'H'}",
                )

    frames = list(frames or ())
    if current_frame is None and frames:
        current_frame = max(frames, key=lambda f: f.prediction_timestamp)
    if current_frame is not None:
        f_step = timeframe_ms(current_frame.timeframe) / _MS_PER_DAY
        ax.axvspan(
            ms_to_datenum(current_frame.data_range_start),
            ms_to_datenum(current_frame.data_range_end) + f_step,
            color="#1f77b4", alpha=0.10, lw=0, gid="current_window", zorder=0,
        )
    extra_x = []
    if frames and n:
        t_x = np.array(
            [ms_to_datenum(f.target_timestamp) + timeframe_ms(f.timeframe) / _MS_PER_DAY / 2 for f in frames]
        )
        segs = np.empty((len(frames), 2, 2))
        segs[:, 0, 0] = segs[:, 1, 0] = t_x
        segs[:, 0, 1], segs[:, 1, 1] = y_lo - 6 * pad, y_hi + 6 * pad
        ax.add_collection(
            LineCollection(segs, colors="#555555", linestyles="dotted", linewidths=1.0, gid="pending_targets")
        )
        extra_x.append(float(t_x.max()) + step_days)  # half a candle of margin

    pairs = _as_matched_pairs(matched)
    stars_x, stars_y = [], []
    if pairs:
        # one full-height band per matched frame's target candle, all in one collection
        lo = ms_to_datenum(np.array([f.target_timestamp for f, _ in pairs], dtype=np.int64))
        hi = lo + np.array([timeframe_ms(f.timeframe) for f, _ in pairs]) / _MS_PER_DAY
        bands = np.empty((len(pairs), 4, 2))
        bands[:, 0, 0] = bands[:, 3, 0] = lo
        bands[:, 1, 0] = bands[:, 2, 0] = hi
        bands[:, 0, 1] = bands[:, 1, 1] = 0.0
        bands[:, 2, 1] = bands[:, 3, 1] = 1.0
        ax.add_collection(PolyCollection(
            bands, facecolors="#ffbf00", alpha=0.35, linewidths=0, zorder=0, gid="matched_targets",
            transform=blended_transform_factory(ax.transData, ax.transAxes),
        ), autolim=False)
        extra_x.append(float(hi.max()))
    for frame, event in pairs:
        if isinstance(event, PivotEvent):
            stars_x.append(ms_to_datenum(event.timestamp) + timeframe_ms(event.timeframe) / _MS_PER_DAY / 2)
            stars_y.append(event.price)
        elif isinstance(event, CandleCompletionEvent):
            stars_x.append(ms_to_datenum(event.timestamp) + timeframe_ms(event.timeframe) / _MS_PER_DAY / 2)
            stars_y.append(event.close)
    if stars_x:
        ax.scatter(stars_x, stars_y, marker="*", s=160, c="#ffbf00", edgecolors="k",
                   linewidths=0.6, zorder=4, gid="matched_events")

    if n:
        ax.set_xlim(x_lo, max([x_hi, *extra_x]))
        ax.set_ylim(y_lo - 6 * pad, y_hi + 6 * pad)
    utc_date_axis(ax)
    ax.set_ylabel("price")
    ax.grid(True, alpha=0.2)
    if title:
        ax.set_title(title)
    return fig


def _to_rgba(colour: str) -> np.ndarray:
    return np.array(to_rgba(colour))


# ---------------------------------------------------------------- learning


def plot_learning_curve(
    losses,
    *,
    window: int = 50,
    ax=None,
    title: str | None = "learning curve",
    label: str = "loss",
    figsize: tuple[float, float] = (8.0, 3.5),
) -> Figure:
    """Per-pair losses (faint) and their trailing mean over ``window`` pairs.

    ``losses`` is a 1-D array-like (NaN allowed: skipped by the mean), or a
    mapping ``name -> losses`` to draw several curves.  The x axis is the
    training pair's index.  The rolling lines carry ``label`` (or the
    mapping's keys) followed by `` (rolling mean, w=window)``.

    >>> fig = plot_learning_curve([3.0, 2.0, 1.0], window=2)
    >>> fig.axes[0].get_lines()[1].get_ydata().tolist()
    [3.0, 2.5, 1.5]
    """
    fig, ax = figure_and_axes(ax, figsize)
    series = dict(losses) if isinstance(losses, Mapping) else {label: losses}
    for i, (name, values) in enumerate(series.items()):
        y = np.asarray(values, dtype=np.float64).ravel()
        x = np.arange(len(y))
        colour = f"C{i}"
        ax.plot(x, y, color=colour, alpha=0.25, lw=0.8, label=f"{name} (per pair)")
        ax.plot(x, rolling_mean(y, window), color=colour, lw=2.0,
                label=f"{name} (rolling mean, w={window})")
    ax.set_xlabel("training pair")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.2)
    ax.legend(loc="upper right", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_rolling_accuracy(
    correct_by_model: Mapping[str, Sequence],
    *,
    window: int = 100,
    model: str | None = None,
    ax=None,
    title: str | None = "rolling accuracy",
    figsize: tuple[float, float] = (8.0, 3.5),
) -> Figure:
    """Rolling accuracy of a model against baselines.

    ``correct_by_model`` maps a name to a 1-D array of hits (bool or 0/1,
    NaN for "not scored").  Each line is the trailing mean over ``window``
    items (see :func:`rolling_mean`) and is labelled with its name.  The
    ``model`` (default: the first key) is drawn bold, baselines thin and
    dashed.

    >>> fig = plot_rolling_accuracy({"model": [1, 0, 1, 1], "always BUY": [0, 0, 1, 0]}, window=2)
    >>> [line.get_label() for line in fig.axes[0].get_lines()]
    ['model', 'always BUY']
    """
    if not correct_by_model:
        raise ConfigError("correct_by_model is empty: give at least one model's hits")
    fig, ax = figure_and_axes(ax, figsize)
    names = list(correct_by_model)
    if model is None:
        model = names[0]
    elif model not in correct_by_model:
        raise UnknownNameError("model", model, names)
    for i, name in enumerate(names):
        hits = np.asarray(correct_by_model[name], dtype=np.float64).ravel()
        is_model = name == model
        ax.plot(
            np.arange(len(hits)), rolling_mean(hits, window), label=name, color=f"C{i}",
            lw=2.2 if is_model else 1.2, ls="-" if is_model else "--", zorder=3 if is_model else 2,
        )
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel("scored prediction")
    ax.set_ylabel(f"accuracy (rolling, w={window})")
    ax.grid(True, alpha=0.2)
    ax.legend(loc="lower right", fontsize="small")
    if title:
        ax.set_title(title)
    return fig


def plot_pivot_confusion(
    confusion,
    labels: Sequence[str],
    *,
    ax=None,
    title: str | None = "pivot confusion",
    value_format: str = "{:g}",
    figsize: tuple[float, float] = (5.0, 4.5),
) -> Figure:
    """Annotated heatmap of a confusion matrix (rows: actual, columns: predicted).

    Every cell is written as ``value_format.format(value)``.

    >>> fig = plot_pivot_confusion([[5, 1], [2, 7]], ["BUY", "SELL"])
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['5', '1', '2', '7']
    """
    m = np.asarray(confusion, dtype=np.float64)
    labels = list(labels)
    if m.ndim != 2 or m.shape[0] != m.shape[1]:
        raise ConfigError(f"confusion must be a square 2-D array, got shape {m.shape}")
    if len(labels) != m.shape[0]:
        raise ConfigError(f"{len(labels)} labels for a {m.shape[0]}x{m.shape[1]} confusion matrix")
    fig, ax = figure_and_axes(ax, figsize)
    image = ax.imshow(m, cmap="Blues", aspect="equal")
    finite = m[np.isfinite(m)]
    threshold = (finite.max() + finite.min()) / 2 if finite.size else 0.0
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, value_format.format(m[i, j]), ha="center", va="center",
                    color="white" if m[i, j] > threshold else "black")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("actual")
    fig.colorbar(image, ax=ax, shrink=0.8)
    if title:
        ax.set_title(title)
    return fig


def _timeline_row(event) -> tuple[tuple, str]:
    if not isinstance(event, (CandleCompletionEvent, PivotEvent, InferenceStepEvent)):
        raise ConfigError(f"not an ettlib event: {type(event).__name__}")
    tf = TIMEFRAMES[event.timeframe]
    if isinstance(event, CandleCompletionEvent):
        return (0, tf, 0), f"candle {event.timeframe}"
    if isinstance(event, PivotEvent):
        return (1, tf, event.level), f"pivot L{event.level} {event.timeframe}"
    return (2, tf, 0), f"step {event.timeframe}"


def plot_event_timeline(
    events: Iterable,
    *,
    ax=None,
    title: str | None = "events by knowable time",
    figsize: tuple[float, float] = (10.0, 3.5),
) -> Figure:
    """One row per event kind and timeframe (pivots also per level), over knowable time.

    Rows, top to bottom: candle completions by timeframe, pivots by
    timeframe and level, inference steps by timeframe.  Each row is one
    scatter (``gid`` = the row label, e.g. ``"candle 1m"``, ``"pivot L2 5m"``,
    ``"step 1m"``) with one point per event at its ``knowable_time``; pivot
    rows use the candle chart's level colours.
    """
    rows: dict[tuple, tuple[str, list[int]]] = {}
    for event in events:
        key, label = _timeline_row(event)
        rows.setdefault(key, (label, []))[1].append(event.knowable_time)
    fig, ax = figure_and_axes(ax, figsize)
    ordered = sorted(rows)
    for y, key in enumerate(ordered):
        label, times = rows[key]
        colour = LEVEL_COLOURS[min(key[2], len(LEVEL_COLOURS)) - 1] if key[0] == 1 else f"C{key[0]}"
        ax.scatter(ms_to_datenum(np.array(times, dtype=np.int64)), np.full(len(times), y),
                   s=12, c=colour, marker="|" if key[0] == 0 else "o", gid=label)
    ax.set_yticks(range(len(ordered)), [rows[k][0] for k in ordered])
    ax.set_ylim(len(ordered) - 0.5, -0.5)
    utc_date_axis(ax)
    ax.grid(True, axis="x", alpha=0.2)
    if title:
        ax.set_title(title)
    return fig
