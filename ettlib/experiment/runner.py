"""Run an experiment: replay, predict, learn online, score prequentially, record.

:func:`run_experiment` wires the parts of ettlib together for one
:class:`~ettlib.experiment.config.ExperimentConfig`:

1. open the candle store read-only -- the run's results go to its own
   file beside it, ``data/ett.runs/<run id>.duckdb`` for ``data/ett.duckdb``
   (or to ``results_db``; see :mod:`ettlib.store.catalog`), so other
   processes may read the store meanwhile -- check everything that can be checked --
   the config, the symbols and their candles, the adapter's parameters, a
   resume's consistency -- and only then write a ``runs`` manifest with
   status ``'running'`` (config JSON, data fingerprint, package version, git
   commit, seed): a run that cannot start writes nothing;
2. build the adapter (the model: a registered name, or an adapter object of
   your own, as River's ``progressive_val_score`` takes a model) and its
   baselines, and a :class:`~ettlib.session.Session` over the store (its
   coordinator ``strict``: an adapter that raises fails the run), with, per
   symbol, an :class:`~ettlib.training.inference_loop.InferenceLoop` and the
   prequential scorer (:mod:`ettlib.experiment.scoring`);
3. replay ``[start, end]``: at each instant the model first learns from what
   just became known, then predicts;
4. flush the adapter, close the coordinator and finish the manifest with
   the metrics, the wall time and status ``'completed'``.  Every coordinator
   flush (every ``persist_every`` events, and the last one at close) writes
   the frames, the delivered pairs and each learned pair's loss into
   ``training_events`` (the adapter's rows; the scorer's rows carry each
   prediction's absolute close error per model in ``metrics``).

Every score is prequential: a prediction is scored when its truth arrives,
and it was made -- frozen into its frame -- before the model could learn
from that truth.  Baselines (``persistence``, ``frozen``: the run's own
model, never trained; see :func:`build_baseline`) predict on the same
windows at the same steps.

A run that raises keeps what it had: the coordinator's buffered frames and
pairs are flushed, learned losses are written, the manifest gets status
``'failed'``, the error and the partial metrics, and
:class:`ExperimentError` (carrying ``run_id`` and the partial
:class:`ExperimentResult`) is raised from the original exception.  How a
run ends -- completed, failed, interrupted -- is
:class:`~ettlib.experiment.run_state.RunState`'s; the ``runs`` table's rows
are :mod:`ettlib.experiment.runs`'; the prequential scores
:mod:`ettlib.experiment.scoring`'s; the command line ``ett run`` is
:mod:`ettlib.cli`'s.

The same config and seed give identical metrics and identical
``training_events`` rows (up to ``run_id``): replay, ids, batching and the
model's randomness are all deterministic.

Resume
------
A run whose process dies (SIGKILL, a lost machine) keeps status
``'running'`` and, in its results file, everything of its last coordinator flush,
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
have no state.  A run stopped by Ctrl-C gets status ``'interrupted'`` and
keeps its last commit as it is (nothing buffered since is written), so it
resumes exactly like a killed one.  The whole run is a stop region
(:mod:`ettlib.interrupts`): a Ctrl-C never breaks a DuckDB statement -- not
the periodic save, not a subscriber's window read -- it asks the run to stop,
which it does before writing anything (during the checks), between two
events of the replay, or before the last flush (after it, the run
completes); :class:`RunInterrupted` is raised.  A run stopped by an
exception (status ``'failed'``) flushed its partial results in the middle of
an instant and cannot be resumed exactly: run it again.

Examples
--------
>>> from ettlib.store.demo import write_demo_data
>>> from ettlib.store import DuckDBStorage
>>> store = DuckDBStorage(":memory:")
>>> _ = write_demo_data(store, symbol="ETH/USDT", days=1)
>>> config = ExperimentConfig(symbols=("ETH/USDT",), adapter="persistence", baselines=(),
...                           end="2024-01-01T06:00", context_length=16)
>>> result = run_experiment(config, storage=store, quiet=True)
>>> result.status, result.config.base_timeframe, result.metrics["frames"] > 300
('completed', '1m', True)
"""

from __future__ import annotations

import copy
import functools
import sys
from contextlib import contextmanager
from pathlib import Path

from ettlib import interrupts
from ettlib.errors import ConfigError, positive_int
from ettlib.store.db import transaction
from ettlib.training import registry
from ettlib.experiment.config import OBJECT_PREFIX, ExperimentConfig
from ettlib.experiment.run_state import ExperimentError, ExperimentResult, RunInterrupted, RunState
from ettlib.experiment.runs import (
    Manifest,
    check_resumable,
    data_fingerprint,
    git_commit,
    now_utc,
    package_version,
    results_location,
    write_manifest,
)

__all__ = [
    "ExperimentConfig",
    "ExperimentResult",
    "ExperimentError",
    "RunInterrupted",
    "run_experiment",
    "build_adapter",
    "build_baseline",
    "resolve_config",
]

_SEQUENCE_ADAPTERS = ("transformer", "frozen")


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
    if name.startswith(OBJECT_PREFIX):
        raise ConfigError(
            f"this run's adapter was an object ({name[len(OBJECT_PREFIX):]}), not a registered name: "
            "pass the same kind of adapter object again with adapter=")
    if name in _SEQUENCE_ADAPTERS:
        params.update(context_length=config.context_length, features=config.columns)
    if learn_params and (name == config.adapter or (
            name == "frozen" and config.adapter in _SEQUENCE_ADAPTERS)):
        params.update(config.adapter_params)
    try:
        return registry.create(name, **params)
    except TypeError as err:
        raise ConfigError(f"adapter {name!r} refused its parameters: {err}") from None


def build_baseline(name: str, config: ExperimentConfig, model):
    """The baseline ``name`` that predicts beside ``model`` (the run's adapter).

    ``"frozen"`` is the run's own model, never trained: for a Transformer
    the registered ``frozen`` (:func:`build_adapter`: the same parameters and
    seed); for another registered adapter a new one built as the model is
    (a River run's frozen baseline is an untrained River model, not a
    Transformer: the same kind of model, at its own cost); for an adapter
    object a deep copy of it taken before the run, as it was handed in.
    Any other name is :func:`build_adapter`'s.
    """
    if name != "frozen" or config.adapter in _SEQUENCE_ADAPTERS:
        return build_adapter(name, config)
    if not config.adapter.startswith(OBJECT_PREFIX):
        return build_adapter(config.adapter, config)
    try:
        return copy.deepcopy(model)
    except Exception as err:  # an object holding a lock, a connection, ...
        raise ConfigError(
            f"the 'frozen' baseline is a copy of the model taken before the run, and this "
            f"{type(model).__name__} cannot be copied ({type(err).__name__}: {err}): leave 'frozen' "
            "out of baselines") from None


def resolve_config(storage, config: ExperimentConfig, adapter=None) -> ExperimentConfig:
    """``config`` with what the store decides filled in, checked against the store.

    The base timeframe defaults to the finest stored for every symbol, the
    model's timeframe to the base (:func:`~ettlib.replay.resolve_base_timeframe`:
    a symbol without candles, or a timeframe that is not a multiple of the
    base, is a :class:`~ettlib.errors.ConfigError` naming what is stored).
    With an ``adapter`` object, ``adapter`` becomes ``"object:<its class>"``.
    """
    from ettlib.replay import resolve_base_timeframe
    from ettlib.training.adapters import TrainingAdapter

    wanted = [config.timeframe] if config.timeframe else []
    base = resolve_base_timeframe(storage, config.symbols, config.base_timeframe, wanted)
    changes = {"base_timeframe": base, "timeframe": config.timeframe or base}
    if adapter is not None:
        if not isinstance(adapter, TrainingAdapter):
            raise ConfigError(
                f"adapter must be a TrainingAdapter (e.g. RiverAdapter(...)) or None, got {type(adapter).__name__}")
        name = f"{OBJECT_PREFIX}{type(adapter).__module__}.{type(adapter).__qualname__}"
        if config.adapter.startswith(OBJECT_PREFIX) and config.adapter != name:
            raise ConfigError(f"this run's adapter was {config.adapter[len(OBJECT_PREFIX):]}, "
                              f"not {name[len(OBJECT_PREFIX):]}")
        changes["adapter"] = name
    return config.replace(**changes)


def _replay_range(candles, config: ExperimentConfig) -> tuple[int, int]:
    bounds = [candles.time_range(s, config.base_timeframe) for s in config.symbols]
    start = config.start if config.start is not None else min(b[0] for b in bounds)
    end = config.end if config.end is not None else max(b[1] for b in bounds)
    if start > end:
        raise ConfigError(f"start ({start}) is after end ({end})")
    return start, end


@contextmanager
def _torch_threads(count: int | None):
    """Run the block with PyTorch on ``count`` CPU threads (``None``: as it is), then restore.

    The run's models are built before the block: where none of them imported
    PyTorch (a River run, whose ``frozen`` baseline is River too), it is
    left alone, and the run never imports it.
    """
    if count is None or "torch" not in sys.modules:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


# ---------------------------------------------------------------------------
# The runner
# ---------------------------------------------------------------------------


def _stoppable(function):
    """Run ``function`` in a stop region: a Ctrl-C is a request its code honours where it is safe.

    It is honoured before the manifest is written (nothing written), at the
    replay's next event boundary, and before the last flush; after that the
    run completes (``raise_at_exit=False``).  See :mod:`ettlib.interrupts`.
    """

    @functools.wraps(function)
    def stoppable(*args, **kwargs):
        with interrupts.stop_requests(raise_at_exit=False):
            return function(*args, **kwargs)

    return stoppable


@_stoppable
def run_experiment(config, *, adapter=None, storage=None, progress: bool = False,
                   run_id: str | None = None, resume: bool = False, persist_every: int = 10_000,
                   quiet: bool = False, announce=None) -> ExperimentResult:
    """Run one experiment (see the module doc); returns its :class:`ExperimentResult`.

    Parameters
    ----------
    config
        An :class:`ExperimentConfig`, or a mapping for :meth:`ExperimentConfig.from_dict`.
    adapter
        An adapter object of your own (a
        :class:`~ettlib.training.adapters.TrainingAdapter`, e.g. a
        ``RiverAdapter`` around any River regressor) instead of
        ``config.adapter``; the manifest records its class.
    storage
        An open :class:`~ettlib.store.DuckDBStorage` of ``config.db_path``
        to read the candles from (default: the file is opened read-only, and
        closed at the end).  The results go where they would for its file
        (:func:`~ettlib.experiment.runs.results_location`): into the store
        itself only when it is ``:memory:``.
    progress
        Show the replay's progress bar.
    run_id
        Key of the run's rows (default: ``run_name`` or ``"run"`` plus a
        random suffix); printed when the run starts.
    resume
        Continue the run ``run_id`` from its last commit (status
        ``'running'``: its process was killed; or ``'interrupted'``: Ctrl-C); ``config`` must be the
        run's (:func:`~ettlib.experiment.runs.load_run_config`; only ``db_path``, ``results_db`` and
        ``checkpoint`` may differ) and the candles unchanged.  See "Resume"
        in the module doc.
    persist_every
        Commit frames, pairs and the run's state every this many events (at
        the next instant): what a crash can lose, and what a resume redoes.
    quiet
        Do not print the run id.
    announce
        Where the one line naming the run goes, once its checks passed
        (``print`` by default; the CLI sends it to stderr).

    Raises
    ------
    ExperimentError
        When anything fails after the manifest was written; the manifest
        (status ``'failed'``) and the partial results stay in the store.
    RunInterrupted
        A Ctrl-C (a kernel interrupt in Jupyter) after the manifest was
        written: the run is marked ``'interrupted'`` with its last commit
        untouched (a ``KeyboardInterrupt``).  Before that, a plain
        ``KeyboardInterrupt``, and nothing was written.
    ConfigError
        Before any work (nothing is written), for a bad config, a symbol
        without candles, or a run that cannot be resumed.
    """
    from ettlib.coordinator import new_run_id
    from ettlib.store import DuckDBStorage

    config = _checked_arguments(config, resume, run_id, persist_every)
    run_id = run_id or new_run_id(config.run_name or "run")
    if storage is None:
        results_db = results_location(config, run_id, resume=resume)
        candles = _open_candles(config, read_only=results_db is not None)
    else:
        results_db = results_location(config.replace(db_path=storage.path), run_id, resume=resume)
        candles = storage
    results = None
    try:  # everything checked before anything is written
        config = resolve_config(candles, config, adapter)
        start, end = _replay_range(candles, config)
        model = adapter if adapter is not None else build_adapter(config.adapter, config)
        baselines = {name: build_baseline(name, config, model) for name in config.baselines}
        fingerprint = data_fingerprint(candles, config)
        if results_db is not None:
            Path(results_db).parent.mkdir(parents=True, exist_ok=True)
        results = DuckDBStorage(results_db) if results_db is not None else candles
        started_at = check_resumable(results, run_id, config, fingerprint) if resume else now_utc()
        manifest = Manifest(run_id, config, fingerprint, started_at, package_version(), git_commit())
        if not quiet:
            verb = "resuming" if resume else "run"
            (announce or print)(f"{verb} {run_id}: {config.adapter} on {', '.join(config.symbols)} "
                                f"{config.timeframe}, results in {results.path}")
        interrupts.check()  # a Ctrl-C so far: stop before anything is written
        with transaction(results.con):
            write_manifest(results.con, manifest, status="running")
        run = RunState(manifest, results, model, resume=resume)
        build = functools.partial(_build, candles=candles, baselines=baselines, start=start, end=end,
                                  progress=progress, persist_every=persist_every)
        with _torch_threads(config.torch_threads):
            return run.execute(build)
    finally:
        if results is not None and results is not candles:
            results.close()
        if storage is None:
            candles.close()


def _checked_arguments(config, resume: bool, run_id: str | None, persist_every: int) -> ExperimentConfig:
    """The config as an :class:`ExperimentConfig`, once the call's own arguments are checked."""
    if not isinstance(config, ExperimentConfig):
        config = ExperimentConfig.from_dict(config)
    if resume and not run_id:
        raise ConfigError("resume=True needs the run_id of the run to resume")
    positive_int("persist_every", persist_every)
    return config


def _open_candles(config: ExperimentConfig, *, read_only: bool):
    """The candle source ``config.db_path`` (a DuckDB file or a Parquet lake), checked."""
    from ettlib.store.lake import is_lake, open_candles

    if not is_lake(config.db_path) and not Path(config.db_path).exists():  # a folder or another file: refused by the store
        raise ConfigError(f"{config.db_path}: no such database (write demo candles with "
                          "`ett data demo`, or ingest some with `ett data ingest`)")
    candles = open_candles(config.db_path, read_only=read_only)
    if candles.read_only and not read_only:
        candles.close()
        raise ConfigError(f"{config.db_path} is a Parquet lake, read-only: give results_db= another "
                          "file (where the run's frames, pairs and manifest go)")
    return candles


def _build(run: RunState, *, candles, baselines: dict, start: int, end: int, progress: bool,
           persist_every: int) -> None:
    """Build the session; subscribe the model, the scorer and the inference loops."""
    from ettlib.session import Session
    from ettlib.training.inference_loop import InferenceLoop
    from ettlib.experiment.metrics import PrequentialScorer
    from ettlib.experiment.scoring import ExperimentScoring

    adapter, config, resume = run.adapter, run.manifest.config, run.resume
    run.session = session = Session(
        candles, config.symbols, start, end, timeframes=config.timeframes,
        base_timeframe=config.base_timeframe, pivot_timeframes=(config.timeframe,),
        pivot_levels=config.pivot_levels, pivot_lookback=config.pivot_lookback,
        columns=config.columns, run_id=run.manifest.run_id, results=run.results, strict=True,
        persist_every=persist_every, resume=resume, replace=not resume,
        warmup=max(config.context_length + 1, _INDICATOR_WARMUP), progress=progress)
    coordinator = session.coordinator
    targets = {"model": adapter.targets, **{n: b.targets for n, b in baselines.items()}}
    run.scorer = scorer = PrequentialScorer(targets)
    run.scoring = scoring = ExperimentScoring(scorer, adapter, coordinator, run.manifest.run_id,
                                              run.results.con)
    # On a resume, each subscriber's stored state comes back as it subscribes.
    for symbol in config.symbols:
        adapter.attach(coordinator, symbol, config.timeframe, config.pivot_types)
        coordinator.subscribe_to_candle_completion(scoring, symbol, config.timeframe)
        coordinator.subscribe_to_pivot_events(scoring, symbol, config.timeframe, config.pivot_types)
        loop = InferenceLoop(
            adapter, session, symbol=symbol, timeframe=config.timeframe,
            context_length=config.context_length, columns=config.columns, stride=config.stride,
            train_every=config.train_every, companions=baselines,
            on_prediction=lambda ref, window, preds: scorer.record(
                ref, last_close=float(window.column("close")[-1]), predictions=preds,
                last_open=float(window.column("open")[-1]) if "open" in window.columns else None),
        )
        loop.attach()
        scoring.add_loop(loop)


#: Candles of warm-up for the indicators of aggregated timeframes (their longest look-back, with room).
_INDICATOR_WARMUP = 300
