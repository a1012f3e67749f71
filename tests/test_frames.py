"""InferenceFrameReference (validation, rows, memory) and the normalization contract."""

from __future__ import annotations

import dataclasses
import pickle
import tracemalloc
import uuid
from datetime import datetime, timezone

import duckdb
import numpy as np
import pandas as pd
import pytest

from ettlib.store.candles import CandleArrays
from ettlib.errors import DataValidationError, UnknownNameError
from ettlib.coordinator.persistence import Checkpoint, commit_flush, load_pending_frames
from ettlib.coordinator.frames import InferenceFrameReference, NormParams, window_bounds
from ettlib.coordinator.normalization import compute_norm_params, normalize
from ettlib.store.schema import CANDLE_COLUMNS, ensure_schema

M = 60_000
T0 = 1_704_067_200_000  # 2024-01-01, on every grid
P = {"price_offset": 100.0, "price_scale": 2.0, "volume_offset": 10.0, "volume_scale": 3.0}


def frame(**changes):
    fields = dict(
        inference_id=1,
        symbol="ETH/USDT",
        timeframe="1m",
        prediction_timestamp=T0,
        target_timestamp=T0,
        data_range_start=T0 - 600 * M,
        data_range_end=T0 - M,
        norm_params=P,
        predicted_action="BUY",
        predicted_candle=(1.0, 2.0, 0.5, 1.5, 10.0),
        confidence=0.5,
    )
    fields.update(changes)
    return InferenceFrameReference(**fields)


# -- validation ------------------------------------------------------------------


def test_valid_frame_keeps_fields_and_is_frozen_and_slotted():
    ref = frame()
    assert ref.data_range_end + M == ref.prediction_timestamp
    assert ref.norm_params == P and isinstance(ref.norm_params, NormParams)
    assert ref.context_candles == 600
    assert not hasattr(ref, "__dict__")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ref.confidence = 0.9
    with pytest.raises(AttributeError):
        ref.norm_params.price_scale = 5.0
    assert pickle.loads(pickle.dumps(ref)) == ref


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"data_range_start": T0 - M, "data_range_end": T0 - 2 * M}, "data_range_start"),
        ({"target_timestamp": T0 - M}, "target_timestamp"),
        # the last input candle closes after the prediction: look-ahead
        ({"data_range_end": T0, "target_timestamp": T0 + M}, "data_range_end"),
        # the predicted candle had already closed at prediction time
        ({"prediction_timestamp": T0 + 2 * M, "data_range_end": T0 - M, "target_timestamp": T0}, "target_timestamp"),
        ({"data_range_start": T0 - 600 * M + 1}, "data_range_start"),
        ({"confidence": 1.01}, "confidence"),
        ({"confidence": -0.1}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"predicted_action": "buy"}, "predicted_action"),
        ({"predicted_candle": (1.0, float("inf"))}, "predicted_candle"),
        ({"inference_id": "123"}, "inference_id"),
        ({"inference_id": 1.5}, "inference_id"),
        ({"symbol": " "}, "symbol"),
        ({"prediction_timestamp": 1.7e12 + 0.5}, "prediction_timestamp"),
        ({"prediction_timestamp": "soon"}, "prediction_timestamp"),
    ],
)
def test_invalid_frames_name_the_field(changes, field):
    with pytest.raises(DataValidationError) as info:
        frame(**changes)
    assert info.value.column == field


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"data_range_start": T0 - M, "data_range_end": T0 - 2 * M}, "data_range_start"),
        ({"target_timestamp": T0 - M}, "target_timestamp"),
        ({"data_range_end": T0, "target_timestamp": T0 + M}, "data_range_end"),
        ({"prediction_timestamp": T0 + 2 * M, "data_range_end": T0 - M, "target_timestamp": T0}, "target_timestamp"),
        ({"target_timestamp": T0 + 1}, "target_timestamp"),
        ({"confidence": 1.01}, "confidence"),
        ({"confidence": float("nan")}, "confidence"),
        ({"predicted_candle": (1.0, float("nan"))}, "predicted_candle"),
        ({"predicted_candle": (1.0, float("-inf"))}, "predicted_candle"),
        ({"inference_id": True}, "inference_id"),
        ({"symbol": ""}, "symbol"),
    ],
)
def test_invalid_frames_of_exact_types_name_the_field(changes, field):
    # exact types (int ids and times, NormParams, float tuple): the constructor's fast path
    with pytest.raises(DataValidationError) as info:
        frame(norm_params=NormParams(**P), **changes)
    assert info.value.column == field


def test_fast_and_general_construction_give_equal_frames():
    fast = frame(norm_params=NormParams(**P), inference_id=7, predicted_candle=(1.0, 2.0))
    general = frame(norm_params=dict(P), inference_id=np.int64(7), predicted_candle=[1, 2.0],
                    confidence=np.float64(0.5), symbol="".join(["ETH/", "USDT"]),
                    prediction_timestamp=np.int64(T0))
    assert fast == general and hash(fast) == hash(general)
    assert type(general.predicted_candle) is tuple and type(general.predicted_candle[0]) is float
    assert fast.symbol is general.symbol  # interned: one string per symbol
    assert dataclasses.replace(fast, confidence=0.25).confidence == 0.25
    with pytest.raises(DataValidationError):
        dataclasses.replace(fast, confidence=2.0)


def test_unknown_timeframe_and_norm_key_suggest_names():
    with pytest.raises(UnknownNameError, match="did you mean"):
        frame(timeframe="1min")
    with pytest.raises(UnknownNameError, match="price_scale"):
        frame(norm_params={**{k: v for k, v in P.items() if k != "price_scale"}, "price_scal": 2.0})
    with pytest.raises(DataValidationError):
        frame(norm_params={**P, "volume_scale": 0.0})


def test_ids_times_and_numbers_are_normalized():
    uid = str(uuid.uuid4())
    assert frame(inference_id=uid).inference_id == uid
    ref = frame(inference_id=np.int64(5), prediction_timestamp=datetime(2024, 1, 1, tzinfo=timezone.utc),
                confidence=np.float32(0.25))
    assert type(ref.inference_id) is int and ref.prediction_timestamp == T0
    assert type(ref.confidence) is float
    # a live prediction off the grid is allowed; the window ends at the last closed candle
    live = InferenceFrameReference.for_prediction(2, "ETH/USDT", "1m", T0 + 12_345, context=3, norm_params=P,
                                                  predicted_action="HOLD", confidence=1)
    assert (live.data_range_end, live.target_timestamp) == (T0 - M, T0)


def test_for_prediction_bounds_and_gaps():
    ref = InferenceFrameReference.for_prediction(3, "ETH/USDT", "5m", T0, context=600, norm_params=P,
                                                 predicted_action="SELL", confidence=0.1, horizon=3)
    tf = 5 * M
    assert ref.data_range_start == T0 - 600 * tf
    assert ref.data_range_end == T0 - tf
    assert ref.target_timestamp == T0 + 2 * tf
    # with gaps: the window still holds `context` present candles
    present = np.sort(T0 - M * np.array([20, 19, 18, 10, 9, 3, 2, 1, 0]))
    start, end = window_bounds(T0, "1m", 4, present)
    before = present[present <= T0 - M]
    assert end == T0 - M and start == before[-4]
    assert len(before[(before >= start) & (before <= end)]) == 4
    assert window_bounds(T0, "1m", 100, present)[0] == present[0]


def test_row_round_trip_through_duckdb():
    con = duckdb.connect()
    ensure_schema(con)
    refs = [frame(inference_id=i, predicted_candle=(float(i),)) for i in range(1, 4)]
    refs.append(frame(inference_id=str(uuid.uuid4()), predicted_candle=()))
    commit_flush(con, "r", pending=refs, checkpoint=Checkpoint(T0, 0, 4))
    assert load_pending_frames(con, "r") == sorted(refs, key=lambda r: (r.prediction_timestamp, str(r.inference_id)))
    assert load_pending_frames(con, "other") == []


def test_reference_is_under_one_percent_of_its_window():
    window_bytes = 600 * len(CANDLE_COLUMNS) * 8
    n = 20_000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        refs = [
            InferenceFrameReference.for_prediction(
                10**9 + i, "ETH/USDT", "1m", T0 + i * M, context=600,
                norm_params={"price_offset": 100.0 + i, "price_scale": 2.0 + i, "volume_offset": 10.0 + i,
                             "volume_scale": 3.0 + i},
                predicted_action="BUY", predicted_candle=(1.0 + i, 2.0 + i, 0.5 + i, 1.5 + i, 10.0 + i),
                confidence=0.7)
            for i in range(n)
        ]
        per_ref = (tracemalloc.get_traced_memory()[0] - before) / n
    finally:
        tracemalloc.stop()
    assert len(refs) == n
    assert per_ref <= 0.01 * window_bytes, per_ref
    assert per_ref * 100_000 <= 80e6


# -- normalization -----------------------------------------------------------------


def window(n=600, seed=0):
    rng = np.random.default_rng(seed)
    close = 100 + np.cumsum(rng.normal(0, 1, n))
    frame = pd.DataFrame({"open": close + rng.normal(0, 0.1, n), "close": close})
    frame["high"] = frame[["open", "close"]].max(axis=1) + 0.2
    frame["low"] = frame[["open", "close"]].min(axis=1) - 0.2
    frame["volume"] = rng.gamma(2.0, 5.0, n)
    frame["sma_10"] = frame["close"].rolling(10).mean()
    frame["rsi_14"] = rng.uniform(0, 100, n)
    frame.loc[:13, "rsi_14"] = np.nan
    frame["macd"] = frame["close"].ewm(span=12).mean() - frame["close"].ewm(span=26).mean()
    frame["atr_14"] = (frame["high"] - frame["low"]).rolling(14).mean()
    frame["bb_upper"] = frame["sma_10"] + 2
    columns = ("open", "high", "low", "close", "volume", "sma_10", "rsi_14", "macd", "atr_14", "bb_upper")
    return CandleArrays(np.arange(n, dtype=np.int64) * M, frame[list(columns)].to_numpy(), columns)


def test_norm_params_match_pandas():
    w = window()
    close = pd.Series(w.column("close"))
    volume = pd.Series(w.column("volume"))
    p = compute_norm_params(w)
    assert p["price_offset"] == pytest.approx(close.mean(), rel=1e-12)
    assert p["price_scale"] == pytest.approx(close.std(ddof=0), rel=1e-12)
    assert p["volume_offset"] == pytest.approx(volume.mean(), rel=1e-12)
    assert p["volume_scale"] == pytest.approx(volume.std(ddof=0), rel=1e-12)
    flat = CandleArrays(np.arange(3), np.array([[5.0, 0.0]] * 3), ("close", "volume"))
    q = compute_norm_params(flat)
    assert q["price_scale"] > 0 and q["volume_scale"] > 0
    assert not normalize(flat.values, flat.columns, q).any()
    with pytest.raises(DataValidationError):
        compute_norm_params(CandleArrays(np.arange(0), np.empty((0, 2)), ("close", "volume")))


def test_normalize_matches_a_column_by_column_reference():
    w = window()
    p = compute_norm_params(w)
    got = normalize(w.values, w.columns, p, dtype=np.float64)
    rules = {
        "open": lambda x: (x - p["price_offset"]) / p["price_scale"],
        "volume": lambda x: (x - p["volume_offset"]) / p["volume_scale"],
        "rsi_14": lambda x: (x - 50) / 50,
        "macd": lambda x: x / p["price_scale"],
    }
    for j, column in enumerate(w.columns):
        rule = rules.get(column)
        if rule is None:
            rule = rules["macd"] if column.startswith("atr") else rules["open"]
        expected = np.nan_to_num(rule(w.values[:, j]), nan=0.0)
        np.testing.assert_allclose(got[:, j], expected, rtol=1e-12, atol=1e-12, err_msg=column)
    assert not np.isnan(got).any()
    assert np.isnan(w.values).any() and (got[np.isnan(w.values)] == 0).all()
    f32 = normalize(w.values, w.columns, p)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, got, rtol=1e-5, atol=1e-5)
    # float32 is the rounding of the float64 result, computed at full precision
    np.testing.assert_array_equal(f32, got.astype(np.float32))


@pytest.mark.parametrize("n", [0, 1, 2, 7, 97, 600, 601, 1031])
def test_normalize_equals_a_plain_broadcast_for_any_window_length(n):
    # reference: the rule as one numpy broadcast over rows, then NaN -> 0
    w = window(n=max(n, 30), seed=n)
    values = w.values[:n].copy()
    if n > 20:
        values[n // 2, 0] = np.nan  # NaN in the middle of the window, not only at warm-up
    p = compute_norm_params(window(seed=1))
    kinds = {"open": "price", "high": "price", "low": "price", "close": "price", "sma_10": "price",
             "bb_upper": "price", "macd": "diff", "atr_14": "diff", "volume": "volume", "rsi_14": "rsi"}
    offset = {"price": p["price_offset"], "diff": 0.0, "volume": p["volume_offset"], "rsi": 50.0}
    scale = {"price": p["price_scale"], "diff": p["price_scale"], "volume": p["volume_scale"], "rsi": 50.0}
    off = np.array([offset[kinds[c]] for c in w.columns])
    inv = 1.0 / np.array([scale[kinds[c]] for c in w.columns])
    expected = np.nan_to_num(((values - off) * inv).astype(np.float32), nan=0.0)
    for given in (values, np.asfortranarray(values)):
        got = normalize(given, w.columns, p)
        assert got.shape == (n, len(w.columns)) and got.flags.c_contiguous
        np.testing.assert_array_equal(got, expected)


def test_normalize_is_deterministic_and_does_not_touch_its_input():
    w = window(seed=3)
    original = w.values.copy()
    p = compute_norm_params(w)
    a = normalize(w.values, w.columns, p)
    b = normalize(w.values.copy(), list(w.columns), NormParams.coerce(p))
    assert a.tobytes() == b.tobytes()
    np.testing.assert_array_equal(w.values, original)
    with pytest.raises(UnknownNameError):
        normalize(w.values[:, :1], ("pivot_strength",), p)
    with pytest.raises(DataValidationError):
        normalize(w.values, w.columns[:-1], p)


@pytest.mark.parametrize("n", [1, 2, 7, 64, 601])
def test_window_normalizer_is_compute_norm_params_then_normalize(n):
    """The inference loop's one-call path gives the same parameters and the same bits."""
    from ettlib.coordinator.window_norm import WindowNormalizer

    w = window(n=max(n, 30), seed=n)
    values = w.values[:n].copy()
    values[:, w.columns.index("volume")] *= 1e3
    if n > 20:
        values[n // 2, w.columns.index("sma_10")] = np.nan  # NaN outside close/volume: 0, as normalize
    rules = WindowNormalizer(w.columns)
    for given in (values, np.asfortranarray(values), values.astype(np.float32)):
        params, got = rules(given)
        raw = CandleArrays(w.timestamps[:n], np.asarray(given, dtype=np.float64), w.columns)
        expected = compute_norm_params(raw)
        assert type(params) is NormParams and params.astuple() == tuple(expected.values())
        assert got.dtype == np.float32 and got.tobytes() == normalize(raw.values, w.columns, expected).tobytes()
    flat = np.array([[5.0, 0.0]] * 3)
    params, got = WindowNormalizer(("close", "volume"))(flat)  # the scale floor
    assert params == compute_norm_params(CandleArrays(np.arange(3), flat, ("close", "volume")))
    assert not got.any()


def test_window_normalizer_refuses_what_compute_norm_params_refuses():
    from ettlib.coordinator.window_norm import WindowNormalizer

    rules = WindowNormalizer(("close", "volume"))
    with pytest.raises(DataValidationError, match="empty"):
        rules(np.empty((0, 2)))
    with pytest.raises(DataValidationError, match="shape"):
        rules(np.ones((3, 3)))
    for bad in (np.nan, np.inf):
        for j, name in enumerate(("close", "volume")):
            values = np.ones((4, 2))
            values[1, j] = bad
            with pytest.raises(DataValidationError, match="finite") as err:
                rules(values)
            assert name in str(err.value)
            with pytest.raises(DataValidationError, match="finite"):
                compute_norm_params(CandleArrays(np.arange(4), values, ("close", "volume")))
    with pytest.raises(UnknownNameError):
        WindowNormalizer(("close", "high"))
