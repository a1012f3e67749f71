"""The Transformer adapter: a :class:`~ettlib.training.models.CandleTransformer` trained by backprop.

The only adapter that imports PyTorch.  Its state (weights, optimizer,
steps) is written with ``torch.save`` (:meth:`TransformerAdapter._pack`),
read back onto the CPU and then moved to the adapter's device.  Registered
as ``"transformer"`` (alias :data:`RealTrainingAdapter`, the original
design's name) and ``"frozen"`` (:func:`frozen_transformer`: the same model,
same seed, never trained).

Examples
--------
>>> import numpy as np
>>> adapter = TransformerAdapter(context_length=4, d_model=8, n_heads=2, n_layers=1, d_ff=8,
...                              device="cpu")
>>> action, candle, confidence = adapter.predict(np.ones((4, 5)), ("open", "high", "low", "close", "volume"))
>>> action in ("BUY", "SELL", "HOLD"), len(candle), 0 < confidence <= 1
(True, 5, True)
>>> again = TransformerAdapter(context_length=4, d_model=8, n_heads=2, n_layers=1, d_ff=8, device="cpu")
>>> again.restore_state(adapter.checkpoint_state())
>>> again.steps == adapter.steps
True
"""

from __future__ import annotations

import io
from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from ettlib.errors import ConfigError
from ettlib.replay.events import event_key
from ettlib.training.adapters.base import (
    ACTIONS,
    PairResult,
    Prediction,
    TrainingAdapter,
    normalized_targets,
)
from ettlib.training.models import ModelConfig, build_model, default_device, seeded_rng

__all__ = ["TransformerAdapter", "RealTrainingAdapter", "frozen_transformer"]


class TransformerAdapter(TrainingAdapter):
    """``RealTrainingAdapter``, the original design's name: a :class:`~ettlib.training.models.CandleTransformer`
    trained by backprop (Adam, gradient clipping) on batches of matched pairs.

    Parameters
    ----------
    context_length, d_model, n_heads, n_layers, d_ff, dropout, attention_dropout, positions
        The model's :class:`~ettlib.training.models.ModelConfig`.
    differences, shortcut_lags
        Also as in :class:`~ettlib.training.models.ModelConfig`: feed each
        row's changes beside its values; the linear shortcut from the last
        ``shortcut_lags`` changes to both heads (0: none).
    shortcut_columns
        Columns whose changes feed the shortcut; default ``("close",)``
        when the close is a feature (else every column).  A few inputs
        keep the shortcut from fitting noise: on 2 days of 1m demo candles,
        least squares on the last 4 changes of all five OHLCV columns did
        worse out of sample than on the last close change alone.
    learning_rate, shortcut_learning_rate, weight_decay, grad_clip
        Adam's step sizes (the encoder and heads; the shortcut) and weight
        decay; the gradient-norm clip.  The defaults (1e-4 and 1e-2) were
        chosen on the default experiment (2 days of 1m demo candles, batch
        16, about 300 steps): next-minute returns are mostly noise, and an
        encoder stepping at 1e-3 adds more noise to its predictions than it
        finds signal (its close MAE was about 0.5% above persistence's),
        while the shortcut's few weights need the larger step to find the
        reversal within the run.
    candle_weight, pivot_weight
        Weights of the regression (MSE) and action (cross-entropy) losses.
    huber_delta
        When positive, the regression loss is Huber with this threshold
        (in normalized units) instead of MSE: less pull from fat-tailed
        moves.
    learn
        ``False`` builds the "frozen" baseline: predicts, never trains.
    residual
        The regression head predicts the *change* from the last closed
        candle (open/high/low/close relative to its close, volume relative
        to its volume), added back at prediction: an untrained model starts
        near persistence instead of near the window mean.
    device
        ``"cuda"``/``"cpu"``; default: CUDA when present.

    Windows are cut to their last ``context_length`` rows; shorter windows
    (gaps) are padded at the front by repeating their first row.  NaN
    (indicator warm-up) becomes 0.
    """

    name = "transformer"

    def __init__(
        self,
        *,
        context_length: int | None = 64,
        d_model: int = 32,
        n_heads: int = 4,
        n_layers: int = 2,
        d_ff: int = 64,
        dropout: float = 0.1,
        attention_dropout: float = 0.0,
        positions: str = "learned",
        differences: bool = True,
        shortcut_lags: int = 4,
        shortcut_columns: Sequence[str] | None = None,
        learning_rate: float = 1e-4,
        shortcut_learning_rate: float = 1e-2,
        weight_decay: float = 0.0,
        grad_clip: float = 1.0,
        candle_weight: float = 1.0,
        pivot_weight: float = 1.0,
        huber_delta: float = 0.0,
        learn: bool = True,
        residual: bool = True,
        device: str | None = None,
        **base,
    ):
        super().__init__(context_length=context_length, **base)
        self.config = ModelConfig(
            n_features=len(self.features),
            context_length=context_length,
            d_model=d_model,
            n_heads=n_heads,
            n_layers=n_layers,
            d_ff=d_ff,
            dropout=dropout,
            attention_dropout=attention_dropout,
            positions=positions,
            n_targets=len(self.targets),
            differences=differences,
            shortcut_lags=shortcut_lags,
            shortcut_features=self._shortcut_features(shortcut_columns),
            seed=self.seed,
        )
        for label, value in (("learning_rate", learning_rate), ("grad_clip", grad_clip),
                             ("shortcut_learning_rate", shortcut_learning_rate),
                             ("candle_weight", candle_weight), ("pivot_weight", pivot_weight),
                             ("weight_decay", weight_decay), ("huber_delta", huber_delta)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"{label} must be a non-negative number, got {value!r}")
        self.learns = bool(learn)
        if not self.learns:
            self.name = "frozen"
        self.residual = bool(residual)
        self._anchor_index = np.array([self._anchor_of(t) for t in self.targets], dtype=np.int64)
        self.grad_clip = float(grad_clip)
        self.candle_weight = float(candle_weight)
        self.pivot_weight = float(pivot_weight)
        self.huber_delta = float(huber_delta)
        self.device = torch.device(device or default_device())
        self.model = build_model(self.config, self.device)
        self.model.eval()
        shortcut = [p for n, p in self.model.named_parameters() if "shortcut" in n]
        encoder = [p for n, p in self.model.named_parameters() if "shortcut" not in n]
        groups = [{"params": encoder, "lr": learning_rate}]
        if shortcut:
            groups.append({"params": shortcut, "lr": shortcut_learning_rate})
        self.optimizer = torch.optim.Adam(groups, lr=learning_rate, weight_decay=weight_decay)
        self.steps = 0

    def _shortcut_features(self, columns) -> tuple[int, ...]:
        if columns is None:  # the close's recent moves, when the model reads the close
            columns = ("close",) if "close" in self.features else ()
        if isinstance(columns, str):
            columns = (columns,)
        return tuple(self._column_index(tuple(columns), self.features))

    def _anchor_of(self, target: str) -> int:
        if not self.residual:
            return -1
        if target in ("open", "high", "low", "close") and "close" in self.features:
            return self.features.index("close")
        if target == "volume" and "volume" in self.features:
            return self.features.index("volume")
        return -1

    def anchors(self, x: np.ndarray) -> np.ndarray:
        """Per-target anchors ``[..., n_targets]`` from prepared inputs' last row (0: none)."""
        last = x[..., -1, :]
        out = np.take(last, np.maximum(self._anchor_index, 0), axis=-1)
        return np.where(self._anchor_index >= 0, out, 0.0).astype(np.float32)

    def prepare_inputs(self, window: np.ndarray, columns: Sequence[str] | None = None) -> np.ndarray:
        """The ``float32 [context_length, n_features]`` array the model reads for a window.

        C-contiguous, as :meth:`prepare_batch`'s (selecting columns by index
        leaves numpy's result in column order; the values are the same).
        """
        x = self._select(window, columns, self.features)
        length = self.config.context_length
        if len(x) > length:
            x = x[-length:]
        elif len(x) < length:
            x = np.concatenate([np.repeat(x[:1], length - len(x), axis=0), x])
        x = np.ascontiguousarray(x, dtype=np.float32)
        return np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def prepare_batch(self, windows: Sequence[np.ndarray], columns: Sequence | None = None) -> np.ndarray:
        """:meth:`prepare_inputs` of many windows, stacked: ``float32 [b, context_length, n_features]``.

        ``columns`` is one column tuple for every window, or one per window.
        Windows with the same columns and at least ``context_length`` rows
        (the usual case) are cut, selected and cast in one pass; the values
        are exactly those of :meth:`prepare_inputs`.

        >>> adapter = TransformerAdapter(context_length=4, d_model=8, n_heads=2, n_layers=1,
        ...                              d_ff=8, device="cpu")
        >>> rng = np.random.default_rng(0)
        >>> for sizes in ((4, 6, 5), (4, 6, 2)):  # all long enough; one short (padded)
        ...     windows = [rng.normal(size=(n, 5)) for n in sizes]
        ...     batch = adapter.prepare_batch(windows)
        ...     same = all(np.array_equal(b, adapter.prepare_inputs(w)) for b, w in zip(batch, windows))
        ...     print(batch.shape, batch.dtype, batch.flags.c_contiguous, same)
        (3, 4, 5) float32 True True
        (3, 4, 5) float32 True True
        """
        windows = [np.asarray(w) for w in windows]
        if not windows:
            return np.zeros((0, self.config.context_length, len(self.features)), np.float32)
        if columns is None or not len(columns) or isinstance(columns[0], str):
            per_window = [columns] * len(windows)
        else:
            per_window = list(columns)
        length = self.config.context_length
        first = self.features if per_window[0] is None else tuple(per_window[0])
        uniform = all(
            w.ndim == 2 and len(w) >= length and w.shape[1] == len(first)
            and (c is per_window[0] or (self.features if c is None else tuple(c)) == first)
            for w, c in zip(windows, per_window)
        )
        if not uniform:
            return np.stack([self.prepare_inputs(w, c) for w, c in zip(windows, per_window)])
        index = self._column_index(self.features, first)
        x = np.stack([w[-length:] for w in windows])
        x = np.ascontiguousarray(x[:, :, index], dtype=np.float32)
        return np.nan_to_num(x, copy=False, nan=0.0, posinf=0.0, neginf=0.0)

    def predict(self, window: np.ndarray, columns: Sequence[str] | None = None) -> Prediction:
        prepared = self.prepare_inputs(window, columns)
        x = torch.from_numpy(prepared).unsqueeze(0).to(self.device)
        with torch.inference_mode():
            out = self.model(x)
            probs = torch.softmax(out.action_logits[0], dim=-1)
        confidence, index = torch.max(probs, dim=-1)
        candle = out.candle[0].cpu().numpy() + self.anchors(prepared)
        return Prediction(ACTIONS[int(index)], tuple(float(v) for v in candle), float(confidence))

    def predict_batch(self, windows: Sequence[np.ndarray], columns=None) -> list[Prediction]:
        """Predictions for several windows in one forward pass."""
        prepared = self.prepare_batch(windows, columns)
        with torch.inference_mode():
            out = self.model(torch.from_numpy(prepared).to(self.device))
            probs = torch.softmax(out.action_logits, dim=-1)
        conf, index = torch.max(probs, dim=-1)
        candles = (out.candle.cpu().numpy() + self.anchors(prepared)).tolist()
        return [
            Prediction(ACTIONS[int(i)], tuple(c), float(p))
            for i, c, p in zip(index.tolist(), candles, conf.tolist())
        ]

    def _tensors(self, pairs):
        """Inputs, regression targets, action labels and masks of a batch."""
        n = len(pairs)
        x = self.prepare_batch([d.values for _, d in pairs], [d.columns for _, d in pairs])
        y_candle = np.zeros((n, len(self.targets)), dtype=np.float32)
        y_action = np.zeros(n, dtype=np.int64)
        is_candle = np.zeros(n, dtype=bool)
        candles = [i for i, (p, _) in enumerate(pairs) if p.kind == "candle"]
        if candles:
            targets = normalized_targets([pairs[i][0].event for i in candles],
                                         [pairs[i][0].ref.norm_params for i in candles], self.targets)
            y_candle[candles] = targets - self.anchors(x[candles])
            is_candle[candles] = True
        for i, (p, _) in enumerate(pairs):
            if p.kind == "pivot":
                y_action[i] = ACTIONS.index(p.event.implied_action)
        return x, y_candle, y_action, is_candle

    def _learn(self, pairs):
        x, y_candle, y_action, is_candle = self._tensors(pairs)
        return self.train_step(x, y_candle, y_action, is_candle, pairs)

    def train_step(self, x, y_candle, y_action, is_candle, pairs=None) -> list[PairResult]:
        """One Adam step on pre-built arrays (also the benchmark's pre-built path).

        ``x`` ``[b, context, features]``, ``y_candle`` ``[b, targets]`` (relative
        to :meth:`anchors` when ``residual``),
        ``y_action`` ``[b]`` (index into :data:`ACTIONS`), ``is_candle`` ``[b]``
        (which rows are regression pairs).  Returns per-pair results when
        ``pairs`` is given.
        """
        device = self.device
        xt = torch.as_tensor(x, device=device)
        yc = torch.as_tensor(y_candle, device=device)
        ya = torch.as_tensor(y_action, device=device)
        mask = torch.as_tensor(is_candle, device=device)
        self.model.train()
        with seeded_rng(self.seed * 1_000_003 + self.steps):  # dropout; global RNGs untouched
            out = self.model(xt)
            if self.huber_delta > 0:
                candle_loss = nn.functional.huber_loss(
                    out.candle, yc, reduction="none", delta=self.huber_delta).mean(dim=1)
            else:
                candle_loss = ((out.candle - yc) ** 2).mean(dim=1)
            action_loss = nn.functional.cross_entropy(out.action_logits, ya, reduction="none")
            per_pair = torch.where(mask, self.candle_weight * candle_loss,
                                   self.pivot_weight * action_loss)
            loss = per_pair.mean()
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if self.grad_clip > 0:
                nn.utils.clip_grad_norm_(self.model.parameters(), self.grad_clip)
            self.optimizer.step()
        self.model.eval()
        self.steps += 1
        if pairs is None:
            return []
        losses = per_pair.detach().cpu().tolist()
        batch_loss = float(loss.detach())
        return [
            PairResult(
                p.ref.inference_id, p.kind, event_key(p.event), int(p.event.knowable_time),
                float(l), {"step": self.steps, "batch_loss": batch_loss},
            )
            for (p, _), l in zip(pairs, losses)
        ]

    def _pack(self, obj) -> bytes:
        """``torch.save`` (tensors, and the optimizer's state, as PyTorch writes them)."""
        buffer = io.BytesIO()
        torch.save(obj, buffer)
        return buffer.getvalue()

    def _unpack(self, data: bytes):
        """``torch.load`` onto the CPU (:meth:`load_state_dict` moves it to the device)."""
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)

    def settings(self) -> dict:
        optimizer = [{k: v for k, v in group.items() if k != "params"}
                     for group in self.optimizer.param_groups]
        return {**super().settings(), "model": {k: v for k, v in self.config.to_dict().items()
                                                if k != "seed"},
                "optimizer": optimizer, "residual": self.residual, "grad_clip": self.grad_clip,
                "candle_weight": self.candle_weight, "pivot_weight": self.pivot_weight,
                "huber_delta": self.huber_delta}

    def state_dict(self) -> dict:
        state = super().state_dict()
        state.update(
            config=self.config.to_dict(),
            model={k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()},
            optimizer=self.optimizer.state_dict(),
            steps=self.steps,
        )
        return state

    def load_state_dict(self, state: dict) -> None:
        mine = {k: v for k, v in self.config.to_dict().items() if k != "seed"}
        theirs = {k: v for k, v in state["config"].items() if k != "seed"}
        if mine != theirs:
            raise ConfigError(
                f"checkpoint model config {theirs} differs from this adapter's {mine}"
            )
        super().load_state_dict(state)
        self.config = ModelConfig(**state["config"])
        self.model.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.steps = int(state["steps"])


#: The original design's name for the Transformer adapter.
RealTrainingAdapter = TransformerAdapter


def frozen_transformer(**params) -> TransformerAdapter:
    """The "frozen" baseline: the Transformer with the same init, never trained."""
    params.pop("learn", None)
    return TransformerAdapter(learn=False, **params)
