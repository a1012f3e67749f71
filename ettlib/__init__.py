"""ettlib: event-driven online training of market models, from a DuckDB file.

Start with :class:`Workbench` (a store and wired replay sessions over it) or
:func:`run_experiment` (a whole experiment).  The parts keep their names --
:class:`InferenceTrainingCoordinator`, :class:`InferenceFrameReference`,
:class:`TrainingEventSubscriber`, :class:`CandleCompletionEvent`,
:class:`PivotEvent`, :class:`DataProvider` -- and every other name stays
importable from its module.  Importing ettlib does no I/O.
"""

from ettlib.coordinator import InferenceData, InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.errors import (
    ClockError,
    ConfigError,
    DataValidationError,
    EttError,
    LookAheadError,
    SchemaError,
    StoreLockedError,
    StoreOpenError,
    SubscriberError,
    UnknownNameError,
)
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.replay import ReplayEngine
from ettlib.session import Session
from ettlib.store import DuckDBStorage
from ettlib.workbench import Workbench

__version__ = "0.1.0"

# These load torch, papermill or ipywidgets: resolved on first use, not at import.
_LAZY_NAMES = {
    "ExperimentConfig": "ettlib.experiment.config",
    "ExperimentResult": "ettlib.experiment.runner",
    "ExperimentError": "ettlib.experiment.runner",
    "run_experiment": "ettlib.experiment.runner",
    "RealTrainingAdapter": "ettlib.training.adapters",
    "TransformerAdapter": "ettlib.training.adapters",
    "RiverAdapter": "ettlib.training.adapters",
    "PersistenceAdapter": "ettlib.training.adapters",
    "EventStepper": "ettlib.notebooks.widgets",
    "run_report": "ettlib.reports",
    "ReportError": "ettlib.reports",
    "run_sweep": "ettlib.experiment.sweep",
}


def __getattr__(name: str):
    module = _LAZY_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ettlib' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY_NAMES))


__all__ = [
    *_LAZY_NAMES,
    "CandleCompletionEvent",
    "ClockError",
    "ConfigError",
    "DataProvider",
    "DataValidationError",
    "DuckDBStorage",
    "EttError",
    "InferenceData",
    "InferenceFrameReference",
    "InferenceStepEvent",
    "InferenceTrainingCoordinator",
    "LookAheadError",
    "PivotEvent",
    "ReplayEngine",
    "SchemaError",
    "Session",
    "StoreLockedError",
    "StoreOpenError",
    "SubscriberError",
    "TrainingEventSubscriber",
    "UnknownNameError",
    "Workbench",
]
