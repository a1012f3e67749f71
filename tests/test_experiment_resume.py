"""Exactly-once training across SIGKILL and Ctrl-C: a real experiment stopped, then resumed.

One run goes through without interruption.  The same experiment (same
config and seed, on the same candles) runs as ``ett run`` in a child process
that is killed with SIGKILL in the middle of a training batch, after some
commits (and so with pairs delivered, queued and learned since the last
one); then ``ett run --resume`` is interrupted the same way with SIGINT
(Ctrl-C: status ``'interrupted'``), and a last ``ett run --resume`` finishes
it.  The finished run must equal the
uninterrupted one: the same ``training_events`` rows (frames, events,
subscribers, sequence numbers, losses), the same frames, the same final
weights and optimizer state, the same metrics.

The kill point: the child wraps the coordinator's ``commit_flush`` to count
commits and the adapter's ``_train_pending`` to print ``HANG`` and wait
once enough commits are behind it (for SIGKILL, or until the Ctrl-C's
request to stop arrives: the batch then finishes and the run stops at the
next event) (a DuckDB file cannot be read while its
writer runs, so the test learns where the child is from its stdout, as in
``test_exactly_once.py``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest
import torch

import ettlib
from ettlib.store.demo import write_demo_data
from ettlib.store import DuckDBStorage
from ettlib.store.catalog import reading_runs
from ettlib.experiment.runner import ExperimentConfig, run_experiment

pytestmark = [pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL"),
              pytest.mark.usefixtures("one_torch_thread")]

PERSIST_EVERY = 150  # events: about 8 commits over the run

CHILD = textwrap.dedent(
    """
    import sys, time
    import ettlib.coordinator.coordinator as coordinator
    from ettlib import interrupts
    from ettlib.cli import main
    from ettlib.training import adapters

    kill_after = int(sys.argv[1])
    commits = 0
    real_commit = coordinator.commit_flush

    def commit(*args, **kwargs):
        global commits
        real_commit(*args, **kwargs)
        commits += 1

    real_train = adapters.TrainingAdapter._train_pending

    def train(self, batch):
        if commits >= kill_after:
            print("HANG", commits, len(self.pending), flush=True)
            # wait for the signal: SIGKILL ends the process here; a Ctrl-C only asks
            # the run to stop, and the batch under way finishes first
            for _ in range(60_000):
                if interrupts.requested():
                    break
                time.sleep(0.01)
        return real_train(self, batch)

    coordinator.commit_flush = commit
    adapters.TrainingAdapter._train_pending = train
    sys.exit(main(sys.argv[2:]))
    """
)


def _config(db, checkpoint) -> ExperimentConfig:
    return ExperimentConfig(
        db_path=str(db), context_length=16, batch_size=8, pivot_lookback=3,
        pivot_types=("L1L", "L1H", "L2L", "L2H"), seed=5, checkpoint=str(checkpoint),
        adapter_params={"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32, "device": "cpu"},
    )


def _cli_args(config: ExperimentConfig, run_id: str) -> list[str]:
    args = ["run", "--db", config.db_path, "--run-id", run_id, "--persist-every", str(PERSIST_EVERY),
            "--no-progress", "--json"]
    for key, value in config.to_dict().items():
        if key != "db_path":
            args += ["-p", f"{key}={json.dumps(value)}"]
    return args


def _resume_args(db, run_id: str) -> list[str]:
    return ["run", "--resume", run_id, "--db", str(db), "--persist-every", str(PERSIST_EVERY),
            "--no-progress", "--json"]


def _env() -> dict:
    # the children import the ettlib under test, whatever the working directory
    root = str(Path(ettlib.__file__).resolve().parents[1])
    return {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}


def _stopped(args: list[str], kill_after: int, sig: int = signal.SIGKILL) -> tuple[str, str]:
    """Run the child until its kill point, send it ``sig``; its HANG line and stderr."""
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(kill_after), *args], env=_env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if not line.startswith("HANG"):
        proc.kill()
        raise AssertionError(f"child did not reach the kill point: {line!r} {proc.stderr.read()}")
    os.kill(proc.pid, sig)
    _, err = proc.communicate(timeout=60)
    # SIGKILL: dead on the spot; SIGINT (Ctrl-C): `ett run` records it and exits with 130
    assert proc.returncode == (-signal.SIGKILL if sig == signal.SIGKILL else 130), err
    return line, err


def _rows(db, run_id):
    with reading_runs(db) as con:
        events = con.execute(
            "SELECT inference_id, event_kind, event_key, subscriber, knowable_time, seq, loss, metrics"
            " FROM training_events WHERE run_id = ? ORDER BY seq, subscriber, inference_id", [run_id]
        ).fetchall()
        frames = con.execute(
            "SELECT * EXCLUDE (run_id) FROM inference_frames WHERE run_id = ? ORDER BY inference_id",
            [run_id]).fetchall()
        status, metrics = con.execute(
            "SELECT status, metrics FROM runs WHERE run_id = ?", [run_id]).fetchone()
        checkpoint = con.execute(
            "SELECT resume_time FROM coordinator_checkpoints WHERE run_id = ?", [run_id]).fetchone()
        states = dict(con.execute(
            "SELECT subscriber, octet_length(state) FROM subscriber_states WHERE run_id = ?",
            [run_id]).fetchall())
    return events, frames, status, metrics and json.loads(metrics), checkpoint, states


@pytest.mark.timeout(180)
def test_an_experiment_killed_then_interrupted_and_resumed_equals_an_uninterrupted_run(tmp_path):
    db = tmp_path / "candles.duckdb"
    with DuckDBStorage(db) as storage:
        write_demo_data(storage, days=0.5, seed=3)

    clean = run_experiment(_config(db, tmp_path / "clean.pt"), run_id="clean",
                           persist_every=PERSIST_EVERY)
    events_clean, frames_clean, status, metrics_clean, *_ = _rows(db, "clean")
    assert status == "completed" and metrics_clean == json.loads(json.dumps(clean.metrics))

    config = _config(db, tmp_path / "resumed.pt")
    hang, _ = _stopped(_cli_args(config, "run"), kill_after=3)
    events, _, status, _, checkpoint, states = _rows(db, "run")
    # killed mid-batch after 3 commits: a checkpoint with both states, part of the pairs
    assert status == "running" and checkpoint is not None
    assert set(states) == {"transformer", "prequential"}
    assert 0 < len(events) < len(events_clean)
    assert int(hang.split()[1]) == 3

    # the resumed run interrupted with Ctrl-C: its last commit is kept as it is
    _, err = _stopped(_resume_args(db, "run"), kill_after=2, sig=signal.SIGINT)
    assert f"ett run --resume run --db {db}" in err
    events_2, _, status, _, checkpoint_2, _ = _rows(db, "run")
    assert status == "interrupted" and checkpoint_2[0] > checkpoint[0]
    assert len(events) < len(events_2) < len(events_clean)

    done = subprocess.run([sys.executable, "-m", "ettlib.cli", *_resume_args(db, "run")],
                          env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "resuming run" in done.stderr

    events, frames, status, metrics, _, _ = _rows(db, "run")
    assert status == "completed"
    # (a) every pair once, with the same losses, in the same order (seq)
    assert events == events_clean
    learned = [e for e in events if e[3] == "transformer" and e[7] is not None]
    assert len(learned) > 1000 and {e[1] for e in learned} == {"candle", "pivot"}
    assert frames == frames_clean
    # (c) the metrics of the whole run, restored prequential scores included
    assert metrics == metrics_clean == json.loads(done.stdout)
    assert metrics["train_steps"] > 100 and metrics["model.n_candles"] > 600
    # (b) the final model and optimizer, bit for bit
    a = torch.load(tmp_path / "clean.pt", weights_only=False)
    b = torch.load(tmp_path / "resumed.pt", weights_only=False)
    assert a["steps"] == b["steps"] == metrics["train_steps"]
    assert a["pairs_learned"] == b["pairs_learned"] == len(learned)
    assert a["model"].keys() == b["model"].keys()
    assert all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
    state_a, state_b = a["optimizer"]["state"], b["optimizer"]["state"]
    assert state_a.keys() == state_b.keys()
    assert all(torch.equal(state_a[i][k], state_b[i][k]) for i in state_a for k in state_a[i])


# -- what resume refuses, and the edges it handles (in process, a few seconds) ---------


@pytest.fixture
def small_db(tmp_path, make_candles):
    path = tmp_path / "small.duckdb"
    with DuckDBStorage(path) as storage:
        storage.ingest(make_candles(150, seed=2), "ETH/USDT", "1m")
    return path


def _small(db, **changes) -> ExperimentConfig:
    values = dict(db_path=str(db), adapter="river", baselines=("persistence",), context_length=16,
                  batch_size=4, pivot_types=("L1L", "L1H"), pivot_lookback=3, seed=1)
    return ExperimentConfig(**{**values, **changes})


def _run_file(db, run_id):
    """The run's own results file beside the store ``db``."""
    from ettlib.store.catalog import run_results_path, runs_folder

    return str(run_results_path(runs_folder(db), run_id))


def _set_status(db, run_id, status):
    with duckdb.connect(_run_file(db, run_id)) as con:
        con.execute("UPDATE runs SET status = ? WHERE run_id = ?", [status, run_id])


def test_a_run_killed_after_its_last_flush_resumes_to_the_same_result(small_db):
    config = _small(small_db)
    first = run_experiment(config, run_id="r", persist_every=40)
    _set_status(small_db, "r", "running")  # as if killed between the last flush and the manifest
    again = run_experiment(config, run_id="r", resume=True, persist_every=40)
    assert again.metrics == first.metrics and again.pair_losses == first.pair_losses
    assert again.counters["events"] == 0  # nothing left to replay
    assert _rows(small_db, "r")[2] == "completed"


def test_resume_refuses_what_it_cannot_continue_exactly(small_db, make_candles):
    from ettlib.errors import ConfigError

    config = _small(small_db)
    run_experiment(config, run_id="r", persist_every=40)
    with pytest.raises(ConfigError, match="needs the run_id"):
        run_experiment(config, resume=True)
    with pytest.raises(ConfigError, match="no run 'nope'"):
        run_experiment(config, run_id="nope", resume=True)
    with pytest.raises(ConfigError, match="already completed"):
        run_experiment(config, run_id="r", resume=True)
    _set_status(small_db, "r", "failed")
    with pytest.raises(ConfigError, match="status 'failed'"):
        run_experiment(config, run_id="r", resume=True)
    _set_status(small_db, "r", "running")
    with pytest.raises(ConfigError, match="seed: stored 1, given 2"):
        run_experiment(config.replace(seed=2), run_id="r", resume=True)
    # a state that does not restore: refused, and the run stays resumable
    with duckdb.connect(_run_file(small_db, "r")) as con:
        good = con.execute("SELECT state FROM subscriber_states WHERE subscriber = 'prequential'"
                           ).fetchone()[0]
        con.execute("UPDATE subscriber_states SET state = 'garbage'::BLOB WHERE subscriber = 'prequential'")
    with pytest.raises(ConfigError, match="not JSON"):
        run_experiment(config, run_id="r", resume=True)
    assert _rows(small_db, "r")[2] == "running"
    with duckdb.connect(_run_file(small_db, "r")) as con:
        con.execute("UPDATE subscriber_states SET state = ? WHERE subscriber = 'prequential'", [good])
    # only locations may change; the candles may not
    run_experiment(config.replace(checkpoint=str(small_db.parent / "m.pt")), run_id="r", resume=True)
    _set_status(small_db, "r", "running")
    with DuckDBStorage(small_db) as storage:
        storage.ingest(make_candles(151, seed=2), "ETH/USDT", "1m")
    with pytest.raises(ConfigError, match="changed"):
        run_experiment(config, run_id="r", resume=True)


def test_ett_run_resume_reads_the_stored_config_and_refuses_other_flags(small_db, capsys):
    from ettlib.cli import main

    args = ["run", "--db", str(small_db), "--adapter", "river", "--run-id", "cli", "--no-progress",
            "--json", "-p", "context_length=16", "-p", "baselines=[]", "-p", "batch_size=4"]
    assert main(args) == 0
    first = capsys.readouterr()
    assert "ett run: run cli: river on ETH/USDT 1m" in first.err
    _set_status(small_db, "cli", "running")
    assert main(["run", "--resume", "cli", "--db", str(small_db), "--seed", "9", "--no-progress"]) == 2
    assert "seed: stored 0, given 9" in capsys.readouterr().err
    assert main(["run", "--resume", "cli", "--db", str(small_db), "--no-progress", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(first.out)
