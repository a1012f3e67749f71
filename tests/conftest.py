"""Shared fixtures: valid candles and a store on a real DuckDB file.

``make_candles(n, start=..., timeframe="1m", seed=0)`` returns a DataFrame
of ``n`` valid candles (``timestamp, open, high, low, close, volume``) on
the timeframe grid, without gaps (drop rows, or give ``gap_prob``, to make
gaps; ``tick`` rounds prices): the one candle builder of the tests.  The ``store``
fixture is a :class:`~ettlib.store.DuckDBStorage` on ``tmp_path``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ettlib.timeframes import timeframe_ms

#: 2024-01-01 00:00 UTC in epoch ms (on every timeframe's grid up to 1d).
START_MS = 1_704_067_200_000


def make_candles(n: int, start: int = START_MS, timeframe: str = "1m", seed: int = 0, *,
                 gap_prob: float = 0.0, max_gap: int = 7, tick: float = 0.0) -> pd.DataFrame:
    """``n`` valid candles of ``timeframe`` from ``start`` (a random walk): the tests' one builder.

    ``gap_prob``: each candle after the first follows a gap of 1 to ``max_gap``
    missing candles with this probability (default: none, the grid without
    gaps).  ``tick > 0`` rounds prices to multiples of it (ties for pivots).
    Prefix-stable: ``make_candles(m)`` starts with the rows of ``make_candles(n)``
    (with the same options).
    """
    # One stream per quantity, so that make_candles(m)[:n] == make_candles(n).
    returns, highs, lows, volumes, gaps, gap_sizes = (np.random.default_rng([seed, k]) for k in range(6))
    step = timeframe_ms(timeframe)
    close = 100.0 * np.exp(np.cumsum(returns.normal(0.0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(np.stack([highs.normal(0.0, 0.001, n), lows.normal(0.0, 0.001, n)])) * close
    high = np.maximum(open_, close) + spread[0]
    low = np.minimum(open_, close) - spread[1]
    if tick:
        high, low = np.round(high / tick) * tick, np.round(low / tick) * tick
        open_ = np.clip(np.round(open_ / tick) * tick, low, high)
        close = np.clip(np.round(close / tick) * tick, low, high)
    skipped = (gaps.random(n) < gap_prob) * gap_sizes.integers(1, max_gap + 1, n)
    skipped[:1] = 0
    return pd.DataFrame(
        {
            "timestamp": start + step * (np.arange(n, dtype=np.int64) + np.cumsum(skipped)),
            "open": open_,
            "high": high,
            "low": low,
            "close": close,
            "volume": volumes.gamma(2.0, 5.0, n),
        }
    )


def shuffled_in_chunks(items, rng, size: int = 7) -> list:
    """``items`` in order, shuffled within consecutive chunks of ``size`` (out-of-order, as live threads register)."""
    out = []
    for a in range(0, len(items), size):
        chunk = list(items[a:a + size])
        rng.shuffle(chunk)
        out.extend(chunk)
    return out


def candle_arrays(frame: pd.DataFrame):
    """A :func:`make_candles` frame as :class:`~ettlib.store.candles.CandleArrays` (OHLCV)."""
    from ettlib.store.candles import CandleArrays

    columns = ("open", "high", "low", "close", "volume")
    return CandleArrays(frame["timestamp"].to_numpy(np.int64), frame[list(columns)].to_numpy(np.float64),
                        columns)


@pytest.fixture(name="make_candles")
def make_candles_fixture():
    """The :func:`make_candles` factory, as a fixture."""
    return make_candles


@pytest.fixture
def store(tmp_path):
    """A fresh :class:`~ettlib.store.DuckDBStorage` on a file in ``tmp_path``."""
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(tmp_path / "ett.duckdb") as storage:
        yield storage


@pytest.fixture
def one_torch_thread():
    """Run a test with torch on one thread: small models are faster so on busy shared cores."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
