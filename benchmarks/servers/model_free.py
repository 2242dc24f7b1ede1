"""Model-free serving: the network's forward pass replaced by a constant, everything else left as it is.

What the serving benchmark's ``--model-free`` runs measure is each server's own cost per request: HTTP,
multipart parsing, image decoding, preprocessing, thread hops, batching, response building, middleware. On a
GPU the network is nearly free, so that cost is what limits requests/s there. The seam is the checkpoint's
``build_model``, the one place every server gets its network from (the service through ``Predictor`` and
``Classifier.from_checkpoint``, LitServe through the same, plain FastAPI directly): ``install()`` makes it
return ``ConstantNetwork``, which answers fixed logits of the right shape on the input's device at once. The
service needs no setting of its own for this; it is started here as ``alexnet-serve`` starts it:

    python -m benchmarks.servers.model_free --checkpoint ckpt.safetensors --port 8000   # alexnet-serve's flags

LitServe's and plain FastAPI's launchers call ``install()`` when their benchmark flag asks for it.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from models import AlexNet, Checkpoint

logger = logging.getLogger(__name__)


def constant_logits(num_classes: int) -> torch.Tensor:
    """(num_classes,) float32, distinct and decreasing: every image gets the first class, at a fixed probability."""
    return torch.linspace(2.0, 0.0, num_classes)


class ConstantNetwork(nn.Module):
    """Stands in for AlexNet: ``forward``, ``embed`` and ``head`` give outputs of the real shapes, at no cost."""

    def __init__(self, num_classes: int, num_features: int) -> None:
        super().__init__()
        # Buffers, so that ``.to(device)`` puts the answers where the real network's would be.
        self.register_buffer("logits", constant_logits(num_classes))
        self.register_buffer("features", torch.full((num_features,), num_features**-0.5))  # unit length
        # Four-dimensional, as convolution weights are: ``.to(memory_format=...)`` stores it as it would store
        # them, so the pass (models.inference.weights_layout) feeds its input in the layout it does today.
        self.layout_probe = nn.Parameter(torch.zeros(1, 2, 2, 2), requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(x), -1)  # (N, num_classes), a view: nothing computed

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.features.expand(len(x), -1)  # (N, num_features)

    def head(self, features: torch.Tensor) -> torch.Tensor:
        return self.logits.expand(len(features), -1)


def constant_network(checkpoint: Checkpoint) -> ConstantNetwork:
    """A ``ConstantNetwork`` with the checkpoint's class count and feature width, in eval mode on the CPU."""
    with torch.device("meta"):  # the real network's shapes, without allocating its weights
        last = AlexNet(**checkpoint.model_args).classifier[-1]
    logger.warning("model-free: the network's forward pass is replaced by a constant (a benchmark, not a model)")
    return ConstantNetwork(last.out_features, last.in_features).eval()


def install() -> None:
    """From now on, in this process, every checkpoint builds the constant network instead of AlexNet."""
    Checkpoint.build_model = constant_network  # type: ignore[method-assign, assignment]


def main(argv: list[str] | None = None) -> None:
    """``alexnet-serve`` with the constant network: the same flags, settings and uvicorn configuration."""
    from app.cli import serve  # imported here, so that the peers' launchers never import the service

    install()
    serve(argv)


if __name__ == "__main__":
    main()
