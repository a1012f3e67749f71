"""Schema: fresh creation, the migration of an OHLCV-only table on a real file, versions."""

from __future__ import annotations

import duckdb
import numpy as np
import pytest

from conftest import make_candles
from ettlib.errors import SchemaError
from ettlib.store.schema import (
    CANDLE_COLUMNS,
    INDICATOR_COLUMNS,
    OHLCV_COLUMNS,
    SCHEMA_VERSION,
    ensure_schema,
    schema_version,
)
from ettlib.store import DuckDBStorage

TABLES = {"ohlcv_data", "pivot_points", "inference_frames", "training_events",
          "dead_letters", "runs", "schema_version"}

# The tables as a pre-ettlib application created them.
SEED_OHLCV_DDL = """CREATE TABLE ohlcv_data (
    symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL, timestamp BIGINT NOT NULL,
    open DOUBLE NOT NULL, high DOUBLE NOT NULL, low DOUBLE NOT NULL, close DOUBLE NOT NULL,
    volume DOUBLE NOT NULL{pk})"""
SEED_PIVOTS_DDL = """CREATE TABLE IF NOT EXISTS pivot_points (
    id INTEGER PRIMARY KEY, symbol VARCHAR NOT NULL, timeframe VARCHAR NOT NULL,
    timestamp BIGINT NOT NULL, price DOUBLE NOT NULL, pivot_type VARCHAR NOT NULL,
    level INTEGER NOT NULL, strength DOUBLE NOT NULL,
    UNIQUE(symbol, timeframe, timestamp, pivot_type))"""


def columns_of(con, table):
    return [r[0] for r in con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? "
        "ORDER BY ordinal_position", [table]).fetchall()]


def make_seed_file(path, *, primary_key=True, with_pivots=True, rows=30):
    candles = make_candles(rows)
    con = duckdb.connect(str(path))
    con.execute(SEED_OHLCV_DDL.format(
        pk=", PRIMARY KEY (symbol, timeframe, timestamp)" if primary_key else ""))
    con.register("c", candles)
    con.execute("INSERT INTO ohlcv_data SELECT 'ETH/USDT', '1m', timestamp, open, high, low,"
                " close, volume FROM c")
    if with_pivots:
        con.execute(SEED_PIVOTS_DDL)
        con.execute("INSERT INTO pivot_points VALUES (7, 'ETH/USDT', '1m', ?, 101.5, 'L2H', 2, 0.5)",
                    [int(candles.timestamp[5])])
    con.close()
    return candles


def test_fresh_database_has_every_table_and_version(tmp_path):
    con = duckdb.connect(str(tmp_path / "f.duckdb"))
    assert schema_version(con) == 0
    assert ensure_schema(con) == SCHEMA_VERSION
    tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
    assert TABLES <= tables
    assert columns_of(con, "ohlcv_data") == ["symbol", "timeframe", "timestamp", *CANDLE_COLUMNS]
    assert "confirmed_at" in columns_of(con, "pivot_points")
    assert ensure_schema(con) == SCHEMA_VERSION  # idempotent
    assert con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION


def test_primary_key_refuses_duplicate_candles(tmp_path):
    con = duckdb.connect()
    ensure_schema(con)
    row = "INSERT INTO ohlcv_data (symbol, timeframe, timestamp, open, high, low, close, volume) VALUES ('X', '1m', 0, 1, 1, 1, 1, 1)"
    con.execute(row)
    with pytest.raises(duckdb.ConstraintException):
        con.execute(row)


@pytest.mark.parametrize("primary_key", [True, False])
def test_seed_shaped_file_is_migrated_in_place_keeping_rows(tmp_path, primary_key):
    path = tmp_path / "seed.duckdb"
    candles = make_seed_file(path, primary_key=primary_key)
    with DuckDBStorage(path) as store:
        con = store.con
        assert schema_version(con) == SCHEMA_VERSION
        assert columns_of(con, "ohlcv_data") == ["symbol", "timeframe", "timestamp", *CANDLE_COLUMNS]
        kept = store.read_candles("ETH/USDT", "1m", columns=OHLCV_COLUMNS)
        np.testing.assert_array_equal(kept.timestamps, candles.timestamp.to_numpy())
        np.testing.assert_array_equal(kept.values, candles[list(OHLCV_COLUMNS)].to_numpy())
        # Indicators are NULL until computed ...
        assert np.isnan(store.read_candles("ETH/USDT", "1m", columns=INDICATOR_COLUMNS).values).all()
        store.update_indicators("ETH/USDT", "1m")
        sma = store.read_candles("ETH/USDT", "1m", columns=("sma_10",)).column("sma_10")
        np.testing.assert_allclose(sma[9:], candles.close.rolling(10).mean()[9:], rtol=1e-9)
        # ... the pivot table gained confirmed_at, kept its row, and numbers new ones.
        assert "confirmed_at" in columns_of(con, "pivot_points")
        con.execute("INSERT INTO pivot_points (symbol, timeframe, timestamp, price, pivot_type,"
                    " level, strength) VALUES ('ETH/USDT', '1m', 0, 1.0, 'L1L', 1, 0.1)")
        assert con.execute("SELECT id FROM pivot_points ORDER BY id").fetchall() == [(7,), (8,)]
        # Ingest works on the migrated table: same rows add nothing, new rows add.
        report = store.ingest(make_candles(40), "ETH/USDT", "1m")
        assert (report.rows_unchanged, report.rows_added) == (30, 10)
    with DuckDBStorage(path) as again:  # reopening is a no-op
        assert again.count() == 40


def test_seed_file_without_pivot_table(tmp_path):
    path = tmp_path / "seed.duckdb"
    make_seed_file(path, with_pivots=False)
    with DuckDBStorage(path) as store:
        assert store.count() == 30
        assert "confirmed_at" in columns_of(store.con, "pivot_points")


def test_unmigratable_seed_table_is_refused_and_left_alone(tmp_path):
    path = tmp_path / "odd.duckdb"
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE ohlcv_data (symbol VARCHAR, timeframe VARCHAR, timestamp TIMESTAMP,"
                " open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE, volume DOUBLE)")
    con.execute("INSERT INTO ohlcv_data VALUES ('X', '1m', TIMESTAMP '2024-01-01', 1, 1, 1, 1, 1)")
    con.close()
    with pytest.raises(SchemaError, match="timestamp"):
        DuckDBStorage(path)
    con = duckdb.connect(str(path))
    assert len(columns_of(con, "ohlcv_data")) == 8  # no column added
    assert schema_version(con) == 0
    assert con.execute("SELECT count(*) FROM ohlcv_data").fetchone()[0] == 1
    con.close()


def test_seed_table_missing_a_column_is_refused(tmp_path):
    con = duckdb.connect()
    con.execute("CREATE TABLE ohlcv_data (symbol VARCHAR, timeframe VARCHAR, timestamp BIGINT,"
                " open DOUBLE, high DOUBLE, low DOUBLE, close DOUBLE)")
    with pytest.raises(SchemaError, match="volume"):
        ensure_schema(con)
    assert columns_of(con, "ohlcv_data")[-1] == "close"


def test_newer_schema_is_refused_naming_the_file_which_is_left_untouched(tmp_path, capsys):
    from ettlib.cli import main

    path = tmp_path / "new.duckdb"
    DuckDBStorage(path).close()
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO schema_version (version) VALUES (?)", [SCHEMA_VERSION + 1])
    con.close()
    before = path.read_bytes()
    for read_only in (False, True):
        with pytest.raises(SchemaError, match=f"{path} has schema version {SCHEMA_VERSION + 1}, "
                                              "written by a newer ettlib"):
            DuckDBStorage(path, read_only=read_only)
    assert main(["data", "info", "--db", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"ett: error: {path} has schema version") and err.count("\n") == 1
    assert "upgrade ettlib" in err
    assert path.read_bytes() == before and not path.with_name("new.duckdb.wal").exists()


def _v2_file(path):
    """A database as ettlib wrote it at schema version 2: pivots without n, two of them."""
    from ettlib.store.schema import _MIGRATIONS

    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY,"
                " applied_at TIMESTAMP DEFAULT current_timestamp)")
    for version, statements in enumerate(_MIGRATIONS[:2], 1):
        for statement in statements:
            con.execute(statement)
        con.execute("INSERT INTO schema_version (version) VALUES (?)", [version])
    con.execute("INSERT INTO pivot_points (symbol, timeframe, timestamp, price, pivot_type, level,"
                " strength, confirmed_at) VALUES ('ETH/USDT', '1m', 60000, 2.0, 'L1H', 1, 0.5, 180000),"
                " ('ETH/USDT', '1m', 120000, 0.5, 'L1L', 1, 0.25, 240000)")
    con.execute("INSERT INTO runs (run_id, status, config) VALUES ('old', 'completed', '{}')")
    con.close()


def test_a_v2_file_with_pivots_migrates_to_pivots_keyed_by_n(tmp_path):
    from ettlib.replay.pivots import detect_pivots
    from ettlib.store.pivot_points import store_pivots

    path = tmp_path / "v2.duckdb"
    _v2_file(path)
    with duckdb.connect(str(path), read_only=True) as con:
        assert schema_version(con) == 2 and "n" not in columns_of(con, "pivot_points")
        old = con.execute("SELECT id, timestamp, pivot_type FROM pivot_points ORDER BY id").fetchall()
    with DuckDBStorage(path) as store:
        con = store.con
        assert schema_version(con) == SCHEMA_VERSION == 4
        assert con.execute("SELECT id, n, timestamp, pivot_type, confirmed_at FROM pivot_points ORDER BY id"
                           ).fetchall() == [(i, 1, t, p, c) for (i, t, p), c in zip(old, (180000, 240000))]
        assert con.execute("SELECT run_id, git_dirty, environment FROM runs").fetchall() == [("old", None, None)]
        # the same pivots detected with n = 2 are their own rows; with n = 1 they are there already
        table = detect_pivots([0, 60_000, 120_000, 180_000, 240_000], [1.0, 2.0, 1.5, 1.0, 3.0],
                              [0.9, 0.5, 1.2, 0.8, 2.0], "1m", n=1)
        assert store_pivots(con, "ETH/USDT", "1m", table, n=2) == len(table) > 0
        assert store_pivots(con, "ETH/USDT", "1m", table, n=2) == 0
        ids = [r[0] for r in con.execute("SELECT id FROM pivot_points ORDER BY id").fetchall()]
        assert ids[:2] == [i for i, _, _ in old] and len(set(ids)) == len(ids)  # the id sequence goes on
        assert con.execute("SELECT n, count(*) FROM pivot_points GROUP BY n ORDER BY n").fetchall() == \
            [(1, 2), (2, len(table))]


def test_read_only_open_of_an_older_file_migrates_it_first(tmp_path):
    path = tmp_path / "seed.duckdb"
    candles = make_seed_file(path)
    with DuckDBStorage(path, read_only=True) as store:  # e.g. a notebook after an upgrade
        assert store.read_only and schema_version(store.con) == SCHEMA_VERSION
        assert store.count() == len(candles)
        assert store.con.execute("SELECT count(*) FROM pivot_points").fetchone()[0] == 1


def test_an_older_file_held_open_elsewhere_is_not_migrated_by_a_read_only_open(tmp_path):
    import subprocess
    import sys

    path = tmp_path / "seed.duckdb"
    make_seed_file(path)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys; con = duckdb.connect(sys.argv[1], read_only=True);"
         " print('ready', flush=True); sys.stdin.read()", str(path)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(SchemaError, match="cannot be migrated now"):
            DuckDBStorage(path, read_only=True)
    finally:
        holder.kill()
        holder.wait()
    con = duckdb.connect(str(path), read_only=True)
    assert schema_version(con) == 0  # untouched
    con.close()


def test_store_creates_parent_folders_and_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with DuckDBStorage() as store:
        assert store.path == "data/ett.duckdb" and not store.read_only
    assert (tmp_path / "data" / "ett.duckdb").is_file()
    with DuckDBStorage(tmp_path / "a" / "b" / "x.duckdb") as nested:
        assert nested.count() == 0
