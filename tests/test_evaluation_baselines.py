"""The evaluation tables, the per-prediction scores and the baselines known at prediction time."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _evaluation_data import MINUTE, ar_model_table, candle_table, with_model
from hypothesis import given, settings
from hypothesis import strategies as st

from ettlib.errors import ConfigError, DataValidationError
from ettlib.evaluation import (
    action_scores,
    actual_direction,
    identical_predictions,
    last_candle_direction,
    majority_direction_so_far,
    model_direction_scores,
    model_names,
    pivot_majority_so_far,
    skill_score,
    validate_pivots,
    validate_predictions,
)
from ettlib.evaluation.table import PIVOT_COLUMNS, PREDICTION_COLUMNS, as_timeframe_ms

# ------------------------------------------------------------------ tables


@pytest.mark.parametrize("column", PREDICTION_COLUMNS)
def test_a_missing_prediction_column_is_named(column):
    table = ar_model_table(5, phi=0.0)
    with pytest.raises(DataValidationError, match=f"column '{column}'.*missing required column"):
        validate_predictions(table.drop(columns=column))


@pytest.mark.parametrize("column", PIVOT_COLUMNS)
def test_a_missing_pivot_column_is_named(column):
    pivots = pd.DataFrame({"symbol": ["X"], "pivot_time": [0], "confirmed_at": [60_000],
                           "implied_action": ["BUY"], "action.model": ["BUY"]})
    validate_pivots(pivots)
    with pytest.raises(DataValidationError, match=f"column '{column}'"):
        validate_pivots(pivots.drop(columns=column))


def test_a_model_needs_both_columns_and_known_actions():
    table = ar_model_table(5, phi=0.0)
    with pytest.raises(DataValidationError, match="column 'pred_close.model'"):
        validate_predictions(table.drop(columns="pred_close.model"))
    with pytest.raises(DataValidationError, match="column 'pred_close.frozen'"):
        validate_predictions(table, models=["model", "frozen"])
    with pytest.raises(DataValidationError, match="column 'action.frozen'"):   # a model named by one column
        validate_predictions(table.assign(**{"pred_close.frozen": 1.0}))
    bad = table.assign(**{"action.model": ["BUY", "SELL", "HOLD", "buy", "BUY"]})
    with pytest.raises(DataValidationError, match="row 4, column 'action.model', value 'buy'"):
        validate_predictions(bad)


def test_malformed_times_and_prices_are_refused_with_their_row():
    table = ar_model_table(5, phi=0.0)
    with pytest.raises(DataValidationError, match="column 'prediction_time'.*int64"):
        validate_predictions(table.assign(prediction_time=table["prediction_time"] / 1.0))
    with pytest.raises(DataValidationError, match="row 3, column 'prediction_time'.*order"):
        validate_predictions(table.assign(prediction_time=table["prediction_time"].to_numpy()[[0, 1, 0, 3, 4]],
                                          target_time=table["target_time"].to_numpy()[[0, 1, 0, 3, 4]] + 10**6))
    with pytest.raises(DataValidationError, match="row 2, column 'target_time'.*before prediction_time"):
        validate_predictions(table.assign(target_time=table["target_time"] - np.array([0, 1, 0, 0, 0])))
    prices = table["actual_close"].to_numpy().copy()
    prices[1] = np.nan
    with pytest.raises(DataValidationError, match="row 2, column 'actual_close'.*finite"):
        validate_predictions(table.assign(actual_close=prices))
    with pytest.raises(ConfigError, match="pandas DataFrame"):
        validate_predictions(table.to_dict())


def test_model_names_and_timeframes():
    assert model_names(ar_model_table(3, phi=0.0).assign(**{"action.frozen": "HOLD"})) == ("model", "frozen")
    assert as_timeframe_ms("1h") == 3_600_000
    for bad in (0, -5, 1.5, True, "5min"):
        with pytest.raises(ConfigError):
            as_timeframe_ms(bad)


# ------------------------------------------------------------------ scores


def test_persistence_scores_exactly_the_chance_line_not_zero():
    table = candle_table(400, seed=3)
    # persistence as a model would record it: through a float32 normalization round trip
    offset, scale = 1_000.0, 7.3
    x = ((table["last_close"].to_numpy() - offset) / scale).astype(np.float32)
    table = with_model(table, "persistence", x.astype(np.float64) * scale + offset)
    scores = model_direction_scores(table, "persistence")
    assert np.nanmean(scores) == 0.5
    assert set(np.unique(scores[~np.isnan(scores)])) == {0.5}


def test_flat_actual_moves_are_left_out_and_right_wrong_flat_calls_score_1_0_half():
    table = pd.DataFrame({"last_close": [10.0, 10.0, 10.0, 10.0], "actual_close": [11.0, 9.0, 10.0, 11.0],
                          "pred_close.m": [10.5, 10.5, 10.5, 10.0]})
    assert actual_direction(table).tolist() == [1.0, -1.0, 0.0, 1.0]
    np.testing.assert_array_equal(model_direction_scores(table, "m"), [1.0, 0.0, np.nan, 0.5])


def test_pivot_hold_is_no_call():
    assert action_scores(["BUY", "SELL", "HOLD", "HOLD"], ["BUY", "BUY", "BUY", "SELL"]).tolist() == [
        1.0, 0.0, 0.5, 0.5]


def test_skill_scores_for_a_loss_and_an_accuracy():
    assert skill_score([0.9, 1.1], [1.0, 1.0]) == pytest.approx(0.0)
    assert skill_score([0.8, 0.8], [1.0, 1.0]) == pytest.approx(0.2)     # MAE 20% lower
    # an accuracy of 60% against chance: error rates 0.4 vs 0.5, skill 2 * 0.6 - 1
    model_loss = 1.0 - np.array([1, 1, 1, 0, 0], dtype=float)
    assert skill_score(model_loss, np.full(5, 0.5)) == pytest.approx(0.2)
    assert skill_score([1.0, np.nan], [2.0, 0.0]) == pytest.approx(0.5)  # NaN rows dropped pairwise
    assert np.isnan(skill_score([1.0], [0.0]))


# ------------------------------------------------------------------ baselines


def test_last_candle_direction_is_the_sign_of_the_last_candle():
    table = candle_table(50, seed=1)
    expected = np.sign(table["last_close"] - table["last_open"]).to_numpy()
    np.testing.assert_array_equal(last_candle_direction(table), expected)


def _majority_by_brute_force(table: pd.DataFrame, step: int) -> np.ndarray:
    moves = np.sign(table["actual_close"] - table["last_close"]).to_numpy()
    out = np.zeros(len(table))
    for i in range(len(table)):
        known = ((table["symbol"] == table["symbol"].iloc[i])
                 & (table["target_time"] + step <= table["prediction_time"].iloc[i])).to_numpy()
        out[i] = np.sign((moves[known] > 0).sum() - (moves[known] < 0).sum())
    return out


def _random_table(seed: int, n: int, horizon_max: int, symbols: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    prediction = np.sort(rng.integers(0, 4 * n, n)) * MINUTE
    target = prediction + rng.integers(0, horizon_max + 1, n) * MINUTE
    last = rng.normal(100, 1, n).round(1)
    return pd.DataFrame({"symbol": rng.choice(["A", "B", "C"][:symbols], n), "prediction_time": prediction,
                         "target_time": target, "last_open": last + rng.normal(0, 1, n).round(1),
                         "last_close": last, "actual_open": last,
                         "actual_close": last + rng.choice([-1.0, 0.0, 1.0], n)})


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(1, 60), horizon_max=st.integers(0, 3),
       symbols=st.integers(1, 3))
def test_majority_so_far_matches_brute_force(seed, n, horizon_max, symbols):
    table = _random_table(seed, n, horizon_max, symbols)
    validate_predictions(table)
    np.testing.assert_array_equal(majority_direction_so_far(table, "1m"), _majority_by_brute_force(table, MINUTE))


def test_majority_so_far_never_sees_a_candle_that_had_not_closed():
    """Rewrite every row whose target had not closed by row i's prediction: row i's call is unchanged."""
    table = _random_table(7, 80, horizon_max=3, symbols=1)
    before = majority_direction_so_far(table, "1m")
    for i in range(len(table)):
        future = (table["target_time"] + MINUTE > table["prediction_time"].iloc[i]).to_numpy()
        assert future[i], "a row's own target closes after its prediction"
        for move in (+5.0, -5.0):   # every move not yet known goes up, then down
            rewritten = table.copy()
            rewritten.loc[future, "actual_close"] = rewritten.loc[future, "last_close"] + move
            assert majority_direction_so_far(rewritten, "1m")[i] == before[i]


def test_majority_so_far_counts_a_candle_from_its_close_exactly():
    # three one-candle predictions in a row, every move up
    table = candle_table(3, seed=0)
    table["actual_close"] = table["last_close"] + 1.0
    assert majority_direction_so_far(table, "1m").tolist() == [0.0, 1.0, 1.0]
    # on a 2m timeframe the first target (opening at t) closes at t + 2m: the second row cannot know it
    assert majority_direction_so_far(table, 2 * MINUTE).tolist() == [0.0, 0.0, 1.0]


def test_pivot_majority_counts_distinct_pivots_confirmed_strictly_before():
    rng = np.random.default_rng(5)
    n = 60
    pivot_time = np.sort(rng.integers(0, 30, n)) * MINUTE
    implied = np.where(pivot_time // MINUTE % 3 == 0, "SELL", "BUY")  # one action per pivot bar
    pivots = pd.DataFrame({"symbol": rng.choice(["A", "B"], n), "pivot_time": pivot_time,
                           # bars t and t + 1 can confirm at the same instant: neither sees the other
                           "confirmed_at": pivot_time + (2 + pivot_time // MINUTE % 2) * MINUTE,
                           "implied_action": implied})
    got = pivot_majority_so_far(pivots)
    distinct = pivots.drop_duplicates(["symbol", "pivot_time", "implied_action"])
    for i, row in pivots.iterrows():
        known = distinct[(distinct["symbol"] == row["symbol"]) & (distinct["confirmed_at"] < row["confirmed_at"])]
        balance = (known["implied_action"] == "BUY").sum() - (known["implied_action"] == "SELL").sum()
        assert got[i] == ("BUY" if balance > 0 else "SELL" if balance < 0 else "HOLD")


def test_identical_predictions_tells_frozen_from_persistence():
    table = candle_table(30, seed=2)
    same = with_model(table, "frozen", table["last_close"] * (1 + 1e-8)).assign(**{"action.frozen": "HOLD"})
    assert identical_predictions(same, "frozen", "persistence")
    different = with_model(table, "frozen", table["last_close"] + 0.01)
    assert not identical_predictions(different, "frozen", "persistence")
    actions_differ = same.assign(**{"action.frozen": "SELL"})
    assert not identical_predictions(actions_differ, "frozen", "persistence")
    with pytest.raises(DataValidationError, match="no pred_close or action columns in common"):
        identical_predictions(table, "frozen", "other")
