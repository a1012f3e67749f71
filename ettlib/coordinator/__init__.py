"""The coordinator: predictions stored by reference, matched to the truth, delivered exactly once.

Modules: :mod:`~ettlib.coordinator.frames` (:class:`InferenceFrameReference`),
:mod:`~ettlib.coordinator.normalization`, :mod:`~ettlib.coordinator.coordinator`
(:class:`InferenceTrainingCoordinator`) and :mod:`~ettlib.coordinator.persistence`
(what a flush commits, and what a resume reads back).
"""

from ettlib.coordinator.coordinator import (
    CoordinatorCounters,
    InferenceData,
    InferenceTrainingCoordinator,
    TrainingEventSubscriber,
    new_run_id,
    subscriber_name,
)
from ettlib.coordinator.frames import InferenceFrameReference

__all__ = [
    "CoordinatorCounters",
    "InferenceData",
    "InferenceFrameReference",
    "InferenceTrainingCoordinator",
    "TrainingEventSubscriber",
    "new_run_id",
    "subscriber_name",
]
