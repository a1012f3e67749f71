"""Ctrl-C at any instant: real SIGINTs, real DuckDB files, real processes.

The unit tests show the two ways ettlib takes a SIGINT (:mod:`ettlib.interrupts`):
held inside a transaction (which is then rolled back), and a request to stop
inside a replay, honoured between two events.

The matrix test runs ``ett run`` (a River model and a baseline, a commit every
15 events) in a child process and interrupts two runs with a real SIGINT at 23
points between them, each run resumed with ``ett run --resume`` after each
stop until the next: during the checks before anything is written, while the
session is built, at 9 candles spread over the replay (on the spot, or 4 ms
later, wherever the main thread is then), twice in a row, inside 8 of the
periodic saves (from a hook the save calls inside its transaction, on the spot
or a moment later while DuckDB runs the next statements), during two
subscriber reads of DuckDB outside any transaction, and while the adapter
learns its last pairs.  After each stop the committed state is checked: the
protocol holds (the pairs recorded are exactly the deliveries, and the
adapter's checkpointed state holds exactly the learned and queued ones) and
every committed row is the uninterrupted run's.  A fresh process then resumes
both runs -- one with a Ctrl-C inside its last save, too late to stop it -- and
each must equal, row for row, an uninterrupted run of the same config:
``training_events``, frames, status and metrics.
"""

from __future__ import annotations

import collections
import json
import os
import pickle
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import ettlib
from ettlib import interrupts
from ettlib.store import DuckDBStorage
from ettlib.store.catalog import reading_runs
from ettlib.store.db import COMMITTED, connect, transaction
from ettlib.store.demo import write_demo_data

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


def _sigint(delay: float = 0.0) -> threading.Timer | None:
    """Send this process a SIGINT now, or from another thread after ``delay`` seconds."""
    if delay:
        timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
        timer.start()
        return timer
    os.kill(os.getpid(), signal.SIGINT)
    return None


# -- the two ways, in this process ------------------------------------------------------


def test_a_stop_request_never_raises_inside_its_block_and_a_second_ctrl_c_forces():
    calls = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts.stop_requests(lambda: calls.append("woken")) as stop:
            _sigint()
            assert stop.requested and calls == ["woken"] and interrupts.requested()
            with pytest.raises(KeyboardInterrupt):  # a second Ctrl-C while one is pending: at once
                _sigint()
                time.sleep(1)
            interrupts.check()
    assert not interrupts.requested()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_an_inner_region_joins_the_outer_request_and_a_held_block_keeps_the_second_ctrl_c():
    woken = []
    with interrupts.stop_requests(raise_at_exit=False) as outer:
        _sigint()
        with interrupts.stop_requests(lambda: woken.append(1)) as inner:  # joins: told at once
            assert inner is outer and woken == [1]
            with pytest.raises(KeyboardInterrupt):
                with interrupts.held() as hold:
                    _sigint()  # the second: held to the end of the block
                    assert hold.interrupted
                    time.sleep(0.01)
                    done = True
            assert done
            with pytest.raises(KeyboardInterrupt):
                interrupts.check()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_request_nobody_checked_is_raised_when_the_region_ends():
    with pytest.raises(KeyboardInterrupt):
        with interrupts.stop_requests():
            _sigint()
    with interrupts.stop_requests(raise_at_exit=False):  # unless the code inside says it is done
        _sigint()


def test_another_threads_blocks_and_a_foreign_handler_are_left_alone():
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append("mine"))
    try:
        with interrupts.stop_requests() as stop, interrupts.held():
            _sigint()
        assert seen == ["mine"] and not stop.requested
    finally:
        signal.signal(signal.SIGINT, previous)
    out = []
    thread = threading.Thread(target=lambda: out.append(interrupts.requested()))
    thread.start()
    thread.join()
    assert out == [False]


def test_a_ctrl_c_inside_a_replay_transaction_does_not_cancel_it(tmp_path):
    """In a stop region the first Ctrl-C is a request: the save under way commits."""
    con = connect(tmp_path / "r.duckdb")
    con.execute("CREATE TABLE t (x INTEGER)")
    with interrupts.stop_requests(raise_at_exit=False) as stop:
        with transaction(con):
            con.execute("INSERT INTO t VALUES (1)")
            _sigint()
            con.execute("INSERT INTO t SELECT * FROM range(2, 1000)")
        assert stop.requested
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 999


def test_a_ctrl_c_during_the_commit_says_the_writes_were_committed(tmp_path):
    """The interrupt held while COMMIT runs: the data is in, and the KeyboardInterrupt says so."""
    con = connect(tmp_path / "c.duckdb")
    con.execute("CREATE TABLE t (x BIGINT)")
    outcomes = collections.Counter()
    for attempt in range(40):  # a timer that lands inside the (short) COMMIT of a big insert
        con.execute("DELETE FROM t")
        try:
            with transaction(con):
                con.execute("INSERT INTO t SELECT * FROM range(3000000)")
                timer = _sigint(0.0005 + attempt * 0.0002)
            outcomes["none"] += 1
        except KeyboardInterrupt as exc:
            outcomes["committed" if exc.args == (COMMITTED,) else "rolled back"] += 1
            count = con.execute("SELECT count(*) FROM t").fetchone()[0]
            assert count == (3_000_000 if exc.args == (COMMITTED,) else 0)
        timer.join()
        if outcomes["committed"]:
            break
    if not outcomes["committed"]:
        pytest.skip(f"no SIGINT landed inside a COMMIT in 40 tries ({dict(outcomes)})")


def test_a_session_stops_between_events_and_continues_with_the_next(tmp_path, make_candles):
    """A Ctrl-C during a subscriber's DuckDB read: no 'Query interrupted', a stop at the next event."""
    from ettlib.workbench import Workbench

    path = tmp_path / "s.duckdb"
    with DuckDBStorage(path) as store:
        store.ingest(make_candles(400), "ETH/USDT", "1m")
    with Workbench(path) as wb:
        reference = wb.session("ETH/USDT", timeframes=["5m"])
        expected = []
        reference.subscribe_candle_completion(lambda e: expected.append((e.timeframe, e.timestamp)),
                                              "ETH/USDT", "5m")
        reference.subscribe_candle_completion(lambda e: expected.append((e.timeframe, e.timestamp)),
                                              "ETH/USDT", "1m")
        reference.run()
        reference.close()

        session = wb.session("ETH/USDT", timeframes=["5m"])
        seen = []

        def slow_reader(event):
            seen.append((event.timeframe, event.timestamp))
            if len(seen) in (50, 200):  # a read outside any transaction, interrupted in the middle
                _sigint(0.02)
                wb.store.con.execute("SELECT sum(range) FROM range(300000000)").fetchall()

        session.subscribe_candle_completion(lambda e: seen.append((e.timeframe, e.timestamp)),
                                            "ETH/USDT", "5m")
        session.subscribe_candle_completion(slow_reader, "ETH/USDT", "1m")
        stops = 0
        while True:
            try:
                session.run()
                break
            except KeyboardInterrupt:
                stops += 1
                assert seen[-1][0] == "1m" and len(seen) in (50, 200)  # right after the read's event
        session.close()
    assert stops == 2
    assert seen == expected  # every event once, in order, across the two stops


# -- the matrix: ett run interrupted at 27 points, resumed after each ----------------------

T0 = 1_704_067_200_000  # 2024-01-01 00:00 UTC, the demo's first candle
END = "2024-01-01T02:00"
PERSIST_EVERY = 15
CONFIG = ["--adapter", "river", "-p", "context_length=16", "-p", "batch_size=4", "-p", "pivot_lookback=3",
          "-p", "seed=5", "-p", 'baselines=["persistence"]', "-p", f'end="{END}"',
          "-p", 'pivot_types=["L1L", "L1H", "L2L", "L2H"]', "-p", "torch_threads=1"]
COMMON = ["--persist-every", str(PERSIST_EVERY), "--no-progress", "--json"]

# Each chain is one run, interrupted at each point in turn and resumed (`ett run --resume`)
# in the same process until the next one; points are minutes of the replay (the candle
# that opens then, or the first save after it).  +d: the SIGINT comes 4 ms (a save: 0.5 ms)
# later, wherever the main thread is then.
CHAINS = {
    "a": ["setup", "candle 4", "flush 10", "candle 17 +d", "read 25", "flush 33 +d", "candle 43",
          "twice 52", "flush 62", "candle 72 +d", "flush 84 +d", "finish"],
    "b": ["build", "candle 8 +d", "flush 16 +d", "candle 27", "flush 37", "read 47", "flush 58 +d",
          "candle 69", "flush 80", "candle 95 +d", "candle 110"],
}
# Then a fresh process resumes both: chain a with a Ctrl-C inside its last save (too late
# to stop: the run completes), chain b without one ("none").
LAST = {"a": "last flush", "b": "none"}

CHILD = textwrap.dedent(
    """
    import json, os, shutil, signal, sys, threading, time
    import duckdb
    import ettlib.coordinator.coordinator as coordinator
    import ettlib.experiment.runner as runner
    import ettlib.session as sessions
    from ettlib.cli import main
    from ettlib.store.catalog import reading_runs
    from ettlib.training.adapters import TrainingAdapter

    clean_db, tests = sys.argv[1:3]
    plan, config, common = (json.loads(a) for a in sys.argv[3:])
    sys.path.insert(0, tests)
    from test_interrupts import T0, check_committed, rows

    point, timers, sent = {}, [], []

    def sigint(delay=0.0):
        if delay:
            timers.append(threading.Timer(delay, sigint))
            timers[-1].start()
            return
        sent.append(1)
        os.kill(os.getpid(), signal.SIGINT)

    def fire(kind, delay=None):  # once per point
        if point.get("kind") == kind and not point.get("fired"):
            point["fired"] = True
            sigint(point["delay"] if delay is None else delay)
            return True
        return False

    def before(original, check):
        def wrapped(*args, **kwargs):
            check(*args, **kwargs)
            return original(*args, **kwargs)
        return wrapped

    def on_candle(self, event, ref):
        if (event.timestamp - T0) // 60_000 != point.get("minute"):
            return
        if fire("candle"):
            return
        if fire("twice", 0):
            sigint(0.003)  # a second Ctrl-C while the first is pending
        elif fire("read", 0.02):  # lands inside this DuckDB read, outside any transaction
            self.source.duckdb_storage.con.execute("SELECT sum(range) FROM range(200000000)").fetchall()

    def commit(con, run_id, **kwargs):  # the hook runs inside the save's transaction
        due = point.get("kind") == "flush" and kwargs["checkpoint"].resume_time > T0 + 60_000 * point["minute"]
        if due or point.get("kind") == "last flush" and point.get("closing"):
            kwargs["hooks"] = [*kwargs.get("hooks", ()), lambda con: fire(point["kind"])]
        return real_commit(con, run_id, **kwargs)

    def closing(self, *, flush=True):
        point["closing"] = flush

    real_commit = coordinator.commit_flush
    coordinator.commit_flush = commit
    TrainingAdapter.on_candle_completion = before(TrainingAdapter.on_candle_completion, on_candle)
    TrainingAdapter.flush = before(TrainingAdapter.flush, lambda *a: fire("finish"))
    runner.data_fingerprint = before(runner.data_fingerprint, lambda *a: fire("setup"))
    sessions.Session.__init__ = before(sessions.Session.__init__, lambda *a, **k: fire("build"))
    coordinator.InferenceTrainingCoordinator.close = before(coordinator.InferenceTrainingCoordinator.close, closing)

    def run(db, run_id, points, started):
        for spec in points:
            started = interrupt(db, run_id, spec, started)

    if not os.path.exists(clean_db):  # the uninterrupted run, to compare with
        shutil.copy(plan[0][0], clean_db)
        assert main(["run", "--db", clean_db, "--run-id", "clean", *config, *common]) == 0
    with reading_runs(clean_db) as con:
        clean = rows(con, "clean")

    def interrupt(db, run_id, spec, started):
        kind, *rest = spec.split(" ") if spec != "last flush" else [spec]
        point.clear()
        point.update(kind=kind, minute=int(rest[0]) if rest and rest[0].isdigit() else None,
                     delay=(0.0005 if kind == "flush" else 0.004) if "+d" in rest else 0.0)
        sent.clear()
        argv = (["run", "--resume", run_id, "--db", db, *common] if started
                else ["run", "--db", db, "--run-id", run_id, *config, *common])
        late, rc = False, None
        try:
            rc = main(argv)
            for timer in timers:
                timer.join()
            time.sleep(0.01)
        except KeyboardInterrupt:
            late = True  # a delayed SIGINT that came after the run had ended
        timers.clear()
        with reading_runs(db) as con:
            status = rows(con, run_id)[2]
            try:
                check_committed(con, run_id, clean) if status == "interrupted" else None
                problem = None
            except AssertionError as exc:
                problem = f"{type(exc).__name__}: {exc}"
        print("POINT " + json.dumps({"run": run_id, "point": spec, "rc": rc, "sent": len(sent), "late": late,
                                     "status": status, "problem": problem}), flush=True)
        return started or status is not None

    for db, run_id, points, started in plan:
        run(db, run_id, points, started)
    """
)


def _env() -> dict:
    root = str(Path(ettlib.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _child(clean_db: Path, plan: list) -> tuple[list[dict], str]:
    """Run ``plan`` -- ``[db, run_id, points, started]`` each -- in a fresh process; its records."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, str(clean_db), str(Path(__file__).parent), json.dumps(plan),
         json.dumps(CONFIG), json.dumps(COMMON)],
        env=_env(), capture_output=True, text=True, timeout=400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    done = [json.loads(line[len("POINT "):]) for line in proc.stdout.splitlines() if line.startswith("POINT ")]
    assert [d["point"] for d in done] == [p for _, _, points, _ in plan for p in points], proc.stderr[-3000:]
    return done, proc.stderr


def rows(con, run_id: str):
    """A run's ``training_events`` and frames (without ``run_id``), status and metrics."""
    events = con.execute(
        "SELECT inference_id, event_kind, event_key, subscriber, knowable_time, seq, loss, metrics"
        " FROM training_events WHERE run_id = ? ORDER BY seq, subscriber, inference_id", [run_id]).fetchall()
    frames = con.execute("SELECT * EXCLUDE (run_id) FROM inference_frames WHERE run_id = ?"
                         " ORDER BY CAST(inference_id AS BIGINT)", [run_id]).fetchall()
    row = con.execute("SELECT status, metrics FROM runs WHERE run_id = ?", [run_id]).fetchone()
    status, metrics = row if row else (None, None)
    return events, frames, status, metrics and json.loads(metrics)


def check_committed(con, run_id: str, clean) -> None:
    """An interrupted run's committed state: the protocol holds, and it is the clean run's prefix.

    The pairs recorded are exactly the deliveries before the checkpoint (every
    ``seq`` below ``next_seq``, once), the frames every id below
    ``next_inference_id``; the adapter's checkpointed state accounts for each of
    its pairs -- learned (with the loss in its row) or queued -- and the
    inference loops' state for each frame.  And each committed row is the
    uninterrupted run's row (a queued pair's loss is not known yet).
    """
    checkpoint = con.execute("SELECT next_seq, next_inference_id FROM coordinator_checkpoints"
                             " WHERE run_id = ?", [run_id]).fetchone()
    if checkpoint is None:  # stopped before its first save: nothing of it is stored
        for table in ("training_events", "inference_frames", "subscriber_states", "dead_letters"):
            assert con.execute(f"SELECT count(*) FROM {table} WHERE run_id = ?", [run_id]).fetchone()[0] == 0
        return
    next_seq, next_id = checkpoint
    events, frames, _, _ = rows(con, run_id)
    assert con.execute("SELECT count(*) FROM dead_letters WHERE run_id = ?", [run_id]).fetchone()[0] == 0
    assert sorted({e[5] for e in events}) == list(range(next_seq))  # every delivery, nothing after
    frame_ids = [int(f[0]) for f in frames]
    assert frame_ids == list(range(1, next_id))  # every frame registered before the save
    assert {int(e[0]) for e in events if e[0]} <= set(frame_ids)
    states = dict(con.execute("SELECT subscriber, state FROM subscriber_states WHERE run_id = ?",
                              [run_id]).fetchall())
    assert set(states) == {"river", "prequential"}
    envelope = pickle.loads(bytes(states["river"]))  # the river adapter's state: pickles (no torch)
    adapter = pickle.loads(envelope["state"])
    mine = [e for e in events if e[3] == "river" and e[0]]
    assert sum(e[6] is not None for e in mine) == adapter["adapter"]["pairs_learned"]
    assert adapter["results"] == ((),) * 6  # none undrained: results_columns([])
    queued = collections.Counter(
        (str(ref.inference_id), kind, event.close_time if kind == "candle" else event.confirmed_at)
        for event, ref, kind in adapter["pending"])
    assert queued == collections.Counter((e[0], e[1], e[4]) for e in mine if e[6] is None)
    loops = json.loads(bytes(states["prequential"]))["loops"]
    assert sum(loop["frames_registered"] for loop in loops.values()) == len(frame_ids)
    # the uninterrupted run's prefix, row for row
    prefix = [e for e in clean[0] if e[5] < next_seq]
    assert [e[:6] for e in events] == [e[:6] for e in prefix]
    assert all(e[6:] == c[6:] for e, c in zip(events, prefix) if e[6] is not None)
    assert all(e[7] == c[7] for e, c in zip(events, prefix) if e[3] == "prequential")
    assert [f[:-2] for f in frames] == [f[:-2] for f in clean[1][:len(frames)]]  # less status, expired_at


@pytest.fixture(scope="module")
def candles_db(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("interrupts") / "candles.duckdb"
    with DuckDBStorage(path) as store:
        write_demo_data(store, days=0.25, seed=3)
    return path


def _expected(spec: str) -> tuple[int, str | None]:
    """(exit status, run status) after a Ctrl-C at ``spec``."""
    if spec == "setup":
        return 130, None  # before the manifest: nothing written
    if spec == "last flush":
        return 0, "completed"
    return 130, "interrupted"


@pytest.mark.timeout(600)
def test_ett_run_interrupted_at_24_points_resumes_identical(candles_db, tmp_path):
    started = time.perf_counter()
    clean_db = tmp_path / "clean.duckdb"
    dbs = {chain: tmp_path / f"chain-{chain}.duckdb" for chain in CHAINS}
    for db in dbs.values():
        shutil.copy(candles_db, db)
    # one process: the clean run, then each chain; another: the last resume of each
    chains, err = _child(clean_db, [[str(dbs[c]), f"run-{c}", CHAINS[c], False] for c in CHAINS])
    finals, err_final = _child(clean_db, [[str(dbs[c]), f"run-{c}", [LAST[c]], True] for c in CHAINS])
    assert "Traceback" not in err + err_final and "Query interrupted" not in err + err_final, err[-3000:]
    with reading_runs(clean_db) as con:
        clean = rows(con, "clean")
    assert clean[2] == "completed" and len(clean[0]) > 400

    for record in chains:
        rc, status = _expected(record["point"])
        assert record["sent"] >= 1 and not record["late"], record
        assert (record["rc"], record["status"], record["problem"]) == (rc, status, None), record
    for chain in CHAINS:
        interrupted = sum(r["status"] == "interrupted" for r in chains if r["run"] == f"run-{chain}")
        assert err.count(f"continue with: ett run --resume run-{chain} --db {dbs[chain]}") == interrupted
    tried = len(chains)
    for record in finals:
        assert (record["rc"], record["status"], record["late"]) == (0, "completed", False), record
        tried += record["sent"]  # a Ctrl-C inside the last save: the run completes
    identical = 0
    for chain, db in dbs.items():
        with reading_runs(db) as con:
            assert rows(con, f"run-{chain}") == clean, chain  # training_events, frames, status, metrics
        identical += sum(r["run"] == f"run-{chain}" for r in chains) + (LAST[chain] == "last flush")
    assert tried == identical == 24
    print(f"{tried} interrupt points, {identical} resumed identical, {time.perf_counter() - started:.1f} s")


def test_run_experiment_interrupted_in_process_as_in_a_notebook_resumes_identical(candles_db, tmp_path):
    """``run_experiment`` in this process (a notebook cell), a real SIGINT from a timer mid-run."""
    from ettlib.experiment.runner import ExperimentConfig, RunInterrupted, run_experiment

    db = tmp_path / "nb.duckdb"
    shutil.copy(candles_db, db)
    config = ExperimentConfig(db_path=str(db), adapter="river", baselines=("persistence",), context_length=16,
                              batch_size=4, pivot_lookback=3, seed=5, end=END, torch_threads=1)
    clean = run_experiment(config, run_id="clean", persist_every=PERSIST_EVERY, quiet=True)
    calls = []
    import ettlib.coordinator.coordinator as coordinator

    real = coordinator.commit_flush

    def third_save(*args, **kwargs):  # a timer started at the third save fires a moment later
        calls.append(1)
        if len(calls) == 3:
            _sigint(0.002)
        return real(*args, **kwargs)

    coordinator.commit_flush = third_save
    try:
        with pytest.raises(RunInterrupted) as info:
            run_experiment(config, run_id="cell", persist_every=PERSIST_EVERY, quiet=True)
    finally:
        coordinator.commit_flush = real
    assert isinstance(info.value, KeyboardInterrupt) and info.value.run_id == "cell"
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with reading_runs(db) as con:
        assert rows(con, "cell")[2] == "interrupted"
        check_committed(con, "cell", rows(con, "clean"))
    resumed = run_experiment(config, run_id="cell", resume=True, persist_every=PERSIST_EVERY, quiet=True)
    assert resumed.metrics == clean.metrics and resumed.pair_losses == clean.pair_losses
    with reading_runs(db) as con:
        assert rows(con, "cell") == rows(con, "clean")
