"""An experiment's own subscriber: prequential scores, learned losses, and the run's state.

:class:`ExperimentScoring` subscribes beside the adapter.  It returns each
candle pair's absolute close errors (and direction hits) per model as the
pair's metrics, so every scored prediction is a row of ``training_events``;
and it is the run's own state in the coordinator's flush transaction (see
"Resume" in :mod:`ettlib.experiment.runner`).
"""

from __future__ import annotations

import json

from ettlib.store.db import registered
from ettlib.errors import ConfigError
from ettlib.experiment.metrics import PrequentialScorer

__all__ = ["ExperimentScoring", "LOOP_COUNTERS", "flat_metrics", "prediction_fields", "write_pair_losses"]


def write_pair_losses(con, run_id: str, subscriber: str, results) -> int:
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


class ExperimentScoring:
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
        return write_pair_losses(con, self.run_id, self.adapter.subscriber_name,
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
            "loops": {loop.symbol: {name: getattr(loop, name) for name in LOOP_COUNTERS}
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
            if s.direction_total > before[n][1]:  # per-pair direction score (1 / 0.5 / 0), for rolling accuracy
                out[f"direction_hit.{n}"] = float(s.direction_hits - before[n][2])
        row = self.scorer.last_scored
        if row is not None:
            out.update(prediction_fields(row))
        return out or None

    def on_pivot_event(self, event, inference_refs):
        self.scorer.on_pivot_event(event, inference_refs)
        return {"implied_action": event.implied_action, "pivot_time": int(event.timestamp),
                "pivot_type": event.pivot_type}


def prediction_fields(row: dict) -> dict:
    """A scored prediction (``PrequentialScorer.last_scored``) as flat pair metrics.

    >>> prediction_fields({"last_open": float("nan"), "last_close": 2.0, "actual_open": 2.0,
    ...                    "actual_close": 3.0, "pred_close": {"model": 2.5}, "action": {"model": "BUY"}})
    {'last_close': 2.0, 'actual_open': 2.0, 'actual_close': 3.0, 'pred_close.model': 2.5, 'action.model': 'BUY'}
    """
    out = {k: row[k] for k in ("last_open", "last_close", "actual_open", "actual_close")
           if row[k] == row[k]}  # a NaN (unknown) last_open is left out: JSON has no NaN
    out.update({f"pred_close.{n}": v for n, v in row["pred_close"].items()})
    out.update({f"action.{n}": a for n, a in row["action"].items()})
    return out


#: InferenceLoop counters that are part of a run's state (``stride``, ``train_every`` phase).
LOOP_COUNTERS = ("steps_seen", "frames_registered")


def flat_metrics(scores: dict, extra: dict) -> dict:
    """``{"model.mae_close": ..., ...}`` from per-model scores, with ``extra`` entries first."""
    flat = dict(extra)
    for name, values in scores.items():
        for key, value in values.items():
            flat[f"{name}.{key}"] = value
    return flat
