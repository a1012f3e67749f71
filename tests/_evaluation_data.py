"""Synthetic prediction and pivot tables whose truth is known, for the evaluation tests.

Candles follow ``close[t] = close[t-1] + r[t]`` with AR(1) moves
``r[t] = phi * r[t-1] + e[t]`` (``phi = 0``: a random walk), and each candle
opens at the previous close.  Row ``t`` predicts candle ``t`` from candle
``t - 1``, so ``last_close - last_open = r[t-1]`` is known at prediction time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from conftest import START_MS

MINUTE = 60_000


def ar_moves(n: int, phi: float, seed: int, scale: float = 1.0) -> np.ndarray:
    """``n + 1`` AR(1) moves with coefficient ``phi`` and N(0, scale^2) shocks."""
    shocks = np.random.default_rng(seed).normal(0.0, scale, n + 1)
    moves = np.empty(n + 1)
    moves[0] = shocks[0]
    for t in range(1, n + 1):
        moves[t] = phi * moves[t - 1] + shocks[t]
    return moves


def candle_table(n: int, *, phi: float = 0.0, seed: int = 0, start: int = START_MS) -> pd.DataFrame:
    """A prediction table of ``n`` rows without model columns (see the module doc)."""
    moves = ar_moves(n, phi, seed)
    close = 1_000.0 + np.cumsum(moves)                  # candles 0..n
    open_ = np.concatenate([[1_000.0], close[:-1]])
    times = start + MINUTE * np.arange(1, n + 1, dtype=np.int64)
    return pd.DataFrame({
        "symbol": "X",
        "prediction_time": times,
        "target_time": times,
        "last_open": open_[:-1],
        "last_close": close[:-1],
        "actual_open": open_[1:],
        "actual_close": close[1:],
    })


def with_model(table: pd.DataFrame, name: str, pred_close) -> pd.DataFrame:
    """``table`` with a model column pair: the predicted close and the action it implies."""
    pred = np.asarray(pred_close, dtype=np.float64)
    last = table["last_close"].to_numpy()
    action = np.where(pred > last, "BUY", np.where(pred < last, "SELL", "HOLD"))
    return table.assign(**{f"pred_close.{name}": pred, f"action.{name}": action})


def ar_model_table(n: int, *, phi: float, seed: int = 0) -> pd.DataFrame:
    """AR(1) candles; the model predicts ``last_close + phi * (last_close - last_open)``."""
    table = candle_table(n, phi=phi, seed=seed)
    last_move = table["last_close"] - table["last_open"]
    return with_model(table, "model", table["last_close"] + phi * last_move)


def noise_model_table(n: int, *, noise: float, seed: int = 0, phi: float = 0.0) -> pd.DataFrame:
    """Candles (a random walk by default); the model is persistence plus N(0, noise^2) noise."""
    table = candle_table(n, phi=phi, seed=seed)
    jitter = np.random.default_rng([seed, 1]).normal(0.0, noise, n)
    return with_model(table, "model", table["last_close"].to_numpy() + jitter)


def pivot_table(n: int, *, hit_rate: float, seed: int = 0, start: int = START_MS) -> pd.DataFrame:
    """``n`` pivots, one matched frame each, alternating lows and highs; the model is right with ``hit_rate``."""
    rng = np.random.default_rng([seed, 2])
    implied = np.where(np.arange(n) % 2 == 0, "BUY", "SELL")
    right = rng.random(n) < hit_rate
    opposite = np.where(implied == "BUY", "SELL", "BUY")
    times = start + 5 * MINUTE * np.arange(n, dtype=np.int64)
    return pd.DataFrame({
        "symbol": "X", "pivot_time": times, "confirmed_at": times + 3 * MINUTE,
        "implied_action": implied, "action.model": np.where(right, implied, opposite),
    })
