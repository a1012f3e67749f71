"""Normalization of an input window with parameters stored in its frame.

At inference a model computes ``norm_params`` from its input window
(:func:`compute_norm_params`) and stores them in the
:class:`~ettlib.coordinator.frames.InferenceFrameReference`.  At training the window is
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
output dtype.  It runs as one compiled pass over the window (numba, see
:func:`_kernel`); :func:`_normalize_rows` is its plain-Python text.

Examples
--------
>>> import numpy as np
>>> from ettlib.store.candles import CandleArrays
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

from collections.abc import Iterator, Mapping, Sequence
import math
from functools import lru_cache

import numpy as np

from ettlib.compiled import kernel
from ettlib.errors import DataValidationError, UnknownNameError

__all__ = [
    "NORM_PARAM_KEYS",
    "NormParams",
    "SCALE_FLOOR",
    "compute_norm_params",
    "normalize",
    "ColumnNormalizer",
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


class NormParams(Mapping):
    """A frozen mapping of the four normalization parameters.

    Behaves like a small dict (``p["price_scale"]``, ``dict(p)``,
    ``==`` with a dict) in 4 slots.

    >>> p = NormParams(1.0, 2.0, 3.0, 4.0)
    >>> dict(p) == {"price_offset": 1.0, "price_scale": 2.0, "volume_offset": 3.0, "volume_scale": 4.0}
    True
    """

    __slots__ = ("price_offset", "price_scale", "volume_offset", "volume_scale")

    def __init__(self, price_offset: float, price_scale: float, volume_offset: float, volume_scale: float):
        values = (price_offset, price_scale, volume_offset, volume_scale)
        if not all(type(v) is float for v in values):  # slow path: check and convert
            for key, value in zip(NORM_PARAM_KEYS, values):
                if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
                    raise DataValidationError("must be a number", column=key, value=value)
            values = tuple(map(float, values))
        for key, value in zip(NORM_PARAM_KEYS, values):
            if not math.isfinite(value):
                raise DataValidationError("must be finite", column=key, value=value)
        if not values[1] > 0 or not values[3] > 0:
            raise DataValidationError(
                "scales must be > 0", column="norm_params", value=(values[1], values[3])
            )
        setter = object.__setattr__
        setter(self, "price_offset", values[0])
        setter(self, "price_scale", values[1])
        setter(self, "volume_offset", values[2])
        setter(self, "volume_scale", values[3])

    @staticmethod
    def _checked_floats(po: float, ps: float, vo: float, vs: float) -> NormParams:
        """Four floats known finite, scales > 0 (:class:`~ettlib.coordinator.window_norm.WindowNormalizer`'s):
        the slots set through their descriptors, no check."""
        self = _new_object(NormParams)
        a, b, c, d = _NORM_SLOT_SETTERS
        a(self, po)
        b(self, ps)
        c(self, vo)
        d(self, vs)
        return self

    @classmethod
    def coerce(cls, value) -> NormParams:
        """A NormParams from a NormParams, a mapping with the four keys, or a 4-sequence."""
        if isinstance(value, NormParams):
            return value
        if type(value) is dict and len(value) == 4:  # fast path: the usual dict
            try:
                return cls(value["price_offset"], value["price_scale"], value["volume_offset"],
                           value["volume_scale"])
            except KeyError:
                pass
        if isinstance(value, Mapping):
            missing = [k for k in NORM_PARAM_KEYS if k not in value]
            extra = [k for k in value if k not in NORM_PARAM_KEYS]
            if missing or extra:
                bad = (missing or extra)[0]
                raise UnknownNameError("norm_params key", bad, NORM_PARAM_KEYS)
            return cls(*(value[k] for k in NORM_PARAM_KEYS))
        if isinstance(value, Sequence) and not isinstance(value, str) and len(value) == 4:
            return cls(*value)
        raise DataValidationError(
            "norm_params must be a mapping with keys " + ", ".join(NORM_PARAM_KEYS),
            column="norm_params",
            value=value,
        )

    def __setattr__(self, name, value):
        raise AttributeError("NormParams is frozen")

    def __getitem__(self, key: str) -> float:
        if key in NORM_PARAM_KEYS:
            return getattr(self, key)
        raise KeyError(key)

    def __iter__(self) -> Iterator[str]:
        return iter(NORM_PARAM_KEYS)

    def __len__(self) -> int:
        return 4

    def __eq__(self, other) -> bool:
        if isinstance(other, NormParams):
            return self.astuple() == other.astuple()
        return Mapping.__eq__(self, other)

    def __hash__(self) -> int:
        return hash(self.astuple())

    def astuple(self) -> tuple[float, float, float, float]:
        return (self.price_offset, self.price_scale, self.volume_offset, self.volume_scale)

    def __reduce__(self):
        return (NormParams, self.astuple())

    def __repr__(self) -> str:
        return "NormParams(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in NORM_PARAM_KEYS) + ")"


_new_object = object.__new__
_NORM_SLOT_SETTERS = tuple(NormParams.__dict__[k].__set__ for k in NORM_PARAM_KEYS)


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
        A :class:`~ettlib.store.candles.CandleArrays` (or any mapping / DataFrame
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
    moments = kernel(_mean_std)
    price_offset, price_std = moments(close)
    volume_offset, volume_std = moments(volume)
    for name, value in (("close", price_std), ("volume", volume_std)):
        if not math.isfinite(value):
            raise DataValidationError(
                "norm_params need finite values", column=name
            )
    return {
        "price_offset": price_offset,
        "price_scale": _floored(price_std, price_offset),
        "volume_offset": volume_offset,
        "volume_scale": _floored(volume_std, volume_offset),
    }


def _mean_std(x):
    """``(mean, population std)`` of ``x`` in two passes (numpy's ``mean()``, ``std()``);
    the std is not finite when a value is not.  Compiled by :func:`ettlib.compiled.kernel`."""
    n = len(x)
    total = 0.0
    for v in x:
        total += v
    mean = total / n
    squares = 0.0
    for v in x:
        squares += (v - mean) * (v - mean)
    return mean, math.sqrt(squares / n)


#: Kind -> its code in the compiled kernel (see :func:`_normalize_rows`).
_KIND_CODE = {"price": 0, "price_diff": 1, "volume": 2, "rsi": 3}


def _kind_codes(columns: tuple[str, ...]) -> np.ndarray:
    """Each column's kind code (:data:`_KIND_CODE`), read-only."""
    codes = np.array([_KIND_CODE[column_kind(c)] for c in columns], dtype=np.int8)
    codes.setflags(write=False)
    return codes


def _kernel_args(norm_params) -> tuple[float, float, float, float]:
    """``(price_offset, 1 / price_scale, volume_offset, 1 / volume_scale)`` as floats.

    ``1 / 0`` is ``inf`` (with the zero's sign), as numpy divides, not an error.
    """
    astuple = getattr(norm_params, "astuple", None)  # NormParams: one call
    if astuple is not None:
        po, ps, vo, vs = astuple()
    else:
        try:
            po, ps, vo, vs = (norm_params["price_offset"], norm_params["price_scale"],
                              norm_params["volume_offset"], norm_params["volume_scale"])
        except KeyError as err:
            raise UnknownNameError("norm_params key", err.args[0], NORM_PARAM_KEYS) from None
    ps, vs = float(ps), float(vs)
    return (float(po), 1.0 / ps if ps else math.copysign(math.inf, ps),
            float(vo), 1.0 / vs if vs else math.copysign(math.inf, vs))


#: Rows per period of the kernel's repeated parameters (measured: 4 and 8 best, 2 and 16 slower).
_PERIOD_ROWS = 8


def _normalize_rows(values, codes, price_offset, price_inverse, volume_offset, volume_inverse, out):
    """The whole rule in one pass: ``out[i, j] = (values[i, j] - offset[j]) * inverse[j]``, NaN -> 0.

    ``values`` float64 ``(n, m)`` C-contiguous; ``codes`` the columns' kind
    codes (:data:`_KIND_CODE`); ``out`` float32 or float64 ``(n, m)``
    C-contiguous.  Per number: a float64 subtract and multiply, the NaN
    test, then one cast to ``out``'s dtype -- the same bits as numpy's
    ``((values - offset) * inverse).astype(dtype)`` with NaN set to 0
    afterwards (a cast never makes or removes a NaN).

    The window is walked as one flat run of numbers against the parameters
    repeated for :data:`_PERIOD_ROWS` rows: an inner loop of equal-length
    contiguous arrays, which the compiler vectorizes (a loop over each row's
    ``m`` columns measured 1.3x slower).  Plain Python that :func:`_kernel`
    compiles with numba; read it as the reference.
    """
    n, m = values.shape
    size = n * m
    if size == 0:
        return
    period = m * _PERIOD_ROWS
    table = np.empty((2, period))  # offsets, inverses
    offset, inverse = table[0], table[1]
    for j in range(m):
        code = codes[j]
        if code == 0:
            offset[j], inverse[j] = price_offset, price_inverse
        elif code == 1:
            offset[j], inverse[j] = 0.0, price_inverse
        elif code == 2:
            offset[j], inverse[j] = volume_offset, volume_inverse
        else:
            offset[j], inverse[j] = 50.0, 1.0 / 50.0
    for k in range(m, period):
        offset[k], inverse[k] = offset[k - m], inverse[k - m]
    flat_in = values.ravel()  # views: both are C-contiguous
    flat_out = out.ravel()
    base = 0
    while base + period <= size:
        for k in range(period):
            y = (flat_in[base + k] - offset[k]) * inverse[k]
            flat_out[base + k] = y if y == y else 0.0  # NaN != NaN
        base += period
    for k in range(size - base):  # the last rows, fewer than a period
        y = (flat_in[base + k] - offset[k]) * inverse[k]
        flat_out[base + k] = y if y == y else 0.0


_FLOAT64 = np.dtype(np.float64)
#: Output dtypes the kernel writes directly (others: float64, then one cast).
_KERNEL_DTYPES = frozenset({np.float32, np.float64, np.dtype(np.float32), _FLOAT64})
_COMPILED: list = []


def _kernel():
    """:func:`_normalize_rows` compiled by numba, on first use (not at import).

    One pass over the window instead of numpy's four (subtract, multiply,
    cast, NaN scan): for a 600 x 18 window, the call with its output array
    measured 1.5x a numpy copy of the window, the three cheapest numpy
    passes alone 3.5x (``docs/performance.md``).  Compiled once per output
    dtype; ``cache=True`` keeps the machine code in ``__pycache__`` (or
    numba's user-wide cache when that is read-only), so a later process
    loads it instead of compiling: the first call of a process costs about
    0.3 s (importing numba), 0.9 s when it must compile (in every process
    where numba finds no writable cache directory; ``NUMBA_CACHE_DIR``
    names one).  ``nogil``: live threads normalize in parallel.
    """
    if not _COMPILED:
        import numba  # imported here: ``import ettlib`` stays light

        try:
            compiled = numba.njit(cache=True, nogil=True)(_normalize_rows)
        except RuntimeError:  # numba found no writable cache directory: compile in each process
            compiled = numba.njit(nogil=True)(_normalize_rows)
        _COMPILED.append(compiled)
    return _COMPILED[0]


class ColumnNormalizer:
    """:func:`normalize` for one fixed column layout (what a coordinator reads).

    The columns are checked and their rules looked up once, here, not at
    every call, which matters in a hot loop now that the arithmetic is
    compiled.  Calling it is :func:`normalize` with these columns.

    >>> rules = ColumnNormalizer(("close", "volume"))
    >>> p = {"price_offset": 10.0, "price_scale": 2.0, "volume_offset": 20.0, "volume_scale": 5.0}
    >>> rules(np.array([[11.0, 30.0]]), p).tolist()
    [[0.5, 2.0]]
    """

    __slots__ = ("columns", "_codes")

    def __init__(self, columns: Sequence[str]):
        self.columns = tuple(columns)
        self._codes = _kind_codes(self.columns)

    def __call__(self, values: np.ndarray, norm_params, *, dtype=np.float32) -> np.ndarray:
        if type(values) is not np.ndarray:
            values = np.asarray(values)
        shape = values.shape
        if len(shape) != 2 or shape[1] != len(self.columns):
            raise DataValidationError(
                f"values have shape {shape}, expected (n, {len(self.columns)}) for columns {self.columns}"
            )
        if values.dtype is not _FLOAT64 or not values.flags.c_contiguous:
            values = np.ascontiguousarray(values, dtype=np.float64)  # the cast the arithmetic does
        if type(norm_params) is NormParams:  # finite floats, scales > 0 (checked on construction)
            po, ips, vo, ivs = (norm_params.price_offset, 1.0 / norm_params.price_scale,
                                norm_params.volume_offset, 1.0 / norm_params.volume_scale)
        else:
            po, ips, vo, ivs = _kernel_args(norm_params)
        if dtype in _KERNEL_DTYPES:
            out = np.empty(shape, dtype)
            (_COMPILED[0] if _COMPILED else _kernel())(values, self._codes, po, ips, vo, ivs, out)
            return out
        return self(values, norm_params, dtype=np.float64).astype(dtype)

    def __repr__(self) -> str:
        return f"ColumnNormalizer({self.columns!r})"


@lru_cache(maxsize=256)
def _normalizer(columns: tuple[str, ...]) -> ColumnNormalizer:
    return ColumnNormalizer(columns)


def normalize(
    values: np.ndarray,
    columns: Sequence[str],
    norm_params: Mapping[str, float],
    *,
    dtype=np.float32,
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

    Returns
    -------
    numpy.ndarray
        A new C-contiguous ``[n, len(columns)]`` array of ``dtype``; the input
        is not modified.  NaN becomes 0.0.  Per number, ``(x - offset) * (1 /
        scale)`` in float64 (the offset is not rounded to float32), then one
        cast: the same bits whatever the layout of ``values``.  Runs as one
        compiled pass (:func:`_kernel`).
    """
    columns = columns if type(columns) is tuple else tuple(columns)
    return _normalizer(columns)(values, norm_params, dtype=dtype)
