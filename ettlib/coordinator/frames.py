"""Inference frames: a prediction stored by reference, never by copy.

An :class:`InferenceFrameReference` records *which* candles a model looked at
(an inclusive open-time range), how it normalized them, and what it
predicted.  It is a few hundred bytes, against ~86 KB for the 600 x 18
float64 window it points at; the window is re-read from DuckDB (or the
replay's cache) when the truth arrives.

Time (all int64 epoch ms UTC)
-----------------------------
``prediction_timestamp``
    when the prediction was made (``T``, the knowable time of the step).
``data_range_start`` / ``data_range_end``
    open times of the first and last candle of the input window, inclusive.
    ``data_range_end + timeframe_ms <= prediction_timestamp``: the last input
    candle had *closed* at prediction time (no look-ahead; enforced).
``target_timestamp``
    open time of the predicted candle.  It must close after the prediction
    (``target_timestamp + timeframe_ms > prediction_timestamp``), and follow
    the window (``data_range_end < target_timestamp``).

``data_range_start``, ``data_range_end`` and ``target_timestamp`` are candle
open times, so they must lie on the timeframe's grid.  ``prediction_timestamp``
may be any millisecond (a live wall-clock prediction).  Any form of a time
:func:`ettlib.times.to_ms` reads (a ``datetime`` such as
``datetime.now(timezone.utc)``, an ISO string; naive means UTC) is accepted
for any of the four and converted to ms.

Identity
--------
``inference_id`` is an ``int`` (compact: the coordinator hands out
``new_inference_id()``) or a ``str`` such as ``str(uuid4())``.  A
string made only of decimal digits is refused: it would be read back from
the store as an int.

Compactness
-----------
``norm_params`` is stored as a :class:`NormParams` (a frozen four-float
mapping, see :mod:`ettlib.coordinator.normalization`); a ``dict`` is converted on
construction.  ``predicted_candle`` is a tuple of floats (any length, usually
OHLCV).  The class has slots and no ``__dict__``.

Gaps
----
:func:`window_bounds` / :meth:`InferenceFrameReference.for_prediction` put
``data_range_end`` on the last *closed grid* candle (``bucket_start(T) - tf``)
and, given the timestamps actually present, ``data_range_start`` on the open
time of the ``context``-th last present candle at or before it; so a window
over a gap still holds ``context`` rows.  Without timestamps the range is the
grid's ``context`` candles (fewer rows where data is missing).

Examples
--------
>>> ref = InferenceFrameReference.for_prediction(
...     7, "ETH/USDT", "1m", 600_000, context=5,
...     norm_params={"price_offset": 100.0, "price_scale": 2.0,
...                  "volume_offset": 10.0, "volume_scale": 3.0},
...     predicted_action="BUY", predicted_candle=(1.0, 2.0, 0.5, 1.5, 10.0),
...     confidence=0.7)
>>> ref.data_range_start, ref.data_range_end, ref.target_timestamp
(300000, 540000, 600000)
>>> ref.norm_params["price_scale"]
2.0
>>> InferenceFrameReference.from_row(ref.to_row()) == ref
True
>>> InferenceFrameReference.for_prediction(
...     8, "ETH/USDT", "1m", 600_000, context=5, norm_params=ref.norm_params,
...     predicted_action="BUY", predicted_candle=(), confidence=1.5)
Traceback (most recent call last):
...
ettlib.errors.DataValidationError: column 'confidence', value 1.5: must be in [0, 1]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, fields

import numpy as np

from ettlib.errors import ConfigError, DataValidationError, LookAheadError, UnknownNameError
from ettlib.coordinator.normalization import NormParams
from ettlib.symbols import validate_symbol
from ettlib.timeframes import TIMEFRAMES
from ettlib.times import format_ms, to_ms

__all__ = [
    "ACTIONS",
    "FRAME_COLUMNS",
    "InferenceFrameReference",
    "check_registration",
    "NormParams",
    "window_bounds",
]

#: The actions a model may predict.
ACTIONS: tuple[str, str, str] = ("BUY", "SELL", "HOLD")
_ACTIONS = {a: a for a in ACTIONS}  # interned: every frame shares three strings

#: Columns of ``inference_frames`` written by :meth:`InferenceFrameReference.to_row`.
FRAME_COLUMNS: tuple[str, ...] = (
    "inference_id",
    "symbol",
    "timeframe",
    "prediction_timestamp",
    "target_timestamp",
    "data_range_start",
    "data_range_end",
    "price_offset",
    "price_scale",
    "volume_offset",
    "volume_scale",
    "predicted_action",
    "predicted_candle",
    "confidence",
)


def _ms(value, name: str) -> int:
    """:func:`ettlib.times.to_ms`, its error reported as a bad frame field."""
    if type(value) is int:
        return value
    try:
        return to_ms(value, name)
    except ConfigError as exc:
        raise DataValidationError(f"must be a time: {exc}", column=name, value=value) from None


def window_bounds(
    prediction_timestamp: int,
    timeframe: str,
    context: int,
    timestamps: np.ndarray | None = None,
) -> tuple[int, int]:
    """``(data_range_start, data_range_end)`` of a ``context``-candle window.

    ``data_range_end`` is the last candle closed at ``prediction_timestamp``
    on the timeframe grid.  With ``timestamps`` (sorted open times actually
    present), ``data_range_start`` is the ``context``-th last of them at or
    before ``data_range_end`` (the first present one if there are fewer);
    without, it is ``data_range_end - (context - 1) * timeframe_ms``.

    >>> window_bounds(600_000, "1m", 3)
    (420000, 540000)
    >>> window_bounds(600_000, "1m", 3, np.array([0, 60_000, 120_000, 480_000, 540_000, 600_000]))
    (120000, 540000)
    """
    if timeframe not in TIMEFRAMES:
        raise UnknownNameError("timeframe", timeframe, TIMEFRAMES)
    if isinstance(context, bool) or not isinstance(context, (int, np.integer)) or context < 1:
        raise ConfigError(f"context must be a positive int, got {context!r}")
    tf = TIMEFRAMES[timeframe]
    t = _ms(prediction_timestamp, "prediction_timestamp")
    end = t - t % tf - tf
    if timestamps is None:
        return end - (int(context) - 1) * tf, end
    timestamps = np.asarray(timestamps)
    n = int(np.searchsorted(timestamps, end, side="right"))
    if n == 0:
        raise DataValidationError(
            f"no candle at or before {end} to build a window from", column="timestamps"
        )
    return int(timestamps[max(0, n - int(context))]), end


#: timeframe -> (the canonical, interned name, its length in ms)
_TF_CANON: dict[str, tuple[str, int]] = {sys.intern(k): (sys.intern(k), v) for k, v in TIMEFRAMES.items()}

#: Valid symbols seen so far -> one interned string (bounded: a cache of the
#: check ``symbol.strip()`` and of ``sys.intern``).
_SYMBOLS: dict[str, str] = {}
_SYMBOLS_MAX = 4096


def _intern_symbol(symbol: str) -> str:
    symbol = sys.intern(symbol)
    if len(_SYMBOLS) < _SYMBOLS_MAX:
        _SYMBOLS[symbol] = symbol
    return symbol


def _finite_floats(values: tuple) -> bool:
    """True when every item is a finite ``float`` (the stored form)."""
    for x in values:
        if type(x) is not float or x - x != 0.0:  # x - x is NaN for NaN and inf
            return False
    return True


def _bad(column: str, value, message: str) -> DataValidationError:
    return DataValidationError(message, column=column, value=value)


@dataclass(frozen=True, slots=True, init=False)
class InferenceFrameReference:
    """A prediction and the window it was made from, by reference.

    See the module doc for the meaning of each time and the checks made on
    construction; any violation raises
    :class:`~ettlib.errors.DataValidationError` naming the field.
    """

    inference_id: int | str
    symbol: str
    timeframe: str
    prediction_timestamp: int
    target_timestamp: int
    data_range_start: int
    data_range_end: int
    norm_params: NormParams
    predicted_action: str
    predicted_candle: tuple[float, ...]
    confidence: float

    # The dataclass's generated __init__ of a frozen class sets each field
    # through object.__setattr__ (~1.2 us for 11 fields); this one, with the
    # same signature, sets the slots through their descriptors, then checks.
    def __init__(
        self,
        inference_id: int | str,
        symbol: str,
        timeframe: str,
        prediction_timestamp: int,
        target_timestamp: int,
        data_range_start: int,
        data_range_end: int,
        norm_params: NormParams,
        predicted_action: str,
        predicted_candle: tuple[float, ...],
        confidence: float,
    ) -> None:
        # Fast path: exact types, as the library and typical models pass
        # them; the same checks as _validate in fewer steps.  Anything else,
        # or any failed check, goes through _validate, which names the field.
        t, target, start, end = prediction_timestamp, target_timestamp, data_range_start, data_range_end
        try:  # the canonical (interned) names; anything unknown or unhashable: _validate says why
            tf_name, tf_ms = _TF_CANON[timeframe]
            canon_symbol = _SYMBOLS[symbol]
            action = _ACTIONS[predicted_action]
        except (KeyError, TypeError):
            tf_ms = 0
        (s_id, s_symbol, s_tf, s_t, s_target, s_start, s_end, s_params, s_action, s_candle,
         s_conf) = _SLOT_SETTERS
        if (
            tf_ms
            and type(inference_id) is int
            and type(t) is int and type(target) is int and type(start) is int and type(end) is int
            and type(norm_params) is NormParams
            and type(confidence) is float and 0.0 <= confidence <= 1.0
            and type(predicted_candle) is tuple
            and not (start % tf_ms or end % tf_ms or target % tf_ms)
            and start <= end < target
            and end + tf_ms <= t < target + tf_ms
            and (not predicted_candle or _finite_floats(predicted_candle))
        ):
            s_id(self, inference_id)
            s_symbol(self, canon_symbol)
            s_tf(self, tf_name)
            s_t(self, t)
            s_target(self, target)
            s_start(self, start)
            s_end(self, end)
            s_params(self, norm_params)
            s_action(self, action)
            s_candle(self, predicted_candle)
            s_conf(self, confidence)
            return
        s_id(self, inference_id)
        s_symbol(self, symbol)
        s_tf(self, timeframe)
        s_t(self, t)
        s_target(self, target)
        s_start(self, start)
        s_end(self, end)
        s_params(self, norm_params)
        s_action(self, predicted_action)
        s_candle(self, predicted_candle)
        s_conf(self, confidence)
        self._validate()

    def _validate(self) -> None:
        s = object.__setattr__
        iid = self.inference_id
        if isinstance(iid, (bool, float)) or not isinstance(iid, (int, str, np.integer)):
            raise _bad("inference_id", iid, "must be an int or a str")
        if isinstance(iid, np.integer):
            s(self, "inference_id", int(iid))
        elif isinstance(iid, str) and (not iid or iid.isdigit()):
            raise _bad("inference_id", iid, "a str id must be non-empty and not all digits (use an int)")
        symbol = self.symbol
        try:
            validate_symbol(symbol)
        except ConfigError as exc:
            raise _bad("symbol", symbol, str(exc)) from None
        s(self, "symbol", _intern_symbol(symbol))  # one string per symbol, not per frame
        timeframe = self.timeframe
        tf_ms = TIMEFRAMES.get(timeframe) if isinstance(timeframe, str) else None
        if tf_ms is None:
            raise UnknownNameError("timeframe", timeframe, TIMEFRAMES)
        s(self, "timeframe", sys.intern(timeframe))
        t, target = self.prediction_timestamp, self.target_timestamp
        start, end = self.data_range_start, self.data_range_end
        if not (type(t) is int and type(target) is int and type(start) is int and type(end) is int):
            t = _ms(t, "prediction_timestamp")
            target = _ms(target, "target_timestamp")
            start = _ms(start, "data_range_start")
            end = _ms(end, "data_range_end")
            s(self, "prediction_timestamp", t)
            s(self, "target_timestamp", target)
            s(self, "data_range_start", start)
            s(self, "data_range_end", end)
        if start % tf_ms or end % tf_ms or target % tf_ms:
            for name, value in (("data_range_start", start), ("data_range_end", end), ("target_timestamp", target)):
                if value % tf_ms:
                    raise _bad(name, value, f"is not a {timeframe} candle open time")
        if not start <= end:
            raise _bad("data_range_start", start, f"must be <= data_range_end ({end})")
        if not end < target:
            raise _bad("target_timestamp", target, f"must be after data_range_end ({end})")
        if not end + tf_ms <= t:
            raise _bad(
                "data_range_end",
                end,
                f"the candle closes at {end + tf_ms}, after prediction_timestamp {t} (look-ahead)",
            )
        if not target + tf_ms > t:
            raise _bad(
                "target_timestamp", target, f"the candle had closed by prediction_timestamp {t}"
            )
        s(self, "norm_params", NormParams.coerce(self.norm_params))
        action = _ACTIONS.get(self.predicted_action) if isinstance(self.predicted_action, str) else None
        if action is None:
            raise _bad("predicted_action", self.predicted_action, "must be one of BUY, SELL, HOLD")
        s(self, "predicted_action", action)
        candle = self.predicted_candle
        if candle is None:
            candle = ()
        try:
            candle = tuple(map(float, candle))
        except (TypeError, ValueError):
            raise _bad("predicted_candle", self.predicted_candle, "must be a sequence of numbers") from None
        if not all(map(math.isfinite, candle)):
            raise _bad("predicted_candle", candle, "must be finite")
        s(self, "predicted_candle", candle)
        c = self.confidence
        if isinstance(c, bool) or not isinstance(c, (int, float, np.floating, np.integer)):
            raise _bad("confidence", c, "must be a number in [0, 1]")
        if not 0.0 <= c <= 1.0:
            raise _bad("confidence", c, "must be in [0, 1]")
        if type(c) is not float:
            s(self, "confidence", float(c))

    # -- derived -------------------------------------------------------------

    @property
    def timeframe_ms(self) -> int:
        return TIMEFRAMES[self.timeframe]

    @property
    def target_close_time(self) -> int:
        """When the predicted candle closes: the candle label becomes known."""
        return self.target_timestamp + TIMEFRAMES[self.timeframe]

    @property
    def context_candles(self) -> int:
        """Number of grid candles in the window (rows present may be fewer)."""
        return (self.data_range_end - self.data_range_start) // TIMEFRAMES[self.timeframe] + 1

    # -- building ------------------------------------------------------------

    @classmethod
    def for_prediction(
        cls,
        inference_id: int | str,
        symbol: str,
        timeframe: str,
        prediction_timestamp: int,
        *,
        context: int,
        norm_params,
        predicted_action: str,
        predicted_candle: Sequence[float] = (),
        confidence: float,
        horizon: int = 1,
        timestamps: np.ndarray | None = None,
    ) -> InferenceFrameReference:
        """A frame for a prediction made at ``prediction_timestamp``.

        The window is :func:`window_bounds` (``context`` candles, gap-aware
        with ``timestamps``); the target is the ``horizon``-th candle opening
        at or after the last closed one: for ``horizon=1`` the candle that
        opens at the prediction (``target_timestamp == prediction_timestamp``
        on the grid).
        """
        if isinstance(horizon, bool) or not isinstance(horizon, int) or horizon < 1:
            raise ConfigError(f"horizon must be a positive int, got {horizon!r}")
        prediction_timestamp = _ms(prediction_timestamp, "prediction_timestamp")
        start, end = window_bounds(prediction_timestamp, timeframe, context, timestamps)
        tf = TIMEFRAMES[timeframe]
        target = end + horizon * tf
        if target == prediction_timestamp:
            target = prediction_timestamp  # share one int object
        return cls(
            inference_id,
            symbol,
            timeframe,
            prediction_timestamp,
            target,
            start,
            end,
            norm_params,
            predicted_action,
            predicted_candle,
            confidence,
        )

    # -- rows of inference_frames ---------------------------------------------

    def to_row(self) -> tuple:
        """The frame as a tuple in :data:`FRAME_COLUMNS` order (ids as text)."""
        p = self.norm_params
        return (
            str(self.inference_id),
            self.symbol,
            self.timeframe,
            self.prediction_timestamp,
            self.target_timestamp,
            self.data_range_start,
            self.data_range_end,
            p.price_offset,
            p.price_scale,
            p.volume_offset,
            p.volume_scale,
            self.predicted_action,
            list(self.predicted_candle),
            self.confidence,
        )

    @classmethod
    def from_row(cls, row: Sequence) -> InferenceFrameReference:
        """Inverse of :meth:`to_row` (a row of :data:`FRAME_COLUMNS`)."""
        (iid, symbol, timeframe, t, target, start, end, po, ps, vo, vs, action, candle, conf) = row
        if isinstance(iid, str) and iid.isdigit():
            iid = int(iid)
        return cls(
            iid,
            symbol,
            timeframe,
            int(t),
            int(target),
            int(start),
            int(end),
            NormParams(po, ps, vo, vs),
            action,
            tuple(candle or ()),
            conf,
        )


#: ``__set__`` of each field's slot, in field order (used by ``__init__``).
_SLOT_SETTERS = tuple(
    InferenceFrameReference.__dict__[f.name].__set__ for f in fields(InferenceFrameReference)
)


def check_registration(ref: InferenceFrameReference, now: int, late_ms: int = 0) -> None:
    """Refuse a frame registered at clock time ``now`` that does not predict at ``now``.

    A frame from after ``now`` would predict from the future; one more than
    ``late_ms`` before it (backdated) could have seen what happened after its
    prediction time.  Either is a :class:`~ettlib.errors.LookAheadError`
    naming both times.
    """
    t = ref.prediction_timestamp
    if now - late_ms <= t <= now:
        return
    if t > now:
        why = "after now: a frame cannot be registered before the instant it predicts at"
    else:
        allowed = f"more than the late-registration tolerance of {late_ms} ms " if late_ms else ""
        why = (f"{allowed}before now: a frame registered at {format_ms(now)} must predict at "
               f"{format_ms(now)} (a backdated frame could have seen what happened after its "
               "prediction time)")
    raise LookAheadError(
        f"frame {ref.inference_id!r}: prediction_timestamp {format_ms(t)} ({t}) is {why}; "
        f"the clock reads {format_ms(now)} ({now})")
