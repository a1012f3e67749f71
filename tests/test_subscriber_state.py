"""The coordinator's subscriber-state protocol: checkpoint_state / restore_state.

A subscriber's bytes are stored in ``subscriber_states`` in the flush
transaction, with the pairs they account for, and handed back when a
resumed coordinator's subscriber subscribes.  Subscribers without the
methods keep working; a stored state nobody can restore is an error.
"""

from __future__ import annotations

import pytest

from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, ConfigTypeError
from ettlib.replay.events import CandleCompletionEvent
from ettlib.coordinator.frames import InferenceFrameReference

from conftest import START_MS

M = 60_000
SYMBOL = "ETH/USDT"


def candle(t):
    return CandleCompletionEvent(SYMBOL, "1m", t, t + M, 1.0, 2.0, 0.5, 1.5, 10.0)


def frame(iid, t):
    return InferenceFrameReference.for_prediction(
        iid, SYMBOL, "1m", t, context=5, norm_params=(100.0, 2.0, 10.0, 3.0),
        predicted_action="BUY", predicted_candle=(1.0,), confidence=0.5)


class Summing(TrainingEventSubscriber):
    """Learns the sum of the ids of the frames it was handed (its whole state)."""

    subscriber_name = "summing"

    def __init__(self):
        self.total = 0
        self.restored = []

    def on_candle_completion(self, event, inference_ref):
        if inference_ref is not None:
            self.total += inference_ref.inference_id

    def checkpoint_state(self):
        return str(self.total).encode()

    def restore_state(self, state):
        self.restored.append(state)
        self.total = int(state)


class Plain:
    """A duck-typed subscriber: no base class, no state methods."""

    def __init__(self):
        self.seen = 0

    def on_candle_completion(self, event, inference_ref):
        self.seen += 1


def _drive(coordinator, provider, ks):
    for k in ks:
        t = START_MS + k * M
        provider.publish_candle(candle(t - M))
        coordinator.register_inference_frame(frame(coordinator.new_inference_id(), t))


def _stored(store, run_id="r"):
    return dict(store.con.execute(
        "SELECT subscriber, state FROM subscriber_states WHERE run_id = ?", [run_id]).fetchall())


def test_state_commits_with_the_pairs_and_comes_back_at_subscription(store):
    provider = DataProvider(store)
    first = InferenceTrainingCoordinator(provider, store, run_id="r", persist_every=7)
    summing, plain = Summing(), Plain()
    first.subscribe_to_candle_completion(summing, SYMBOL, "1m")
    first.subscribe_to_candle_completion(plain, SYMBOL, "1m")
    _drive(first, provider, range(1, 30))
    # "crash": abandoned without close(); the store holds the last flush only
    resume_time = store.con.execute(
        "SELECT resume_time FROM coordinator_checkpoints WHERE run_id = 'r'").fetchone()[0]
    stored = _stored(store)
    assert set(stored) == {"summing"}  # Plain has no state, and still received its pairs
    assert plain.seen == 29
    delivered = store.con.execute(
        "SELECT sum(CAST(inference_id AS BIGINT)) FROM training_events"
        " WHERE run_id = 'r' AND subscriber = 'summing' AND inference_id <> ''").fetchone()[0]
    assert int(stored["summing"]) == delivered < summing.total  # the state is the committed pairs'
    assert store.con.execute("SELECT DISTINCT resume_time FROM subscriber_states").fetchall() == [
        (resume_time,)]

    provider2 = DataProvider(store)
    second = InferenceTrainingCoordinator(provider2, store, run_id="r", resume=True)
    again = Summing()
    second.subscribe_to_candle_completion(again, SYMBOL, "1m")
    second.subscribe_to_candle_completion(Plain(), SYMBOL, "1m")
    assert again.restored == [stored["summing"]] and again.total == delivered
    second.subscribe_to_pivot_events(again, SYMBOL, "1m", "L1L")  # once per subscriber, not per stream
    assert len(again.restored) == 1
    # the replay restarts at resume_time: the deliveries lost in the crash are made again
    next_k = (resume_time - START_MS) // M
    _drive(second, provider2, range(next_k, 30))
    assert again.total == summing.total
    second.close()
    assert int(_stored(store)["summing"]) == summing.total


def test_a_state_nobody_can_restore_is_an_error_and_stays_stored(store):
    provider = DataProvider(store)
    first = InferenceTrainingCoordinator(provider, store, run_id="r")
    first.subscribe_to_candle_completion(Summing(), SYMBOL, "1m")
    _drive(first, provider, range(1, 5))
    first.close()

    second = InferenceTrainingCoordinator(DataProvider(store), store, run_id="r", resume=True)
    plain = Plain()
    plain.subscriber_name = "summing"
    with pytest.raises(ConfigError, match="no restore_state"):
        second.subscribe_to_candle_completion(plain, SYMBOL, "1m")

    class Forgetful(TrainingEventSubscriber):  # states, but never restores
        subscriber_name = "summing"

        def checkpoint_state(self):
            return b"x"

    with pytest.raises(ConfigError, match="does not implement restore_state"):
        second.subscribe_to_candle_completion(Forgetful(), SYMBOL, "1m")
    fixed = Summing()
    second.subscribe_to_candle_completion(fixed, SYMBOL, "1m")
    assert fixed.total == 1 + 2 + 3  # frame 4 had no candle yet


def test_none_deletes_the_state_and_a_bad_state_rolls_the_flush_back(store):
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="r")
    summing = Summing()
    coordinator.subscribe_to_candle_completion(summing, SYMBOL, "1m")
    _drive(coordinator, provider, range(1, 4))
    coordinator.flush()
    assert _stored(store) == {"summing": b"3"}
    summing.checkpoint_state = lambda: None
    coordinator.flush()
    assert _stored(store) == {}
    summing.checkpoint_state = lambda: "text, not bytes"
    _drive(coordinator, provider, range(4, 6))
    with pytest.raises(ConfigTypeError, match="must return bytes"):
        coordinator.flush()
    frames = store.con.execute("SELECT count(*) FROM inference_frames").fetchone()[0]
    assert frames == 3  # the flush with the bad state committed nothing


def test_replace_deletes_the_states(store):
    provider = DataProvider(store)
    coordinator = InferenceTrainingCoordinator(provider, store, run_id="r")
    coordinator.subscribe_to_candle_completion(Summing(), SYMBOL, "1m")
    coordinator.flush()
    assert _stored(store)
    InferenceTrainingCoordinator(DataProvider(store), store, run_id="r", replace=True)
    assert _stored(store) == {}


def test_a_version_1_database_is_migrated_forward_with_its_rows(tmp_path):
    import duckdb

    from ettlib.store.schema import _MIGRATIONS, SCHEMA_VERSION, ensure_schema
    from ettlib.store import DuckDBStorage

    path = tmp_path / "v1.duckdb"
    con = duckdb.connect(str(path))  # what ettlib with schema version 1 wrote
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMP DEFAULT current_timestamp)")
    for statement in _MIGRATIONS[0]:
        con.execute(statement)
    con.execute("INSERT INTO schema_version (version) VALUES (1)")
    con.execute("INSERT INTO coordinator_checkpoints VALUES ('old', 5, 6, 7)")
    con.close()
    with DuckDBStorage(path) as storage:
        assert ensure_schema(storage.con) == SCHEMA_VERSION == 4
        assert storage.con.execute("SELECT * FROM coordinator_checkpoints").fetchall() == [("old", 5, 6, 7)]
        assert storage.con.execute("SELECT count(*) FROM subscriber_states").fetchone() == (0,)
