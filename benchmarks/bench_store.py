"""Benchmark the DuckDB store: ingest rate and 600-candle window retrieval.

Run ``python benchmarks/bench_store.py`` (a year of 1m candles) or with
``--quick`` (60 days, under a minute).  Every comparison is measured in the
same run:

* ingest (validation + insert + indicators, one transaction) beside a bare
  ``INSERT ... SELECT`` of the same DataFrame into an empty copy of the table;
* a window of 600 candles x all 18 columns: one ``read_window`` query, and
  ``read_windows`` batches of 32 and 256 windows -- scattered over the whole
  series (distinct windows) and consecutive (frames one candle apart, the
  coordinator's usual batch) -- each beside a numpy copy of the same window
  from an in-memory array.

Prints a table, then one JSON line (keys: ``single_window_ms``,
``batched_ms_per_window`` (scattered, 256 windows), ``numpy_copy_us``,
``ingest_rows_per_s`` and more).  Budget (docs/design.md): batched <= 0.5 ms per
window.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from ettlib.store.demo import demo_candles
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.store import DuckDBStorage

SYMBOL = "ETH/USDT"
START = 1_704_067_200_000  # 2024-01-01 UTC
WINDOW = 600
BUDGET_MS = 0.5


def synthetic_minutes(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` seeded demo 1m candles from ``START`` (:func:`ettlib.store.demo.demo_candles`)."""
    return demo_candles(SYMBOL, start=START, days=n / 1440, seed=seed)


def median_time(fn, repeats: int) -> float:
    """Median wall time of ``fn()`` in seconds (one warm-up call first)."""
    fn()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="60 days instead of a year")
    args = parser.parse_args(argv)
    days = 60 if args.quick else 365
    repeats = 15 if args.quick else 40
    n = days * 24 * 60
    candles = synthetic_minutes(n)
    rows = []

    with tempfile.TemporaryDirectory() as tmp:
        # -- ingest ---------------------------------------------------------
        import ettlib.store.indicators  # noqa: F401  (its import cost is not ingest's)

        store = DuckDBStorage(Path(tmp) / "bench.duckdb")
        t = time.perf_counter()
        report = store.ingest(candles, SYMBOL, "1m")
        ingest_s = time.perf_counter() - t
        assert report.rows_added == n
        t = time.perf_counter()
        again = store.ingest(candles, SYMBOL, "1m")
        reingest_s = time.perf_counter() - t
        assert again.rows_unchanged == n
        t = time.perf_counter()
        store.update_indicators(SYMBOL, "1m")
        indicators_s = time.perf_counter() - t
        # The same table definition (primary key included), a bare INSERT:
        # no validation, no idempotence check, no indicators.
        with DuckDBStorage(Path(tmp) / "bare.duckdb") as bare:
            t = time.perf_counter()
            bare.con.register("c", candles)
            bare.con.execute("INSERT INTO ohlcv_data (symbol, timeframe, timestamp, open, high, low,"
                             " close, volume) SELECT 'ETH/USDT', '1m', * FROM c")
            bare_s = time.perf_counter() - t
        rows.append(("ingest (validate+insert+indicators)", f"{n / ingest_s:,.0f} rows/s",
                     f"bare INSERT {n / bare_s:,.0f} rows/s", f"{ingest_s / bare_s:.1f}x"))
        rows.append(("  of which indicators (full recompute)", f"{indicators_s:.2f} s",
                     f"ingest {ingest_s:.2f} s", f"{indicators_s / ingest_s:.0%}"))
        rows.append(("re-ingest same candles (idempotent)", f"{n / reingest_s:,.0f} rows/s", "", ""))

        # In-memory copy of the whole table for the numpy side.
        everything = store.read_candles(SYMBOL, "1m")
        values, stamps = everything.values, everything.timestamps
        rng = np.random.default_rng(1)

        # -- one window ------------------------------------------------------
        starts_idx = rng.integers(0, n - WINDOW, repeats + 1)
        it = iter(starts_idx.tolist() * 2)

        def one_window():
            i = next(it)
            store.read_window(SYMBOL, "1m", int(stamps[i]), int(stamps[i + WINDOW - 1]))

        single_s = median_time(one_window, repeats)
        w = store.read_window(SYMBOL, "1m", int(stamps[1000]), int(stamps[1000 + WINDOW - 1]))
        assert w.values.shape == (WINDOW, len(CANDLE_COLUMNS))
        copy_s = median_time(lambda: values[1000:1000 + WINDOW].copy(), 2000)
        rows.append(("single window query", f"{single_s * 1e3:.3f} ms", f"numpy copy {copy_s * 1e6:.2f} us",
                     f"{single_s / copy_s:,.0f}x"))

        # -- batches ---------------------------------------------------------
        figures = {}
        for kind in ("scattered", "consecutive"):
            for size in (32, 256):
                def make():
                    if kind == "scattered":
                        first = np.sort(rng.choice(n - WINDOW, size, replace=False))
                    else:
                        first = rng.integers(0, n - WINDOW - size) + np.arange(size)
                    return stamps[first], stamps[first + WINDOW - 1], first

                batches = [make() for _ in range(max(3, repeats // 3) + 1)]
                bit = iter(batches * 2)

                def batch():
                    s, e, _ = next(bit)
                    return store.read_windows(SYMBOL, "1m", s, e)

                got = store.read_windows(SYMBOL, "1m", batches[0][0], batches[0][1])
                assert all(len(x) == WINDOW for x in got)
                batch_s = median_time(batch, len(batches) - 1) / size
                firsts = batches[0][2]
                numpy_s = median_time(lambda: [values[i:i + WINDOW].copy() for i in firsts], 50) / size
                figures[(kind, size)] = batch_s
                rows.append((f"batched {size:>3} windows, {kind}", f"{batch_s * 1e3:.3f} ms/window",
                             f"numpy copy {numpy_s * 1e6:.2f} us/window", f"{batch_s / numpy_s:,.0f}x"))
        store.close()

    width = max(len(r[0]) for r in rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"bench_store: {n:,} 1m candles ({days} days), window {WINDOW} x {len(CANDLE_COLUMNS)} columns, "
          f"{os.cpu_count()} CPUs, load average {load:.1f} (figures swing with load on a shared VM)")
    print(f"{'measure':<{width}}  {'ettlib':>20}  {'beside':>30}  {'ratio':>8}")
    for name, ours, other, ratio in rows:
        print(f"{name:<{width}}  {ours:>20}  {other:>30}  {ratio:>8}")
    headline = figures[("scattered", 256)]
    verdict = "meets" if headline * 1e3 <= BUDGET_MS else "MISSES"
    print(f"budget: batched <= {BUDGET_MS} ms/window -> {headline * 1e3:.3f} ms (scattered, 256): {verdict}")
    result = {
        "single_window_ms": round(single_s * 1e3, 4),
        "batched_ms_per_window": round(headline * 1e3, 4),
        "numpy_copy_us": round(copy_s * 1e6, 3),
        "batched_ms_per_window_32_scattered": round(figures[("scattered", 32)] * 1e3, 4),
        "batched_ms_per_window_32_consecutive": round(figures[("consecutive", 32)] * 1e3, 4),
        "batched_ms_per_window_256_consecutive": round(figures[("consecutive", 256)] * 1e3, 4),
        "single_window_ratio_vs_numpy_copy": round(single_s / copy_s, 1),
        "ingest_rows_per_s": round(n / ingest_s),
        "bare_insert_rows_per_s": round(n / bare_s),
        "reingest_rows_per_s": round(n / reingest_s),
        "indicator_update_s": round(indicators_s, 3),
        "rows": n,
        "load_average_1m": round(load, 2),
        "quick": args.quick,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    sys.exit(main() and 0)
