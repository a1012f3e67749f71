"""Experiments: a config, a run over a session, prequential scores, the runs table, sweeps.

Modules: :mod:`~ettlib.experiment.config` (:class:`ExperimentConfig`),
:mod:`~ettlib.experiment.runner` (:func:`run_experiment`),
:mod:`~ettlib.experiment.metrics` (prequential scores),
:mod:`~ettlib.experiment.scoring` (the run's own subscriber),
:mod:`~ettlib.experiment.runs` (manifests, resume checks) and
:mod:`~ettlib.experiment.sweep` (many runs in parallel).
"""

from ettlib.experiment.config import ExperimentConfig
from ettlib.experiment.runner import ExperimentError, ExperimentResult, run_experiment

__all__ = ["ExperimentConfig", "ExperimentError", "ExperimentResult", "run_experiment"]
