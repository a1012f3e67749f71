"""Frames and the coordinator: reference size, matching rate, window retrieval.

Run ``python benchmarks/bench_frames.py`` (full) or ``--quick`` (< 60 s).

Measures, in one run:

- bytes per :class:`InferenceFrameReference` (``tracemalloc`` over many
  frames) beside the bytes of the 600 x all-columns float64 window it
  refers to; and the bytes per *retained* frame inside a coordinator
  (reference + indexes);
- candle and pivot events per second through matching, with 10,000
  retained frames (delivery to a no-op subscriber and batched persistence
  included);
- a replay (:class:`~ettlib.replay.ReplayEngine`) registering a frame at every
  1m step, each matched by its target candle: candles/s; beside it, the same
  replay with no-op callbacks, and a bound no design can pass: that baseline
  plus constructing the validated frame, the least matching work, and
  what the delivery protocol persists (each delivered pair, and the
  pending frames once per flush) from ready Arrow tables
  (:func:`measure_floor`);
- ``get_inference_data`` per 600-candle window from the replay cache,
  beside a numpy copy of the same window (also for a window holding the
  indicator warm-up's NaN, and beside the least a numpy normalization does
  without the compiled kernel: a float64 subtract and multiply and a float32
  cast with scalar parameters); and uncached (DuckDB) windows, one by one
  and batched.

Ends with one JSON line: ``reference_bytes``, ``reference_fraction_of_window``,
``cached_window_ratio_vs_numpy_copy``, ``uncached_ms_per_window`` (batched),
plus more.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from ettlib.replay.cache import CandleCache
from ettlib.coordinator import InferenceTrainingCoordinator, TrainingEventSubscriber
from ettlib.replay.provider import DataProvider
from ettlib.store.demo import demo_candles
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.coordinator.frames import InferenceFrameReference
from ettlib.coordinator.windows import WindowReader
from ettlib.store.schema import CANDLE_COLUMNS
from ettlib.store import DuckDBStorage

M = 60_000
T0 = 1_704_067_200_000
SYMBOL = "ETH/USDT"
CONTEXT = 600


def frame(i: int, t: int, context: int = CONTEXT) -> InferenceFrameReference:
    return InferenceFrameReference.for_prediction(
        i, SYMBOL, "1m", t, context=context,
        norm_params={"price_offset": 100.0 + i, "price_scale": 2.0 + i * 1e-3,
                     "volume_offset": 10.0 + i, "volume_scale": 3.0 + i * 1e-3},
        predicted_action=("BUY", "SELL", "HOLD")[i % 3],
        predicted_candle=(1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i, 10.0 + i),
        confidence=0.7)


def candles(n: int, seed: int = 7) -> pd.DataFrame:
    """``n`` seeded demo 1m candles from ``T0`` (:func:`ettlib.store.demo.demo_candles`)."""
    return demo_candles(SYMBOL, start=T0, days=n / 1440, seed=seed)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def measure_reference(n: int) -> tuple[float, float]:
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    refs = [frame(10**9 + i, T0 + i * M) for i in range(n)]
    per_ref = (tracemalloc.get_traced_memory()[0] - before) / n
    tracemalloc.stop()
    del refs
    # inside a coordinator: reference + target dict + sorted stream + id set
    with DuckDBStorage(":memory:") as storage:
        coordinator = InferenceTrainingCoordinator(DataProvider(storage), storage, retention=10**9,
                                                   persist_every=10**9)
        made = [frame(10**9 + i, T0 + i * M) for i in range(n)]
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        for ref in made:
            coordinator.register_inference_frame(ref)
        index = (tracemalloc.get_traced_memory()[0] - before) / n
        tracemalloc.stop()
    return per_ref, per_ref + index


class Null(TrainingEventSubscriber):
    subscriber_name = "null"


def measure_matching(n_events: int, retained: int = 10_000) -> tuple[float, float]:
    """Events/s with ``retained`` frames held (none expires during the run).

    Candle events each match one frame by target; pivot events each match
    the 31 frames predicted within the lookback of their bar.
    """
    n_events = min(n_events, retained)
    with DuckDBStorage(":memory:") as storage:
        provider = DataProvider(storage)
        lookback = 30
        coordinator = InferenceTrainingCoordinator(provider, storage, pivot_lookback=lookback,
                                                   retention=10 * retained, persist_every=10_000)
        sub = Null()
        coordinator.subscribe_to_candle_completion(sub, SYMBOL, "1m")
        coordinator.subscribe_to_pivot_events(sub, SYMBOL, "1m", ["L2L"])
        for i in range(1, retained + 1):
            coordinator.register_inference_frame(frame(i, T0 + i * M, context=10))
        candles_ev = [CandleCompletionEvent(SYMBOL, "1m", T0 + k * M, T0 + (k + 1) * M, 1, 1, 1, 1, 1)
                      for k in range(1, n_events + 1)]
        t = time.perf_counter()
        for e in candles_ev:
            provider.publish_candle(e)
        candle_rate = n_events / (time.perf_counter() - t)
        now = T0 + (n_events + 1) * M
        n_pivots = min(n_events, retained - lookback - 1)
        bars = range(lookback + 1, lookback + 1 + n_pivots)  # distinct pivots, 31 frames each
        pivots = [PivotEvent(SYMBOL, "1m", "L2L", 2, T0 + b * M, 1.0, 1.0, now + k) for k, b in enumerate(bars)]
        t = time.perf_counter()
        for e in pivots:
            provider.publish_pivot(e)
        pivot_rate = n_pivots / (time.perf_counter() - t)
        c = coordinator.counters()
        assert c.pending == retained and c.matched == n_events + n_pivots * (lookback + 1), c
        coordinator.close()
    return candle_rate, pivot_rate


def measure_windows(n_candles: int, n_windows: int, repeat: int) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(Path(tmp) / "bench.duckdb")
        storage.ingest(candles(n_candles), SYMBOL, "1m")
        cache = CandleCache(storage)
        cache.load(SYMBOL, "1m", T0, T0 + n_candles * M)
        provider = DataProvider(storage)
        cached = InferenceTrainingCoordinator(provider, storage, cache=cache, run_id="c")
        plain = InferenceTrainingCoordinator(provider, storage, run_id="u")
        rng = np.random.default_rng(1)
        ks = np.sort(rng.choice(np.arange(CONTEXT + 1, n_candles), n_windows, replace=False))
        refs = [frame(i + 1, T0 + int(k) * M) for i, k in enumerate(ks)]
        window = cache.window(SYMBOL, "1m", refs[0].data_range_start, refs[0].data_range_end, CANDLE_COLUMNS)
        assert window.values.shape == (CONTEXT, len(CANDLE_COLUMNS))
        values = window.values
        loops = 2_000
        def copies():
            for _ in range(loops):
                values.copy()  # each result freed at once, as a training step would

        ref0 = refs[0]
        cached.get_inference_data(ref0)  # loads (or compiles) the normalization kernel, untimed

        def cached_reads():
            get = cached.get_inference_data
            for _ in range(loops):
                get(ref0)

        def cached_scattered():
            get = cached.get_inference_data
            for r in refs:
                get(r)

        def lookups():
            window_of = WindowReader(storage, cache).cached_rows  # what get_inference_data does first
            for _ in range(loops):
                window_of(ref0)

        # a window holding the indicator warm-up (NaN rows, set to 0)
        warm = frame(n_windows + 1, T0 + CONTEXT * M)
        assert np.isnan(cache.window(SYMBOL, "1m", warm.data_range_start, warm.data_range_end).values).any()

        def cached_nan_reads():
            get = cached.get_inference_data
            for _ in range(loops):
                get(warm)

        # the least a numpy normalization of the window does (what the
        # compiled kernel replaces): a float64 subtract and multiply and a
        # float32 cast, with scalar parameters (numpy's fastest loops), no NaN scan
        def floor():
            for _ in range(loops):
                np.multiply(np.subtract(values, 100.0), 0.5).astype(np.float32)

        copy_s = best(copies, repeat) / loops
        lookup_s = best(lookups, repeat) / loops
        cached_s = best(cached_reads, repeat) / loops
        cached_many_s = best(cached_scattered, repeat) / len(refs)
        cached_nan_s = best(cached_nan_reads, repeat) / loops
        floor_s = best(floor, repeat) / loops
        single = refs[: min(50, len(refs))]
        uncached_single_s = best(lambda: [plain.get_inference_data(r) for r in single], repeat) / len(single)
        batch_s = best(lambda: plain.get_inference_data_batch(refs), repeat) / len(refs)
        # consecutive frames (a replay's batch: windows overlapping almost entirely)
        consecutive = [frame(i + 1, T0 + (CONTEXT + 1 + i) * M) for i in range(n_windows)]
        batch_consecutive_s = best(lambda: plain.get_inference_data_batch(consecutive), repeat) / n_windows
        a = cached.get_inference_data(refs[-1])
        b = plain.get_inference_data(refs[-1])
        assert a.values.tobytes() == b.values.tobytes()
        storage.close()
    return {
        "numpy_copy_us": copy_s * 1e6,
        "cached_us_per_window": cached_s * 1e6,
        "cached_us_per_window_scattered": cached_many_s * 1e6,
        "cached_window_ratio_vs_numpy_copy": cached_s / copy_s,
        "cached_nan_window_us": cached_nan_s * 1e6,
        "cached_nan_window_ratio_vs_numpy_copy": cached_nan_s / copy_s,
        "numpy_normalize_floor_us": floor_s * 1e6,
        "numpy_normalize_floor_ratio_vs_numpy_copy": floor_s / copy_s,
        "cached_lookup_us": lookup_s * 1e6,
        "cached_lookup_ratio_vs_numpy_copy": lookup_s / copy_s,
        "uncached_single_ms_per_window": uncached_single_s * 1e3,
        "uncached_ms_per_window": batch_s * 1e3,
        "uncached_consecutive_ms_per_window": batch_consecutive_s * 1e3,
    }


def measure_replay(n_candles: int, *, coordinated: bool = True) -> float:
    """Candles/s of a ReplayEngine run with a frame registered at every 1m step
    and matched by its target candle (no model: constant norm params).

    ``coordinated=False``: the same replay with no-op candle and step
    callbacks (the baseline the coordinator adds to)."""
    from ettlib.coordinator.frames import NormParams
    from ettlib.replay import ReplayEngine

    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(Path(tmp) / "replay.duckdb")
        storage.con.register("bench_candles", candles(n_candles))
        storage.con.execute(
            "INSERT INTO ohlcv_data BY NAME SELECT 'ETH/USDT' AS symbol, '1m' AS timeframe, * FROM bench_candles")
        provider = DataProvider(storage)
        if not coordinated:
            provider.subscribe_candle_completion(lambda event: None, SYMBOL, "1m")
            provider.subscribe_inference_step(lambda step: None, SYMBOL, "1m")
            engine = ReplayEngine(storage, provider, SYMBOL, T0, T0 + (n_candles - 1) * M, cache_warmup=0)
            t = time.perf_counter()  # planned span by span inside run(), as the coordinated replay below
            engine.run()
            elapsed = time.perf_counter() - t
            storage.close()
            return n_candles / elapsed
        coordinator = InferenceTrainingCoordinator(provider, storage, persist_every=10_000)
        coordinator.subscribe_to_candle_completion(Null(), SYMBOL, "1m")
        params = NormParams(100.0, 1.0, 10.0, 1.0)
        new_id, register = coordinator.new_inference_id, coordinator.register_inference_frame

        def on_step(step):
            t = step.timestamp
            register(InferenceFrameReference(new_id(), SYMBOL, "1m", t, t, t - CONTEXT * M, t - M,
                                             params, "HOLD", (), 0.5))

        provider.subscribe_inference_step(on_step, SYMBOL, "1m")
        engine = ReplayEngine(storage, provider, SYMBOL, T0, T0 + (n_candles - 1) * M, cache_warmup=0)
        t = time.perf_counter()
        engine.run()
        coordinator.close()
        elapsed = time.perf_counter() - t
        c = coordinator.counters()
        assert c.registered == n_candles and c.matched == n_candles - 1
        storage.close()
    return n_candles / elapsed


def measure_floor(n_candles: int) -> tuple[float, float, float]:
    """Three costs per candle that the delivery protocol pays for a frame at every candle.

    Returns seconds per candle for (1) constructing the validated
    :class:`InferenceFrameReference` the replay registers; (2) the least
    matching work: the frame kept in a dict under its target, the frame of
    the candle that closed popped from it, a no-op ``on_candle_completion``
    call with it, and the pair appended to a list; (3) what the protocol
    persists, into a DuckDB file, from Arrow tables built before the timing,
    10,000 candles per transaction, no Python per row: each candle's
    delivered pair appended to ``training_events`` (no key; its ``event_key``
    made in Arrow inside the timing, as a flush does), and per transaction the retained
    frames (``pivot_lookback + retention + 1``) replacing the pending rows of
    ``inference_frames``.  With the replay's own cost they bound the
    candles/s of ``measure_replay`` from above, whatever the rest costs.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from ettlib.coordinator.frames import NormParams
    from ettlib.coordinator.persistence import event_keys, frames_table, insert_pairs, pairs_table

    params = NormParams(100.0, 1.0, 10.0, 1.0)
    n_built = min(n_candles, 200_000)
    def build(i: int) -> InferenceFrameReference:
        return InferenceFrameReference(i, SYMBOL, "1m", T0 + i * M, T0 + i * M, T0 + (i - CONTEXT) * M,
                                       T0 + (i - 1) * M, params, "HOLD", (), 0.5)

    t = time.perf_counter()
    for i in range(n_built):  # each freed at once (kept, the garbage collector's passes would count)
        InferenceFrameReference(i, SYMBOL, "1m", T0 + i * M, T0 + i * M, T0 + (i - CONTEXT) * M,
                                T0 + (i - 1) * M, params, "HOLD", (), 0.5)
    construct_s = (time.perf_counter() - t) / n_built

    built = [build(i) for i in range(n_built)]
    targets, pairs, deliver = {}, [], Null().on_candle_completion
    events = [CandleCompletionEvent(SYMBOL, "1m", T0 + (i - 1) * M, T0 + i * M, 1.0, 1.0, 1.0, 1.0, 1.0)
              for i in range(n_built)]  # what the replay builds
    t = time.perf_counter()
    for ref, event in zip(built, events):
        target = ref.target_timestamp
        targets[target] = ref
        deliver(event, targets.pop(target - M, None))
        pairs.append((ref.inference_id, SYMBOL, "1m", event.timestamp, event.close_time, "null",
                      ref.inference_id, None, None))
    match_s = (time.perf_counter() - t) / n_built
    retained = 30 + 60 + 1  # the coordinator's defaults: pivot_lookback + retention + the newest
    pending = frames_table(built[:retained]).append_column("run_id", pa.array(["r"] * retained))
    step = 10_000
    batches = [pairs_table(pairs[lo:lo + step]) for lo in range(0, min(len(pairs), step * 4), step)]
    del built, targets, pairs, events
    with tempfile.TemporaryDirectory() as tmp:
        storage = DuckDBStorage(Path(tmp) / "floor.duckdb")
        con = storage.con
        con.register("bench_pending", pending)
        t = time.perf_counter()
        for k, lo in enumerate(range(0, n_candles, step)):
            batch = batches[k % len(batches)]
            timestamps = pc.add(batch["timestamp"], lo * M)
            keys = event_keys("candle", batch["symbol"].combine_chunks(), batch["timeframe"].combine_chunks(),
                              batch["pivot_type"].combine_chunks(), timestamps.combine_chunks())
            rows = pa.table({**{c: batch[c] for c in batch.column_names
                                if c not in ("timestamp", "event_key", "knowable_time", "seq")},
                             "timestamp": timestamps, "event_key": keys,
                             "knowable_time": pc.add(batch["knowable_time"], lo * M),
                             "seq": pc.add(batch["seq"], lo)})
            con.execute("BEGIN TRANSACTION")
            con.execute("DELETE FROM inference_frames WHERE run_id = 'r' AND status = 'pending'")
            con.execute("INSERT INTO inference_frames BY NAME SELECT * FROM bench_pending")
            insert_pairs(con, "r", rows)
            con.execute("COMMIT")
        persist_s = (time.perf_counter() - t) / n_candles
        assert con.execute("SELECT count(*) FROM training_events").fetchone()[0] >= n_candles
        storage.close()
    return construct_s, match_s, persist_s


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data, < 60 s")
    args = parser.parse_args(argv)
    n_refs = 20_000 if args.quick else 100_000
    n_events = 5_000 if args.quick else 20_000
    n_candles = 20_000 if args.quick else 100_000
    n_windows = 256
    repeat = 3 if args.quick else 5

    window_bytes = CONTEXT * len(CANDLE_COLUMNS) * 8
    per_ref, per_retained = measure_reference(n_refs)
    candle_rate, pivot_rate = measure_matching(n_events)
    w = measure_windows(n_candles, n_windows, repeat)
    n_replay = 50_000 if args.quick else 525_600
    replay_rate = measure_replay(n_replay)
    replay_bare_rate = measure_replay(n_replay, coordinated=False)
    construct_s, match_s, persist_s = measure_floor(n_replay)
    unpersisted_bound_rate = 1 / (1 / replay_bare_rate + construct_s + match_s)
    bound_rate = 1 / (1 / replay_bare_rate + construct_s + match_s + persist_s)

    rows = [
        ("reference bytes (tracemalloc, %d frames)" % n_refs, f"{per_ref:,.0f} B"),
        (f"600 x {len(CANDLE_COLUMNS)} float64 window", f"{window_bytes:,} B"),
        ("reference / window", f"{per_ref / window_bytes:.3%}  (target <= 1%)"),
        ("retained frame in coordinator (ref + indexes)", f"{per_retained:,.0f} B"),
        ("100k pending frames", f"{per_retained * 1e5 / 1e6:,.1f} MB  (target <= 80 MB)"),
        ("candle events/s, 10k retained (1 match each)", f"{candle_rate:,.0f}"),
        ("pivot events/s, 10k retained (31 matches each)", f"{pivot_rate:,.0f}"),
        ("numpy copy of the window", f"{w['numpy_copy_us']:.1f} us"),
        ("get_inference_data, cached", f"{w['cached_us_per_window']:.1f} us"),
        ("cached / numpy copy", f"{w['cached_window_ratio_vs_numpy_copy']:.2f}x  (target <= 3x)"),
        ("  of which cache lookup (raw rows, no normalization)",
         f"{w['cached_lookup_us']:.1f} us = {w['cached_lookup_ratio_vs_numpy_copy']:.2f}x the copy"),
        ("  numpy floor, not used: f64 subtract, multiply, f32 cast",
         f"{w['numpy_normalize_floor_us']:.1f} us = {w['numpy_normalize_floor_ratio_vs_numpy_copy']:.2f}x the copy"),
        ("get_inference_data, cached, window with NaN warm-up",
         f"{w['cached_nan_window_us']:.1f} us = {w['cached_nan_window_ratio_vs_numpy_copy']:.2f}x the copy"),
        ("get_inference_data, uncached, one by one", f"{w['uncached_single_ms_per_window']:.3f} ms/window"),
        (f"get_inference_data_batch, uncached, {n_windows} scattered",
         f"{w['uncached_ms_per_window']:.3f} ms/window  (target <= 0.5)"),
        (f"get_inference_data_batch, uncached, {n_windows} consecutive",
         f"{w['uncached_consecutive_ms_per_window']:.3f} ms/window"),
        (f"replay, frame per 1m step, {n_replay:,} candles", f"{replay_rate:,.0f} candles/s  (target >= 200k)"),
        ("  same replay, no-op callbacks (baseline)", f"{replay_bare_rate:,.0f} candles/s"),
        ("  a validated frame, constructed", f"{construct_s * 1e6:.2f} us/candle"),
        ("  least matching: dict put + pop, a no-op call, a list append", f"{match_s * 1e6:.2f} us/candle"),
        ("  a pair row + the pending frames per flush, into DuckDB", f"{persist_s * 1e6:.2f} us/candle"),
        ("  bound: baseline + those three, nothing else", f"{bound_rate:,.0f} candles/s"),
        ("  bound without persisting (not exactly once)", f"{unpersisted_bound_rate:,.0f} candles/s"),
        ("  with frames / no-op baseline", f"{replay_rate / replay_bare_rate:.3f}"),
        ("  with frames / the bound", f"{replay_rate / bound_rate:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bench_frames ({'quick' if args.quick else 'full'})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    figures = {
        "reference_bytes": round(per_ref, 1),
        "reference_fraction_of_window": round(per_ref / window_bytes, 5),
        "retained_frame_bytes": round(per_retained, 1),
        "pending_100k_mb": round(per_retained * 1e5 / 1e6, 1),
        "candle_events_per_s": round(candle_rate),
        "pivot_events_per_s": round(pivot_rate),
        "replay_with_frames_candles_per_s": round(replay_rate),
        "replay_noop_candles_per_s": round(replay_bare_rate),
        "replay_with_frames_vs_noop": round(replay_rate / replay_bare_rate, 4),
        "frame_construct_us": round(construct_s * 1e6, 3),
        "least_matching_us": round(match_s * 1e6, 3),
        "persist_pair_and_pending_us": round(persist_s * 1e6, 3),
        "replay_with_frames_bound_candles_per_s": round(bound_rate),
        "replay_with_frames_unpersisted_bound_candles_per_s": round(unpersisted_bound_rate),
        "replay_with_frames_vs_bound": round(replay_rate / bound_rate, 4),
        **{k: round(v, 4) for k, v in w.items()},
    }
    print(json.dumps(figures))
    return figures


if __name__ == "__main__":
    main(sys.argv[1:])
