"""Where the like-for-like River path's time goes, per pair (µs), measured by subtraction.

``PYTHONPATH=. python benchmarks/breakdown_river.py [hours]``.  Each line is the
fastest of 7 ``session.run()`` timings (the benchmark's timed region) with one more part switched on:
replay only; + the inference loop with a constant model; + a River adapter that predicts
(features, predict_one) but learns nothing; + matching and delivery; the whole path.  Then River's
own ``predict_one`` + ``learn_one`` on the same features, alone; River's ``progressive_val_score``
(``moment``, one-candle ``delay``) on the same raw windows, normalized as the loop does, with the
real model and with a model that does nothing, and ettlib's whole path with that null model: each
side's overhead without River's learner.  Last, River's own ``predict_one`` and ``learn_one``
timed call by call inside each side (the same wrapper on both; median of 7 alternating runs): the
same calls on the same features, in two surroundings; and, from the same runs and from runs with
the timed null model, each side's time *around* River's calls (the run's time less the timed calls,
per pair), real model against null: what each side's own work costs when River's learner runs
between its steps, against when nothing does.  Last, the whole path over the first 2 h and over
the whole range (fastest of 7 each, alternating), split into what a ``session.run()`` costs once
(planning, the span's read, the collector's pass after the replay's chunk) and what each pair
costs at the margin.
"""
import sys, time, tempfile
sys.path.insert(0, "benchmarks")
from pathlib import Path
import numpy as np
import bench_training as bt
from ettlib.store import DuckDBStorage
from ettlib.store.schema import OHLCV_COLUMNS
from ettlib.store.demo import DEFAULT_START, write_demo_data
from ettlib.training.adapters import RiverAdapter
from ettlib.training.adapters.base import Prediction
from ettlib.training.inference_loop import InferenceLoop
from ettlib.workbench import Workbench
from ettlib.coordinator.window_norm import WindowNormalizer

hours = int(sys.argv[1]) if len(sys.argv) > 1 else 24


class Constant(RiverAdapter):
    def predict(self, window, columns=None):
        return Prediction("HOLD", (0.0,), 1.0 / 3.0)


class NoLearn(RiverAdapter):
    learns = False


from river import base, evaluate, metrics  # noqa: E402


class Null(base.Regressor):
    """A River regressor that does nothing: what is left is the path around it."""

    def learn_one(self, x, y):
        """Learns nothing."""

    def predict_one(self, x):
        return 0.0


class NullRiver(RiverAdapter):
    def _build(self):
        return Null(), Null()


class NullNoLearn(NullRiver):
    learns = False


class CallTimer(base.Regressor):
    """A River regressor around ``model`` that adds up the seconds of its ``learn_one`` and ``predict_one``."""

    def __init__(self, model):
        self.model = model
        self.learn_s = self.predict_s = 0.0
        self.learned = self.predicted = 0

    def learn_one(self, x, y):
        """``model.learn_one``, timed."""
        t = time.perf_counter()
        self.model.learn_one(x, y)
        self.learn_s += time.perf_counter() - t
        self.learned += 1

    def predict_one(self, x):
        t = time.perf_counter()
        y = self.model.predict_one(x)
        self.predict_s += time.perf_counter() - t
        self.predicted += 1
        return y

    def per_call_us(self) -> tuple[float, float]:
        return self.learn_s / self.learned * 1e6, self.predict_s / self.predicted * 1e6


class TimedRiver(RiverAdapter):
    def _build(self):
        regressor, classifier = super()._build()
        return CallTimer(regressor), classifier


class TimedNull(RiverAdapter):
    def _build(self):
        return CallTimer(Null()), Null()


def run(storage, start, end, adapter, loop=True, attach=True):
    session = Workbench(storage).session(bt.SYMBOL, start, end, columns=OHLCV_COLUMNS, pivot_lookback=5,
                                         warmup=65, use_cache=True)
    if attach:
        adapter.attach(session.coordinator, bt.SYMBOL, bt.TF, ())
    if loop:
        InferenceLoop(adapter, session, symbol=bt.SYMBOL, timeframe=bt.TF, context_length=64).attach()
    t = time.perf_counter()
    session.run()
    adapter.flush()
    wall = time.perf_counter() - t
    session.close()
    return wall


with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "b.duckdb"
    with DuckDBStorage(path) as storage:
        write_demo_data(storage, bt.SYMBOL, days=hours / 24 + 0.1, seed=7)
        start = DEFAULT_START
        end = start + hours * 3_600_000 - 60_000
        cases = [("replay only", lambda: (RiverAdapter(batch_size=1), False, False)),
                 ("+ loop, constant model", lambda: (Constant(batch_size=1), True, False)),
                 ("+ River predict (features, predict_one)", lambda: (NoLearn(batch_size=1), True, False)),
                 ("+ matching, delivery (no learning)", lambda: (NoLearn(batch_size=1), True, True)),
                 ("whole path", lambda: (RiverAdapter(batch_size=1), True, True)),
                 ("null model: + predict (features)", lambda: (NullNoLearn(batch_size=1), True, False)),
                 ("null model: + matching, delivery", lambda: (NullNoLearn(batch_size=1), True, True)),
                 ("null model: whole path", lambda: (NullRiver(batch_size=1), True, True))]
        times = {name: [] for name, _ in cases}
        run(storage, start, end, RiverAdapter(batch_size=1))
        for _ in range(7):
            for name, make in cases:
                a, loop, attach = make()
                times[name].append(run(storage, start, end, a, loop, attach))
        a = RiverAdapter(batch_size=1)
        run(storage, start, end, a)
        n = a.pairs_learned
        prev = 0.0
        for name, _ in cases:
            us = float(np.min(times[name])) / n * 1e6
            if name.startswith("null model: + predict"):
                prev = float(np.min(times["+ loop, constant model"])) / n * 1e6
            print(f"{name:45s} {us:7.1f} µs/pair  (+{us - prev:5.1f})")
            prev = us
        # River alone on the features the path computed
        feats = [m[1] for m in a.memo.values()]
        core = []
        for _ in range(5):
            model = RiverAdapter()._build()[0]
            t = time.perf_counter()
            for x in feats:
                model.predict_one(x)
                model.learn_one(x, 0.1)
            core.append(time.perf_counter() - t)
        print(f"{'River predict_one + learn_one alone':45s} {float(np.min(core)) / len(feats) * 1e6:7.1f} µs/item")
        # both sides with a model that does nothing: what is left is each side's own overhead
        windows = []  # raw, as the loop reads them: River's side normalizes them as the loop does
        record = lambda ref, window, predictions: windows.append(
            (np.array(window.values), window.columns, ref.prediction_timestamp))
        session = Workbench(storage).session(bt.SYMBOL, start, end, columns=OHLCV_COLUMNS, pivot_lookback=5,
                                             warmup=65)
        InferenceLoop(Constant(), session, symbol=bt.SYMBOL, timeframe=bt.TF, context_length=64,
                      on_prediction=record).attach()
        session.run()
        session.close()
        shaper = RiverAdapter()

        def river(model):
            when = {}
            normalizer = WindowNormalizer(windows[0][1])

            def dataset():
                for values, columns, t in windows[:-1]:
                    x = shaper.features_of(normalizer(values)[1], columns)
                    when[id(x)] = t
                    yield x, 0.1

            t0 = time.perf_counter()
            evaluate.progressive_val_score(dataset(), model, metrics.MAE(), moment=lambda x: when[id(x)],
                                           delay=60_000)
            return time.perf_counter() - t0

        real, null = [], []
        for _ in range(7):
            real.append(river(RiverAdapter()._build()[0]))
            null.append(river(Null()))
        k = len(windows) - 1
        print(f"{'River progressive_val_score, real model':45s} {float(np.min(real)) / k * 1e6:7.1f} µs/item")
        print(f"{'River progressive_val_score, null model':45s} {float(np.min(null)) / k * 1e6:7.1f} µs/item")
        inside = {"ettlib's path": [], "progressive_val_score": []}
        around = {(side, model): [] for side in inside for model in ("real", "null")}

        def around_us(wall, timer, items):  # the run's time less River's timed calls, per pair
            return (wall - timer.learn_s - timer.predict_s) / items * 1e6

        for _ in range(7):
            for model, adapter, make in (("real", TimedRiver, lambda: RiverAdapter()._build()[0]),
                                         ("null", TimedNull, Null)):
                a = adapter(batch_size=1)
                wall = run(storage, start, end, a)
                around["ettlib's path", model].append(around_us(wall, a.regressor, a.pairs_learned))
                timer = CallTimer(make())
                wall = river(timer)
                around["progressive_val_score", model].append(around_us(wall, timer, k))
                if model == "real":
                    inside["ettlib's path"].append(a.regressor.per_call_us())
                    inside["progressive_val_score"].append(timer.per_call_us())
        for name, calls in inside.items():
            learn, predict = (float(np.median([c[i] for c in calls])) for i in (0, 1))
            print(f"{'River calls inside ' + name:45s} learn_one {learn:5.1f}, predict_one {predict:4.1f} µs/call")
        for name in inside:
            real, null = (float(np.median(around[name, m])) for m in ("real", "null"))
            print(f"{'around them in ' + name:45s} {real:5.1f} real model, {null:5.1f} null  (+{real - null:4.1f}) µs/pair")
        if hours > 2:  # once per session.run(), and per pair at the margin
            short_end = start + 2 * 3_600_000 - 60_000
            best = {short_end: (float("inf"), 0), end: (float("inf"), 0)}
            for _ in range(7):
                for e in best:
                    a = RiverAdapter(batch_size=1)
                    wall = run(storage, start, e, a)
                    best[e] = (min(best[e][0], wall), a.pairs_learned)
            (s_short, n_short), (s_full, n_full) = best[short_end], best[end]
            margin = (s_full - s_short) / (n_full - n_short)
            print(f"{'whole path: once per session.run(); per pair':45s} {(s_short - margin * n_short) * 1e3:5.2f} ms;"
                  f" {margin * 1e6:5.1f} µs/pair at the margin ({n_short} and {n_full} pairs)")
