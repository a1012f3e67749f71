"""The ``runs`` table: experiment manifests, what a resume checks, and what a run learned.

A run's manifest row says what it takes to reproduce it: the config (JSON),
the data's fingerprint, the package version, the git commit, the seed, the
timings, the status (``running``, ``completed``, ``interrupted``,
``failed``), the metrics and the error.  It is written when the run starts
(status ``running``) and rewritten when it ends.

Examples
--------
>>> from ettlib.store import DuckDBStorage
>>> from ettlib.experiment.config import ExperimentConfig
>>> store = DuckDBStorage(":memory:")
>>> manifest = Manifest("r1", ExperimentConfig(adapter="persistence", baselines=()), "f" * 32,
...                     started_at=None, version="0.1.0", commit=None)
>>> write_manifest(store.con, manifest, status="running")
>>> store.con.execute("SELECT status, seed FROM runs").fetchone()
('running', 0)
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ettlib.errors import ConfigError
from ettlib.experiment.config import ExperimentConfig

__all__ = [
    "Manifest",
    "RESUMABLE",
    "write_manifest",
    "results_location",
    "load_run_config",
    "check_resumable",
    "learned_pairs",
    "pair_counts",
    "data_fingerprint",
    "git_commit",
    "package_version",
    "git_dirty",
    "environment",
    "ENVIRONMENT_PACKAGES",
    "now_utc",
]

#: The packages whose versions a run's manifest records (``environment``), besides Python.
ENVIRONMENT_PACKAGES = ("ettlib", "torch", "river", "duckdb", "numpy", "pandas")

#: Statuses of a run that a resume continues.
RESUMABLE = ("running", "interrupted")

#: Config fields a resume may change: where things are, not what is computed.
RESUME_MAY_CHANGE = ("db_path", "results_db", "checkpoint")


@dataclass(frozen=True, slots=True)
class Manifest:
    """What identifies a run: its id, config, data fingerprint, start time and code version."""

    run_id: str
    config: ExperimentConfig
    fingerprint: str
    started_at: datetime | None
    version: str
    commit: str | None


def now_utc() -> datetime:
    """The wall clock, for manifest bookkeeping only (``started_at``/``finished_at``; never under replay)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def write_manifest(con, manifest: Manifest, *, status: str, finished_at=None, wall_s=None,
                   metrics=None, error=None) -> None:
    """Write (or rewrite) ``manifest``'s row of ``runs`` with ``status``."""
    con.execute("DELETE FROM runs WHERE run_id = ?", [manifest.run_id])
    con.execute(
        "INSERT INTO runs (run_id, status, config, data_fingerprint, package_version, git_commit,"
        " seed, started_at, finished_at, wall_s, metrics, error, git_dirty, environment)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [manifest.run_id, status, manifest.config.to_json(), manifest.fingerprint, manifest.version,
         manifest.commit, manifest.config.seed, manifest.started_at, finished_at, wall_s,
         None if metrics is None else json.dumps(metrics, sort_keys=True), error,
         git_dirty() if manifest.commit else None, json.dumps(environment(), sort_keys=True)],
    )


def results_location(config: ExperimentConfig, run_id: str, *, resume: bool = False) -> str | None:
    """The file run ``run_id`` writes its results to, or ``None`` for the candle store itself.

    ``config.results_db`` when given (``None`` when it is ``db_path``);
    else the run's own file beside the store,
    ``<store>.runs/<run id>.duckdb`` (:func:`~ettlib.store.catalog.runs_folder`),
    so that the store stays read-only and other processes may read it
    meanwhile; a ``:memory:`` store keeps its results.  A resumed run is
    looked for in the runs folder (a sweep names its files after its runs)
    and in the store itself (runs recorded by an earlier ettlib resume there).

    >>> results_location(ExperimentConfig(db_path="data/ett.duckdb"), "r1")
    'data/ett.runs/r1.duckdb'
    >>> results_location(ExperimentConfig(db_path=":memory:"), "r1") is None
    True
    """
    from ettlib.store.catalog import run_results_path, runs_folder

    if config.results_db is not None:
        return None if str(config.results_db) == str(config.db_path) else str(config.results_db)
    if str(config.db_path) == ":memory:":
        return None
    own = run_results_path(runs_folder(config.db_path), run_id)
    if resume and not own.exists():  # a sweep's run (its file named by the sweep), or one in the store
        from ettlib.store.catalog import RunCatalog

        with RunCatalog(config.db_path if Path(config.db_path).is_file() else None,
                        folder=runs_folder(config.db_path)) as catalog:
            found = catalog.find(run_id)
        return None if found is None or found == catalog.store else found.as_posix()
    return own.as_posix()


def load_run_config(db_path, run_id: str) -> ExperimentConfig:
    """The config stored in the ``runs`` manifest of ``run_id``, in ``db_path`` or a run file beside it.

    ``db_path`` is the store (its runs and those of its runs folder) or a
    run's own results file.  Raises :class:`~ettlib.errors.ConfigError` when
    neither the file nor the run is there.
    """
    from ettlib.store.catalog import reading_runs

    with reading_runs(db_path) as con:
        row = con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise ConfigError(f"{db_path}: no run {run_id!r} in its runs (nor in the run files beside it)")
    return ExperimentConfig.from_json(row[0])


def check_resumable(results, run_id: str, config: ExperimentConfig, fingerprint: str):
    """Check that ``run_id`` can be resumed with ``config``; returns its ``started_at``."""
    row = results.con.execute(
        "SELECT status, config, data_fingerprint, started_at FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()
    if row is None:
        raise ConfigError(f"{results.path}: no run {run_id!r} to resume")
    status, stored_json, stored_fingerprint, started_at = row
    if status == "completed":
        raise ConfigError(f"run {run_id!r} is already completed; there is nothing to resume")
    if status not in RESUMABLE:
        raise ConfigError(
            f"run {run_id!r} has status {status!r}: only a run whose process was killed (status "
            "'running') or interrupted with Ctrl-C ('interrupted') can be resumed; a run stopped "
            "by an exception flushed its partial results in the middle of an instant -- run it "
            "again without resume"
        )
    stored = ExperimentConfig.from_json(stored_json).to_dict()
    given = config.to_dict()
    differ = [k for k in given if k not in RESUME_MAY_CHANGE and given[k] != stored.get(k)]
    if differ:
        raise ConfigError(
            f"run {run_id!r} was started with another config; a resume must use the same one "
            "(only " + ", ".join(RESUME_MAY_CHANGE) + " may change): "
            + "; ".join(f"{k}: stored {stored.get(k)!r}, given {given[k]!r}" for k in differ)
        )
    if stored_fingerprint != fingerprint:
        raise ConfigError(
            f"run {run_id!r}: the candles in {config.db_path} changed since the run started "
            "(data fingerprint differs); it cannot be resumed exactly"
        )
    return started_at


def learned_pairs(con, run_id: str, subscriber: str) -> list[tuple[str, float]]:
    """``(event kind, loss)`` of every pair the adapter learned, in learning order.

    Read back from ``training_events`` (the losses are written there at each
    flush), so a resumed run has them all.  Learning order is delivery order
    (the adapter's queue is first in, first out): by ``seq``, then, for the
    frames of one pivot, by frame (ids from ``new_inference_id()`` grow with
    prediction time, the order the coordinator hands them over).
    """
    return [(kind, float(loss)) for kind, loss in con.execute(
        "SELECT event_kind, loss FROM training_events"
        " WHERE run_id = ? AND subscriber = ? AND metrics IS NOT NULL"
        " ORDER BY seq, TRY_CAST(inference_id AS BIGINT), inference_id",
        [run_id, subscriber],
    ).fetchall()]


def pair_counts(learned) -> dict:
    """Counts and mean loss of ``(event kind, loss)`` pairs.

    >>> pair_counts([("candle", 1.0), ("pivot", 3.0)])
    {'candle_pairs': 1, 'pivot_pairs': 1, 'mean_pair_loss': 2.0}
    """
    candle = [loss for kind, loss in learned if kind == "candle"]
    pivot = [loss for kind, loss in learned if kind == "pivot"]
    return {
        "candle_pairs": len(candle),
        "pivot_pairs": len(pivot),
        "mean_pair_loss": (sum(candle) + sum(pivot)) / len(learned) if learned else None,
    }


def data_fingerprint(storage, config: ExperimentConfig) -> str:
    """SHA-256 over each symbol's base candles in the range (count, bounds, row hashes)."""
    con = storage.con
    parts = []
    lo = config.start if config.start is not None else -(2**62)
    hi = config.end if config.end is not None else 2**62
    for symbol in config.symbols:
        row = con.execute(
            "SELECT count(*), min(timestamp), max(timestamp),"
            " bit_xor(hash(timestamp, open, high, low, close, volume))"
            " FROM ohlcv_data WHERE symbol = ? AND timeframe = ? AND timestamp BETWEEN ? AND ?",
            [symbol, config.base_timeframe, lo, hi],
        ).fetchone()
        parts.append([symbol, config.base_timeframe, *[None if v is None else int(v) for v in row]])
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:32]


def git_commit() -> str | None:
    """The commit of the ettlib source tree, or ``None`` outside a git checkout."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def package_version() -> str:
    """The installed ettlib's version (the source tree's when not installed)."""
    try:
        from importlib.metadata import version

        return version("ettlib")
    except Exception:  # not installed: the source tree's version
        import ettlib

        return getattr(ettlib, "__version__", "unknown")


def git_dirty() -> bool | None:
    """Whether the ettlib source tree has uncommitted changes (``None`` outside a git checkout)."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=10, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return bool(out.stdout.strip()) if out.returncode == 0 else None


def environment() -> dict[str, str | None]:
    """``{"python": ..., package: version or None}`` for :data:`ENVIRONMENT_PACKAGES`.

    >>> env = environment()
    >>> sorted(env) == sorted(("python",) + ENVIRONMENT_PACKAGES), env["python"].count(".") == 2
    (True, True)
    """
    import platform
    from importlib.metadata import PackageNotFoundError, version

    found: dict[str, str | None] = {"python": platform.python_version()}
    for name in ENVIRONMENT_PACKAGES:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = package_version() if name == "ettlib" else None
    return found
