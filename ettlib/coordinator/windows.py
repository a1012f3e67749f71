"""Windows: a frame's input candles re-read by reference -- the cache, else the store -- and normalized.

:func:`read_window` is the one way a window's rows are found: the replay's
window cache when it covers the range, else the store.  A
:class:`~ettlib.session.Session` (hence the inference loop and the event
stepper) reads raw windows through it; a :class:`WindowReader` -- what the
coordinator's ``get_inference_data`` is -- adds the frame's normalization
and returns :class:`InferenceData`.

The same values come back either way (bit for bit), never a row after
``ref.data_range_end``; and while a clock is known, a window whose last
candle has not closed by ``now()`` is a :class:`~ettlib.errors.LookAheadError`
whatever its source.

Examples
--------
>>> import duckdb, numpy as np, pandas as pd
>>> from ettlib.store import DuckDBStorage
>>> from ettlib.coordinator.frames import InferenceFrameReference
>>> store = DuckDBStorage(":memory:")
>>> price = 100.0 + np.arange(5)
>>> rows = pd.DataFrame({"symbol": "X", "timeframe": "1m", "timestamp": np.arange(5) * 60_000,
...                      "open": price, "high": price, "low": price, "close": price, "volume": 1.0})
>>> _ = store.con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM rows")
>>> reader = WindowReader(store, columns=("close",))
>>> ref = InferenceFrameReference.for_prediction(
...     1, "X", "1m", 300_000, context=3, norm_params=(100.0, 2.0, 0.0, 1.0),
...     predicted_action="BUY", confidence=0.5)
>>> data = reader.get(ref)
>>> data.timestamps.tolist(), data.column("close").tolist()
([120000, 180000, 240000], [1.0, 1.5, 2.0])
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.normalization import ColumnNormalizer
from ettlib.errors import LookAheadError
from ettlib.replay.cache import CandleCache
from ettlib.store.candles import CandleArrays
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.timeframes import TIMEFRAMES
from ettlib.times import format_ms

__all__ = ["InferenceData", "WindowReader", "read_window"]


@dataclass(frozen=True, slots=True)
class InferenceData:
    """A frame's input window, re-read by reference and normalized.

    ``timestamps`` (int64 open times, exactly the stored rows of
    ``[ref.data_range_start, ref.data_range_end]``), ``values`` (float32
    ``[n, len(columns)]``, normalized with ``ref.norm_params``; NaN -> 0),
    ``columns`` and the ``ref`` itself.
    """

    timestamps: np.ndarray
    values: np.ndarray
    columns: tuple[str, ...]
    ref: InferenceFrameReference

    def __len__(self) -> int:
        return len(self.timestamps)

    def column(self, name: str) -> np.ndarray:
        """One normalized column (a view)."""
        return CandleArrays.column(self, name)  # same lookup rule


_new_object = object.__new__
_DATA_SLOT_SETTERS = tuple(InferenceData.__dict__[f].__set__ for f in ("timestamps", "values", "columns", "ref"))


def read_window(cache, store, symbol: str, timeframe: str, start: int, end: int,
                columns: Sequence[str] | None = None) -> tuple[CandleArrays | None, bool]:
    """``(rows of [start, end], from_cache)``: the cache's when it covers the range, else the store's.

    ``cache`` may be ``None``; ``columns=None``: the columns the cache holds
    (every candle column without a cache).  ``rows`` is ``None`` when the
    store has no candle in the range.
    """
    if cache is not None:
        window = cache.window(symbol, timeframe, start, end, columns)
        if window is not None:
            return window, True
    if columns is None:
        columns = CANDLE_COLUMNS if cache is None else cache.columns
    return store.read_window(symbol, timeframe, start, end, tuple(columns)), False


def _inside(ref: InferenceFrameReference, arrays: CandleArrays) -> tuple[np.ndarray, np.ndarray]:
    """The rows of ``arrays`` inside ``ref``'s window: never a row outside it."""
    ts, values = arrays.timestamps, arrays.values
    n = len(ts)
    if n and (ts[0] < ref.data_range_start or ts[n - 1] > ref.data_range_end):
        i = int(np.searchsorted(ts, ref.data_range_start, "left"))
        j = int(np.searchsorted(ts, ref.data_range_end, "right"))
        ts, values = ts[i:j], values[i:j]
    return ts, values


class WindowReader:
    """Frames' windows as :class:`InferenceData`: the cache, else the store, then normalized.

    Parameters
    ----------
    store
        Has ``read_window`` and ``read_windows`` (a
        :class:`~ettlib.store.DuckDBStorage`, a session's guarded candles).
    cache
        Optional: a :class:`~ettlib.replay.cache.CandleCache`, or anything with
        ``window(symbol, timeframe, start, end, columns) -> CandleArrays | None``.
    columns
        Columns of the windows.
    now
        Optional ``() -> ms | None``: while it returns a time, a window not
        closed by it is refused.
    lock
        Held around store reads (the coordinator's: one connection, many threads).
    """

    def __init__(self, store, cache=None, *, columns: Sequence[str] = CANDLE_COLUMNS, now=None,
                 lock=None):
        self.store = store
        self._cache = cache
        self.columns = CANDLE_COLUMNS if tuple(columns) == CANDLE_COLUMNS else tuple(columns)
        self._normalize = ColumnNormalizer(self.columns)
        self._clock_time = now
        self._lock = threading.RLock() if lock is None else lock

    @property
    def cache(self):
        """The window cache tried before the store (None: the store alone)."""
        return self._cache

    def check_knowable(self, ref: InferenceFrameReference) -> None:
        """Refuse a window whose last candle has not closed at the clock (whatever its source)."""
        now = None if self._clock_time is None else self._clock_time()
        if now is not None and ref.data_range_end + TIMEFRAMES[ref.timeframe] > now:
            raise LookAheadError(
                f"frame {ref.inference_id!r}: its window ends with the candle opened at "
                f"{format_ms(ref.data_range_end)}, which closes after now ({format_ms(now)})")

    def cached_rows(self, ref: InferenceFrameReference) -> tuple[np.ndarray, np.ndarray] | None:
        """The cache's ``(timestamps, values)`` of ``ref``'s window (``None``: no cache, or not covered).

        A :class:`~ettlib.replay.cache.CandleCache` gives exactly the rows of
        the window (O(1) for a gap-free stream); any other cache's rows are
        clipped to the window.
        """
        cache = self._cache
        if cache is None:
            return None
        start, end = ref.data_range_start, ref.data_range_end
        if type(cache) is CandleCache:
            return cache.window_values(ref.symbol, ref.timeframe, start, end, self.columns)
        arrays = cache.window(ref.symbol, ref.timeframe, start, end, self.columns)
        return None if arrays is None else _inside(ref, arrays)

    def _data(self, ref: InferenceFrameReference, ts: np.ndarray, values: np.ndarray) -> InferenceData | None:
        if len(ts) == 0:
            return None
        # InferenceData(...) through its slots: the frozen dataclass's __init__ costs twice as much
        data = _new_object(InferenceData)
        a, b, c, d = _DATA_SLOT_SETTERS
        a(data, ts)
        b(data, self._normalize(values, ref.norm_params))
        c(data, self.columns)
        d(data, ref)
        return data

    def get(self, ref: InferenceFrameReference) -> InferenceData | None:
        """The rows of ``[ref.data_range_start, ref.data_range_end]``, normalized; ``None`` if none.

        Each call builds a new ``InferenceData`` whose ``values`` are a new
        float32 array (nothing is kept between calls).
        """
        self.check_knowable(ref)
        rows = self.cached_rows(ref)
        if rows is None:
            with self._lock:
                arrays = self.store.read_window(
                    ref.symbol, ref.timeframe, ref.data_range_start, ref.data_range_end, self.columns)
            if arrays is None:
                return None
            rows = _inside(ref, arrays)
        return self._data(ref, *rows)

    def get_batch(self, refs: Sequence[InferenceFrameReference]) -> list[InferenceData | None]:
        """:meth:`get` for many frames; uncached windows in one store query per stream."""
        for ref in refs:
            self.check_knowable(ref)
        out: list[InferenceData | None] = [None] * len(refs)
        missing: dict[tuple[str, str], list[int]] = {}
        for k, ref in enumerate(refs):
            rows = self.cached_rows(ref)
            if rows is None:
                missing.setdefault((ref.symbol, ref.timeframe), []).append(k)
            else:
                out[k] = self._data(ref, *rows)
        for (symbol, timeframe), positions in missing.items():
            with self._lock:
                windows = self.store.read_windows(
                    symbol, timeframe, [refs[k].data_range_start for k in positions],
                    [refs[k].data_range_end for k in positions], self.columns)
            for k, arrays in zip(positions, windows):
                if arrays is not None:
                    out[k] = self._data(refs[k], *_inside(refs[k], arrays))
        return out
