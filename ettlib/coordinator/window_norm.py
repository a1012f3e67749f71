"""A raw window's ``norm_params`` and its normalized values in one step (an inference loop's, per frame).

:class:`WindowNormalizer` is :func:`~ettlib.coordinator.normalization.compute_norm_params`
of a raw window followed by :func:`~ettlib.coordinator.normalization.normalize`
with those parameters, for one fixed column layout: one compiled call
and no intermediate dict or mapping check
(:func:`_normalize_window`).  The same parameters and the
same float32 bits as the two functions (``tests/test_frames.py`` checks),
the same errors for an empty or non-finite window.

Examples
--------
>>> import numpy as np
>>> rules = WindowNormalizer(("close", "volume"))
>>> params, out = rules(np.array([[9.0, 10.0], [10.0, 20.0], [11.0, 30.0]]))
>>> params["price_offset"], params["volume_offset"], out.dtype
(10.0, 20.0, dtype('float32'))
>>> [round(float(x), 4) for x in out[:, 0]]
[-1.2247, 0.0, 1.2247]
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ettlib.compiled import kernel
from ettlib.coordinator import normalization as _norm
from ettlib.coordinator.normalization import NormParams
from ettlib.errors import DataValidationError, UnknownNameError

__all__ = ["WindowNormalizer"]

_ndarray, _empty = np.ndarray, np.empty
_FLOAT32, _FLOAT64, _FLOOR = np.dtype(np.float32), _norm._FLOAT64, _norm.SCALE_FLOOR


def _normalize_window(values, codes, close, volume, floor, out):
    """``out[:] = normalize(values)`` with the window's own parameters; returns the parameters.

    ``(price_offset, price_scale, volume_offset, volume_scale)``: the means
    and population standard deviations of ``close`` and ``volume`` in the
    arithmetic and order of :func:`ettlib.coordinator.normalization._mean_std`
    (the same bits), each scale floored at ``floor * max(|offset|, 1)`` --
    or, when a standard deviation is not finite, that value unfloored and
    ``out`` untouched (the caller raises).  Per number the arithmetic of
    :func:`ettlib.coordinator.normalization._normalize_rows`: ``(x - offset) *
    (1 / scale)`` in float64, NaN -> 0, one cast to ``out``'s dtype.  Plain
    Python compiled by :func:`ettlib.compiled.kernel`.
    """
    n, m = values.shape
    moments = np.empty(4)  # the two passes of _mean_std, for close then volume
    for k in range(2):
        column = close if k == 0 else volume
        total = 0.0
        for i in range(n):
            total += values[i, column]
        mean = total / n
        squares = 0.0
        for i in range(n):
            squares += (values[i, column] - mean) * (values[i, column] - mean)
        moments[2 * k], moments[2 * k + 1] = mean, math.sqrt(squares / n)
    po, ps, vo, vs = moments[0], moments[1], moments[2], moments[3]
    if not (math.isfinite(ps) and math.isfinite(vs)):
        return po, ps, vo, vs
    low = floor * (1.0 if 1.0 > abs(po) else abs(po))  # max(std, floor * max(|mean|, 1)), as Python's max
    ps = low if low > ps else ps
    low = floor * (1.0 if 1.0 > abs(vo) else abs(vo))
    vs = low if low > vs else vs
    offset = np.empty(m)
    inverse = np.empty(m)
    for j in range(m):
        code = codes[j]
        if code == 0:
            offset[j], inverse[j] = po, 1.0 / ps
        elif code == 1:
            offset[j], inverse[j] = 0.0, 1.0 / ps
        elif code == 2:
            offset[j], inverse[j] = vo, 1.0 / vs
        else:
            offset[j], inverse[j] = 50.0, 1.0 / 50.0
    for i in range(n):
        for j in range(m):
            y = (values[i, j] - offset[j]) * inverse[j]
            out[i, j] = y if y == y else 0.0  # NaN != NaN
    return po, ps, vo, vs


class WindowNormalizer:
    """``(norm_params, normalized window)`` of raw windows with columns ``columns`` (see the module doc).

    ``columns`` must hold ``close`` and ``volume``
    (:class:`~ettlib.errors.UnknownNameError` otherwise).
    """

    __slots__ = ("columns", "_codes", "_close", "_volume", "_compiled")

    def __init__(self, columns: Sequence[str]):
        self.columns = tuple(columns)
        for name in ("close", "volume"):
            if name not in self.columns:
                raise UnknownNameError("column", name, self.columns)
        self._codes = _norm._kind_codes(self.columns)
        self._close, self._volume = self.columns.index("close"), self.columns.index("volume")
        self._compiled = None  # the kernel, looked up at the first call

    def __call__(self, values: np.ndarray) -> tuple[NormParams, np.ndarray]:
        """The frame's :class:`NormParams` and the window normalized with them (a new float32 array).

        Raises :class:`~ettlib.errors.DataValidationError` for an empty window,
        a window of another width, or a non-finite ``close`` / ``volume``.
        """
        if type(values) is not _ndarray or values.dtype is not _FLOAT64:
            values = np.asarray(values, dtype=np.float64)
        shape = values.shape
        if len(shape) != 2 or shape[1] != len(self.columns) or not shape[0]:
            if len(shape) == 2 and shape[1] == len(self.columns):
                raise DataValidationError("cannot compute norm_params of an empty window")
            raise DataValidationError(
                f"values have shape {shape}, expected (n, {len(self.columns)}) for columns {self.columns}")
        out = _empty(shape, _FLOAT32)
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = kernel(_normalize_window)
        po, ps, vo, vs = compiled(values, self._codes, self._close, self._volume, _FLOOR, out)
        if ps - ps != 0.0 or vs - vs != 0.0:  # not finite (NaN or inf)
            raise DataValidationError("norm_params need finite values",
                                      column="close" if ps - ps != 0.0 else "volume")
        return NormParams._checked_floats(po, ps, vo, vs), out

    def __repr__(self) -> str:
        return f"WindowNormalizer({self.columns!r})"
