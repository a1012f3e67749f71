"""The experiment configuration: frozen, validated, JSON-serializable.

An :class:`ExperimentConfig` is what a run manifest stores and what a
papermill report's parameters are checked against
(:meth:`ExperimentConfig.from_dict`: unknown names get "did you mean",
values of the wrong type are refused, lists are accepted for tuples).
Times are int epoch ms UTC; ``from_dict`` also accepts ISO-8601 strings
(``"2024-01-01"`` or ``"2024-01-01T12:00:00Z"``, read as UTC).

Examples
--------
>>> config = ExperimentConfig.from_dict({"symbols": ["ETH/USDT"], "start": "2024-01-01",
...                                      "end": "2024-01-02", "adapter": "river"})
>>> config.start, config.symbols
(1704067200000, ('ETH/USDT',))
>>> ExperimentConfig.from_dict(config.to_dict()) == config
True
>>> ExperimentConfig.from_dict({"contxt_length": 10})
Traceback (most recent call last):
...
ettlib.errors.UnknownNameError: unknown experiment parameter 'contxt_length' (did you mean 'context_length'?)
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ettlib.errors import ConfigError, ConfigTypeError, UnknownNameError, positive_int
from ettlib.store.schema import CANDLE_COLUMNS, OHLCV_COLUMNS
from ettlib.replay.events import pivot_types_up_to, validate_pivot_levels
from ettlib.symbols import validate_symbol
from ettlib.timeframes import check_higher, sort_timeframes, validate_timeframe
from ettlib.times import to_ms_or_none

__all__ = ["ExperimentConfig", "OBJECT_PREFIX"]

#: ``adapter`` of a run whose model was an adapter object (``"object:<module>.<class>"``).
OBJECT_PREFIX = "object:"


@dataclass(frozen=True, slots=True)
class ExperimentConfig:
    """Everything that defines an experiment run.

    Parameters
    ----------
    symbols
        Symbols to replay and predict on.
    base_timeframe
        Timeframe of the stored candles the replay streams (``None``: the
        finest stored for every symbol, decided when the run starts and
        recorded in its manifest).
    timeframe
        Timeframe the model predicts on (its candles train the regression
        head; its pivots the action head); ``None``: the base.  A higher one
        is aggregated by the replay from the base candles (no resample step).
    start, end
        Replay range (epoch ms, inclusive open times); ``None``: all data.
    adapter, adapter_params
        Registered adapter name and its parameters
        (:func:`ettlib.training.registry.create`); a run given an adapter
        object records ``"object:<module>.<class>"``.
    baselines
        Adapters predicting beside the model on the same frames (scored,
        never registered as frames); ``"frozen"`` is the run's own model,
        never trained (:func:`~ettlib.experiment.runner.build_baseline`).
    context_length
        Candles per input window.
    columns
        Window columns (read, normalized, fed to the model).
    pivot_types, pivot_lookback, pivot_levels
        Pivots that train the action head, the lookback (in candles) of
        pivot matching, and the highest level detected.
    batch_size, train_every, stride
        Pairs per learning step; learn only every ``train_every`` steps
        (``None``: when a batch fills); predict at every ``stride``-th step.
    seed
        Seed of the model and the run.
    db_path, results_db
        The candle database; where results go (``None``: ``db_path``).  With
        a separate ``results_db`` the candles are opened read-only.
    run_name
        A label stored with the run.
    checkpoint
        Where to save the trained adapter (``None``: not saved).
    torch_threads
        PyTorch CPU threads during the run (restored afterwards), where a
        model of the run imported PyTorch; ``None`` leaves torch's setting.
        Default 1: small models predicting one window at a time run several
        times faster on one thread than on two busy cores (measured: 0.7 ms
        against 27 ms per prediction).
    """

    symbols: tuple[str, ...] = ("ETH/USDT",)
    base_timeframe: str | None = None
    timeframe: str | None = None
    start: int | None = None
    end: int | None = None
    adapter: str = "transformer"
    adapter_params: Mapping[str, Any] = field(default_factory=dict)
    baselines: tuple[str, ...] = ("persistence", "frozen")
    context_length: int = 64
    columns: tuple[str, ...] = OHLCV_COLUMNS
    pivot_types: tuple[str, ...] = ("L2L", "L2H")
    pivot_lookback: int = 5
    pivot_levels: int = 2
    batch_size: int = 16
    train_every: int | None = None
    stride: int = 1
    seed: int = 0
    db_path: str = "data/ett.duckdb"
    results_db: str | None = None
    run_name: str = ""
    checkpoint: str | None = None
    torch_threads: int | None = 1

    def __post_init__(self) -> None:
        s = object.__setattr__
        for name in ("symbols", "baselines", "columns", "pivot_types"):
            value = getattr(self, name)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                raise ConfigTypeError(f"{name} must be a list of strings, got {value!r}")
            if not all(isinstance(v, str) and v for v in value):
                raise ConfigError(f"{name} must hold non-empty strings, got {value!r}")
            s(self, name, tuple(value))
        if not self.symbols:
            raise ConfigError("symbols is empty: name at least one symbol")
        for symbol in self.symbols:
            validate_symbol(symbol)
        for name in ("base_timeframe", "timeframe"):
            if getattr(self, name) is not None:
                validate_timeframe(getattr(self, name))
        if self.base_timeframe is not None and self.timeframe is not None:
            check_higher(self.base_timeframe, self.timeframe)
        s(self, "start", to_ms_or_none(self.start, "start"))
        s(self, "end", to_ms_or_none(self.end, "end"))
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ConfigError(f"start ({self.start}) is after end ({self.end})")
        for name in ("context_length", "pivot_lookback", "pivot_levels", "batch_size", "stride"):
            positive_int(name, getattr(self, name))
        if self.train_every is not None:
            positive_int("train_every", self.train_every)
        if self.torch_threads is not None:
            positive_int("torch_threads", self.torch_threads)
        validate_pivot_levels(self.pivot_levels)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ConfigTypeError(f"seed must be an int, got {self.seed!r}")
        for column in self.columns:
            if column not in CANDLE_COLUMNS:
                raise UnknownNameError("column", column, CANDLE_COLUMNS)
        for column in ("close", "volume"):
            if column not in self.columns:
                raise ConfigError(f"columns must include {column!r} (normalization needs it)")
        known_pivots = pivot_types_up_to(self.pivot_levels)
        for pivot_type in self.pivot_types:
            if pivot_type not in known_pivots:
                raise UnknownNameError("pivot type", pivot_type, known_pivots)
        from ettlib.training import registry

        if not (isinstance(self.adapter, str) and self.adapter.startswith(OBJECT_PREFIX)):
            registry.check_name(self.adapter)
        for name in self.baselines:
            registry.check_name(name)
        if not isinstance(self.adapter_params, Mapping):
            raise ConfigTypeError(f"adapter_params must be a mapping, got {self.adapter_params!r}")
        params = dict(self.adapter_params)
        try:
            json.dumps(params)
        except (TypeError, ValueError) as err:
            raise ConfigError(f"adapter_params must be JSON-serializable: {err}") from None
        s(self, "adapter_params", params)
        for name in ("db_path", "run_name"):
            if not isinstance(getattr(self, name), str):
                raise ConfigTypeError(f"{name} must be a string, got {getattr(self, name)!r}")
        for name in ("results_db", "checkpoint"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                s(self, name, str(value))

    def __hash__(self) -> int:
        return hash(self.to_json())

    @property
    def timeframes(self) -> list[str]:
        """Timeframes the replay produces: the base and the model's (those given)."""
        return sort_timeframes({tf for tf in (self.base_timeframe, self.timeframe) if tf is not None})

    # -- (de)serialization ------------------------------------------------------

    def to_dict(self) -> dict:
        """A plain dict of JSON types (tuples become lists)."""
        out = {}
        for f in fields(self):
            value = getattr(self, f.name)
            out[f.name] = list(value) if isinstance(value, tuple) else (
                dict(value) if isinstance(value, Mapping) else value
            )
        return out

    def to_json(self) -> str:
        """Canonical JSON (sorted keys): equal configs give equal strings."""
        return json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))

    def fingerprint(self) -> str:
        """Short SHA-256 of :meth:`to_json`."""
        return hashlib.sha256(self.to_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ExperimentConfig:
        """Build from a mapping, refusing unknown names and ill-typed values."""
        if not isinstance(values, Mapping):
            raise ConfigTypeError(f"an experiment config must be a mapping, got {type(values).__name__}")
        known = [f.name for f in fields(cls)]
        for name in values:
            if name not in known:
                raise UnknownNameError("experiment parameter", name, known)
        return cls(**dict(values))

    @classmethod
    def from_json(cls, text: str) -> ExperimentConfig:
        try:
            values = json.loads(text)
        except ValueError as err:
            raise ConfigError(f"experiment config is not valid JSON: {err}") from None
        return cls.from_dict(values)

    @classmethod
    def from_file(cls, path) -> ExperimentConfig:
        """Read a ``.json`` (or ``.yaml``/``.yml``) config file."""
        from pathlib import Path

        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: no such config file")
        text = path.read_text()
        if path.suffix in (".yaml", ".yml"):
            import yaml

            return cls.from_dict(yaml.safe_load(text) or {})
        return cls.from_json(text)

    def replace(self, **changes) -> ExperimentConfig:
        """A copy with ``changes`` (validated)."""
        return dataclasses.replace(self, **changes)


