import torch
from torch import nn

from models import AlexNet


def test_structure_matches_the_guide() -> None:
    model = AlexNet(num_classes=10)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    got = [(c.in_channels, c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs]
    assert got == [(3, 64, 11, 4, 2), (64, 192, 5, 1, 2), (192, 384, 3, 1, 1), (384, 256, 3, 1, 1), (256, 256, 3, 1, 1)]
    pools = [m for m in model.features if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride) for p in pools] == [(3, 2)] * 3
    assert sum(isinstance(m, nn.ReLU) for m in model.features) == 5
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Dropout", "Linear", "ReLU", "Dropout", "Linear", "ReLU", "Linear"]
    linears = [m for m in model.classifier if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(9216, 4096), (4096, 4096), (4096, 10)]


def test_parameter_count() -> None:
    assert sum(p.numel() for p in AlexNet(num_classes=10).parameters()) == 57_044_810


def test_keys_match_torchvision() -> None:
    from torchvision.models import alexnet

    ours = {k: v.shape for k, v in AlexNet(num_classes=10).state_dict().items()}
    theirs = {k: v.shape for k, v in alexnet(num_classes=10).state_dict().items()}
    assert ours == theirs


def test_forward_224_and_backward() -> None:
    torch.manual_seed(0)
    model = AlexNet(num_classes=10)
    x = torch.randn(2, 3, 224, 224)
    assert model.features(x).shape == (2, 256, 6, 6)
    logits = model(x)
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
