"""Training adapters: learners that subscribe to matched training pairs.

Every adapter implements :class:`~ettlib.coordinator.TrainingEventSubscriber`
(``on_candle_completion(event, inference_ref)`` and
``on_pivot_event(event, inference_refs)``), predicts from a normalized
window (:meth:`TrainingAdapter.predict`), and saves / loads its state.

How an adapter learns
---------------------
Each delivered ``(event, frame)`` pair is queued.  When ``batch_size`` pairs
are waiting (or at :meth:`~TrainingAdapter.flush`) the adapter re-reads all
their input windows at once through the coordinator's batched retrieval
(``get_inference_data_batch``), builds targets from the events, and learns:

* candle pairs: the completed candle, normalized with the *frame's*
  ``norm_params``, is the target of the next-candle regression;
* pivot pairs: a low pivot is a BUY label, a high pivot a SELL label, for
  every frame the coordinator matched within its lookback.  HOLD is never a
  label: a frame that no pivot matched is not evidence of "hold" at the
  time it could be used (the pivot may still come), so HOLD is only ever
  *predicted* (by baselines, or by a model that has not learned actions).

``auto_train=False`` turns off training when the batch fills; the owner
(the inference loop's ``train_every``) then calls :meth:`flush`.

Each learned pair leaves a :class:`PairResult` (its loss, in the batch
where it was learned) in :attr:`TrainingAdapter.results`, which the
experiment runner writes to ``training_events``.

Exactly once across a crash
---------------------------
Every adapter implements the coordinator's optional state protocol:
:meth:`~TrainingAdapter.checkpoint_state` returns the whole learning state
as bytes -- :meth:`~TrainingAdapter.state_dict` (weights, optimizer, steps,
``pairs_learned``; River's learners), the queued pairs (``pending``) and the
results not yet drained -- and the coordinator stores them in the same
transaction as the delivered pairs.  A coordinator made with
``resume=True`` hands them back to :meth:`~TrainingAdapter.restore_state`
when the adapter subscribes (:meth:`~TrainingAdapter.attach`), so the
adapter continues from exactly the pairs the store says were delivered.
There is no global RNG state to save: the Transformer's dropout is drawn
under ``seed`` and the step count (:func:`~ettlib.training.models.seeded_rng`),
and River's learners carry their own state in the pickle.  The bytes are a
``torch.save`` pickle: restore only states from a store you trust.
Restoring into an adapter with other settings (model shape, batch size,
features, optimizer hyperparameters, ...) raises
:class:`~ettlib.errors.ConfigError` naming them.

Registered names: ``"transformer"`` (:class:`TransformerAdapter`, alias
:data:`RealTrainingAdapter`), ``"river"`` (:class:`RiverAdapter`),
``"persistence"`` (:class:`PersistenceAdapter`) and ``"frozen"`` (the
Transformer that never trains).

Examples
--------
>>> import numpy as np
>>> from ettlib.training.registry import create
>>> adapter = create("persistence")
>>> window = np.array([[1.0, 2.0, 0.5, 1.5, 3.0], [1.5, 2.5, 1.0, 2.0, 4.0]])
>>> adapter.predict(window, ("open", "high", "low", "close", "volume"))
Prediction(action='HOLD', predicted_candle=(2.0, 2.0, 2.0, 2.0, 4.0), confidence=1.0)

A learner's state, through the bytes the coordinator stores:

>>> river = create("river", seed=1)
>>> river.pairs_learned = 7
>>> again = create("river", seed=1)
>>> again.restore_state(river.checkpoint_state())
>>> again.pairs_learned
7
>>> create("river", learning_rate=0.5).restore_state(river.checkpoint_state())
Traceback (most recent call last):
...
ettlib.errors.ConfigError: the stored state of adapter 'river' was made with other settings: learning_rate: stored 0.01, here 0.5
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn

from ettlib.errors import ConfigError, LookAheadError
from ettlib.replay.events import CandleCompletionEvent, event_key
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.training.features import window_features
from ettlib.training.models import ACTIONS, ModelConfig, build_model, default_device, seeded_rng

from ettlib.coordinator import TrainingEventSubscriber

__all__ = [
    "Prediction",
    "PairResult",
    "TrainingAdapter",
    "TransformerAdapter",
    "RealTrainingAdapter",
    "RiverAdapter",
    "PersistenceAdapter",
    "frozen_transformer",
    "STATE_FORMAT",
    "normalized_target",
    "normalized_targets",
]


class Prediction(NamedTuple):
    """One prediction: unpacks as ``action, predicted_candle, confidence``."""

    action: str
    predicted_candle: tuple[float, ...]
    confidence: float


@dataclass(frozen=True, slots=True)
class PairResult:
    """What an adapter learned from one ``(event, frame)`` pair."""

    inference_id: str
    event_kind: str  #: ``"candle"`` or ``"pivot"``
    event_key: str  #: :func:`event_key` of the event
    knowable_time: int  #: when the label became known
    loss: float
    metrics: dict = field(default_factory=dict)


def normalized_target(event: CandleCompletionEvent, norm_params,
                      columns: Sequence[str] = OHLCV_COLUMNS) -> np.ndarray:
    """The completed candle's ``columns`` in the frame's normalized units (float64)."""
    return normalized_targets([event], [norm_params], columns)[0]


def normalized_targets(events, norm_params, columns: Sequence[str] = OHLCV_COLUMNS) -> np.ndarray:
    """:func:`normalized_target` for many ``(event, norm_params)`` at once, ``[n, len(columns)]``.

    The same arithmetic as :func:`ettlib.coordinator.normalization.normalize` in float64
    (``(x - offset) * (1 / scale)`` per column kind), vectorized over pairs.
    """
    from ettlib.coordinator.normalization import column_kind

    columns = tuple(columns)
    where = {c: OHLCV_COLUMNS.index(c) for c in columns}
    raw = np.array([[e.ohlcv[where[c]] for c in columns] for e in events], dtype=np.float64)
    params = np.array([[p["price_offset"], p["price_scale"], p["volume_offset"], p["volume_scale"]]
                       for p in norm_params], dtype=np.float64).reshape(-1, 4)
    offset = np.zeros_like(raw)
    scale = np.ones_like(raw)
    for j, column in enumerate(columns):
        kind = column_kind(column)
        if kind == "price":
            offset[:, j], scale[:, j] = params[:, 0], params[:, 1]
        elif kind == "volume":
            offset[:, j], scale[:, j] = params[:, 2], params[:, 3]
    return (raw - offset) * (1.0 / scale)


def _check_knowable(event, ref) -> None:
    if event.knowable_time <= ref.data_range_end:
        raise LookAheadError(
            f"label {event_key(event)} became known at {event.knowable_time}, not after the "
            f"frame {ref.inference_id}'s last input candle ({ref.data_range_end})"
        )


@dataclass(slots=True)
class _Pending:
    event: Any
    ref: Any
    kind: str


#: Version of the bytes :meth:`TrainingAdapter.checkpoint_state` writes.
STATE_FORMAT = 1


class TrainingAdapter(TrainingEventSubscriber):
    """Base of every adapter: queues pairs, fetches windows in batches, learns.

    Parameters
    ----------
    batch_size
        Pairs per learning step; training runs when this many are waiting.
    auto_train
        Train when a batch fills (``False``: only at :meth:`flush`).
    features
        Window columns the learner reads (must be in the retrieved window).
    targets
        Columns of the predicted candle (normalized), default OHLCV.
    seed
        Seed of everything random in the adapter.
    context_length
        Rows of the windows the adapter will see (sequence models size
        themselves by it; others ignore it).
    """

    name = "base"
    #: Whether the adapter learns at all (baselines do not).
    learns = True

    def __init__(
        self,
        *,
        batch_size: int = 32,
        auto_train: bool = True,
        features: Sequence[str] = OHLCV_COLUMNS,
        targets: Sequence[str] = OHLCV_COLUMNS,
        seed: int = 0,
        context_length: int | None = None,
        source=None,
    ):
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigError(f"seed must be an int, got {seed!r}")
        self.batch_size = batch_size
        self.auto_train = bool(auto_train)
        self.features = tuple(features)
        self.targets = tuple(targets)
        if not self.features or not self.targets:
            raise ConfigError("features and targets must name at least one column")
        self.seed = seed
        self.context_length = context_length
        self.source = source
        self.pending: list[_Pending] = []
        self.results: list[PairResult] = []
        self.pairs_learned = 0

    @property
    def subscriber_name(self) -> str:
        """The adapter's name in ``training_events`` (stable across resumes)."""
        return self.name

    # -- wiring ---------------------------------------------------------------

    def attach(self, coordinator, symbol: str, timeframe: str, pivot_types: Sequence[str] = ()):
        """Learn from ``coordinator``'s pairs for one stream (candle and pivot pairs)."""
        self.source = coordinator
        coordinator.subscribe_to_candle_completion(self, symbol=symbol, timeframe=timeframe)
        if pivot_types:
            coordinator.subscribe_to_pivot_events(
                self, symbol=symbol, timeframe=timeframe, pivot_types=list(pivot_types)
            )
        return self

    # -- TrainingEventSubscriber ---------------------------------------------

    def on_candle_completion(self, event, inference_ref) -> None:
        """Queue the pair ``(event, inference_ref)``; ``None`` (no frame) is ignored."""
        if inference_ref is None or not self.learns:
            return
        _check_knowable(event, inference_ref)
        self.pending.append(_Pending(event, inference_ref, "candle"))
        self._maybe_train()

    def on_pivot_event(self, event, inference_refs) -> None:
        """Queue one pair per matched frame (low pivot: BUY, high pivot: SELL)."""
        if not self.learns:
            return
        for ref in inference_refs:
            _check_knowable(event, ref)
            self.pending.append(_Pending(event, ref, "pivot"))
        self._maybe_train()

    def _maybe_train(self) -> None:
        if self.auto_train:
            while len(self.pending) >= self.batch_size:
                batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
                self._train_pending(batch)

    def flush(self) -> list[PairResult]:
        """Learn from every waiting pair now; return their results."""
        start = len(self.results)
        while self.pending:
            batch, self.pending = self.pending[: self.batch_size], self.pending[self.batch_size :]
            self._train_pending(batch)
        return self.results[start:]

    def drain_results(self) -> list[PairResult]:
        """Return and forget the accumulated :class:`PairResult` records."""
        out, self.results = self.results, []
        return out

    def _train_pending(self, batch: list[_Pending]) -> None:
        if self.source is None:
            raise ConfigError(f"{self.name} adapter has no data source; call attach(coordinator)")
        data = self.source.get_inference_data_batch([p.ref for p in batch])
        usable = [(p, d) for p, d in zip(batch, data) if d is not None]
        if usable:
            self.results.extend(self._learn(usable))
            self.pairs_learned += len(usable)

    # -- to implement -----------------------------------------------------------

    def _learn(self, pairs: list[tuple[_Pending, Any]]) -> list[PairResult]:
        """Learn from ``(pending, inference_data)`` pairs; return one result each."""
        raise NotImplementedError

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        """Predict from one normalized window ``[n, len(columns)]`` (last row = last closed candle).

        ``columns`` defaults to :attr:`features`.  The window is not modified.
        """
        raise NotImplementedError

    def state_dict(self) -> dict:
        """Everything needed to restore the adapter (see :meth:`load_state_dict`)."""
        return {"name": self.name, "pairs_learned": self.pairs_learned, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        if state.get("name") != self.name:
            raise ConfigError(f"state of adapter {state.get('name')!r} cannot load into {self.name!r}")
        self.pairs_learned = int(state.get("pairs_learned", 0))
        self.seed = int(state.get("seed", self.seed))

    def settings(self) -> dict:
        """What an exact continuation needs equal, beside what :meth:`state_dict` carries.

        Plain values (JSON types, tuples); compared by :meth:`restore_state`.
        """
        return {"name": self.name, "batch_size": self.batch_size, "features": list(self.features),
                "targets": list(self.targets), "learns": bool(self.learns)}

    def checkpoint_state(self) -> bytes:
        """The whole learning state as bytes (the coordinator's state protocol).

        :meth:`state_dict`, :meth:`settings`, the queued pairs and the results
        not yet drained, in one ``torch.save`` pickle.  Nothing is changed.
        """
        buffer = io.BytesIO()
        torch.save({
            "format": STATE_FORMAT,
            "settings": self.settings(),
            "adapter": self.state_dict(),
            "pending": [(p.event, p.ref, p.kind) for p in self.pending],
            "results": list(self.results),
        }, buffer)
        return buffer.getvalue()

    def restore_state(self, state: bytes) -> None:
        """Continue from bytes of :meth:`checkpoint_state` (a trusted store's).

        Raises :class:`~ettlib.errors.ConfigError` when the bytes are not an
        adapter state, or were made by an adapter with other
        :meth:`settings` or another model shape; nothing is changed then.
        """
        try:
            data = torch.load(io.BytesIO(state), map_location="cpu", weights_only=False)
        except Exception as exc:
            raise ConfigError(
                f"{self.name} adapter: the stored state cannot be read ({type(exc).__name__}: {exc})"
            ) from exc
        if not isinstance(data, dict) or data.get("format") != STATE_FORMAT:
            found = data.get("format") if isinstance(data, dict) else type(data).__name__
            raise ConfigError(
                f"{self.name} adapter: not an adapter state of format {STATE_FORMAT} (found {found!r})"
            )
        mine, theirs = self.settings(), data["settings"]
        if mine != theirs:
            if theirs.get("name") != mine["name"]:
                raise ConfigError(
                    f"the stored state is of adapter {theirs.get('name')!r}, not {mine['name']!r}"
                )
            diff = sorted(k for k in mine.keys() | theirs.keys() if mine.get(k) != theirs.get(k))
            raise ConfigError(
                f"the stored state of adapter {mine['name']!r} was made with other settings: "
                + "; ".join(f"{k}: stored {theirs.get(k)!r}, here {mine.get(k)!r}" for k in diff)
            )
        self.load_state_dict(data["adapter"])
        self.pending = [_Pending(event, ref, kind) for event, ref, kind in data["pending"]]
        self.results = list(data["results"])

    def save(self, path) -> Path:
        """Write a checkpoint (``torch.save`` of :meth:`state_dict`) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), path)
        return path

    def load(self, path) -> TrainingAdapter:
        """Restore a checkpoint written by :meth:`save`; returns ``self``."""
        self.load_state_dict(torch.load(Path(path), weights_only=False))
        return self

    # -- helpers ----------------------------------------------------------------

    def _column_index(self, wanted: Sequence[str], columns: Sequence[str]) -> list[int]:
        columns = tuple(columns)
        missing = [c for c in wanted if c not in columns]
        if missing:
            raise ConfigError(
                f"{self.name} adapter needs columns {missing} that the window lacks "
                f"(window columns: {', '.join(columns)})"
            )
        return [columns.index(c) for c in wanted]

    def _select(self, window: np.ndarray, columns, wanted) -> np.ndarray:
        columns = self.features if columns is None else tuple(columns)
        window = np.asarray(window)
        if window.ndim != 2 or window.shape[1] != len(columns) or len(window) == 0:
            raise ConfigError(
                f"window must be a non-empty [n, {len(columns)}] array, got shape {window.shape}"
            )
        return window[:, self._column_index(wanted, columns)]


# ---------------------------------------------------------------------------
# Transformer (backprop)
# ---------------------------------------------------------------------------


class TransformerAdapter(TrainingAdapter):
    """``RealTrainingAdapter``, the original design's name: a :class:`~ettlib.training.models.CandleTransformer`
    trained by backprop (Adam, gradient clipping) on batches of matched pairs.

    Parameters
    ----------
    context_length, d_model, n_heads, n_layers, d_ff, dropout, attention_dropout, positions
        The model's :class:`~ettlib.training.models.ModelConfig`.
    differences, shortcut_lags
        Also as in :class:`~ettlib.training.models.ModelConfig`: feed each
        row's changes beside its values; the linear shortcut from the last
        ``shortcut_lags`` changes to both heads (0: none).
    shortcut_columns
        Columns whose changes feed the shortcut; default ``("close",)``
        when the close is a feature (else every column).  A few inputs
        keep the shortcut from fitting noise: on 2 days of 1m demo candles,
        least squares on the last 4 changes of all five OHLCV columns did
        worse out of sample than on the last close change alone.
    learning_rate, shortcut_learning_rate, weight_decay, grad_clip
        Adam's step sizes (the encoder and heads; the shortcut) and weight
        decay; the gradient-norm clip.  The defaults (1e-4 and 1e-2) were
        chosen on the default experiment (2 days of 1m demo candles, batch
        16, about 300 steps): next-minute returns are mostly noise, and an
        encoder stepping at 1e-3 adds more noise to its predictions than it
        finds signal (its close MAE was about 0.5% above persistence's),
        while the shortcut's few weights need the larger step to find the
        reversal within the run.
    candle_weight, pivot_weight
        Weights of the regression (MSE) and action (cross-entropy) losses.
    huber_delta
        When positive, the regression loss is Huber with this threshold
        (in normalized units) instead of MSE: less pull from fat-tailed
        moves.
    learn
        ``False`` builds the "frozen" baseline: predicts, never trains.
    residual
        The regression head predicts the *change* from the last closed
        candle (open/high/low/close relative to its close, volume relative
        to its volume), added back at prediction: an untrained model starts
        near persistence instead of near the window mean.
    device
        ``"cuda"``/``"cpu"``; default: CUDA when present.

    Windows are cut to their last ``context_length`` rows; shorter windows
    (gaps) are padded at the front by repeating their first row.  NaN
    (indicator warm-up) becomes 0.
    """

    name = "transformer"

    def __init__(
        self,
        *,
        context_length: int | None = 64,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 64,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "learned",
        differences: bool = True,
        shortcut_lags: int = 4,
        shortcut_columns: Sequence[str] | None = None,
        learning_rate: float = 1e-4,
        shortcut_learning_rate: float = 1e-2,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        candle_weight: float = 1.0,
        pivot_weight: float = 1.0,
        huber_delta: float = 0.0,
        learn: bool = True,
        residual: bool = True,
        device: str | None = None,
        **base,
    ):
        super().__init__(context_length=context_length, **base)
        self.config = ModelConfig(
            n_features=len(self.features),
            context_length=context_length,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            d_ff=d_ff,
            dropout=dropout,
            attention_dropout=attention_dropout,
            positions=positions,
            n_targets=len(self.targets),
            differences=differences,
            shortcut_lags=shortcut_lags,
            shortcut_features=self._shortcut_features(shortcut_columns),
            seed=self.seed,
        )
        for label, value in (("learning_rate", learning_rate), ("grad_clip", grad_clip),
                             ("shortcut_learning_rate", shortcut_learning_rate),
                             ("candle_weight", candle_weight), ("pivot_weight", pivot_weight),
                             ("weight_decay", weight_decay), ("huber_delta", huber_delta)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{label} must be a non-negative number, got {value!r}")
        self.learns = bool(learn)
        if not self.learns:
            self.name = "frozen"
        self.residual = bool(residual)
        self._anchor_index = np.array([self._anchor_of(t) for t in self.targets], dtype=np.int64)
        self.grad_clip = float(grad_clip)
        self.candle_weight = float(candle_weight)
        self.pivot_weight = float(pivot_weight)
        self.huber_delta = float(huber_delta)
        self.device = torch.device(device or default_device())
        self.model = build_model(self.config, self.device)
        self.model.eval()
        shortcut = [p for n, p in self.model.named_parameters() if "shortcut" in n]
        encoder = [p for n, p in self.model.named_parameters() if "shortcut" not in n]
        groups = [{"params": encoder, "lr": learning_rate}]
        if shortcut:
            groups.append({"params": shortcut, "lr": shortcut_learning_rate})
        self.optimizer = torch.optim.Adam(groups, lr=learning_rate, weight_decay=weight_decay)
        self.steps = 0

    def _shortcut_features(self, columns) -> tuple[int, ...]:
        if columns is None:  # the close's recent moves, when the model reads the close
            columns = ("close",) if "close" in self.features else ()
        if isinstance(columns, str):
            columns = (columns,)
        return tuple(self._column_index(tuple(columns), self.features))

    def _anchor_of(self, target: str) -> int:
        if not self.residual:
            return -1
        if target in ("open", "high", "low", "close") and "close" in self.features:
            return self.features.index("close")
        if target == "volume" and "volume" in self.features:
            return self.features.index("volume")
        return -1

    def anchors(self, x: np.ndarray) -> np.ndarray:
        """Per-target anchors ``[..., n_targets]`` from prepared inputs' last row (0: none)."""
        last = x[..., -1, :]
        out = np.take(last, np.maximum(self._anchor_index, 0), axis=-1)
        return np.where(self._anchor_index >= 0, out, 0.0).astype(np.float32)

    def prepare_inputs(self, window: np.ndarray, columns: Sequence[str] | None = None) -> np.ndarray:
        """The ``float32 [context_length, n_features]`` array the model reads for a window.

        C-contiguous, as :meth:`prepare_batch`'s (selecting columns by index
        leaves numpy's result in column order; the values are the same).
        """
        x = self._select(window, columns, self.features)
        length = self.config.context_length
        if len(x) > length:
            x = x[-length:]
        elif len(x) < length:
            x = np.concatenate([np.repeat(x[:1], length - len(x), axis=0), x])
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def prepare_batch(self, windows: Sequence[np.ndarray], columns: Sequence | None = None) -> np.ndarray:
        """:meth:`prepare_inputs` of many windows, stacked: ``float32 [b, context_length, n_features]``.

        ``columns`` is one column tuple for every window, or one per window.
        Windows with the same columns and at least ``context_length`` rows
        (the usual case) are cut, selected and cast in one pass; the values
        are exactly those of :meth:`prepare_inputs`.

        >>> adapter = TransformerAdapter(context_length=4, d_model=8, n_heads=2, n_layers=1,
        ...                              d_ff=8, device="cpu")
        >>> rng = np.random.default_rng(0)
        >>> for sizes in ((4, 6, 5), (4, 6, 2)):  # all long enough; one short (padded)
        ...     windows = [rng.normal(size=(n, 5)) for n in sizes]
        ...     batch = adapter.prepare_batch(windows)
        ...     same = all(np.array_equal(b, adapter.prepare_inputs(w)) for b, w in zip(batch, windows))
        ...     print(batch.shape, batch.dtype, batch.flags.c_contiguous, same)
        (3, 4, 5) float32 True True
        (3, 4, 5) float32 True True
        """
        windows = [np.asarray(w) for w in windows]
        if not windows:
            return np.zeros((0, self.config.context_length, len(self.features)), np.float32)
        if columns is None or not len(columns) or isinstance(columns[0], str):
            per_window = [columns] * len(windows)
        else:
            per_window = list(columns)
        length = self.config.context_length
        first = self.features if per_window[0] is None else tuple(per_window[0])
        uniform = all(
            w.ndim == 2 and len(w) >= length and w.shape[1] == len(first)
            and (c is per_window[0] or (self.features if c is None else tuple(c)) == first)
            for w, c in zip(windows, per_window)
        )
        if not uniform:
            return np.stack([self.prepare_inputs(w, c) for w, c in zip(windows, per_window)])
        index = self._column_index(self.features, first)
        x = np.stack([w[-length:] for w in windows])
        x = np.ascontiguousarray(x[:, :, index], dtype=np.float32)
        return np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        prepared = self.prepare_inputs(window, columns)
        x = torch.from_numpy(prepared).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
            probs = torch.softmax(out.action_logits[0], dim=-1)
        confidence, index = torch.max(probs, dim=-1)
        candle = out.candle[0].cpu().numpy() + self.anchors(prepared)
        return Prediction(ACTIONS[int(index)], tuple(float(v) for v in candle), float(confidence))

    def predict_batch(self, windows: Sequence[np.ndarray], columns=None) -> list[Prediction]:
        """Predictions for several windows in one forward pass."""
        prepared = self.prepare_batch(windows, columns)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(prepared).to(self.device))
            probs = torch.softmax(out.action_logits, dim=-1)
        conf, index = torch.max(probs, dim=-1)
        candles = (out.candle.cpu().numpy() + self.anchors(prepared)).tolist()
        return [
            Prediction(ACTIONS[int(i)], tuple(c), float(p))
            for i, c, p in zip(index.tolist(), candles, conf.tolist())
        ]

    def _tensors(self, pairs):
        """Inputs, regression targets, action labels and masks of a batch."""
        n = len(pairs)
        x = self.prepare_batch([d.values for _, d in pairs], [d.columns for _, d in pairs])
        y_candle = np.zeros((n, len(self.targets)), dtype=np.float32)
        y_action = np.zeros(n, dtype=np.int64)
        is_candle = np.zeros(n, dtype=bool)
        candles = [i for i, (p, _) in enumerate(pairs) if p.kind == "candle"]
        if candles:
            targets = normalized_targets([pairs[i][0].event for i in candles],
                                         [pairs[i][0].ref.norm_params for i in candles], self.targets)
            y_candle[candles] = targets - self.anchors(x[candles])
            is_candle[candles] = True
        for i, (p, _) in enumerate(pairs):
            if p.kind == "pivot":
                y_action[i] = ACTIONS.index(p.event.implied_action)
        return x, y_candle, y_action, is_candle

    def _learn(self, pairs):
        x, y_candle, y_action, is_candle = self._tensors(pairs)
        return self.train_step(x, y_candle, y_action, is_candle, pairs)

    def train_step(self, x, y_candle, y_action, is_candle, pairs=None) -> list[PairResult]:
        """One Adam step on pre-built arrays (also the benchmark's pre-built path).

        ``x`` ``[b, context, features]``, ``y_candle`` ``[b, targets]`` (relative
        to :meth:`anchors` when ``residual``),
        ``y_action`` ``[b]`` (index into :data:`ACTIONS`), ``is_candle`` ``[b]``
        (which rows are regression pairs).  Returns per-pair results when
        ``pairs`` is given.
        """
        device = self.device
        xt = torch.as_tensor(x, device=device)
        yc = torch.as_tensor(y_candle, device=device)
        ya = torch.as_tensor(y_action, device=device)
        mask = torch.as_tensor(is_candle, device=device)
        self.model.train()
        with seeded_rng(self.seed * 1_000_003 + self.steps):  # dropout; global RNGs untouched
            out = self.model(xt)
            if self.huber_delta > 0:
                candle_loss = nn.functional.huber_loss(
                    out.candle, yc, reduction="none", delta=self.huber_delta).mean(dim=1)
            else:
                candle_loss = ((out.candle - yc) ** 2).mean(dim=1)
            action_loss = nn.functional.cross_entropy(out.action_logits, ya, reduction="none")
            per_pair = torch.where(mask, self.candle_weight * candle_loss,
                                   self.pivot_weight * action_loss)
            loss = per_pair.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        self.model.eval()
        self.steps += 1
        if pairs is None:
            return []
        losses = per_pair.detach().cpu().tolist()
        batch_loss = float(loss.detach())
        return [
            PairResult(
                p.ref.inference_id, p.kind, event_key(p.event), int(p.event.knowable_time),
                float(l), {"step": self.steps, "batch_loss": batch_loss},
            )
            for (p, _), l in zip(pairs, losses)
        ]

    def settings(self) -> dict:
        optimizer = [{k: v for k, v in group.items() if k != "params"}
                     for group in self.optimizer.param_groups]
        return {**super().settings(), "model": {k: v for k, v in self.config.to_dict().items()
                                                if k != "seed"},
                "optimizer": optimizer, "residual": self.residual, "grad_clip": self.grad_clip,
                "candle_weight": self.candle_weight, "pivot_weight": self.pivot_weight,
                "huber_delta": self.huber_delta}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            config=self.config.to_dict(),
            model={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            steps=self.steps,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        mine = {k: v for k, v in self.config.to_dict().items() if k != "seed"}
        theirs = {k: v for k, v in state["config"].items() if k != "seed"}
        if mine != theirs:
            raise ConfigError(
                f"checkpoint model config {theirs} differs from this adapter's {mine}"
            )
        super().load_state_dict(state)
        self.config = ModelConfig(**state["config"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])


#: The original design's name for the Transformer adapter.
RealTrainingAdapter = TransformerAdapter


def frozen_transformer(**params) -> TransformerAdapter:
    """The "frozen" baseline: the Transformer with the same init, never trained."""
    params.pop("learn", None)
    return TransformerAdapter(learn=False, **params)


# ---------------------------------------------------------------------------
# River (online, no backprop)
# ---------------------------------------------------------------------------


class RiverAdapter(TrainingAdapter):
    """An online River learner (``learn_one`` / ``predict_one``) on window features.

    The regressor predicts the change of the normalized close from the last
    closed candle to the next one, from :func:`~ettlib.training.features.window_features`
    standardized online (``StandardScaler``; River's default SGD diverges on
    unscaled fat-tailed returns).  Targets are clipped to ``±target_clip``
    normalized units for the same reason.  Pivot pairs train a logistic
    regression (BUY vs SELL) on the same features.

    Parameters
    ----------
    model
        ``"linear"`` (``LinearRegression`` with SGD at ``learning_rate``) or
        ``"hoeffding"`` (``HoeffdingTreeRegressor``).
    learning_rate
        SGD step of the linear models.
    target_clip
        Bound on the learned close change, in normalized units.
    """

    name = "river"
    _MODELS = ("linear", "hoeffding")

    def __init__(self, *, model: str = "linear", learning_rate: float = 0.01,
                 target_clip: float = 5.0, **base):
        base.setdefault("features", ("high", "low", "close"))
        base.setdefault("targets", ("close",))
        super().__init__(**base)
        if model not in self._MODELS:
            from ettlib.errors import UnknownNameError

            raise UnknownNameError("river model", model, self._MODELS)
        if tuple(self.targets) != ("close",):
            raise ConfigError(f"the river adapter predicts ('close',) only, got {self.targets}")
        if "close" not in self.features:
            raise ConfigError("the river adapter needs 'close' among its features")
        self.model_name = model
        self.learning_rate = float(learning_rate)
        self.target_clip = float(target_clip)
        self.regressor, self.classifier = self._build()
        self.pivots_seen = 0

    def _build(self):
        from river import linear_model, optim, preprocessing, tree

        if self.model_name == "linear":
            regressor = preprocessing.StandardScaler() | linear_model.LinearRegression(
                optimizer=optim.SGD(self.learning_rate), intercept_lr=self.learning_rate
            )
        else:
            regressor = preprocessing.StandardScaler() | tree.HoeffdingTreeRegressor()
        classifier = preprocessing.StandardScaler() | linear_model.LogisticRegression(
            optimizer=optim.SGD(self.learning_rate)
        )
        return regressor, classifier

    def features_of(self, window: np.ndarray, columns: Sequence[str] | None = None) -> dict:
        """The feature dict of one normalized window."""
        x = self._select(window, columns, self.features)
        named = dict(zip(self.features, x.T))
        return window_features(named["close"], named.get("high"), named.get("low"))

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        x = self._select(window, columns, self.features)
        last_close = float(np.nan_to_num(x[-1, self.features.index("close")]))
        feats = self.features_of(window, columns)
        change = float(self.regressor.predict_one(feats) or 0.0)
        change = float(np.clip(change, -self.target_clip, self.target_clip))
        if self.pivots_seen:
            p_buy = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
            action, confidence = ("BUY", p_buy) if p_buy >= 0.5 else ("SELL", 1.0 - p_buy)
        else:
            action, confidence = "HOLD", 1.0 / 3.0
        return Prediction(action, (last_close + change,), confidence)

    def _learn(self, pairs):
        results = []
        for p, data in pairs:
            feats = self.features_of(data.values, data.columns)
            if p.kind == "candle":
                x = self._select(data.values, data.columns, ("close",))
                last = float(np.nan_to_num(x[-1, 0]))
                target = float(normalized_target(p.event, p.ref.norm_params, ("close",))[0])
                change = float(np.clip(target - last, -self.target_clip, self.target_clip))
                guess = float(self.regressor.predict_one(feats) or 0.0)
                loss = (guess - change) ** 2
                self.regressor.learn_one(feats, change)
            else:
                label = p.event.is_low
                p_true = float(self.classifier.predict_proba_one(feats).get(True, 0.5))
                loss = -float(np.log(max(p_true if label else 1.0 - p_true, 1e-12)))
                self.classifier.learn_one(feats, label)
                self.pivots_seen += 1
            results.append(PairResult(p.ref.inference_id, p.kind, event_key(p.event),
                                      int(p.event.knowable_time), loss, {}))
        return results

    def settings(self) -> dict:
        return {**super().settings(), "model": self.model_name,
                "learning_rate": self.learning_rate, "target_clip": self.target_clip}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(model=self.model_name, pivots_seen=self.pivots_seen,
                     learners=pickle.dumps((self.regressor, self.classifier)))
        return state

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        if state["model"] != self.model_name:
            raise ConfigError(f"checkpoint holds river model {state['model']!r}, not {self.model_name!r}")
        self.regressor, self.classifier = pickle.load(io.BytesIO(state["learners"]))
        self.pivots_seen = int(state["pivots_seen"])


# ---------------------------------------------------------------------------
# Baselines
# ---------------------------------------------------------------------------


class PersistenceAdapter(TrainingAdapter):
    """Baseline: the next candle repeats the last close (O=H=L=C); action HOLD.

    Volume (when a target) repeats the last volume.  Never learns.
    """

    name = "persistence"
    learns = False

    def __init__(self, **base):
        base.setdefault("features", ("close", "volume"))
        super().__init__(**base)
        if "close" not in self.features:
            raise ConfigError("the persistence baseline needs 'close' among its features")

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        x = self._select(window, columns, self.features)
        last = dict(zip(self.features, (float(v) for v in x[-1])))
        candle = tuple(
            last[t] if t == "volume" and "volume" in last else last["close"] for t in self.targets
        )
        return Prediction("HOLD", candle, 1.0)

    def _learn(self, pairs):
        return []

