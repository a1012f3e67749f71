"""Sweeps on a real process pool and a real Dask LocalCluster; each run's results file lands in the runs folder."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.store.catalog import read_runs, reading_runs, run_results_path, runs_folder
from ettlib.store.schema import ensure_schema
from ettlib.cli import configure_sweep_parser
from ettlib.experiment.grids import expand_grid, load_parameter_sets
from ettlib.experiment.sweep import run_sweep

NOTEBOOKS = Path(__file__).parent / "notebooks"
FIXTURE = NOTEBOOKS / "report_fixture.ipynb"


def _expected_run_id(params: dict) -> str:
    """The fixture's run id, from its defaults (label fixture, lr 0.5, 3 epochs)."""
    p = {"label": "fixture", "learning_rate": 0.5, "epochs": 3, **params}
    return f"{p['label']}-seed{p['seed']}-lr{p['learning_rate']}-ep{p['epochs']}"


def _main_db_with_candles(path: Path, n: int) -> Path:
    """A store holding ``n`` candles: the sweep's read-only source; its runs folder gets the results."""
    con = duckdb.connect(str(path))
    ensure_schema(con)
    frame = pd.DataFrame({
        "symbol": "TEST/USDT", "timeframe": "1m", "timestamp": [60_000 * i for i in range(n)],
        "open": 1.0, "high": 2.0, "low": 0.5, "close": 1.5, "volume": 10.0,
    })
    con.execute("INSERT INTO ohlcv_data (symbol, timeframe, timestamp, open, high, low, close, volume) "
                "SELECT * FROM frame")
    con.close()
    return path


# ---------------------------------------------------------------- grids and files


def test_expand_grid_matches_nested_loops():
    grid = {"a": [1, 2, 3], "b": ["x", "y"], "c": [True]}
    expected = []
    for a in grid["a"]:
        for b in grid["b"]:
            for c in grid["c"]:
                expected.append({"a": a, "b": b, "c": c})
    assert expand_grid(grid) == expected
    assert expand_grid({}) == [{}]
    assert expand_grid({"cols": [["open", "close"]], "k": 2}) == [{"cols": ["open", "close"], "k": 2}]
    with pytest.raises(ConfigError, match="no values"):
        expand_grid({"a": []})
    with pytest.raises(ConfigError):
        expand_grid({"not a name": [1]})


def test_load_parameter_sets_forms(tmp_path):
    (tmp_path / "grid.yaml").write_text("seed: [1, 2]\nepochs: 1\n")
    assert load_parameter_sets(tmp_path / "grid.yaml") == [{"seed": 1, "epochs": 1}, {"seed": 2, "epochs": 1}]
    (tmp_path / "list.json").write_text(json.dumps([{"seed": 1}, {"seed": 5, "fail": True}]))
    assert load_parameter_sets(tmp_path / "list.json") == [{"seed": 1}, {"seed": 5, "fail": True}]
    (tmp_path / "both.yaml").write_text("base: {epochs: 1}\ngrid: {seed: [1, 2]}\nruns: [{seed: 9, epochs: 2}]\n")
    assert load_parameter_sets(tmp_path / "both.yaml") == [
        {"epochs": 1, "seed": 1}, {"epochs": 1, "seed": 2}, {"epochs": 2, "seed": 9}]
    (tmp_path / "bad.yaml").write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="parameter set 0"):
        load_parameter_sets(tmp_path / "bad.yaml")


# ---------------------------------------------------------------- validation before any run


def test_a_bad_parameter_set_stops_the_sweep_before_it_starts(tmp_path):
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match=r"parameter set 1 .*did you mean 'seed'"):
        run_sweep(FIXTURE, [{"seed": 1}, {"sed": 2}], output_dir=out)
    assert not out.exists()
    with pytest.raises(ConfigError, match="set by the sweep"):
        run_sweep(FIXTURE, [{"results_db": "x.duckdb"}], output_dir=out)
    with pytest.raises(UnknownNameError, match="did you mean 'dask'"):
        run_sweep(FIXTURE, [{}], executor="dusk", output_dir=out)
    with pytest.raises(ConfigError, match="scheduler address"):
        run_sweep(FIXTURE, [{}], executor="dask", output_dir=out)
    with pytest.raises(ConfigError, match="cannot reach the Dask scheduler"):
        run_sweep(FIXTURE, [{}], executor="dask", scheduler_address="tcp://127.0.0.1:1",
                  dask_timeout_s=1, output_dir=out)
    assert not out.exists()


# ---------------------------------------------------------------- real sweeps


def _check_sweep(result, sets, main_db, source_rows):
    """Every run is in the store's runs (its runs folder) with the metrics its parameters imply."""
    assert [r.name for r in result.runs] == [f"{result.name}-{i:03d}" for i in range(len(sets))]
    assert len({r.html_path for r in result.runs}) == len(sets)
    assert all(r.html_path is not None and r.html_path.is_file() for r in result.runs)
    assert all(int(r.worker.rsplit(":", 1)[1]) != os.getpid() for r in result.runs if r.worker != "?")
    runs = read_runs(main_db).set_index("run_id")
    for params in sets:
        run_id = _expected_run_id(params)
        assert run_id in runs.index, f"{run_id} missing from runs: {list(runs.index)}"
        row = runs.loc[run_id]
        metrics = json.loads(row["metrics"])
        lr = params.get("learning_rate", 0.5)
        epochs = params.get("epochs", 3)
        assert metrics["score"] == pytest.approx(params["seed"] + lr * epochs)
        assert metrics["source_rows"] == source_rows
        assert row["status"] == ("failed" if params.get("fail") else "ok")
    with reading_runs(main_db) as con:
        events = dict(con.execute("SELECT run_id, count(*) FROM training_events GROUP BY run_id").fetchall())
    assert events == {_expected_run_id(p): p.get("epochs", 3) for p in sets}
    assert result.comparison_path is not None and result.comparison_path.is_file()
    comparison = result.comparison_path.read_text()
    assert all(_expected_run_id(p) in comparison for p in sets)


def test_local_pool_sweep_isolates_a_failure_and_lands_every_run(tmp_path):
    main_db = _main_db_with_candles(tmp_path / "main.duckdb", 17)
    sets = expand_grid({"seed": [1, 2, 3], "epochs": [2]}) + [{"seed": 9, "fail": True}]
    sets = [{**p, "source_db": str(main_db)} for p in sets]
    result = run_sweep(FIXTURE, sets, executor="local", workers=2, output_dir=tmp_path / "sweep",
                       name="local", database=main_db, compare_notebook=NOTEBOOKS / "compare_fixture.ipynb")
    assert len(result.runs) == 4
    assert [f.index for f in result.failures] == [3]
    failure = result.failures[0]
    assert failure.ename == "RuntimeError" and "fixture asked to fail" in failure.evalue
    assert failure.html_path.is_file()  # its partial report is kept
    assert len(result.run_ids) == 4  # the failed run recorded itself too
    _check_sweep(result, [{k: v for k, v in p.items() if k != "source_db"} for p in sets], main_db, 17)
    assert "FAILED" in result.summary()
    assert result.results_dir == runs_folder(main_db)
    assert result.runs[0].results_db == run_results_path(runs_folder(main_db), "local-000")
    assert not list(runs_folder(main_db).glob("*.landing"))


@pytest.fixture
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_cli_sweep_arguments(tmp_path):
    parser = argparse.ArgumentParser()
    configure_sweep_parser(parser, default_db=Path("data/ett.duckdb"))
    grid = tmp_path / "g.yaml"
    grid.write_text("seed: [1, 2]\n")
    args = parser.parse_args([str(FIXTURE), "--grid", str(grid), "--executor", "dask",
                              "--scheduler", "tcp://127.0.0.1:1", "--workers", "3"])
    assert (args.executor, args.scheduler_address, args.workers, args.db) == (
        "dask", "tcp://127.0.0.1:1", 3, Path("data/ett.duckdb"))
    assert load_parameter_sets(args.grid) == [{"seed": 1}, {"seed": 2}]
    with pytest.raises(SystemExit):
        parser.parse_args(["--grid", str(grid), "--executor", "ray"])


def _runs_by_seed(where) -> dict:
    """Per seed: the run's status, metrics and delivered pairs (run ids and times of day left out)."""
    out = {}
    with reading_runs(where) as con:
        for run_id, status, config, metrics in con.execute(
                "SELECT run_id, status, config, metrics FROM runs").fetchall():
            pairs = con.execute(
                "SELECT event_kind, event_key, subscriber, knowable_time, seq, loss, metrics FROM training_events "
                "WHERE run_id = ? ORDER BY subscriber, seq", [run_id]).fetchall()
            frames = con.execute("SELECT count(*) FROM inference_frames WHERE run_id = ?", [run_id]).fetchone()[0]
            kept = {k: v for k, v in json.loads(metrics).items() if k not in ("wall_s", "cache_misses")}
            out[json.loads(config)["seed"]] = (status, kept, pairs, frames)
    return out


def test_a_dask_sweep_without_a_shared_disk_equals_a_local_sweep(tmp_path, dask_cluster):
    """run_experiment in kernels: locally on the store file, then on Dask workers in their own folders,
    reading the candles from a Parquet lake, with the client's store moved away."""
    import shutil

    from ettlib.reports import experiment_config_names, register_notebook_validator, validate_experiment_parameters
    from ettlib.store import DuckDBStorage
    from ettlib.store.demo import write_demo_data
    from ettlib.store.lake import export_parquet

    notebook = NOTEBOOKS / "experiment_mini.ipynb"
    register_notebook_validator(notebook.name, validate_experiment_parameters, typed_names=experiment_config_names)
    store = tmp_path / "ett.duckdb"
    with DuckDBStorage(store) as storage:
        write_demo_data(storage, days=1)
    lake = tmp_path / "lake"
    with DuckDBStorage(store, read_only=True) as storage:
        export_parquet(storage, lake)
    with pytest.raises(ConfigError, match="context_length"):  # ExperimentConfig's own rule, before any kernel
        run_sweep(notebook, [{"context_length": 0}], output_dir=tmp_path / "never", database=store)
    assert not (tmp_path / "never").exists()

    sets = [{"seed": seed, "end": "2024-01-01T02:00:00"} for seed in range(2)]
    local = run_sweep(notebook, [{**p, "db_path": str(store)} for p in sets], workers=2,
                      output_dir=tmp_path / "local", name="exp", database=store)
    assert not local.failures, local.summary()
    assert len(local.run_ids) == 2 and local.results_dir == runs_folder(store)
    expected = _runs_by_seed(store)

    away = tmp_path / "elsewhere"
    away.mkdir()
    shutil.move(store, away / store.name)  # no worker can reach the client's store now
    shutil.move(runs_folder(store), away / runs_folder(store).name)
    results = tmp_path / "client-results"
    remote = run_sweep(notebook, [{**p, "db_path": str(lake)} for p in sets], executor="dask",
                       scheduler_address=dask_cluster.scheduler_address, output_dir=tmp_path / "remote",
                       name="exp", database=lake, results_dir=results,
                       compare_notebook=NOTEBOOKS / "compare_fixture.ipynb")
    assert not remote.failures, remote.summary()
    assert all(int(r.worker.rsplit(":", 1)[1]) != os.getpid() for r in remote.runs)
    assert sorted(p.name for p in results.glob("*.duckdb")) == ["exp-000.duckdb", "exp-001.duckdb"]
    assert all(r.html_path.is_file() and r.html_path.parent == tmp_path / "remote" for r in remote.runs)
    got = _runs_by_seed(results)
    assert got.keys() == expected.keys() == {0, 1}
    for seed in got:
        assert got[seed] == expected[seed], seed
        assert got[seed][0] == "completed" and got[seed][3] > 0 and got[seed][2]
    # The comparison is the compare notebook's report, run over exactly this sweep's runs.
    assert remote.comparison_error is None and remote.comparison_path == tmp_path / "remote" / "comparison.html"
    comparison = remote.comparison_path.read_text()
    assert "Compare runs (fixture)" in comparison and all(r in comparison for r in remote.run_ids)
