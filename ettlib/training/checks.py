"""A conformance suite every training adapter passes (River's ``checks`` shape).

:func:`yield_checks` yields check functions; ``tests/test_adapters.py`` runs
each of them for every registered adapter.  A check takes
``make_adapter(seed) -> adapter`` and raises ``AssertionError`` on failure.

The checks drive an adapter through a :class:`Scenario`: a small seeded
random-walk series, a frame per candle (as the inference loop makes them),
and the matched ``(event, frames)`` pairs a coordinator would deliver (each
completed candle with the frame that predicted it, each confirmed pivot
with the frames in its lookback), delivered in knowable-time order.  The
adapter reads its windows through a :class:`RecordingSource`: it wraps the
window source (the real coordinator, or :class:`ArraySource`, a minimal
in-memory reference of ``get_inference_data_batch``) and records, for each
window handed out, the replay time it was asked at.  That record is the
instrument of the time checks:

* no window extends past its frame's ``data_range_end`` (or starts before
  ``data_range_start``), and every window asked for belongs to a frame
  exactly as delivered (an adapter cannot widen a frame's range);
* no frame's window is read for training before a label for it was
  delivered -- the label never comes from before its knowable time;
* each learned pair's recorded ``knowable_time`` is its event's.

Examples
--------
>>> [c.__name__ for c in yield_checks()][:3]
['check_predictions_well_formed', 'check_seeded_runs_reproduce', 'check_save_load_round_trip']
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ettlib.store.candles import CandleArrays
from ettlib.replay.events import CandleCompletionEvent
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.timeframes import timeframe_ms
from ettlib.training.adapters.base import ACTIONS

__all__ = [
    "Scenario",
    "WindowData",
    "ArraySource",
    "RecordingSource",
    "make_scenario",
    "drive",
    "yield_checks",
]

_TF = "1m"


@dataclass(frozen=True, slots=True)
class WindowData:
    """A retrieved window: the shape of the coordinator's ``InferenceData``."""

    values: np.ndarray
    timestamps: np.ndarray
    columns: tuple[str, ...]
    ref: object


class ArraySource:
    """Reference ``get_inference_data_batch`` over in-memory candles.

    Returns exactly the rows ``[data_range_start, data_range_end]`` of a
    frame, normalized with its ``norm_params``, as read-only arrays.
    """

    def __init__(self, candles: CandleArrays):
        self.candles = candles

    def get_inference_data(self, ref):
        from ettlib.coordinator.normalization import normalize

        ts = self.candles.timestamps
        lo = np.searchsorted(ts, ref.data_range_start, side="left")
        hi = np.searchsorted(ts, ref.data_range_end, side="right")
        if hi <= lo:
            return None
        values = normalize(self.candles.values[lo:hi], self.candles.columns, ref.norm_params)
        stamps = ts[lo:hi].copy()
        values.setflags(write=False)
        stamps.setflags(write=False)
        return WindowData(values, stamps, self.candles.columns, ref)

    def get_inference_data_batch(self, refs):
        return [self.get_inference_data(r) for r in refs]


@dataclass
class RecordingSource:
    """Wraps a window source; records ``(now, ref, window)`` per window handed out."""

    inner: object
    clock: Callable[[], int]
    delivered: dict = field(default_factory=dict)  #: inference_id -> (ref, first label time)
    records: list = field(default_factory=list)
    copies: list = field(default_factory=list)  #: pristine copies of what was handed out

    def get_inference_data_batch(self, refs):
        out = self.inner.get_inference_data_batch(list(refs))
        now = self.clock()
        for ref, data in zip(refs, out):
            self.records.append((now, ref, data))
            if data is not None:
                self.copies.append((data, data.values.copy(), data.timestamps.copy()))
        return out

    def get_inference_data(self, ref):
        return self.get_inference_data_batch([ref])[0]


@dataclass
class Scenario:
    """Candles, the frames made on them and the pairs to deliver, in order."""

    candles: CandleArrays
    steps: list  #: ``(knowable_time, kind, event, refs)`` in delivery order
    probes: list  #: normalized windows to predict from
    context: int


def _random_walk(n: int, seed: int) -> CandleArrays:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.standard_t(4, n) * 0.002))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, n)) * close
    high = np.maximum(open_, close) + spread
    low = np.minimum(open_, close) - spread
    volume = rng.lognormal(3, 0.5, n)
    ts = np.arange(n, dtype=np.int64) * timeframe_ms(_TF)
    return CandleArrays(ts, np.column_stack([open_, high, low, close, volume]), OHLCV_COLUMNS)


def make_scenario(n: int = 120, context: int = 16, lookback: int = 3, seed: int = 7) -> Scenario:
    """A seeded scenario of ``n`` 1m candles, frames of ``context`` candles."""
    from ettlib.coordinator.frames import InferenceFrameReference
    from ettlib.coordinator.normalization import compute_norm_params, normalize
    from ettlib.replay.pivots import detect_pivots

    candles = _random_walk(n, seed)
    ms = timeframe_ms(_TF)
    ts, values = candles.timestamps, candles.values
    frames = {}
    for i in range(context, n):  # a frame at T = ts[i]: window rows i-context .. i-1
        window = CandleArrays(ts[i - context : i], values[i - context : i], candles.columns)
        params = compute_norm_params(window)
        frames[int(ts[i])] = InferenceFrameReference(
            inference_id=seed * 1_000_000 + i,
            symbol="TEST",
            timeframe=_TF,
            prediction_timestamp=int(ts[i]),
            target_timestamp=int(ts[i]),
            data_range_start=int(ts[i - context]),
            data_range_end=int(ts[i - 1]),
            norm_params=params,
            predicted_action="HOLD",
            predicted_candle=(),
            confidence=1.0,
        )
    steps = []
    for i in range(context, n):
        t = int(ts[i])
        event = CandleCompletionEvent("TEST", _TF, t, t + ms, *map(float, values[i]))
        steps.append((event.close_time, 0, event, [frames[t]]))
    table = detect_pivots(ts, values[:, 1], values[:, 2], _TF, n=1, levels=2)
    for event in table.events("TEST", _TF):
        refs = [f for p, f in frames.items() if event.timestamp - lookback * ms <= p <= event.timestamp]
        if refs:
            steps.append((event.confirmed_at, 1, event, refs))
    steps.sort(key=lambda s: (s[0], s[1]))
    probes = []
    for i in (context + 5, n // 2, n - 1):
        window = CandleArrays(ts[i - context : i], values[i - context : i], candles.columns)
        probe = normalize(window.values, window.columns, compute_norm_params(window))
        probe.setflags(write=False)
        probes.append(probe)
    return Scenario(candles, steps, probes, context)


class _Clock:
    def __init__(self):
        self.now = 0

    def __call__(self) -> int:
        return self.now


def drive(adapter, scenario: Scenario, *, start: int = 0, stop: int | None = None,
          source: RecordingSource | None = None, flush: bool = True) -> RecordingSource:
    """Deliver ``scenario.steps[start:stop]`` to ``adapter`` at their knowable times.

    Then :meth:`~ettlib.training.adapters.TrainingAdapter.flush` it, unless
    ``flush=False`` (pairs may stay queued).
    """
    if source is None:
        clock = _Clock()
        source = RecordingSource(ArraySource(scenario.candles), clock)
    adapter.source = source
    for t, kind, event, refs in scenario.steps[start:stop]:
        source.clock.now = t
        for ref in refs:
            source.delivered.setdefault(ref.inference_id, (ref, t))
        if kind == 0:
            adapter.on_candle_completion(event, refs[0])
        else:
            adapter.on_pivot_event(event, refs)
    if flush:
        adapter.flush()
    return source


_SCENARIO: dict = {}


def _scenario(context: int) -> Scenario:
    if context not in _SCENARIO:
        _SCENARIO[context] = make_scenario(context=context)
    return _SCENARIO[context]


def _context_of(adapter) -> int:
    config = getattr(adapter, "config", None)
    return int(getattr(config, "context_length", 16))


def _predictions(adapter, scenario: Scenario) -> list:
    return [adapter.predict(p, OHLCV_COLUMNS) for p in scenario.probes]


# ---------------------------------------------------------------------------
# The checks
# ---------------------------------------------------------------------------


def check_predictions_well_formed(make_adapter) -> None:
    """Predictions: an action of ACTIONS, confidence in [0, 1], finite candle values."""
    adapter = make_adapter(0)
    scenario = _scenario(_context_of(adapter))
    for action, candle, confidence in _predictions(adapter, scenario):
        assert action in ACTIONS, action
        assert 0.0 <= confidence <= 1.0, confidence
        assert len(candle) == len(adapter.targets), (candle, adapter.targets)
        assert all(math.isfinite(v) for v in candle), candle


def check_seeded_runs_reproduce(make_adapter) -> None:
    """Two adapters with one seed, fed the same pairs, agree exactly."""
    a, b = make_adapter(3), make_adapter(3)
    scenario = _scenario(_context_of(a))
    drive(a, scenario)
    drive(b, scenario)
    assert _predictions(a, scenario) == _predictions(b, scenario)
    ra, rb = a.drain_results(), b.drain_results()
    assert [(r.inference_id, r.event_key, r.loss) for r in ra] == [
        (r.inference_id, r.event_key, r.loss) for r in rb
    ]


def check_save_load_round_trip(make_adapter) -> None:
    """Saved mid-run and loaded into a fresh adapter: same predictions now and after more pairs."""
    a = make_adapter(5)
    scenario = _scenario(_context_of(a))
    half = len(scenario.steps) // 2
    drive(a, scenario, stop=half)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.save(Path(tmp) / "adapter.pt")
        b = make_adapter(99).load(path)  # another seed: everything must come from the file
    assert _predictions(a, scenario) == _predictions(b, scenario)
    drive(a, scenario, start=half)
    drive(b, scenario, start=half)
    assert _predictions(a, scenario) == _predictions(b, scenario)


def check_checkpoint_state_round_trip(make_adapter) -> None:
    """``checkpoint_state`` mid-run (pairs still queued), ``restore_state`` into a fresh
    adapter: both continue identically -- same predictions, results, losses and counts."""
    a = make_adapter(5)
    scenario = _scenario(_context_of(a))
    cut = len(scenario.steps) // 2
    drive(a, scenario, stop=cut, flush=False)
    while a.learns and not a.pending and cut < len(scenario.steps) - 1:  # a crash between batches
        drive(a, scenario, start=cut, stop=cut + 1, flush=False)
        cut += 1
    assert not a.learns or (a.pending and a.results), "the check needs queued pairs and results"
    state = a.checkpoint_state()
    assert isinstance(state, bytes)
    b = make_adapter(99)  # another seed: everything must come from the state
    b.restore_state(state)
    assert len(b.pending) == len(a.pending) and b.pairs_learned == a.pairs_learned
    assert _predictions(a, scenario) == _predictions(b, scenario)
    drive(a, scenario, start=cut)
    drive(b, scenario, start=cut)
    assert _predictions(a, scenario) == _predictions(b, scenario)
    ra, rb = a.drain_results(), b.drain_results()
    assert [(r.inference_id, r.event_key, r.knowable_time, r.loss, r.metrics) for r in ra] == [
        (r.inference_id, r.event_key, r.knowable_time, r.loss, r.metrics) for r in rb
    ]
    assert a.pairs_learned == b.pairs_learned
    assert getattr(a, "steps", None) == getattr(b, "steps", None)


def check_inputs_not_mutated(make_adapter) -> None:
    """Neither predicting nor learning changes a window, a frame or an event."""
    adapter = make_adapter(1)
    scenario = _scenario(_context_of(adapter))
    probes = [p.copy() for p in scenario.probes]
    writable = [p.copy() for p in scenario.probes]  # writable: a write would not raise
    for w in writable:
        adapter.predict(w, OHLCV_COLUMNS)
    steps_before = [(e, [dict(r.norm_params) for r in refs]) for _, _, e, refs in scenario.steps]
    source = drive(adapter, scenario)
    for w, p in zip(writable, probes):
        assert np.array_equal(w, p)
    for data, values, stamps in source.copies:
        assert np.array_equal(data.values, values) and np.array_equal(data.timestamps, stamps)
    assert steps_before == [(e, [dict(r.norm_params) for r in refs]) for _, _, e, refs in scenario.steps]


def check_no_look_ahead(make_adapter) -> None:
    """Windows stay inside their frames; a frame is read only after its label was known."""
    adapter = make_adapter(2)
    scenario = _scenario(_context_of(adapter))
    source = drive(adapter, scenario)
    for now, ref, data in source.records:
        assert ref.inference_id in source.delivered, "window read for a frame never delivered"
        delivered_ref, label_time = source.delivered[ref.inference_id]
        assert ref == delivered_ref, "the adapter asked for a frame it altered"
        assert now >= label_time, f"frame read at {now}, before its label was known at {label_time}"
        if data is not None:
            assert data.timestamps[-1] <= ref.data_range_end
            assert data.timestamps[0] >= ref.data_range_start
    if adapter.learns:
        assert source.records, "a learning adapter read no window"


def check_results_match_events(make_adapter) -> None:
    """Every learned pair is reported once, with its event's knowable time."""
    adapter = make_adapter(4)
    scenario = _scenario(_context_of(adapter))
    drive(adapter, scenario)
    results = adapter.drain_results()
    expected = {}
    for t, kind, event, refs in scenario.steps:
        for ref in refs:
            key = (ref.inference_id, "candle" if kind == 0 else "pivot")
            expected.setdefault(key, set()).add(t)
    seen = set()
    for r in results:
        assert (r.inference_id, r.event_key) not in seen, "a pair was learned twice"
        seen.add((r.inference_id, r.event_key))
        assert r.knowable_time in expected[(r.inference_id, r.event_kind)]
        assert math.isfinite(r.loss)
    if adapter.learns:
        assert len(results) == sum(len(refs) for *_, refs in scenario.steps)
    else:
        assert results == []


def check_learning_changes_predictions(make_adapter) -> None:
    """Predicting alone changes nothing; learning (if the adapter learns) does."""
    adapter = make_adapter(6)
    scenario = _scenario(_context_of(adapter))
    before = _predictions(adapter, scenario)
    assert _predictions(adapter, scenario) == before
    drive(adapter, scenario)
    after = _predictions(adapter, scenario)
    if adapter.learns:
        assert after != before
    else:
        assert after == before


def yield_checks() -> Iterator[Callable]:
    """Every conformance check, in a fixed order."""
    yield check_predictions_well_formed
    yield check_seeded_runs_reproduce
    yield check_save_load_round_trip
    yield check_checkpoint_state_round_trip
    yield check_inputs_not_mutated
    yield check_no_look_ahead
    yield check_results_match_events
    yield check_learning_changes_predictions
