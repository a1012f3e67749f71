"""Training: models, adapters, the inference loop and the experiment runner.

One concept per module:

- :mod:`~ettlib.training.models` -- the Transformer (``ModelConfig``, ``build_model``);
- :mod:`~ettlib.training.adapters` -- learners subscribed to training pairs
  (``TransformerAdapter`` a.k.a. ``RealTrainingAdapter``, ``RiverAdapter``,
  ``PersistenceAdapter``, the ``frozen`` baseline);
- :mod:`~ettlib.training.registry` -- adapters by name (``register``, ``create``);
- :mod:`~ettlib.training.checks` -- the conformance suite every adapter passes;
- :mod:`~ettlib.training.features` -- window features for non-sequence learners;
- :mod:`~ettlib.training.inference_loop` -- predict and register frames (seed Step 3);
- :mod:`~ettlib.experiment.metrics` -- prequential scores;
- :mod:`~ettlib.experiment.config` / :mod:`~ettlib.experiment.runner` --
  ``ExperimentConfig`` and ``run_experiment``.

Names are imported lazily (PyTorch loads only when a model is needed).
"""

from __future__ import annotations

import importlib

_NAMES = {
    "ModelConfig": "models",
    "build_model": "models",
    "CandleTransformer": "models",
    "TrainingAdapter": "adapters",
    "TransformerAdapter": "adapters",
    "RealTrainingAdapter": "adapters",
    "RiverAdapter": "adapters",
    "PersistenceAdapter": "adapters",
    "Prediction": "adapters",
    "PairResult": "adapters",
    "register": "registry",
    "create": "registry",
    "InferenceLoop": "inference_loop",
    "PrequentialScorer": "metrics",
    "ExperimentConfig": "config",
    "ExperimentResult": "experiment",
    "ExperimentError": "experiment",
    "run_experiment": "experiment",
}

__all__ = sorted(_NAMES)


def __getattr__(name: str):
    module = _NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ettlib.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"ettlib.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_NAMES))
