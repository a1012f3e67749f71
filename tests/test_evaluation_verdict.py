"""The comparison and the verdict on tables whose truth is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _evaluation_data import ar_model_table, candle_table, noise_model_table, pivot_table, with_model

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.evaluation import Outcome, compare_losses, compare_predictions, judge, verdict

REPS = 300


def _judged(table, pivots=None, **options):
    comparison = compare_predictions(table, pivots, timeframe="1m", reps=REPS, **options)
    result = verdict(comparison)
    return comparison, result, {h.metric: h for h in result.headlines}


def test_a_planted_ar1_signal_beats_persistence_significantly():
    comparison, result, by_metric = _judged(ar_model_table(1500, phi=0.5, seed=0))
    mae = comparison.metrics["mae_close"]
    assert mae.best_baseline == "persistence"
    skill = mae.skill["persistence"]
    # the truth: MAE ratio sqrt(1 / (1 + phi^2 / (1 - phi^2))) = 0.866, a skill of about 13%
    assert 0.08 < skill.estimate < 0.19 and skill.low > 0
    assert mae.test.p_value < 0.05 and mae.test.statistic > 0
    assert by_metric["mae_close"].outcome is Outcome.BETTER
    assert result.text.startswith("The model beats persistence on close MAE by")
    assert ": significant." in result.text.split(" Also,")[0]


def test_ar1_direction_skill_is_only_momentum_so_the_last_candle_baseline_matches_it():
    """With phi > 0 the model calls the sign of the last move: exactly the last-candle rule."""
    comparison, result, by_metric = _judged(ar_model_table(1500, phi=0.5, seed=1))
    direction = comparison.metrics["direction_accuracy"]
    assert direction.values["model"].estimate > 0.6                # far above chance ...
    assert direction.skill["chance"].low > 0
    assert direction.best_baseline == "last candle"                 # ... but no better than momentum
    assert by_metric["direction_accuracy"].outcome is not Outcome.BETTER
    assert abs(direction.values["model"].estimate - direction.values["last candle"].estimate) < 0.01


def test_anti_momentum_direction_beats_every_naive_rule():
    comparison, _, by_metric = _judged(ar_model_table(1500, phi=-0.5, seed=2))
    direction = comparison.metrics["direction_accuracy"]
    assert direction.values["last candle"].estimate < 0.45           # momentum is wrong here
    assert by_metric["direction_accuracy"].outcome is Outcome.BETTER
    assert direction.test.p_model_better < 0.05
    assert direction.skill_vs_best.low > 0


def test_noise_on_a_random_walk_is_flagged_as_worse_than_persistence():
    comparison, result, by_metric = _judged(noise_model_table(1500, noise=0.5, seed=3))
    mae = comparison.metrics["mae_close"]
    assert mae.skill["persistence"].high < 0
    assert mae.test.p_model_better > 0.5
    assert by_metric["mae_close"].outcome is Outcome.WORSE and by_metric["mae_close"].loses
    assert result.text.startswith("WARNING: the model is significantly worse than persistence on close MAE")
    assert result.warnings[0] == by_metric["mae_close"].sentence


@pytest.mark.parametrize("seed", [4, 5, 6])
def test_a_useless_predictor_on_a_random_walk_does_not_beat_persistence(seed):
    """Persistence plus a tiny noise: the same forecast in expectation, a hair worse."""
    comparison, result, by_metric = _judged(noise_model_table(1500, noise=0.02, seed=seed))
    mae = comparison.metrics["mae_close"]
    assert by_metric["mae_close"].outcome is not Outcome.BETTER
    assert mae.skill["persistence"].low < 0                 # the interval covers 0 or lies below it
    assert mae.test.p_model_better > 0.05
    assert ": significant." not in result.text.split(" Also,")[0]


def test_not_significant_wording_for_a_small_gain():
    # a model exactly 0.5% better than persistence on average, with noise 40 times that gain
    rng = np.random.default_rng(0)
    baseline = np.abs(rng.normal(0, 1, 200)) + 1.0
    noise = rng.normal(0, 0.3, 200)
    model = baseline * 0.995 + (noise - noise.mean())
    mc = compare_losses("mae_close", {"model": model, "persistence": baseline}, reps=REPS)
    headline = judge(mc)
    assert headline.outcome is Outcome.NOT_SIGNIFICANT and not headline.loses
    assert headline.skill.estimate == pytest.approx(0.005)
    assert headline.sentence.startswith("The model beats persistence on close MAE by")
    assert headline.sentence.endswith(": not significant.")
    assert f"p = {mc.test.p_value:.2g}" in headline.sentence


def test_loud_flag_when_the_model_loses_without_significance():
    rng = np.random.default_rng(1)
    baseline = np.abs(rng.normal(0, 1, 200)) + 1.0
    noise = rng.normal(0, 0.3, 200)
    model = baseline * 1.005 + (noise - noise.mean())
    headline = judge(compare_losses("mae_close", {"model": model, "persistence": baseline}, reps=REPS))
    assert headline.loses and headline.outcome is Outcome.NOT_SIGNIFICANT
    assert headline.sentence.startswith("WARNING: the model loses to persistence on close MAE")


def test_too_few_predictions_say_so_instead_of_a_p_value():
    _, result, by_metric = _judged(ar_model_table(12, phi=0.5))
    headline = by_metric["mae_close"]
    assert headline.outcome is Outcome.TOO_FEW and math.isnan(headline.p_value)
    assert "Too few predictions to judge close MAE: 12 scored candles" in result.text
    assert "no p-value" in headline.sentence and "p =" not in headline.sentence


def test_a_model_that_is_persistence_has_no_difference_to_test():
    table = candle_table(200, seed=7)
    table = with_model(table, "model", table["last_close"])
    comparison, result, by_metric = _judged(table)
    assert by_metric["mae_close"].outcome is Outcome.NO_DIFFERENCE
    assert "same loss on every prediction" in by_metric["mae_close"].sentence
    assert any("same predictions as persistence" in note for note in comparison.notes)


def test_a_frozen_baseline_equal_to_persistence_is_dropped_and_a_different_one_kept():
    table = ar_model_table(300, phi=0.5, seed=8)
    same = with_model(table, "frozen", table["last_close"]).assign(**{"action.frozen": "HOLD"})
    comparison = compare_predictions(same, timeframe="1m", reps=50)
    assert "frozen" not in comparison.metrics["mae_close"].skill
    assert any("'frozen' made the same predictions as persistence" in note for note in comparison.notes)
    other = with_model(table, "frozen", table["last_close"] + np.random.default_rng(0).normal(0, 0.3, 300))
    comparison = compare_predictions(other, timeframe="1m", reps=50)
    assert set(comparison.metrics["mae_close"].skill) == {"persistence", "frozen"}
    assert "frozen" in comparison.metrics["direction_accuracy"].skill


def test_a_frozen_baseline_with_persistence_closes_but_its_own_actions_is_left_out_of_close_mae_only():
    """The untrained model of a run: its closes are the last close (to float32), its actions are not HOLD."""
    table = ar_model_table(300, phi=0.5, seed=8)
    actions = np.where(np.arange(300) % 3 == 0, "BUY", "SELL")
    frozen = with_model(table, "frozen", table["last_close"] * (1 + 1e-8)).assign(**{"action.frozen": actions})
    pivots = pivot_table(60, hit_rate=0.6, seed=3).assign(**{"action.frozen": "BUY"})
    comparison = compare_predictions(frozen, pivots, timeframe="1m", reps=50)
    assert set(comparison.metrics["mae_close"].skill) == {"persistence"}
    assert any("'frozen' predicted the same close as persistence" in note
               for note in comparison.metrics["mae_close"].notes)
    assert "frozen" in comparison.metrics["pivot_accuracy"].skill  # its actions still say something


def test_a_recorded_persistence_column_scores_like_chance_and_is_left_out_of_direction():
    table = ar_model_table(200, phi=0.5, seed=9)
    table = with_model(table, "persistence", table["last_close"])
    direction = compare_predictions(table, timeframe="1m", reps=50).metrics["direction_accuracy"]
    assert "persistence" not in direction.skill and "chance" in direction.skill
    assert direction.values["chance"].estimate == 0.5
    assert any("'persistence' scores exactly like 'chance'" in note for note in direction.notes)


def test_pivot_accuracy_against_chance_and_the_majority_so_far():
    table = ar_model_table(400, phi=0.5, seed=10)
    good = pivot_table(300, hit_rate=0.8, seed=1)
    comparison, result, by_metric = _judged(table, good)
    pivot = comparison.metrics["pivot_accuracy"]
    assert set(pivot.skill) == {"chance", "majority so far"}
    assert 0.74 < pivot.values["model"].estimate < 0.86
    assert by_metric["pivot_accuracy"].outcome is Outcome.BETTER
    assert "pivot accuracy: significantly better than" in result.text

    holding = good.assign(**{"action.model": "HOLD"})
    _, _, by_metric = _judged(table, holding)
    assert by_metric["pivot_accuracy"].outcome is not Outcome.BETTER
    assert by_metric["pivot_accuracy"].model_value.estimate == 0.5


def test_verdict_table_and_primary_metric():
    comparison, result, _ = _judged(ar_model_table(300, phi=0.5, seed=11), pivot_table(100, hit_rate=0.7))
    table = result.table()
    assert list(table["metric"]) == ["close MAE", "direction accuracy", "pivot accuracy"]
    assert {"model", "model low", "model high", "baseline", "skill", "skill low", "skill high", "DM p",
            "outcome"} <= set(table.columns)
    row = table.iloc[0]
    assert row["model low"] <= row["model"] <= row["model high"]
    other = verdict(comparison, primary="pivot_accuracy")
    assert other.headlines[0].metric == "pivot_accuracy" and other.text.startswith(other.headlines[0].sentence)
    with pytest.raises(UnknownNameError):
        verdict(comparison, primary="sharpe")
    with pytest.raises(ConfigError):
        judge(comparison.metrics["mae_close"], min_predictions=1)


def test_the_comparison_is_reproducible_from_its_seed():
    table = ar_model_table(300, phi=0.3, seed=12)
    a = compare_predictions(table, timeframe="1m", reps=100, seed=3).metrics["mae_close"]
    b = compare_predictions(table, timeframe="1m", reps=100, seed=3).metrics["mae_close"]
    assert a.values == b.values and a.skill == b.skill
