"""Sweeps on a real process pool and a real Dask LocalCluster; results merged into `runs`."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from ettlib.errors import ConfigError, SchemaError, StoreLockedError, UnknownNameError
from ettlib.store.results import compare_runs, merge_run_results, read_runs, run_results_path
from ettlib.store.schema import ensure_schema
from ettlib.cli import configure_sweep_parser
from ettlib.experiment.sweep import expand_grid, load_parameter_sets, run_sweep

NOTEBOOKS = Path(__file__).parent / "notebooks"
FIXTURE = NOTEBOOKS / "report_fixture.ipynb"


def _expected_run_id(params: dict) -> str:
    """The fixture's run id, from its defaults (label fixture, lr 0.5, 3 epochs)."""
    p = {"label": "fixture", "learning_rate": 0.5, "epochs": 3, **params}
    return f"{p['label']}-seed{p['seed']}-lr{p['learning_rate']}-ep{p['epochs']}"


def _main_db_with_candles(path: Path, n: int) -> Path:
    """A main database holding ``n`` candles: the sweep's read-only source and merge target."""
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


# ---------------------------------------------------------------- merging


def _per_run_file(path: Path, run_id: str, events: int) -> Path:
    con = duckdb.connect(str(path))
    ensure_schema(con)
    con.execute("INSERT INTO runs (run_id, status, config, metrics) VALUES (?, 'ok', ?, ?)",
                [run_id, json.dumps({"k": run_id}), json.dumps({"m": events})])
    con.executemany("INSERT INTO training_events (run_id, inference_id, event_kind, event_key, subscriber, "
                    "knowable_time, seq) VALUES (?, ?, 'candle', ?, 's', ?, ?)",
                    [[run_id, f"{run_id}-{i}", f"k{i}", i, i] for i in range(events)])
    con.close()
    return path


def test_merge_is_atomic_and_idempotent(tmp_path):
    main = tmp_path / "main.duckdb"
    good = [_per_run_file(tmp_path / f"r{i}.duckdb", f"r{i}", i + 1) for i in range(3)]
    not_duckdb = tmp_path / "broken.duckdb"
    not_duckdb.write_bytes(b"this is not a database")
    with pytest.raises(ConfigError, match="broken.duckdb"):
        merge_run_results(main, [good[0], not_duckdb, good[1]])
    con = duckdb.connect(str(main))
    assert con.execute("SELECT count(*) FROM runs").fetchone()[0] == 0  # rolled back
    assert con.execute("SELECT count(*) FROM training_events").fetchone()[0] == 0
    con.close()

    report = merge_run_results(main, good + [tmp_path / "absent.duckdb"])
    assert sorted(report.run_ids) == ["r0", "r1", "r2"]
    assert report.rows_by_table["training_events"] == 1 + 2 + 3
    assert report.missing_files == (tmp_path / "absent.duckdb",)
    again = merge_run_results(main, good)
    assert again.runs_added == 0 and sorted(again.skipped_run_ids) == ["r0", "r1", "r2"]
    con = duckdb.connect(str(main), read_only=True)
    per_run = dict(con.execute("SELECT run_id, count(*) FROM training_events GROUP BY run_id").fetchall())
    con.close()
    assert per_run == {"r0": 1, "r1": 2, "r2": 3}
    table = compare_runs(main, ["r2", "r0"])
    assert list(table["run_id"]) == ["r2", "r0"] and list(table["metrics.m"]) == [3, 1]


def test_merge_into_a_database_held_by_another_process_is_a_store_locked_error(tmp_path):
    main = tmp_path / "main.duckdb"
    run = _per_run_file(tmp_path / "r.duckdb", "r", 1)
    holder = subprocess.Popen(
        [sys.executable, "-c", "import duckdb, sys, time; c = duckdb.connect(sys.argv[1]); "
         "print('ready', flush=True); time.sleep(60)", str(main)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreLockedError, match="held by another process"):
            merge_run_results(main, [run])
    finally:
        holder.kill()
        holder.wait()
    assert merge_run_results(main, [run]).run_ids == ("r",)  # kept, mergeable once released


def test_merge_refuses_a_file_of_another_schema_version(tmp_path):
    other = tmp_path / "old.duckdb"
    con = duckdb.connect(str(other))
    con.execute("CREATE TABLE runs (run_id VARCHAR)")
    con.close()
    with pytest.raises(SchemaError, match="old.duckdb"):
        merge_run_results(tmp_path / "main.duckdb", [other])


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
    """Every run is in the main `runs` table with the metrics its parameters imply."""
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
    con = duckdb.connect(str(main_db), read_only=True)
    events = dict(con.execute("SELECT run_id, count(*) FROM training_events GROUP BY run_id").fetchall())
    con.close()
    assert events == {_expected_run_id(p): p.get("epochs", 3) for p in sets}
    assert result.comparison_path is not None and result.comparison_path.is_file()
    comparison = result.comparison_path.read_text()
    assert all(_expected_run_id(p) in comparison for p in sets)


def test_local_pool_sweep_isolates_a_failure_and_merges_every_run(tmp_path):
    main_db = _main_db_with_candles(tmp_path / "main.duckdb", 17)
    sets = expand_grid({"seed": [1, 2, 3], "epochs": [2]}) + [{"seed": 9, "fail": True}]
    sets = [{**p, "source_db": str(main_db)} for p in sets]
    result = run_sweep(FIXTURE, sets, executor="local", workers=2, output_dir=tmp_path / "sweep",
                       name="local", database=main_db)
    assert len(result.runs) == 4
    assert [f.index for f in result.failures] == [3]
    failure = result.failures[0]
    assert failure.ename == "RuntimeError" and "fixture asked to fail" in failure.evalue
    assert failure.html_path.is_file()  # its partial report is kept
    assert result.merge.runs_added == 4  # the failed run recorded itself too
    _check_sweep(result, [{k: v for k, v in p.items() if k != "source_db"} for p in sets], main_db, 17)
    assert "FAILED" in result.summary()
    assert run_results_path(tmp_path / "sweep" / "results", "local-000").is_file()


@pytest.fixture
def dask_cluster():
    distributed = pytest.importorskip("distributed")
    cluster = distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1,
                                       host="127.0.0.1", dashboard_address=None)
    try:
        yield cluster
    finally:
        cluster.close()


def test_dask_sweep_merges_every_run(tmp_path, dask_cluster):
    main_db = _main_db_with_candles(tmp_path / "main.duckdb", 5)
    sets = [{"seed": s, "epochs": 1 + s % 2} for s in range(4)]
    result = run_sweep(FIXTURE, [{**p, "source_db": str(main_db)} for p in sets], executor="dask",
                       scheduler_address=dask_cluster.scheduler_address, output_dir=tmp_path / "sweep",
                       name="dask", database=main_db, compare_notebook=NOTEBOOKS / "compare_fixture.ipynb")
    assert not result.failures, result.summary()
    assert result.merge.runs_added == 4
    _check_sweep(result, sets, main_db, 5)
    # The comparison is the compare notebook's report, run over exactly this sweep's runs.
    assert result.comparison_path == tmp_path / "sweep" / "comparison.html" and result.comparison_error is None
    executed = tmp_path / "sweep" / "comparison.ipynb"
    assert executed.is_file() and "Compare runs (fixture)" in result.comparison_path.read_text()


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


def test_a_sweep_of_real_experiments_lands_in_runs(tmp_path):
    """run_experiment in 4 kernels: candles read-only from the main file, results merged into it."""
    pytest.importorskip("ettlib.experiment.runner")
    from ettlib.store.demo import write_demo_data
    from ettlib.reports import experiment_config_names, register_notebook_validator, validate_experiment_parameters
    from ettlib.store import DuckDBStorage

    notebook = NOTEBOOKS / "experiment_mini.ipynb"
    register_notebook_validator(notebook.name, validate_experiment_parameters, typed_names=experiment_config_names)
    main_db = tmp_path / "ett.duckdb"
    with DuckDBStorage(main_db) as storage:
        write_demo_data(storage, days=1)
    out = tmp_path / "sweep"
    with pytest.raises(ConfigError, match="context_length"):  # ExperimentConfig's own rule, before any kernel
        run_sweep(notebook, [{"context_length": 0}], output_dir=out, database=main_db)
    assert not out.exists()

    sets = [{"seed": seed, "db_path": str(main_db), "end": "2024-01-01T03:00:00"} for seed in range(4)]
    result = run_sweep(notebook, sets, workers=2, output_dir=out, name="exp", database=main_db)
    assert not result.failures, result.summary()
    assert result.merge.runs_added == 4
    con = duckdb.connect(str(main_db), read_only=True)
    rows = con.execute("SELECT run_id, status, config FROM runs ORDER BY run_id").fetchall()
    assert len(rows) == 4 and {r[1] for r in rows} == {"completed"}
    assert sorted(json.loads(r[2])["seed"] for r in rows) == [0, 1, 2, 3]
    merged = {t: dict(con.execute(f"SELECT run_id, count(*) FROM {t} GROUP BY run_id").fetchall())
              for t in ("inference_frames", "training_events")}
    con.close()
    for run in result.runs:  # every row of every per-run file arrived, per table
        src = duckdb.connect(str(run.results_db), read_only=True)
        (run_id,) = src.execute("SELECT run_id FROM runs").fetchone()
        for table, counts in merged.items():
            expected = src.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            assert counts.get(run_id, 0) == expected
        src.close()
    assert sum(merged["inference_frames"].values()) > 0
