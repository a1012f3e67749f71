"""ettlib: event-driven online training of market models, from a DuckDB file.

Start with :class:`Workbench` (a store and wired replay sessions over it) or
:func:`run_experiment` (a whole experiment, configured by
:class:`ExperimentConfig`).  The parts keep their names --
:class:`InferenceTrainingCoordinator`, :class:`InferenceFrameReference`,
:class:`TrainingEventSubscriber`, :class:`CandleCompletionEvent`,
:class:`PivotEvent`, :class:`DataProvider`, :class:`ReplayEngine` -- beside
the adapters a user picks (:class:`TransformerAdapter` a.k.a.
:class:`RealTrainingAdapter`, :class:`RiverAdapter`,
:class:`PersistenceAdapter`, or a :class:`TrainingAdapter` of one's own) and
the errors.  Every other name stays importable from its module.  Importing
ettlib does no I/O and loads neither PyTorch nor papermill.
"""

from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.errors import (
    ClockError,
    ConfigError,
    ConfigTypeError,
    DataValidationError,
    EttError,
    LookAheadError,
    SchemaError,
    StoreError,
    StoreLockedError,
    StoreOpenError,
    SubscriberError,
    UnknownNameError,
)
from ettlib.lazy import lazy_names
from ettlib.replay import ReplayEngine
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.replay.provider import DataProvider
from ettlib.session import Session
from ettlib.workbench import Workbench

__version__ = "0.1.0"

# These load PyTorch, River or papermill: resolved on first use, not at import.
_LAZY_NAMES = {
    "ExperimentConfig": "ettlib.experiment.config",
    "ExperimentError": "ettlib.experiment.run_state",
    "run_experiment": "ettlib.experiment.runner",
    "TrainingAdapter": "ettlib.training.adapters",
    "RealTrainingAdapter": "ettlib.training.adapters",
    "TransformerAdapter": "ettlib.training.adapters",
    "RiverAdapter": "ettlib.training.adapters",
    "PersistenceAdapter": "ettlib.training.adapters",
    "ReportError": "ettlib.reports",
}

__getattr__, __dir__ = lazy_names(__name__, _LAZY_NAMES, globals())

__all__ = [
    *_LAZY_NAMES,
    "CandleCompletionEvent",
    "ClockError",
    "ConfigError",
    "ConfigTypeError",
    "DataProvider",
    "DataValidationError",
    "EttError",
    "InferenceFrameReference",
    "InferenceTrainingCoordinator",
    "LookAheadError",
    "PivotEvent",
    "ReplayEngine",
    "SchemaError",
    "Session",
    "StoreError",
    "StoreLockedError",
    "StoreOpenError",
    "SubscriberError",
    "TrainingEventSubscriber",
    "UnknownNameError",
    "Workbench",
]
