"""A run under way and how it ends: :class:`RunState`, :class:`ExperimentResult` and the two errors.

:func:`~ettlib.experiment.runner.run_experiment` checks everything, writes
the manifest (status ``'running'``) and then hands the run to a
:class:`RunState`: what the run has built so far (session, scorer, scoring
subscriber) and everything its end needs.  :meth:`RunState.execute` builds
and replays; the run ends in one of three ways:

* :meth:`RunState.finish`: the last flush, the checkpoint file, the manifest
  ``'completed'`` with the metrics; an :class:`ExperimentResult`;
* :meth:`RunState.fail` on an exception: buffered frames, pairs and learned
  losses are flushed, the manifest says ``'failed'`` with the error, and
  :class:`ExperimentError` is raised from the exception;
* :meth:`RunState.fail` on a Ctrl-C: the last commit is kept as it is, the
  manifest says ``'interrupted'``, and :class:`RunInterrupted` (a
  ``KeyboardInterrupt``) is raised: the run is resumable.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from ettlib import interrupts
from ettlib.errors import EttError
from ettlib.experiment.config import ExperimentConfig
from ettlib.experiment.scoring import flat_metrics
from ettlib.experiment.runs import Manifest, learned_pairs, now_utc, pair_counts, write_manifest
from ettlib.store.db import transaction

__all__ = ["ExperimentResult", "ExperimentError", "RunInterrupted", "RunState"]


class ExperimentError(EttError):
    """An experiment run failed; its partial results and manifest were kept.

    Attributes ``run_id`` and ``result`` (the partial
    :class:`ExperimentResult`, status ``'failed'``).
    """

    def __init__(self, message: str, *, run_id: str, result: ExperimentResult | None = None):
        super().__init__(message)
        self.run_id = run_id
        self.result = result


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped a run after its manifest was written: it is resumable.

    A ``KeyboardInterrupt`` (so ``except Exception`` does not catch it), raised
    by :func:`run_experiment` from the original interrupt once the run is
    marked ``'interrupted'``.  Attributes ``run_id`` and ``path`` (the store
    that holds the run: resume it with ``run_experiment(config,
    run_id=run_id, resume=True)`` or ``ett run --resume RUN_ID``).
    """

    def __init__(self, run_id: str, path: str):
        super().__init__(f"run {run_id!r} was interrupted; its last commit is in {path}")
        self.run_id = run_id
        self.path = path


@dataclass(frozen=True, slots=True)
class ExperimentResult:
    """What a run produced.

    ``metrics`` is flat (``"model.mae_close"``, ``"persistence.mae_close"``,
    ``"frames"``, ...: the JSON of ``runs.metrics``); ``scores`` the same per
    model as nested dicts; ``pair_losses`` the loss of each learned pair in
    learning order; ``counters`` the coordinator's counters; ``results_db``
    the file its rows are in (its own file beside the store, by default).
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
    results_db: str | None = None

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


def _counters_dict(counters) -> dict:
    return asdict(counters) if counters is not None else {}


@dataclass
class RunState:
    """What a run has built so far: everything its end, or its failure, needs.

    ``manifest`` (the run's identity and config), ``results`` (the
    :class:`~ettlib.store.DuckDBStorage` the run writes to), ``adapter`` (the
    model), ``resume`` (whether it continues a run), ``clock_start``
    (``time.perf_counter()`` at the start, for ``wall_s``); then what the
    build makes: ``session``, ``scorer`` (the prequential scores),
    ``scoring`` (the run's own subscriber); ``extra`` metrics beside the scores.
    """

    manifest: Manifest
    results: object
    adapter: object
    resume: bool = False
    clock_start: float = field(default_factory=time.perf_counter)
    session: object = None
    scorer: object = None
    scoring: object = None
    extra: dict = field(default_factory=dict)

    def execute(self, build: Callable[[RunState], None]) -> ExperimentResult:
        """``build(self)`` (session, subscribers), replay, and :meth:`finish`; :meth:`fail` on the way.

        A resume whose build fails with an exception (e.g. a stored state that
        does not restore) leaves the run as it was, still resumable: its
        session is closed without a flush and the exception propagates.
        """
        try:
            build(self)
        except BaseException as exc:
            if not self.resume or not isinstance(exc, Exception) or interrupts.requested():
                self.fail(exc)
            if self.session is not None:
                self.session.close(flush=False)
            raise
        try:
            self.session.run()
            return self.finish()
        except BaseException as exc:
            self.fail(exc)
            raise  # not reached: fail raises

    def learned(self) -> list[tuple[str, float]]:
        return learned_pairs(self.results.con, self.manifest.run_id, self.adapter.subscriber_name)

    def result(self, status: str, learned, counters, error: str | None = None) -> ExperimentResult:
        scores = self.scorer.metrics() if self.scorer is not None else {}

        extra = {**self.extra, **pair_counts(learned)}
        if status == "completed":
            extra.update(train_steps=getattr(self.adapter, "steps", 0), failed_pairs=counters.failed)
        metrics = flat_metrics(scores, extra)
        config = self.manifest.config
        return ExperimentResult(
            self.manifest.run_id, status, config, metrics, scores, tuple(loss for _, loss in learned),
            time.perf_counter() - self.clock_start, self.manifest.fingerprint,
            counters=_counters_dict(counters), error=error,
            checkpoint=config.checkpoint if status == "completed" else None,
            results_db=self.results.path,
        )

    def finish(self) -> ExperimentResult:
        """Close the session (its last flush writes the last learned losses) and complete the manifest.

        A Ctrl-C until the adapter has learned its last pairs stops the run
        there (resumable); from the last flush on, the run completes.
        """
        self.adapter.flush()
        interrupts.check()
        self.extra["frames"] = sum(loop.frames_registered for loop in self.scoring.loops)
        self.extra["cache_misses"] = self.session.window_misses
        self.session.close()
        if self.manifest.config.checkpoint:
            self.adapter.save(self.manifest.config.checkpoint)
        result = self.result("completed", self.learned(), self.session.coordinator.counters())
        with transaction(self.results.con):
            write_manifest(self.results.con, self.manifest, status="completed", finished_at=now_utc(),
                           wall_s=result.wall_s, metrics=result.metrics)
        return result

    def fail(self, exc: BaseException):
        """Keep the partial state, mark the run, and raise.

        A ``KeyboardInterrupt`` (Ctrl-C) -- or any exception once a Ctrl-C
        asked the run to stop (a second Ctrl-C may break a statement) --
        keeps the last commit untouched, marks the run ``'interrupted'``
        (resumable) and raises :class:`RunInterrupted` from it; any other
        exception flushes what was buffered, marks the run ``'failed'`` and
        raises :class:`ExperimentError` from it.  A further Ctrl-C is held
        until the manifest is written.
        """
        with interrupts.held():
            return self._fail(exc)

    def _fail(self, exc: BaseException):
        interrupted = not isinstance(exc, Exception) or interrupts.requested()
        notes, counters = [], None
        if self.session is not None:
            try:
                # flushes buffered frames, pairs and learned losses; not when interrupted:
                # the last commit is a consistent state to resume from
                self.session.close(flush=not interrupted)
                counters = self.session.coordinator.counters()
            except Exception as inner:  # keep going: the manifest matters most
                notes.append(f"while saving partial results: {type(inner).__name__}: {inner}")
        try:
            learned = self.learned()
        except Exception as inner:
            learned = []
            notes.append(f"while reading the learned losses: {type(inner).__name__}: {inner}")
        error = f"{type(exc).__name__}: {exc}"
        result = self.result("interrupted" if interrupted else "failed", learned, counters, error)
        detail = "".join(traceback.format_exception(exc)) + "".join(f"\n{n}" for n in notes)
        with transaction(self.results.con):
            write_manifest(self.results.con, self.manifest, status=result.status, finished_at=now_utc(),
                           wall_s=result.wall_s, metrics=result.metrics, error=detail)
        if interrupted:
            if isinstance(exc, (KeyboardInterrupt, Exception)):
                raise RunInterrupted(self.manifest.run_id, self.results.path) from exc
            raise exc  # SystemExit and the like
        raise ExperimentError(
            f"experiment run {self.manifest.run_id!r} failed: {error} (partial results and the "
            f"manifest are in {self.results.path}, runs.status = 'failed')",
            run_id=self.manifest.run_id, result=result,
        ) from exc

