"""The ``ett`` command line, run as a real console script on a real DuckDB file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ettlib.store.catalog import reading_runs
from ettlib.cli import main

ETT = shutil.which("ett") or str(Path(sys.executable).with_name("ett"))


def run_ett(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([ETT, *args], cwd=cwd, capture_output=True, text=True, timeout=120)


def test_demo_info_pivots_replay_round_trip(tmp_path):
    db = tmp_path / "ett.duckdb"
    out = run_ett("data", "demo", "--db", str(db), "--days", "1", "--seed", "3", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "1440 added" in out.stdout

    again = run_ett("data", "demo", "--db", str(db), "--days", "1", "--seed", "3", cwd=tmp_path)
    assert "0 added, 1440 unchanged" in again.stdout  # idempotent

    info = run_ett("data", "info", "--db", str(db), cwd=tmp_path)
    assert info.returncode == 0 and "1440 candles" in info.stdout

    pivots = run_ett("data", "pivots", "--db", str(db), "--symbol", "ETH/USDT", cwd=tmp_path)
    assert pivots.returncode == 0, pivots.stderr
    with reading_runs(db) as con:
        stored = con.execute("SELECT count(*) FROM pivot_points").fetchone()[0]
    assert stored > 0 and f"{stored} new" in pivots.stdout

    replay = run_ett("replay", "--db", str(db), "ETH/USDT", "--timeframes", "5m", cwd=tmp_path)
    assert replay.returncode == 0, replay.stderr
    counts = dict(line.rsplit(maxsplit=1) for line in replay.stdout.splitlines())
    assert int(counts["candle 1m"]) == 1440
    assert int(counts["candle 5m"]) == 1440 // 5


def test_default_database_is_data_ett_duckdb_under_the_working_directory(tmp_path):
    out = run_ett("data", "demo", "--days", "1", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "data" / "ett.duckdb").exists()


def test_errors_are_one_line_with_exit_status_2(tmp_path, capsys):
    assert main(["data", "info", "--db", str(tmp_path / "missing.duckdb")]) == 2
    err = capsys.readouterr().err
    assert "missing.duckdb: no such database" in err and "Traceback" not in err
    assert not (tmp_path / "missing.duckdb").exists()


def test_bad_file_is_reported_with_row_and_column_and_changes_nothing(tmp_path, capsys):
    db = tmp_path / "ett.duckdb"
    assert main(["data", "demo", "--db", str(db), "--days", "1"]) == 0
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n0,1,2,0.5,1.5,1\n60000,1,0.9,0.5,1.5,1\n")
    assert main(["data", "ingest", str(bad), "--db", str(db), "--symbol", "X", "--timeframe", "1m"]) == 2
    err = capsys.readouterr().err
    assert "bad.csv" in err and "row 2" in err and "'high'" in err
    with reading_runs(db) as con:
        assert con.execute("SELECT count(*) FROM ohlcv_data WHERE symbol = 'X'").fetchone()[0] == 0


@pytest.mark.parametrize("argv", [["replay", "--start", "yesterday-ish", "X"]])
def test_bad_time_argument_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "ISO-8601" in capsys.readouterr().err


# -- usage errors and messages ----------------------------------------------------------


@pytest.mark.parametrize("argv", [["data", "demo", "--days", "0.5"], ["nope"], ["data", "ingest"],
                                  ["run", "--persist-every", "many"], ["data"]])
def test_a_usage_error_is_one_line_with_a_pointer_to_help(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("ett: error: ett") and err.count("\n") == 1, err
    assert err.rstrip().endswith("--help`)") and "usage:" not in err


def _commands(parser, prefix=()):
    import argparse

    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield prefix + (name,)
                yield from _commands(sub, prefix + (name,))


def test_every_ett_command_named_in_a_message_or_a_document_exists():
    import re

    from ettlib.cli import build_parser

    commands = set(_commands(build_parser()))
    root = Path(__file__).resolve().parents[1]
    sources = [*root.joinpath("ettlib").rglob("*.py"), root / "README.md", *root.joinpath("docs").glob("*.md")]
    named = {}
    for path in sources:
        for match in re.finditer(r"`ett((?: [a-z][a-z-]*)+)", path.read_text()):
            named.setdefault(tuple(match.group(1).split()), path.name)
    assert len(named) >= 5
    unknown = {" ".join(c): where for c, where in named.items()
               if not any(c[:k] in commands and (k == len(c) or c[:k + 1] not in commands)
                          for k in range(len(c), 0, -1))}
    assert not unknown, f"messages name commands that do not exist: {unknown}"
    assert ("data", "demo") in named  # the command a missing database points to


def test_no_such_database_points_to_ett_data_demo(tmp_path, capsys):
    from ettlib.experiment.runner import run_experiment

    assert main(["data", "info", "--db", str(tmp_path / "none.duckdb")]) == 2
    assert "`ett data demo`" in capsys.readouterr().err
    with pytest.raises(Exception, match="`ett data demo`"):
        run_experiment({"db_path": str(tmp_path / "none.duckdb")}, quiet=True)


def test_report_and_sweep_find_their_default_notebook_from_any_folder(tmp_path, monkeypatch):
    from ettlib.cli import build_parser

    monkeypatch.chdir(tmp_path)
    for argv in (["report"], ["sweep", "--grid", "g.yaml"]):
        notebook = build_parser().parse_args(argv).notebook
        assert notebook.is_absolute() and notebook.is_file() and notebook.name == "02_experiment.ipynb"


def test_a_strict_coordinator_error_is_wrapped_once(tmp_path, make_candles):
    from ettlib.errors import SubscriberError
    from ettlib.workbench import Workbench

    class Bad:
        subscriber_name = "bad"

        def on_candle_completion(self, event, ref):
            raise RuntimeError("broken model")

    with Workbench(tmp_path / "s.duckdb") as wb:
        wb.store.ingest(make_candles(30), "ETH/USDT", "1m")
        session = wb.session("ETH/USDT", strict=True)
        session.coordinator.subscribe_to_candle_completion(Bad(), "ETH/USDT", "1m")
        with pytest.raises(SubscriberError) as info:
            session.run()
        session.close(flush=False)
    message = str(info.value)
    assert message.startswith("subscriber 'bad' raised RuntimeError: broken model on ")
    assert "SubscriberError" not in message and isinstance(info.value.__cause__, RuntimeError)


# -- pivots of several n ----------------------------------------------------------------


def test_pivots_of_another_n_are_stored_beside_the_first(tmp_path, capsys):
    db = tmp_path / "ett.duckdb"
    assert main(["data", "demo", "--db", str(db), "--days", "1"]) == 0
    capsys.readouterr()
    counts = {}
    for n in (1, 2, 2):
        assert main(["data", "pivots", "--db", str(db), "--symbol", "ETH/USDT", "--n", str(n)]) == 0
        out = capsys.readouterr().out
        total, new = (int(w) for w in (out.split(": ")[1].split()[0], out.split(", ")[1].split()[0]))
        counts.setdefault(n, []).append((total, new))
    (n1,), (n2, again) = counts[1], counts[2]
    assert n1[0] == n1[1] > 0 and n2[0] == n2[1] > 0 and again == (n2[0], 0)  # both sets, then idempotent
    with reading_runs(db) as con:
        stored = dict(con.execute("SELECT n, count(*) FROM pivot_points GROUP BY n").fetchall())
    assert stored == {1: n1[0], 2: n2[0]}


# -- Ctrl-C during an ingest ------------------------------------------------------------

INGEST_CHILD = """
import json, os, signal, sys
import ettlib.store.indicator_table as indicators
import ettlib.store.storage as storage
from ettlib.cli import main

where = None
real_read, real_update = storage.read_candles_source, indicators.update_indicators

def read(*args, **kwargs):  # while the file is read and checked
    if where == "reading":
        os.kill(os.getpid(), signal.SIGINT)
    return real_read(*args, **kwargs)

def update(*args, **kwargs):  # inside the write transaction, after the rows went in
    if where == "writing":
        os.kill(os.getpid(), signal.SIGINT)
    return real_update(*args, **kwargs)

storage.read_candles_source, indicators.update_indicators = read, update
for where, argv in json.loads(sys.argv[1]).items():
    code = main(argv)
    print(f"{where} {code}", flush=True)
    print("--", file=sys.stderr, flush=True)
"""


def test_ctrl_c_during_an_ingest_writes_nothing_and_exits_130(tmp_path):
    import json
    import os

    import ettlib
    from ettlib.store import DuckDBStorage

    from conftest import make_candles

    db = tmp_path / "ett.duckdb"
    with DuckDBStorage(db) as store:
        store.ingest(make_candles(20), "ETH/USDT", "1m")
        before = store.con.execute("SELECT * FROM ohlcv_data ORDER BY timestamp").fetchall()
    csv = tmp_path / "more.csv"
    make_candles(300).to_csv(csv, index=False)
    argv = ["data", "ingest", str(csv), "--db", str(db), "--symbol", "ETH/USDT", "--timeframe", "1m"]
    root = str(Path(ettlib.__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", INGEST_CHILD, json.dumps({"reading": argv, "writing": argv})],
                          env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.split() == ["reading", "130", "writing", "130"], proc.stderr
    assert proc.stderr == "ett: interrupted: nothing was written\n--\n" * 2, proc.stderr
    with DuckDBStorage(db, read_only=True) as store:
        assert store.con.execute("SELECT * FROM ohlcv_data ORDER BY timestamp").fetchall() == before


# -- nothing written before validation --------------------------------------------------


@pytest.fixture(scope="module")
def demo_db(tmp_path_factory) -> Path:
    db = tmp_path_factory.mktemp("demo") / "ett.duckdb"
    assert main(["data", "demo", "--db", str(db), "--days", "1"]) == 0
    return db


def _runs(db) -> list:
    with reading_runs(db) as con:
        return con.execute("SELECT run_id, status FROM runs").fetchall()


@pytest.mark.parametrize("argv", [
    ["--symbol", "NOPE/X"],
    ["--symbol", "NOPE X"],
    ["-p", "context_length=-3"],
    ["-p", "no_such_field=1"],
    ["-p", 'adapter_params={"bogus": 1}'],
    ["--resume", "never-ran"],
    ["--start", "2030-01-01"],
    ["--results-db", "{results}", "--symbol", "NOPE/X"],
])
def test_a_run_with_invalid_parameters_or_symbols_writes_no_row(tmp_path, capsys, argv, demo_db):
    db = tmp_path / "ett.duckdb"
    shutil.copy(demo_db, db)
    results = tmp_path / "results.duckdb"
    argv = [a.replace("{results}", str(results)) for a in argv]
    assert main(["run", "--db", str(db), "--adapter", "river", "--no-progress", *argv]) == 2
    assert "ett: error:" in capsys.readouterr().err
    assert _runs(db) == [] and not results.exists()


def test_a_report_or_sweep_with_invalid_parameters_writes_nothing(tmp_path, capsys, demo_db):
    db = tmp_path / "ett.duckdb"
    shutil.copy(demo_db, db)
    before = db.read_bytes()
    out = tmp_path / "out"
    assert main(["report", "--db", str(db), "--output-dir", str(out), "-p", "context_length", "-3"]) == 2
    bad_symbol = "X" * 65  # longer than a symbol may be
    assert main(["report", "--db", str(db), "--output-dir", str(out), "-p", "symbols", f"[{bad_symbol}]"]) == 2
    grid = tmp_path / "grid.yaml"
    for text in ("context_length: [16, -3]\n", f"symbols: [[{bad_symbol}]]\n", "no_such_parameter: [1]\n"):
        grid.write_text(text)
        assert main(["sweep", "--grid", str(grid), "--db", str(db), "--output-dir", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("ett: error:") == 5 and "Traceback" not in err
    assert not out.exists() and _runs(db) == [] and db.read_bytes() == before
