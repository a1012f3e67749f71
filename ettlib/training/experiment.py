"""Run an experiment: replay, predict, learn online, score prequentially, record.

:func:`run_experiment` wires the parts of ettlib together for one
:class:`~ettlib.training.config.ExperimentConfig`:

1. open the candle store (read-only when results go to a separate
   ``results_db``, as in a sweep) and write a ``runs`` manifest with status
   ``'running'`` (config JSON, data fingerprint, package version, git commit,
   seed);
2. build the adapter (the model) and its baselines from the registry, a
   :class:`~ettlib.data_provider.DataProvider`, an
   :class:`~ettlib.coordinator.InferenceTrainingCoordinator` (``strict``: an
   adapter that raises fails the run) and, per symbol, an
   :class:`~ettlib.training.inference_loop.InferenceLoop` and a
   :class:`~ettlib.training.metrics.PrequentialScorer`;
3. replay ``[start, end]`` with :class:`~ettlib.replay.ReplayEngine`: at each
   instant the model first learns from what just became known, then predicts;
4. flush the adapter, close the coordinator and finish the manifest with
   the metrics, the wall time and status ``'completed'``.  Every coordinator
   flush (every ``persist_every`` events, and the last one at close) writes
   the frames, the delivered pairs and each learned pair's loss into
   ``training_events`` (the adapter's rows; the scorer's rows carry each
   prediction's absolute close error per model in ``metrics``).

Every score is prequential: a prediction is scored when its truth arrives,
and it was made -- frozen into its frame -- before the model could learn
from that truth.  Baselines (``persistence``, ``frozen``: the same
Transformer, same seed, never trained) predict on the same windows at the
same steps.

A run that raises keeps what it had: the coordinator's buffered frames and
pairs are flushed, learned losses are written, the manifest gets status
``'failed'``, the error and the partial metrics, and
:class:`ExperimentError` (carrying ``run_id`` and the partial
:class:`ExperimentResult`) is raised from the original exception.

The same config and seed give identical metrics and identical
``training_events`` rows (up to ``run_id``): replay, ids, batching and the
model's randomness are all deterministic.

Resume
------
A run whose process dies (SIGKILL, a lost machine) keeps status
``'running'`` and, in the store, everything of its last coordinator flush,
committed in one transaction: frames, delivered pairs with their learned
losses, the coordinator's checkpoint, and two subscriber states -- the
adapter's (:meth:`~ettlib.training.adapters.TrainingAdapter.checkpoint_state`:
weights, optimizer, queued pairs, undrained results) and the run's own
(``prequential``: the prequential scores so far, as JSON, and the inference
loops' step counters).  ``run_experiment(config, run_id=..., resume=True)``
(``ett run --resume RUN_ID``) checks that the run is resumable (status
``'running'``, the same config but for ``db_path``/``results_db``/
``checkpoint``, the same candles), builds everything as a new run would,
gets both states back as the adapter and the scorer subscribe, and replays
from the checkpoint's ``resume_time``.  The finished run has the
``training_events``, frames, final weights and metrics of an uninterrupted
run (``tests/test_experiment_resume.py`` kills one, interrupts its resume
with Ctrl-C, and resumes it again to show it).  The
metrics' pair counts and ``pair_losses`` are read back from
``training_events``, so they cover the whole run; ``counters`` and
``wall_s`` are the resumed process's own.  Baselines never learn, so they
have no state.  A run stopped by Ctrl-C (``KeyboardInterrupt``) gets status
``'interrupted'`` and keeps its last commit as it is (nothing buffered since
is written), so it resumes exactly like a killed one.  A run stopped by an
exception (status ``'failed'``) flushed its partial results in the middle of
an instant and cannot be resumed exactly: run it again.

Examples
--------
>>> config = ExperimentConfig(symbols=("ETH/USDT",), adapter="persistence", baselines=())
>>> config.adapter, config.timeframes
('persistence', ['1m'])
"""

from __future__ import annotations

import json
import subprocess
import time
import traceback
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from ettlib.db import registered
from ettlib.errors import ConfigError, EttError
from ettlib.times import to_ms_or_none
from ettlib.training import registry
from ettlib.training.config import ExperimentConfig
from ettlib.training.metrics import PrequentialScorer

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "ExperimentError",
    "run_experiment",
    "build_adapter",
    "data_fingerprint",
    "parse_overrides",
    "config_from_sources",
    "add_run_arguments",
    "run_command",
    "load_run_config",
]

_SEQUENCE_ADAPTERS = ("transformer", "frozen")


class ExperimentError(EttError):
    """An experiment run failed; its partial results and manifest were kept.

    Attributes ``run_id`` and ``result`` (the partial
    :class:`ExperimentResult`, status ``'failed'``).
    """

    def __init__(self, message: str, *, run_id: str, result: ExperimentResult | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.result = result


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """What a run produced.

    ``metrics`` is flat (``"model.mae_close"``, ``"persistence.mae_close"``,
    ``"frames"``, ...: the JSON of ``runs.metrics``); ``scores`` the same per
    model as nested dicts; ``pair_losses`` the loss of each learned pair in
    learning order; ``counters`` the coordinator's counters.
    """

    run_id: str
    status: str
    config: ExperimentConfig
    metrics: dict
    scores: dict
    pair_losses: tuple
    wall_s: float
    data_fingerprint: str
    counters: dict = field(default_factory=dict)
    error: str | None = None
    checkpoint: str | None = None

    def summary(self) -> str:
        """A small text table: each model's scores side by side."""
        names = list(self.scores)
        rows = ["mae_close", "mae_close_first_half", "mae_close_second_half",
                "direction_accuracy", "pivot_accuracy", "pivot_majority_accuracy", "n_candles",
                "n_pivot_pairs"]
        width = max(12, *(len(n) for n in names)) if names else 12
        lines = [f"run {self.run_id} ({self.status}, {self.wall_s:.1f} s)",
                 f"{'':24}" + "".join(f"{n:>{width + 2}}" for n in names)]
        for row in rows:
            cells = []
            for n in names:
                value = self.scores[n].get(row)
                cells.append(f"{'-' if value is None else format(value, '.6g'):>{width + 2}}")
            lines.append(f"{row:24}" + "".join(cells))
        for key in ("frames", "candle_pairs", "pivot_pairs", "train_steps", "mean_pair_loss"):
            if key in self.metrics:
                lines.append(f"{key:24}{self.metrics[key]}")
        return "\n".join(lines)


# ---------------------------------------------------------------------------
# Pieces
# ---------------------------------------------------------------------------


def build_adapter(name: str, config: ExperimentConfig, *, learn_params: bool = True):
    """The adapter ``name`` as the config asks for it.

    Sequence models (``transformer``, ``frozen``) read every window column and
    get ``context_length``; the model's ``adapter_params`` apply to the model
    and to the ``frozen`` baseline when the model is a Transformer (so the
    frozen baseline is the model before any learning).
    """
    params = {"seed": config.seed, "batch_size": config.batch_size}
    if name in _SEQUENCE_ADAPTERS:
        params.update(context_length=config.context_length, features=config.columns)
    if learn_params and (name == config.adapter or (
            name == "frozen" and config.adapter in _SEQUENCE_ADAPTERS)):
        params.update(config.adapter_params)
    try:
        return registry.create(name, **params)
    except TypeError as err:
        raise ConfigError(f"adapter {name!r} refused its parameters: {err}") from None


def data_fingerprint(storage, config: ExperimentConfig) -> str:
    """SHA-256 over each symbol's base candles in the range (count, bounds, row hashes)."""
    import hashlib

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


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, timeout=5, check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def _package_version() -> str:
    try:
        from importlib.metadata import version

        return version("ettlib")
    except Exception:  # not installed: the source tree's version
        import ettlib

        return getattr(ettlib, "__version__", "unknown")


class _SplitStorage:
    """Windows from the candle store, writes to the results store (a sweep's run file)."""

    def __init__(self, candles, results):
        self.con = results.con
        self.path = results.path
        self.read_window = candles.read_window
        self.read_windows = candles.read_windows


def _now_utc() -> datetime:
    # Manifest bookkeeping only (started_at / finished_at); never under replay.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _write_manifest(con, run_id, config, *, status, fingerprint, started_at, finished_at=None,
                    wall_s=None, metrics=None, error=None, version=None, commit=None) -> None:
    con.execute("DELETE FROM runs WHERE run_id = ?", [run_id])
    con.execute(
        "INSERT INTO runs (run_id, status, config, data_fingerprint, package_version, git_commit,"
        " seed, started_at, finished_at, wall_s, metrics, error)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        [run_id, status, config.to_json(), fingerprint, version, commit, config.seed, started_at,
         finished_at, wall_s, None if metrics is None else json.dumps(metrics, sort_keys=True), error],
    )


def _write_pair_losses(con, run_id: str, subscriber: str, results) -> int:
    """Set ``loss``/``metrics`` of the adapter's delivered pairs in ``training_events``."""
    if not results:
        return 0
    import pyarrow as pa

    table = pa.table({
        "inference_id": [str(r.inference_id) for r in results],
        "event_key": [r.event_key for r in results],
        "loss": [float(r.loss) for r in results],
        "metrics": [json.dumps(r.metrics, sort_keys=True) for r in results],
    })
    with registered(con, "_ett_pair_losses", table):
        con.execute(
            "UPDATE training_events SET loss = p.loss, metrics = p.metrics FROM _ett_pair_losses p"
            " WHERE training_events.run_id = ? AND training_events.subscriber = ?"
            " AND training_events.inference_id = p.inference_id"
            " AND training_events.event_key = p.event_key",
            [run_id, subscriber],
        )
    return len(results)


class _Scoring:
    """Per-pair prequential errors, returned to the coordinator as the pair's metrics.

    Also the run's own state in the coordinator's flush transaction (see
    "Resume" in the module doc): at each flush :meth:`checkpoint` writes the
    adapter's newly learned losses into their ``training_events`` rows and
    forgets predictions that can no longer be scored; then
    :meth:`checkpoint_state` saves the scores and the inference loops'
    counters as JSON -- without the absolute errors, which grow with the run
    and are in this subscriber's own ``training_events`` rows (committed in
    the same transaction): :meth:`restore_state` reads them back from ``con``.
    """

    subscriber_name = "prequential"
    state_format = 2

    def __init__(self, scorer: PrequentialScorer, adapter=None, coordinator=None, run_id: str = "",
                 con=None):
        self.scorer = scorer
        self.adapter = adapter
        self.coordinator = coordinator
        self.run_id = run_id
        self.con = con
        self.loops: list = []
        self._loop_counters: dict = {}  # restored, applied by add_loop

    def add_loop(self, loop) -> None:
        """Track ``loop``'s counters (restored ones first, on a resume)."""
        for name, value in self._loop_counters.get(loop.symbol, {}).items():
            setattr(loop, name, int(value))
        self.loops.append(loop)

    def record_learned(self, con) -> int:
        """Drain the adapter's results and write their losses on ``con``; returns how many."""
        if self.adapter is None:
            return 0
        return _write_pair_losses(con, self.run_id, self.adapter.subscriber_name,
                                  self.adapter.drain_results())

    # -- the coordinator's state protocol --------------------------------------

    def checkpoint(self, con) -> None:
        self.record_learned(con)
        if self.coordinator is not None:
            self.scorer.retain(r.inference_id for r in self.coordinator.retained_frames())

    def checkpoint_state(self) -> bytes:
        return json.dumps({
            "format": self.state_format,
            "scorer": self.scorer.state_dict(errors=False),
            "loops": {loop.symbol: {name: getattr(loop, name) for name in _LOOP_COUNTERS}
                      for loop in self.loops},
        }).encode()

    def restore_state(self, state: bytes) -> None:
        try:
            data = json.loads(state)
        except ValueError as exc:
            raise ConfigError(f"the stored experiment state is not JSON: {exc}") from exc
        if not isinstance(data, dict) or data.get("format") != self.state_format:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(f"not an experiment state of format {self.state_format} (found {found!r})")
        self.scorer.load_state_dict(data["scorer"], self._recorded_errors())
        self._loop_counters = data["loops"]

    def _recorded_errors(self) -> dict[str, list[float]]:
        """Each model's absolute errors so far, from this subscriber's committed rows, in order."""
        errors: dict[str, list[float]] = {name: [] for name in self.scorer.targets}
        rows = self.con.execute(
            "SELECT metrics FROM training_events WHERE run_id = ? AND subscriber = ?"
            " AND metrics IS NOT NULL ORDER BY seq", [self.run_id, self.subscriber_name],
        ).fetchall()
        prefix = "abs_error_close."
        for (text,) in rows:
            for key, value in json.loads(text).items():
                if key.startswith(prefix):
                    errors.setdefault(key[len(prefix):], []).append(value)
        return errors

    def on_candle_completion(self, event, inference_ref):
        if inference_ref is None:
            return None
        before = {n: (len(s.abs_errors), s.direction_total, s.direction_hits)
                  for n, s in self.scorer.scores.items()}
        self.scorer.on_candle_completion(event, inference_ref)
        out = {}
        for n, s in self.scorer.scores.items():
            if len(s.abs_errors) > before[n][0]:
                out[f"abs_error_close.{n}"] = s.abs_errors[-1]
            if s.direction_total > before[n][1]:  # per-pair direction hit (1.0 / 0.0), for rolling accuracy
                out[f"direction_hit.{n}"] = float(s.direction_hits - before[n][2])
        return out or None

    def on_pivot_event(self, event, inference_refs):
        self.scorer.on_pivot_event(event, inference_refs)
        return None


#: InferenceLoop counters that are part of a run's state (``stride``, ``train_every`` phase).
_LOOP_COUNTERS = ("steps_seen", "frames_registered", "cache_misses")


def _flat_metrics(scores: dict, extra: dict) -> dict:
    flat = dict(extra)
    for name, values in scores.items():
        for key, value in values.items():
            flat[f"{name}.{key}"] = value
    return flat


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


def run_experiment(config, *, progress: bool = False, run_id: str | None = None,
                   resume: bool = False, persist_every: int = 10_000) -> ExperimentResult:
    """Run one experiment (see the module doc); returns its :class:`ExperimentResult`.

    Parameters
    ----------
    config
        An :class:`ExperimentConfig`, or a mapping for :meth:`ExperimentConfig.from_dict`.
    progress
        Show the replay's progress bar.
    run_id
        Key of the run's rows (default: ``run_name`` or ``"run"`` plus a random suffix).
    resume
        Continue the run ``run_id`` from its last commit (status
        ``'running'``: its process was killed; or ``'interrupted'``: Ctrl-C); ``config`` must be the
        run's (:func:`load_run_config`; only ``db_path``, ``results_db`` and
        ``checkpoint`` may differ) and the candles unchanged.  See "Resume"
        in the module doc.
    persist_every
        Commit frames, pairs and the run's state every this many events (at
        the next instant): what a crash can lose, and what a resume redoes.

    Raises
    ------
    ExperimentError
        When anything fails after the manifest was written; the manifest
        (status ``'failed'``) and the partial results stay in the store.
        A ``KeyboardInterrupt`` (Ctrl-C, a kernel interrupt in Jupyter) is
        re-raised as it is, after marking the run ``'interrupted'``.
    ConfigError
        Before any work, for a bad config, or a run that cannot be resumed.
    """
    from ettlib.coordinator import InferenceTrainingCoordinator
    from ettlib.data_provider import DataProvider
    from ettlib.replay import ReplayEngine
    from ettlib.store import DuckDBStorage
    from ettlib.training.inference_loop import InferenceLoop

    if not isinstance(config, ExperimentConfig):
        config = ExperimentConfig.from_dict(config)
    if resume and not run_id:
        raise ConfigError("resume=True needs the run_id of the run to resume")
    if isinstance(persist_every, bool) or not isinstance(persist_every, int) or persist_every < 1:
        raise ConfigError(f"persist_every must be a positive int, got {persist_every!r}")
    run_id = run_id or f"{config.run_name or 'run'}-{uuid.uuid4().hex[:12]}"
    separate = config.results_db is not None and config.results_db != config.db_path
    if not Path(config.db_path).is_file():
        raise ConfigError(f"{config.db_path}: no such database (ingest candles first, e.g. `ett demo`)")
    candles = DuckDBStorage(config.db_path, read_only=separate)
    results = DuckDBStorage(config.results_db) if separate else candles
    storage = _SplitStorage(candles, results) if separate else candles
    try:  # bad adapter parameters (or a run that cannot resume) are config errors, before any manifest
        adapter = build_adapter(config.adapter, config)
        baselines = {name: build_adapter(name, config) for name in config.baselines}
        fingerprint = data_fingerprint(candles, config)
        started_at = _resumable(results, run_id, config, fingerprint) if resume else _now_utc()
    except BaseException:
        if separate:
            results.close()
        candles.close()
        raise
    clock_start = time.perf_counter()
    version, commit = _package_version(), _git_commit()
    manifest = dict(fingerprint=fingerprint, started_at=started_at, version=version, commit=commit)
    _write_manifest(results.con, run_id, config, status="running", **manifest)

    scorer = coordinator = scoring = None
    replaying = False
    extra: dict = {}
    threads = torch_threads_before = None
    if config.torch_threads is not None:
        import torch

        threads, torch_threads_before = torch, torch.get_num_threads()
        torch.set_num_threads(config.torch_threads)
    try:
        try:
            start, end = _replay_range(candles, config)
            provider = DataProvider(candles, pivot_levels=config.pivot_levels, on_error="raise")
            coordinator = InferenceTrainingCoordinator(
                provider, storage, pivot_lookback=config.pivot_lookback, columns=config.columns,
                run_id=run_id, strict=True, replace=not resume, resume=resume,
                persist_every=persist_every,
            )
            targets = {"model": adapter.targets, **{n: b.targets for n, b in baselines.items()}}
            scorer = PrequentialScorer(targets)
            scoring = _Scoring(scorer, adapter, coordinator, run_id, results.con)
            # On a resume, each subscriber's stored state comes back as it subscribes.
            for symbol in config.symbols:
                adapter.attach(coordinator, symbol, config.timeframe, config.pivot_types)
                coordinator.subscribe_to_candle_completion(scoring, symbol, config.timeframe)
                coordinator.subscribe_to_pivot_events(scoring, symbol, config.timeframe,
                                                      config.pivot_types)
                loop = InferenceLoop(
                    adapter, coordinator, symbol=symbol, timeframe=config.timeframe,
                    context_length=config.context_length, columns=config.columns,
                    stride=config.stride, train_every=config.train_every, storage=candles,
                    companions=baselines,
                    on_prediction=lambda ref, window, preds: scorer.record(
                        ref, last_close=float(window.column("close")[-1]), predictions=preds),
                )
                loop.attach(provider)
                scoring.add_loop(loop)
            engine = ReplayEngine(
                candles, provider, config.symbols, start, end,
                base_timeframe=config.base_timeframe, timeframes=config.timeframes,
                pivot_timeframes=(config.timeframe,), pivot_levels=config.pivot_levels,
                progress=progress, cache_warmup=config.context_length + 1,
                cache_columns=config.columns,
            )
            coordinator.cache = engine.cache
            for loop in scoring.loops:
                loop.windows = engine.cache
            if coordinator.resume_time is not None:  # events before it are in the restored state
                engine.seek(coordinator.resume_time - 1)
            replaying = True
            engine.run()
            adapter.flush()
            extra = {
                "frames": sum(loop.frames_registered for loop in scoring.loops),
                "cache_misses": sum(loop.cache_misses for loop in scoring.loops),
            }
            coordinator.close()  # the last flush also writes the last learned losses
            scoring.record_learned(results.con)  # (none left: the flush drained them)
            if config.checkpoint:
                adapter.save(config.checkpoint)
            counters = coordinator.counters()
            scores = scorer.metrics()
            learned = _learned_pairs(results.con, run_id, adapter.subscriber_name)
            extra.update(_pair_counts(learned), train_steps=getattr(adapter, "steps", 0),
                         failed_pairs=counters.failed)
            metrics = _flat_metrics(scores, extra)
            wall_s = time.perf_counter() - clock_start
            _write_manifest(results.con, run_id, config, status="completed",
                            finished_at=_now_utc(), wall_s=wall_s, metrics=metrics, **manifest)
        except BaseException as exc:
            if resume and not replaying:  # e.g. a state that does not restore: still resumable
                raise
            _fail(exc, config, run_id, results, adapter, scorer, coordinator, scoring, extra,
                  clock_start, manifest)
            raise  # not reached: _fail raises
    finally:
        if threads is not None:
            threads.set_num_threads(torch_threads_before)
        if separate:
            results.close()
        candles.close()
    return ExperimentResult(
        run_id, "completed", config, metrics, scores, tuple(loss for _, loss in learned), wall_s,
        fingerprint, counters=_counters_dict(counters), checkpoint=config.checkpoint,
    )


#: Config fields a resume may change: where things are, not what is computed.
_RESUME_MAY_CHANGE = ("db_path", "results_db", "checkpoint")


def load_run_config(db_path, run_id: str) -> ExperimentConfig:
    """The config stored in the ``runs`` manifest of ``run_id`` in ``db_path``.

    Raises :class:`~ettlib.errors.ConfigError` when the file or the run is not there.
    """
    from ettlib.store import DuckDBStorage

    if not Path(db_path).is_file():
        raise ConfigError(f"{db_path}: no such database")
    with DuckDBStorage(db_path, read_only=True) as storage:
        row = storage.con.execute("SELECT config FROM runs WHERE run_id = ?", [run_id]).fetchone()
    if row is None:
        raise ConfigError(f"{db_path}: no run {run_id!r} in the runs table")
    return ExperimentConfig.from_json(row[0])


#: Statuses of a run that ``resume=True`` continues.
_RESUMABLE = ("running", "interrupted")


def _resumable(results, run_id: str, config: ExperimentConfig, fingerprint: str):
    """Check that ``run_id`` can be resumed with ``config``; returns its ``started_at``."""
    row = results.con.execute(
        "SELECT status, config, data_fingerprint, started_at FROM runs WHERE run_id = ?", [run_id]
    ).fetchone()
    if row is None:
        raise ConfigError(f"{results.path}: no run {run_id!r} to resume")
    status, stored_json, stored_fingerprint, started_at = row
    if status == "completed":
        raise ConfigError(f"run {run_id!r} is already completed; there is nothing to resume")
    if status not in _RESUMABLE:
        raise ConfigError(
            f"run {run_id!r} has status {status!r}: only a run whose process was killed (status "
            "'running') or interrupted with Ctrl-C ('interrupted') can be resumed; a run stopped "
            "by an exception flushed its partial results in the middle of an instant -- run it "
            "again without resume"
        )
    stored = ExperimentConfig.from_json(stored_json).to_dict()
    given = config.to_dict()
    differ = [k for k in given if k not in _RESUME_MAY_CHANGE and given[k] != stored.get(k)]
    if differ:
        raise ConfigError(
            f"run {run_id!r} was started with another config; a resume must use the same one "
            "(only " + ", ".join(_RESUME_MAY_CHANGE) + " may change): "
            + "; ".join(f"{k}: stored {stored.get(k)!r}, given {given[k]!r}" for k in differ)
        )
    if stored_fingerprint != fingerprint:
        raise ConfigError(
            f"run {run_id!r}: the candles in {config.db_path} changed since the run started "
            "(data fingerprint differs); it cannot be resumed exactly"
        )
    return started_at


def _replay_range(candles, config: ExperimentConfig) -> tuple[int, int]:
    bounds = [candles.time_range(s, config.base_timeframe) for s in config.symbols]
    missing = [s for s, b in zip(config.symbols, bounds) if b is None]
    if missing:
        raise ConfigError(
            f"no {config.base_timeframe} candles for {', '.join(missing)} in {config.db_path}"
        )
    start = config.start if config.start is not None else min(b[0] for b in bounds)
    end = config.end if config.end is not None else max(b[1] for b in bounds)
    return start, end


def _learned_pairs(con, run_id: str, subscriber: str) -> list[tuple[str, float]]:
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


def _pair_counts(learned) -> dict:
    """Counts and mean loss of ``(event kind, loss)`` pairs."""
    candle = [loss for kind, loss in learned if kind == "candle"]
    pivot = [loss for kind, loss in learned if kind == "pivot"]
    return {
        "candle_pairs": len(candle),
        "pivot_pairs": len(pivot),
        "mean_pair_loss": (sum(candle) + sum(pivot)) / len(learned) if learned else None,
    }


def _counters_dict(counters) -> dict:
    from dataclasses import asdict

    return asdict(counters) if counters is not None else {}


def _fail(exc, config, run_id, results, adapter, scorer, coordinator, scoring, extra, clock_start,
          manifest):
    """Keep the partial state, mark the run failed, raise ExperimentError.

    A ``KeyboardInterrupt`` (Ctrl-C) instead keeps the last commit untouched,
    marks the run ``'interrupted'`` (resumable) and is re-raised.
    """
    interrupted = isinstance(exc, KeyboardInterrupt)
    error = f"{type(exc).__name__}: {exc}"
    notes = []
    if scoring is None:
        scoring = _Scoring(scorer, adapter, None, run_id)
    counters = None
    try:
        if coordinator is not None:
            # flushes buffered frames, pairs and learned losses (idempotent); not when
            # interrupted: the last commit is a consistent state to resume from
            coordinator.close(flush=not interrupted)
            counters = coordinator.counters()
        if not interrupted:
            scoring.record_learned(results.con)  # what the flush did not write
    except Exception as inner:  # keep going: the manifest matters most
        notes.append(f"while saving partial results: {type(inner).__name__}: {inner}")
    scores = scorer.metrics() if scorer is not None else {}
    try:
        learned = _learned_pairs(results.con, run_id, adapter.subscriber_name) if adapter else []
    except Exception as inner:
        learned = []
        notes.append(f"while reading the learned losses: {type(inner).__name__}: {inner}")
    metrics = _flat_metrics(scores, {**extra, **_pair_counts(learned)})
    wall_s = time.perf_counter() - clock_start
    detail = "".join(traceback.format_exception(exc)) + "".join(f"\n{n}" for n in notes)
    status = "interrupted" if interrupted else "failed"
    _write_manifest(results.con, run_id, config, status=status, finished_at=_now_utc(),
                    wall_s=wall_s, metrics=metrics, error=detail, **manifest)
    result = ExperimentResult(
        run_id, status, config, metrics, scores, tuple(loss for _, loss in learned), wall_s,
        manifest["fingerprint"], counters=_counters_dict(counters), error=error,
    )
    if not isinstance(exc, Exception):  # KeyboardInterrupt and the like: recorded, re-raised
        raise exc
    raise ExperimentError(
        f"experiment run {run_id!r} failed: {error} (partial results and the manifest are in "
        f"{results.path}, runs.status = 'failed')",
        run_id=run_id, result=result,
    ) from exc


# ---------------------------------------------------------------------------
# Command line (`ett run`)
# ---------------------------------------------------------------------------


def parse_overrides(pairs) -> dict:
    """``["key=value", ...]`` -> dict; values are read as JSON when they parse, else strings.

    >>> parse_overrides(["context_length=32", "symbols=[\\"A/B\\"]", "adapter=river"])
    {'context_length': 32, 'symbols': ['A/B'], 'adapter': 'river'}
    """
    out = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def config_from_sources(config_file=None, overrides=None, **values) -> ExperimentConfig:
    """A config from a JSON/YAML file, then ``values``, then ``overrides`` (later wins)."""
    merged = ExperimentConfig.from_file(config_file).to_dict() if config_file else {}
    merged.update({k: v for k, v in values.items() if v is not None})
    merged.update(overrides or {})
    return ExperimentConfig.from_dict(merged)


def add_run_arguments(parser) -> None:
    """Add ``ett run``'s arguments to an ``argparse`` (sub)parser."""
    parser.add_argument("config", nargs="?", help="experiment config file (.json, .yaml)")
    parser.add_argument("--db", dest="db_path", help="candle database (overrides the config's db_path)")
    parser.add_argument("--adapter", help="adapter name (transformer, river, persistence, frozen)")
    parser.add_argument("--symbol", dest="symbols", action="append", help="symbol (repeatable)")
    parser.add_argument("--start", help="start (epoch ms or ISO date, UTC)")
    parser.add_argument("--end", help="end (epoch ms or ISO date, UTC)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--results-db", dest="results_db", help="write results to this file")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="any ExperimentConfig field; VALUE is JSON when it parses")
    parser.add_argument("--run-id", help="key of the run's rows (default: run_name or 'run' + a random suffix)")
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="continue a run that was killed or interrupted (Ctrl-C), from its last commit "
                             "(its config is read from the runs table; --db/--results-db say where)")
    parser.add_argument("--persist-every", type=int, default=10_000, metavar="N",
                        help="commit frames, pairs and the run's state every N events (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def run_command(args, out=print) -> int:
    """What ``ett run`` does with :func:`add_run_arguments`' arguments; returns 0 (130 on Ctrl-C).

    The run id goes to stderr first (``ett run --resume RUN_ID`` continues
    a run that was killed or interrupted; on Ctrl-C the command to do so is
    printed).  With ``--resume`` and no config file, the config
    is the run's stored one, with the flags given on top (run_experiment
    refuses changes other than locations).

    Raises :class:`~ettlib.errors.EttError` (the CLI prints it as one line).
    """
    import sys

    start = to_ms_or_none(args.start, "start")
    end = to_ms_or_none(args.end, "end")
    values = dict(db_path=args.db_path, adapter=args.adapter, symbols=args.symbols, start=start,
                  end=end, seed=args.seed, results_db=args.results_db)
    overrides = parse_overrides(args.param)
    if args.resume and args.run_id and args.run_id != args.resume:
        raise ConfigError(f"--run-id {args.run_id!r} and --resume {args.resume!r} name different runs")
    if args.resume and not args.config:
        where = args.results_db or args.db_path or ExperimentConfig().db_path
        stored = load_run_config(where, args.resume).to_dict()
        stored.update({k: v for k, v in values.items() if v is not None})
        stored.update(overrides)
        config = ExperimentConfig.from_dict(stored)
    else:
        config = config_from_sources(args.config, overrides, **values)
    run_id = args.resume or args.run_id or f"{config.run_name or 'run'}-{uuid.uuid4().hex[:12]}"
    verb = "resuming" if args.resume else "run id"
    print(f"ett run: {verb} {run_id}", file=sys.stderr, flush=True)
    try:
        result = run_experiment(config, progress=not args.no_progress, run_id=run_id,
                                resume=bool(args.resume), persist_every=args.persist_every)
    except KeyboardInterrupt:
        where = f" --db {config.db_path}" if not config.results_db else f" --results-db {config.results_db}"
        print(f"ett run: interrupted; continue with: ett run --resume {run_id}{where}",
              file=sys.stderr, flush=True)
        return 130  # the shell's code for SIGINT
    out(json.dumps(result.metrics, sort_keys=True) if args.json else result.summary())
    return 0
