"""The Workbench: the one entry point -- a store, and wired replay sessions over it.

::

    from ettlib import Workbench

    wb = Workbench()                                   # data/ett.duckdb, the embedded default
    s = wb.session(["ETH/USDT"], start="2024-01-01", end="2024-01-02",
                   timeframes=["5m", "15m", "1h"], pivot_levels=3)
    s.coordinator.subscribe_to_candle_completion(adapter, "ETH/USDT", "1m")
    s.on_inference_step("ETH/USDT", "1m", predict)   # before or during the run
    s.run()                                            # or s.step(n), s.seek(t), s.events()

A :class:`Workbench` opens one store (:class:`~ettlib.store.DuckDBStorage`)
and hands out :class:`~ettlib.session.Session` s, each of which owns its
provider, engine, clock, windows and coordinator (see :mod:`ettlib.session`).
:meth:`Workbench.run` runs a whole experiment
(:func:`~ettlib.experiment.runner.run_experiment`) on the same store.

Examples
--------
>>> from ettlib.store.demo import write_demo_data
>>> with Workbench(":memory:") as wb:
...     _ = write_demo_data(wb.store, symbol="ETH/USDT", days=1)
...     wb.symbols(), wb.timeframes("ETH/USDT")
(['ETH/USDT'], ['1m'])
"""

from __future__ import annotations

from pathlib import Path

from ettlib.store import DEFAULT_PATH, DuckDBStorage

__all__ = ["Workbench"]


class Workbench:
    """A store and the replay sessions over it.

    Parameters
    ----------
    path
        The DuckDB file (default ``data/ett.duckdb``, relative to the working
        directory), ``":memory:"``, a Parquet lake (a folder, or a URL such
        as ``s3://bucket/prefix``: :mod:`ettlib.store.lake`, read-only), or
        an open :class:`~ettlib.store.DuckDBStorage` (used as it is, not
        closed here).
    read_only
        Open the file without taking the write lock, so that other processes
        (``ett run``, ``ett report``, a sweep, another kernel) may read it at
        the same time.  Default: read-only when the file exists, for
        writing when it is new (or ``:memory:``).  Sessions keep their
        results in memory or in a results file of their own, and
        :meth:`run` writes each run's results to its own file, so reading
        is all a workbench needs; only writing candles (ingest, resample,
        indicators, pivots) needs ``read_only=False``, and the file to
        itself.
    storage_options
        Options of a lake's fsspec filesystem (endpoint, credentials...).
    """

    def __init__(self, path: str | Path | DuckDBStorage | None = None, *, read_only: bool | None = None,
                 storage_options: dict | None = None):
        if isinstance(path, DuckDBStorage):
            self.store, self._owned = path, False
        else:
            from ettlib.store.lake import open_candles

            path = DEFAULT_PATH if path is None else path
            if read_only is None:
                read_only = Path(path).is_file()
            self.store = open_candles(path, read_only=read_only, storage_options=storage_options)
            self._owned = True
        self.path = self.store.path

    # -- what the store holds ----------------------------------------------------------

    def symbols(self) -> list[str]:
        """Symbols with stored candles, sorted."""
        return self.store.symbols()

    def timeframes(self, symbol: str) -> list[str]:
        """Timeframes stored for ``symbol``, shortest first."""
        return self.store.timeframes(symbol)

    # -- sessions and runs ---------------------------------------------------------------

    def session(self, symbols, start=None, end=None, **options):
        """A wired replay session of ``symbols`` over ``[start, end]`` (see :class:`~ettlib.session.Session`).

        ``options`` are the session's: ``timeframes``, ``base_timeframe``,
        ``pivot_levels``, ``pivot_lookback``, ``run_id``, ``results``, ...
        """
        from ettlib.session import Session

        return Session(self.store, symbols, start, end, **options)

    def run(self, config, **options):
        """Run an experiment on this store (:func:`~ettlib.experiment.runner.run_experiment`).

        ``config``'s ``db_path`` is this workbench's file; ``options`` go to
        ``run_experiment`` (``adapter=``, ``run_id=``, ``resume=``, ...).
        """
        from ettlib.experiment.runner import ExperimentConfig, run_experiment

        if not isinstance(config, ExperimentConfig):
            config = ExperimentConfig.from_dict({**dict(config), "db_path": self.path})
        else:
            config = config.replace(db_path=self.path)
        return run_experiment(config, storage=self.store, **options)

    # -- life cycle ----------------------------------------------------------------------

    def close(self) -> None:
        """Close the store (when this workbench opened it)."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> Workbench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workbench({self.path!r})"
