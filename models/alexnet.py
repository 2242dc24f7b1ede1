"""AlexNet for CIFAR-10 at 224x224, with the layer names of torchvision's AlexNet."""

from __future__ import annotations

import torch
from torch import nn

# The smallest square input the three max-pools take: at 62 px the last one would get a 2x2 map and output 0x0.
MIN_INPUT_SIZE = 63


class AlexNet(nn.Module):
    """Five conv layers and three fully connected layers (Krizhevsky et al., 2012; torchvision variant).

    The state-dict keys match ``torchvision.models.alexnet(num_classes=...)``, so weights move freely
    between the two. 57,044,810 parameters for 10 classes.
    """

    def __init__(self, num_classes: int = 10, dropout: float = 0.5) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),  # (N, 64, 55, 55) at 224 input
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 64, 27, 27)
            nn.Conv2d(64, 192, kernel_size=5, padding=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 192, 13, 13)
            nn.Conv2d(192, 384, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(384, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.Conv2d(256, 256, kernel_size=3, padding=1),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2),  # (N, 256, 6, 6)
        )
        # A no-op at 224x224; it keeps the classifier's 9216 inputs for other input sizes.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = nn.Sequential(
            nn.Dropout(p=dropout),
            nn.Linear(256 * 6 * 6, 4096),
            nn.ReLU(inplace=True),
            nn.Dropout(p=dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(inplace=True),
            nn.Linear(4096, num_classes),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(x))  # (N, num_classes)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The penultimate features: everything but the last linear layer (feature-space OOD scores use them)."""
        x = self.avgpool(self.features(x))  # (N, 256, 6, 6)
        return self.classifier[:-1](torch.flatten(x, 1))  # (N, 4096)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Penultimate features (N, 4096) -> logits (N, num_classes): the last linear layer."""
        return self.classifier[-1](features)
