"""An online River learner on window features: no backprop, no PyTorch.

Registered as ``"river"`` (:class:`RiverAdapter`).  Its state -- River's
learners -- is pickled with the rest of the adapter's state.

Features once per frame
-----------------------
A frame's features at learning time are, by construction, its features at
prediction time: the coordinator re-reads exactly the window the frame was
predicted from and normalizes it with the frame's ``norm_params``.  So
:meth:`RiverAdapter.predict` keeps what it computed (the features, the last
close, the regressor's raw guess) until the inference loop hands it the frame
it registered (:meth:`RiverAdapter.frame_registered`), and the pair's
learning reads them back instead of re-reading and recomputing the window.
When the regressor has not learned since (one pair per step, the usual
online setting) the kept guess *is* its guess now, so the pair's loss needs
no second prediction.  A frame not kept (one registered by other code, after
a resume, or one of the oldest beyond :data:`MEMO_FRAMES`) has its window
read and its features computed as before: the same numbers
(``tests/test_adapters.py`` checks every learned pair of a replay).

Examples
--------
>>> import numpy as np
>>> adapter = RiverAdapter(seed=1)
>>> window = np.column_stack([np.linspace(1.0, 2.0, 30)] * 3)   # high, low, close
>>> adapter.predict(window, ("high", "low", "close"))
Prediction(action='HOLD', predicted_candle=(2.0,), confidence=0.3333333333333333)
"""

from __future__ import annotations

import math
import pickle
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from ettlib.coordinator.normalization import NormParams
from ettlib.errors import ConfigError, UnknownNameError
from ettlib.replay.events import CandleCompletionEvent, candle_key, event_key
from ettlib.training.adapters.base import (PairResult, PendingPair, Prediction, TrainingAdapter,
                                           check_label_knowable, pair_result)
from ettlib.training.features import block_features

__all__ = ["RiverAdapter", "MEMO_FRAMES"]

_THIRD = 1.0 / 3.0
_new_tuple = tuple.__new__  # what a NamedTuple's __new__ does, one call fewer

#: Frames whose prediction-time features a River adapter keeps (the most recent).
MEMO_FRAMES = 4096


class RiverAdapter(TrainingAdapter):
    """An online River learner (``learn_one`` / ``predict_one``) on window features.

    The regressor predicts the change of the normalized close from the last
    closed candle to the next one, from :func:`~ettlib.training.features.window_features`
    (computed by :func:`~ettlib.training.features.block_features` on the window in place)
    standardized online (``StandardScaler``; River's default SGD diverges on
    unscaled fat-tailed returns).  Targets are clipped to ``±target_clip``
    normalized units for the same reason.  Pivot pairs train a logistic
    regression (BUY vs SELL) on the same features.  Each frame's features are
    computed once (see the module doc).

    Parameters
    ----------
    model
        ``"linear"`` (``LinearRegression`` with SGD at ``learning_rate``) or
        ``"hoeffding"`` (``HoeffdingTreeRegressor``).
    learning_rate
        SGD step of the linear models.
    target_clip
        Bound on the learned close change, in normalized units.
    """

    name = "river"
    _MODELS = ("linear", "hoeffding")

    def __init__(self, *, model: str = "linear", learning_rate: float = 0.01,
                 target_clip: float = 5.0, **base):
        base.setdefault("features", ("high", "low", "close"))
        base.setdefault("targets", ("close",))
        super().__init__(**base)
        if model not in self._MODELS:
            raise UnknownNameError("river model", model, self._MODELS)
        if tuple(self.targets) != ("close",):
            raise ConfigError(f"the river adapter predicts ('close',) only, got {self.targets}")
        if "close" not in self.features:
            raise ConfigError("the river adapter needs 'close' among its features")
        self.model_name = model
        self.learning_rate = float(learning_rate)
        self.target_clip = float(target_clip)
        self.regressor, self.classifier = self._build()
        self.pivots_seen = 0
        self._updates = 0  # regressor updates in this process (what a kept guess is valid for)
        self._last = None  # what the last prediction computed, until its frame is registered
        # inference_id -> (frame, features, last close, guess, updates), oldest first.  An OrderedDict:
        # evicting a plain dict's first key scans the deleted slots before it (2.4 us, against 0.26)
        self.memo: OrderedDict[int | str, tuple] = OrderedDict()
        self._where: dict[tuple, tuple] = {}  # window columns -> (close, high, low) indices

    def _build(self):
        from river import linear_model, optim, preprocessing, tree

        if self.model_name == "linear":
            regressor = preprocessing.StandardScaler() | linear_model.LinearRegression(
                optimizer=optim.SGD(self.learning_rate), intercept_lr=self.learning_rate
            )
        else:
            regressor = preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor()
        classifier = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(self.learning_rate)
        )
        return regressor, classifier

    def _columns(self, window: np.ndarray, columns) -> tuple:
        """Indices of close, high and low (``None`` where not a feature) in the window's columns."""
        columns = self.features if columns is None else tuple(columns)
        where = self._where.get(columns)
        if where is None:
            index = dict(zip(self.features, self._column_index(self.features, columns)))
            where = self._where[columns] = (index["close"], index.get("high"), index.get("low"))
        if window.ndim != 2 or window.shape[1] != len(columns) or len(window) == 0:
            raise ConfigError(
                f"window must be a non-empty [n, {len(columns)}] array, got shape {window.shape}")
        return where

    def _features_and_close(self, window, columns) -> tuple[dict, float]:
        if type(window) is not np.ndarray:
            window = np.asarray(window)
        close, high, low = self._columns(window, columns)
        feats = block_features(window, close, high, low)
        last = float(window[-1, close])
        return feats, (last if math.isfinite(last) else 0.0)

    def features_of(self, window: np.ndarray, columns: Sequence[str] | None = None) -> dict:
        """The feature dict of one normalized window."""
        return self._features_and_close(window, columns)[0]

    def _clip(self, change: float) -> float:
        return min(max(change, -self.target_clip), self.target_clip)

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        feats, last_close = self._features_and_close(window, columns)
        guess = float(self.regressor.predict_one(feats) or 0.0)
        self._last = (feats, last_close, guess, self._updates)
        if self.pivots_seen:
            p_buy = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
            action, confidence = ("BUY", p_buy) if p_buy >= 0.5 else ("SELL", 1.0 - p_buy)
        else:
            action, confidence = "HOLD", _THIRD
        clip = self.target_clip
        change = clip if guess > clip else (-clip if guess < -clip else guess)  # _clip
        return _new_tuple(Prediction, (action, (last_close + change,), confidence))  # Prediction(...)

    def frame_registered(self, ref) -> None:
        """Keep what the last :meth:`predict` computed for ``ref``, the frame made from it."""
        if self._last is not None:
            self.memo[ref.inference_id] = (ref, *self._last)
            self._last = None
            if len(self.memo) > MEMO_FRAMES:
                self.memo.popitem(last=False)

    def attach(self, coordinator, symbol: str, timeframe: str, pivot_types: Sequence[str] = ()):
        self.memo.clear()  # frames of another coordinator
        return super().attach(coordinator, symbol, timeframe, pivot_types)

    def _kept(self, ref):
        kept = self.memo.get(ref.inference_id)
        return kept[1:] if kept is not None and (kept[0] is ref or kept[0] == ref) else None

    def _inputs(self, batch):
        """Each pair's kept features (its window read and computed when not kept)."""
        kept = [self._kept(p.ref) for p in batch]
        missing = [p for p, k in zip(batch, kept) if k is None]
        read = iter(super()._inputs(missing) if missing else ())
        out = []
        for k in kept:
            if k is None:
                data = next(read)
                k = None if data is None else (*self._features_and_close(data.values, data.columns),
                                               None, None)
            out.append(k)
        return out

    def on_candle_completion(self, event, inference_ref) -> None:
        """Queue the pair, as every adapter does; with ``batch_size=1`` and nothing queued, learn it now.

        The same checks, order and state as the base's queue-then-train (a
        one-pair batch learned as it arrives, from the features its
        prediction kept when there are any), in fewer steps.
        """
        if self.batch_size != 1 or self.pending or not self.auto_train or inference_ref is None \
                or not self.learns or type(event) is not CandleCompletionEvent:
            return super().on_candle_completion(event, inference_ref)
        if event.close_time <= inference_ref.data_range_end:  # its knowable_time
            check_label_knowable(event, inference_ref)  # raises
        kept = self.memo.get(inference_ref.inference_id)
        if kept is not None and kept[0] is inference_ref:
            self.results.append(self._learn_candle(event, inference_ref, kept[1], kept[2], kept[3], kept[4]))
            self.pairs_learned += 1
        else:
            self._train_pending([PendingPair(event, inference_ref, "candle")])

    def _learn(self, pairs):
        results = []
        for p, (feats, last, guess, updates) in pairs:
            if p.kind == "candle":
                results.append(self._learn_candle(p.event, p.ref, feats, last, guess, updates))
                continue
            event = p.event
            label = event.is_low
            p_true = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
            loss = -math.log(max(p_true if label else 1.0 - p_true, 1e-12))
            self.classifier.learn_one(feats, label)
            self.pivots_seen += 1
            results.append(pair_result(p.ref.inference_id, "pivot", event_key(event),
                                       int(event.knowable_time), loss, {}))
        return results

    def _learn_candle(self, event, ref, feats: dict, last: float, guess, updates) -> PairResult:
        """Learn one candle pair from the frame's features and last close; its result.

        ``guess``: the regressor's prediction made with ``updates`` updates
        (``None``: none kept), reused when it has not learned since.
        """
        params = ref.norm_params  # normalized_target's arithmetic, for one price
        if type(params) is not NormParams:
            params = NormParams.coerce(params)
        change = (float(event.close) - params.price_offset) * (1.0 / params.price_scale) - last
        clip = self.target_clip
        change = clip if change > clip else (-clip if change < -clip else change)  # _clip
        if updates != self._updates:  # learned since the prediction: its guess now
            guess = float(self.regressor.predict_one(feats) or 0.0)
        loss = (guess - change) ** 2
        self.regressor.learn_one(feats, change)
        self._updates += 1
        key = candle_key(event.symbol, event.timeframe, event.timestamp)
        known = event.close_time if type(event) is CandleCompletionEvent else event.knowable_time
        return pair_result(ref.inference_id, "candle", key, int(known), loss, {})

    def settings(self) -> dict:
        return {**super().settings(), "model": self.model_name,
                "learning_rate": self.learning_rate, "target_clip": self.target_clip}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(model=self.model_name, pivots_seen=self.pivots_seen,
                     learners=pickle.dumps((self.regressor, self.classifier)))
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state["model"] != self.model_name:
            raise ConfigError(f"checkpoint holds river model {state['model']!r}, not {self.model_name!r}")
        self.regressor, self.classifier = pickle.loads(state["learners"])
        self.pivots_seen = int(state["pivots_seen"])
        self.memo, self._last, self._updates = OrderedDict(), None, 0
