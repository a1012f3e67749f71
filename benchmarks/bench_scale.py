"""Scale: peak memory and speed of a replay as the range and the symbols grow.

Run ``python benchmarks/bench_scale.py`` (full: 1 and 4 symbols x 1 and 3
years of 1m candles) or ``--quick`` (1 and 2 symbols x 30 and 90 days).

The candles are seeded demo candles (:mod:`ettlib.store.demo`), written once
into ``benchmarks/.data/scale-<size>.duckdb`` and reused by later runs (the
file is deleted and rewritten when its contents do not match).  Each case
runs in a fresh process -- so that its peak RSS is its own -- as ``ett
replay`` does: a read-only session over the symbols, timeframes 1m 5m 15m 1h
4h, pivots to level 3 on every timeframe, a no-op subscriber on every
candle and pivot stream; the child reports its peak RSS (``VmHWM`` of
``/proc/self/status``: ``getrusage``'s maximum survives ``exec`` from the
parent) and the candles per second of the replay.

Keys of the JSON line: ``rss_mb`` (per case, ``"<symbols>x<years>y"``),
``rss_growth_1y_to_3y`` (the largest ratio of peak RSS, 3 years over 1 year,
for a fixed set of symbols; target <= 1.15), ``candles_per_s_3y_vs_1y`` (the
smallest ratio of candles/s, 3 years over 1 year; target >= 0.9),
``bytes_per_candle_4x3y`` (peak RSS over the candles of the largest case),
``candles_per_s`` (per case).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".data"
SYMBOLS = ("AAA/USD", "BBB/USD", "CCC/USD", "DDD/USD")
START = 1_704_067_200_000  # 2024-01-01
DAY = 86_400_000
TIMEFRAMES = ["5m", "15m", "1h", "4h"]

CHILD = r"""
import json, sys, time
from ettlib.replay.events import pivot_types_up_to
from ettlib.workbench import Workbench

db, symbols, days = sys.argv[1], sys.argv[2].split(","), float(sys.argv[3])
start, day = int(sys.argv[4]), 86_400_000
end = start + int(days * day) - 60_000
t0 = time.perf_counter()
with Workbench(db, read_only=True) as wb:
    session = wb.session(symbols, start, end, timeframes=%(tfs)r, pivot_levels=3)
    noop = lambda event: None
    for s in symbols:
        for tf in session.timeframes:
            session.subscribe_candle_completion(noop, s, tf)
            session.subscribe_pivot_events(noop, s, tf, pivot_types_up_to(3))
    session.run()
    session.close()
wall = time.perf_counter() - t0
candles = len(symbols) * int(days * 1440)
with open("/proc/self/status") as status:  # the peak of this process (ru_maxrss survives exec)
    peak_kb = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"rss_mb": peak_kb / 1024,
                  "candles": candles, "candles_per_s": candles / wall, "wall_s": wall}))
""" % {"tfs": TIMEFRAMES}


def ensure_data(path: Path, symbols, days: float) -> None:
    """Write ``days`` of demo 1m candles of each symbol into ``path`` once (kept for later runs)."""
    from ettlib.store import DuckDBStorage
    from ettlib.store.demo import write_demo_data

    want = {s: int(days * 1440) for s in symbols}
    if path.exists():
        try:
            with DuckDBStorage(path, read_only=True) as store:
                if all(store.count(s, "1m") == n for s, n in want.items()):
                    return
        except Exception:
            pass
        path.unlink()
    path.parent.mkdir(parents=True, exist_ok=True)
    with DuckDBStorage(path) as store:
        for symbol in symbols:
            print(f"writing {days:g} days of {symbol} into {path} ...", file=sys.stderr, flush=True)
            write_demo_data(store, symbol=symbol, days=days, seed=11, start=START)


def run_case(path: Path, symbols, days: float) -> dict:
    out = subprocess.run([sys.executable, "-c", CHILD, str(path), ",".join(symbols), str(days), str(START)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 and 2 symbols x 30 and 90 days")
    args = parser.parse_args(argv)
    counts, spans, unit = ((1, 2), (30, 90), "d") if args.quick else ((1, 4), (365, 3 * 365), "y")
    path = DATA / f"scale-{'quick' if args.quick else 'full'}.duckdb"
    ensure_data(path, SYMBOLS[:max(counts)], max(spans))
    cases = {}
    for n in counts:
        for days in spans:
            label = f"{n}x{days if args.quick else days // 365}{unit}"
            cases[label] = run_case(path, SYMBOLS[:n], days)
            c = cases[label]
            print(f"  {label:>6}: peak RSS {c['rss_mb']:7.1f} MB, {c['candles_per_s']:>10,.0f} candles/s, "
                  f"{c['candles']:>10,} candles in {c['wall_s']:.1f} s")
    short, long = spans
    label = lambda n, d: f"{n}x{d if args.quick else d // 365}{unit}"  # noqa: E731
    growth = max(cases[label(n, long)]["rss_mb"] / cases[label(n, short)]["rss_mb"] for n in counts)
    speed = min(cases[label(n, long)]["candles_per_s"] / cases[label(n, short)]["candles_per_s"] for n in counts)
    big = cases[label(max(counts), long)]
    figures = {
        "rss_mb": {k: round(v["rss_mb"], 1) for k, v in cases.items()},
        "candles_per_s": {k: round(v["candles_per_s"]) for k, v in cases.items()},
        "rss_growth_1y_to_3y": round(growth, 3),
        "candles_per_s_3y_vs_1y": round(speed, 3),
        "bytes_per_candle_4x3y": round(big["rss_mb"] * 2**20 / big["candles"], 1),
        "quick": args.quick,
    }
    print(f"  peak RSS, long range over short, fixed symbols: {growth:.3f} (target <= 1.15)")
    print(f"  candles/s, long range over short:               {speed:.3f} (target >= 0.9)")
    print(f"  bytes per candle, largest case:                 {figures['bytes_per_candle_4x3y']:.0f}")
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main()
