"""Exactly once across SIGKILL: a real replay in a subprocess, killed, resumed.

The child process replays candles from a DuckDB file in a
:class:`~ettlib.session.Session` (results in the same file); a model registers a frame at every
inference step and a recording subscriber persists every pair it receives
(with a checksum of the frame's window) through the coordinator's
``checkpoint(con)`` hook.  One copy of the database is replayed without
interruption; the other is killed with SIGKILL in the middle of a subscriber
call -- twice -- and resumed from the store.  Both must end with the same
recorded pairs, the same ``training_events`` and the same frames: none lost,
none repeated.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import sys
import textwrap

import duckdb
import pytest

from ettlib.store import DuckDBStorage

from conftest import START_MS, make_candles

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"), pytest.mark.slow]

M = 60_000
N = 2_000

CHILD = textwrap.dedent(
    """
    import sys, time
    import numpy as np, pyarrow as pa
    from ettlib.coordinator import TrainingEventSubscriber
    from ettlib.coordinator.frames import InferenceFrameReference
    from ettlib.coordinator.normalization import compute_norm_params
    from ettlib.workbench import Workbench

    db, run_id, resume, hang_after, start, end = sys.argv[1:]
    hang_after, start, end = int(hang_after), int(start), int(end)
    SYMBOL, M = "ETH/USDT", 60_000
    wb = Workbench(db, read_only=False)  # the session records into the store itself
    session = wb.session(SYMBOL, start, end, pivot_levels=2, warmup=40, run_id=run_id, results=wb.store,
                         resume=resume == "1", persist_every=150, pivot_lookback=8, retention=20)
    coordinator = session.coordinator

    class Recording(TrainingEventSubscriber):
        subscriber_name = "recording"

        def __init__(self):
            self.buffer, self.calls = [], 0

        def _record(self, kind, key, t, refs):
            self.calls += 1
            if self.calls == hang_after:
                print("HANG", t, flush=True)
                time.sleep(600)
            for ref in refs or [None]:
                checksum, iid = "", ""
                if ref is not None:
                    iid = str(ref.inference_id)
                    data = coordinator.get_inference_data(ref)
                    checksum = "none" if data is None else repr(float(data.values.astype(np.float64).sum()))
                self.buffer.append((run_id, kind, key, iid, checksum))

        def on_candle_completion(self, event, inference_ref):
            self._record("candle", f"{event.timestamp}", event.close_time,
                         [] if inference_ref is None else [inference_ref])

        def on_pivot_event(self, event, inference_refs):
            self._record("pivot", f"{event.pivot_type}@{event.timestamp}", event.confirmed_at, inference_refs)

        def checkpoint(self, con):
            con.execute("CREATE TABLE IF NOT EXISTS recorded (run_id VARCHAR, kind VARCHAR,"
                        " event_key VARCHAR, inference_id VARCHAR, checksum VARCHAR)")
            if self.buffer:
                rows = pa.table({c: list(v) for c, v in zip(
                    ("run_id", "kind", "event_key", "inference_id", "checksum"), zip(*self.buffer))})
                con.register("recorded_buffer", rows)
                con.execute("INSERT INTO recorded SELECT * FROM recorded_buffer")
                con.unregister("recorded_buffer")
            self.buffer = []

    recording = Recording()
    coordinator.subscribe_to_candle_completion(recording, SYMBOL, "1m")
    coordinator.subscribe_to_pivot_events(recording, SYMBOL, "1m", ["L1L", "L1H", "L2L", "L2H"])

    def on_step(step):
        t = step.timestamp
        window = session.window(SYMBOL, "1m", t - 30 * M, t - M, ("close", "volume"))
        if window is None or len(window) < 2:
            return
        ref = InferenceFrameReference.for_prediction(
            coordinator.new_inference_id(), SYMBOL, "1m", t, context=30,
            norm_params=compute_norm_params(window),
            predicted_action=("BUY", "SELL", "HOLD")[t // M % 3], predicted_candle=(float(t % 7),),
            confidence=0.5)
        coordinator.register_inference_frame(ref)

    session.on_inference_step(SYMBOL, "1m", on_step)
    session.run()
    session.close()
    print("DONE", coordinator.counters(), flush=True)
    """
)


def _child(tmp_path, db, run_id, resume, hang_after):
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    args = [sys.executable, str(script), str(db), run_id, "1" if resume else "0", str(hang_after),
            str(START_MS), str(START_MS + (N - 1) * M)]
    return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _kill_when_hung(proc) -> int:
    line = proc.stdout.readline()
    if not line.startswith("HANG"):
        proc.kill()
        raise AssertionError(f"child did not reach the kill point: {line!r} {proc.stderr.read()}")
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=30) == -signal.SIGKILL
    return int(line.split()[1])


def _finish(proc) -> str:
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "DONE" in out
    return out


def _state(db):
    con = duckdb.connect(str(db), read_only=True)
    try:
        recorded = con.execute("SELECT kind, event_key, inference_id, checksum FROM recorded").fetchall()
        events = con.execute(
            "SELECT inference_id, event_kind, event_key, subscriber, knowable_time, seq FROM training_events"
        ).fetchall()
        frames = con.execute(
            "SELECT inference_id, prediction_timestamp, target_timestamp, data_range_start, data_range_end,"
            " price_offset, price_scale, predicted_action, predicted_candle FROM inference_frames").fetchall()
        checkpoint = con.execute("SELECT resume_time FROM coordinator_checkpoints").fetchall()
    finally:
        con.close()
    return recorded, events, frames, checkpoint


@pytest.mark.timeout(240)
def test_sigkill_mid_replay_then_resume_delivers_every_pair_exactly_once(tmp_path):
    base = tmp_path / "base.duckdb"
    with DuckDBStorage(base) as storage:
        storage.ingest(make_candles(N), "ETH/USDT", "1m")
    killed, clean = tmp_path / "killed.duckdb", tmp_path / "clean.duckdb"
    shutil.copy(base, killed)
    shutil.copy(base, clean)

    uninterrupted = _child(tmp_path, clean, "run", False, 0)
    _finish(uninterrupted)

    first = _child(tmp_path, killed, "run", False, 1_500)
    hung_at = _kill_when_hung(first)
    recorded_1, events_1, _, checkpoint_1 = _state(killed)
    # the kill landed after some checkpoints and before the deliveries in flight were committed
    assert checkpoint_1 and START_MS < checkpoint_1[0][0] <= hung_at
    assert recorded_1 and len(events_1) > 0

    second = _child(tmp_path, killed, "run", True, 900)
    hung_again = _kill_when_hung(second)
    assert hung_again > hung_at
    third = _child(tmp_path, killed, "run", True, 0)
    _finish(third)

    recorded_a, events_a, frames_a, _ = _state(killed)
    recorded_b, events_b, frames_b, _ = _state(clean)
    # none repeated ...
    assert len(recorded_a) == len(set(recorded_a))
    assert not [k for k, n in collections.Counter(e[:4] for e in events_a).items() if n > 1]
    # ... none lost: everything equals the uninterrupted run's
    assert sorted(recorded_a) == sorted(recorded_b)
    assert sorted(events_a) == sorted(events_b)
    assert sorted(frames_a) == sorted(frames_b)
    assert len(frames_b) > N * 0.9
    kinds = collections.Counter(r[0] for r in recorded_b)
    assert kinds["candle"] >= N - 1 and kinds["pivot"] > 100
    assert sum(1 for r in recorded_b if r[2] and r[3] not in ("", "none")) > N  # real windows read
