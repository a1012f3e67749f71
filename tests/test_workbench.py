"""The Workbench and its sessions: one entry point, nothing wired by hand, no silent failure.

Each case the wiring used to let through without a word now works or says
what is wrong: higher-timeframe windows without a resample step, an hourly
store with the default base, late inference-step subscriptions, run ids
that collide, subscriptions to streams a replay does not produce.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import numpy as np
import pytest

from conftest import START_MS
from ettlib.cli import main
from ettlib.errors import ConfigError
from ettlib.replay.events import CandleCompletionEvent, PivotEvent
from ettlib.replay import ReplayEngine
from ettlib.replay.provider import DataProvider
from ettlib.store.schema import CANDLE_COLUMNS, INDICATOR_COLUMNS
from ettlib.store import DuckDBStorage
from ettlib.training.adapters import RiverAdapter
from ettlib.experiment.config import ExperimentConfig
from ettlib.experiment.runner import run_experiment
from ettlib.workbench import Workbench

M, H = 60_000, 3_600_000
SYMBOL = "ETH/USDT"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def minute_db(tmp_path, make_candles):
    path = tmp_path / "m.duckdb"
    with DuckDBStorage(path) as store:
        store.ingest(make_candles(2_000), SYMBOL, "1m")
    return path


@pytest.fixture
def hourly_db(tmp_path, make_candles):
    """EURUSD as hourly candles only, as a forex history often comes."""
    path = tmp_path / "h.duckdb"
    with DuckDBStorage(path) as store:
        store.ingest(make_candles(24 * 40, timeframe="1h"), "EURUSD", "1h")
    return path


# ------------------------------------------------------------- windows of every timeframe


def test_higher_timeframe_windows_are_the_replays_own_candles_and_equal_a_stored_resample(minute_db):
    """A 5m window needs no resample step, and equals the resampled rows where the store has them."""
    with DuckDBStorage(minute_db) as store:
        store.resample(SYMBOL, "1m", "5m")  # the stored path, to compare against
        stored = store.read_candles(SYMBOL, "5m")
        session = Workbench(store).session(SYMBOL, timeframes=["5m", "15m"], columns=CANDLE_COLUMNS)
        session.run()
        replayed = session.window(SYMBOL, "5m", int(stored.timestamps[0]), int(stored.timestamps[-1]),
                                  CANDLE_COLUMNS)
        assert replayed.timestamps.tolist() == stored.timestamps.tolist()
        # OHLCV equal bit for bit; the indicators too, computed from the same first candle
        np.testing.assert_array_equal(replayed.values, stored.values)
        # a session that starts later warms the indicators up on the candles before its start
        late = Workbench(store).session(SYMBOL, START_MS + 1_000 * M, timeframes=["5m"], columns=CANDLE_COLUMNS)
        late.run()
        lo = START_MS + 1_000 * M
        window = late.window(SYMBOL, "5m", lo, int(stored.timestamps[-1]), CANDLE_COLUMNS)
        same = stored.timestamps >= lo
        np.testing.assert_array_equal(window.values[:, :5], stored.values[same][:, :5])
        np.testing.assert_allclose(window.values[:, 5:], stored.values[same][:, 5:], rtol=1e-9)
        assert not np.isnan(window.values[:, 5:]).any()  # warmed up: no indicator gap at the start
        # a session without them up front refuses an indicator of a higher timeframe, clearly
        plain = Workbench(store).session(SYMBOL, timeframes=["5m"])
        plain.run(until=START_MS + 600 * M)
        with pytest.raises(ConfigError, match="name them in the session's columns="):
            plain.window(SYMBOL, "5m", START_MS, START_MS + 100 * M, ("close", "rsi_14"))
        for s in (session, late, plain):
            s.close()


def test_a_5m_experiment_on_1m_data_learns_without_a_resample(minute_db):
    config = ExperimentConfig(db_path=str(minute_db), adapter="river", baselines=("persistence",),
                              timeframe="5m", context_length=12, pivot_types=("L1L", "L1H"))
    result = run_experiment(config, quiet=True)
    assert result.config.base_timeframe == "1m" and result.config.timeframe == "5m"
    assert result.metrics["frames"] > 300 and result.metrics["candle_pairs"] > 300
    with duckdb.connect(str(minute_db), read_only=True) as con:
        assert con.execute("SELECT count(*) FROM ohlcv_data WHERE timeframe = '5m'").fetchone()[0] == 0


def test_training_windows_from_the_cache_equal_the_stores(minute_db):
    """The frames of a 5m model read the same values from the replay's cache and from stored resampled rows."""
    with DuckDBStorage(minute_db) as store:
        store.resample(SYMBOL, "1m", "5m")
        frames = {}
        for use_cache in (True, False):
            session = Workbench(store).session(SYMBOL, timeframes=["5m"], use_cache=use_cache)
            got = []

            def predict(step, session=session, got=got):
                ref = session.register_prediction(step, 24, predicted_action="HOLD")
                if ref is not None:
                    got.append(session.coordinator.get_inference_data(ref).values)

            session.on_inference_step(SYMBOL, "5m", predict)
            session.run()
            frames[use_cache] = got
            session.close()
        assert len(frames[True]) > 300
        assert all(np.array_equal(a, b) for a, b in zip(frames[True], frames[False], strict=True))


# -------------------------------------------------------------------- the base timeframe


def test_an_hourly_store_replays_from_its_own_timeframe(hourly_db):
    with Workbench(hourly_db) as wb:
        session = wb.session("EURUSD", timeframes=["4h"], pivot_levels=2)
        assert session.base_timeframe == "1h"
        events = list(session.events())
        assert sum(isinstance(e, CandleCompletionEvent) and e.timeframe == "1h" for e in events) == 24 * 40
        assert any(isinstance(e, PivotEvent) for e in events)
        seen = []
        provider = DataProvider()
        provider.subscribe_candle_completion(seen.append, "EURUSD", "1h")
        engine = ReplayEngine(wb.store, provider, "EURUSD", START_MS, START_MS + 24 * 40 * H)
        assert engine.config.base_timeframe == "1h"  # not a silent 1m replay of nothing
        engine.run()
        assert len(seen) == 24 * 40
        with pytest.raises(ConfigError, match=r"no 1m candles of EURUSD .*stored: EURUSD: 1h"):
            wb.session("EURUSD", base_timeframe="1m")
        with pytest.raises(ConfigError, match=r"'30m' is not a whole multiple of the base timeframe '1h' "
                                              r"\(stored: EURUSD: 1h\)"):
            wb.session("EURUSD", timeframes=["30m"])
        with pytest.raises(ConfigError, match=r"no candles of GBPUSD .*stored: EURUSD: 1h"):
            wb.session("GBPUSD")


def test_the_command_line_just_works_on_an_hourly_store(hourly_db, capsys):
    assert main(["replay", "EURUSD", "--db", str(hourly_db)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"candle 1h\s+960", out) and re.search(r"candle 4h\s+240", out) and "candle 1d" in out
    assert main(["data", "pivots", "--symbol", "EURUSD", "--db", str(hourly_db)]) == 0
    found = int(re.search(r"EURUSD 1h: (\d+) pivots", capsys.readouterr().out).group(1))
    assert found > 50
    assert main(["run", "--db", str(hourly_db), "--symbol", "EURUSD", "--no-progress", "--json",
                 "-p", "adapter=persistence", "-p", "baselines=[]", "-p", "context_length=24"]) == 0
    assert json.loads(capsys.readouterr().out)["frames"] > 800
    assert main(["replay", "EURUSD", "--db", str(hourly_db), "--base", "1m"]) == 2
    assert "stored: EURUSD: 1h" in capsys.readouterr().err


# ------------------------------------------------------------------------- subscriptions


def test_inference_steps_can_be_subscribed_at_any_time_before_their_instant(minute_db):
    with Workbench(minute_db) as wb:
        session = wb.session(SYMBOL, timeframes=["5m"])
        steps = []
        join_at = START_MS + 10 * M

        def on_candle(event):  # subscribes from inside a callback, mid-run
            if event.close_time == join_at and not steps:
                session.on_inference_step(SYMBOL, "5m", steps.append)
                session.on_inference_step(SYMBOL, "1m", steps.append)

        session.subscribe_candle_completion(on_candle, SYMBOL, "1m")
        session.run(until=START_MS + 30 * M)
        one = [s.timestamp for s in steps if s.timeframe == "1m"]
        five = [s.timestamp for s in steps if s.timeframe == "5m"]
        assert one == list(range(join_at, START_MS + 30 * M + 1, M))  # from the instant it subscribed
        assert five == list(range(join_at, START_MS + 30 * M + 1, 5 * M))
        # the generator path too, and a stream nobody listens to yields no step events
        later = wb.session(SYMBOL, timeframes=["5m"])
        got = later.step(12)
        assert not any(type(e).__name__ == "InferenceStepEvent" for e in got)
        later.on_inference_step(SYMBOL, "1m", lambda step: None)
        assert any(type(e).__name__ == "InferenceStepEvent" for e in later.step(6))


def test_subscriptions_a_session_cannot_serve_are_refused(minute_db):
    with Workbench(minute_db) as wb:
        session = wb.session(SYMBOL, timeframes=["5m"], pivot_timeframes=["5m"])
        with pytest.raises(ConfigError, match="does not replay timeframe '15m'"):
            session.subscribe_candle_completion(print, SYMBOL, "15m")
        with pytest.raises(ConfigError, match="does not replay 'BTC/USDT'"):
            session.coordinator.subscribe_to_candle_completion(RiverAdapter(), "BTC/USDT", "1m")
        with pytest.raises(ConfigError, match="does not replay pivots on '1m'"):
            session.subscribe_pivot_events(print, SYMBOL, "1m", ["L1L"])
        with pytest.raises(ConfigError, match="trailing blanks"):
            session.on_inference_step(SYMBOL + " ", "1m", print)


# ------------------------------------------------------------------------------ run ids


def test_every_run_gets_a_unique_run_id_and_a_repeated_cell_works(minute_db, capsys):
    with Workbench(minute_db) as wb:  # an existing file: read-only, so results= it is refused
        assert wb.store.read_only
        with pytest.raises(ConfigError, match="open read-only.*give results= a file of its own"):
            wb.session(SYMBOL, results=wb.store)
    with Workbench(minute_db, read_only=False) as wb:
        ids = {wb.session(SYMBOL).run_id for _ in range(3)}
        assert len(ids) == 3 and all(i.startswith("explore-") for i in ids)
        recorded = wb.session(SYMBOL, end=START_MS + 60 * M, results=wb.store)
        recorded.run()
        recorded.close()
        again = wb.session(SYMBOL, end=START_MS + 60 * M, results=wb.store)  # the same cell, again
        again.run()
        again.close()
        assert recorded.run_id != again.run_id and recorded.run_id.startswith("run-")
        config = {"adapter": "persistence", "baselines": [], "context_length": 16, "end": START_MS + 300 * M}
        first, second = wb.run(config), wb.run(config)
    assert first.run_id != second.run_id
    printed = capsys.readouterr().out
    assert f"run {first.run_id}:" in printed and f"run {second.run_id}:" in printed
    assert first.metrics["model.mae_close"] == second.metrics["model.mae_close"]


def test_run_experiment_takes_an_adapter_object(minute_db):
    config = ExperimentConfig(db_path=str(minute_db), baselines=("persistence",), context_length=16,
                              end=START_MS + 600 * M)
    result = run_experiment(config, adapter=RiverAdapter(model="linear", learning_rate=0.005),
                            run_id="mine", quiet=True)
    assert result.config.adapter == "object:ettlib.training.adapters.river.RiverAdapter"
    assert result.metrics["candle_pairs"] > 400
    with duckdb.connect(result.results_db, read_only=True) as con:
        stored = ExperimentConfig.from_json(con.execute("SELECT config FROM runs WHERE run_id = 'mine'").fetchone()[0])
    assert stored.adapter == result.config.adapter
    with pytest.raises(ConfigError, match="pass the same kind of adapter object"):
        run_experiment(stored.replace(), run_id="again", quiet=True)
    with pytest.raises(ConfigError, match="TrainingAdapter"):
        run_experiment(config, adapter=object(), quiet=True)


# -------------------------------------------------------------------------------- docs


def test_the_repository_cites_no_file_outside_it():
    """The contract is docs/design.md; nothing points at documents the repository does not hold."""
    outside = re.compile(r"DESIGN\.md|\.\./shared|shared/seed|seed/event-driven|MEASURED\.md|STYLE\.md")
    offenders = []
    for path in REPO.rglob("*"):
        if (path.is_file() and ".git" not in path.parts and ".venv" not in path.parts
                and path.suffix in {".py", ".md", ".ipynb", ".yml", ".toml", ".sh", ".txt"}):
            if path.name != "test_workbench.py" and outside.search(path.read_text(errors="ignore")):
                offenders.append(str(path.relative_to(REPO)))
    assert offenders == []
    assert (REPO / "docs" / "design.md").is_file()
    for section in ("## Time", "## Events and their order", "## Pivots", "## Frames, matching, training",
                    "## The trust boundary", "## Storage"):
        assert section in (REPO / "docs" / "design.md").read_text()
