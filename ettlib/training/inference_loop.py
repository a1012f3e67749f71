"""The inference loop: predict at each inference step, then register the frame.

At each :class:`~ettlib.replay.events.InferenceStepEvent` of its stream (every
``stride``-th one) the loop

1. reads the last ``context_length`` candles -- ``[T - context*tf, T - tf]``
   on the timeframe grid, the candles closed at the step's time ``T`` --
   through its session (:meth:`ettlib.session.Session.window`: the replay's
   cache, a view, not a per-frame copy, for the base and every aggregated
   timeframe; the store when the cache does not cover the range);
2. computes ``norm_params`` from that window and normalizes it, in one
   compiled step (:class:`~ettlib.coordinator.window_norm.WindowNormalizer`,
   the arithmetic of :mod:`ettlib.coordinator.normalization`: the coordinator re-normalizes the re-read
   window with the same parameters at training, so the model learns from
   exactly the numbers it predicted from);
3. asks the adapter for ``(action, predicted_candle, confidence)`` (and any
   companion baselines, on the same window);
4. builds an :class:`~ettlib.coordinator.frames.InferenceFrameReference` with
   ``prediction_timestamp = T`` (the event's time -- no wall clock),
   ``data_range_end = T - tf``, ``target_timestamp = T``, and registers it
   with the coordinator.

Steps whose window holds fewer than ``min_rows`` candles (the start of the
data, a long gap) make no frame.

Micro-batching with ``train_every``
-----------------------------------
By default an adapter learns whenever ``batch_size`` pairs are waiting, so
weights can change between any two predictions.  With ``train_every=k`` the
loop turns the adapter's automatic training off and flushes it (learns from
every pair that arrived) at every ``k``-th step, *before* predicting: all
predictions between two updates use the same weights -- the setting that
lets predictions of several symbols at one instant run as one batch, and
that makes "one update per k candles" an explicit experimental choice.
Pairs still wait at most ``k`` steps, and are never learned before their
truth arrived.

"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

from ettlib.errors import positive_int
from ettlib.replay.events import InferenceStepEvent
from ettlib.coordinator.frames import InferenceFrameReference, window_bounds
from ettlib.coordinator.window_norm import WindowNormalizer
from ettlib.store.candles import CandleArrays
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.timeframes import timeframe_ms, validate_timeframe

__all__ = ["InferenceLoop"]


class InferenceLoop:
    """Predicts at inference steps and registers frames with the coordinator.

    Parameters
    ----------
    adapter
        The model (any registered adapter) that predicts and learns.
    session
        The :class:`~ettlib.session.Session` it predicts in: windows come
        through ``session.window``, frames go to ``session.coordinator``,
        steps from ``session.on_inference_step`` (:meth:`attach`).
    symbol, timeframe
        The stream to predict on.
    context_length
        Candles per window.
    columns
        Window columns read and normalized (must match what the coordinator
        re-reads at training); default OHLCV.
    stride
        Predict at every ``stride``-th step of the stream.
    train_every
        ``None``: the adapter trains when its batch fills.  ``k``: the adapter
        learns only at every ``k``-th step (see the module doc).
    companions
        ``{name: adapter}`` predicting beside the model on the same windows
        (baselines); their predictions go to ``on_prediction``, not to frames.
    on_prediction
        ``callback(ref, window, predictions)`` after each registered frame,
        with ``window`` the raw :class:`~ettlib.store.candles.CandleArrays` and
        ``predictions`` ``{name: Prediction}`` (the model under ``"model"``).
    min_rows
        Fewest candles a window needs to predict (default ``context_length``).
    """

    def __init__(
        self,
        adapter,
        session,
        *,
        symbol: str,
        timeframe: str,
        context_length: int,
        columns: Sequence[str] = OHLCV_COLUMNS,
        stride: int = 1,
        train_every: int | None = None,
        companions: Mapping[str, object] | None = None,
        on_prediction: Callable | None = None,
        min_rows: int | None = None,
    ):
        positive_int("context_length", context_length)
        positive_int("stride", stride)
        if train_every is not None:
            positive_int("train_every (or None)", train_every)
        self.adapter = adapter
        self._frame_registered = getattr(adapter, "frame_registered", None)
        self.session = session
        self.coordinator = session.coordinator
        self.symbol = symbol
        self.timeframe = validate_timeframe(timeframe)
        self._tf_ms = timeframe_ms(timeframe)
        self.context_length = context_length
        self.columns = tuple(columns)
        self.stride = stride
        self.train_every = train_every
        self.companions = dict(companions or {})
        self.on_prediction = on_prediction
        self.min_rows = context_length if min_rows is None else int(min_rows)
        self.steps_seen = 0
        self.frames_registered = 0
        if train_every is not None:
            adapter.auto_train = False
        self.subscription = None
        self._span = (context_length - 1) * self._tf_ms
        self._rows = getattr(session, "window_rows", None) or self._window_rows
        self._normalizer = None  # a WindowNormalizer of the columns, made at the first frame

    def attach(self):
        """Subscribe :meth:`on_step` to the stream's inference steps; returns the handle."""
        self.subscription = self.session.on_inference_step(self.symbol, self.timeframe, self.on_step)
        return self.subscription

    def on_step(self, step: InferenceStepEvent) -> InferenceFrameReference | None:
        """Predict at ``step`` and register the frame; ``None`` when skipped."""
        self.steps_seen += 1
        if (self.steps_seen - 1) % self.stride:
            return None
        if self.train_every is not None and (self.steps_seen - 1) % (self.train_every * self.stride) == 0:
            self.adapter.flush()
        t = step.timestamp
        if type(t) is int:  # window_bounds' arithmetic (the timeframe and context were checked)
            tf = self._tf_ms
            end = t - t % tf - tf
            start = end - self._span
        else:
            start, end = window_bounds(t, self.timeframe, self.context_length)
        rows = self._rows(self.symbol, self.timeframe, start, end, self.columns)
        if rows is None or len(rows[0]) < self.min_rows:
            return None
        columns = self.columns
        normalizer = self._normalizer
        if normalizer is None:
            normalizer = self._normalizer = WindowNormalizer(columns)
        # compute_norm_params, then normalize with them: the frame's own NormParams, no re-check
        norm_params, values = normalizer(rows[1])
        action, candle, confidence = self.adapter.predict(values, columns)
        ref = InferenceFrameReference(self.coordinator.new_inference_id(), self.symbol, self.timeframe, t,
                                      end + self._tf_ms, start, end, norm_params, action, candle, confidence)
        self.coordinator.register_inference_frame(ref)
        if self._frame_registered is not None:
            self._frame_registered(ref)
        self.frames_registered += 1
        if self.on_prediction is not None:
            predictions = {"model": (action, candle, confidence)}
            for name, companion in self.companions.items():
                predictions[name] = companion.predict(values, columns)
            self.on_prediction(ref, CandleArrays(rows[0], rows[1], columns), predictions)
        return ref

    def _window_rows(self, symbol, timeframe, start, end, columns):
        """``(timestamps, values)`` of a session without ``window_rows``, through its ``window``."""
        window = self.session.window(symbol, timeframe, start, end, columns)
        return None if window is None else (window.timestamps, window.values)
