"""One rule, one home: the time parser, the symbol rule, transactions and clocks."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pandas as pd
import pytest

from ettlib.clock import ReplayClock
from ettlib.store.db import connect, transaction
from ettlib.errors import ClockError, ConfigError, LookAheadError
from ettlib.symbols import validate_symbol, validate_symbols
from ettlib.times import format_ms, to_ms

T = 1_704_067_200_000  # 2024-01-01T00:00Z


@pytest.mark.parametrize("value", [
    T, np.int64(T), float(T), str(T), "2024-01-01", "2024-01-01T00:00", "2024-01-01 00:00:00Z",
    "2024-01-01T01:00:00+01:00", dt.datetime(2024, 1, 1), dt.datetime(2024, 1, 1, tzinfo=dt.timezone.utc),
    dt.date(2024, 1, 1), pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-01", tz="UTC"),
    np.datetime64("2024-01-01T00:00"),
])
def test_every_form_of_a_time_reads_as_the_same_epoch_ms(value):
    assert to_ms(value) == T


def test_naive_times_are_utc_whatever_the_machine_zone(tmp_path):
    """A naive datetime or ISO string is UTC even where the process runs in another zone."""
    code = textwrap.dedent("""
        import datetime as dt, time
        time.tzset()
        from ettlib.times import to_ms
        print(to_ms(dt.datetime(2024, 1, 1)), to_ms("2024-01-01T00:00"))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "America/New_York"}).stdout.split()
    assert out == [str(T), str(T)]


@pytest.mark.parametrize("value", [None, True, 1.5, "yesterday", dt.datetime(2024, 1, 1, 0, 0, 0, 1),
                                   np.datetime64("NaT"), [T]])
def test_what_is_not_a_time_is_refused_by_name(value):
    with pytest.raises(ConfigError, match="^start: "):
        to_ms(value, "start")


def test_format_ms_writes_iso_utc():
    assert format_ms(T) == "2024-01-01T00:00:00Z"
    assert format_ms(T + 1) == "2024-01-01T00:00:00.001Z"
    assert to_ms(format_ms(T + 61_001)) == T + 61_001


@pytest.mark.parametrize("bad", ["", " ETH", "ETH ", "ETH/USDT ", "A\tB", "x" * 65, 3, None])
def test_one_symbol_rule(bad):
    with pytest.raises(ConfigError):
        validate_symbol(bad)


def test_every_part_refuses_a_symbol_with_a_trailing_blank(tmp_path, make_candles):
    """The same rule at ingest, subscription, replay, frames and configs: nothing silently matches nothing."""
    from ettlib.replay.provider import DataProvider
    from ettlib.errors import DataValidationError
    from ettlib.coordinator.frames import InferenceFrameReference
    from ettlib.store import DuckDBStorage
    from ettlib.experiment.config import ExperimentConfig

    bad = "ETH/USDT "
    with DuckDBStorage(tmp_path / "s.duckdb") as store:
        with pytest.raises(ConfigError, match="trailing blanks"):
            store.ingest(make_candles(5), bad, "1m")
    with pytest.raises(ConfigError, match="trailing blanks"):
        DataProvider().subscribe_candle_completion(print, bad, "1m")
    with pytest.raises(ConfigError, match="trailing blanks"):
        ExperimentConfig(symbols=(bad,))
    with pytest.raises(DataValidationError, match="trailing blanks"):
        InferenceFrameReference(1, bad, "1m", T, T, T - 60_000, T - 60_000, (1.0, 1.0, 1.0, 1.0), "BUY", (), 0.5)
    assert validate_symbols(["B", "A", "B"]) == ("A", "B")
    with pytest.raises(ConfigError, match="empty"):
        validate_symbols([])


def test_transaction_commits_rolls_back_and_nests():
    con = connect()
    con.execute("CREATE TABLE t (x INTEGER NOT NULL)")
    with transaction(con):
        con.execute("INSERT INTO t VALUES (1)")
        with transaction(con):
            con.execute("INSERT INTO t VALUES (2)")
    with pytest.raises(Exception), transaction(con):
        con.execute("INSERT INTO t VALUES (3)")
        with transaction(con):
            con.execute("INSERT INTO t VALUES (NULL)")  # fails inside the inner block: all of it goes
    assert con.execute("SELECT list(x ORDER BY x) FROM t").fetchone()[0] == [1, 2]
    with transaction(con):  # the connection is usable: no transaction was left open
        con.execute("INSERT INTO t VALUES (4)")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 3


def test_a_ctrl_c_inside_a_transaction_cancels_it_once_its_statements_ran(tmp_path):
    """SIGINT during the block: every statement still runs (none is broken), then ROLLBACK and KeyboardInterrupt."""
    con = connect(tmp_path / "i.duckdb")
    con.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(KeyboardInterrupt) as raised:
        with transaction(con):
            con.execute("INSERT INTO t VALUES (1)")
            os.kill(os.getpid(), signal.SIGINT)
            con.execute("INSERT INTO t SELECT * FROM range(2, 100000)")
            assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 99_999
    assert raised.value.args == ()  # not the "committed" interrupt
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with transaction(con):  # no transaction was left open
        con.execute("INSERT INTO t VALUES (1)")
    assert con.execute("SELECT count(*) FROM t").fetchone()[0] == 1


def test_connections_never_load_extensions_by_themselves():
    con = connect()
    assert con.execute("SELECT current_setting('autoinstall_known_extensions'),"
                       " current_setting('autoload_known_extensions')").fetchone() == (False, False)


def test_only_the_driver_moves_a_clock():
    clock = ReplayClock(T)
    view = clock.view()
    clock.time = T + 60_000
    assert view.now() == T + 60_000
    with pytest.raises(ClockError):
        view.advance(T + 120_000)
    for name, value in (("now", lambda: 0), ("time", 0)):
        with pytest.raises(ClockError):
            setattr(view, name, value)
    with pytest.raises(ClockError, match="backwards"):
        clock.advance(T)
    assert not issubclass(ClockError, LookAheadError)
