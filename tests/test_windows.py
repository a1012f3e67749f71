"""Windows by reference: exactly the rows of [start, end], never one outside."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import ettlib.store.window_reads
from conftest import START_MS, make_candles
from ettlib.store.candles import CandleArrays
from ettlib.errors import ConfigError, UnknownNameError
from ettlib.store.schema import CANDLE_COLUMNS, OHLCV_COLUMNS

SYMBOL = "ETH/USDT"
M = 60_000
HOLES = [0, 1, *range(50, 60), 299, *range(1000, 1400), 4999, 5000, 7999]


@pytest.fixture(scope="module")
def filled(tmp_path_factory):
    """A store with 8000 gappy 1m candles of SYMBOL, plus decoys that must never leak:
    another symbol and another timeframe over the same open times."""
    from ettlib.store import DuckDBStorage

    candles = make_candles(8000, seed=2).drop(index=HOLES).reset_index(drop=True)
    store = DuckDBStorage(tmp_path_factory.mktemp("w") / "w.duckdb")
    store.ingest(candles, SYMBOL, "1m")
    decoy = make_candles(8000, seed=3)
    store.ingest(decoy, "BTC/USDT", "1m")
    store.ingest(make_candles(1600, timeframe="5m", seed=4), SYMBOL, "5m")
    yield store, candles
    store.close()


def reference(candles: pd.DataFrame, start: int, end: int, columns) -> tuple[np.ndarray, np.ndarray]:
    rows = candles[(candles.timestamp >= start) & (candles.timestamp <= end)]
    return rows.timestamp.to_numpy(), rows[list(columns)].to_numpy()


def check(window: CandleArrays, candles, start, end, columns=OHLCV_COLUMNS):
    """``window`` holds exactly the reference rows; ``columns`` (a subset of its columns) match."""
    ts, values = reference(candles, start, end, columns)
    assert window.timestamps.dtype == np.int64 and window.values.dtype == np.float64
    assert window.values.shape == (len(ts), len(window.columns))
    np.testing.assert_array_equal(window.timestamps, ts)
    np.testing.assert_array_equal(np.column_stack([window.column(c) for c in columns]), values)
    if len(window):
        assert window.timestamps[0] >= start and window.timestamps[-1] <= end


EDGE_CASES = {
    "plain": (START_MS + 100 * M, START_MS + 699 * M),
    "starts_in_gap": (START_MS + 52 * M, START_MS + 651 * M),
    "ends_in_gap": (START_MS + 400 * M, START_MS + 1200 * M),
    "both_edges_in_gaps": (START_MS + 55 * M, START_MS + 1010 * M),
    "off_grid_bounds": (START_MS + 100 * M + 1, START_MS + 200 * M - 1),
    "single_candle": (START_MS + 77 * M, START_MS + 77 * M),
    "single_missing_candle": (START_MS + 299 * M, START_MS + 299 * M),
    "entirely_in_gap": (START_MS + 1000 * M, START_MS + 1399 * M),
    "before_data": (START_MS - 1000 * M, START_MS + M),
    "after_data": (START_MS + 9000 * M, START_MS + 9999 * M),
    "whole_series": (0, START_MS + 10_000 * M),
    "inside_one_candle": (START_MS + 10 * M + 1, START_MS + 11 * M - 1),
}


@pytest.mark.parametrize("case", list(EDGE_CASES))
def test_read_window_returns_exactly_the_range(filled, case):
    store, candles = filled
    start, end = EDGE_CASES[case]
    check(store.read_window(SYMBOL, "1m", start, end, columns=OHLCV_COLUMNS), candles, start, end)


@pytest.mark.parametrize("path", ["range_scan", "equality_join", "equality_join_by_rowid"])
def test_read_windows_equals_one_window_at_a_time(filled, monkeypatch, path):
    """Each fetch strategy of read_windows, forced, gives the reference rows."""
    store, candles = filled
    if path == "range_scan":
        monkeypatch.setattr(ettlib.store.window_reads, "_SPAN_FACTOR", 10**9)
    else:
        monkeypatch.setattr(ettlib.store.window_reads, "_SPAN_FACTOR", 0)
        monkeypatch.setattr(ettlib.store.window_reads, "_SPAN_SLACK_ROWS", -(10**9))
        monkeypatch.setattr(ettlib.store.window_reads, "_ROWID_FRACTION", 2.0 if path.endswith("rowid") else -1.0)
    rng = np.random.default_rng(9)
    starts = START_MS + rng.integers(-100, 8100, 120) * M + rng.choice([0, 0, 0, 1, -1], 120)
    ends = starts + rng.integers(0, 700, 120) * M + rng.choice([0, 0, 0, 1, -1], 120)
    ends = np.maximum(ends, starts)
    starts_list = [*starts.tolist(), *[s for s, _ in EDGE_CASES.values()]]
    ends_list = [*ends.tolist(), *[e for _, e in EDGE_CASES.values()]]
    windows = store.read_windows(SYMBOL, "1m", starts_list, ends_list, columns=("close", "open"))
    assert len(windows) == len(starts_list)
    for window, start, end in zip(windows, starts_list, ends_list):
        assert window.columns == ("close", "open")
        check(window, candles, start, end, columns=("close", "open"))


def test_consecutive_overlapping_frames(filled):
    """The coordinator's typical batch: 600-candle frames one candle apart."""
    store, candles = filled
    ends = START_MS + np.arange(650, 650 + 64) * M
    starts = ends - 599 * M
    windows = store.read_windows(SYMBOL, "1m", starts, ends)
    for window, start, end in zip(windows, starts, ends):
        check(window, candles, start, end, columns=CANDLE_COLUMNS[:5])
        assert window.columns == CANDLE_COLUMNS


def test_windows_are_independent_copies(filled):
    store, _ = filled
    a, b = store.read_windows(SYMBOL, "1m", [START_MS + 100 * M] * 2, [START_MS + 110 * M] * 2)
    a.values[:] = -1.0
    assert (b.values[:, :5] > 0).all()


def test_indicator_warm_up_reads_as_nan(filled):
    store, candles = filled
    window = store.read_window(SYMBOL, "1m", START_MS, START_MS + 100 * M, columns=("sma_50", "close"))
    sma = window.column("sma_50")
    assert np.isnan(sma[:49]).all() and not np.isnan(sma[49:]).any()
    np.testing.assert_allclose(sma[49:], candles.close.rolling(50).mean()[49:len(window)], rtol=1e-9)


def test_read_candles_bounds_are_optional(filled):
    store, candles = filled
    assert len(store.read_candles(SYMBOL, "1m", columns=("close",))) == len(candles)
    tail = store.read_candles(SYMBOL, "1m", start=int(candles.timestamp.iloc[-10]), columns=())
    assert tail.values.shape == (10, 0)
    head = store.read_candles(SYMBOL, "1m", end=int(candles.timestamp.iloc[4]))
    check(head, candles, 0, int(candles.timestamp.iloc[4]), columns=CANDLE_COLUMNS[:5])


def test_unknown_symbol_gives_empty_windows(filled):
    store, _ = filled
    assert len(store.read_window("NOPE", "1m", 0, START_MS * 2)) == 0
    assert [len(w) for w in store.read_windows("NOPE", "1m", [0, 5], [10, 6])] == [0, 0]


def test_bad_requests_raise(filled):
    store, _ = filled
    with pytest.raises(ConfigError, match="after end"):
        store.read_window(SYMBOL, "1m", START_MS + M, START_MS)
    with pytest.raises(ConfigError, match="window 1"):
        store.read_windows(SYMBOL, "1m", [0, START_MS + M], [10, START_MS])
    with pytest.raises(ConfigError, match="ends"):
        store.read_windows(SYMBOL, "1m", [0, 1], [10])
    with pytest.raises(UnknownNameError, match="clos"):
        store.read_window(SYMBOL, "1m", 0, 1, columns=("closee",))
    with pytest.raises(UnknownNameError):
        store.read_window(SYMBOL, "1min", 0, 1)
    with pytest.raises(ConfigError, match="whole number"):
        store.read_window(SYMBOL, "1m", 0.5, 1)
    assert store.read_windows(SYMBOL, "1m", [], []) == []


def test_catalogue(filled):
    store, candles = filled
    assert store.symbols() == ["BTC/USDT", SYMBOL]
    assert store.timeframes(SYMBOL) == ["1m", "5m"]
    assert store.time_range(SYMBOL, "1m") == (int(candles.timestamp.iloc[0]), int(candles.timestamp.iloc[-1]))
    assert store.time_range(SYMBOL, "4h") is None
