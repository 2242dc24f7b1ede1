"""He initialisation keeps the signal alive through AlexNet's layers; PyTorch's default lets it fade."""

from __future__ import annotations

import math

import torch

from models import AlexNet
from training.init import init_weights


def _feature_std(model: AlexNet) -> float:
    torch.manual_seed(0)
    with torch.no_grad():
        return model.features(torch.randn(4, 3, 64, 64)).std().item()  # (4, 256, 1, 1) at a 64-pixel input


def test_he_init_scales_weights_by_fan_in_and_zeroes_biases() -> None:
    torch.manual_seed(0)
    model = AlexNet(num_classes=10)
    init_weights(model)
    conv = model.features[3]  # 64 -> 192, 5x5
    assert math.isclose(conv.weight.std().item(), math.sqrt(2 / (64 * 25)), rel_tol=0.05)
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    assert math.isclose(model.classifier[-1].weight.std().item(), 0.01, rel_tol=0.05)


def test_signal_survives_he_init_and_fades_with_the_default() -> None:
    torch.manual_seed(0)
    default = AlexNet(num_classes=10)
    torch.manual_seed(0)
    he = AlexNet(num_classes=10)
    init_weights(he)
    assert _feature_std(he) > 0.3
    assert _feature_std(default) < 0.05 * _feature_std(he)
