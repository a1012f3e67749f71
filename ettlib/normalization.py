"""Normalization of an input window with parameters stored in its frame.

At inference a model computes ``norm_params`` from its input window
(:func:`compute_norm_params`) and stores them in the
:class:`~ettlib.frames.InferenceFrameReference`.  At training the window is
re-read by reference and normalized again with *the same* parameters
(:func:`normalize`), so the model trains on exactly the numbers it predicted
from.

The contract (shared by every model and training adapter)
-----------------------------------------------------------
``norm_params`` has four numbers:

``price_offset``, ``price_scale``
    mean and population standard deviation (``ddof=0``) of the window's
    ``close``; the scale is floored at ``1e-6 * max(|price_offset|, 1)`` so a
    flat window does not divide by zero.
``volume_offset``, ``volume_scale``
    the same for ``volume``.

:func:`normalize` maps each column by its kind:

=====================================================  ===============================
columns                                                value
=====================================================  ===============================
price levels: ``open high low close sma_* ema_* bb_*``  ``(x - price_offset) / price_scale``
price differences: ``macd macd_signal macd_hist atr_*``  ``x / price_scale``
``volume``                                              ``(x - volume_offset) / volume_scale``
``rsi_*``                                               ``(x - 50) / 50``
=====================================================  ===============================

NaN (indicator warm-up) becomes ``0.0`` after normalizing.  Output is
**float32** by default (what a PyTorch model eats; half the memory); pass
``dtype=np.float64`` for full precision.  The result is deterministic: the
same values, columns and parameters always give bit-identical arrays.

Arithmetic (fixed: inference, training and both window paths share it)
-----------------------------------------------------------------------
Per number, ``(x - offset) * (1 / scale)`` in float64 -- the offset is not
rounded to float32 and ``1 / scale`` is computed once -- then one cast to the
output dtype.  How the passes are laid out (see :func:`_scaled`) never
changes a bit of the result, nor does ``nan_free`` (it only skips a scan that
would find nothing).

Examples
--------
>>> import numpy as np
>>> from ettlib.candles import CandleArrays
>>> w = CandleArrays(np.array([0, 60_000, 120_000]),
...                  np.array([[9.0, 10.0], [10.0, 20.0], [11.0, 30.0]]),
...                  ("close", "volume"))
>>> p = compute_norm_params(w)
>>> p["price_offset"], p["volume_offset"]
(10.0, 20.0)
>>> normalize(w.values, w.columns, p, dtype=np.float64).round(4).tolist()
[[-1.2247, -1.2247], [0.0, 0.0], [1.2247, 1.2247]]
>>> out = normalize(np.array([[70.0, np.nan]]), ("rsi_14", "macd"), p)
>>> out.dtype, [round(float(x), 6) for x in out[0]]
(dtype('float32'), [0.4, 0.0])
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
import math
from functools import lru_cache

import numpy as np

from ettlib.errors import DataValidationError, UnknownNameError

__all__ = [
    "NORM_PARAM_KEYS",
    "SCALE_FLOOR",
    "compute_norm_params",
    "normalize",
    "column_kind",
]

#: The keys of every ``norm_params`` mapping, in storage order.
NORM_PARAM_KEYS: tuple[str, str, str, str] = (
    "price_offset",
    "price_scale",
    "volume_offset",
    "volume_scale",
)

#: Relative floor of a scale: ``scale >= SCALE_FLOOR * max(|offset|, 1)``.
SCALE_FLOOR = 1e-6

_PRICE_LEVEL = {"open", "high", "low", "close"}
_PRICE_LEVEL_PREFIXES = ("sma_", "ema_", "bb_")
_PRICE_DIFF = {"macd", "macd_signal", "macd_hist"}
_PRICE_DIFF_PREFIXES = ("atr_",)


def column_kind(column: str) -> str:
    """``'price'``, ``'price_diff'``, ``'volume'`` or ``'rsi'``.

    >>> [column_kind(c) for c in ("close", "sma_20", "atr_14", "volume", "rsi_14")]
    ['price', 'price', 'price_diff', 'volume', 'rsi']
    """
    if column in _PRICE_LEVEL or column.startswith(_PRICE_LEVEL_PREFIXES):
        return "price"
    if column in _PRICE_DIFF or column.startswith(_PRICE_DIFF_PREFIXES):
        return "price_diff"
    if column == "volume":
        return "volume"
    if column.startswith("rsi_"):
        return "rsi"
    known = sorted(_PRICE_LEVEL | _PRICE_DIFF | {"volume", "sma_*", "ema_*", "bb_*", "atr_*", "rsi_*"})
    raise UnknownNameError("column to normalize", column, known)


def _floored(std: float, mean: float) -> float:
    return max(std, SCALE_FLOOR * max(abs(mean), 1.0))


def _column(candles, name: str) -> np.ndarray:
    if hasattr(candles, "column"):
        return np.asarray(candles.column(name), dtype=np.float64)
    return np.asarray(candles[name], dtype=np.float64)


def compute_norm_params(candles) -> dict[str, float]:
    """The four normalization parameters of an input window.

    Parameters
    ----------
    candles
        A :class:`~ettlib.candles.CandleArrays` (or any mapping / DataFrame
        with ``close`` and ``volume``) holding the model's input window.

    Returns
    -------
    dict
        ``{"price_offset", "price_scale", "volume_offset", "volume_scale"}``
        as Python floats.

    Raises
    ------
    DataValidationError
        If the window is empty or ``close``/``volume`` hold NaN or inf.
    """
    close = _column(candles, "close")
    volume = _column(candles, "volume")
    if close.size == 0:
        raise DataValidationError("cannot compute norm_params of an empty window")
    for name, values in (("close", close), ("volume", volume)):
        if not np.isfinite(values).all():
            raise DataValidationError(
                "norm_params need finite values", column=name
            )
    price_offset = float(close.mean())
    volume_offset = float(volume.mean())
    return {
        "price_offset": price_offset,
        "price_scale": _floored(float(close.std()), price_offset),
        "volume_offset": volume_offset,
        "volume_scale": _floored(float(volume.std()), volume_offset),
    }


#: Kind -> position of its offset in the per-call table (its inverse scale is at +4).
_KIND_CODE = {"price": 0, "price_diff": 1, "volume": 2, "rsi": 3}


@lru_cache(maxsize=256)
def _table_index(columns: tuple[str, ...]) -> np.ndarray:
    """Each column's position in the per-call table: row 0 its offset, row 1 its inverse scale."""
    codes = np.array([_KIND_CODE[column_kind(c)] for c in columns], dtype=np.intp)
    index = np.stack([codes, codes + 4])
    index.setflags(write=False)
    return index


def _repeated(row: np.ndarray, times: int, *, writable: bool) -> np.ndarray:
    """``row`` (float64, 1-D) repeated ``times`` times, as one flat float64 array.

    Built by repeating the row's bytes (``bytes * times`` is a C-level
    copy), which measured faster than ``np.tile`` or a broadcast assignment
    for a short row; ``writable=True`` gives a writable array (over a
    ``bytearray``).
    """
    data = row.tobytes()
    if writable:
        return np.frombuffer(bytearray(data) * times, dtype=np.float64)
    return np.frombuffer(data * times, dtype=np.float64)


def _params(norm_params) -> tuple[float, float, float, float]:
    astuple = getattr(norm_params, "astuple", None)  # NormParams: one call
    if astuple is not None:
        return astuple()
    try:
        return (norm_params["price_offset"], norm_params["price_scale"],
                norm_params["volume_offset"], norm_params["volume_scale"])
    except KeyError as err:
        raise UnknownNameError("norm_params key", err.args[0], NORM_PARAM_KEYS) from None


def _inverse(scale: float) -> float:
    """``1 / scale`` as numpy computes it in float64 (inf for 0, not an error)."""
    scale = float(scale)
    if scale == 0.0:
        return math.copysign(math.inf, scale)
    return 1.0 / scale


_ONES: dict[type, np.ndarray] = {}


def _has_nan(flat: np.ndarray) -> bool:
    """True when ``flat`` (float32/float64, 1-D) may hold a NaN (exact: False means none).

    A dot product with ones propagates NaN (and inf, or an overflow, which only
    send us to the exact check): one BLAS pass instead of a boolean array.
    """
    ones = _ONES.get(flat.dtype.type)
    if ones is None or len(ones) < len(flat):
        ones = np.ones(max(len(flat), 16_384), dtype=flat.dtype)
        ones.setflags(write=False)
        _ONES[flat.dtype.type] = ones
    if math.isfinite(float(np.dot(flat, ones[: len(flat)]))):
        return False
    return bool(np.isnan(flat).any())


def _finite(*numbers: float) -> bool:
    """True when every number is finite (a Python-level check, no array)."""
    isfinite = math.isfinite
    return all(isfinite(x) for x in numbers)


def _scaled(values: np.ndarray, columns: tuple[str, ...], table: np.ndarray) -> np.ndarray:
    """``(values - offset) * inverse`` per column, in float64: a new C-contiguous array.

    The window is handled as one flat run of numbers against the per-column
    offsets and inverses repeated once per candle (:func:`_repeated`), with
    the result written over the repeated offsets: two in-place ufunc passes
    on equal-length contiguous arrays, numpy's fastest loops.  A ``(n, m)``
    broadcast of the ``m`` parameters runs numpy's inner loop once per
    candle, on ``m`` numbers: for a 600 x 18 window the whole normalization
    measured about 1.5x slower that way.  Per number the arithmetic is the
    same as the broadcast.  Costs one more window-sized float64 temporary
    (the repeated inverses).  The result's memory is a ``bytearray`` (an
    ordinary writable array; ``owndata`` is False).
    """
    n, m = values.shape
    if n == 0 or m == 0:
        return np.empty((n, m), dtype=np.float64)
    if values.dtype != np.float64 or not values.flags.c_contiguous:
        values = np.ascontiguousarray(values, dtype=np.float64)  # the cast the arithmetic does
    offset, inverse = table.take(_table_index(columns))
    out = _repeated(offset, n, writable=True)
    np.subtract(values.reshape(-1), out, out=out)
    np.multiply(out, _repeated(inverse, n, writable=False), out=out)
    return out.reshape(n, m)


def normalize(
    values: np.ndarray,
    columns: Sequence[str],
    norm_params: Mapping[str, float],
    *,
    dtype=np.float32,
    nan_free: bool = False,
) -> np.ndarray:
    """Normalize a window ``values[n, len(columns)]`` with ``norm_params``.

    Parameters
    ----------
    values
        The raw window, one row per candle (any real dtype, any layout).
    columns
        The name of each column of ``values`` (decides its rule).
    norm_params
        The frame's parameters (see the module doc).
    dtype
        Of the result: float32 by default, ``np.float64`` for full precision.
    nan_free
        The caller knows ``values`` holds no NaN (e.g.
        :meth:`~ettlib.cache.CandleCache.window_rows` counted them when the
        stream was loaded): the scan that turns NaN into 0.0 is skipped when
        the parameters are finite too, as it would find nothing.  The result
        is the same either way; a wrong ``True`` leaves NaN in it.

    Returns
    -------
    numpy.ndarray
        A new C-contiguous ``[n, len(columns)]`` array of ``dtype``; the input
        is not modified.  NaN becomes 0.0.  Per number, ``(x - offset) * (1 /
        scale)`` in float64 (the offset is not rounded to float32), then one
        cast: the same bits whatever the layout of ``values``.
    """
    columns = columns if type(columns) is tuple else tuple(columns)
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] != len(columns):
        raise DataValidationError(
            f"values have shape {values.shape}, expected (n, {len(columns)}) for columns {columns}"
        )
    po, ps, vo, vs = _params(norm_params)
    ips, ivs = _inverse(ps), _inverse(vs)
    # offsets (price, price_diff, volume, rsi), then inverse scales, same order
    table = np.array((po, 0.0, vo, 50.0, ips, ips, ivs, 1.0 / 50.0), dtype=np.float64)
    out = _scaled(values, columns, table)
    if out.dtype != dtype:
        out = out.astype(dtype)
    if nan_free and _finite(po, vo, ips, ivs):
        # No NaN in, finite offsets and non-zero finite inverses: no NaN out
        # (inf - finite, or a product overflowing, gives inf, never NaN).
        return out
    if out.dtype.type in (np.float32, np.float64):
        flat = out.reshape(-1)  # a view
        if _has_nan(flat):
            flat[np.isnan(flat)] = 0.0
    else:
        nan = np.isnan(out)
        if nan.any():
            out[nan] = 0.0
    return out
