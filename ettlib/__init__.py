"""ettlib: event-driven online training of market models, from a DuckDB file.

The public API (the seed's names) is re-exported here.  Importing ettlib does
no I/O.
"""

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
from ettlib.schema import ensure_schema

__version__ = "0.1.0"

__all__ = [
    "CandleCompletionEvent",
    "ConfigError",
    "DataProvider",
    "DataValidationError",
    "EttError",
    "InferenceStepEvent",
    "LookAheadError",
    "PivotEvent",
    "SchemaError",
    "StoreLockedError",
    "SubscriberError",
    "Subscription",
    "UnknownNameError",
    "ensure_schema",
]
