"""ReplayEngine: events vs a naive reference, run vs iter, step/seek/cursor, pacing, errors."""

from __future__ import annotations

import json
import warnings

import duckdb
import numpy as np
import pytest
from conftest import make_candles
from _replay_reference import (
    MINUTE,
    Recorder,
    reference_events,
    strip_strength,
    write_candles,
)

from ettlib.replay.provider import DataProvider
from ettlib.errors import ConfigError, LookAheadError, SubscriberError
from ettlib.replay.events import CandleCompletionEvent, InferenceStepEvent, PivotEvent, event_sort_key
from ettlib.replay import ReplayCursor, ReplayEngine
from ettlib.store.schema import ensure_schema

TFS = ("1m", "5m", "15m", "1h")
END = 900 * MINUTE


@pytest.fixture(scope="module")
def market(tmp_path_factory):
    """Two symbols with gaps (one with rounded prices: ties), in a DuckDB file."""
    data = {"ETH/USDT": make_candles(700, start=0, seed=110, gap_prob=0.08, tick=0.05),
            "BTC/USDT": make_candles(650, start=0, seed=111, gap_prob=0.03)}
    path = tmp_path_factory.mktemp("replay") / "ett.duckdb"
    con = duckdb.connect(str(path))
    ensure_schema(con)
    for symbol, frame in data.items():
        write_candles(con, symbol, "1m", frame)
    yield con, data
    con.close()


def _engine(con, provider=None, **kw):
    kw.setdefault("timeframes", TFS)
    return ReplayEngine(con, provider or DataProvider(), ["ETH/USDT", "BTC/USDT"], 0, END, **kw)


def test_events_match_the_naive_reference(market):
    con, data = market
    steps = [("ETH/USDT", "5m"), ("BTC/USDT", "1m")]
    got = list(_engine(con, step_timeframes=steps).iter_events())
    want = reference_events(data, 0, END, timeframes=TFS, step_streams=set(steps))
    assert len(got) > 2000
    assert strip_strength(got) == want
    kinds = {type(e) for e in got}
    assert kinds == {CandleCompletionEvent, PivotEvent, InferenceStepEvent}


def test_order_is_the_contract_order_and_strict(market):
    con, _ = market
    got = list(_engine(con, step_timeframes=["5m"]).iter_events())
    keys = [event_sort_key(e) for e in got]
    assert all(a < b for a, b in zip(keys, keys[1:]))


def test_run_delivers_what_iter_events_yields(market):
    con, _ = market
    expected = list(_engine(con, step_timeframes=["15m"]).iter_events())
    provider = DataProvider()
    rec = Recorder(provider, ["ETH/USDT", "BTC/USDT"], TFS)
    for s in ("ETH/USDT", "BTC/USDT"):
        provider.subscribe_inference_step(rec, s, "15m")
    engine = _engine(con, provider, chunk_size=500)
    assert engine.run() == len(expected) == len(engine)
    assert rec.seen == expected
    assert engine.clock.now() == expected[-1].knowable_time


def test_only_subscribed_streams_are_delivered(market):
    con, _ = market
    expected = [e for e in _engine(con).iter_events()
                if isinstance(e, PivotEvent) and e.symbol == "BTC/USDT" and e.pivot_type == "L2H"
                and e.timeframe == "5m"]
    provider = DataProvider()
    seen = []
    provider.subscribe_pivot_events(seen.append, "BTC/USDT", "5m", ["L2H"])
    _engine(con, provider).run()
    assert seen == expected and expected


def test_same_inputs_same_events(market):
    con, _ = market
    assert list(_engine(con).iter_events()) == list(_engine(con).iter_events())


def test_step_returns_the_next_events(market):
    con, _ = market
    full = list(_engine(con).iter_events())
    engine = _engine(con)
    assert engine.step(3) == full[:3]
    assert engine.step(0) == []
    assert engine.step(5) == full[3:8]
    engine.run()
    assert engine.step(2) == []


def test_seek_forward_skips_without_delivering_and_backward_restarts(market):
    con, _ = market
    full = list(_engine(con).iter_events())
    provider = DataProvider()
    rec = Recorder(provider, ["ETH/USDT", "BTC/USDT"], TFS)
    engine = _engine(con, provider)
    t = 200 * MINUTE
    engine.seek(t)
    assert rec.seen == [] and engine.clock.now() == t
    rest = [e for e in full if e.knowable_time > t]
    assert engine.step(4) == rest[:4]
    engine.seek(10 * MINUTE)  # backwards: restart there
    assert engine.step(2) == [e for e in full if e.knowable_time > 10 * MINUTE][:2]


def test_cursor_is_json_and_resumes_the_same_remaining_events(market):
    con, _ = market
    full = list(_engine(con).iter_events())
    engine = _engine(con)
    engine.step(1234)
    text = engine.cursor().to_json()
    json.loads(text)  # plain JSON
    cursor = ReplayCursor.from_json(text)
    assert cursor == engine.cursor() and cursor.position == 1234
    provider = DataProvider()
    rec = Recorder(provider, ["ETH/USDT", "BTC/USDT"], TFS)
    resumed = ReplayEngine.resume(cursor, con, provider)
    assert resumed.clock.now() == full[1233].knowable_time
    resumed.run()
    assert rec.seen == [e for e in full[1234:] if not isinstance(e, InferenceStepEvent)]


def test_cursor_of_other_parameters_or_changed_data_is_refused(market, tmp_path):
    con, data = market
    engine = _engine(con)
    engine.step(10)
    cursor = engine.cursor()
    other = ReplayEngine(con, DataProvider(), ["ETH/USDT"], 0, END, timeframes=TFS)
    with pytest.raises(ConfigError):
        other.restore(cursor)
    con2 = duckdb.connect(str(tmp_path / "other.duckdb"))
    ensure_schema(con2)
    for symbol, frame in data.items():
        write_candles(con2, symbol, "1m", frame.iloc[:-40])
    with pytest.raises(ConfigError, match="data changed"):
        ReplayEngine.resume(cursor, con2, DataProvider())
    with pytest.raises(ConfigError):
        ReplayCursor.from_dict({"position": 1})


def test_speed_paces_with_the_injected_timer():
    con = duckdb.connect()
    ensure_schema(con)
    write_candles(con, "X", "1m", make_candles(20, start=0, seed=1))
    now = [0.0]
    slept = []

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds

    engine = ReplayEngine(con, DataProvider(), "X", 0, 19 * MINUTE, timeframes=["1m"],
                          pivot_timeframes=[], speed=60.0, sleep=sleep, timer=lambda: now[0])
    seen = []
    engine.provider.subscribe_candle_completion(seen.append, "X", "1m")
    assert engine.run(until=5 * MINUTE) == 5 and [e.close_time for e in seen][-1] == 5 * MINUTE
    engine.run()
    # 60x real time: one market minute per second, after the first event
    assert len(slept) == 19
    assert sum(slept) == pytest.approx(19.0)


def test_pacing_does_not_sleep_when_behind():
    con = duckdb.connect()
    ensure_schema(con)
    write_candles(con, "X", "1m", make_candles(5, start=0, seed=1))
    clock = iter(range(0, 10_000, 100))  # each timer read: 100 s later (slow consumer)
    slept = []
    engine = ReplayEngine(con, DataProvider(), "X", 0, 4 * MINUTE, timeframes=["1m"],
                          speed=1.0, sleep=slept.append, timer=lambda: float(next(clock)))
    engine.run()
    assert slept == []


def test_progress_bar_runs(market, capsys):
    con, _ = market
    engine = _engine(con, progress=True)
    assert engine.run() == len(engine)


def test_timeframes_default_to_the_subscriptions(market):
    con, _ = market
    provider = DataProvider()
    provider.subscribe_candle_completion(print, "ETH/USDT", "15m")
    provider.subscribe_pivot_events(print, "BTC/USDT", "5m", ["L1L"])
    provider.subscribe_candle_completion(print, "SOL/USDT", "1h")  # not replayed
    engine = ReplayEngine(con, provider, ["ETH/USDT", "BTC/USDT"], 0, END)
    assert engine.config.timeframes == ("1m", "5m", "15m")
    with pytest.raises(ConfigError):
        ReplayEngine(con, provider, ["ETH/USDT"], 0, END, base_timeframe="1h")
    with pytest.raises(ConfigError):
        ReplayEngine(con, provider, ["ETH/USDT"], END, 0)
    with pytest.raises(ConfigError):
        ReplayEngine(con, provider, [], 0, END)


def test_on_error_raise_stops_with_the_event_and_resumes_after_it(market):
    con, _ = market
    full = [e for e in _engine(con).iter_events() if e.timeframe == "5m"
            and isinstance(e, CandleCompletionEvent)]
    provider = DataProvider(on_error="raise")
    seen = []

    def fragile(event):
        seen.append(event)
        if len(seen) == 3:
            raise ValueError("boom")

    provider.subscribe_candle_completion(fragile, "ETH/USDT", "5m")
    provider.subscribe_candle_completion(fragile, "BTC/USDT", "5m")
    engine = _engine(con, provider)
    with pytest.raises(SubscriberError) as err:
        engine.run()
    assert err.value.event == full[2] and isinstance(err.value.__cause__, ValueError)
    assert engine.clock.now() == full[2].knowable_time
    engine.run()  # continues after the failing event, which is not repeated
    assert seen == full


@pytest.mark.parametrize("mode", ["run", "iter"])
def test_on_error_warn_records_and_keeps_delivering(market, mode):
    con, _ = market
    provider = DataProvider(on_error="warn")
    good, bad_calls = [], []

    def bad(event):
        bad_calls.append(event)
        raise RuntimeError("always")

    provider.subscribe_candle_completion(bad, "ETH/USDT", "15m")
    provider.subscribe_candle_completion(good.append, "ETH/USDT", "15m")  # same stream: fan-out
    engine = _engine(con, provider)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if mode == "run":
            engine.run()
        else:
            list(engine.iter_events())
    assert len(good) == len(bad_calls) == len(provider.errors) > 10
    assert [e for _, e, _ in provider.errors] == good
    assert engine.position == len(engine)


def test_subscribing_and_unsubscribing_during_run(market):
    con, _ = market
    full = list(_engine(con).iter_events())
    provider = DataProvider()
    late, ones = [], []
    holder = {}

    def first(event):
        ones.append(event)
        if len(ones) == 50:
            holder["sub"].unsubscribe()
            provider.subscribe_candle_completion(late.append, "BTC/USDT", "1h")

    holder["sub"] = provider.subscribe_candle_completion(first, "ETH/USDT", "1m")
    _engine(con, provider, chunk_size=10_000).run()
    eth_1m = [e for e in full if e.timeframe == "1m" and e.symbol == "ETH/USDT"
              and isinstance(e, CandleCompletionEvent)]
    assert ones == eth_1m[:50]
    cut = full.index(eth_1m[49])
    assert late == [e for e in full[cut + 1:] if e.timeframe == "1h" and e.symbol == "BTC/USDT"
                    and isinstance(e, CandleCompletionEvent)]
    assert late


def test_cache_windows_are_the_stored_rows_and_refuse_the_future(market):
    con, _ = market
    provider = DataProvider()
    checked = []

    def on_candle(event):
        cache = engine.cache
        last = event.timestamp
        w = cache.window("ETH/USDT", "1m", last - 30 * MINUTE, last, ("open", "close"))
        rows = con.execute(
            "SELECT timestamp, open, close FROM ohlcv_data WHERE symbol = 'ETH/USDT' AND timeframe = '1m'"
            " AND timestamp BETWEEN ? AND ? ORDER BY timestamp", [last - 30 * MINUTE, last]).fetchall()
        assert w.timestamps.tolist() == [r[0] for r in rows]
        assert w.values.tolist() == [[r[1], r[2]] for r in rows]
        with pytest.raises(LookAheadError):
            cache.window("ETH/USDT", "1m", last, last + MINUTE)
        checked.append(event)

    provider.subscribe_candle_completion(on_candle, "ETH/USDT", "1m")
    engine = _engine(con, provider)
    engine.run(until=300 * MINUTE)
    assert len(checked) > 200
    # indicator columns are loaded lazily; outside the loaded range: None
    w = engine.cache.window("ETH/USDT", "1m", 0, 100 * MINUTE, ("close", "rsi_14"))
    assert w.values.shape[1] == 2 and np.isnan(w.values[:, 1]).all()
    assert engine.cache.window("ETH/USDT", "1m", -10**12, 0) is None
    w.values[0, 0] = -1.0  # a subset of columns is a copy: the cache is unaffected
    assert engine.cache.window("ETH/USDT", "1m", 0, 0, ("close",)).values[0, 0] != -1.0
    view = engine.cache.window("ETH/USDT", "1m", 0, 100 * MINUTE)  # all columns: a view
    with pytest.raises(ValueError):
        view.values[0, 0] = 1.0  # read-only: the cache cannot be corrupted


def test_storage_object_with_read_candles(tmp_path):
    store = pytest.importorskip("ettlib.store")
    frame = make_candles(300, start=0, seed=5, gap_prob=0.05)
    with store.DuckDBStorage(tmp_path / "s.duckdb") as storage:
        write_candles(storage.con, "ETH/USDT", "1m", frame)
        got = list(ReplayEngine(storage, DataProvider(), "ETH/USDT", 0, 10**9,
                                timeframes=["1m", "5m"]).iter_events())
    want = reference_events({"ETH/USDT": frame}, 0, 10**9, timeframes=("1m", "5m"))
    assert strip_strength(got) == want


def test_times_may_be_given_as_dates(market):
    con, _ = market
    engine = ReplayEngine(con, DataProvider(), "ETH/USDT", "1970-01-01", "1970-01-01 01:00",
                          timeframes=["1m"])
    assert (engine.start, engine.end) == (0, 60 * MINUTE)
    with pytest.raises(ConfigError):
        ReplayEngine(con, DataProvider(), "ETH/USDT", "yesterday-ish", 0)


def test_cache_loads_in_chunks_exactly_what_duckdb_holds(market):
    from ettlib.replay.cache import CandleCache
    from ettlib.clock import ReplayClock
    from ettlib.errors import UnknownNameError

    con, data = market
    con.execute("UPDATE ohlcv_data SET rsi_14 = close / 2 WHERE symbol = 'BTC/USDT'"
                " AND timestamp % 120000 = 0")
    columns = ("open", "close", "rsi_14")
    small = CandleCache(con, columns=columns, chunk_rows=7)  # many chunks, gaps inside
    big = CandleCache(con, columns=columns)
    a = small.load("BTC/USDT", "1m", 0, END)
    b = big.load("BTC/USDT", "1m", 0, END)
    rows = con.execute(
        "SELECT timestamp, open, close, rsi_14 FROM ohlcv_data WHERE symbol = 'BTC/USDT'"
        " AND timeframe = '1m' AND timestamp BETWEEN 0 AND ? ORDER BY timestamp", [END]).fetchall()
    assert a.timestamps.tolist() == b.timestamps.tolist() == [r[0] for r in rows]
    want = np.array([[r[1], r[2], np.nan if r[3] is None else r[3]] for r in rows])
    np.testing.assert_array_equal(a.values, want)  # NULL -> NaN, same positions
    np.testing.assert_array_equal(b.values, want)
    assert small.covers("BTC/USDT", "1m", 0, END) and not small.covers("BTC/USDT", "1m", -1, 0)
    w = small.window("BTC/USDT", "1m", 100 * MINUTE, 130 * MINUTE, ("close",))
    assert w.timestamps.tolist() == [r[0] for r in rows if 100 * MINUTE <= r[0] <= 130 * MINUTE]
    with pytest.raises(UnknownNameError):
        small.window("BTC/USDT", "1m", 0, MINUTE, ("clsoe",))
    small.clock = ReplayClock(None)  # a clock with nothing known yet refuses everything
    with pytest.raises(LookAheadError):
        small.window("BTC/USDT", "1m", 0, 0)
    con.execute("UPDATE ohlcv_data SET rsi_14 = NULL")


def test_fast_built_events_are_ordinary_immutable_events(market):
    con, _ = market
    provider = DataProvider()
    got = []
    provider.subscribe_candle_completion(got.append, "ETH/USDT", "5m")
    provider.subscribe_pivot_events(got.append, "ETH/USDT", "1m", ["L1L", "L2H"])
    _engine(con, provider, step_timeframes=["1h"]).run()
    assert {type(e) for e in got} == {CandleCompletionEvent, PivotEvent}
    for event in got[:50]:
        cls = type(event)
        twin = cls(*(getattr(event, name) for name in cls._fields))
        assert event == twin and hash(event) == hash(twin) and repr(event) == repr(twin)
        with pytest.raises(AttributeError):
            event.timestamp = 0
        assert isinstance(event.timestamp, int) and isinstance(event.knowable_time, int)


def test_subscriptions_the_replay_cannot_serve_are_warned_about(market):
    con, _ = market
    provider = DataProvider()
    engine = _engine(con, provider, timeframes=["1m", "5m"])
    provider.subscribe_inference_step(print, "ETH/USDT", "5m")  # after the engine was made
    provider.subscribe_candle_completion(print, "ETH/USDT", "1h")  # not replayed
    with pytest.warns(UserWarning) as record:
        engine.step(1)  # the replay starts
    text = " ".join(str(w.message) for w in record)
    assert "('ETH/USDT', '5m')" in text and "'1h'" in text
