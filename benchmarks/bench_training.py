"""Training: event-driven vs pre-built tensors, retrieval's share, River's rate.

Run ``python benchmarks/bench_training.py`` (full) or ``--quick`` (< 60 s).

Measures, in one run, on seeded demo candles (:mod:`ettlib.store.demo`) in a
DuckDB file:

1. **Event-driven vs pre-built.**  A replay drives the Transformer adapter
   through the coordinator (frames registered at each 1m step, pairs matched
   on candle completions and pivots, windows re-read in batches, targets built
   from the events); the time inside the adapter's learning (retrieval +
   tensors + optimizer step) gives event-driven samples/s.  Then the *same*
   pairs, as tensors built before timing, train fresh adapters with the same
   seed: same model, same batches, same order, same weights at the end
   (checked).  Each side is its median time per full batch.

   An online run predicts between its learning steps (about 18 predictions
   per batch of 32 at the default configuration), and that inference leaves
   the CPU caches cold for the next step: the step itself, identical code on
   identical arrays, runs 5-10% slower than back to back.  That cost belongs
   to online learning, not to the event-driven data path, so the headline
   ratio (``event_driven_vs_prebuilt_ratio``) compares like with like: the
   pre-built side makes, before each of its steps, as many predictions as
   the event-driven run made there (on that batch's windows, untimed), and
   differs only in where its tensors come from.  The ratio against
   back-to-back pre-built steps (an offline loop with no inference) is
   reported too (``event_driven_vs_offline_ratio``), and so is the same
   comparison for a 600-candle model (context 600, d_model 64, ff 256;
   full runs only), where a step is long enough that cache state no longer
   shows.
2. **Retrieval's share of a training step**, from the replay's cache (the
   path experiments use) and from DuckDB (a session with ``use_cache=False``).
3. **River**: the River adapter's pairs/s (retrieval + features +
   ``learn_one``, event-driven) beside ``river.evaluate.progressive_val_score``
   on the same features and targets, pre-computed; then like for like
   (:func:`bench_river_like_for_like`): the whole ettlib River path (replay,
   frames, matching, features once per frame, predict, learn) against
   ``progressive_val_score`` with ``moment`` and a one-candle ``delay`` computing
   the same features from the same raw windows, normalization included
   (``river_path_vs_progressive_val_ratio``, target >= 0.8).  Full runs repeat
   it over 7 days (10,016 frames, ``river_path_7d_vs_progressive_val_ratio``):
   past the 4,096 frames a River adapter keeps features for, and with the
   commit the coordinator makes every 10,000 events inside the timed run.
4. **The default configuration**: a full :func:`run_experiment` with the
   default :class:`ExperimentConfig` (context 64, d_model 32, 2 layers,
   batch 32, 1 torch thread) on demo data: wall time and whether the model
   learned (its MAE against the frozen, never-trained copy and persistence).

Ends with one JSON line: ``event_driven_vs_prebuilt_ratio``, ``event_driven_vs_offline_ratio``,
``retrieval_share_of_step``, ``retrieval_share_uncached``,
``river_adapter_pairs_per_s``, ``river_progressive_val_items_per_s``,
``river_path_vs_progressive_val_ratio``, plus more.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ettlib.store.demo import DEFAULT_START, write_demo_data
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.store import DuckDBStorage
from ettlib.training.adapters import RiverAdapter, TransformerAdapter, normalized_target
from ettlib.experiment.runner import ExperimentConfig, run_experiment
from ettlib.training.inference_loop import InferenceLoop
from ettlib.workbench import Workbench

SYMBOL, TF = "ETH/USDT", "1m"
PIVOTS = ["L2L", "L2H", "L3L", "L3H"]
WEEK_MS = 7 * 86_400_000  # the longer like-for-like run (full runs)


class Timed:
    """Wraps a window source; accumulates the time spent retrieving."""

    def __init__(self, inner):
        self.inner = inner
        self.seconds = 0.0

    def get_inference_data_batch(self, refs):
        t = time.perf_counter()
        out = self.inner.get_inference_data_batch(refs)
        self.seconds += time.perf_counter() - t
        return out


def instrument(adapter):
    """Time the adapter's learning and keep each batch's pairs, in order."""
    adapter.learn_seconds = 0.0
    adapter.batches = []
    adapter.batch_seconds = []
    inner = adapter._train_pending

    def timed(batch):
        adapter.predicts_before.append(adapter.predicts)
        adapter.predicts = 0
        t = time.perf_counter()
        inner(batch)
        dt = time.perf_counter() - t
        adapter.learn_seconds += dt
        adapter.batch_seconds.append(dt)
        adapter.batches.append(list(batch))

    adapter._train_pending = timed
    # predictions made since the previous learning step, per batch (the
    # inference interleaved with learning, replayed on the pre-built side)
    adapter.predicts = 0
    adapter.predicts_before = []
    predict = adapter.predict

    def counted(*a, **k):
        adapter.predicts += 1
        return predict(*a, **k)

    adapter.predict = counted
    adapter.step_seconds = []
    step = getattr(adapter, "train_step", None)
    if step is not None:
        def timed_step(*a, **k):
            t = time.perf_counter()
            out = step(*a, **k)
            adapter.step_seconds.append(time.perf_counter() - t)
            return out

        adapter.train_step = timed_step
    return adapter


def replay(storage, adapter, start, end, context, *, use_cache=True, pivots=PIVOTS, on_prediction=None,
           closing=None):
    """Drive ``adapter`` through a session's replay; return (timed source, wall seconds, coordinator).

    Timed: ``session.run()`` and the adapter's ``flush()``.  ``closing``: a list
    that gets the seconds of ``session.close()`` (the last commit: frames,
    pairs, checkpoint, the adapter's state) appended.

    ``use_cache=False``: the coordinator re-reads training windows from DuckDB.
    ``pivots``: the pivot types the adapter learns from (none: candle pairs only).
    ``on_prediction``: the inference loop's callback.
    """
    session = Workbench(storage).session(SYMBOL, start, end, columns=OHLCV_COLUMNS, pivot_lookback=5,
                                         warmup=context + 1, use_cache=use_cache)
    coordinator = session.coordinator
    adapter.attach(coordinator, SYMBOL, TF, pivots)
    timed = Timed(coordinator)
    adapter.source = timed
    InferenceLoop(adapter, session, symbol=SYMBOL, timeframe=TF, context_length=context,
                  on_prediction=on_prediction).attach()
    t = time.perf_counter()
    session.run()
    adapter.flush()
    wall = time.perf_counter() - t
    t = time.perf_counter()
    session.close()
    if closing is not None:
        closing.append(time.perf_counter() - t)
    return timed, wall, coordinator


def prebuilt_tensors(adapter, coordinator):
    """The recorded batches as (x, y_candle, y_action, is_candle) arrays (built untimed),
    and each batch's normalized input windows (``(values, columns)``)."""
    out, windows = [], []
    for batch in adapter.batches:
        data = coordinator.get_inference_data_batch([p.ref for p in batch])
        pairs = [(p, d) for p, d in zip(batch, data) if d is not None]
        out.append(adapter._tensors(pairs))
        windows.append([(d.values, d.columns) for _, d in pairs])
    return out, windows


def train_prebuilt(params, tensors, batches, size, *, windows=None, predicts_before=None):
    """Train a fresh adapter on pre-built tensors; time each step.

    With ``windows``/``predicts_before``, before step ``k`` the adapter first
    predicts ``predicts_before[k]`` times (untimed), cycling through batch
    ``k``'s own input windows: the same inference the event-driven run did
    between its learning steps, without the replay, the coordinator or the
    retrieval.  Returns ``(adapter, total seconds, full-batch step seconds)``.
    """
    fresh = TransformerAdapter(**params)
    total, full = 0.0, []
    for k, ((x, yc, ya, mask), batch) in enumerate(zip(tensors, batches)):
        if predicts_before is not None:
            for i in range(predicts_before[k]):
                values, columns = windows[k][i % len(windows[k])]
                fresh.predict(values, columns)
        t = time.perf_counter()
        fresh.train_step(x, yc, ya, mask)
        dt = time.perf_counter() - t
        total += dt
        if len(batch) == size:
            full.append(dt)
    return fresh, total, full


def warm_up(params) -> None:
    """A few throwaway steps, so one-time costs (autograd, allocator) hit neither side."""
    warm = TransformerAdapter(**params)
    b, c, f = params["batch_size"], params["context_length"], len(OHLCV_COLUMNS)
    for _ in range(3):
        warm.train_step(np.zeros((b, c, f), np.float32), np.zeros((b, f), np.float32),
                        np.zeros(b, np.int64), np.ones(b, bool))


def bench_transformer(storage, start, end, params, *, use_cache=True, repeats=3):
    """Event-driven learning vs the same batches pre-built, ``repeats`` times, alternating.

    The machine is shared and noisy, so both sides are compared by their
    *median time per full batch* over all repetitions (the last, partial
    batch of each run is left out); totals are reported too.
    """
    warm_up(params)
    event_times, prebuilt_times, event_steps, interleaved_times = [], [], [], []
    learn_s = retrieval_s = prebuilt_s = 0.0
    predicts = 0
    samples = batches = 0
    same = True
    size = params["batch_size"]
    for _ in range(repeats if use_cache else 1):
        adapter = instrument(TransformerAdapter(**params))
        timed, wall, coordinator = replay(storage, adapter, start, end, params["context_length"],
                                          use_cache=use_cache)
        samples += adapter.pairs_learned
        batches += len(adapter.batches)
        learn_s += adapter.learn_seconds
        retrieval_s += timed.seconds
        event_times += [t for t, b in zip(adapter.batch_seconds, adapter.batches) if len(b) == size]
        event_steps += [t for t, b in zip(adapter.step_seconds, adapter.batches) if len(b) == size]
        predicts += sum(adapter.predicts_before)
        if not use_cache:
            continue
        tensors, windows = prebuilt_tensors(adapter, coordinator)
        fresh, seconds, full = train_prebuilt(params, tensors, adapter.batches, size)
        prebuilt_s += seconds
        prebuilt_times += full
        interleaved, _, full = train_prebuilt(params, tensors, adapter.batches, size, windows=windows,
                                              predicts_before=adapter.predicts_before)
        interleaved_times += full
        same = same and all(
            torch.equal(a, b) and torch.equal(a, c) for a, b, c in zip(
                adapter.model.state_dict().values(), fresh.model.state_dict().values(),
                interleaved.model.state_dict().values()))
    result = {"samples": samples, "batches": batches, "learn_s": learn_s,
              "retrieval_s": retrieval_s, "retrieval_share": retrieval_s / learn_s,
              "event_samples_per_s": size / float(np.median(event_times)),
              "event_samples_per_s_total": samples / learn_s,
              "event_step_ms": 1000 * float(np.median(event_steps)),
              "event_batch_ms": 1000 * float(np.median(event_times)),
              "predicts_per_step": predicts / batches}
    if use_cache:
        result.update(prebuilt_samples_per_s=size / float(np.median(prebuilt_times)),
                      prebuilt_step_ms=1000 * float(np.median(prebuilt_times)),
                      interleaved_step_ms=1000 * float(np.median(interleaved_times)),
                      interleaved_samples_per_s=size / float(np.median(interleaved_times)),
                      prebuilt_samples_per_s_total=samples / prebuilt_s, same_weights_after=same)
    return result


def bench_river(storage, start, end, context):
    from river import evaluate, metrics

    adapter = instrument(RiverAdapter(batch_size=32))
    timed, wall, coordinator = replay(storage, adapter, start, end, context)
    pairs = adapter.pairs_learned
    # the same features and targets, pre-computed, for River's own loop
    dataset = []
    for batch in adapter.batches:
        data = coordinator.get_inference_data_batch([p.ref for p in batch])
        for p, d in zip(batch, data):
            if d is None or p.kind != "candle":
                continue
            feats = adapter.features_of(d.values, d.columns)
            last = float(d.values[-1, d.columns.index("close")])
            target = float(normalized_target(p.event, p.ref.norm_params, ("close",))[0])
            dataset.append((feats, float(np.clip(target - last, -5, 5))))
    model = RiverAdapter()._build()[0]
    t = time.perf_counter()
    evaluate.progressive_val_score(dataset, model, metrics.MAE())
    river_s = time.perf_counter() - t
    candle_pairs = sum(1 for b in adapter.batches for p in b if p.kind == "candle")
    return {"pairs": pairs, "candle_pairs": candle_pairs, "learn_s": adapter.learn_seconds,
            "retrieval_s": timed.seconds, "adapter_pairs_per_s": pairs / adapter.learn_seconds,
            "progressive_val_items": len(dataset), "progressive_val_s": river_s,
            "progressive_val_items_per_s": len(dataset) / river_s}


def bench_river_like_for_like(storage, start, end, context, *, repeats=3):
    """ettlib's River path against River's own ``progressive_val_score``, doing the same work.

    Both sides: the same candles, the same model (:meth:`RiverAdapter._build`'s
    regressor), the same features from the same normalized windows by the same
    function (:meth:`RiverAdapter.features_of`), one prediction per frame and one
    update per label, each label one candle after its prediction.

    * ettlib: a session replays the candles; an :class:`InferenceLoop` predicts at
      every 1m step and registers the frame; the coordinator matches each candle
      completion to its frame and hands the pair to the adapter (``batch_size=1``:
      it learns as the label arrives, before the next prediction).  Timed: the
      whole ``session.run()`` -- replay, windows, normalization, frames,
      matching, delivery, features, ``predict_one``, ``learn_one``.  Candle pairs
      only (no pivot classifier: River's side has none).
    * River: ``progressive_val_score(moment=..., delay=one candle)`` over a
      generator that, as each item is asked for, does what the inference loop
      and the adapter do per frame to make it: the frame's raw window (recorded
      from the same replay, untimed) normalized by the same
      :class:`~ettlib.coordinator.window_norm.WindowNormalizer`, its features by
      the same :meth:`RiverAdapter.features_of`, and the target in those units
      by the adapter's own arithmetic (the label candle's close, recorded
      untimed).  Its windows are not normalized beforehand: features from raw
      windows are the work both sides must do.

    The two end with the same regressor weights (checked).  Median of ``repeats``
    runs each, alternating, the side that runs first swapped from one pair to
    the next (River first in even pairs): ``ratio`` is the ratio of the two sides' median
    times; ``paired_median`` is the median of the ratios of each alternating
    pair (run k of one side against run k of the other).  On a noisy machine
    the two can differ widely with few repeats (one slow River run moves the
    first, not the second): read both, and trust neither alone when they
    disagree.  ``ratio_with_commit`` also counts the ettlib session's closing
    commit (what makes its deliveries exactly once; a long run commits every
    ``persist_every`` events): River's side has nothing like it.
    """
    from river import evaluate, metrics

    from ettlib.coordinator.window_norm import WindowNormalizer

    recorded, labels = [], {}

    def record(ref, window, predictions):
        recorded.append((ref, np.array(window.values), tuple(window.columns)))

    class Labels(RiverAdapter):  # the completed candles, by open time (it learns nothing)
        learns = False

        def on_candle_completion(self, event, inference_ref) -> None:
            labels[event.timestamp] = event

    replay(storage, Labels(), start, end, context, pivots=(), on_prediction=record)

    shaper = RiverAdapter()
    columns = recorded[0][2]
    normalizer = WindowNormalizer(columns)  # stateless: the loop's, for the loop's columns
    items = []  # (raw window, label close, moment) of every labelled frame
    for ref, values, _ in recorded:
        event = labels.get(ref.target_timestamp)
        if event is None:
            continue
        # the recorded window is the one the frame was made from: the same NormParams again
        assert normalizer(values)[0] == ref.norm_params
        items.append((values, float(event.close), ref.prediction_timestamp))
    clip = shaper.target_clip

    def river_side():
        model = RiverAdapter()._build()[0]
        when = {}

        def dataset():
            for values, close, t in items:
                params, window = normalizer(values)
                x, last = shaper._features_and_close(window, columns)
                # RiverAdapter._learn_candle's target: the close in the frame's units, less the last close
                y = (close - params.price_offset) * (1.0 / params.price_scale) - last
                when[id(x)] = t
                yield x, (clip if y > clip else (-clip if y < -clip else y))

        t0 = time.perf_counter()
        evaluate.progressive_val_score(dataset(), model, metrics.MAE(), moment=lambda x: when[id(x)],
                                       delay=60_000)
        return time.perf_counter() - t0, model

    closing = []

    def ettlib_side():
        adapter = RiverAdapter(batch_size=1)
        _, seconds, _ = replay(storage, adapter, start, end, context, pivots=(), closing=closing)
        return seconds, adapter

    river_s, ettlib_s = [], []
    for k in range(repeats):
        order = (river_side, ettlib_side) if k % 2 == 0 else (ettlib_side, river_side)
        runs = {side: side() for side in order}
        seconds, model = runs[river_side]
        river_s.append(seconds)
        seconds, adapter = runs[ettlib_side]
        ettlib_s.append(seconds)
    committed_s = [run + close for run, close in zip(ettlib_s, closing)]
    ours = adapter.regressor["LinearRegression"].weights
    theirs = model["LinearRegression"].weights
    same = set(ours) == set(theirs) and all(abs(ours[k] - theirs[k]) <= 1e-9 * max(1.0, abs(theirs[k]))
                                            for k in theirs)
    n = len(items)
    river_rate = n / float(np.median(river_s))
    ettlib_rate = adapter.pairs_learned / float(np.median(ettlib_s))
    committed_rate = adapter.pairs_learned / float(np.median(committed_s))
    ratios = [(adapter.pairs_learned / e) / (n / r) for r, e in zip(river_s, ettlib_s)]
    return {"items": n, "pairs": adapter.pairs_learned, "river_items_per_s": river_rate,
            "ettlib_pairs_per_s": ettlib_rate, "ratio": ettlib_rate / river_rate, "same_weights": same,
            "repeats": repeats, "ratios": ratios, "paired_median": float(np.median(ratios)),
            "commit_ms": float(np.median(closing)) * 1e3, "ratio_with_commit": committed_rate / river_rate}


def pair_ratios(like: dict) -> str:
    """The alternating pairs' ratios of :func:`bench_river_like_for_like`, then their median."""
    return " ".join(f"{r:.2f}" for r in like["ratios"]) + f"  ({like['paired_median']:.3f})"


def bench_default_run(path, start, end):
    config = ExperimentConfig(db_path=str(path), start=start, end=end)
    result = run_experiment(config)
    s = result.scores
    return {"wall_s": result.wall_s, "frames": result.metrics["frames"],
            "train_steps": result.metrics["train_steps"],
            "model_mae": s["model"]["mae_close"], "frozen_mae": s["frozen"]["mae_close"],
            "persistence_mae": s["persistence"]["mae_close"],
            "model_mae_first_half": s["model"]["mae_close_first_half"],
            "model_mae_second_half": s["model"]["mae_close_second_half"],
            "model_direction_accuracy": s["model"]["direction_accuracy"],
            "model_pivot_accuracy": s["model"]["pivot_accuracy"],
            "frozen_pivot_accuracy": s["frozen"]["pivot_accuracy"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="less data, under 60 s")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # what experiments use (ExperimentConfig.torch_threads)
    hours = 8 if args.quick else 24
    default_hours = 6 if args.quick else 48
    params = dict(context_length=64, d_model=32, n_heads=4, n_layers=2, d_ff=64, batch_size=32,
                  device="cpu", seed=0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.duckdb"
        with DuckDBStorage(path) as storage:
            days = max(default_hours, hours) / 24 if args.quick else WEEK_MS / 86_400_000
            write_demo_data(storage, SYMBOL, days=days + 0.1, seed=7)
            start = DEFAULT_START
            end = start + hours * 3_600_000 - 60_000
            cached = bench_transformer(storage, start, end, params)
            uncached = bench_transformer(storage, start, end, params, use_cache=False)
            river = bench_river(storage, start, end, params["context_length"])
            like = bench_river_like_for_like(storage, start, end, params["context_length"],
                                             repeats=5 if args.quick else 21)
            week = seed_sized = None
            if not args.quick:  # a longer run: its memo full, one commit inside session.run()
                week = bench_river_like_for_like(storage, start, start + WEEK_MS - 60_000,
                                                 params["context_length"], repeats=5)
                # a 600-candle model: about 2.5 s a step on one thread
                seed_params = dict(params, context_length=600, d_model=64, d_ff=256)
                seed_end = start + (600 + 240) * 60_000
                seed_sized = bench_transformer(storage, start, seed_end, seed_params, repeats=1)
        default = bench_default_run(path, DEFAULT_START, DEFAULT_START + default_hours * 3_600_000 - 60_000)

    ratio = cached["event_samples_per_s"] / cached["interleaved_samples_per_s"]
    offline_ratio = cached["event_samples_per_s"] / cached["prebuilt_samples_per_s"]
    total_ratio = cached["event_samples_per_s_total"] / cached["prebuilt_samples_per_s_total"]
    seed_ratio = seed_offline = None
    if seed_sized is not None:
        seed_ratio = seed_sized["event_samples_per_s"] / seed_sized["interleaved_samples_per_s"]
        seed_offline = seed_sized["event_samples_per_s"] / seed_sized["prebuilt_samples_per_s"]
    rows = [
        ("transformer samples (pairs learned, 3 runs)", f"{cached['samples']} in {cached['batches']} batches"),
        ("event-driven samples/s (cache)", f"{cached['event_samples_per_s']:.0f}"),
        (f"pre-built samples/s, the run's {cached['predicts_per_step']:.1f} predictions before each step",
         f"{cached['interleaved_samples_per_s']:.0f}"),
        ("event-driven / pre-built (median batch)", f"{ratio:.3f}  (target >= 0.9)"),
        ("pre-built samples/s, back to back (offline loop)", f"{cached['prebuilt_samples_per_s']:.0f}"),
        ("event-driven / offline loop (median batch; totals)", f"{offline_ratio:.3f}; {total_ratio:.3f}"),
        ("median ms: event batch / its step / pre-built step / offline step",
         f"{cached['event_batch_ms']:.1f} / {cached['event_step_ms']:.1f} / "
         f"{cached['interleaved_step_ms']:.1f} / {cached['prebuilt_step_ms']:.1f}"),
        ("same weights after all three", str(cached["same_weights_after"])),
        *([] if seed_sized is None else [
            (f"600-candle model (context 600, d64): {seed_sized['samples']} samples, batch ms "
             "event / pre-built / offline",
             f"{seed_sized['event_batch_ms']:.0f} / {seed_sized['interleaved_step_ms']:.0f} / "
             f"{seed_sized['prebuilt_step_ms']:.0f}"),
            ("600-candle model: event-driven / pre-built; / offline", f"{seed_ratio:.3f}; {seed_offline:.3f}"),
        ]),
        ("retrieval share of a step (cache)", f"{cached['retrieval_share']:.4f}  (target <= 0.1)"),
        ("retrieval share of a step (DuckDB)", f"{uncached['retrieval_share']:.4f}"),
        ("event-driven samples/s (DuckDB)", f"{uncached['event_samples_per_s']:.0f}"),
        ("river adapter pairs/s (event-driven)", f"{river['adapter_pairs_per_s']:.0f}"),
        ("river progressive_val_score items/s", f"{river['progressive_val_items_per_s']:.0f}"),
        (f"like for like ({like['items']} frames): ettlib River path pairs/s / progressive_val_score "
         "items/s", f"{like['ettlib_pairs_per_s']:.0f} / {like['river_items_per_s']:.0f}"),
        ("ettlib River path / progressive_val_score (same weights after)",
         f"{like['ratio']:.3f}  (target >= 0.8; {like['same_weights']})"),
        (f"  each of the {like['repeats']} alternating pairs of runs (their median)",
         pair_ratios(like)),
        ("  with the session's closing commit (ms; ratio)",
         f"{like['commit_ms']:.1f}; {like['ratio_with_commit']:.3f}"),
        *([] if week is None else [
            (f"  over 7 days ({week['items']} frames; one commit inside the run), each pair of runs",
             f"{week['ratio']:.3f}: {pair_ratios(week)}"),
        ]),
        (f"default run: {default_hours} h of 1m, wall s", f"{default['wall_s']:.1f}"),
        ("default run: MAE model / frozen / persistence",
         f"{default['model_mae']:.4f} / {default['frozen_mae']:.4f} / {default['persistence_mae']:.4f}"),
        ("default run: model MAE 1st / 2nd half",
         f"{default['model_mae_first_half']:.4f} / {default['model_mae_second_half']:.4f}"),
        ("default run: pivot accuracy model / frozen",
         f"{default['model_pivot_accuracy']:.3f} / {default['frozen_pivot_accuracy']:.3f}"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"bench_training ({'quick' if args.quick else 'full'}; 1 torch thread; "
          f"model d32 x2 layers, context 64, batch 32; {hours} h of 1m candles)")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    figures = {
        "event_driven_vs_prebuilt_ratio": round(ratio, 4),
        "event_driven_vs_offline_ratio": round(offline_ratio, 4),
        "event_driven_vs_offline_ratio_totals": round(total_ratio, 4),
        "retrieval_share_of_step": round(cached["retrieval_share"], 5),
        "retrieval_share_uncached": round(uncached["retrieval_share"], 5),
        "event_samples_per_s": round(cached["event_samples_per_s"], 1),
        "prebuilt_samples_per_s": round(cached["prebuilt_samples_per_s"], 1),
        "samples": cached["samples"],
        "event_batch_ms": round(cached["event_batch_ms"], 2),
        "event_step_ms": round(cached["event_step_ms"], 2),
        "prebuilt_step_ms": round(cached["prebuilt_step_ms"], 2),
        "prebuilt_interleaved_step_ms": round(cached["interleaved_step_ms"], 2),
        "seed_sized_event_driven_vs_prebuilt_ratio": seed_ratio and round(seed_ratio, 4),
        "seed_sized_event_driven_vs_offline_ratio": seed_offline and round(seed_offline, 4),
        "predicts_per_step": round(cached["predicts_per_step"], 2),
        "river_adapter_pairs_per_s": round(river["adapter_pairs_per_s"], 1),
        "river_progressive_val_items_per_s": round(river["progressive_val_items_per_s"], 1),
        "river_path_vs_progressive_val_ratio": round(like["ratio"], 4),
        "river_path_paired_median_ratio": round(like["paired_median"], 4),
        "river_path_pairs_per_s": round(like["ettlib_pairs_per_s"], 1),
        "river_progressive_val_delayed_items_per_s": round(like["river_items_per_s"], 1),
        "river_like_for_like_same_weights": like["same_weights"],
        "river_path_with_commit_vs_progressive_val_ratio": round(like["ratio_with_commit"], 4),
        "river_path_commit_ms": round(like["commit_ms"], 2),
        "river_path_7d_vs_progressive_val_ratio": week and round(week["ratio"], 4),
        "river_path_7d_paired_median_ratio": week and round(week["paired_median"], 4),
        "default_run_wall_s": round(default["wall_s"], 2),
        "default_run_hours": default_hours,
        "default_model_mae": default["model_mae"],
        "default_frozen_mae": default["frozen_mae"],
        "default_persistence_mae": default["persistence_mae"],
        "quick": args.quick,
    }
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
