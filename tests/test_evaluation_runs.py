"""The evaluation of real runs on candles whose truth is known: a planted signal is found, a random walk is not.

Candles are written into a real DuckDB store; each closes ``r[t]`` after
the previous close, with AR(1) moves ``r[t] = phi * r[t-1] + e[t]``.  With
``phi = -0.5`` half of every move is undone on the next candle: a model that
learns this beats persistence on close MAE by about 13% (the MAE ratio is
``sqrt(1 - phi^2)`` for Gaussian shocks).  With ``phi = 0`` (a random walk)
nothing is predictable.  The run is a real experiment (River's online
linear model, the prequential scorer, the coordinator), evaluated from the
store alone by :func:`ettlib.notebooks.experiment.evaluate_run`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from ettlib.evaluation import Outcome
from ettlib.experiment.config import ExperimentConfig
from ettlib.experiment.runner import run_experiment
from ettlib.notebooks.experiment import evaluate_run
from ettlib.store import DuckDBStorage

T0 = 1_704_067_200_000
MINUTE = 60_000
CANDLES = 1000


def _store(path, phi: float, seed: int):
    rng = np.random.default_rng(seed)
    shocks = rng.normal(0.0, 1.0, CANDLES)
    moves = np.empty(CANDLES)
    moves[0] = shocks[0]
    for t in range(1, CANDLES):
        moves[t] = phi * moves[t - 1] + shocks[t]
    close = 2000.0 + np.cumsum(moves)
    open_ = np.concatenate([[2000.0], close[:-1]])
    frame = pd.DataFrame({"timestamp": T0 + MINUTE * np.arange(CANDLES, dtype=np.int64), "open": open_,
                          "high": np.maximum(open_, close) + 0.3, "low": np.minimum(open_, close) - 0.3,
                          "close": close, "volume": 10.0 + rng.random(CANDLES)})
    with DuckDBStorage(path) as storage:
        storage.ingest(frame, "ETH/USDT", "1m")


def _evaluate(tmp_path, phi: float, seed: int):
    db = tmp_path / "planted.duckdb"
    _store(db, phi, seed)
    result = run_experiment(ExperimentConfig(db_path=str(db), adapter="river", baselines=("persistence",),
                                             adapter_params={"learning_rate": 0.001}, context_length=16,
                                             seed=seed), quiet=True)
    return evaluate_run(db, result.run_id, timeframe="1m", reps=200, seed=0, fee_bps=0.0)


@pytest.mark.timeout(300)
def test_a_planted_signal_is_found_and_a_random_walk_is_not(tmp_path):
    planted = _evaluate(tmp_path / "a", phi=-0.5, seed=1)
    mae = planted.comparison.metrics["mae_close"]
    headline = planted.verdict.headlines[0]
    assert mae.best_baseline == "persistence" and mae.n > 900
    skill = mae.skill["persistence"]
    assert 0.04 < skill.estimate < 0.2 and skill.low > 0         # the truth: about 13% at best
    assert mae.test.p_value < 0.01 and mae.test.statistic > 0
    assert headline.outcome is Outcome.BETTER
    assert planted.verdict.text.startswith(
        f"The model beats persistence on close MAE by {skill.estimate:.1%} (")
    assert f"skill 95% CI {skill.low:.1%} to {skill.high:.1%}" in planted.verdict.text
    # anti-momentum: the direction beats every naive rule too
    direction = planted.comparison.metrics["direction_accuracy"]
    assert direction.values["model"].low > 0.5 and direction.skill_vs_best.low > 0

    walk = _evaluate(tmp_path / "b", phi=0.0, seed=2)
    mae = walk.comparison.metrics["mae_close"]
    headline = walk.verdict.headlines[0]
    assert headline.outcome is not Outcome.BETTER
    assert mae.skill["persistence"].low < 0 < mae.skill["persistence"].high or mae.skill["persistence"].high < 0
    assert not (mae.test.p_value < 0.05 and mae.test.statistic > 0)
    assert ": significant." not in walk.verdict.text.split(" Also,")[0]
    assert "not significant" in walk.verdict.text.split(" Also,")[0] or walk.verdict.text.startswith("WARNING")
    # a low pivot follows falls by definition: on a random walk, betting on the last candle
    # reversing is right far more often than chance, and the model must beat that rule too
    pivots = walk.comparison.metrics["pivot_accuracy"]
    assert pivots.values["last candle reversed"].low > 0.55
    assert pivots.best_baseline == "last candle reversed"
    assert {h.metric: h for h in walk.verdict.headlines}["pivot_accuracy"].outcome is not Outcome.BETTER
