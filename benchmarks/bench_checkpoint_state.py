"""An adapter that is never drained: what its checkpoint costs at each commit of a long run.

Run ``python benchmarks/bench_checkpoint_state.py`` (a year of 1m pairs) or
``--quick`` (90 days).

An adapter attached to a session by hand keeps every :class:`PairResult` until
``drain_results()``, and each commit stores them all again in its
``checkpoint_state()`` (``run_experiment`` drains at every commit, so its
states stay small).  This times ``checkpoint_state()`` of a River adapter holding
the results of 10,000, 20,000, ... pairs, once per commit of
``persist_every=10_000`` (one pair per candle), with the collector paused as
inside a commit, and sums them over the run.  Beside it, in the same run and
in alternating order, the same state with the results stored as the list of objects
(what ettlib stored before 2026-12-04): ``results_columns`` is what changed.

Ends with one JSON line: ``run_s`` (the summed checkpoints, columns),
``run_s_objects``, ``objects_vs_columns``, ``last_state_mb``, ``last_commit_ms``.
"""

from __future__ import annotations

import argparse
import gc
import json
import pickle
import sys
import time
import warnings

from ettlib.training.adapters import RiverAdapter
from ettlib.training.adapters.base import STATE_FORMAT, pair_result

T0 = 1_704_067_200_000
M = 60_000
EVERY = 10_000


def state_with_objects(adapter: RiverAdapter) -> bytes:
    """``checkpoint_state()`` as it was before the results were stored as columns."""
    body = {"adapter": adapter.state_dict(), "pending": [(p.event, p.ref, p.kind) for p in adapter.pending],
            "results": list(adapter.results)}
    return pickle.dumps({"format": STATE_FORMAT, "settings": adapter.settings(), "state": adapter._pack(body)},
                        protocol=pickle.HIGHEST_PROTOCOL)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="90 days instead of a year")
    args = parser.parse_args(argv)
    n = (90 if args.quick else 365) * 1440
    results = [pair_result(i, "candle", f"candle|ETH/USDT|1m||{T0 + i * M}", T0 + (i + 1) * M, 0.1 + i * 1e-9, {})
               for i in range(n)]
    adapter = RiverAdapter(seed=1)
    sizes = list(range(EVERY, n + 1, EVERY))
    seconds = {"columns": [], "objects": []}
    gc.disable()  # as inside a commit (ettlib.gc_pause)
    warnings.simplefilter("ignore", UserWarning)  # the adapter's warning about undrained results: deliberate here
    try:
        for k, size in enumerate(sizes):
            adapter.results = results[:size]
            sides = [("columns", adapter.checkpoint_state), ("objects", lambda: state_with_objects(adapter))]
            for name, take in sides[::-1] if k % 2 else sides:  # the side that goes first alternates
                t = time.perf_counter()
                take()
                seconds[name].append(time.perf_counter() - t)
        last_state = len(adapter.checkpoint_state())
    finally:
        gc.enable()
    columns_s, objects_s = sum(seconds["columns"]), sum(seconds["objects"])
    print(f"bench_checkpoint_state ({'quick' if args.quick else 'full'}): {n:,} pairs, {len(sizes)} commits")
    for k in range(0, len(sizes), max(1, len(sizes) // 6)):
        print(f"  {sizes[k]:>9,} results: columns {seconds['columns'][k] * 1e3:7.1f} ms,"
              f" objects {seconds['objects'][k] * 1e3:7.1f} ms")
    print(f"  summed over the run's commits: columns {columns_s:.1f} s, objects {objects_s:.1f} s"
          f" ({objects_s / columns_s:.2f}x); last state {last_state / 1e6:.1f} MB")
    figures = {"pairs": n, "commits": len(sizes), "run_s": round(columns_s, 2), "run_s_objects": round(objects_s, 2),
               "objects_vs_columns": round(objects_s / columns_s, 3), "last_state_mb": round(last_state / 1e6, 1),
               "last_commit_ms": round(seconds["columns"][-1] * 1e3, 1), "quick": args.quick}
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
