"""A small Transformer encoder with two heads: next candle and action.

The model reads one window of normalized candle features,
``[batch, seq, n_features]`` (oldest row first, the last closed candle last),
and returns

* ``candle``: the next candle's normalized values (``n_targets`` numbers, by
  default OHLCV in the frame's normalized units), a regression head;
* ``action_logits``: BUY / SELL / HOLD logits (:data:`ACTIONS` order); the
  confidence of a prediction is the softmax maximum.

Design decisions (measured in ``MEASURED.md``):

* attention dropout defaults to 0 -- dropout inside attention forces PyTorch
  off its fused attention path (about 2.5x slower at seq 600); the
  feed-forward/residual dropout is separate (:attr:`ModelConfig.dropout`);
* pre-norm encoder layers; the representation of the *last* position (the
  candle that just closed) feeds both heads;
* the regression head starts at zero (weights and bias): with the adapter's
  residual targets (the change from the last closed candle) an untrained
  model predicts exactly "no change" and learns deviations from it;
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

from ettlib.errors import ConfigError

__all__ = [
    "ACTIONS",
    "ModelConfig",
    "ModelOutput",
    "CandleTransformer",
    "build_model",
    "default_device",
    "seeded_rng",
]

#: Action classes, in logit order.
ACTIONS: tuple[str, ...] = ("BUY", "SELL", "HOLD")

_POSITIONS = ("learned", "sinusoidal")


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Size and shape of a :class:`CandleTransformer` (frozen, JSON-friendly).

    Parameters
    ----------
    n_features
        Columns per candle in the input window.
    context_length
        Rows per window (the seed uses 600; small values train far faster).
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
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("n_features", "context_length", "d_model", "n_heads", "n_layers", "d_ff",
                     "n_targets"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"ModelConfig.{name} must be a positive int, got {value!r}")
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
        self.input = nn.Linear(config.n_features, config.d_model)
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

    def forward(self, windows: torch.Tensor) -> ModelOutput:
        seq = windows.shape[1]
        if seq > self.config.context_length:
            raise ConfigError(
                f"window has {seq} rows; the model's context_length is {self.config.context_length}"
            )
        x = self.input(windows) + self.position[:seq]
        x = self.input_dropout(x)
        for layer in self.layers:
            x = layer(x)
        last = self.norm(x[:, -1])
        return ModelOutput(self.candle_head(last), self.action_head(last))


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
