"""The trust boundary of a session: every way to see data from after the clock is refused.

``docs/design.md`` ("The trust boundary"): a frame registered at ``T`` must
predict at ``T``; every window handed to user code refuses candles not
closed at the clock, whatever its source; the clock is moved only by the
replay; a session only moves forward.  Each test below tries one leak.
"""

from __future__ import annotations

import pytest

from conftest import START_MS
from ettlib.clock import ClockView
from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.errors import ClockError, ConfigError, LookAheadError
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.replay import ReplayEngine
from ettlib.workbench import Workbench

M = 60_000
SYMBOL = "ETH/USDT"
PARAMS = (100.0, 1.0, 10.0, 1.0)


@pytest.fixture
def wb(store, make_candles):
    store.ingest(make_candles(600), SYMBOL, "1m")
    return Workbench(store)


def _frame(iid, t, end, action="SELL"):
    return InferenceFrameReference(iid, SYMBOL, "1m", t, end + M, end - 10 * M, end, PARAMS, action, (), 0.5)


class Pairs(TrainingEventSubscriber):
    def __init__(self):
        self.pivot_frames, self.candle_frames = [], []

    def on_candle_completion(self, event, inference_ref):
        if inference_ref is not None:
            self.candle_frames.append(inference_ref.inference_id)

    def on_pivot_event(self, event, inference_refs):
        self.pivot_frames.extend(r.inference_id for r in inference_refs)


def test_a_backdated_frame_is_refused_and_never_becomes_a_pair(wb):
    """The reported case: at T = 37 min, a frame predicting at 30 min (a pivot bar), window to 29 min, SELL."""
    session = wb.session(SYMBOL, pivot_lookback=10)
    pairs = Pairs()
    session.coordinator.subscribe_to_pivot_events(pairs, SYMBOL, "1m", ["L1L", "L1H", "L2L", "L2H"])
    errors = []

    def backdate(step):
        if step.timestamp == START_MS + 37 * M:
            try:
                session.coordinator.register_inference_frame(_frame(1, START_MS + 30 * M, START_MS + 29 * M))
            except LookAheadError as exc:
                errors.append(str(exc))

    session.on_inference_step(SYMBOL, "1m", backdate)
    session.run(until=START_MS + 120 * M)
    (message,) = errors
    assert "2024-01-01T00:30:00Z" in message and "2024-01-01T00:37:00Z" in message  # both times named
    assert "backdated" in message
    assert session.coordinator.counters().registered == 0 and 1 not in pairs.pivot_frames


def test_frames_from_the_future_and_late_ones_are_refused_under_replay(wb):
    session = wb.session(SYMBOL)
    seen = []

    def register(step):
        t = step.timestamp
        if t == START_MS + 20 * M:
            session.coordinator.register_inference_frame(_frame(1, t, t - M, "BUY"))  # the instant: accepted
            for ref in (_frame(2, t + M, t), _frame(3, t - 1, t - 2 * M)):  # a minute ahead; 1 ms behind
                with pytest.raises(LookAheadError, match="prediction_timestamp"):
                    session.coordinator.register_inference_frame(ref)
            seen.append(t)

    session.on_inference_step(SYMBOL, "1m", register)
    session.run(until=START_MS + 30 * M)
    assert seen and session.coordinator.counters().registered == 1


def test_a_live_feed_accepts_lateness_within_its_tolerance_only(store):
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, late_registration_ms=90_000)
    strict = InferenceTrainingCoordinator(DataProvider(store), store)
    for m in range(30):
        provider.push_candle(SYMBOL, "1m", START_MS + m * M, 1.0, 2.0, 0.5, 1.5, 1.0)
        strict.data_provider.push_candle(SYMBOL, "1m", START_MS + m * M, 1.0, 2.0, 0.5, 1.5, 1.0)
    now = provider.clock.now()
    assert now == START_MS + 30 * M
    # a model that took 60 s: the feed moved on one candle meanwhile
    coordinator.register_inference_frame(_frame(1, now - M, now - 2 * M))
    with pytest.raises(LookAheadError, match="tolerance of 90000 ms"):
        coordinator.register_inference_frame(_frame(2, now - 2 * M, now - 3 * M))  # 120 s: too late
    with pytest.raises(LookAheadError, match="backdated"):
        strict.register_inference_frame(_frame(3, now - M, now - 2 * M))  # the default tolerance is 0
    with pytest.raises(LookAheadError, match="after now"):
        coordinator.register_inference_frame(_frame(4, now + M, now))
    assert coordinator.counters().registered == 1


def test_every_window_path_refuses_rows_not_yet_knowable(wb):
    session = wb.session(SYMBOL, timeframes=["5m"])
    uncached = wb.session(SYMBOL, timeframes=["5m"], use_cache=False)
    session.run(until=START_MS + 100 * M)
    uncached.run(until=START_MS + 100 * M)
    now = session.clock.now()
    future = _frame(9, now + M, now)  # a frame whose window ends with the candle opening now
    leaks = [
        lambda: session.window(SYMBOL, "1m", now - 10 * M, now),
        lambda: session.window(SYMBOL, "5m", now - 50 * M, now - 5 * M + M),  # the running 5m bucket
        lambda: session.last_candles(SYMBOL, "1m", 5) and session.window(SYMBOL, "1m", now, now + M),
        lambda: session.coordinator.get_inference_data(future),
        lambda: session.coordinator.get_inference_data_batch([future]),
        lambda: uncached.coordinator.get_inference_data(future),  # from the store
        lambda: uncached.coordinator.get_inference_data_batch([future]),
        lambda: session.coordinator.cache.window(SYMBOL, "1m", now - 10 * M, now),
        lambda: session.candles.read_window(SYMBOL, "1m", now - 10 * M, now),
        lambda: session.candles.read_windows(SYMBOL, "1m", [now - 10 * M], [now]),
        lambda: session.candles.read_candles(SYMBOL, "1m"),  # no end: everything stored
        lambda: session.provider.duckdb_storage.read_window(SYMBOL, "1m", now - 10 * M, now),
        lambda: session.coordinator.duckdb_storage.read_candles(SYMBOL, "1m", end=now),
    ]
    for k, leak in enumerate(leaks):
        with pytest.raises(LookAheadError):
            leak()
            pytest.fail(f"leak {k} was not refused")
    # what is knowable comes through, from every path alike
    past = _frame(10, now, now - M)
    assert len(session.coordinator.get_inference_data(past)) == 11
    assert (session.coordinator.get_inference_data(past).values
            == uncached.coordinator.get_inference_data(past).values).all()
    assert len(session.last_candles(SYMBOL, "5m", 3)) == 3


def test_a_gapped_bucket_is_not_knowable_before_it_completes(store, make_candles):
    """A 5m bucket missing its last minute completes only when a later candle arrives."""
    frame = make_candles(60)
    frame = frame[frame.timestamp != START_MS + 9 * M]  # bucket 5..10 min lacks its closing candle
    store.ingest(frame, SYMBOL, "1m")
    session = Workbench(store).session(SYMBOL, timeframes=["5m"])
    session.run(until=START_MS + 10 * M)  # the bucket's end: minute 9 never came
    with pytest.raises(LookAheadError, match="gapped bucket"):
        session.window(SYMBOL, "5m", START_MS, START_MS + 5 * M)
    assert len(session.window(SYMBOL, "5m", START_MS, START_MS)) == 1
    session.run(until=START_MS + 11 * M)  # minute 10 closed: now the bucket is known
    assert len(session.window(SYMBOL, "5m", START_MS, START_MS + 5 * M)) == 2


def test_only_the_replay_moves_the_clock_and_a_session_only_moves_forward(wb):
    session = wb.session(SYMBOL)
    clocks = [session.clock, session.provider.clock, session.coordinator.clock,
              session.coordinator.cache.clock, session.candles.clock]
    assert all(isinstance(c, ClockView) for c in clocks)
    session.step(5)
    now = session.clock.now()
    for clock in clocks:
        with pytest.raises(ClockError):
            clock.advance(now + M)
        with pytest.raises(ClockError):
            clock.now = lambda: now + 10 * M
    assert session.clock.now() == now
    with pytest.raises(ConfigError, match="only moves forward"):
        session.seek(START_MS)
    session.seek(now + 10 * M)  # forward: fine
    assert session.clock.now() == now + 10 * M


def test_a_coordinator_without_a_cache_still_checks_the_clock(store, make_candles):
    """Wired by hand with no cache at all, get_inference_data reads DuckDB -- and still refuses the future."""
    store.ingest(make_candles(100), SYMBOL, "1m")
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store)
    engine = ReplayEngine(store, provider, SYMBOL, START_MS, START_MS + 99 * M)
    engine.run(until=START_MS + 50 * M)
    with pytest.raises(LookAheadError):
        coordinator.get_inference_data(_frame(1, START_MS + 51 * M, START_MS + 50 * M))
    assert len(coordinator.get_inference_data(_frame(2, START_MS + 50 * M, START_MS + 49 * M))) == 11
    with pytest.raises(AttributeError):
        coordinator.cache = engine.cache  # no hand wiring: a session gives the coordinator its cache
