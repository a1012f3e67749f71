"""Profile the like-for-like River path (bench_training.bench_river_like_for_like's ettlib side).

``PYTHONPATH=. python benchmarks/prof_river.py [hours] [sort]``: times a few runs, then
cProfiles ``session.run()`` alone (the timed region).
"""
import sys, time, tempfile, cProfile, pstats
sys.path.insert(0, "benchmarks")
from pathlib import Path
import bench_training as bt
from ettlib.store import DuckDBStorage
from ettlib.store.demo import DEFAULT_START, write_demo_data
from ettlib.training.adapters import RiverAdapter

hours = int(sys.argv[1]) if len(sys.argv) > 1 else 24
sort = sys.argv[2] if len(sys.argv) > 2 else "tottime"
with tempfile.TemporaryDirectory() as tmp:
    path = Path(tmp) / "b.duckdb"
    with DuckDBStorage(path) as storage:
        write_demo_data(storage, bt.SYMBOL, days=hours / 24 + 0.1, seed=7)
        start = DEFAULT_START
        end = start + hours * 3_600_000 - 60_000
        for i in range(3):
            a = RiverAdapter(batch_size=1)
            _, s, _ = bt.replay(storage, a, start, end, 64, pivots=())
            print("pairs", a.pairs_learned, "us/pair", round(s / a.pairs_learned * 1e6, 1))
        pr = cProfile.Profile()
        real = bt.Workbench.session

        def session(self, *a, **k):
            s = real(self, *a, **k)
            run = s.run

            def profiled(*a, **k):
                pr.enable()
                try:
                    return run(*a, **k)
                finally:
                    pr.disable()
            s.run = profiled
            return s
        bt.Workbench.session = session
        bt.replay(storage, RiverAdapter(batch_size=1), start, end, 64, pivots=())
        pstats.Stats(pr).sort_stats(sort).print_stats(45)
