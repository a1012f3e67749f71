"""The DuckDB schema: versioned table definitions and forward migrations.

The database file is the single source of truth for candles, indicators,
pivots, inference frames, delivered training pairs, dead letters and runs.
:func:`ensure_schema` brings any database -- empty, OHLCV-only (an
``ohlcv_data`` table with OHLCV columns only, as an earlier application made it), or written by an older
ettlib -- up to :data:`SCHEMA_VERSION`, in one transaction.  A database
written by a *newer* ettlib is refused with :class:`~ettlib.errors.SchemaError`.

Examples
--------
>>> import duckdb
>>> con = duckdb.connect()
>>> ensure_schema(con)
4
>>> sorted(r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall())
['coordinator_checkpoints', 'dead_letters', 'inference_frames', 'ohlcv_data', 'pivot_points', 'runs', 'schema_version', 'subscriber_states', 'training_events']
"""

from __future__ import annotations

import duckdb

from ettlib.store.db import transaction
from ettlib.errors import SchemaError

__all__ = [
    "SCHEMA_VERSION",
    "OHLCV_COLUMNS",
    "INDICATOR_COLUMNS",
    "CANDLE_COLUMNS",
    "ensure_schema",
    "refuse_newer",
    "schema_version",
]

#: The price and volume columns of every candle.
OHLCV_COLUMNS: tuple[str, ...] = ("open", "high", "low", "close", "volume")

#: Indicator columns stored beside the candles (NULL during warm-up).
INDICATOR_COLUMNS: tuple[str, ...] = (
    "sma_10",
    "sma_20",
    "sma_50",
    "ema_12",
    "ema_26",
    "rsi_14",
    "macd",
    "macd_signal",
    "macd_hist",
    "atr_14",
    "bb_upper",
    "bb_middle",
    "bb_lower",
)

#: Every numeric column of ``ohlcv_data``, in table order.
CANDLE_COLUMNS: tuple[str, ...] = OHLCV_COLUMNS + INDICATOR_COLUMNS

_OHLCV_DDL = (
    "CREATE TABLE IF NOT EXISTS ohlcv_data ("
    " symbol VARCHAR NOT NULL,"
    " timeframe VARCHAR NOT NULL,"
    " timestamp BIGINT NOT NULL,"
    + "".join(f" {c} DOUBLE NOT NULL," for c in OHLCV_COLUMNS)
    + "".join(f" {c} DOUBLE," for c in INDICATOR_COLUMNS)
    + " PRIMARY KEY (symbol, timeframe, timestamp))"
)

# Version 1: every table.  Later versions append to _MIGRATIONS; each entry
# is a list of statements that takes version i to version i + 1 (never edit
# a released version: a database at version i has already run it).
_MIGRATIONS: list[list[str]] = [
    [
        _OHLCV_DDL,
        "CREATE SEQUENCE IF NOT EXISTS pivot_points_id_seq START 1",
        """CREATE TABLE IF NOT EXISTS pivot_points (
            id INTEGER PRIMARY KEY DEFAULT nextval('pivot_points_id_seq'),
            symbol VARCHAR NOT NULL,
            timeframe VARCHAR NOT NULL,
            timestamp BIGINT NOT NULL,
            price DOUBLE NOT NULL,
            pivot_type VARCHAR NOT NULL,
            level INTEGER NOT NULL,
            strength DOUBLE NOT NULL,
            confirmed_at BIGINT,
            UNIQUE (symbol, timeframe, timestamp, pivot_type))""",
        # inference_frames, training_events, dead_letters, coordinator_checkpoints:
        # written by ettlib.coordinator.persistence (see its docstring for the protocol).
        """CREATE TABLE IF NOT EXISTS inference_frames (
            run_id VARCHAR NOT NULL DEFAULT '',
            inference_id VARCHAR NOT NULL,
            symbol VARCHAR NOT NULL,
            timeframe VARCHAR NOT NULL,
            prediction_timestamp BIGINT NOT NULL,
            target_timestamp BIGINT NOT NULL,
            data_range_start BIGINT NOT NULL,
            data_range_end BIGINT NOT NULL,
            price_offset DOUBLE NOT NULL,
            price_scale DOUBLE NOT NULL,
            volume_offset DOUBLE NOT NULL,
            volume_scale DOUBLE NOT NULL,
            predicted_action VARCHAR NOT NULL,
            predicted_candle DOUBLE[] NOT NULL,
            confidence DOUBLE NOT NULL,
            status VARCHAR NOT NULL DEFAULT 'pending',
            expired_at BIGINT,
            PRIMARY KEY (run_id, inference_id))""",
        """CREATE TABLE IF NOT EXISTS training_events (
            run_id VARCHAR NOT NULL DEFAULT '',
            inference_id VARCHAR NOT NULL,
            event_kind VARCHAR NOT NULL,
            event_key VARCHAR NOT NULL,
            subscriber VARCHAR NOT NULL,
            knowable_time BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            loss DOUBLE,
            metrics VARCHAR,
            PRIMARY KEY (run_id, inference_id, event_key, subscriber))""",
        """CREATE TABLE IF NOT EXISTS dead_letters (
            run_id VARCHAR NOT NULL DEFAULT '',
            subscriber VARCHAR NOT NULL,
            inference_id VARCHAR NOT NULL,
            event_kind VARCHAR NOT NULL,
            event_key VARCHAR NOT NULL,
            event VARCHAR NOT NULL,
            error VARCHAR NOT NULL,
            traceback VARCHAR NOT NULL,
            knowable_time BIGINT NOT NULL,
            seq BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS coordinator_checkpoints (
            run_id VARCHAR PRIMARY KEY,
            resume_time BIGINT NOT NULL,
            next_seq BIGINT NOT NULL,
            next_inference_id BIGINT NOT NULL)""",
        """CREATE TABLE IF NOT EXISTS runs (
            run_id VARCHAR PRIMARY KEY,
            status VARCHAR NOT NULL,
            config VARCHAR NOT NULL,
            data_fingerprint VARCHAR,
            package_version VARCHAR,
            git_commit VARCHAR,
            seed BIGINT,
            started_at TIMESTAMP,
            finished_at TIMESTAMP,
            wall_s DOUBLE,
            metrics VARCHAR,
            error VARCHAR)""",
    ],
    # Version 2: subscribers' own state, written by ettlib.coordinator.persistence in the
    # coordinator's flush transaction (checkpoint_state / restore_state).
    [
        """CREATE TABLE IF NOT EXISTS subscriber_states (
            run_id VARCHAR NOT NULL,
            subscriber VARCHAR NOT NULL,
            state BLOB NOT NULL,
            resume_time BIGINT NOT NULL,
            PRIMARY KEY (run_id, subscriber))""",
    ],
    # Version 3: pivots keyed by their detection parameter n (sets of several n coexist;
    # stored rows were detected with the default n = 1), and each run's provenance: whether
    # the git tree had uncommitted changes, and the versions of the packages that computed it.
    [
        """CREATE TABLE pivot_points_v3 (
            id INTEGER PRIMARY KEY DEFAULT nextval('pivot_points_id_seq'),
            symbol VARCHAR NOT NULL,
            timeframe VARCHAR NOT NULL,
            n INTEGER NOT NULL DEFAULT 1,
            timestamp BIGINT NOT NULL,
            price DOUBLE NOT NULL,
            pivot_type VARCHAR NOT NULL,
            level INTEGER NOT NULL,
            strength DOUBLE NOT NULL,
            confirmed_at BIGINT,
            UNIQUE (symbol, timeframe, n, timestamp, pivot_type))""",
        """INSERT INTO pivot_points_v3 (id, symbol, timeframe, n, timestamp, price, pivot_type, level,
                                        strength, confirmed_at)
           SELECT id, symbol, timeframe, 1, timestamp, price, pivot_type, level, strength, confirmed_at
           FROM pivot_points ORDER BY id""",
        "DROP TABLE pivot_points",
        "ALTER TABLE pivot_points_v3 RENAME TO pivot_points",
        "ALTER TABLE runs ADD COLUMN git_dirty BOOLEAN",
        "ALTER TABLE runs ADD COLUMN environment VARCHAR",
    ],
    # Version 4: training_events without a key.  Delivered pairs are appended in columnar
    # batches; the coordinator's protocol makes each unique and a resume verifies it
    # (ettlib.coordinator.persistence.check_pairs_before); a key check per row cost more
    # than the rest of the row.
    [
        """CREATE TABLE training_events_v4 (
            run_id VARCHAR NOT NULL DEFAULT '',
            inference_id VARCHAR NOT NULL,
            event_kind VARCHAR NOT NULL,
            event_key VARCHAR NOT NULL,
            subscriber VARCHAR NOT NULL,
            knowable_time BIGINT NOT NULL,
            seq BIGINT NOT NULL,
            loss DOUBLE,
            metrics VARCHAR)""",
        """INSERT INTO training_events_v4 (run_id, inference_id, event_kind, event_key, subscriber,
                                           knowable_time, seq, loss, metrics)
           SELECT run_id, inference_id, event_kind, event_key, subscriber, knowable_time, seq, loss, metrics
           FROM training_events ORDER BY run_id, seq""",
        "DROP TABLE training_events",
        "ALTER TABLE training_events_v4 RENAME TO training_events",
    ],
]

#: The schema version this ettlib writes.
SCHEMA_VERSION = len(_MIGRATIONS)


def schema_version(con: duckdb.DuckDBPyConnection) -> int:
    """Version of the schema in ``con``; 0 for a database without one."""
    exists = con.execute(
        "SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'"
    ).fetchone()[0]
    if not exists:
        return 0
    row = con.execute("SELECT max(version) FROM schema_version").fetchone()
    return int(row[0] or 0)


#: Columns an OHLCV-only ``ohlcv_data`` (made before ettlib) must already have, with acceptable types.
_SEED_COLUMN_TYPES: dict[str, tuple[str, ...]] = {
    "symbol": ("VARCHAR",),
    "timeframe": ("VARCHAR",),
    "timestamp": ("BIGINT", "INTEGER", "HUGEINT", "UBIGINT"),
    **{c: ("DOUBLE", "FLOAT", "REAL", "DECIMAL") for c in OHLCV_COLUMNS},
}


def _upgrade_seed_ohlcv(con: duckdb.DuckDBPyConnection) -> None:
    """Migrate a pre-existing OHLCV-only ``ohlcv_data`` in place.

    Such a table holds ``symbol, timeframe, timestamp`` (BIGINT epoch ms
    open time) and OHLCV columns.  Its rows are kept; the indicator columns
    are added with ``ALTER TABLE ... ADD COLUMN`` (NULL until
    ``DuckDBStorage.update_indicators`` or the next ingest computes them).  A
    table without a primary key keeps none (DuckDB cannot add one in place);
    ettlib's ingest never writes a duplicate key either way.  A table that
    lacks a required column, or stores time as something other than an
    integer, cannot be migrated: :class:`SchemaError`, nothing changed.
    """
    existing = {
        r[0]: r[1]
        for r in con.execute(
            "SELECT column_name, data_type FROM information_schema.columns"
            " WHERE table_name = 'ohlcv_data'"
        ).fetchall()
    }
    if not existing:
        return
    for column, types in _SEED_COLUMN_TYPES.items():
        if column not in existing:
            raise SchemaError(
                f"existing table ohlcv_data has no column {column!r}; cannot migrate it "
                f"(expected at least {', '.join(_SEED_COLUMN_TYPES)})"
            )
        if not existing[column].upper().startswith(types):
            raise SchemaError(
                f"existing table ohlcv_data has column {column!r} of type {existing[column]}; "
                f"cannot migrate it (expected {' or '.join(types)})"
            )
    for column in INDICATOR_COLUMNS:
        if column not in existing:
            # Identifiers come from INDICATOR_COLUMNS, never from the user.
            con.execute(f"ALTER TABLE ohlcv_data ADD COLUMN {column} DOUBLE")


def _upgrade_seed_pivots(con: duckdb.DuckDBPyConnection) -> None:
    """Migrate a pre-existing ``pivot_points`` (made before ettlib) in place.

    Adds ``confirmed_at`` and gives ``id`` a default from a sequence that
    starts after the largest stored id; rows are kept.
    """
    existing = {
        r[0]
        for r in con.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = 'pivot_points'"
        ).fetchall()
    }
    if not existing:
        return
    if "confirmed_at" not in existing:
        con.execute("ALTER TABLE pivot_points ADD COLUMN confirmed_at BIGINT")
    next_id = int(con.execute("SELECT coalesce(max(id), 0) + 1 FROM pivot_points").fetchone()[0])
    # next_id is an integer read from the database, not user text.
    con.execute(f"CREATE SEQUENCE IF NOT EXISTS pivot_points_id_seq START {next_id}")
    con.execute("ALTER TABLE pivot_points ALTER COLUMN id SET DEFAULT nextval('pivot_points_id_seq')")


def refuse_newer(version: int, name: str) -> None:
    """Raise the :class:`SchemaError` of a database ``name`` written by a newer ettlib.

    >>> refuse_newer(9, "data/ett.duckdb")
    Traceback (most recent call last):
    ...
    ettlib.errors.SchemaError: data/ett.duckdb has schema version 9, written by a newer ettlib (this one reads up to 4); upgrade ettlib to open it (the file was not changed)
    """
    raise SchemaError(
        f"{name} has schema version {version}, written by a newer ettlib (this one reads up to "
        f"{SCHEMA_VERSION}); upgrade ettlib to open it (the file was not changed)"
    )


def ensure_schema(con: duckdb.DuckDBPyConnection, *, name: str = "the database") -> int:
    """Create or migrate every table to :data:`SCHEMA_VERSION`; return it.

    Runs in one transaction: a failed migration leaves the database as it was.
    ``name`` (the file) is what a refusal names.
    """
    current = schema_version(con)
    if current > SCHEMA_VERSION:
        refuse_newer(current, name)
    if current == SCHEMA_VERSION:
        return current
    with transaction(con):
        con.execute(
            "CREATE TABLE IF NOT EXISTS schema_version ("
            " version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)"
        )
        if current == 0:
            _upgrade_seed_ohlcv(con)
            _upgrade_seed_pivots(con)
        for version in range(current, SCHEMA_VERSION):
            for statement in _MIGRATIONS[version]:
                con.execute(statement)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [version + 1])
    return SCHEMA_VERSION
