"""The Transformer model: shapes, configuration checks, seeded determinism."""

from __future__ import annotations

import dataclasses
import json
import math

import pytest
import torch

from ettlib.errors import ConfigError, UnknownNameError
from ettlib.training.models import ACTIONS, ModelConfig, build_model, default_device

TINY = dict(n_features=5, context_length=12, d_model=16, n_heads=2, n_layers=2, d_ff=32)


pytestmark = pytest.mark.usefixtures("one_torch_thread")



def test_heads_have_the_configured_shapes():
    model = build_model(ModelConfig(**TINY, n_targets=4), device="cpu")
    out = model(torch.randn(7, 12, 5))
    assert out.candle.shape == (7, 4)
    assert out.action_logits.shape == (7, len(ACTIONS))


def test_shorter_windows_are_accepted_longer_refused():
    model = build_model(ModelConfig(**TINY), device="cpu")
    assert model(torch.randn(2, 5, 5)).candle.shape == (2, 5)
    with pytest.raises(ConfigError, match="context_length"):
        model(torch.randn(2, 13, 5))


def test_same_seed_same_weights_other_seed_other_weights():
    a = build_model(ModelConfig(**TINY, seed=1), device="cpu").state_dict()
    b = build_model(ModelConfig(**TINY, seed=1), device="cpu").state_dict()
    c = build_model(ModelConfig(**TINY, seed=2), device="cpu").state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_building_a_model_leaves_the_global_rng_alone():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    build_model(ModelConfig(**TINY), device="cpu")
    assert torch.equal(torch.rand(3), expected)


def test_eval_mode_is_deterministic_and_train_mode_uses_dropout():
    model = build_model(ModelConfig(**TINY, dropout=0.5), device="cpu")
    x = torch.randn(4, 12, 5)
    model.eval()
    assert torch.equal(model(x).action_logits, model(x).action_logits)
    model.train()
    assert not torch.equal(model(x).action_logits, model(x).action_logits)


def test_attention_dropout_is_separate_and_zero_by_default():
    model = build_model(ModelConfig(**TINY, dropout=0.3), device="cpu")
    for layer in model.layers:
        assert layer.attention.dropout == 0.0
        assert layer.dropout.p == 0.3
    model = build_model(ModelConfig(**TINY, attention_dropout=0.2), device="cpu")
    assert model.layers[0].attention.dropout == 0.2


def test_sinusoidal_positions_follow_the_formula():
    model = build_model(ModelConfig(**TINY, positions="sinusoidal"), device="cpu")
    table = model.position
    d = TINY["d_model"]
    for pos in (0, 3, 11):
        for i in range(0, d, 2):
            angle = pos / (10_000 ** (i / d))
            assert table[pos, i].item() == pytest.approx(math.sin(angle), abs=1e-5)
            assert table[pos, i + 1].item() == pytest.approx(math.cos(angle), abs=1e-5)
    assert not any(n == "position" for n, _ in model.named_parameters())


def test_learned_positions_are_parameters():
    model = build_model(ModelConfig(**TINY), device="cpu")
    assert "position" in dict(model.named_parameters())


def test_positions_change_the_output():
    """Order matters: the same rows in another order give another prediction."""
    model = build_model(ModelConfig(**TINY, dropout=0.0), device="cpu").eval()
    x = torch.randn(1, 12, 5)
    shuffled = torch.cat([x[:, 6:11], x[:, :6], x[:, 11:]], dim=1)  # last row kept
    assert not torch.allclose(model(x).action_logits, model(shuffled).action_logits)


@pytest.mark.parametrize(
    "change",
    [
        dict(d_model=10, n_heads=4),
        dict(n_layers=0),
        dict(context_length=-1),
        dict(dropout=1.0),
        dict(attention_dropout=-0.1),
        dict(n_features=2.5),
        dict(seed="1"),
    ],
)
def test_bad_configs_are_refused(change):
    with pytest.raises(ConfigError):
        ModelConfig(**{**TINY, **change})


def test_unknown_position_encoding_suggests_names():
    with pytest.raises(UnknownNameError, match="sinusoidal"):
        ModelConfig(**TINY, positions="sinusoid")


def test_config_is_frozen_and_json_round_trips():
    config = ModelConfig(**TINY)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.d_model = 8
    assert ModelConfig(**json.loads(json.dumps(config.to_dict()))) == config


def test_default_device_matches_torch():
    assert default_device() == ("cuda" if torch.cuda.is_available() else "cpu")
    assert next(build_model(ModelConfig(**TINY)).parameters()).device.type == default_device()


def test_untrained_regression_head_predicts_no_change():
    """The candle head starts at zero; one gradient step moves it."""
    model = build_model(ModelConfig(**TINY), device="cpu")
    x = torch.randn(4, 12, 5)
    assert torch.count_nonzero(model(x).candle) == 0
    loss = ((model(x).candle - 1.0) ** 2).mean()
    loss.backward()
    assert model.candle_head.weight.grad.abs().sum() > 0
