"""Malformed CSV, kline and Parquet inputs (hypothesis): a clear error or a success, never a traceback.

Each example starts from a small valid file and mutates it -- cells replaced
by text, numbers of any size, NaN, empty; lines dropped, repeated, swapped
or truncated; the header changed; random bytes inserted; the bytes cut short
-- or, for Parquet, builds a frame of odd columns and types.  Ingesting it into
a real DuckDB file either succeeds or raises :class:`DataValidationError`
naming the file; nothing else may escape, and after an error a checksum of
every table is what it was before.
"""

from __future__ import annotations

import hashlib
import io
import zipfile

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import START_MS, make_candles
from ettlib.errors import DataValidationError

SETTINGS = settings(max_examples=50, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def checksum(store) -> str:
    """One digest of every row of every table of the store."""
    digest = hashlib.sha256()
    tables = [r[0] for r in store.con.execute(
        "SELECT table_name FROM information_schema.tables ORDER BY table_name").fetchall()]
    for table in tables:
        rows = sorted(map(repr, store.con.execute(f"SELECT * FROM {table}").fetchall()))
        digest.update(f"{table}:{len(rows)}:".encode())
        for row in rows:
            digest.update(row.encode())
    return digest.hexdigest()


@pytest.fixture
def seeded(store):
    """The store with candles and a pivot in it (so that an unchanged checksum means something)."""
    store.ingest(make_candles(12), "ETH/USDT", "1m")
    store.con.execute("INSERT INTO pivot_points (symbol, timeframe, n, timestamp, price, pivot_type, level,"
                      " strength) VALUES ('ETH/USDT', '1m', 1, ?, 100.0, 'L1H', 1, 0.1)", [START_MS])
    return store


def ingest_checked(store, path, **kwargs) -> None:
    before = checksum(store)
    try:
        store.ingest(path, "ETH/USDT", "1m", **kwargs)
    except DataValidationError as err:
        assert str(err).startswith(str(path)), err
        assert "\n" not in str(err).strip()
        assert checksum(store) == before
    # anything else -- a traceback -- fails the test


cells = st.one_of(
    st.text(max_size=8),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.integers(-(2**70), 2**70).map(str),
    st.sampled_from(["", "nan", "inf", "-0", "1e400", "0x10", "１２", "NULL", "2024-01-01", '"', "1,5"]),
)


@st.composite
def mutated_lines(draw, lines: list[str]) -> bytes:
    """``lines`` (a header and rows, or rows only) with 1-3 random mutations, as bytes."""
    lines = list(lines)
    for _ in range(draw(st.integers(1, 3))):
        op = draw(st.sampled_from(["cell", "cell", "drop", "repeat", "swap", "header", "cut", "garbage",
                                   "blank", "columns"]))
        i = draw(st.integers(0, len(lines) - 1)) if lines else 0
        if op == "cell" and lines:
            fields = lines[i].split(",")
            fields[draw(st.integers(0, len(fields) - 1))] = draw(cells)
            lines[i] = ",".join(fields)
        elif op == "drop" and lines:
            del lines[i]
        elif op == "repeat" and lines:
            lines.insert(i, lines[i])
        elif op == "swap" and len(lines) > 1:
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "header":
            lines.insert(0, ",".join(draw(st.lists(st.sampled_from(
                ["timestamp", "open", "high", "low", "close", "volume", "open_time", "close_time", "x", ""]),
                min_size=1, max_size=13))))
        elif op == "cut" and lines:
            lines[i] = lines[i][:draw(st.integers(0, len(lines[i])))]
        elif op == "garbage":
            lines.insert(i, draw(st.binary(max_size=20)).decode("latin-1"))
        elif op == "blank":
            lines.insert(i, "")
        elif op == "columns" and lines:
            fields = lines[i].split(",")
            lines[i] = ",".join(fields + [draw(cells)] if draw(st.booleans()) else fields[:-1])
    data = ("\n".join(lines) + "\n").encode("utf-8", errors="surrogateescape")
    if draw(st.booleans()):
        data = data[:draw(st.integers(0, len(data)))]
    return data


def _csv_lines(n=8) -> list[str]:
    candles = make_candles(n, start=START_MS + 100 * 60_000)
    return ["timestamp,open,high,low,close,volume"] + [
        ",".join(repr(v) if isinstance(v, float) else str(v) for v in row)
        for row in candles.itertuples(index=False)]


def _kline_lines(n=8) -> list[str]:
    out = []
    for row in make_candles(n, start=START_MS + 200 * 60_000).itertuples(index=False):
        t = int(row.timestamp)
        out.append(f"{t * 1000},{row.open!r},{row.high!r},{row.low!r},{row.close!r},{row.volume!r},"
                   f"{t + 59_999},1.0,3,0.5,0.5,0")
    return out


@given(data=mutated_lines(_csv_lines()))
@SETTINGS
def test_malformed_csv_is_refused_clearly_or_ingested(seeded, tmp_path, data):
    path = tmp_path / "fuzz.csv"
    path.write_bytes(data)
    ingest_checked(seeded, path)


@given(data=mutated_lines(_kline_lines()), zipped=st.booleans())
@SETTINGS
def test_malformed_klines_are_refused_clearly_or_ingested(seeded, tmp_path, data, zipped):
    if zipped:
        path = tmp_path / "ETHUSDT-1m.zip"
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr("ETHUSDT-1m.csv", data)
        path.write_bytes(buffer.getvalue())
    else:
        path = tmp_path / "fuzz-klines.csv"
        path.write_bytes(data)
    ingest_checked(seeded, path, format="binance" if not zipped and data[:1].isdigit() else None)


column_values = st.one_of(
    st.lists(st.floats(allow_nan=True, allow_infinity=True, width=64), min_size=4, max_size=4),
    st.lists(st.integers(-(2**63), 2**63 - 1), min_size=4, max_size=4),
    st.lists(st.text(max_size=6), min_size=4, max_size=4),
    st.lists(st.booleans(), min_size=4, max_size=4),
    st.lists(st.datetimes(timezones=st.none()), min_size=4, max_size=4),
    st.lists(st.one_of(st.none(), st.floats(0.5, 200.0)), min_size=4, max_size=4),
)


@st.composite
def parquet_frames(draw) -> pd.DataFrame:
    base = make_candles(4, start=START_MS + 300 * 60_000)
    frame = base.copy()
    for _ in range(draw(st.integers(1, 3))):
        name = draw(st.sampled_from(["timestamp", "open", "high", "low", "close", "volume", "sma_10",
                                     "extra", "TIMESTAMP"]))
        if draw(st.integers(0, 4)) == 0:
            frame = frame.drop(columns=[name], errors="ignore")
        else:
            frame[name] = draw(column_values)
    return frame


@given(frame=parquet_frames(), cut=st.one_of(st.none(), st.floats(0.0, 1.0)))
@SETTINGS
def test_malformed_parquet_is_refused_clearly_or_ingested(seeded, tmp_path, frame, cut):
    path = tmp_path / "fuzz.parquet"
    try:
        frame.to_parquet(path, index=False)
    except Exception:  # a frame pyarrow cannot write is not an input
        return
    if cut is not None:
        data = path.read_bytes()
        path.write_bytes(data[:int(len(data) * cut)])
    ingest_checked(seeded, path)


def test_the_fuzz_inputs_include_valid_ones(seeded, tmp_path):
    """The mutations start from files that ingest: a refusal is about the mutation."""
    for name, lines, kwargs in (("ok.csv", _csv_lines(), {}), ("ok-klines.csv", _kline_lines(), {})):
        path = tmp_path / name
        path.write_text("\n".join(lines) + "\n")
        assert seeded.ingest(path, "ETH/USDT", "1m", **kwargs).rows_added == 8
    assert np.isfinite(seeded.read_candles("ETH/USDT", "1m").column("close")).all()
