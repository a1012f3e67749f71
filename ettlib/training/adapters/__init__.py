"""Training adapters: learners that subscribe to matched training pairs.

One family, one module each:

- :mod:`~ettlib.training.adapters.base` -- :class:`TrainingAdapter` (queue pairs,
  fetch their windows in batches, learn; the state protocol), ``Prediction``,
  ``PairResult``, the normalized targets;
- :mod:`~ettlib.training.adapters.transformer` -- :class:`TransformerAdapter`
  (alias ``RealTrainingAdapter``) and the ``frozen`` baseline: the only module
  that imports PyTorch;
- :mod:`~ettlib.training.adapters.river` -- :class:`RiverAdapter`;
- :mod:`~ettlib.training.adapters.baselines` -- :class:`PersistenceAdapter`.

Every name is importable from here; the Transformer's names load PyTorch on
first use only, so ``from ettlib.training.adapters import RiverAdapter`` does
not.  Registered names (:mod:`ettlib.training.registry`): ``"transformer"``,
``"frozen"``, ``"river"``, ``"persistence"``.

Examples
--------
>>> import numpy as np
>>> from ettlib.training.registry import create
>>> adapter = create("persistence")
>>> window = np.array([[1.0, 2.0, 0.5, 1.5, 3.0], [1.5, 2.5, 1.0, 2.0, 4.0]])
>>> adapter.predict(window, ("open", "high", "low", "close", "volume"))
Prediction(action='HOLD', predicted_candle=(2.0, 2.0, 2.0, 2.0, 4.0), confidence=1.0)
"""

from ettlib.lazy import lazy_names
from ettlib.training.adapters.base import (
    ACTIONS,
    STATE_FORMAT,
    PairResult,
    PendingPair,
    Prediction,
    TrainingAdapter,
    normalized_target,
    normalized_targets,
)
from ettlib.training.adapters.baselines import PersistenceAdapter
from ettlib.training.adapters.river import RiverAdapter

_TORCH_NAMES = {name: "ettlib.training.adapters.transformer"
                for name in ("TransformerAdapter", "RealTrainingAdapter", "frozen_transformer")}

__getattr__, __dir__ = lazy_names(__name__, _TORCH_NAMES, globals())

__all__ = [
    "ACTIONS",
    "PairResult",
    "PendingPair",
    "PersistenceAdapter",
    "Prediction",
    "RealTrainingAdapter",
    "RiverAdapter",
    "STATE_FORMAT",
    "TrainingAdapter",
    "TransformerAdapter",
    "frozen_transformer",
    "normalized_target",
    "normalized_targets",
]
