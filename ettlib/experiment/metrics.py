"""Prequential scoring: each prediction is scored when its truth arrives.

A :class:`PrequentialScorer` is a ``TrainingEventSubscriber`` like the
adapters.  The predictions it scores were made -- and frozen into the frame,
or recorded beside it for baselines by :meth:`PrequentialScorer.record` --
at the frame's prediction time, before the truth existed; so every score is
of a prediction made before any model could learn from its truth (River's
progressive validation, with delayed labels).

Scores, per model name (the model under ``"model"``, baselines beside it):

* ``mae_close``: mean absolute error of the next close, in price units (the
  predicted close is denormalized with the frame's ``norm_params``:
  ``close = x * price_scale + price_offset``);
* ``direction_accuracy``: the mean direction score of the candles, by the
  report's rule (:mod:`ettlib.evaluation.scores`): 1 when the move from the
  last closed close has the predicted sign, 0 when it has the other, 0.5 for
  no call (a predicted move within ``FLAT_RTOL * |last close|``: windows are
  normalized in float32, so persistence's "no move" comes back a hair off).
  Flat actual moves are skipped.  Persistence scores exactly 0.5, the chance
  line, here and in the report;
* ``pivot_accuracy`` and ``pivot_confusion``: predicted action against the
  pivot's implied action (low: BUY, high: SELL), over every matched
  ``(pivot, frame)`` pair; the confusion matrix has rows BUY, SELL (truth)
  and columns BUY, SELL, HOLD (prediction);
* ``pivot_majority_accuracy``: what always guessing the label seen most
  often so far would score on the same ``(pivot, frame)`` pairs, in the
  same order (a tie scores half: a coin flip) -- the fair bar for
  ``pivot_accuracy``, since pivot labels need not be balanced;
* ``mae_close_first_half`` / ``mae_close_second_half``: the same MAE over the
  first and second half of the scored candles (learning shows as a drop).

The scores so far are part of an experiment's state: :meth:`PrequentialScorer.state_dict`
is plain JSON (every absolute error, the counts, the predictions of frames
not scored yet), and :meth:`PrequentialScorer.load_state_dict` continues
from it exactly (JSON keeps every float bit for bit), which is how a
resumed experiment ends with the metrics of an uninterrupted one.  The
absolute errors grow with the run, so an experiment checkpoints the state
without them (``errors=False``) and rebuilds them, on a resume, from the
``training_events`` rows committed with it, where each is recorded.

Examples
--------
>>> from ettlib.coordinator.frames import InferenceFrameReference
>>> from ettlib.replay.events import CandleCompletionEvent
>>> params = {"price_offset": 100.0, "price_scale": 2.0, "volume_offset": 0.0, "volume_scale": 1.0}
>>> ref = InferenceFrameReference(1, "X", "1m", 120_000, 120_000, 60_000, 60_000, params,
...                               "HOLD", (0.0, 0.0, 0.0, 1.0, 0.0), 1.0)
>>> scorer = PrequentialScorer({"model": ("open", "high", "low", "close", "volume")})
>>> scorer.record(ref, last_close=100.0, predictions={})
>>> scorer.on_candle_completion(CandleCompletionEvent("X", "1m", 120_000, 180_000, 100, 104, 99, 103, 5), ref)
>>> m = scorer.metrics()["model"]
>>> m["mae_close"], m["direction_accuracy"]
(1.0, 1.0)

The majority bar for pivots: with labels BUY, BUY, SELL, BUY in that order,
guessing the most common label so far scores a tie (half), BUY (right), BUY
(wrong), BUY (right): 2.5 of 4.

>>> s = ModelScores()
>>> for truth in (0, 0, 1, 0):
...     s.score_pivot(truth, predicted=2)
>>> s.summary()["pivot_majority_accuracy"], s.summary()["pivot_accuracy"]
(0.625, 0.0)

A scorer continued from its JSON state:

>>> import json
>>> again = PrequentialScorer({"model": ("open", "high", "low", "close", "volume")})
>>> again.load_state_dict(json.loads(json.dumps(scorer.state_dict())))
>>> again.metrics() == scorer.metrics()
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from ettlib.evaluation.scores import FLAT_RTOL

__all__ = ["PrequentialScorer", "ModelScores", "TRUE_ACTIONS", "PRED_ACTIONS"]

TRUE_ACTIONS = ("BUY", "SELL")
PRED_ACTIONS = ("BUY", "SELL", "HOLD")


@dataclass
class ModelScores:
    """Running scores of one model."""

    abs_errors: list = field(default_factory=list)
    direction_hits: float = 0.0  #: 1 per right call, 0.5 per no call
    direction_total: int = 0
    confusion: np.ndarray = field(default_factory=lambda: np.zeros((2, 3), dtype=np.int64))
    majority_hits: float = 0.0  #: prequential majority-label guesses that were right

    def score_pivot(self, truth: int, predicted: int) -> None:
        """Count one ``(pivot, frame)`` pair: truth index into TRUE_ACTIONS, prediction into PRED_ACTIONS."""
        seen = self.confusion.sum(axis=1)  # labels so far, before this one
        if seen[0] == seen[1]:
            self.majority_hits += 0.5
        elif int(np.argmax(seen)) == truth:
            self.majority_hits += 1.0
        self.confusion[truth, predicted] += 1

    def state_dict(self, *, errors: bool = True) -> dict:
        """The running scores as JSON types (``errors=False``: without ``abs_errors``)."""
        state = {"direction_hits": float(self.direction_hits),
                 "direction_total": int(self.direction_total),
                 "confusion": self.confusion.tolist(), "majority_hits": float(self.majority_hits)}
        if errors:
            state["abs_errors"] = [float(e) for e in self.abs_errors]
        return state

    @classmethod
    def from_state_dict(cls, state: dict, abs_errors=None) -> ModelScores:
        """The scores :meth:`state_dict` described (``abs_errors`` given apart, or in it)."""
        errors = state["abs_errors"] if abs_errors is None else abs_errors
        return cls(list(errors), float(state["direction_hits"]),
                   int(state["direction_total"]), np.array(state["confusion"], dtype=np.int64),
                   float(state["majority_hits"]))

    def summary(self) -> dict:
        errors = np.asarray(self.abs_errors, dtype=np.float64)
        half = len(errors) // 2
        pivots = int(self.confusion.sum())
        hits = int(self.confusion[0, 0] + self.confusion[1, 1])
        return {
            "mae_close": float(errors.mean()) if len(errors) else None,
            "mae_close_first_half": float(errors[:half].mean()) if half else None,
            "mae_close_second_half": float(errors[half:].mean()) if half else None,
            "direction_accuracy": (
                self.direction_hits / self.direction_total if self.direction_total else None
            ),
            "pivot_accuracy": hits / pivots if pivots else None,
            "pivot_majority_accuracy": self.majority_hits / pivots if pivots else None,
            "pivot_confusion": self.confusion.tolist(),
            "n_candles": int(len(errors)),
            "n_pivot_pairs": pivots,
        }


class PrequentialScorer:
    """Scores the predictions recorded for each frame when its truth arrives.

    Parameters
    ----------
    targets
        ``{model name: target columns}``: where ``close`` sits in each
        model's ``predicted_candle``.
    """

    def __init__(self, targets: Mapping[str, Sequence[str]]):
        self.targets = {name: tuple(cols) for name, cols in targets.items()}
        self.scores = {name: ModelScores() for name in self.targets}
        self._frames: dict = {}  # inference_id -> (last_close, {name: (action, candle)}, last_open)
        #: The row of the prediction :meth:`on_candle_completion` scored last (None: it scored none).
        self.last_scored: dict | None = None

    def record(self, ref, *, last_close: float, predictions: Mapping[str, tuple],
               last_open: float | None = None) -> None:
        """Remember a frame's predictions (the model's come from ``ref`` itself).

        ``last_close`` and ``last_open`` are those of the last input candle
        (``last_open`` is NaN when not given).
        """
        preds = {"model": (ref.predicted_action, ref.predicted_candle)}
        for name, (action, candle, _confidence) in predictions.items():
            if name != "model":
                preds[name] = (action, tuple(candle))
        opened = float("nan") if last_open is None else float(last_open)
        self._frames[ref.inference_id] = (float(last_close), preds, opened)

    def retain(self, inference_ids) -> None:
        """Forget every recorded frame not in ``inference_ids`` (those that can no longer be scored)."""
        keep = set(inference_ids)
        self._frames = {k: v for k, v in self._frames.items() if k in keep}

    def state_dict(self, *, errors: bool = True) -> dict:
        """Scores and unscored frames as JSON types (see the module doc).

        ``errors=False`` leaves out every absolute error (the one part that
        grows with the run), for a caller that keeps them elsewhere and hands
        them back to :meth:`load_state_dict`.
        """
        return {
            "targets": {name: list(cols) for name, cols in self.targets.items()},
            "scores": {name: s.state_dict(errors=errors) for name, s in self.scores.items()},
            "frames": [[iid, last_close, {name: [action, list(candle)]
                                          for name, (action, candle) in preds.items()},
                        None if last_open != last_open else last_open]  # NaN is not JSON
                       for iid, (last_close, preds, last_open) in self._frames.items()],
        }

    def load_state_dict(self, state: dict, abs_errors: Mapping[str, Sequence[float]] | None = None) -> None:
        """Continue from :meth:`state_dict` (of a scorer with the same targets).

        ``abs_errors``: ``{model name: errors in scoring order}`` for a state
        saved with ``errors=False``.
        """
        from ettlib.errors import ConfigError

        targets = {name: tuple(cols) for name, cols in state["targets"].items()}
        if targets != self.targets:
            raise ConfigError(f"scorer state is for targets {targets}, not {self.targets}")
        self.scores = {
            name: ModelScores.from_state_dict(
                s, None if abs_errors is None else abs_errors.get(name, []))
            for name, s in state["scores"].items()
        }
        self._frames = {
            entry[0]: (float(entry[1]), {name: (action, tuple(candle))
                                         for name, (action, candle) in entry[2].items()},
                       float("nan") if len(entry) < 4 or entry[3] is None else float(entry[3]))
            for entry in state["frames"]
        }

    # -- TrainingEventSubscriber --------------------------------------------

    def on_candle_completion(self, event, inference_ref) -> None:
        self.last_scored = None
        if inference_ref is None or inference_ref.inference_id not in self._frames:
            return
        last_close, preds, last_open = self._frames[inference_ref.inference_id]
        params = inference_ref.norm_params
        actual = float(event.close)
        actual_move = np.sign(actual - last_close)
        row = {"last_open": last_open, "last_close": last_close, "actual_open": float(event.open),
               "actual_close": actual, "pred_close": {}, "action": {}}
        for name, (action, candle) in preds.items():
            cols = self.targets.get(name)
            if cols is None or "close" not in cols or len(candle) != len(cols):
                continue
            predicted = candle[cols.index("close")] * params["price_scale"] + params["price_offset"]
            row["pred_close"][name] = float(predicted)
            row["action"][name] = action
            scores = self.scores[name]
            scores.abs_errors.append(abs(predicted - actual))
            if actual_move != 0:
                move = predicted - last_close
                scores.direction_total += 1
                if abs(move) <= FLAT_RTOL * abs(last_close):
                    scores.direction_hits += 0.5  # no call: a coin flip
                else:
                    scores.direction_hits += float(np.sign(move) == actual_move)
        self.last_scored = row if row["pred_close"] else None

    def on_pivot_event(self, event, inference_refs) -> None:
        truth = TRUE_ACTIONS.index(event.implied_action)
        for ref in inference_refs:
            frame = self._frames.get(ref.inference_id)
            if frame is None:
                continue
            for name, (action, _) in frame[1].items():  # frame: (last_close, preds, last_open)
                if name in self.scores:
                    self.scores[name].score_pivot(truth, PRED_ACTIONS.index(action))

    def metrics(self) -> dict:
        """``{model name: summary dict}`` of the scores so far."""
        return {name: s.summary() for name, s in self.scores.items()}
