"""The coordinator: predictions stored by reference, matched to the truth, delivered exactly once.

Modules, one concept each: :mod:`~ettlib.coordinator.frames`
(:class:`InferenceFrameReference`), :mod:`~ettlib.coordinator.normalization`,
:mod:`~ettlib.coordinator.subscriber` (:class:`TrainingEventSubscriber`, what
receives pairs), :mod:`~ettlib.coordinator.matching` (which frames an event
matches, and retention; no store), :mod:`~ettlib.coordinator.windows`
(:class:`InferenceData`: the cache, else the store, normalized),
:mod:`~ettlib.coordinator.delivery` (calling subscribers, buffering the rows),
:mod:`~ettlib.coordinator.persistence` (what a flush commits, and what a
resume reads back) and :mod:`~ettlib.coordinator.coordinator`
(:class:`InferenceTrainingCoordinator`, which wires them, and the delivery
protocol).
"""

from ettlib.coordinator.coordinator import (
    CoordinatorCounters,
    InferenceTrainingCoordinator,
    new_run_id,
)
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.subscriber import TrainingEventSubscriber, subscriber_name
from ettlib.coordinator.windows import InferenceData

__all__ = [
    "CoordinatorCounters",
    "InferenceData",
    "InferenceFrameReference",
    "InferenceTrainingCoordinator",
    "TrainingEventSubscriber",
    "new_run_id",
    "subscriber_name",
]
