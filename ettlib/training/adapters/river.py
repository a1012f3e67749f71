"""An online River learner on window features: no backprop, no PyTorch.

Registered as ``"river"`` (:class:`RiverAdapter`).  Its state -- River's
learners -- is pickled with the rest of the adapter's state.

Examples
--------
>>> import numpy as np
>>> adapter = RiverAdapter(seed=1)
>>> window = np.column_stack([np.linspace(1.0, 2.0, 30)] * 3)   # high, low, close
>>> adapter.predict(window, ("high", "low", "close"))
Prediction(action='HOLD', predicted_candle=(2.0,), confidence=0.3333333333333333)
"""

from __future__ import annotations

import pickle
from collections.abc import Sequence

import numpy as np

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.replay.events import event_key
from ettlib.training.adapters.base import PairResult, Prediction, TrainingAdapter, normalized_target
from ettlib.training.features import window_features

__all__ = ["RiverAdapter"]


class RiverAdapter(TrainingAdapter):
    """An online River learner (``learn_one`` / ``predict_one``) on window features.

    The regressor predicts the change of the normalized close from the last
    closed candle to the next one, from :func:`~ettlib.training.features.window_features`
    standardized online (``StandardScaler``; River's default SGD diverges on
    unscaled fat-tailed returns).  Targets are clipped to ``±target_clip``
    normalized units for the same reason.  Pivot pairs train a logistic
    regression (BUY vs SELL) on the same features.

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

    def features_of(self, window: np.ndarray, columns: Sequence[str] | None = None) -> dict:
        """The feature dict of one normalized window."""
        x = self._select(window, columns, self.features)
        named = dict(zip(self.features, x.T))
        return window_features(named["close"], named.get("high"), named.get("low"))

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        x = self._select(window, columns, self.features)
        last_close = float(np.nan_to_num(x[-1, self.features.index("close")]))
        feats = self.features_of(window, columns)
        change = float(self.regressor.predict_one(feats) or 0.0)
        change = float(np.clip(change, -self.target_clip, self.target_clip))
        if self.pivots_seen:
            p_buy = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
            action, confidence = ("BUY", p_buy) if p_buy >= 0.5 else ("SELL", 1.0 - p_buy)
        else:
            action, confidence = "HOLD", 1.0 / 3.0
        return Prediction(action, (last_close + change,), confidence)

    def _learn(self, pairs):
        results = []
        for p, data in pairs:
            feats = self.features_of(data.values, data.columns)
            if p.kind == "candle":
                x = self._select(data.values, data.columns, ("close",))
                last = float(np.nan_to_num(x[-1, 0]))
                target = float(normalized_target(p.event, p.ref.norm_params, ("close",))[0])
                change = float(np.clip(target - last, -self.target_clip, self.target_clip))
                guess = float(self.regressor.predict_one(feats) or 0.0)
                loss = (guess - change) ** 2
                self.regressor.learn_one(feats, change)
            else:
                label = p.event.is_low
                p_true = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
                loss = -float(np.log(max(p_true if label else 1.0 - p_true, 1e-12)))
                self.classifier.learn_one(feats, label)
                self.pivots_seen += 1
            results.append(PairResult(p.ref.inference_id, p.kind, event_key(p.event),
                                      int(p.event.knowable_time), loss, {}))
        return results

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


