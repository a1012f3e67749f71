"""Baselines that never learn: ``"persistence"`` (the last close again), no PyTorch.

(The other baseline, ``"frozen"``, is the run's own model never trained:
:func:`ettlib.experiment.runner.build_baseline`; for a Transformer, the
registered :func:`ettlib.training.adapters.transformer.frozen_transformer`.)

Examples
--------
>>> import numpy as np
>>> adapter = PersistenceAdapter()
>>> window = np.array([[1.0, 2.0, 0.5, 1.5, 3.0], [1.5, 2.5, 1.0, 2.0, 4.0]])
>>> adapter.predict(window, ("open", "high", "low", "close", "volume"))
Prediction(action='HOLD', predicted_candle=(2.0, 2.0, 2.0, 2.0, 4.0), confidence=1.0)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ettlib.errors import ConfigError
from ettlib.training.adapters.base import Prediction, TrainingAdapter

__all__ = ["PersistenceAdapter"]


class PersistenceAdapter(TrainingAdapter):
    """Baseline: the next candle repeats the last close (O=H=L=C); action HOLD.

    Volume (when a target) repeats the last volume.  Never learns.
    """

    name = "persistence"
    learns = False

    def __init__(self, **base):
        base.setdefault("features", ("close", "volume"))
        super().__init__(**base)
        if "close" not in self.features:
            raise ConfigError("the persistence baseline needs 'close' among its features")

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        x = self._select(window, columns, self.features)
        last = dict(zip(self.features, (float(v) for v in x[-1])))
        candle = tuple(
            last[t] if t == "volume" and "volume" in last else last["close"] for t in self.targets
        )
        return Prediction("HOLD", candle, 1.0)

    def _learn(self, pairs):
        return []

