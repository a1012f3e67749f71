"""Training: models, adapters, the inference loop.

One concept per module:

- :mod:`~ettlib.training.models` -- the Transformer (``ModelConfig``, ``build_model``);
- :mod:`~ettlib.training.adapters` -- learners subscribed to training pairs, one
  module each (``TransformerAdapter`` a.k.a. ``RealTrainingAdapter``,
  ``RiverAdapter``, ``PersistenceAdapter``, the ``frozen`` baseline);
- :mod:`~ettlib.training.registry` -- adapters by name (``register``, ``create``);
- :mod:`~ettlib.training.checks` -- the conformance suite every adapter passes;
- :mod:`~ettlib.training.features` -- window features for non-sequence learners;
- :mod:`~ettlib.training.inference_loop` -- predict and register frames.

Experiments (config, runner, scores) are :mod:`ettlib.experiment`'s.  Names
are imported lazily (PyTorch loads only when a model is needed).
"""

from __future__ import annotations

from ettlib.lazy import lazy_names

_NAMES = {
    "ModelConfig": "ettlib.training.models",
    "build_model": "ettlib.training.models",
    "CandleTransformer": "ettlib.training.models",
    "TrainingAdapter": "ettlib.training.adapters",
    "TransformerAdapter": "ettlib.training.adapters",
    "RealTrainingAdapter": "ettlib.training.adapters",
    "RiverAdapter": "ettlib.training.adapters",
    "PersistenceAdapter": "ettlib.training.adapters",
    "Prediction": "ettlib.training.adapters",
    "PairResult": "ettlib.training.adapters",
    "register": "ettlib.training.registry",
    "create": "ettlib.training.registry",
    "InferenceLoop": "ettlib.training.inference_loop",
}

__all__ = sorted(_NAMES)

__getattr__, __dir__ = lazy_names(__name__, _NAMES, globals())
