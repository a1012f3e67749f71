"""The ``ett`` command line: data, replay, experiment runs, reports, sweeps.

Every sub-command is a thin wrapper over a library function; errors that
ettlib raises (:class:`~ettlib.errors.EttError`) are printed as one line and
exit with status 2, without a traceback.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ettlib.errors import EttError

__all__ = ["main", "DEFAULT_DB"]

#: The embedded database every command uses unless told otherwise.
DEFAULT_DB = Path("data") / "ett.duckdb"


def _add_db(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--db", type=Path, default=DEFAULT_DB, help="DuckDB file (default: %(default)s)")


def _cmd_data_demo(args) -> int:
    from ettlib.demo import write_demo_data
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        report = write_demo_data(storage, symbol=args.symbol, days=args.days, seed=args.seed)
    print(f"{args.db}: {_describe(report)}")
    return 0


def _cmd_data_ingest(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        report = storage.ingest(
            args.file, args.symbol, args.timeframe, replace=args.replace, format=args.format
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
    from ettlib.pivots import detect_pivots, store_pivots
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        candles = storage.read_candles(args.symbol, args.timeframe, columns=("high", "low"))
        table = detect_pivots(
            candles.timestamps, candles.column("high"), candles.column("low"),
            args.timeframe, n=args.n, levels=args.levels,
        )
        added = store_pivots(storage.con, args.symbol, args.timeframe, table)
    print(f"{args.symbol} {args.timeframe}: {len(table)} pivots, {added} new in pivot_points")
    return 0


def _parse_time(text: str) -> int:
    """:func:`ettlib.times.to_ms` for argparse (its error as argparse's)."""
    from ettlib.times import to_ms

    try:
        return to_ms(text)
    except EttError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _cmd_replay(args) -> int:
    from ettlib.replay import count_events
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db, read_only=True) as storage:
        first_last = [storage.time_range(s, args.base) for s in args.symbols]
        if any(r is None for r in first_last):
            missing = [s for s, r in zip(args.symbols, first_last) if r is None]
            raise EttError(f"{args.db}: no {args.base} candles for {', '.join(missing)}")
        start = args.start if args.start is not None else min(r[0] for r in first_last)
        end = args.end if args.end is not None else max(r[1] for r in first_last)
        counts = count_events(
            storage, args.symbols, start, end, base_timeframe=args.base,
            timeframes=[args.base, *args.timeframes], pivot_levels=args.levels, progress=True,
        )
    for name, count in counts.items():
        print(f"{name:<14} {count:>10}")
    return 0


def _cmd_data_info(args) -> int:
    from ettlib.store import DuckDBStorage

    if not Path(args.db).exists():
        raise EttError(f"{args.db}: no such database; create one with `ett data demo` or `ett data ingest`")
    with DuckDBStorage(args.db, read_only=True) as storage:
        rows = storage.con.execute(
            "SELECT symbol, timeframe, count(*), min(timestamp), max(timestamp) "
            "FROM ohlcv_data GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    if not rows:
        print(f"{args.db}: no candles")
    for symbol, timeframe, count, first, last in rows:
        print(f"{symbol:<12} {timeframe:>4} {count:>9} candles  {_iso(first)} .. {_iso(last)}")
    return 0


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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ett", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)

    data = commands.add_parser("data", help="candles in the DuckDB store").add_subparsers(
        dest="data_command", required=True
    )
    demo = data.add_parser("demo", help="write seeded synthetic 1m candles")
    _add_db(demo)
    demo.add_argument("--symbol", default="ETH/USDT")
    demo.add_argument("--days", type=int, default=28)
    demo.add_argument("--seed", type=int, default=7)
    demo.set_defaults(func=_cmd_data_demo)

    ingest = data.add_parser("ingest", help="ingest a DataFrame file: CSV, Parquet or Binance klines")
    _add_db(ingest)
    ingest.add_argument("file", type=Path)
    ingest.add_argument("--symbol", required=True)
    ingest.add_argument("--timeframe", required=True)
    ingest.add_argument("--replace", action="store_true", help="overwrite candles that differ")
    ingest.add_argument("--format", choices=["csv", "parquet", "binance"], default=None,
                        help="file format (default: from the file name)")
    ingest.set_defaults(func=_cmd_data_ingest)

    resample = data.add_parser("resample", help="aggregate a base timeframe into higher ones")
    _add_db(resample)
    resample.add_argument("--symbol", required=True)
    resample.add_argument("--base", default="1m")
    resample.add_argument("--to", nargs="+", required=True)
    resample.set_defaults(func=_cmd_data_resample)

    indicators = data.add_parser("indicators", help="recompute the indicator columns")
    _add_db(indicators)
    indicators.add_argument("--symbol", required=True)
    indicators.add_argument("--timeframe", required=True)
    indicators.set_defaults(func=_cmd_data_indicators)

    pivots = data.add_parser("pivots", help="detect Williams pivots and store them in pivot_points")
    _add_db(pivots)
    pivots.add_argument("--symbol", required=True)
    pivots.add_argument("--timeframe", default="1m")
    pivots.add_argument("--n", type=int, default=1, help="bars each side at level 1")
    pivots.add_argument("--levels", type=int, default=3)
    pivots.set_defaults(func=_cmd_data_pivots)

    info = data.add_parser("info", help="what the store holds")
    _add_db(info)
    info.set_defaults(func=_cmd_data_info)

    replay = commands.add_parser("replay", help="replay events from the store and count them")
    _add_db(replay)
    replay.add_argument("symbols", nargs="+")
    replay.add_argument("--start", type=_parse_time, default=None, help="ms or ISO (default: first candle)")
    replay.add_argument("--end", type=_parse_time, default=None, help="ms or ISO (default: last candle)")
    replay.add_argument("--base", default="1m", help="base timeframe (default: %(default)s)")
    replay.add_argument("--timeframes", nargs="*", default=["5m", "15m", "1h"])
    replay.add_argument("--levels", type=int, default=3, help="pivot levels (default: %(default)s)")
    replay.set_defaults(func=_cmd_replay)

    from ettlib.training.experiment import add_run_arguments, run_command

    run = commands.add_parser("run", help="run an experiment from a config file or flags")
    add_run_arguments(run)
    run.set_defaults(func=run_command)

    from ettlib.reports import configure_report_parser
    from ettlib.sweep import configure_sweep_parser

    configure_report_parser(
        commands.add_parser("report", help="run a notebook with papermill and export it to HTML"),
        default_db=DEFAULT_DB,
    )
    configure_sweep_parser(
        commands.add_parser("sweep", help="run a notebook over a grid of parameters in parallel"),
        default_db=DEFAULT_DB,
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ett`` console script."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EttError as err:
        print(f"ett: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
