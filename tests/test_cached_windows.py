"""Cached windows: the cache's row lookup (arithmetic without gaps, search with
them), the look-ahead guard, and the coordinator's normalized windows -- bit
for bit the DuckDB ones, and the compiled normalization kernel bit for bit
the numpy broadcast of its rule.

References are plain scans: DuckDB's rows of ``[start, end]`` and a
broadcast of the normalization rule over the window.
"""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import START_MS, make_candles
from ettlib.replay.cache import CandleCache
from ettlib.store.candles import CandleArrays
from ettlib.clock import ReplayClock
from ettlib.coordinator import InferenceTrainingCoordinator
from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, LookAheadError
from ettlib.coordinator.frames import InferenceFrameReference, NormParams
from ettlib.coordinator.normalization import normalize
from ettlib.store.schema import CANDLE_COLUMNS

M = 60_000
N = 900
GAPPY = "BTC/USDT"  # rows 300-302 and 450 missing
PLAIN = "ETH/USDT"  # no gaps
GAPS = [300, 301, 302, 450]
LO, HI = START_MS - 20 * M, START_MS + (N + 20) * M  # the cached range, wider than the rows
KINDS = {"price": (0, 1), "price_diff": (None, 1), "volume": (2, 3), "rsi": (50.0, 50.0)}


@pytest.fixture
def streams(store):
    """Two 1m streams (one with gaps, one without), indicators computed on ingest
    (so the first rows hold NaN: warm-up), and a NULL in the middle of each."""
    store.ingest(make_candles(N), PLAIN, "1m")
    store.ingest(make_candles(N, seed=1).drop(index=GAPS).reset_index(drop=True), GAPPY, "1m")
    store.con.execute("UPDATE ohlcv_data SET macd = NULL WHERE timestamp = ?", [START_MS + 600 * M])
    return store


def _cache(store, **kwargs) -> CandleCache:
    cache = CandleCache(store, **kwargs)
    for symbol in (PLAIN, GAPPY):
        cache.load(symbol, "1m", LO, HI)
    return cache


def _windows(seed: int = 0, n: int = 150) -> list[tuple[int, int]]:
    """Edge cases, then random ranges inside the cached range (any millisecond)."""
    t = lambda k: START_MS + k * M  # noqa: E731
    edges = [
        (LO, LO), (LO, t(0)), (LO, HI), (t(0), t(599)), (HI - 30 * M, HI), (t(N - 1), HI), (HI, HI),
        (t(100) + 1, t(200) - 1), (t(77), t(77)), (t(77) + 1, t(78) - 1),  # off grid, empty
        (t(300), t(302)), (t(299), t(303)), (t(450), t(450)),  # inside / around the gaps
        (t(0), t(20)), (LO, t(5)), (t(30), t(60)),  # ending in, or leaving, the warm-up
        (t(590), t(610)), (t(600), t(600)), (t(601), t(700)),  # the NULL at row 600
    ]
    rng = np.random.default_rng(seed)
    starts = rng.integers(LO, HI + 1, n)
    ends = [int(rng.integers(s, min(HI, s + 700 * M) + 1)) for s in starts]
    return edges + [(int(s), e) for s, e in zip(starts, ends)]


def _reference_window(store, symbol, start, end, columns=CANDLE_COLUMNS) -> CandleArrays:
    return store.read_window(symbol, "1m", start, end, columns)


def test_gap_free_and_gapped_streams_give_exactly_the_duckdb_rows(streams):
    cache = _cache(streams)
    # both lookups are exercised: arithmetic (no gaps), binary search (gaps)
    assert cache._entries[(PLAIN, "1m")].step == M and cache._entries[(GAPPY, "1m")].step == 0
    for symbol in (PLAIN, GAPPY):
        for start, end in _windows():
            rows = cache.window(symbol, "1m", start, end)
            want = _reference_window(streams, symbol, start, end)
            assert isinstance(rows, CandleArrays) and rows.columns == CANDLE_COLUMNS
            np.testing.assert_array_equal(rows.timestamps, want.timestamps, err_msg=f"{symbol} {start} {end}")
            np.testing.assert_array_equal(rows.values, want.values)  # NaN at the same places


def test_off_grid_and_irregular_streams_put_by_hand():
    # open times 7 ms off the grid, no gaps: indexed arithmetically from the first row
    ts = START_MS + 7 + M * np.arange(50, dtype=np.int64)
    values = np.arange(100, dtype=np.float64).reshape(50, 2)
    irregular = np.sort(np.random.default_rng(3).choice(np.arange(200), 50, replace=False))
    cache = CandleCache(None)
    cache.put("A", "1m", START_MS - M, START_MS + 60 * M, CandleArrays(ts, values, ("open", "close")))
    cache.put("B", "1m", START_MS - M, START_MS + 200 * M,
              CandleArrays(START_MS + M * irregular, values, ("open", "close")))
    assert cache._entries[("A", "1m")].step == M and cache._entries[("B", "1m")].step == 0
    rng = np.random.default_rng(4)
    for symbol, hi in (("A", START_MS + 60 * M), ("B", START_MS + 200 * M)):
        held = cache.window(symbol, "1m", START_MS - M, hi)  # everything held
        for _ in range(300):
            start = int(rng.integers(START_MS - M, hi + 1))
            end = int(rng.integers(start, hi + 1))
            rows = cache.window(symbol, "1m", start, end)
            keep = (held.timestamps >= start) & (held.timestamps <= end)
            assert rows.timestamps.tolist() == held.timestamps[keep].tolist()
            assert rows.values.tolist() == held.values[keep].tolist()


def test_columns_loaded_later_are_the_duckdb_columns(streams):
    cache = _cache(streams, columns=("open", "close"))
    for start, end in _windows(seed=1):
        for columns in (("close",), ("rsi_14", "open"), ("open", "close", "rsi_14")):
            rows = cache.window(PLAIN, "1m", start, end, columns)  # the first loads rsi_14
            want = _reference_window(streams, PLAIN, start, end, columns)
            assert rows.columns == columns
            np.testing.assert_array_equal(rows.values, want.values)


def test_the_look_ahead_guard_still_refuses_the_future(streams):
    clock = ReplayClock(START_MS + 100 * M)
    cache = _cache(streams, clock=clock)
    for symbol in (PLAIN, GAPPY):
        last = START_MS + 99 * M  # the candle closing exactly at now
        assert cache.window(symbol, "1m", last - 10 * M, last) is not None
        for end in (last + 1, last + M, HI, HI + 10**9):  # judged on end, loaded or not
            with pytest.raises(LookAheadError):
                cache.window(symbol, "1m", last - 10 * M, end)
    with pytest.raises(ConfigError):
        cache.window(PLAIN, "1m", START_MS + M, START_MS)
    clock_none = _cache(streams, clock=ReplayClock(None))
    with pytest.raises(LookAheadError):
        clock_none.window(PLAIN, "1m", START_MS, START_MS)
    assert cache.window(PLAIN, "1m", LO - M, START_MS) is None  # not covered: ask DuckDB


def _broadcast_reference(values: np.ndarray, columns, p: NormParams) -> np.ndarray:
    """The normalization rule as one plain broadcast over the window, then NaN -> 0."""
    from ettlib.coordinator.normalization import column_kind

    table = {"price": (p.price_offset, p.price_scale), "price_diff": (0.0, p.price_scale),
             "volume": (p.volume_offset, p.volume_scale), "rsi": (50.0, 50.0)}
    off = np.array([table[column_kind(c)][0] for c in columns])
    inv = 1.0 / np.array([table[column_kind(c)][1] for c in columns])
    return np.nan_to_num(((np.asarray(values, dtype=np.float64) - off) * inv).astype(np.float32), nan=0.0)


def _refs(symbol: str) -> list[InferenceFrameReference]:
    cases = [(1, 1), (5, 30), (21, 600), (40, 20), (60, 15), (200, 600), (303, 4), (451, 2), (451, 600),
             (599, 10), (600, 10), (601, 1), (700, 600), (N, 600), (N + 20, 25)]
    return [InferenceFrameReference.for_prediction(
                i, symbol, "1m", START_MS + k * M, context=ctx,
                norm_params=(100.0 + i / 7, 0.25 + i / 1000, 9.0 + i, 3.0 + i / 3),
                predicted_action="HOLD", confidence=0.5)
            for i, (k, ctx) in enumerate(cases, start=1)]


def test_coordinator_cached_windows_are_the_duckdb_windows_bit_for_bit(streams):
    cache = _cache(streams)
    provider = DataProvider(streams)
    cached = InferenceTrainingCoordinator(provider, streams, cache=cache, run_id="c")
    plain = InferenceTrainingCoordinator(provider, streams, run_id="p")
    paths = set()
    for symbol in (PLAIN, GAPPY):
        refs = _refs(symbol)
        for ref in refs:
            rows = cache.window(symbol, "1m", ref.data_range_start, ref.data_range_end)
            paths.add("duckdb" if rows is None else "nan" if np.isnan(rows.values).any() else "clean")
            a, b = cached.get_inference_data(ref), plain.get_inference_data(ref)
            raw = _reference_window(streams, symbol, ref.data_range_start, ref.data_range_end)
            if len(raw) == 0:
                assert a is None and b is None
                continue
            assert a.values.tobytes() == b.values.tobytes(), ref
            assert a.values.tobytes() == _broadcast_reference(raw.values, CANDLE_COLUMNS, ref.norm_params).tobytes()
            np.testing.assert_array_equal(a.timestamps, raw.timestamps)
            assert a.values.dtype == np.float32 and a.values.flags.c_contiguous
            assert (a.values[np.isnan(raw.values)] == 0).all()
        for coordinator in (cached, plain):
            for got, ref in zip(coordinator.get_inference_data_batch(refs), refs):
                single = plain.get_inference_data(ref)
                assert (got is None) == (single is None)
                if got is not None:
                    assert got.values.tobytes() == single.values.tobytes()
    assert paths == {"duckdb", "nan", "clean"}  # cached windows with and without NaN, and DuckDB


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")
def test_an_infinite_inverse_still_zeroes_the_nan_it_makes():
    # a subnormal scale: 1 / scale is inf, and (offset - offset) * inf is NaN
    p = NormParams(100.0, 5e-324, 10.0, 1.0)
    values = np.array([[100.0, 10.0], [101.0, 11.0]])
    out = normalize(values, ("close", "volume"), p)
    assert not np.isnan(out).any() and out[0, 0] == 0.0 and np.isinf(out[1, 0])


def test_normalize_without_rows_or_columns_gives_an_empty_array():
    p = NormParams(100.0, 2.0, 10.0, 1.0)
    for values, columns in ((np.empty((0, 2)), ("close", "volume")), (np.empty((5, 0)), ())):
        for dtype in (np.float32, np.float64):
            out = normalize(values, columns, p, dtype=dtype)
            assert out.shape == values.shape and out.dtype == dtype


@pytest.mark.parametrize("layout", ["c", "fortran", "strided", "float32", "int64", "subset", "empty", "one_row"])
def test_normalize_is_the_broadcast_rule_for_any_layout_and_dtype(layout):
    rng = np.random.default_rng(7)
    columns = CANDLE_COLUMNS
    base = 100.0 + rng.normal(0, 3, (601, len(columns)))
    base[:9, 5:] = np.nan  # warm-up
    base[300, 12] = np.nan
    values = {
        "c": base, "fortran": np.asfortranarray(base), "strided": base[::3], "float32": base.astype(np.float32),
        "int64": np.nan_to_num(base).astype(np.int64), "empty": base[:0], "one_row": base[-1:],
        "subset": base[:, [3, 4, 10, 11]],
    }[layout]
    if layout == "subset":
        columns = tuple(columns[j] for j in (3, 4, 10, 11))
    p = NormParams(100.5, 2.5, 99.0, 3.25)
    want = _broadcast_reference(values, columns, p)
    got = normalize(values, columns, p)
    assert got.shape == want.shape and got.dtype == np.float32 and got.flags.c_contiguous
    assert got.tobytes() == want.tobytes()
    wide = normalize(values, columns, p, dtype=np.float64)
    assert wide.dtype == np.float64 and wide.flags.writeable
    np.testing.assert_array_equal(wide.astype(np.float32), want)


def test_each_call_builds_new_arrays(streams):
    cache = _cache(streams)
    coordinator = InferenceTrainingCoordinator(DataProvider(streams), streams, cache=cache)
    ref = _refs(PLAIN)[5]
    a, b = coordinator.get_inference_data(ref), coordinator.get_inference_data(ref)
    assert a is not b and not np.shares_memory(a.values, b.values)
    before = b.values.copy()
    a.values[:] = 7.0  # the caller owns its array: the next call is not affected
    assert b.values.tobytes() == before.tobytes()
    assert coordinator.get_inference_data(ref).values.tobytes() == before.tobytes()


def test_a_cache_with_only_window_is_clipped_to_the_frame(streams):
    class Wide:
        """Answers every window with the whole stream (more rows than asked)."""

        def window(self, symbol, timeframe, start, end, columns):
            return streams.read_window(symbol, timeframe, LO, HI, columns)

    wide = InferenceTrainingCoordinator(DataProvider(streams), streams, cache=Wide(), run_id="w")
    plain = InferenceTrainingCoordinator(DataProvider(streams), streams, run_id="p")
    for ref in _refs(GAPPY):
        a, b = wide.get_inference_data(ref), plain.get_inference_data(ref)
        assert (a is None) == (b is None)
        if a is not None:
            assert a.timestamps.tolist() == b.timestamps.tolist()
            assert a.values.tobytes() == b.values.tobytes()


def test_normalize_compiles_without_a_writable_numba_cache(tmp_path):
    # a real process where numba finds no cache location (only the user-provided
    # locator is allowed, and no NUMBA_CACHE_DIR is set): it compiles, same bits
    code = (
        "import numpy as np\n"
        "from ettlib.coordinator.normalization import normalize\n"
        "v = np.array([[100.0, np.nan], [102.0, 13.0]])\n"
        "out = normalize(v, ('close', 'volume'), "
        "dict(price_offset=100.0, price_scale=2.0, volume_offset=10.0, volume_scale=3.0))\n"
        "print(out.tolist())\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["NUMBA_CACHE_LOCATOR_CLASSES"] = "UserProvidedCacheLocator"
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[[0.0, 0.0], [1.0, 1.0]]"
