"""ettlib: event-driven online training of market models, from a DuckDB file.

The public API (the seed's names) is re-exported here.  Importing ettlib does
no I/O.
"""

from ettlib.cache import CandleCache
from ettlib.candles import CandleArrays
from ettlib.clock import ReplayClock, WallClock
from ettlib.coordinator import (
    CoordinatorCounters,
    InferenceData,
    InferenceTrainingCoordinator,
    TrainingEventSubscriber,
)
from ettlib.data_provider import DataProvider, Subscription
from ettlib.errors import (
    ConfigError,
    DataValidationError,
    EttError,
    LookAheadError,
    SchemaError,
    StoreLockedError,
    SubscriberError,
    UnknownNameError,
)
from ettlib.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent
from ettlib.frames import InferenceFrameReference, NormParams
from ettlib.normalization import compute_norm_params, normalize
from ettlib.pivots import PivotTable, StreamingPivotDetector, detect_pivots, store_pivots
from ettlib.replay import ReplayCursor, ReplayEngine
from ettlib.schema import ensure_schema
from ettlib.store import DEFAULT_PATH, DuckDBStorage, IngestReport

__version__ = "0.1.0"

# Training names load torch: they are resolved on first use, not at import.
_TRAINING_NAMES = {
    "RealTrainingAdapter": "ettlib.training.adapters",
    "TransformerAdapter": "ettlib.training.adapters",
    "RiverAdapter": "ettlib.training.adapters",
    "PersistenceAdapter": "ettlib.training.adapters",
    "InferenceLoop": "ettlib.training.inference_loop",
    "ModelConfig": "ettlib.training.models",
    "ExperimentConfig": "ettlib.training.experiment",
    "ExperimentResult": "ettlib.training.experiment",
    "ExperimentError": "ettlib.training.experiment",
    "run_experiment": "ettlib.training.experiment",
    "run_report": "ettlib.reports",
    "ReportResult": "ettlib.reports",
    "ReportError": "ettlib.reports",
    "run_sweep": "ettlib.sweep",
    "SweepResult": "ettlib.sweep",
    "expand_grid": "ettlib.sweep",
    "EventStepper": "ettlib.widgets",
}


def __getattr__(name: str):
    module = _TRAINING_NAMES.get(name)
    if module is None:
        raise AttributeError(f"module 'ettlib' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_TRAINING_NAMES))

__all__ = [*_TRAINING_NAMES,
    "CandleArrays",
    "CandleCache",
    "CandleCompletionEvent",
    "compute_norm_params",
    "ConfigError",
    "CoordinatorCounters",
    "DataProvider",
    "DataValidationError",
    "DEFAULT_PATH",
    "detect_pivots",
    "DuckDBStorage",
    "ensure_schema",
    "EttError",
    "InferenceData",
    "InferenceFrameReference",
    "InferenceStepEvent",
    "InferenceTrainingCoordinator",
    "IngestReport",
    "LookAheadError",
    "normalize",
    "NormParams",
    "PivotEvent",
    "PivotTable",
    "ReplayClock",
    "ReplayCursor",
    "ReplayEngine",
    "SchemaError",
    "store_pivots",
    "StoreLockedError",
    "StreamingPivotDetector",
    "SubscriberError",
    "Subscription",
    "TrainingEventSubscriber",
    "UnknownNameError",
    "WallClock",
]
