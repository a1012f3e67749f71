"""The compare notebook's tables and figures: runs side by side, fairly.

``notebooks/03_compare_runs.ipynb`` shows, for the runs of a ``runs`` table
(:func:`ettlib.notebooks.tools.select_runs`):

* :func:`runs_overview`: one row per run with ISO UTC dates, the data it ran
  on (symbols, timeframe, fingerprint) and its **length** (the span of its
  scored predictions), so runs of two days and of three hours are not read
  as alike;
* :func:`failed_runs`: runs that did not finish, listed apart with their
  error (they are left out of every score and figure);
* :func:`differing_configs`: the config fields that differ between runs,
  **without the locations** (``db_path``, ``results_db``, ``checkpoint``:
  where things are, not what is computed; the data fingerprint says whether
  the data was the same);
* :func:`run_metrics`: each run's metrics, model and best baseline, with 95%
  block-bootstrap intervals, the skill and the Diebold-Mariano p-value
  (:func:`ettlib.notebooks.experiment.evaluate_run`), for runs whose
  predictions were recorded;
* :func:`aggregate_seeds`: runs whose configs differ only in their seed
  (and run name) are one **group**; per group and metric, the mean over
  seeds and a 95% interval across seeds (Student's t on the seeds' values:
  it says how much the result depends on the seed, not on the data);
* :func:`plot_metric_intervals` (with the 50% chance line for accuracies)
  and :func:`plot_learning_curves` (per run and pair kind, rolling median,
  log scale where the losses span more than a decade);
* :func:`fit` : a table styled to wrap inside the page.

Examples
--------
>>> tuple(round(v, 4) for v in seed_interval([0.50, 0.52, 0.54]))   # mean +- t(0.975, 2) * sd / sqrt(3)
(0.52, 0.4703, 0.5697)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "OK_STATUSES",
    "LOCATION_FIELDS",
    "runs_overview",
    "failed_runs",
    "finished_runs",
    "differing_configs",
    "seed_groups",
    "seed_interval",
    "run_metrics",
    "aggregate_seeds",
    "plot_metric_intervals",
    "plot_learning_curves",
    "fit",
]

#: Statuses of runs that finished (an experiment's ``completed``; other notebooks may say ``ok``).
OK_STATUSES = ("completed", "ok")

#: Config fields that say where things are, not what is computed.
LOCATION_FIELDS = ("db_path", "results_db", "checkpoint")

_NOT_THE_SETUP = ("seed", "run_name") + LOCATION_FIELDS


def _iso(ms) -> str:
    from ettlib.notebooks.provenance import iso_utc

    try:
        return iso_utc(None if ms is None or ms != ms else int(ms))
    except (TypeError, ValueError):
        return str(ms)


def _span(ms: float) -> str:
    """A duration in ms as ``"2.0 d"``, ``"6.0 h"`` or ``"45 min"``.

    >>> _span(2 * 86_400_000), _span(6 * 3_600_000), _span(45 * 60_000)
    ('2.0 d', '6.0 h', '45 min')
    """
    if ms >= 86_400_000:
        return f"{ms / 86_400_000:.1f} d"
    if ms >= 3_600_000:
        return f"{ms / 3_600_000:.1f} h"
    return f"{ms / 60_000:.0f} min"


def _spans(database, run_ids: Sequence[str]) -> dict[str, tuple]:
    """``{run_id: (first target, last target, predictions)}`` of each run's frames."""
    from ettlib.notebooks.experiment import _rows

    if not run_ids:
        return {}
    marks = ", ".join("?" for _ in run_ids)
    rows = _rows(database, f"SELECT run_id, min(target_timestamp), max(target_timestamp), count(*)"
                           f" FROM inference_frames WHERE run_id IN ({marks}) GROUP BY run_id", list(run_ids))
    return {r[0]: r[1:] for r in rows}


def _config(row) -> dict:
    return {k[len("config."):]: v for k, v in row.items() if k.startswith("config.")}


def runs_overview(database, table):
    """One row per run (indexed by run id): status, dates, data, length, predictions, seed, wall time."""
    import pandas as pd

    spans = _spans(database, list(table["run_id"]))
    fingerprints = dict(_fingerprints(database, list(table["run_id"])))
    rows = []
    for record in table.to_dict("records"):
        config = _config(record)
        first, last, n = spans.get(record["run_id"], (None, None, 0))
        symbols = config.get("symbols")
        if isinstance(symbols, str) and symbols.startswith("["):
            symbols = ", ".join(json.loads(symbols))
        tf = config.get("timeframe") or config.get("base_timeframe") or ""
        step = _timeframe_ms(tf)
        rows.append({
            "run_id": record["run_id"], "status": record["status"],
            "started (UTC)": fingerprints.get(record["run_id"], {}).get("started", "-"),
            "data": f"{symbols or '-'} {tf}".strip(),
            "first prediction (UTC)": _iso(first), "last prediction (UTC)": _iso(last),
            "length": "-" if first is None else _span(last - first + step),
            "predictions": int(n), "seed": config.get("seed", "-"),
            "data fingerprint": (fingerprints.get(record["run_id"], {}).get("fingerprint") or "-")[:12],
            "wall (s)": "-" if record.get("wall_s") is None or record["wall_s"] != record["wall_s"]
            else f"{record['wall_s']:.1f}",
        })
    return pd.DataFrame.from_records(rows).set_index("run_id") if rows else pd.DataFrame()


def _timeframe_ms(name: str) -> int:
    from ettlib.timeframes import TIMEFRAMES

    return TIMEFRAMES.get(name, 0)


def _fingerprints(database, run_ids: Sequence[str]):
    from ettlib.notebooks.experiment import _rows

    if not run_ids:
        return []
    marks = ", ".join("?" for _ in run_ids)
    rows = _rows(database, f"SELECT run_id, data_fingerprint, started_at FROM runs WHERE run_id IN ({marks})",
                 list(run_ids))
    return [(r[0], {"fingerprint": r[1], "started": "-" if r[2] is None else r[2].strftime("%Y-%m-%dT%H:%M:%SZ")})
            for r in rows]


def finished_runs(table):
    """The rows of runs that finished (status in :data:`OK_STATUSES`)."""
    return table[table["status"].isin(OK_STATUSES)].reset_index(drop=True)


def failed_runs(table):
    """Runs that did not finish: status and the first line of the error (indexed by run id)."""
    rows = table[~table["status"].isin(OK_STATUSES)]
    errors = rows["error"] if "error" in rows.columns else [None] * len(rows)
    out = rows[["run_id", "status"]].copy()
    out["error"] = [str(e).strip().splitlines()[0][:160] if isinstance(e, str) and e.strip() else "-"
                    for e in errors]
    return out.set_index("run_id")


def differing_configs(table):
    """The ``config.*`` columns whose values differ between runs, locations left out (see the module doc)."""
    columns = [c for c in table.columns
               if c.startswith("config.") and c[len("config."):] not in LOCATION_FIELDS]
    differing = [c for c in columns if table[c].astype(str).nunique(dropna=False) > 1]
    return table.set_index("run_id")[differing]


def seed_groups(table) -> dict[str, list[str]]:
    """``{group label: run ids}``: runs whose configs match but for the seed, run name and locations.

    The label is ``"<adapter> #k"`` (k counts the distinct setups of one adapter).
    """
    groups: dict[str, list[str]] = {}
    keys: dict[str, str] = {}
    counts: dict[str, int] = {}
    for record in table.to_dict("records"):
        config = {k: v for k, v in _config(record).items() if k not in _NOT_THE_SETUP}
        key = json.dumps(config, sort_keys=True, default=str)
        if key not in keys:
            adapter = str(config.get("adapter", "run"))
            counts[adapter] = counts.get(adapter, 0) + 1
            keys[key] = f"{adapter} #{counts[adapter]}"
        groups.setdefault(keys[key], []).append(record["run_id"])
    return groups


def seed_interval(values: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Mean of the seeds' values and its Student-t interval (NaN bounds for fewer than two seeds)."""
    import numpy as np
    from scipy import stats

    x = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=np.float64)
    if len(x) == 0:
        return (math.nan, math.nan, math.nan)
    mean = float(x.mean())
    if len(x) < 2:
        return (mean, math.nan, math.nan)
    half = float(stats.t.ppf(0.5 + level / 2, len(x) - 1) * x.std(ddof=1) / math.sqrt(len(x)))
    return (mean, mean - half, mean + half)


def run_metrics(database, table, *, reps: int = 300, seed: int = 0):
    """Per run and metric: model and best baseline with 95% intervals, skill, DM p (a long DataFrame).

    Runs without recorded predictions (another notebook's, or older ones)
    are left out; the timeframe is each run's own.
    """
    import pandas as pd

    from ettlib.notebooks.experiment import evaluate_run

    rows = []
    for record in finished_runs(table).to_dict("records"):
        config = _config(record)
        timeframe = config.get("timeframe") or config.get("base_timeframe")
        if not timeframe:
            continue
        evaluation = evaluate_run(database, record["run_id"], timeframe=timeframe, reps=reps, seed=seed,
                                  trading=False)
        if evaluation.comparison is None:
            continue
        for mc in evaluation.comparison.metrics.values():
            model, best = mc.values[mc.model], mc.best_baseline
            skill = mc.skill.get(best) if best else None
            rows.append({
                "run_id": record["run_id"], "metric": mc.spec.label, "higher is better": mc.spec.higher_is_better,
                "n": mc.n, "model": model.estimate, "model low": model.low, "model high": model.high,
                "best baseline": best or "-", "baseline": mc.values[best].estimate if best else math.nan,
                "skill": skill.estimate if skill else math.nan, "skill low": skill.low if skill else math.nan,
                "skill high": skill.high if skill else math.nan,
                "DM p": mc.test.p_value if mc.test is not None else math.nan,
            })
    return pd.DataFrame.from_records(rows)


def aggregate_seeds(metrics, groups: Mapping[str, Sequence[str]]):
    """Per seed group and metric: seeds, the mean model value and skill, each with a 95% interval across seeds."""
    import pandas as pd

    rows = []
    if metrics is None or len(metrics) == 0:
        return pd.DataFrame()
    for label, run_ids in groups.items():
        part = metrics[metrics["run_id"].isin(run_ids)]
        for metric, values in part.groupby("metric", sort=False):
            mean, low, high = seed_interval(values["model"].tolist())
            skill, skill_low, skill_high = seed_interval(values["skill"].tolist())
            rows.append({"group": label, "metric": metric, "seeds": len(values), "runs": ", ".join(values["run_id"]),
                         "model (mean)": mean, "across seeds low": low, "across seeds high": high,
                         "skill (mean)": skill, "skill low": skill_low, "skill high": skill_high})
    return pd.DataFrame.from_records(rows).set_index(["group", "metric"]) if rows else pd.DataFrame()


def plot_metric_intervals(metrics, metric: str, *, lengths: Mapping[str, str] | None = None,
                          figsize=(9.0, 3.6)):
    """The model's ``metric`` per run with its 95% interval, its best baseline, and the chance line for accuracies.

    Each x label is the run id and its length (``lengths``), so runs of
    different lengths are not read as alike.
    """
    import numpy as np
    from matplotlib.figure import Figure

    part = metrics[metrics["metric"] == metric].reset_index(drop=True)
    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    x = np.arange(len(part))
    y = part["model"].to_numpy(dtype=float)
    err = np.vstack([y - part["model low"].to_numpy(dtype=float), part["model high"].to_numpy(dtype=float) - y])
    ax.errorbar(x, y, yerr=np.abs(err), fmt="o", capsize=4, color="C0", label="model (95% CI)", gid="model")
    ax.scatter(x, part["baseline"].to_numpy(dtype=float), marker="_", s=400, color="C3",
               label="best baseline", gid="baseline", zorder=3)
    if len(part) and bool(part["higher is better"].iloc[0]):
        ax.axhline(0.5, color="0.4", ls="--", lw=1.0, label="chance (50%)", gid="chance_line")
    labels = [f"{r}\n{(lengths or {}).get(r, '')}".strip() for r in part["run_id"]]
    ax.set_xticks(x, labels, rotation=15, ha="right", fontsize="small")
    ax.set_xlim(-0.5, len(part) - 0.5)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} per run, with 95% block-bootstrap intervals")
    ax.grid(True, axis="y", alpha=0.2)
    ax.legend(fontsize="small", loc="best")
    fig.tight_layout()
    return fig


def plot_learning_curves(database, run_ids: Sequence[str], *, figsize=(9.0, 3.8)):
    """Each run's learned losses per pair kind against pairs learned, as a rolling median (log scale if wide)."""
    import numpy as np
    from matplotlib.figure import Figure

    from ettlib.evaluation.figures import LOG_SCALE_RATIO, rolling_median
    from ettlib.notebooks.experiment import learned_events

    fig = Figure(figsize=figsize)
    ax = fig.add_subplot()
    every = []
    styles = {"candle": "-", "pivot": "--"}
    for i, run_id in enumerate(run_ids):
        events = learned_events(database, run_id)
        for kind, group in events.groupby("event_kind", sort=True):
            y = group["loss"].to_numpy(dtype=float)
            y = y[np.isfinite(y)]
            if not len(y):
                continue
            every.append(y)
            window = max(5, len(y) // 20)
            ax.plot(np.arange(1, len(y) + 1), rolling_median(y, window), color=f"C{i}", ls=styles.get(kind, ":"),
                    lw=1.6, label=f"{run_id} {kind} (median of {window})", gid=f"{run_id}_{kind}")
    losses = np.concatenate(every) if every else np.array([])
    if len(losses) and (losses > 0).all() and losses.max() / losses.min() > LOG_SCALE_RATIO:
        ax.set_yscale("log")
    ax.set_xlabel("pairs learned")
    ax.set_ylabel("loss" + (" (log scale)" if ax.get_yscale() == "log" else ""))
    ax.set_title("learning curves per run and pair kind (rolling median)")
    ax.grid(True, alpha=0.2)
    if every:
        ax.legend(fontsize="x-small", loc="upper right")
    fig.tight_layout()
    return fig


def fit(frame, *, digits: int = 4) -> Any:
    """``frame`` styled to fit the page: wrapped cells, small type, floats to ``digits`` significant digits."""
    import numpy as np

    styler = frame.style.format(lambda v: f"{v:#.{digits}g}" if isinstance(v, (float, np.floating))
                                and math.isfinite(v) else ("-" if isinstance(v, float) else v))
    return styler.set_table_styles([
        {"selector": "", "props": "table-layout: auto; max-width: 100%; font-size: 85%;"},
        {"selector": "th, td", "props": "white-space: normal; word-break: break-word; max-width: 22em;"},
    ])
