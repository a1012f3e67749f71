"""A Parquet lake replays exactly the events of the DuckDB file it was exported from.

Folders and object storage (a real S3-compatible server: moto's server mode,
started on 127.0.0.1 by the test and stopped after) are read through DuckDB,
object storage through fsspec (s3fs) registered on the connection.
"""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from conftest import START_MS, make_candles
from ettlib.cli import main
from ettlib.errors import ConfigError
from ettlib.replay.events import pivot_types_up_to
from ettlib.store import DuckDBStorage
from ettlib.store.lake import ParquetLake, export_parquet
from ettlib.workbench import Workbench

M = 60_000
SYMBOLS = ("ETH/USDT", "BTC USDT=%")  # what a path cannot hold, escaped by the partition names


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("lake") / "ett.duckdb"
    with DuckDBStorage(path) as store:
        for k, symbol in enumerate(SYMBOLS):
            frame = make_candles(4_000 + 500 * k, seed=k)
            frame = frame.drop(index=[7, 8, 9, 2_004, 3_333])  # gaps, a bucket's closing candle among them
            store.ingest(frame, symbol, "1m")
        store.ingest(make_candles(300, start=START_MS, timeframe="1h", seed=9), "ETH/USDT", "1h")
    return path


def _events(wb, symbols=SYMBOLS):
    session = wb.session(list(symbols), timeframes=["5m", "1h"], pivot_levels=3)
    got = []
    for s in session.symbols:
        for tf in session.timeframes:
            session.subscribe_candle_completion(got.append, s, tf)
            session.subscribe_pivot_events(got.append, s, tf, pivot_types_up_to(3))
            session.on_inference_step(s, tf, got.append)
    session.run()
    session.close()
    return got


def test_a_folder_lake_replays_the_files_events(db, tmp_path):
    with DuckDBStorage(db, read_only=True) as store:
        report = export_parquet(store, tmp_path / "lake")
        assert report.rows == store.count() and set(report.symbols) == set(SYMBOLS)
    files = sorted(p.relative_to(tmp_path / "lake").as_posix() for p in (tmp_path / "lake").rglob("*.parquet"))
    assert "symbol=ETH%2FUSDT/timeframe=1m/month=2024-01/data_0.parquet" in files
    lake = ParquetLake(tmp_path / "lake")
    with DuckDBStorage(db, read_only=True) as store:
        assert lake.symbols() == store.symbols() and lake.timeframes("ETH/USDT") == ["1m", "1h"]
        a = store.read_window("ETH/USDT", "1m", START_MS + 100 * M, START_MS + 900 * M)
        b = lake.read_window("ETH/USDT", "1m", START_MS + 100 * M, START_MS + 900 * M)
        assert (a.timestamps == b.timestamps).all() and pd.DataFrame(a.values).equals(pd.DataFrame(b.values))
    with Workbench(db, read_only=True) as from_file, Workbench(tmp_path / "lake") as from_lake:
        expected = _events(from_file)
        assert len(expected) > 10_000
        assert _events(from_lake) == expected
    with pytest.raises(ConfigError, match="read-only"):
        lake.ingest(make_candles(3), "ETH/USDT", "1m")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="is a folder, not a DuckDB database file, and holds no Parquet lake"):
        ParquetLake(tmp_path / "empty")  # a folder without a lake's files


def test_the_command_line_exports_and_replays_a_lake(db, tmp_path, capsys):
    lake = tmp_path / "cli-lake"
    assert main(["data", "export", "--db", str(db), "--parquet", str(lake), "--symbol", "ETH/USDT"]) == 0
    assert "ETH/USDT -> " in capsys.readouterr().out
    assert main(["replay", "ETH/USDT", "--db", str(db)]) == 0
    from_file = capsys.readouterr().out
    assert main(["replay", "ETH/USDT", "--db", str(lake)]) == 0
    assert capsys.readouterr().out == from_file and re.search(r"candle 1m\s+3995", from_file)
    assert main(["data", "info", "--db", str(lake)]) == 0
    assert "ETH/USDT" in capsys.readouterr().out


@pytest.fixture
def s3(monkeypatch):
    """A real S3-compatible server (moto) on 127.0.0.1, with its endpoint in the environment."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for name, value in (("AWS_ACCESS_KEY_ID", "testing"), ("AWS_SECRET_ACCESS_KEY", "testing"),
                        ("AWS_DEFAULT_REGION", "us-east-1"), ("AWS_ENDPOINT_URL", endpoint)):
        monkeypatch.setenv(name, value)
    import s3fs

    s3fs.S3FileSystem.clear_instance_cache()
    fs = s3fs.S3FileSystem(client_kwargs={"endpoint_url": endpoint})
    fs.mkdir("candles")
    yield endpoint
    s3fs.S3FileSystem.clear_instance_cache()
    server.stop()


def test_an_s3_lake_replays_the_files_events(db, s3):
    with DuckDBStorage(db, read_only=True) as store:
        export_parquet(store, "s3://candles/eth", symbols=["ETH/USDT"])
    with Workbench(db, read_only=True) as from_file, Workbench("s3://candles/eth") as from_lake:
        assert _events(from_lake, ["ETH/USDT"]) == _events(from_file, ["ETH/USDT"])


def test_an_experiment_on_a_lake_equals_one_on_the_file(db, tmp_path):
    from ettlib.experiment import ExperimentConfig, run_experiment

    lake = tmp_path / "exp-lake"
    with DuckDBStorage(db, read_only=True) as store:
        export_parquet(store, lake, symbols=["ETH/USDT"])
    config = ExperimentConfig(adapter="river", baselines=("persistence",), context_length=16,
                              end=START_MS + 2_000 * M, symbols=("ETH/USDT",))
    on_file = run_experiment(config.replace(db_path=str(db), results_db=str(tmp_path / "a.duckdb")), quiet=True)
    on_lake = run_experiment(config.replace(db_path=str(lake)), quiet=True)  # results beside the lake
    assert on_file.metrics == on_lake.metrics and on_file.data_fingerprint == on_lake.data_fingerprint
    assert Path(on_lake.results_db).parent == tmp_path / "exp-lake.runs"
    with pytest.raises(ConfigError, match="not a local file or folder.*give results_db"):
        run_experiment(config.replace(db_path="s3://bucket/lake"), quiet=True)
