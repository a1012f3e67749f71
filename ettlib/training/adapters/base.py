"""The base of every training adapter: queue pairs, fetch their windows in batches, learn.

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

The bytes are a pickled envelope -- :data:`STATE_FORMAT` and the adapter's
settings -- around the learning state, pickled too (the Transformer's with
``torch.save``, for its tensors): any adapter reads the envelope, so a state
of another adapter is refused by name without loading its library.  A
state of another format -- format 1, ``torch.save`` for every adapter,
written by earlier versions -- is refused with a
:class:`~ettlib.errors.ConfigError` that says so.  Restore only states from
a store you trust.  Restoring into an adapter with other settings (model
shape, batch size, features, optimizer hyperparameters, ...) raises
:class:`~ettlib.errors.ConfigError` naming them.

Examples
--------
>>> from ettlib.training.registry import create
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
>>> again.restore_state(b"PK\\x03\\x04 a zip, as torch.save writes")
Traceback (most recent call last):
...
ettlib.errors.ConfigError: river adapter: the stored state is of format 1 (torch.save, an earlier ettlib); this ettlib reads format 2: start the run again
"""

from __future__ import annotations

import pickle
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from ettlib.coordinator import TrainingEventSubscriber
from ettlib.errors import ConfigError, ConfigTypeError, LookAheadError, positive_int
from ettlib.replay.events import CandleCompletionEvent, event_key
from ettlib.store.schema import OHLCV_COLUMNS

__all__ = [
    "ACTIONS",
    "Prediction",
    "PairResult",
    "PendingPair",
    "TrainingAdapter",
    "STATE_FORMAT",
    "normalized_target",
    "check_label_knowable",
    "normalized_targets",
]

#: The actions a model predicts, in the order of its action head.
ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")

#: Version of the bytes :meth:`TrainingAdapter.checkpoint_state` writes
#: (1: ``torch.save`` for every adapter; 2: a pickle, ``torch.save`` for the Transformer only).
STATE_FORMAT = 2

_ZIP_MAGIC = b"PK\x03\x04"  # what torch.save writes

#: Undrained results at which :meth:`TrainingAdapter.checkpoint_state` warns, once per adapter
#: (about 70 days of 1m pairs: each commit then spends some 50 ms storing them again).
UNDRAINED_RESULTS_WARNING = 100_000


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

    def __reduce__(self):
        # pickled as a call of pair_result with the six fields: an adapter's checkpoint holds
        # every result not yet drained, and the dataclass's own pickling (a dict of fields per
        # object, through dataclasses.fields) cost several times the rest of the state
        return pair_result, (self.inference_id, self.event_kind, self.event_key, self.knowable_time,
                             self.loss, self.metrics)


_PAIR_RESULT_SETTERS = tuple(PairResult.__dict__[f].__set__ for f in (
    "inference_id", "event_kind", "event_key", "knowable_time", "loss", "metrics"))


def pair_result(inference_id, event_kind: str, event_key: str, knowable_time: int, loss: float,
                metrics: dict) -> PairResult:
    """``PairResult(...)`` of values already of the fields' types, in half the time.

    The frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__``; this sets the slots through their descriptors
    (an adapter makes one per learned pair).
    """
    result = object.__new__(PairResult)
    a, b, c, d, e, f = _PAIR_RESULT_SETTERS
    a(result, inference_id)
    b(result, event_kind)
    c(result, event_key)
    d(result, knowable_time)
    e(result, loss)
    f(result, metrics)
    return result


def results_columns(results: Sequence[PairResult]) -> tuple:
    """``results`` as six tuples, one per field: what a checkpoint stores of the undrained results.

    An adapter attached by hand keeps every result until they are drained,
    and each commit pickles them all again.  Six tuples pickle with no
    Python call per result (an object costs one, its ``__reduce__``): over a
    year of 1m pairs' commits, 2.6 times faster than the objects
    (``benchmarks/bench_checkpoint_state.py``).

    Examples
    --------
    >>> kept = [pair_result(7, "candle", "candle|ETH/USDT|1m||60000", 120_000, 0.25, {})]
    >>> results_from_columns(results_columns(kept)) == kept
    True
    >>> results_columns([])
    ((), (), (), (), (), ())
    """
    return (tuple([r.inference_id for r in results]), tuple([r.event_kind for r in results]),
            tuple([r.event_key for r in results]), tuple([r.knowable_time for r in results]),
            tuple([r.loss for r in results]), tuple([r.metrics for r in results]))


def results_from_columns(columns) -> list[PairResult]:
    """The results :func:`results_columns` stored (or the list of results an earlier ettlib stored)."""
    if isinstance(columns, list):  # PairResult objects, as states written before the columns were
        return list(columns)
    return list(map(pair_result, *columns))


@dataclass(slots=True)
class PendingPair:
    """A delivered pair waiting to be learned: the event, the frame, ``"candle"`` or ``"pivot"``."""

    event: Any
    ref: Any
    kind: str


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


def check_label_knowable(event, ref) -> None:
    """Refuse a label that was known no later than the frame's last input candle opened.

    A :class:`~ettlib.errors.LookAheadError` naming the event and the frame:
    learning from it would teach the model what it could have read.

    >>> from ettlib.replay.events import CandleCompletionEvent
    >>> from ettlib.coordinator.frames import InferenceFrameReference
    >>> ref = InferenceFrameReference(1, "X", "1m", 120_000, 120_000, 0, 60_000,
    ...                               (0.0, 1.0, 0.0, 1.0), "HOLD", (), 0.5)
    >>> check_label_knowable(CandleCompletionEvent("X", "1m", 120_000, 180_000, 1, 1, 1, 1, 1), ref)
    >>> check_label_knowable(CandleCompletionEvent("X", "1m", 0, 60_000, 1, 1, 1, 1, 1), ref)
    Traceback (most recent call last):
    ...
    ettlib.errors.LookAheadError: label candle:X:1m:0 became known at 60000, not after the frame 1's last input candle (60000)
    """
    if event.knowable_time <= ref.data_range_end:
        raise LookAheadError(
            f"label {event_key(event)} became known at {event.knowable_time}, not after the "
            f"frame {ref.inference_id}'s last input candle ({ref.data_range_end})"
        )


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
        positive_int("batch_size", batch_size)
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ConfigTypeError(f"seed must be an int, got {seed!r}")
        self.batch_size = batch_size
        self.auto_train = bool(auto_train)
        self.features = tuple(features)
        self.targets = tuple(targets)
        if not self.features or not self.targets:
            raise ConfigError("features and targets must name at least one column")
        self.seed = seed
        self.context_length = context_length
        self.source = source
        self.pending: list[PendingPair] = []
        self.results: list[PairResult] = []
        self.pairs_learned = 0
        self._warned_undrained = False

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
        check_label_knowable(event, inference_ref)
        self.pending.append(PendingPair(event, inference_ref, "candle"))
        self._maybe_train()

    def on_pivot_event(self, event, inference_refs) -> None:
        """Queue one pair per matched frame (low pivot: BUY, high pivot: SELL)."""
        if not self.learns:
            return
        for ref in inference_refs:
            check_label_knowable(event, ref)
            self.pending.append(PendingPair(event, ref, "pivot"))
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

    def _train_pending(self, batch: list[PendingPair]) -> None:
        data = self._inputs(batch)
        usable = [(p, d) for p, d in zip(batch, data) if d is not None]
        if usable:
            self.results.extend(self._learn(usable))
            self.pairs_learned += len(usable)

    def _inputs(self, batch: list[PendingPair]) -> list:
        """What :meth:`_learn` reads for each pair: its frame's window (``None``: unreadable).

        Read in one batch through the source (the coordinator's
        ``get_inference_data_batch``).
        """
        if self.source is None:
            raise ConfigError(f"{self.name} adapter has no data source; call attach(coordinator)")
        return self.source.get_inference_data_batch([p.ref for p in batch])

    def frame_registered(self, ref) -> None:
        """Called by the inference loop with the frame it registered from this adapter's last
        :meth:`predict` (an adapter may keep what it computed for the frame; by default nothing)."""

    # -- to implement -----------------------------------------------------------

    def _learn(self, pairs: list[tuple[PendingPair, Any]]) -> list[PairResult]:
        """Learn from ``(pending, input)`` pairs (inputs of :meth:`_inputs`); return one result each."""
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

    # -- bytes ------------------------------------------------------------------

    def _pack(self, obj) -> bytes:
        """Serialize the learning state (a pickle; the Transformer's is ``torch.save``)."""
        return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)

    def _unpack(self, data: bytes):
        """Read bytes of :meth:`_pack`."""
        if bytes(data[:4]) == _ZIP_MAGIC:
            raise ConfigError(f"{self.name} adapter: these bytes were written with torch.save (a "
                              "Transformer's checkpoint), not by this adapter")
        return pickle.loads(data)

    def checkpoint_state(self) -> bytes:
        """The whole learning state as bytes (the coordinator's state protocol).

        A pickled envelope -- :data:`STATE_FORMAT` and :meth:`settings`, readable
        by any adapter -- around :meth:`_pack` of :meth:`state_dict`, the
        queued pairs and the results not yet drained.  Nothing is changed.
        Holding :data:`UNDRAINED_RESULTS_WARNING` results or more, it warns
        (once per adapter): each commit stores them all again, so a run that
        never drains them slows quadratically.
        """
        if len(self.results) >= UNDRAINED_RESULTS_WARNING and not self._warned_undrained:
            self._warned_undrained = True
            warnings.warn(
                f"{self.name} adapter holds {len(self.results):,} results not yet drained, and each commit "
                "stores them all again (quadratic over a long run): call drain_results() as you use them, "
                "or write and drain them in a checkpoint(con) hook of your own (docs/training.md, "
                "'Drain what you drive')", stacklevel=2)
        body = {"adapter": self.state_dict(), "pending": [(p.event, p.ref, p.kind) for p in self.pending],
                "results": results_columns(self.results)}
        return pickle.dumps({"format": STATE_FORMAT, "settings": self.settings(), "state": self._pack(body)},
                            protocol=pickle.HIGHEST_PROTOCOL)

    def restore_state(self, state: bytes) -> None:
        """Continue from bytes of :meth:`checkpoint_state` (a trusted store's).

        Raises :class:`~ettlib.errors.ConfigError` when the bytes are not an
        adapter state of :data:`STATE_FORMAT`, or were made by an adapter with
        other :meth:`settings` or another model shape; nothing is changed then.
        """
        if bytes(state[:4]) == _ZIP_MAGIC:
            raise ConfigError(f"{self.name} adapter: the stored state is of format 1 (torch.save, an "
                              f"earlier ettlib); this ettlib reads format {STATE_FORMAT}: start the run again")
        try:
            data = pickle.loads(state)
        except Exception as exc:
            raise self._unreadable(exc) from exc
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
        body = self._read(data["state"])
        self.load_state_dict(body["adapter"])
        self.pending = [PendingPair(event, ref, kind) for event, ref, kind in body["pending"]]
        self.results = results_from_columns(body["results"])

    def _unreadable(self, exc: Exception) -> ConfigError:
        return ConfigError(
            f"{self.name} adapter: the stored state cannot be read ({type(exc).__name__}: {exc})")

    def _read(self, data: bytes):
        """:meth:`_unpack`, its failures a :class:`~ettlib.errors.ConfigError`."""
        try:
            return self._unpack(data)
        except ConfigError:
            raise
        except Exception as exc:
            raise self._unreadable(exc) from exc

    def save(self, path) -> Path:
        """Write a checkpoint (:meth:`_pack` of :meth:`state_dict`) to ``path``."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(self._pack(self.state_dict()))
        return path

    def load(self, path) -> TrainingAdapter:
        """Restore a checkpoint written by :meth:`save`; returns ``self``."""
        self.load_state_dict(self._read(Path(path).read_bytes()))
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
