"""What the notebooks in ``notebooks/`` use, and keeping them clean in git.

The notebooks only wire things together; the little logic they need lives
here, tested like the rest of ettlib:

* **paths and data**: :func:`resolve_db_path` (a relative path means the
  same from the repository root and from ``notebooks/``),
  :func:`ensure_demo_data` (write the demo candles into a fresh database),
  :func:`provide_demo_data` (the notebooks' rule: demo candles only at the default database),
  :func:`replay_range`;
* **experiment tables**: :func:`config_from_parameters`,
  :func:`metrics_table`, :func:`pair_metrics`, :func:`direction_hits`,
  :func:`manifest_table`, :func:`plot_confusions`;
* **comparing runs**: :func:`select_runs`, :func:`differing_configs`,
  :func:`headline_metrics`, :func:`learning_losses`, :func:`plot_run_metrics`;
* **hygiene**: committed notebooks carry no outputs and no execution counts.
  ``python -m ettlib.notebooks.tools strip notebooks/*.ipynb`` removes them
  (also ipywidgets' saved state and papermill's run metadata);
  ``python -m ettlib.notebooks.tools check notebooks/*.ipynb`` exits 1 and
  lists what is dirty.

Examples
--------
>>> import nbformat
>>> nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("1 + 1", execution_count=3)])
>>> notebook_problems(nb)
['cell 0: execution_count 3']
>>> strip_notebook(nb), notebook_problems(nb)
(True, [])
>>> metrics_table({"model": {"mae_close": 1.0}, "persistence": {"mae_close": 2.0}})
          model persistence
mae_close   1.0         2.0
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError
# keeping notebooks clean (``python -m ettlib.notebooks.tools strip|check``): its own module
from ettlib.notebooks.clean import main, notebook_problems, strip_file, strip_notebook
from ettlib.store.catalog import open_runs

__all__ = [
    "resolve_db_path",
    "ensure_demo_data",
    "provide_demo_data",
    "replay_range",
    "config_from_parameters",
    "NOTEBOOK_ONLY_PARAMETERS",
    "metrics_table",
    "pair_metrics",
    "direction_hits",
    "manifest_table",
    "plot_confusions",
    "select_runs",
    "differing_configs",
    "headline_metrics",
    "has_score",
    "learning_losses",
    "plot_run_metrics",
    "notebook_problems",
    "strip_notebook",
    "strip_file",
    "main",
]

_DAY_MS = 86_400_000

#: Parameters of ``02_experiment.ipynb`` that are not ``ExperimentConfig`` fields.
NOTEBOOK_ONLY_PARAMETERS: tuple[str, ...] = ("make_demo_if_missing", "demo_days")

#: Scores shown first in the metrics table (others follow in their order).
SCORE_ORDER: tuple[str, ...] = (
    "mae_close", "mae_close_first_half", "mae_close_second_half",
    "direction_accuracy", "pivot_accuracy", "pivot_majority_accuracy", "n_candles", "n_pivot_pairs",
)


# --------------------------------------------------------------- paths and data


def resolve_db_path(db_path: str | Path, cwd: str | Path | None = None) -> Path:
    """The absolute path of a notebook's database parameter.

    An absolute path stays as it is.  A relative one is read from the
    repository root: from ``cwd`` (default: the current directory), or from
    its parent when ``cwd`` is a folder named ``notebooks`` (where Jupyter
    starts a notebook's kernel).  So the default ``"data/ett.duckdb"`` is the
    same file whether a notebook runs in JupyterLab or under papermill from
    the repository root.

    >>> resolve_db_path("data/ett.duckdb", cwd="/repo/notebooks").as_posix()
    '/repo/data/ett.duckdb'
    >>> resolve_db_path("data/ett.duckdb", cwd="/repo").as_posix()
    '/repo/data/ett.duckdb'
    >>> resolve_db_path("/tmp/x.duckdb", cwd="/repo/notebooks").as_posix()
    '/tmp/x.duckdb'
    """
    if not isinstance(db_path, (str, Path)) or not str(db_path):
        raise ConfigError(f"db_path must be a non-empty path, got {db_path!r}")
    path = Path(db_path).expanduser()
    if path.is_absolute():
        return path
    base = Path(cwd) if cwd is not None else Path.cwd()
    if base.name == "notebooks":
        base = base.parent
    return base / path


def ensure_demo_data(
    db_path: str | Path,
    symbol: str = "ETH/USDT",
    *,
    make_demo_if_missing: bool = True,
    days: float = 2.0,
    seed: int = 7,
) -> bool:
    """Make sure ``db_path`` holds 1m candles of ``symbol``; True when demo data was written.

    When the file or the symbol is missing, writes :func:`ettlib.store.demo.write_demo_data`
    (``days`` of synthetic candles) if ``make_demo_if_missing``, else raises
    :class:`ConfigError` saying how to get data.  The database is opened
    read-only to look, and for writing only when something is written.

    Safe when several processes call it on the same file at once (the runs
    of a sweep on a fresh machine): the look and the write happen under an
    exclusive lock on ``<db_path>.demo.lock``, so exactly one process writes
    the demo data and the others wait, then find it complete.
    """
    from filelock import FileLock

    path = Path(db_path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(path) + ".demo.lock"):
        return _ensure_demo_data_locked(path, symbol, make_demo_if_missing, days, seed)


def _ensure_demo_data_locked(path: Path, symbol: str, make_demo_if_missing: bool, days: float,
                             seed: int) -> bool:
    from ettlib.store import DuckDBStorage

    if path.is_file():
        with DuckDBStorage(path, read_only=True) as storage:
            if storage.time_range(symbol, "1m") is not None:
                return False
            known = storage.symbols()
    else:
        known = []
    if not make_demo_if_missing:
        raise ConfigError(
            f"{path}: no 1m candles of {symbol!r} (symbols there: {known or 'none'}); "
            "ingest some (`ett data ingest`), write the demo (`ett data demo`), "
            "or set make_demo_if_missing = True"
        )
    from ettlib.store.demo import write_demo_data

    with DuckDBStorage(path) as storage:
        write_demo_data(storage, symbol=symbol, days=days, seed=seed)
    return True


def provide_demo_data(db_path: str | Path, symbols: Sequence[str], *, make_demo_if_missing: bool = True,
                      days: float = 2.0) -> tuple[str, ...]:
    """The notebooks' rule for demo data: written only at the default database; the symbols written.

    A symbol ``db_path`` lacks gets :func:`ensure_demo_data`'s synthetic candles
    when ``make_demo_if_missing`` and ``db_path`` is
    :func:`~ettlib.notebooks.provenance.default_db_path` (``data/ett.duckdb``).
    Anywhere else a missing symbol is a :class:`ConfigError`: a notebook pointed
    at a researcher's own file never fills it with synthetic candles.
    """
    from ettlib.notebooks.provenance import default_db_path, is_default_db

    may_write = make_demo_if_missing and is_default_db(db_path)
    written = []
    for symbol in symbols:
        try:
            if ensure_demo_data(db_path, symbol, make_demo_if_missing=may_write, days=days):
                written.append(symbol)
        except ConfigError as err:
            if make_demo_if_missing and not may_write:
                raise ConfigError(f"{err}. Demo candles are written only at the default database "
                                  f"{default_db_path()}, not at {db_path}") from None
            raise
    return tuple(written)


def replay_range(storage, symbol: str, *, start=None, days: float | None = None,
                 base_timeframe: str = "1m", warmup: int = 0, timeframe: str = "1m") -> tuple[int, int]:
    """``(start, end)`` open times to replay: from ``start`` for ``days``.

    ``start`` is epoch ms or an ISO date (UTC); by default the first stored
    candle plus ``warmup`` candles of ``timeframe`` (so that the first
    inference step already has a full input window of that many candles).
    ``days=None`` runs to the last stored candle; the end never passes it.
    """
    from ettlib.timeframes import timeframe_ms
    from ettlib.times import to_ms_or_none

    bounds = storage.time_range(symbol, base_timeframe)
    if bounds is None:
        raise ConfigError(f"no {base_timeframe} candles of {symbol!r} in {getattr(storage, 'path', 'the store')}")
    first, last = bounds
    begin = to_ms_or_none(start, "start")
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ConfigError(f"warmup must be an int >= 0, got {warmup!r}")
    begin = first + warmup * timeframe_ms(timeframe) if begin is None else max(begin, first)
    if days is None:
        return begin, last
    if not isinstance(days, (int, float)) or isinstance(days, bool) or days <= 0:
        raise ConfigError(f"days must be a positive number or None, got {days!r}")
    end = min(last, begin + int(days * _DAY_MS) - 60_000)
    if end < begin:
        raise ConfigError(f"start {begin} is after the last stored candle ({last})")
    return begin, end


# ----------------------------------------------------------------- experiment


def config_from_parameters(namespace: Mapping[str, Any], **overrides):
    """An ``ExperimentConfig`` from a notebook's variables (its parameters).

    Takes every ``ExperimentConfig`` field found in ``namespace`` (e.g.
    ``globals()`` after the parameters cell), then ``overrides``.

    >>> config_from_parameters({"adapter": "persistence", "baselines": [], "other": 1}).adapter
    'persistence'
    """
    from dataclasses import fields

    from ettlib.experiment.config import ExperimentConfig

    values = {f.name: namespace[f.name] for f in fields(ExperimentConfig) if f.name in namespace}
    values.update(overrides)
    return ExperimentConfig.from_dict(values)


def metrics_table(scores: Mapping[str, Mapping[str, Any]]):
    """Scores of the model and its baselines side by side (rows: scores, columns: models).

    ``scores`` is ``ExperimentResult.scores`` (``{model: {score: value}}``);
    list-valued scores (the confusion matrix) are left out.
    """
    import pandas as pd

    names = list(scores)
    keys: list[str] = [k for k in SCORE_ORDER if any(k in scores[n] for n in names)]
    for n in names:
        keys.extend(k for k, v in scores[n].items() if k not in keys and not isinstance(v, (list, tuple, dict)))
    data = {n: [_rounded(scores[n].get(k)) for k in keys] for n in names}
    return pd.DataFrame(data, index=keys, dtype=object)


def _rounded(value, digits: int = 6):
    return float(f"{value:.{digits}g}") if isinstance(value, float) else value


def pair_metrics(database, run_id: str, subscriber: str = "prequential"):
    """Per-pair metrics of a run's candle pairs, in delivery order (a DataFrame).

    Columns: ``knowable_time``, ``seq`` and one per metric key the
    subscriber returned (``abs_error_close.model``, ``direction_hit.frozen``,
    ...; NaN where a pair lacks it).
    """
    import pandas as pd

    con, catalog = open_runs(database)
    try:
        rows = con.execute(
            "SELECT knowable_time, seq, metrics FROM training_events"
            " WHERE run_id = ? AND subscriber = ? AND event_kind = 'candle' AND metrics IS NOT NULL"
            " ORDER BY seq",
            [run_id, subscriber],
        ).fetchall()
    finally:
        if catalog is not None:
            catalog.close()
    records = []
    for knowable_time, seq, metrics in rows:
        record = {"knowable_time": knowable_time, "seq": seq}
        record.update(json.loads(metrics))
        records.append(record)
    return pd.DataFrame.from_records(records, columns=None if records else ["knowable_time", "seq"])


def direction_hits(pairs, model: str = "model") -> dict[str, Any]:
    """``{name: scores}`` (1 right, 0.5 no call, 0 wrong; NaN when not scored) from :func:`pair_metrics`, ``model`` first."""
    prefix = "direction_hit."
    names = [c[len(prefix):] for c in pairs.columns if c.startswith(prefix)]
    names.sort(key=lambda n: (n != model, n))
    return {n: pairs[prefix + n].to_numpy(dtype=float) for n in names}


def manifest_table(database, run_id: str):
    """The run's manifest from the ``runs`` table: one ``value`` per field (the index).

    Rows: run id, status, seed, data fingerprint, package version, git
    commit, started / finished (UTC), wall time, then one ``config.<name>``
    row per config field.
    """
    import pandas as pd

    con, catalog = open_runs(database)
    try:
        row = con.execute(
            "SELECT run_id, status, seed, data_fingerprint, package_version, git_commit,"
            " started_at, finished_at, wall_s, config, error FROM runs WHERE run_id = ?",
            [run_id],
        ).fetchone()
    finally:
        if catalog is not None:
            catalog.close()
    if row is None:
        raise ConfigError(f"run {run_id!r} is not in the runs table of {database}")
    names = ("run id", "status", "seed", "data fingerprint", "package version", "git commit",
             "started (UTC)", "finished (UTC)", "wall time (s)")
    items = [(n, "" if v is None else str(v if n != "wall time (s)" else round(v, 2)))
             for n, v in zip(names, row[:9])]
    for key, value in sorted(json.loads(row[9]).items()):
        items.append((f"config.{key}", json.dumps(value)))
    if row[10]:
        items.append(("error", row[10].strip().splitlines()[-1]))
    return pd.DataFrame(items, columns=["field", "value"]).set_index("field")


def plot_confusions(scores: Mapping[str, Mapping[str, Any]], *, figsize_per_model=(3.6, 3.2)):
    """One pivot-confusion heatmap per model (rows: the pivot's BUY/SELL, columns: the prediction).

    The scorer's matrix is 2 x 3 (truth BUY, SELL; prediction BUY, SELL,
    HOLD); it is drawn as a square 3 x 3 with an empty HOLD row, since a
    pivot never says HOLD.  Returns a :class:`matplotlib.figure.Figure`
    (one axes per model holding a ``pivot_confusion`` matrix).
    """
    import numpy as np
    from matplotlib.figure import Figure

    from ettlib.notebooks.plots import plot_pivot_confusion

    names = [n for n, s in scores.items() if s.get("pivot_confusion") is not None]
    if not names:
        raise ConfigError("no model has a pivot_confusion score")
    fig = Figure(figsize=(figsize_per_model[0] * len(names), figsize_per_model[1]))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names):
        confusion = np.asarray(scores[name]["pivot_confusion"], dtype=float)
        square = np.zeros((3, 3))
        square[: confusion.shape[0], : confusion.shape[1]] = confusion
        plot_pivot_confusion(square, ["BUY", "SELL", "HOLD"], ax=ax, title=name)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------- comparing


def select_runs(database, run_ids: Sequence[str] | None = None, last_n: int | None = 10):
    """The runs to compare, one row each (:func:`ettlib.store.catalog.compare_runs`).

    ``run_ids`` (non-empty) picks runs in that order; else the ``last_n``
    latest by start time (``None``: all).  Unknown run ids raise
    :class:`ConfigError` naming them.
    """
    from ettlib.store.catalog import compare_runs

    if run_ids:
        table = compare_runs(database, list(run_ids))
        missing = [r for r in run_ids if r not in set(table["run_id"] if len(table) else ())]
        if missing:
            raise ConfigError(f"runs not in {database}: {', '.join(missing)}")
        return table
    table = compare_runs(database, None)
    if last_n is not None:
        if isinstance(last_n, bool) or not isinstance(last_n, int) or last_n < 1:
            raise ConfigError(f"last_n must be a positive int or None, got {last_n!r}")
        table = table.tail(last_n).reset_index(drop=True)
    return table


def differing_configs(table):
    """The ``config.*`` columns whose values differ between runs (indexed by run id)."""
    columns = [c for c in table.columns if c.startswith("config.")]
    differing = [c for c in columns if table[c].astype(str).nunique(dropna=False) > 1]
    return table.set_index("run_id")[differing]


def headline_metrics(table, scores: Iterable[str] = ("mae_close", "direction_accuracy", "pivot_accuracy")):
    """Status, wall time and the headline scores of every model, per run (indexed by run id)."""
    scores = tuple(scores)
    wanted = [c for c in table.columns
              if c.startswith("metrics.") and c.split(".")[-1] in scores and c.count(".") == 2]
    extra = [c for c in ("metrics.frames", "metrics.train_steps", "metrics.mean_pair_loss") if c in table.columns]
    if not wanted and not extra:  # runs of another notebook: show whatever scalar metrics they have
        extra = [c for c in table.columns if c.startswith("metrics.")]
    out = table.set_index("run_id")[["status", "wall_s", *sorted(wanted, key=lambda c: (scores.index(c.split(".")[-1]), not c.startswith("metrics.model."), c)), *extra]]
    return out.rename(columns=lambda c: c[len("metrics."):] if c.startswith("metrics.") else c)


def learning_losses(database, run_ids: Sequence[str]) -> dict[str, Any]:
    """``{run_id: losses}``: each run's learned-pair losses in delivery order (from ``training_events``)."""
    import numpy as np

    con, catalog = open_runs(database)
    try:
        out = {}
        for run_id in run_ids:
            rows = con.execute(
                "SELECT loss FROM training_events WHERE run_id = ? AND loss IS NOT NULL"
                " AND subscriber <> 'prequential' ORDER BY seq",
                [run_id],
            ).fetchall()
            out[run_id] = np.array([r[0] for r in rows], dtype=float)
        return out
    finally:
        if catalog is not None:
            catalog.close()


def has_score(table, score: str) -> bool:
    """Whether :func:`headline_metrics`' ``table`` has a ``<model>.<score>`` column with a value."""
    return any(c.endswith("." + score) and table[c].notna().any() for c in table.columns)


def plot_run_metrics(table, score: str = "mae_close", *, figsize=(8.0, 3.5)):
    """Grouped bars: ``score`` of the model and each baseline, per run.

    ``table`` is :func:`headline_metrics`' (columns ``<model>.<score>``).
    Returns a Figure; each model's bars are one container labelled by the model.
    """
    import numpy as np
    from matplotlib.figure import Figure

    columns = [c for c in table.columns if c.endswith("." + score)]
    if not columns:
        raise ConfigError(f"no {score!r} column among {list(table.columns)}")
    columns.sort(key=lambda c: (not c.startswith("model."), c))
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    x = np.arange(len(table))
    width = 0.8 / len(columns)
    for i, column in enumerate(columns):
        values = table[column].astype(float).to_numpy()
        ax.bar(x + (i - (len(columns) - 1) / 2) * width, values, width, label=column.split(".")[0])
    ax.set_xticks(x, [str(r) for r in table.index], rotation=20, ha="right", fontsize="small")
    ax.set_ylabel(score)
    ax.set_title(f"{score} per run")
    ax.grid(True, axis="y", alpha=0.2)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


# Keeping notebooks clean: ettlib.notebooks.clean (main, notebook_problems, strip_file, strip_notebook).

if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
