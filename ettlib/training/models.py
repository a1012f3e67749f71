"""A small Transformer encoder with two heads: next candle and action.

The model reads one window of normalized candle features,
``[batch, seq, n_features]`` (oldest row first, the last closed candle last),
and returns

* ``candle``: the next candle's normalized values (``n_targets`` numbers, by
  default OHLCV in the frame's normalized units), a regression head;
* ``action_logits``: BUY / SELL / HOLD logits (:data:`ACTIONS` order); the
  confidence of a prediction is the softmax maximum.

Design decisions (each measured on a 2-core machine, see docs/performance.md):

* attention dropout defaults to 0 -- dropout inside attention forces PyTorch
  off its fused attention path (about 2.5x slower at seq 600); the
  feed-forward/residual dropout is separate (:attr:`ModelConfig.dropout`);
* pre-norm encoder layers; the representation of the *last* position (the
  candle that just closed) feeds both heads;
* the regression head starts at zero (weights and bias): with the adapter's
  residual targets (the change from the last closed candle) an untrained
  model predicts exactly "no change" and learns deviations from it;
* each row enters with its change from the row before, and a linear
  shortcut from the last few changes adds straight to both heads (zero at
  first, so an untrained model is still "no change"): next-minute structure
  is weak and mostly linear in the last moves, which a small linear map
  learns online far faster, and with less noise, than the encoder;
* weights are initialised under :attr:`ModelConfig.seed` inside a forked RNG,
  so building a model neither depends on nor disturbs the global RNG.

Examples
--------
>>> import torch
>>> config = ModelConfig(n_features=5, context_length=16, d_model=16, n_heads=2,
...                      n_layers=1, d_ff=32)
>>> model = build_model(config, device="cpu")
>>> out = model(torch.zeros(3, 16, 5))
>>> tuple(out.candle.shape), tuple(out.action_logits.shape)
((3, 5), (3, 3))
>>> float(model(torch.randn(3, 16, 5)).candle.detach().abs().max())  # untrained: "no change"
0.0
>>> again = build_model(config, device="cpu")
>>> all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
True
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import NamedTuple

import torch
from torch import nn

from ettlib.errors import ConfigError, positive_int
from ettlib.training.adapters.base import ACTIONS  # the action head's classes, in logit order

__all__ = [
    "ACTIONS",
    "ModelConfig",
    "ModelOutput",
    "CandleTransformer",
    "build_model",
    "default_device",
    "seeded_rng",
]

_POSITIONS = ("learned", "sinusoidal")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Size and shape of a :class:`CandleTransformer` (frozen, JSON-friendly).

    Parameters
    ----------
    n_features
        Columns per candle in the input window.
    context_length
        Rows per window (a production model may use 600; small values train far faster).
    d_model, n_heads, n_layers, d_ff
        Encoder width, attention heads (must divide ``d_model``), layers,
        feed-forward width.
    dropout
        Dropout on the feed-forward and residual paths.
    attention_dropout
        Dropout inside attention; keep 0 unless measured (slow path).
    positions
        ``"learned"`` (an embedding per position) or ``"sinusoidal"``.
    n_targets
        Outputs of the regression head (5: OHLCV).
    differences
        Also feed each row's change from the row before (every feature;
        zero for the first row) beside its values.  Normalized levels say
        where a candle sits in the window; the changes are the returns, on
        which short-horizon structure (a last move that partly reverses)
        is a simple linear function instead of a small difference of two
        large inputs.
    shortcut_lags, shortcut_features
        A linear shortcut from the changes of the last ``shortcut_lags``
        rows of the input columns ``shortcut_features`` (indices; empty:
        every column) straight to both heads, added to what the
        encoder says (0: none).  It starts at zero.  Short-horizon linear
        structure -- a move that partly reverses the next minute, the last
        few moves before a turning point -- is then one small linear map
        that online learning finds in a few hundred steps, and the encoder
        learns what is left (the "autoregressive highway" of LSTNet, the
        linear layer of DLinear).
    seed
        Seed for weight initialisation.
    """

    n_features: int = 5
    context_length: int = 64
    d_model: int = 32
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 64
    dropout: float = 0.1
    attention_dropout: float = 0.0
    positions: str = "learned"
    n_targets: int = 5
    differences: bool = True
    shortcut_lags: int = 4
    shortcut_features: tuple[int, ...] = ()
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_features", "context_length", "d_model", "n_heads", "n_layers", "d_ff",
                     "n_targets"):
            positive_int(f"ModelConfig.{name}", getattr(self, name))
        if self.d_model % self.n_heads:
            raise ConfigError(
                f"ModelConfig.d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})"
            )
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
                raise ConfigError(f"ModelConfig.{name} must be in [0, 1), got {value!r}")
        if self.positions not in _POSITIONS:
            from ettlib.errors import UnknownNameError

            raise UnknownNameError("position encoding", self.positions, _POSITIONS)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise ConfigError(f"ModelConfig.seed must be an int, got {self.seed!r}")
        if (not isinstance(self.shortcut_lags, int) or isinstance(self.shortcut_lags, bool)
                or self.shortcut_lags < 0):
            raise ConfigError(
                f"ModelConfig.shortcut_lags must be a non-negative int, got {self.shortcut_lags!r}")
        features = tuple(self.shortcut_features)
        if not all(isinstance(i, int) and not isinstance(i, bool) and 0 <= i < self.n_features
                   for i in features):
            raise ConfigError(
                f"ModelConfig.shortcut_features must be column indices below n_features "
                f"({self.n_features}), got {self.shortcut_features!r}")
        object.__setattr__(self, "shortcut_features", features)
        if not isinstance(self.differences, bool):
            raise ConfigError(f"ModelConfig.differences must be a bool, got {self.differences!r}")

    def to_dict(self) -> dict:
        """The config as a plain dict (JSON-serializable)."""
        return asdict(self)


class ModelOutput(NamedTuple):
    """What :class:`CandleTransformer` returns."""

    candle: torch.Tensor  #: ``[batch, n_targets]`` normalized next candle
    action_logits: torch.Tensor  #: ``[batch, 3]`` BUY / SELL / HOLD logits


class _EncoderLayer(nn.Module):
    """Pre-norm encoder layer with attention dropout separate from the rest."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.attention = nn.MultiheadAttention(
            config.d_model, config.n_heads, dropout=config.attention_dropout, batch_first=True
        )
        self.norm2 = nn.LayerNorm(config.d_model)
        self.feed_forward = nn.Sequential(
            nn.Linear(config.d_model, config.d_ff),
            nn.GELU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.d_ff, config.d_model),
        )
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        attended, _ = self.attention(h, h, h, need_weights=False)
        x = x + self.dropout(attended)
        return x + self.dropout(self.feed_forward(self.norm2(x)))


def _sinusoidal(length: int, d_model: int) -> torch.Tensor:
    position = torch.arange(length, dtype=torch.float32).unsqueeze(1)
    scale = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10_000.0) / d_model))
    table = torch.zeros(length, d_model)
    table[:, 0::2] = torch.sin(position * scale)
    table[:, 1::2] = torch.cos(position * scale[: d_model // 2])
    return table


class CandleTransformer(nn.Module):
    """Transformer encoder over a candle window with candle and action heads.

    Windows shorter than ``context_length`` are accepted (positions are
    counted from the start); longer ones are refused.
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.input = nn.Linear(config.n_features * (2 if config.differences else 1), config.d_model)
        if config.positions == "learned":
            self.position = nn.Parameter(torch.zeros(config.context_length, config.d_model))
            nn.init.normal_(self.position, std=0.02)
        else:
            self.register_buffer("position", _sinusoidal(config.context_length, config.d_model))
        self.input_dropout = nn.Dropout(config.dropout)
        self.layers = nn.ModuleList(_EncoderLayer(config) for _ in range(config.n_layers))
        self.norm = nn.LayerNorm(config.d_model)
        self.candle_head = nn.Linear(config.d_model, config.n_targets)
        nn.init.zeros_(self.candle_head.weight)
        nn.init.zeros_(self.candle_head.bias)
        self.action_head = nn.Linear(config.d_model, len(ACTIONS))
        if config.shortcut_lags:
            width = config.shortcut_lags * len(config.shortcut_features or range(config.n_features))
            self.candle_shortcut = nn.Linear(width, config.n_targets, bias=False)
            self.action_shortcut = nn.Linear(width, len(ACTIONS), bias=False)
            nn.init.zeros_(self.candle_shortcut.weight)
            nn.init.zeros_(self.action_shortcut.weight)

    def forward(self, windows: torch.Tensor) -> ModelOutput:
        seq = windows.shape[1]
        if seq > self.config.context_length:
            raise ConfigError(
                f"window has {seq} rows; the model's context_length is {self.config.context_length}"
            )
        changes = torch.diff(windows, dim=1, prepend=windows[:, :1])
        inputs = torch.cat((windows, changes), dim=-1) if self.config.differences else windows
        x = self.input(inputs) + self.position[:seq]
        x = self.input_dropout(x)
        for layer in self.layers:
            x = layer(x)
        last = self.norm(x[:, -1])
        candle, action = self.candle_head(last), self.action_head(last)
        lags = self.config.shortcut_lags
        if lags:
            recent = changes[:, -lags:]
            if self.config.shortcut_features:
                recent = recent[..., list(self.config.shortcut_features)]
            if recent.shape[1] < lags:  # a window shorter than the shortcut: no change before it
                recent = nn.functional.pad(recent, (0, 0, lags - recent.shape[1], 0))
            recent = recent.flatten(1)
            candle = candle + self.candle_shortcut(recent)
            action = action + self.action_shortcut(recent)
        return ModelOutput(candle, action)


def default_device() -> str:
    """``"cuda"`` when a GPU is usable, else ``"cpu"``."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def seeded_rng(seed: int):
    """A context in which torch's RNGs (CPU and every CUDA device) are seeded with
    ``seed``; their previous states come back on exit."""
    import contextlib

    @contextlib.contextmanager
    def context():
        devices = list(range(torch.cuda.device_count())) if torch.cuda.is_available() else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            yield

    return context()


def build_model(config: ModelConfig, device: str | None = None) -> CandleTransformer:
    """Build a :class:`CandleTransformer` with weights drawn under ``config.seed``.

    The global RNGs are left untouched (the draw happens in forked RNGs).
    """
    with seeded_rng(config.seed):
        model = CandleTransformer(config)
    return model.to(device or default_device())
