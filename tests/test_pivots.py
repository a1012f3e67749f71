"""Pivots: batch == streaming == a naive reference, no look-ahead, storage.

The reference below is written straight from docs/design.md's wording with plain
loops and no shared code with ettlib.replay.pivots: it finds every level from the
definition and computes ``strength`` by scanning each pivot's span.
"""

from __future__ import annotations

import json
import pickle

import duckdb
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ettlib.store.db import transaction
from ettlib.errors import ConfigError, DataValidationError, LookAheadError, UnknownNameError
from ettlib.replay.events import PivotEvent, event_sort_key, pivot_type_name
from ettlib.replay.pivot_stream import StreamingPivotDetector
from ettlib.replay.pivots import PivotTable, detect_pivots
from ettlib.store.pivot_points import store_pivots
from ettlib.store.schema import ensure_schema
from ettlib.timeframes import timeframe_ms

MINUTE = 60_000


# --------------------------------------------------------------------------
# Reference implementation (obviously correct, slow)
# --------------------------------------------------------------------------


def reference_pivots(ts, high, low, timeframe, n, levels, close_times=None):
    """Pivots as (confirmed_at, level, is_low, timestamp, price, strength, bar, conf_bar).

    ``close_times[i]`` is when bar ``i`` became known (default: its close).
    """
    tf = timeframe_ms(timeframe)
    if close_times is None:
        close_times = [t + tf for t in ts]
    size = len(ts)
    rows = []
    for is_low in (True, False):
        x = low if is_low else high
        # Level 1, straight from the definition.
        current = []  # dicts: bar, conf, left, right (span of compared bars)
        for i in range(n, size - n):
            before_ok = all((x[i] <= x[j]) if is_low else (x[i] >= x[j]) for j in range(i - n, i))
            after_ok = all(
                (x[i] < x[j]) if is_low else (x[i] > x[j]) for j in range(i + 1, i + n + 1)
            )
            if before_ok and after_ok:
                current.append({"bar": i, "conf": i + n, "left": i - n, "right": i + n})
        for level in range(1, levels + 1):
            for p in current:
                span = range(p["left"], p["right"] + 1)
                price = x[p["bar"]]
                if is_low:
                    strength = (max(high[j] for j in span) - price) / price
                else:
                    strength = (price - min(low[j] for j in span)) / price
                rows.append(
                    (close_times[p["conf"]], level, is_low, ts[p["bar"]], price, strength,
                     p["bar"], p["conf"])
                )
            promoted = []
            for m in range(1, len(current) - 1):
                prev, mid, nxt = (x[current[k]["bar"]] for k in (m - 1, m, m + 1))
                ok = (mid <= prev and mid < nxt) if is_low else (mid >= prev and mid > nxt)
                if ok:
                    promoted.append(
                        {
                            "bar": current[m]["bar"],
                            "conf": current[m + 1]["conf"],
                            "left": current[m - 1]["bar"],
                            "right": current[m + 1]["bar"],
                        }
                    )
            current = promoted
    rows.sort(key=lambda r: (r[0], r[1], 0 if r[2] else 1, r[3]))
    return rows


def table_rows(table: PivotTable):
    return list(
        zip(
            table.confirmed_at.tolist(),
            table.level.tolist(),
            table.is_low.tolist(),
            table.timestamp.tolist(),
            table.price.tolist(),
            table.strength.tolist(),
            table.bar_index.tolist(),
            table.confirmed_index.tolist(),
        )
    )


def event_rows(events):
    return [
        (e.confirmed_at, e.level, e.is_low, e.timestamp, e.price, e.strength) for e in events
    ]


def stream(ts, high, low, timeframe, n, levels, symbol="X"):
    det = StreamingPivotDetector(symbol, timeframe, n=n, levels=levels)
    out = []
    for t, h, lo in zip(ts, high, low):
        out.extend(det.update(t, h, lo))
    return out


# --------------------------------------------------------------------------
# Random series: few distinct prices (ties, flat runs), gaps in time
# --------------------------------------------------------------------------


@st.composite
def series(draw, max_size=70):
    size = draw(st.integers(0, max_size))
    lows = draw(st.lists(st.integers(1, 6), min_size=size, max_size=size))
    ranges = draw(st.lists(st.integers(0, 3), min_size=size, max_size=size))
    steps = draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 7]), min_size=size, max_size=size))
    timeframe = draw(st.sampled_from(["1m", "5m", "1h"]))
    tf = timeframe_ms(timeframe)
    start = draw(st.integers(0, 1_000)) * tf
    ts = (start + np.cumsum(np.array(steps, dtype=np.int64)) * tf).astype(np.int64)
    low = np.array(lows, dtype=np.float64)
    high = low + np.array(ranges, dtype=np.float64) * 0.5
    n = draw(st.integers(1, 3))
    levels = draw(st.integers(1, 5))
    return ts, high, low, timeframe, n, levels


SETTINGS = settings(max_examples=200, deadline=None)


@SETTINGS
@given(series())
def test_batch_equals_reference(case):
    ts, high, low, timeframe, n, levels = case
    expected = reference_pivots(ts.tolist(), high.tolist(), low.tolist(), timeframe, n, levels)
    assert table_rows(detect_pivots(ts, high, low, timeframe, n=n, levels=levels)) == expected


@SETTINGS
@given(series())
def test_streaming_equals_batch_and_reference(case):
    ts, high, low, timeframe, n, levels = case
    expected = reference_pivots(ts.tolist(), high.tolist(), low.tolist(), timeframe, n, levels)
    events = stream(ts, high, low, timeframe, n, levels)
    assert event_rows(events) == [r[:6] for r in expected]
    table = detect_pivots(ts, high, low, timeframe, n=n, levels=levels)
    assert events == table.events("X", timeframe)


@SETTINGS
@given(series(), st.data())
def test_late_close_times_batch_equals_streaming_and_reference(case, data):
    """Higher-timeframe bars may complete late; confirmed_at follows their completion."""
    ts, high, low, timeframe, n, levels = case
    tf = timeframe_ms(timeframe)
    delays = data.draw(st.lists(st.sampled_from([0, 0, 0, tf // 2, 3 * tf]),
                                min_size=len(ts), max_size=len(ts)))
    close = np.maximum.accumulate(ts + tf + np.array(delays, dtype=np.int64)) if len(ts) else ts
    expected = reference_pivots(ts.tolist(), high.tolist(), low.tolist(), timeframe, n, levels,
                                close_times=close.tolist())
    table = detect_pivots(ts, high, low, timeframe, n=n, levels=levels, close_times=close)
    assert table_rows(table) == expected
    det = StreamingPivotDetector("X", timeframe, n=n, levels=levels)
    streamed = []
    for t, h, lo, c in zip(ts.tolist(), high.tolist(), low.tolist(), close.tolist()):
        events = det.update(t, h, lo, close_time=c)
        assert all(e.confirmed_at == c for e in events)
        streamed.extend(events)
    assert sorted(streamed, key=event_sort_key) == table.events("X", timeframe)


@SETTINGS
@given(series())
def test_streaming_emits_only_at_the_confirming_bar(case):
    """A pivot comes out of update() exactly when its confirming bar arrives."""
    ts, high, low, timeframe, n, levels = case
    tf = timeframe_ms(timeframe)
    det = StreamingPivotDetector("X", timeframe, n=n, levels=levels)
    for i, (t, h, lo) in enumerate(zip(ts.tolist(), high.tolist(), low.tolist())):
        events = det.update(t, h, lo)
        assert all(e.confirmed_at == t + tf for e in events)
        # Every pivot bar is at least n bars before the confirming one.
        assert all(e.timestamp <= ts[max(i - n, 0)] for e in events)
        assert [event_sort_key(e) for e in events] == sorted(event_sort_key(e) for e in events)


@SETTINGS
@given(series(), st.data())
def test_prefix_gives_exactly_the_pivots_known_by_its_end(case, data):
    """No look-ahead: cutting the series at bar L changes no pivot known by then."""
    ts, high, low, timeframe, n, levels = case
    tf = timeframe_ms(timeframe)
    full = detect_pivots(ts, high, low, timeframe, n=n, levels=levels)
    cut = data.draw(st.integers(0, len(ts)))
    prefix = detect_pivots(ts[:cut], high[:cut], low[:cut], timeframe, n=n, levels=levels)
    horizon = ts[cut - 1] + tf if cut else np.iinfo(np.int64).min
    assert table_rows(prefix) == table_rows(full.knowable_by(horizon))
    assert table_rows(prefix) == [r for r in table_rows(full) if r[0] <= horizon]


@SETTINGS
@given(series())
def test_confirmation_times_and_strength_invariants(case):
    ts, high, low, timeframe, n, levels = case
    tf = timeframe_ms(timeframe)
    t = detect_pivots(ts, high, low, timeframe, n=n, levels=levels)
    if len(t):
        assert (t.confirmed_index >= t.bar_index + n).all()
        assert (t.confirmed_at == ts[t.confirmed_index] + tf).all()
        assert (t.confirmed_at >= t.timestamp + (n + 1) * tf).all()
        assert (t.price == np.where(t.is_low, low[t.bar_index], high[t.bar_index])).all()
        assert (t.strength >= 0).all()
    # A level-(k+1) pivot is also a level-k pivot of the same bar and kind,
    # confirmed no earlier, with strength no smaller (its span contains the other).
    by_key = {(lv, lo, b): (c, s) for lv, lo, b, c, s in zip(
        t.level.tolist(), t.is_low.tolist(), t.bar_index.tolist(),
        t.confirmed_at.tolist(), t.strength.tolist())}
    for (lv, lo, b), (c, s) in by_key.items():
        if lv > 1:
            c_low, s_low = by_key[(lv - 1, lo, b)]
            assert c >= c_low and s >= s_low


@settings(max_examples=50, deadline=None)
@given(series(), st.data())
def test_state_roundtrip_resumes_identically(case, data):
    ts, high, low, timeframe, n, levels = case
    cut = data.draw(st.integers(0, len(ts)))
    det = StreamingPivotDetector("X", timeframe, n=n, levels=levels)
    first = [e for i in range(cut) for e in det.update(ts[i], high[i], low[i])]
    resumed = StreamingPivotDetector.from_state(json.loads(json.dumps(det.state())))
    pickled = pickle.loads(pickle.dumps(det))
    rest = [ev for i in range(cut, len(ts)) for ev in resumed.update(ts[i], high[i], low[i])]
    rest_p = [ev for i in range(cut, len(ts)) for ev in pickled.update(ts[i], high[i], low[i])]
    whole = stream(ts, high, low, timeframe, n, levels)
    assert first + rest == whole
    assert first + rest_p == whole


@pytest.mark.parametrize("seed, n", [(0, 1), (1, 1), (2, 2), (3, 1)])
def test_deep_levels_on_longer_series(seed, n):
    """Levels 4 and 5 need long series; random walks with ties and gaps."""
    rng = np.random.default_rng(seed)
    size = 3000
    low = 50 + np.cumsum(rng.integers(-2, 3, size)).astype(float)
    low = low - low.min() + 1
    high = low + rng.integers(0, 3, size)
    ts = np.cumsum(rng.choice([1, 1, 1, 3], size)).astype(np.int64) * MINUTE
    expected = reference_pivots(ts.tolist(), high.tolist(), low.tolist(), "1m", n, 5)
    table = detect_pivots(ts, high, low, "1m", n=n, levels=5)
    assert table_rows(table) == expected
    assert event_rows(stream(ts, high, low, "1m", n, 5)) == [r[:6] for r in expected]
    assert set(table.level.tolist()) == {1, 2, 3, 4, 5}


# --------------------------------------------------------------------------
# Hand-worked examples
# --------------------------------------------------------------------------


def test_flat_top_pivot_is_the_last_bar_of_the_run():
    # highs 1 2 2 1: bar 1 fails (2 > 2 is false), bar 2 passes (2 >= 2, 2 > 1).
    ts = np.arange(4) * MINUTE
    high = np.array([1.0, 2.0, 2.0, 1.0])
    t = detect_pivots(ts, high, high - 0.5, "1m")
    highs = t[~t.is_low]
    assert highs.bar_index.tolist() == [2]
    assert highs.confirmed_at.tolist() == [4 * MINUTE]


def test_flat_bottom_and_equal_prices_never_pivot_after():
    ts = np.arange(5) * MINUTE
    low = np.array([3.0, 1.0, 1.0, 1.0, 3.0])
    t = detect_pivots(ts, low + 1, low, "1m")
    assert t[t.is_low].bar_index.tolist() == [3]
    flat = np.full(5, 2.0)
    assert len(detect_pivots(ts, flat, flat, "1m")) == 0


def test_level_two_with_gap_and_hand_computed_strength():
    # Highs:            0    1    2    3    4    5    6
    high = np.array([1.0, 3.0, 2.0, 4.0, 2.0, 3.5, 1.0])
    low = np.array([0.5, 2.0, 1.0, 3.0, 1.5, 3.0, 0.5])
    ts = np.array([0, 1, 2, 10, 11, 12, 13]) * MINUTE  # a gap after bar 2
    t = detect_pivots(ts, high, low, "1m", n=1, levels=3)
    l2 = t[t.level == 2]
    # L1 highs at bars 1, 3, 5 (prices 3, 4, 3.5): bar 3 is L2, confirmed with bar 5
    # at the close of bar 6 (13 min + 1 min).
    assert l2.pivot_type.tolist() == ["L2H"]
    assert l2.bar_index.tolist() == [3]
    assert l2.confirmed_at.tolist() == [14 * MINUTE]
    # Span bars 1..5: lowest low 1.0 -> (4 - 1) / 4.
    assert l2.strength.tolist() == [0.75]
    # L1 high at bar 3: span bars 2..4, lowest low 1.0 -> 0.75 too; bar 1: span 0..2 -> (3-0.5)/3.
    l1h = t[(t.level == 1) & ~t.is_low]
    assert l1h.strength.tolist() == [(3 - 0.5) / 3, 0.75, (3.5 - 0.5) / 3.5]
    assert len(t[t.level == 3]) == 0  # the first L2 high has no previous one


def test_same_instant_order_is_level_then_lows_first():
    # Bar 2 closes and confirms an L1 low at bar 1 and an L1 high at bar 1 (an outside bar).
    ts = np.arange(3) * MINUTE
    t = detect_pivots(ts, np.array([2.0, 3.0, 2.0]), np.array([1.5, 1.0, 1.5]), "1m")
    assert t.pivot_type.tolist() == ["L1L", "L1H"]
    events = t.events("X", "1m")
    assert events == sorted(events, key=event_sort_key)
    assert all(isinstance(e, PivotEvent) for e in events)
    assert [e.pivot_type for e in events] == [pivot_type_name(1, True), pivot_type_name(1, False)]


def test_short_series_has_no_pivots():
    for size in range(3):
        ts = np.arange(size) * MINUTE
        assert len(detect_pivots(ts, np.ones(size), np.ones(size), "1m")) == 0
        assert stream(ts, np.ones(size), np.ones(size), "1m", 1, 3) == []


def test_table_slicing_concat_and_frame():
    rng = np.random.default_rng(3)
    low = rng.integers(1, 9, 300).astype(float)
    high = low + rng.integers(0, 3, 300)
    ts = np.arange(300) * MINUTE
    t = detect_pivots(ts, high, low, "1m", n=2, levels=4)
    cut = len(t) // 2
    again = PivotTable.concat([t[cut:], t[:cut]])
    assert table_rows(again) == table_rows(t)
    assert len(PivotTable.concat([])) == 0
    assert table_rows(t[3]) == [table_rows(t)[3]]
    frame = t.to_frame()
    assert frame["pivot_type"].tolist() == [e.pivot_type for e in t.events("X", "1m")]
    assert len(frame) == len(t)


# --------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ts, high, low, column, row",
    [
        ([0, 60_000, 60_000], [2.0, 2.0, 2.0], [1.0, 1.0, 1.0], "timestamp", 3),
        ([0, 60_000, 120_000], [2.0, np.nan, 2.0], [1.0, 1.0, 1.0], "high", 2),
        ([0, 60_000, 120_000], [2.0, 2.0, 2.0], [1.0, 1.0, 0.0], "low", 3),
        ([0, 60_000, 120_000], [2.0, 2.0, 2.0], [1.0, 3.0, 1.0], "low", 2),
    ],
)
def test_bad_series_are_rejected_with_the_row(ts, high, low, column, row):
    with pytest.raises(DataValidationError) as info:
        detect_pivots(np.array(ts), np.array(high), np.array(low), "1m")
    assert info.value.column == column and info.value.row == row
    det = StreamingPivotDetector("X", "1m")
    with pytest.raises(DataValidationError) as info:
        for t, h, lo in zip(ts, high, low):
            det.update(t, h, lo)
    assert info.value.column == column and info.value.row == row


def test_bad_parameters():
    ts, p = np.arange(3) * MINUTE, np.ones(3)
    with pytest.raises(DataValidationError, match="length"):
        detect_pivots(ts, p[:2], p, "1m")
    with pytest.raises(DataValidationError, match="integer"):
        detect_pivots(ts.astype(float), p, p, "1m")
    with pytest.raises(DataValidationError, match="integer"):
        StreamingPivotDetector("X", "1m").update(1.5, 2.0, 1.0)
    for bad in (dict(n=0), dict(levels=0), dict(levels=6), dict(n=1.5)):
        with pytest.raises(ConfigError):
            detect_pivots(ts, p, p, "1m", **bad)
        with pytest.raises(ConfigError):
            StreamingPivotDetector("X", "1m", **bad)
    with pytest.raises(UnknownNameError, match="5m"):
        detect_pivots(ts, p, p, "5min")
    with pytest.raises(UnknownNameError):
        StreamingPivotDetector("X", "5min")


def test_close_times_never_precede_the_bar_close():
    ts, p = np.arange(3) * MINUTE, np.ones(3)
    with pytest.raises(LookAheadError):
        detect_pivots(ts, p, p, "1m", close_times=ts + MINUTE - 1)
    with pytest.raises(DataValidationError, match="non-decreasing"):
        detect_pivots(ts, p, p, "1m", close_times=np.array([5, 4, 6]) * MINUTE)
    det = StreamingPivotDetector("X", "1m")
    with pytest.raises(LookAheadError):
        det.update(0, 1.0, 1.0, close_time=MINUTE - 1)
    det.update(0, 1.0, 1.0, close_time=5 * MINUTE)
    with pytest.raises(DataValidationError, match="non-decreasing"):
        det.update(MINUTE, 1.0, 1.0, close_time=4 * MINUTE)


def test_rejected_bar_leaves_the_detector_unchanged():
    det = StreamingPivotDetector("X", "1m")
    det.update(0, 2.0, 1.0)
    before = det.state()
    with pytest.raises(DataValidationError):
        det.update(0, 2.0, 1.0)
    assert det.state() == before


# --------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------


def _random_table(size=400, seed=1):
    rng = np.random.default_rng(seed)
    low = rng.integers(1, 9, size).astype(float)
    high = low + rng.integers(0, 3, size)
    ts = np.arange(size, dtype=np.int64) * MINUTE
    return ts, high, low


def test_store_pivots_is_idempotent_and_exact(tmp_path):
    ts, high, low = _random_table()
    table = detect_pivots(ts, high, low, "1m", n=1, levels=3)
    con = duckdb.connect(str(tmp_path / "ett.duckdb"))
    ensure_schema(con)
    assert store_pivots(con, "ETH/USDT", "1m", table) == len(table) > 0
    assert store_pivots(con, "ETH/USDT", "1m", table) == 0
    stored = con.execute(
        "SELECT timestamp, pivot_type, level, price, strength, confirmed_at FROM pivot_points"
        " WHERE symbol = ? AND timeframe = ? ORDER BY confirmed_at, level, pivot_type DESC",
        ["ETH/USDT", "1m"],
    ).fetchall()
    expected = [
        (e.timestamp, e.pivot_type, e.level, e.price, e.strength, e.confirmed_at)
        for e in table.events("ETH/USDT", "1m")
    ]
    assert stored == expected
    ids = [r[0] for r in con.execute("SELECT id FROM pivot_points").fetchall()]
    assert len(set(ids)) == len(ids)
    con.close()


def test_store_pivots_adds_only_new_rows_and_keeps_symbols_apart(tmp_path):
    ts, high, low = _random_table()
    cut = 200
    prefix = detect_pivots(ts[:cut], high[:cut], low[:cut], "1m")
    full = detect_pivots(ts, high, low, "1m")
    con = duckdb.connect(str(tmp_path / "ett.duckdb"))
    ensure_schema(con)
    assert store_pivots(con, "A", "1m", prefix) == len(prefix)
    assert store_pivots(con, "A", "1m", full) == len(full) - len(prefix)
    assert store_pivots(con, "B", "1m", full) == len(full)
    assert store_pivots(con, "A", "5m", PivotTable.empty()) == 0
    assert con.execute("SELECT count(*) FROM pivot_points").fetchone()[0] == 2 * len(full)
    con.close()


def test_store_pivots_user_values_are_parameters_and_bad_input_changes_nothing(tmp_path):
    ts, high, low = _random_table(60)
    table = detect_pivots(ts, high, low, "1m")
    con = duckdb.connect(str(tmp_path / "ett.duckdb"))
    ensure_schema(con)
    evil = "x'); DROP TABLE pivot_points; --"
    assert store_pivots(con, evil, "1m", table) == len(table)
    assert con.execute(
        "SELECT count(*) FROM pivot_points WHERE symbol = ?", [evil]
    ).fetchone()[0] == len(table)
    with pytest.raises(UnknownNameError):
        store_pivots(con, "A", "1 minute", table)
    with pytest.raises(ConfigError):
        store_pivots(con, "", "1m", table)
    assert con.execute("SELECT count(*) FROM pivot_points").fetchone()[0] == len(table)


def test_store_pivots_rolls_back_on_failure(tmp_path):
    ts, high, low = _random_table(60)
    table = detect_pivots(ts, high, low, "1m")
    con = duckdb.connect(str(tmp_path / "ett.duckdb"))
    ensure_schema(con)
    # A NULL price in the last row violates NOT NULL: the statement fails
    # after earlier rows were valid, and nothing may remain.
    price = table.price.astype(object)
    price[-1] = None
    broken = PivotTable(table.bar_index, table.timestamp, price, table.level, table.is_low,
                        table.strength, table.confirmed_index, table.confirmed_at)
    with pytest.raises(duckdb.ConstraintException):
        store_pivots(con, "A", "1m", broken)
    assert con.execute("SELECT count(*) FROM pivot_points").fetchone()[0] == 0
    # The connection is usable afterwards (no transaction left open).
    assert store_pivots(con, "A", "1m", table) == len(table)


def test_store_pivots_joins_the_callers_transaction():
    ts, high, low = _random_table(60)
    table = detect_pivots(ts, high, low, "1m")
    con = duckdb.connect()
    ensure_schema(con)
    with pytest.raises(RuntimeError), transaction(con):
        assert store_pivots(con, "A", "1m", table) == len(table)
        raise RuntimeError("the caller's transaction fails after store_pivots")
    assert con.execute("SELECT count(*) FROM pivot_points").fetchone()[0] == 0
