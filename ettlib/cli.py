"""The ``ett`` command line: data, replay, experiment runs, reports, sweeps.

Every sub-command is a thin wrapper over a library function; errors that
ettlib raises (:class:`~ettlib.errors.EttError`) are printed as one line and
exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ettlib.errors import EttError, StoreOpenError
from ettlib.timeframes import TIMEFRAMES

__all__ = ["main", "DEFAULT_DB", "parse_overrides", "configure_sweep_parser"]

#: The embedded database every command uses unless told otherwise.
DEFAULT_DB = Path("data") / "ett.duckdb"


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", default=DEFAULT_DB,
                        help="DuckDB file, or a Parquet lake to read (default: %(default)s)")


def _cmd_data_demo(args) -> int:
    from ettlib.store.demo import write_demo_data
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        report = write_demo_data(storage, symbol=args.symbol, days=args.days, seed=args.seed)
    print(f"{args.db}: {_describe(report)}")
    return 0


def _cmd_data_ingest(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        report = storage.ingest(
            args.file, args.symbol, args.timeframe, replace=args.replace, format=args.format,
            allow_sparse=args.allow_sparse,
        )
    print(f"{args.db}: {_describe(report)}")
    return 0


def _cmd_data_resample(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        for timeframe in args.to:
            result = storage.resample(args.symbol, args.base, timeframe)
            print(f"{args.db}: {args.base} -> {_describe(result)}")
    return 0


def _cmd_data_indicators(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        rows = storage.update_indicators(args.symbol, args.timeframe)
    print(f"{args.symbol} {args.timeframe}: indicators recomputed on {rows} candles")
    return 0


def _cmd_data_pivots(args) -> int:
    from ettlib.replay.pivots import detect_pivots
    from ettlib.store.pivot_points import store_pivots
    from ettlib.replay import resolve_base_timeframe
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        # default: the finest stored timeframe; a timeframe with no candles names what is stored
        args.timeframe = resolve_base_timeframe(storage, [args.symbol], args.timeframe)
        candles = storage.read_candles(args.symbol, args.timeframe, columns=("high", "low"))
        table = detect_pivots(
            candles.timestamps, candles.column("high"), candles.column("low"),
            args.timeframe, n=args.n, levels=args.levels,
        )
        added = store_pivots(storage.con, args.symbol, args.timeframe, table, n=args.n)
    print(f"{args.symbol} {args.timeframe}: {len(table)} pivots with n={args.n}, {added} new in pivot_points")
    return 0


def _parse_time(text: str) -> int:
    """:func:`ettlib.times.to_ms` for argparse (its error as argparse's)."""
    from ettlib.times import to_ms

    try:
        return to_ms(text)
    except EttError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_replay(args) -> int:
    """``ett replay``: replay through a session (the fast path) and count the events by kind and timeframe."""
    from collections import Counter

    from ettlib.replay.feed import default_timeframes, resolve_base_timeframe
    from ettlib.replay.events import pivot_types_up_to
    from ettlib.workbench import Workbench

    _require_file(args.db)
    with Workbench(args.db, read_only=True) as wb:
        base = resolve_base_timeframe(wb.store, args.symbols, args.base, args.timeframes or ())
        timeframes = default_timeframes(base)[1:] if args.timeframes is None else args.timeframes
        session = wb.session(args.symbols, args.start, args.end, base_timeframe=base,
                             timeframes=timeframes, pivot_levels=args.levels, progress=True)
        counts: Counter = Counter()
        for symbol in session.symbols:
            for tf in session.timeframes:
                session.subscribe_candle_completion(lambda e: counts.update([("candle", e.timeframe)]), symbol, tf)
            for tf in session.pivot_timeframes:
                session.subscribe_pivot_events(lambda e: counts.update([("pivot", e.timeframe)]), symbol, tf,
                                               pivot_types_up_to(args.levels))
        session.run()
        session.close()
    for (kind, tf), count in sorted(counts.items(), key=lambda kv: (kv[0][0] != "candle", TIMEFRAMES[kv[0][1]])):
        print(f"{kind + ' ' + tf:<14} {count:>10}")
    return 0


def _cmd_data_export(args) -> int:
    from ettlib.store import DuckDBStorage
    from ettlib.store.lake import export_parquet

    _require_file(args.db)
    with DuckDBStorage(args.db, read_only=True) as storage:
        report = export_parquet(storage, args.parquet, symbols=args.symbols or None)
    print(f"{args.db}: {report.rows} candles of {', '.join(report.symbols)} -> {report.root}")
    return 0


def _require_file(db) -> None:
    from ettlib.store.lake import is_lake

    if not is_lake(db) and not Path(db).exists():
        raise StoreOpenError(f"{db}: no such database; create one with `ett data demo` or `ett data ingest`")


def _cmd_data_info(args) -> int:
    from ettlib.store.lake import open_candles

    _require_file(args.db)
    with open_candles(args.db, read_only=True) as storage:
        rows = storage.con.execute(
            "SELECT symbol, timeframe, count(*), min(timestamp), max(timestamp) "
            "FROM ohlcv_data GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    if not rows:
        print(f"{args.db}: no candles")
    for symbol, timeframe, count, first, last in rows:
        print(f"{symbol:<12} {timeframe:>4} {count:>9} candles  {_iso(first)} .. {_iso(last)}")
    return 0


# -- ett run ---------------------------------------------------------------


def parse_overrides(pairs) -> dict:
    """``["key=value", ...]`` -> dict; each value read as ``ett report -p`` reads one.

    That is :func:`ettlib.reports.parameters.parse_value`: JSON when it
    parses (and ``None``/``True``/``False``), else the text itself, so
    ``007`` stays ``"007"``.

    >>> parse_overrides(["context_length=32", "symbols=[\\"A/B\\"]", "adapter=river", "run_name=007"])
    {'context_length': 32, 'symbols': ['A/B'], 'adapter': 'river', 'run_name': '007'}
    """
    from ettlib.errors import ConfigError
    from ettlib.reports.parameters import parse_value

    out = {}
    for pair in pairs or ():
        key, sep, value = str(pair).partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"expected key=value, got {pair!r}")
        out[key.strip()] = parse_value(value)
    return out


def _add_run_arguments(parser) -> None:
    parser.add_argument("config", nargs="?", help="experiment config file (.json, .yaml)")
    parser.add_argument("--db", dest="db_path", help="candle database (overrides the config's db_path)")
    parser.add_argument("--adapter", help="adapter name (transformer, river, persistence, frozen)")
    parser.add_argument("--symbol", dest="symbols", action="append", help="symbol (repeatable)")
    parser.add_argument("--start", help="start (epoch ms or ISO date, UTC)")
    parser.add_argument("--end", help="end (epoch ms or ISO date, UTC)")
    parser.add_argument("--seed", type=int)
    parser.add_argument("--results-db", dest="results_db", help="write results to this file")
    parser.add_argument("-p", "--param", action="append", default=[], metavar="KEY=VALUE",
                        help="any ExperimentConfig field; VALUE is JSON when it parses")
    parser.add_argument("--run-id", help="key of the run's rows (default: run_name or 'run' + a random suffix)")
    parser.add_argument("--resume", metavar="RUN_ID",
                        help="continue a run that was killed or interrupted (Ctrl-C), from its last commit "
                             "(its config is read from the runs table; --db/--results-db say where)")
    parser.add_argument("--persist-every", type=int, default=10_000, metavar="N",
                        help="commit frames, pairs and the run's state every N events (default: %(default)s)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print the metrics as JSON")


def _cmd_run(args) -> int:
    """``ett run``: 0, or 130 on Ctrl-C (after printing how to continue).

    With ``--resume`` and no config file, the config is the run's stored
    one, with the flags given on top (run_experiment refuses changes other
    than locations).
    """
    import json

    from ettlib.coordinator import new_run_id
    from ettlib.errors import ConfigError
    from ettlib.times import to_ms_or_none
    from ettlib.experiment.config import ExperimentConfig
    from ettlib.experiment.runner import RunInterrupted, run_experiment
    from ettlib.experiment.runs import load_run_config

    values = dict(db_path=args.db_path, adapter=args.adapter, symbols=args.symbols,
                  start=to_ms_or_none(args.start, "start"), end=to_ms_or_none(args.end, "end"),
                  seed=args.seed, results_db=args.results_db)
    values = {k: v for k, v in values.items() if v is not None}
    overrides = parse_overrides(args.param)
    if args.resume and args.run_id and args.run_id != args.resume:
        raise ConfigError(f"--run-id {args.run_id!r} and --resume {args.resume!r} name different runs")
    if args.resume and not args.config:
        where = args.results_db or args.db_path or ExperimentConfig().db_path
        merged = load_run_config(where, args.resume).to_dict()
    else:
        merged = ExperimentConfig.from_file(args.config).to_dict() if args.config else {}
    config = ExperimentConfig.from_dict({**merged, **values, **overrides})
    run_id = args.resume or args.run_id or new_run_id(config.run_name or "run")
    try:  # the run is named once its checks passed: a refused one has no id
        result = run_experiment(config, progress=not args.no_progress, run_id=run_id,
                                resume=bool(args.resume), persist_every=args.persist_every,
                                announce=lambda line: print(f"ett run: {line}", file=sys.stderr, flush=True))
    except RunInterrupted:
        where = f" --db {config.db_path}" if not config.results_db else f" --results-db {config.results_db}"
        print(f"ett run: interrupted; continue with: ett run --resume {run_id}{where}",
              file=sys.stderr, flush=True)
        return 130  # the shell's code for SIGINT
    print(json.dumps(result.metrics, sort_keys=True) if args.json else result.summary())
    return 0


# -- ett sweep -------------------------------------------------------------


def configure_sweep_parser(parser, default_db: Path | None = None) -> None:
    """Add ``ett sweep`` arguments to an argparse parser; sets ``func``."""
    from ettlib.experiment.sweep import EXECUTORS
    from ettlib.reports import EXPERIMENT_NOTEBOOK

    parser.add_argument("notebook", nargs="?", type=Path, default=EXPERIMENT_NOTEBOOK,
                        help="notebook to run (default: %(default)s)")
    parser.add_argument("--grid", type=Path, required=True,
                        help="YAML/JSON: a grid mapping, a list of parameter sets, or {base, grid, runs}")
    parser.add_argument("--executor", choices=EXECUTORS, default="local")
    parser.add_argument("--scheduler", dest="scheduler_address", help="Dask scheduler address (dask executor)")
    parser.add_argument("--workers", type=int, default=2, help="local worker processes (default: %(default)s)")
    parser.add_argument("--output-dir", type=Path, help="default: reports/sweeps/NAME")
    parser.add_argument("--name", help="sweep name (default: NOTEBOOK-sweep)")
    parser.add_argument("--db", default=default_db,
                        help="candles: a DuckDB file, a Parquet lake folder or URL; each run reads them "
                        "read-only (as db_path)" + (" (default: %(default)s)" if default_db else ""))
    parser.add_argument("--results-dir", type=Path,
                        help="where each run's results file lands (default: the store's runs folder, "
                        "e.g. data/ett.runs; for a URL, OUTPUT_DIR/runs)")
    parser.add_argument("--show-code", action="store_true")
    parser.add_argument("--no-compare", dest="compare", action="store_false", help="skip the comparison report")
    parser.set_defaults(func=_cmd_sweep)


def _cmd_sweep(args) -> int:
    """``ett sweep``: 0, or 1 when a run failed (the summary says which)."""
    from ettlib.experiment.grids import load_parameter_sets
    from ettlib.experiment.sweep import run_sweep
    from ettlib.reports import with_database

    sets = [with_database(args.notebook, p, args.db) for p in load_parameter_sets(args.grid)]
    result = run_sweep(
        args.notebook, sets, executor=args.executor, workers=args.workers,
        scheduler_address=args.scheduler_address, output_dir=args.output_dir, name=args.name,
        database=args.db, results_dir=args.results_dir, show_code=args.show_code,
        compare=args.compare, progress=True,
    )
    print(result.summary())
    return 1 if result.failures else 0


def _describe(report) -> str:
    """One line for an :class:`~ettlib.store.IngestReport`."""
    span = f" {_iso(report.first)} .. {_iso(report.last)}" if report.first is not None else ""
    return (
        f"{report.symbol} {report.timeframe}: {report.rows_read} read, {report.rows_added} added, "
        f"{report.rows_unchanged} unchanged, {report.rows_replaced} replaced, "
        f"{report.gaps} gaps ({report.missing_candles} candles missing){span}"
    )


def _iso(ms: int) -> str:
    from ettlib.times import format_ms

    return format_ms(ms, seconds=False)


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors on one line, ``ett: error: ...``, and a pointer to ``--help``."""

    def error(self, message: str):
        self.exit(2, f"ett: error: {self.prog}: {message} (see `{self.prog} --help`)\n")


# -- ett report ------------------------------------------------------------


def configure_report_parser(parser, default_db: Path | None = None) -> None:
    """Add ``ett report`` arguments to an argparse parser; sets ``func``."""
    from ettlib.reports import EXAMPLE_DIR, EXAMPLE_REPORT_NAME, EXPERIMENT_NOTEBOOK

    parser.add_argument("notebook", nargs="?", type=Path, default=EXPERIMENT_NOTEBOOK,
                        help="notebook to run (default: %(default)s)")
    parser.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("NAME", "VALUE"),
                        default=[], help="a parameter; VALUE is JSON when it parses (also None, True, "
                        "False), else text: 007 stays '007', lists are JSON ('[\"ETH/USDT\"]'); repeatable")
    parser.add_argument("-f", "--parameters-file", type=Path, help="YAML or JSON file of parameters")
    parser.add_argument("--db", default=default_db,
                        help="candles (a DuckDB file, a Parquet lake folder or URL), passed as the "
                        "notebook's db_path parameter"
                        + (" (default: %(default)s)" if default_db else ""))
    parser.add_argument("-o", "--output", type=Path,
                        help="the HTML file to write (default: reports/<notebook>-<run id>.html)")
    parser.add_argument("--output-dir", type=Path, help="default: reports (with --example: reports/example)")
    parser.add_argument("--name", help="base name of the report files (default: <notebook>-<run id>)")
    parser.add_argument("--show-code", action="store_true", help="show code cells in the HTML")
    parser.add_argument("--kernel", dest="kernel_name", help="Jupyter kernel name (default: the notebook's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar (cells done) on stderr")
    parser.add_argument("--example", action="store_true",
                        help=f"regenerate {EXAMPLE_DIR / EXAMPLE_REPORT_NAME}.html from the notebook "
                        "(on fresh demo data unless --db or -p db_path is given)")
    parser.set_defaults(func=_cmd_report, _default_db=default_db)


def _cmd_report(args) -> int:
    from ettlib.errors import ConfigError
    from ettlib.reports import (EXAMPLE_DIR, parse_cli_parameters, regenerate_example_report, run_report,
                                with_database)

    parameters = parse_cli_parameters([tuple(p) for p in args.parameter], args.parameters_file)
    if args.output is not None and (args.name or args.output_dir):
        raise ConfigError("--output names the file: give it without --name or --output-dir")
    print(f"ett report: running {args.notebook}", file=sys.stderr, flush=True)
    if args.example:
        explicit_db = args.db if args.db != args._default_db else None
        result = regenerate_example_report(
            args.notebook, output_dir=args.output_dir or EXAMPLE_DIR,
            parameters=with_database(args.notebook, parameters, explicit_db), progress=not args.no_progress,
        )
    else:
        result = run_report(args.notebook, with_database(args.notebook, parameters, args.db),
                            output_dir=args.output_dir or "reports", name=args.name, output=args.output,
                            show_code=args.show_code, kernel_name=args.kernel_name,
                            progress=not args.no_progress)
    run = f" (run {result.run_id})" if result.run_id else ""
    print(f"ett report: done in {result.wall_s:.0f} s{run}", file=sys.stderr, flush=True)
    print(result.html_path)
    return 0


#: The notebooks ``ett report`` and ``ett sweep`` run by default, wherever ``ett`` is run from.
NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ett", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="candles in the DuckDB store").add_subparsers(
        dest="data_command", required=True
    )
    demo = data.add_parser("demo", help="write seeded synthetic 1m candles")
    _add_db(demo)
    demo.add_argument("--symbol", default="ETH/USDT")
    demo.add_argument("--days", type=int, default=28)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_data_demo, on_interrupt="nothing was written")

    ingest = data.add_parser("ingest", help="ingest a DataFrame file: CSV, Parquet or Binance klines")
    _add_db(ingest)
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--symbol", required=True)
    ingest.add_argument("--timeframe", required=True)
    ingest.add_argument("--replace", action="store_true", help="overwrite candles that differ")
    ingest.add_argument("--format", choices=["csv", "parquet", "binance"], default=None,
                        help="file format (default: from the file name)")
    ingest.add_argument("--allow-sparse", action="store_true",
                        help="accept candles that are never adjacent (refused by default: 5m candles "
                             "given as --timeframe 1m look like that)")
    ingest.set_defaults(func=_cmd_data_ingest, on_interrupt="nothing was written")

    resample = data.add_parser("resample", help="aggregate a base timeframe into higher ones")
    _add_db(resample)
    resample.add_argument("--symbol", required=True)
    resample.add_argument("--base", default="1m")
    resample.add_argument("--to", nargs="+", required=True)
    resample.set_defaults(func=_cmd_data_resample,
                          on_interrupt="the timeframes printed above are stored, nothing of the next one")

    indicators = data.add_parser("indicators", help="recompute the indicator columns")
    _add_db(indicators)
    indicators.add_argument("--symbol", required=True)
    indicators.add_argument("--timeframe", required=True)
    indicators.set_defaults(func=_cmd_data_indicators, on_interrupt="nothing was written")

    pivots = data.add_parser("pivots", help="detect Williams pivots and store them in pivot_points")
    _add_db(pivots)
    pivots.add_argument("--symbol", required=True)
    pivots.add_argument("--timeframe", default=None, help="default: the finest stored timeframe")
    pivots.add_argument("--n", type=int, default=1, help="bars each side at level 1")
    pivots.add_argument("--levels", type=int, default=3)
    pivots.set_defaults(func=_cmd_data_pivots, on_interrupt="nothing was written")

    export = data.add_parser("export", help="write the candles into a Parquet lake (a folder or s3://...)")
    _add_db(export)
    export.add_argument("--parquet", required=True, metavar="ROOT",
                        help="the lake: a folder, or a URL such as s3://bucket/prefix (through fsspec)")
    export.add_argument("--symbol", dest="symbols", action="append", help="symbol (repeatable; default: all)")
    export.set_defaults(func=_cmd_data_export)

    info = data.add_parser("info", help="what the store holds")
    _add_db(info)
    info.set_defaults(func=_cmd_data_info)

    replay = commands.add_parser("replay", help="replay events from the store and count them")
    _add_db(replay)
    replay.add_argument("symbols", nargs="+")
    replay.add_argument("--start", type=_parse_time, default=None, help="ms or ISO (default: first candle)")
    replay.add_argument("--end", type=_parse_time, default=None, help="ms or ISO (default: last candle)")
    replay.add_argument("--base", default=None, help="base timeframe (default: the finest stored)")
    replay.add_argument("--timeframes", nargs="*", default=None,
                        help="higher timeframes (default: up to three usual multiples of the base)")
    replay.add_argument("--levels", type=int, default=3, help="pivot levels (default: %(default)s)")
    replay.set_defaults(func=_cmd_replay)

    run = commands.add_parser("run", help="run an experiment from a config file or flags")
    _add_run_arguments(run)
    run.set_defaults(func=_cmd_run, on_interrupt="the run had not started, nothing was written")

    report = commands.add_parser("report", help="run a notebook with papermill and export it to HTML")
    configure_report_parser(report, default_db=DEFAULT_DB)
    sweep = commands.add_parser("sweep", help="run a notebook over a grid of parameters in parallel")
    configure_sweep_parser(sweep, default_db=DEFAULT_DB)
    for sub in (report, sweep):  # the default notebook from the package's location, not the working directory
        sub.set_defaults(notebook=NOTEBOOKS / Path(sub.get_default("notebook")).name)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ett`` console script."""
    from ettlib import interrupts
    from ettlib.store.db import COMMITTED

    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EttError as err:
        print(f"ett: error: {err}", file=sys.stderr)
        return 2
    except (KeyboardInterrupt, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and not interrupts.is_duckdb_interrupt(exc):
            raise
        done = COMMITTED if str(exc) == COMMITTED else getattr(args, "on_interrupt", None)
        print(f"ett: interrupted{': ' + done if done else ''}", file=sys.stderr)
        return 130  # the shell's code for SIGINT


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
