"""The ``ett`` command line, run as a real console script on a real DuckDB file."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

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
    with duckdb.connect(str(db), read_only=True) as con:
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
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ohlcv_data WHERE symbol = 'X'").fetchone()[0] == 0


@pytest.mark.parametrize("argv", [["replay", "--start", "yesterday-ish", "X"]])
def test_bad_time_argument_is_a_usage_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    assert "ISO-8601" in capsys.readouterr().err
