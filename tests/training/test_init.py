"""The training init: gradients reach AlexNet's first layer; with PyTorch's default init they fade."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from models import AlexNet
from training.init import init_weights


def _first_layer_grad_norm(model: AlexNet) -> float:
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 64, 64), torch.randint(0, 10, (8,))
    model.eval()  # no dropout: compare the inits alone
    F.cross_entropy(model(x), y).backward()
    return model.features[0].weight.grad.norm().item() / model.features[0].weight.norm().item()


def test_conv_weights_are_he_fan_out_linear_small_biases_zero() -> None:
    torch.manual_seed(0)
    model = AlexNet(num_classes=10)
    init_weights(model)
    conv = model.features[3]  # 64 -> 192, 5x5: fan-out 192 * 25
    assert math.isclose(conv.weight.std().item(), math.sqrt(2 / (192 * 25)), rel_tol=0.05)
    assert math.isclose(model.classifier[1].weight.std().item(), 0.01, rel_tol=0.05)
    assert all(m.bias.abs().sum() == 0 for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))


def test_gradients_reach_the_first_layer() -> None:
    torch.manual_seed(0)
    default = AlexNet(num_classes=10)
    torch.manual_seed(0)
    ours = AlexNet(num_classes=10)
    init_weights(ours)
    # Relative gradient of conv1: how fast the first layer can move under SGD.
    assert _first_layer_grad_norm(ours) > 10 * _first_layer_grad_norm(default)
