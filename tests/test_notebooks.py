"""The three notebooks, executed for real (papermill, a real ``python3`` kernel).

Each notebook runs top to bottom with small parameters on a demo database
in a temporary folder; any cell error fails the test (papermill raises
``PapermillExecutionError``).  The outputs are then checked against what
the database says, read independently with DuckDB.  02 and 03 share one
database (module fixture): 03 compares the run 02 made and a second run.

Also here: unit tests of the helpers the notebooks call
(:mod:`ettlib.notebooks.tools`), and the check that the experiment
notebook's ``parameters`` cell mirrors ``ExperimentConfig``.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import re
from pathlib import Path

import duckdb
import nbformat
import numpy as np
import pytest

from ettlib.errors import ConfigError
from ettlib.notebooks.tools import (
    NOTEBOOK_ONLY_PARAMETERS,
    differing_configs,
    direction_hits,
    ensure_demo_data,
    provide_demo_data,
    pair_metrics,
    replay_range,
    resolve_db_path,
    select_runs,
)
from ettlib.store import DuckDBStorage
from ettlib.store.catalog import reading_runs
from ettlib.experiment.config import ExperimentConfig

pytestmark = pytest.mark.timeout(300)

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
EXPLORE = NOTEBOOKS / "01_explore_events.ipynb"
EXPERIMENT = NOTEBOOKS / "02_experiment.ipynb"
COMPARE = NOTEBOOKS / "03_compare_runs.ipynb"

MINUTE = 60_000
T0 = 1_704_067_200_000  # 2024-01-01, ettlib.store.demo's default start
TINY_MODEL = {"d_model": 16, "n_heads": 2, "n_layers": 1, "d_ff": 32}


def execute(notebook: Path, out_dir: Path, parameters: dict) -> nbformat.NotebookNode:
    """Run ``notebook`` with ``parameters`` in a real kernel; the executed notebook."""
    import papermill

    out = out_dir / notebook.name
    papermill.execute_notebook(
        str(notebook), str(out), parameters=parameters, kernel_name="python3",
        progress_bar=False, cwd=str(out_dir), start_timeout=120,
    )
    return nbformat.read(str(out), as_version=4)


def outputs(nb) -> list[dict]:
    return [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]


def texts(nb) -> str:
    """Every stream and text/plain output, joined."""
    parts = []
    for o in outputs(nb):
        parts.append(o.get("text", ""))
        parts.append(o.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def htmls(nb) -> list[str]:
    return [o["data"]["text/html"] for o in outputs(nb) if "text/html" in o.get("data", {})]


def pngs(nb) -> list[str]:
    return [o["data"]["image/png"] for o in outputs(nb) if "image/png" in o.get("data", {})]


# -------------------------------------------------------------- 01: explore


def test_explore_notebook_runs_and_steps(tmp_path):
    db = tmp_path / "explore.duckdb"  # the notebook writes demo candles only at the default database
    demo_days, steps = 0.5, 25
    ensure_demo_data(db, days=demo_days)
    nb = execute(EXPLORE, tmp_path, {
        "db_path": str(db), "days": 0.25, "demo_days": demo_days, "context_length": 16,
        "timeframes": ["1m", "5m"], "window_candles": 40, "demo_steps": steps,
    })
    # the store is unchanged: demo_days of 1m candles and no run rows
    with duckdb.connect(str(db), read_only=True) as con:
        n, first = con.execute("SELECT count(*), min(timestamp) FROM ohlcv_data WHERE timeframe = '1m'").fetchone()
        assert con.execute("SELECT count(*) FROM inference_frames").fetchone()[0] == 0  # scratch store only
    assert n == int(demo_days * 1440)
    # the replay starts once a 16-candle window and a 40-candle chart of history exist
    text = texts(nb)
    assert f"replaying ETH/USDT {first + 40 * MINUTE} .." in text
    # the stepper is shown as a widget
    views = [o for o in outputs(nb) if "application/vnd.jupyter.widget-view+json" in o.get("data", {})]
    assert len(views) == 1
    # it stepped: events consumed, frames registered and matched, a redraw timed
    consumed, frames = map(int, re.search(r"(\d+) events consumed, (\d+) frames registered", text).groups())
    assert consumed >= steps and frames > 0
    registered = int(re.search(r"registered=(\d+)", text).group(1))
    matched = int(re.search(r"matched=(\d+)", text).group(1))
    assert registered == frames and matched > 0  # candle and pivot matches (a pivot may match several)
    assert re.search(r"median redraw: \d+\.\d ms per step", text)


# ----------------------------------------------------------- 02 and 03


@pytest.fixture(scope="module")
def experiment_run(tmp_path_factory):
    """02 executed once on a fresh demo database, plus a second run made from Python."""
    from ettlib.experiment.runner import run_experiment

    folder = tmp_path_factory.mktemp("experiment")
    db = folder / "ett.duckdb"
    ensure_demo_data(db, days=0.25)  # the notebook writes demo candles only at the default database
    nb = execute(EXPERIMENT, folder, {
        "db_path": str(db), "context_length": 16, "adapter_params": TINY_MODEL,
        "batch_size": 16, "run_name": "nb-a", "bootstrap_reps": 100,
    })
    second = run_experiment(ExperimentConfig(
        db_path=str(db), adapter="river", baselines=("persistence",), context_length=16,
        seed=1, run_name="nb-b", end=T0 + 180 * MINUTE,
    ))
    return db, nb, second


def test_experiment_notebook_reports_the_run(experiment_run):
    from html import unescape

    from ettlib.notebooks.experiment import evaluate_run

    db, nb, _ = experiment_run
    with reading_runs(db) as con:
        rows = con.execute("SELECT run_id, status, data_fingerprint, metrics, config FROM runs").fetchall()
    runs = {json.loads(r[4])["run_name"]: r for r in rows}
    run_id, status, fingerprint, metrics, config = runs["nb-a"]
    metrics, config = json.loads(metrics), json.loads(config)
    assert status == "completed"
    assert config["context_length"] == 16 and config["adapter_params"] == TINY_MODEL
    assert config["db_path"] == str(db)

    tables = [unescape(t) for t in htmls(nb)]
    # the verdict: the sentences the stored predictions give, with the demo banner above them
    evaluation = evaluate_run(db, run_id, timeframe="1m", reps=100, seed=0)
    box = next(t for t in tables if "ett-verdict" in t)
    assert evaluation.verdict.text in box and "SYNTHETIC DEMO DATA" in box
    # every metric against its fair baselines, with intervals and the skill
    from ettlib.notebooks.report_tables import predictor_label

    metric_html = next(t for t in tables if predictor_label("last candle") in t)
    for row in ("persistence", "chance", "majority so far"):
        assert predictor_label(row) in metric_html
    assert "95% CI" in metric_html and "the next close is the last close" in metric_html
    shown_mae = evaluation.comparison.metrics["mae_close"].values["model"].estimate
    assert shown_mae == pytest.approx(metrics["model.mae_close"], rel=1e-9)  # the same predictions, scored alike
    assert f"{shown_mae:#.4g}" in metric_html
    # the manifest: run id, fingerprint, commit and versions
    manifest = next(t for t in tables if "data fingerprint" in t)
    for needle in (run_id, fingerprint, "git commit", "git tree", "python version", "torch version"):
        assert needle in manifest
    # predictions, learning curves, rolling accuracy, pivot confusion, equity: five PNG figures
    assert len(pngs(nb)) == 5
    assert f"Run `{run_id}` **completed**" in "\n".join(
        o["data"].get("text/markdown", "") for o in outputs(nb) if "data" in o)


def test_prediction_table_is_what_the_store_says(experiment_run):
    """Each scored prediction's candles are the stored ones; the model's errors are the run's MAE."""
    from ettlib.notebooks.experiment import pivot_table, prediction_table

    db, _, second = experiment_run
    table = prediction_table(db, second.run_id)
    with duckdb.connect(str(db), read_only=True) as con:
        candles = {t: (o, c) for t, o, c in con.execute(
            "SELECT timestamp, open, close FROM ohlcv_data WHERE timeframe = '1m'").fetchall()}
    assert len(table) == second.scores["model"]["n_candles"] > 100
    target = table["target_time"].to_numpy()
    assert np.array_equal(table["actual_close"], [candles[t][1] for t in target])
    assert np.array_equal(table["actual_open"], [candles[t][0] for t in target])
    assert np.array_equal(table["last_close"], [candles[t - MINUTE][1] for t in target])
    assert np.array_equal(table["last_open"], [candles[t - MINUTE][0] for t in target])
    assert np.abs(table["pred_close.model"] - table["actual_close"]).mean() == pytest.approx(
        second.scores["model"]["mae_close"], rel=1e-12)
    assert np.allclose(table["pred_close.persistence"], table["last_close"], rtol=1e-6)
    assert set(table["action.model"]) <= {"BUY", "SELL", "HOLD"}
    pivots = pivot_table(db, second.run_id)
    assert len(pivots) == second.scores["model"]["n_pivot_pairs"]
    implied = np.where(pivots["implied_action"] == "BUY", 0, 1)
    predicted = pivots["action.model"].map({"BUY": 0, "SELL": 1, "HOLD": 2}).to_numpy()
    confusion = np.zeros((2, 3), dtype=int)
    np.add.at(confusion, (implied, predicted), 1)
    assert confusion.tolist() == second.scores["model"]["pivot_confusion"]


def test_papermill_called_directly_checks_every_parameter_before_writing(tmp_path):
    """No ett in between: a string for a list and a misspelt name fail the run, and nothing is written."""
    import subprocess
    import sys

    import papermill
    from papermill.exceptions import PapermillExecutionError

    db = tmp_path / "never.duckdb"
    with pytest.raises(PapermillExecutionError, match="symbols must be a list of strings"):
        papermill.execute_notebook(str(EXPERIMENT), str(tmp_path / "a.ipynb"), kernel_name="python3",
                                   parameters={"symbols": "ETH/USDT", "db_path": str(db)},
                                   progress_bar=False, cwd=str(tmp_path), start_timeout=120)
    done = subprocess.run([sys.executable, "-m", "papermill", str(EXPERIMENT), str(tmp_path / "b.ipynb"),
                           "-p", "sedd", "3", "-p", "db_path", str(db), "--cwd", str(tmp_path)],
                          capture_output=True, text=True, timeout=240)
    assert done.returncode != 0
    assert "unknown parameter of the experiment notebook 'sedd'" in done.stderr
    assert "did you mean 'seed'" in done.stderr
    assert not db.exists() and sorted(p.name for p in tmp_path.iterdir()) == ["a.ipynb", "b.ipynb"]


def test_demo_candles_are_written_only_at_the_default_database(tmp_path):
    from ettlib.notebooks.experiment import declared_parameters, prepare_report
    from ettlib.notebooks.provenance import default_db_path, is_default_db

    db = tmp_path / "elsewhere.duckdb"
    namespace = {**declared_parameters(), "db_path": str(db)}
    with pytest.raises(ConfigError, match="only at the default database"):
        prepare_report(namespace, set())
    assert not db.exists()
    assert is_default_db(default_db_path()) and not is_default_db(db)
    assert default_db_path() == Path(__file__).resolve().parents[1] / "data" / "ett.duckdb"
    ensure_demo_data(db, days=0.1)
    report = prepare_report(namespace, set())  # there now: used, nothing written
    assert report.demo_written == () and report.db_path == db
    with pytest.raises(ConfigError, match="'fee_bps' expects float"):
        prepare_report({**namespace, "fee_bps": "5"}, set())
    with pytest.raises(ConfigError, match="did you mean 'bootstrap_reps'"):
        prepare_report({**namespace, "bootstrap_rep": 10}, set())


def test_parameters_cell_has_a_type_and_help_for_every_parameter():
    import papermill

    from ettlib.notebooks.experiment import PARAMETER_HELP

    declared = papermill.inspect_notebook(str(EXPERIMENT))
    assert list(declared) == list(PARAMETER_HELP)
    for name, spec in declared.items():
        assert spec["inferred_type_name"] not in ("None", "", None), name
        assert spec["help"] == PARAMETER_HELP[name], name


def test_per_pair_direction_hits_add_up_to_the_accuracy(experiment_run):
    db, _, _ = experiment_run
    with reading_runs(db) as con:
        run_id, metrics = con.execute(
            "SELECT run_id, metrics FROM runs WHERE json_extract_string(config, '$.run_name') = 'nb-a'").fetchone()
    metrics = json.loads(metrics)
    hits = direction_hits(pair_metrics(db, run_id))
    assert list(hits)[0] == "model" and set(hits) == {"model", "persistence", "frozen"}
    for name, values in hits.items():
        assert np.nanmean(values) == pytest.approx(metrics[f"{name}.direction_accuracy"])
        assert set(np.unique(values[~np.isnan(values)])) <= {0.0, 0.5, 1.0}
    persistence = hits["persistence"]
    assert (persistence[~np.isnan(persistence)] == 0.5).all()  # never a call: the chance line, as in the report


def test_compare_notebook_shows_both_runs(experiment_run, tmp_path):
    from html import unescape

    from ettlib.notebooks import compare

    db, _, second = experiment_run
    with reading_runs(db) as con:
        run_ids = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
    assert len(run_ids) == 2 and second.run_id in run_ids
    nb = execute(COMPARE, tmp_path, {"db_path": str(db), "run_ids": [], "last_n": 10, "bootstrap_reps": 50})
    tables = [unescape(t) for t in htmls(nb)]
    overview = next(t for t in tables if "first prediction (UTC)" in t)
    for run_id in run_ids:
        assert run_id in overview
    assert "2024-01-01T" in overview and "1.704" not in overview and "e+12" not in overview  # ISO dates
    with reading_runs(db) as con:
        first, last = con.execute("SELECT min(target_timestamp), max(target_timestamp) FROM inference_frames"
                                  " WHERE run_id = ?", [second.run_id]).fetchone()
    assert f"{(last - first + MINUTE) / 3_600_000:.1f} h" in overview  # the second run's length
    differing = next(t for t in tables if "config.adapter" in t)
    assert "config.seed" in differing and "river" in differing and "transformer" in differing
    assert "config.context_length" not in differing and "config.db_path" not in differing
    metrics = next(t for t in tables if "skill low" in t and "DM p" in t)
    assert all(run_id in metrics for run_id in run_ids)
    assert any("Every run finished." in o["data"].get("text/markdown", "") for o in outputs(nb) if "data" in o)
    # one interval chart per metric, and the learning curves
    shown = compare.run_metrics(db, select_runs(db, [], 10), reps=50)
    assert len(pngs(nb)) == shown["metric"].nunique() + 1


def test_compare_helpers_on_recorded_runs(experiment_run):
    """Intervals are each run's evaluation; seeds group by setup; locations never differ; the chance line."""
    from ettlib.notebooks import compare
    from ettlib.notebooks.experiment import evaluate_run

    db, _, second = experiment_run
    runs = select_runs(db, [], None)
    metrics = compare.run_metrics(db, runs, reps=50)
    row = metrics[(metrics["run_id"] == second.run_id) & (metrics["metric"] == "close MAE")].iloc[0]
    mae = evaluate_run(db, second.run_id, timeframe="1m", reps=50).comparison.metrics["mae_close"]
    assert (row["model"], row["model low"], row["model high"]) == (
        mae.values["model"].estimate, mae.values["model"].low, mae.values["model"].high)
    assert row["best baseline"] == mae.best_baseline and row["DM p"] == mae.test.p_value
    # the same setup with three seeds is one group; the interval across seeds is Student's t
    table = runs.iloc[[0, 0, 0]].assign(run_id=["s0", "s1", "s2"], **{"config.seed": [0, 1, 2]},
                                        **{"config.db_path": ["data/ett.duckdb", str(db), "x"]})
    groups = compare.seed_groups(pd_concat(table, runs.iloc[[1]]))
    assert sorted(map(sorted, groups.values())) == sorted([["s0", "s1", "s2"], [runs["run_id"].iloc[1]]])
    fake = metrics.iloc[[0, 0, 0]].assign(run_id=["s0", "s1", "s2"], model=[0.50, 0.52, 0.54],
                                          skill=[0.01, 0.02, 0.03])
    seeds = compare.aggregate_seeds(fake, {"g": ["s0", "s1", "s2"]})
    first = seeds.iloc[0]
    assert first["seeds"] == 3 and first["model (mean)"] == pytest.approx(0.52)
    assert first["across seeds low"] == pytest.approx(0.52 - 4.302652729911275 * 0.02 / 3 ** 0.5)
    assert first["skill high"] == pytest.approx(0.02 + 4.302652729911275 * 0.01 / 3 ** 0.5)
    assert compare.differing_configs(table).columns.tolist() == ["config.seed"]  # db_path is a location
    # accuracies get the 50% chance line, a loss does not
    accuracy = compare.plot_metric_intervals(metrics, "direction accuracy")
    assert "chance_line" in [line.get_gid() for line in accuracy.axes[0].get_lines()]
    loss = compare.plot_metric_intervals(metrics, "close MAE")
    assert "chance_line" not in [line.get_gid() for line in loss.axes[0].get_lines()]
    failed = compare.failed_runs(runs.assign(status=["completed", "failed"], error=[None, "boom\nmore"]))
    assert failed.index.tolist() == [runs["run_id"].iloc[1]] and failed["error"].tolist() == ["boom"]


def pd_concat(*frames):
    import pandas as pd

    return pd.concat(frames, ignore_index=True)


def test_compare_notebook_over_runs_without_model_scores(tmp_path):
    """Runs of another notebook (a sweep's): their own metrics are shown, a failed run apart."""
    from ettlib.store.schema import ensure_schema

    db = tmp_path / "other.duckdb"
    with duckdb.connect(str(db)) as con:
        ensure_schema(con)
        for i, status in enumerate(("ok", "failed")):
            con.execute("INSERT INTO runs (run_id, status, config, metrics, started_at, error)"
                        " VALUES (?, ?, ?, ?, ?, ?)",
                        [f"other-{i}", status, json.dumps({"seed": i, "label": "x"}),
                         json.dumps({"score": 10 + i}), f"2024-01-0{i + 1}", "it broke" if i else None])
    nb = execute(COMPARE, tmp_path, {"db_path": str(db), "run_ids": ["other-1", "other-0"]})
    tables = htmls(nb)
    assert any("other-0" in t and ">score<" in t and "other-1" not in t for t in tables)
    failed = next(t for t in tables if "it broke" in t)
    assert "other-1" in failed and "other-0" not in failed
    shown = "\n".join(o["data"].get("text/markdown", "") for o in outputs(nb) if "data" in o)
    assert "No run recorded its predictions" in shown and "No learned pairs recorded." in shown
    assert pngs(nb) == []


# ------------------------------------------------------- parameters == config


def test_experiment_parameters_mirror_the_config():
    import papermill

    from ettlib.notebooks.experiment import NOTEBOOK_PARAMETERS

    declared = papermill.inspect_notebook(str(EXPERIMENT))
    fields = {f.name: f for f in dataclasses.fields(ExperimentConfig)}
    assert set(declared) == set(fields) | set(NOTEBOOK_PARAMETERS)
    assert set(NOTEBOOK_ONLY_PARAMETERS) <= set(NOTEBOOK_PARAMETERS)
    for name, field in fields.items():
        default = field.default if field.default is not dataclasses.MISSING else field.default_factory()
        shown = ast.literal_eval(declared[name]["default"])
        normalize = (lambda v: list(v) if isinstance(v, tuple) else v)
        assert normalize(shown) == normalize(default), name
        assert type(normalize(shown)) is type(normalize(default)), name


def test_every_notebook_has_a_parameters_cell():
    import papermill

    for notebook, must in ((EXPLORE, {"db_path", "make_demo_if_missing", "demo_steps"}),
                           (COMPARE, {"db_path", "run_ids", "last_n"})):
        assert must <= set(papermill.inspect_notebook(str(notebook))), notebook.name


# ---------------------------------------------------------- helper functions


def test_resolve_db_path(tmp_path):
    assert resolve_db_path("data/x.duckdb", cwd=tmp_path / "notebooks") == tmp_path / "data" / "x.duckdb"
    assert resolve_db_path("data/x.duckdb", cwd=tmp_path) == tmp_path / "data" / "x.duckdb"
    assert resolve_db_path(tmp_path / "y.duckdb", cwd="/elsewhere") == tmp_path / "y.duckdb"
    with pytest.raises(ConfigError):
        resolve_db_path("")


def test_ensure_demo_data(tmp_path):
    db = tmp_path / "d.duckdb"
    with pytest.raises(ConfigError, match="make_demo_if_missing"):
        ensure_demo_data(db, make_demo_if_missing=False)
    assert not db.exists()  # refused: nothing written
    assert ensure_demo_data(db, days=0.1) is True
    assert ensure_demo_data(db, days=0.1) is False  # already there
    with pytest.raises(ConfigError, match="BTC/USDT.*ETH/USDT"):
        ensure_demo_data(db, "BTC/USDT", make_demo_if_missing=False)
    with DuckDBStorage(db, read_only=True) as storage:
        assert storage.time_range("ETH/USDT", "1m") == (T0, T0 + (144 - 1) * MINUTE)
        assert replay_range(storage, "ETH/USDT") == (T0, T0 + 143 * MINUTE)
        assert replay_range(storage, "ETH/USDT", days=1 / 24, warmup=10) == (T0 + 10 * MINUTE, T0 + 69 * MINUTE)
        assert replay_range(storage, "ETH/USDT", start="2024-01-01T01:00:00Z")[0] == T0 + 60 * MINUTE
        with pytest.raises(ConfigError, match="no 1m candles"):
            replay_range(storage, "BTC/USDT")


def test_select_runs_by_id_and_latest(experiment_run):
    db, _, second = experiment_run
    table = select_runs(db, [second.run_id])
    assert table["run_id"].tolist() == [second.run_id]
    assert select_runs(db, [], last_n=1)["run_id"].tolist() == [second.run_id]  # the latest started
    assert len(select_runs(db, [], last_n=None)) == 2
    with pytest.raises(ConfigError, match="no-such-run"):
        select_runs(db, ["no-such-run"])
    assert differing_configs(select_runs(db, [second.run_id])).shape[1] == 0  # one run: nothing differs


def test_notebooks_write_demo_data_only_at_the_default_database(tmp_path):
    db = tmp_path / "mine.duckdb"
    with pytest.raises(ConfigError, match="written only at the default database"):
        provide_demo_data(db, ["ETH/USDT"])
    assert not db.exists()
    ensure_demo_data(db, days=0.1)
    assert provide_demo_data(db, ["ETH/USDT"]) == ()  # present: nothing to write
    with pytest.raises(ConfigError, match="'BTC/USDT'.*only at the default database"):
        provide_demo_data(db, ["ETH/USDT", "BTC/USDT"])
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT DISTINCT symbol FROM ohlcv_data").fetchall() == [("ETH/USDT",)]


def test_ensure_demo_data_from_several_processes_at_once(tmp_path):
    """The runs of a sweep on a fresh machine: one writes the demo data, the others wait for it."""
    import subprocess
    import sys

    db = tmp_path / "fresh" / "d.duckdb"
    code = ("import sys; from ettlib.notebooks.tools import ensure_demo_data; "
            "print(ensure_demo_data(sys.argv[1], days=0.1))")
    procs = [subprocess.Popen([sys.executable, "-c", code, str(db)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outcomes = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], [err for _, err in outcomes]
    assert sorted(out.strip() for out, _ in outcomes) == ["False", "False", "True"]
    with DuckDBStorage(db, read_only=True) as storage:
        assert storage.time_range("ETH/USDT", "1m") == (T0, T0 + (144 - 1) * MINUTE)
