"""Where a report's numbers come from: the data, the parameters, the code and its environment.

Used by the experiment notebook (``notebooks/02_experiment.ipynb``) so that
every report says, with its code hidden:

* **the data** (:func:`data_table`): per symbol the timeframes, the replayed
  range in ISO 8601 UTC, the candle count, the gaps (base candles missing
  between the first and the last), the source file and the run's data
  fingerprint, and whether the candles are the **synthetic demo set**
  (:func:`demo_seed`: the stored candles are exactly what
  :func:`ettlib.store.demo.demo_candles` makes for one of the usual seeds);
* **the parameters** (:func:`parameters_table`): every value the run used,
  flagged where it differs from the default;
* **the manifest** (:func:`manifest_table`): the run id and status, the git
  commit with a dirty-tree flag, the versions of Python and of the packages
  that computed it (``runs.environment``), and the timings.

Demo data is written only at the **default database**,
:func:`default_db_path` (``data/ett.duckdb`` at the root of the source tree
ettlib was loaded from); a report on any other file that lacks candles
fails and says how to get some.

Examples
--------
>>> iso_utc(1_704_067_200_000)
'2024-01-01T00:00:00Z'
>>> iso_utc(None)
'-'
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ettlib.errors import ConfigError

__all__ = [
    "DEMO_SEEDS",
    "default_db_path",
    "is_default_db",
    "iso_utc",
    "demo_seed",
    "data_table",
    "parameters_table",
    "manifest_table",
]

#: Seeds :func:`demo_seed` tries, the default (7) first.
DEMO_SEEDS: tuple[int, ...] = (7, 0, 1, 2, 3, 4, 5, 6, 8, 9)


def default_db_path() -> Path:
    """``data/ett.duckdb`` at the root of the source tree this ettlib was loaded from.

    >>> default_db_path().parts[-2:]
    ('data', 'ett.duckdb')
    """
    import ettlib

    return Path(ettlib.__file__).resolve().parent.parent / "data" / "ett.duckdb"


def is_default_db(path: str | Path) -> bool:
    """Whether ``path`` is :func:`default_db_path` (the one place demo data is written).

    >>> is_default_db(default_db_path()), is_default_db("/tmp/elsewhere.duckdb")
    (True, False)
    """
    return Path(path).expanduser().resolve() == default_db_path()


def iso_utc(ms) -> str:
    """Epoch milliseconds as ISO 8601 UTC to the second (``...Z``); ``-`` for None."""
    if ms is None or ms != ms:
        return "-"
    return datetime.fromtimestamp(int(ms) / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def demo_seed(con, symbol: str, timeframe: str = "1m") -> int | None:
    """The seed of the demo set ``symbol``'s stored candles are, or None when they are not a demo set.

    The stored candles are compared, exactly, with
    :func:`ettlib.store.demo.demo_candles` of the same start and length for
    each seed of :data:`DEMO_SEEDS` (only 1m candles are ever written as a demo).
    """
    import numpy as np

    from ettlib.store.demo import demo_candles

    if timeframe != "1m":
        return None
    rows = con.execute(
        "SELECT timestamp, close FROM ohlcv_data WHERE symbol = ? AND timeframe = '1m' ORDER BY timestamp",
        [symbol]).fetchnumpy()
    times, closes = rows["timestamp"], rows["close"]
    n = len(times)
    if n == 0 or n != (int(times[-1]) - int(times[0])) // 60_000 + 1:
        return None  # empty, or with gaps: a demo set has none
    for seed in DEMO_SEEDS:
        demo = demo_candles(symbol=symbol, start=int(times[0]), days=n / 1440, seed=seed, timeframe="1m")
        if len(demo) == n and np.array_equal(demo["close"].to_numpy(dtype=np.float64), closes):
            return seed
    return None


def _runs_row(con, run_id: str) -> dict[str, Any]:
    cursor = con.execute("SELECT * FROM runs WHERE run_id = ?", [run_id])
    row = cursor.fetchone()
    if row is None:
        raise ConfigError(f"no run {run_id!r} in the runs table")
    return dict(zip([d[0] for d in cursor.description], row))


def data_table(con, config, *, db_path: str | Path, fingerprint: str | None = None,
               demo_written: bool = False):
    """What the run replayed, one row per symbol (a DataFrame; see the module doc).

    ``con`` is a connection to the candle database ``db_path``; the
    ``fingerprint`` is the run's (``runs.data_fingerprint``).
    """
    import pandas as pd

    from ettlib.timeframes import timeframe_ms

    base = config.base_timeframe
    step = timeframe_ms(base)
    lo = config.start if config.start is not None else -(2**62)
    hi = config.end if config.end is not None else 2**62
    records = []
    for symbol in config.symbols:
        n, first, last = con.execute(
            "SELECT count(*), min(timestamp), max(timestamp) FROM ohlcv_data"
            " WHERE symbol = ? AND timeframe = ? AND timestamp BETWEEN ? AND ?", [symbol, base, lo, hi],
        ).fetchone()
        expected = 0 if first is None else (int(last) - int(first)) // step + 1
        seed = demo_seed(con, symbol, base)
        source = "synthetic demo set" + (f" (seed {seed})" if seed is not None else "")
        if seed is None:
            source = "stored candles (not the demo set)"
        if demo_written:
            source += ", written by this report"
        records.append({
            "symbol": symbol, "base timeframe": base, "model timeframe": config.timeframe,
            "first candle (UTC)": iso_utc(first), "last candle (UTC)": iso_utc(last),
            "candles": int(n), "missing candles (gaps)": int(expected - n), "data": source,
            "source file": str(db_path), "fingerprint": fingerprint or "-",
        })
    table = pd.DataFrame.from_records(records).set_index("symbol")
    return table


def parameters_table(values: Mapping[str, Any], defaults: Mapping[str, Any], help_texts: Mapping[str, str]):
    """Every parameter's value, its default and what it does (a DataFrame indexed by name).

    >>> t = parameters_table({"seed": 3, "lr": 0.1}, {"seed": 0, "lr": 0.1}, {"seed": "the seed"})
    >>> t.loc["seed", "value"], t.loc["seed", "changed"], t.loc["lr", "changed"]
    ('3', 'yes', '')
    """
    import pandas as pd

    rows = []
    for name, value in values.items():
        default = defaults.get(name, value)
        rows.append({"parameter": name, "value": _show(value), "default": _show(default),
                     "changed": "yes" if _normal(value) != _normal(default) else "",
                     "what it does": help_texts.get(name, "")})
    return pd.DataFrame.from_records(rows).set_index("parameter")


def _normal(value):
    return list(value) if isinstance(value, tuple) else value


def _show(value) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(map(str, value)) + "]"
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True)
    return str(value)


def manifest_table(con, run_id: str, *, db_path: str | Path | None = None):
    """The run's manifest (a one-column DataFrame indexed by field; see the module doc)."""
    import pandas as pd

    row = _runs_row(con, run_id)
    env = json.loads(row.get("environment") or "{}")
    dirty = row.get("git_dirty")
    fields = {
        "run id": row["run_id"], "status": row["status"], "seed": row.get("seed"),
        "data fingerprint": row.get("data_fingerprint"), "results database": str(db_path or ""),
        "git commit": row.get("git_commit") or "(not a git checkout)",
        "git tree": {True: "dirty (uncommitted changes)", False: "clean"}.get(dirty, "unknown"),
        "ettlib version": row.get("package_version"),
    }
    for name in ("python", "torch", "river", "duckdb", "numpy", "pandas"):
        fields[f"{name} version"] = env.get(name) or ("(not recorded)" if not env else "(not installed)")
    for name in ("started_at", "finished_at"):
        moment = row.get(name)
        fields[name.replace("_at", "") + " (UTC)"] = "-" if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    wall = row.get("wall_s")
    fields["wall time"] = "-" if wall is None else f"{wall:.1f} s"
    if row.get("error"):
        fields["error"] = row["error"]
    return pd.DataFrame({"value": [str(v) for v in fields.values()]}, index=pd.Index(list(fields), name="field"))
