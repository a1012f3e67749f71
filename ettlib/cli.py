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
    print(f"{args.db}: {args.symbol} 1m: {report}")
    return 0


def _cmd_data_ingest(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        report = storage.ingest(args.file, args.symbol, args.timeframe, replace=args.replace)
    print(f"{args.db}: {args.symbol} {args.timeframe}: {report}")
    return 0


def _cmd_data_resample(args) -> int:
    from ettlib.store import DuckDBStorage

    with DuckDBStorage(args.db) as storage:
        for timeframe in args.to:
            result = storage.resample(args.symbol, args.base, timeframe)
            print(f"{args.symbol} {args.base} -> {timeframe}: {result}")
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


def _iso(ms: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(ms / 1000, dt.timezone.utc).strftime("%Y-%m-%d %H:%M")


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
    ingest.set_defaults(func=_cmd_data_ingest)

    resample = data.add_parser("resample", help="aggregate a base timeframe into higher ones")
    _add_db(resample)
    resample.add_argument("--symbol", required=True)
    resample.add_argument("--base", default="1m")
    resample.add_argument("--to", nargs="+", required=True)
    resample.set_defaults(func=_cmd_data_resample)

    info = data.add_parser("info", help="what the store holds")
    _add_db(info)
    info.set_defaults(func=_cmd_data_info)
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
