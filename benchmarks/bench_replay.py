"""Replay throughput: ettlib's ReplayEngine against backtrader, same candles, same run.

ettlib side: one symbol, a year of 1-minute candles (525,600) in a DuckDB file,
timeframes 1m 5m 15m 1h, pivots to level 3 on 1m and 5m, a no-op subscriber on
every candle and pivot stream.  Timed from engine construction to the end of
``run()``: span by span, the DuckDB read into the cache, aggregation, pivot
detection, the merge and the dispatch of every event.

backtrader side: the same candles (a prefix: backtrader's PandasData preload
dominates its run time: 68 of 98 s for a year of 1m candles, measured) with
an empty strategy.  Both are compared per candle.

Usage: ``python benchmarks/bench_replay.py [--quick]``.  Ends with one JSON line
(``candles_per_s``, ``ratio_vs_backtrader``, ...).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pandas as pd

MINUTE = 60_000
START = 1_704_067_200_000  # 2024-01-01 00:00 UTC


def make_candles(count: int, seed: int = 7) -> pd.DataFrame:
    """``count`` seeded demo 1-minute candles (:func:`ettlib.store.demo.demo_candles`)."""
    from ettlib.store.demo import demo_candles

    frame = demo_candles("ETH/USDT", start=START, days=-(-count // 1440), seed=seed)
    return frame.iloc[:count].reset_index(drop=True)


def write_store(path: Path, frame: pd.DataFrame):
    """Write the candles into a DuckDB file; return an open storage."""
    import duckdb

    from ettlib.store.schema import ensure_schema

    con = duckdb.connect(str(path))
    ensure_schema(con)
    rows = frame.assign(symbol="ETH/USDT", timeframe="1m")  # noqa: F841 (scanned by name)
    con.execute("INSERT INTO ohlcv_data BY NAME SELECT * FROM rows")
    con.close()
    try:
        from ettlib.store import DuckDBStorage

        return DuckDBStorage(path)
    except ImportError:
        return duckdb.connect(str(path))


def bench_ettlib(storage, count: int) -> dict:
    from ettlib.replay.provider import DataProvider
    from ettlib.replay.events import pivot_types_up_to
    from ettlib.replay import ReplayEngine

    def replay(candle, pivot):
        provider = DataProvider()
        for tf in ("1m", "5m", "15m", "1h"):
            provider.subscribe_candle_completion(candle, "ETH/USDT", tf)
        for tf in ("1m", "5m"):
            provider.subscribe_pivot_events(pivot, "ETH/USDT", tf, pivot_types_up_to(3))
        engine = ReplayEngine(storage, provider, "ETH/USDT", START, START + (count - 1) * MINUTE,
                              timeframes=("1m", "5m", "15m", "1h"), pivot_timeframes=("1m", "5m"),
                              pivot_levels=3)
        return engine.run()

    def noop(event):  # the cheapest possible Python subscriber
        pass

    c0 = time.process_time()
    t0 = time.perf_counter()
    passed = replay(noop, noop)  # planned span by span while it runs
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    counts = Counter()
    replay(lambda e: counts.update(["candle"]), lambda e: counts.update(["pivot"]))  # untimed
    return {"total_s": total, "cpu_s": cpu, "events": passed, "candle_events": counts["candle"],
            "pivot_events": counts["pivot"]}


def bench_backtrader(frame: pd.DataFrame) -> dict:
    import backtrader as bt

    class Empty(bt.Strategy):
        def next(self):
            pass

    data = frame.assign(datetime=pd.to_datetime(frame["timestamp"], unit="ms")).set_index("datetime")
    c0 = time.process_time()
    t0 = time.perf_counter()
    cerebro = bt.Cerebro(stdstats=False)
    cerebro.adddata(bt.feeds.PandasData(dataname=data[["open", "high", "low", "close", "volume"]]))
    cerebro.addstrategy(Empty)
    cerebro.run()
    return {"total_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0,
            "candles": len(frame)}


def _secs(runs) -> str:
    return ", ".join(f"{r['total_s']:.2f}" for r in runs)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data (under 60 s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs per side; the fastest counts (default 3)")
    args = parser.parse_args(argv)
    count = 86_400 if args.quick else 525_600
    bt_count = 10_000 if args.quick else 30_000
    frame = make_candles(count)
    # Alternate the two sides and keep each one's fastest run: on a shared
    # machine this filters out the other tenants' bursts fairly for both.
    ours_runs, theirs_runs = [], []
    with tempfile.TemporaryDirectory() as tmp:
        storage = write_store(Path(tmp) / "bench.duckdb", frame)
        for _ in range(max(1, args.repeat)):
            ours_runs.append(bench_ettlib(storage, count))
            theirs_runs.append(bench_backtrader(frame.iloc[:bt_count]))
        if hasattr(storage, "close"):
            storage.close()
    ours = min(ours_runs, key=lambda r: r["total_s"])
    theirs = min(theirs_runs, key=lambda r: r["total_s"])
    ours_rate = count / ours["total_s"]
    theirs_rate = theirs["candles"] / theirs["total_s"]
    ratio = ours_rate / theirs_rate
    # CPU time (this process, all threads): what the run costs without the
    # other tenants of a shared machine; reported beside the wall-clock figures.
    ours_cpu = min(r["cpu_s"] for r in ours_runs)
    theirs_cpu = min(r["cpu_s"] for r in theirs_runs)
    cpu_ratio = (count / ours_cpu) / (theirs["candles"] / theirs_cpu)
    print(f"{'side':<34}{'candles':>10}{'seconds':>10}{'candles/s':>14}{'cpu s':>8}{'cpu cand/s':>13}")
    print(f"{'ettlib ReplayEngine (end to end)':<34}{count:>10,}{ours['total_s']:>10.2f}"
          f"{ours_rate:>14,.0f}{ours_cpu:>8.2f}{count / ours_cpu:>13,.0f}")
    print(f"{'backtrader, empty strategy':<34}{theirs['candles']:>10,}{theirs['total_s']:>10.2f}"
          f"{theirs_rate:>14,.0f}{theirs_cpu:>8.2f}{theirs['candles'] / theirs_cpu:>13,.0f}")
    print(f"events delivered: {ours['events']:,} ({ours['candle_events']:,} candle completions, "
          f"{ours['pivot_events']:,} pivots); ratio vs backtrader: {ratio:.1f}x "
          f"(target >= 500,000 candles/s and >= 30x); fastest of {len(ours_runs)} runs per side; "
          f"all ettlib runs (s): {_secs(ours_runs)}; all backtrader runs (s): {_secs(theirs_runs)}")
    print(json.dumps({
        "candles_per_s": round(ours_rate),
        "ratio_vs_backtrader": round(ratio, 1),
        "events_per_s": round(ours["events"] / ours["total_s"]),
        "backtrader_candles_per_s": round(theirs_rate),
        "cpu_candles_per_s": round(count / ours_cpu),
        "cpu_ratio_vs_backtrader": round(cpu_ratio, 1),
        "candles": count,
        "backtrader_candles": theirs["candles"],
        "quick": args.quick,
        "repeat": len(ours_runs),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
