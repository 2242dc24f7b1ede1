"""The guide's training loop, as written, to time the project's trainer against.

An ImageFolder dataset decodes each JPEG with PIL, resizes it to 224x224 and converts it with ToTensor,
one image at a time, in DataLoader worker processes; the loop moves each batch to the device and runs
Adam at 1e-3 with cross-entropy, in float32. Same network (``models.AlexNet``) as the trainer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader
from torchvision import datasets, transforms

from models import INPUT_SIZE, AlexNet

logger = logging.getLogger(__name__)

GUIDE_WORKERS = 2  # DataLoader worker processes, as PyTorch's CIFAR-10 tutorial sets them
GUIDE_LR = 1e-3  # Adam, as the guide


def guide_loader(train_dir: Path, batch_size: int, workers: int = GUIDE_WORKERS) -> DataLoader:
    transform = transforms.Compose([transforms.Resize((INPUT_SIZE, INPUT_SIZE)), transforms.ToTensor()])
    dataset = datasets.ImageFolder(str(train_dir), transform=transform)
    return DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=workers)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_guide_epoch(loader: DataLoader, model: nn.Module, device: torch.device, max_steps: int | None) -> dict:
    """One epoch (or ``max_steps`` steps) of the guide's loop: images/s counted after the first step.

    The first step pays for starting the workers and the first allocations; a trainer's epoch does not
    restart anything, so steady state is what both report.
    """
    optimizer = torch.optim.Adam(model.parameters(), lr=GUIDE_LR)
    loss_fn = nn.CrossEntropyLoss()
    model.train()
    started = time.perf_counter()
    steady_from, steady_images, images, steps = None, 0, 0, 0
    for inputs, labels in loader:
        inputs, labels = inputs.to(device), labels.to(device)  # (B, 3, 224, 224) float, (B,)
        optimizer.zero_grad()
        loss = loss_fn(model(inputs), labels)
        loss.backward()
        optimizer.step()
        steps += 1
        images += len(labels)
        if steady_from is None:
            _synchronize(device)
            steady_from = time.perf_counter()
        else:
            steady_images += len(labels)
        if max_steps is not None and steps >= max_steps:
            break
    _synchronize(device)
    ended = time.perf_counter()
    steady_seconds = ended - (steady_from or ended)
    return {
        "steps": steps,
        "images": images,
        "seconds": ended - started,
        "images_per_second": steady_images / steady_seconds if steady_images and steady_seconds > 0 else float("nan"),
        "epoch_images": len(loader.dataset),
        "last_loss": float(loss.detach()),
    }


def time_guide_loop(train_dir: Path, batch_size: int, device: torch.device, max_steps: int | None, workers: int):
    torch.manual_seed(0)
    model = AlexNet(num_classes=len(datasets.ImageFolder(str(train_dir)).classes)).to(device)
    result = run_guide_epoch(guide_loader(train_dir, batch_size, workers), model, device, max_steps)
    # Time per epoch at the steady rate: the loop may have been cut short by max_steps.
    result["epoch_seconds_estimate"] = result["epoch_images"] / result["images_per_second"]
    result.update(batch_size=batch_size, workers=workers, device=str(device))
    logger.info(
        "guide loop: %.1f images/s, %d steps in %.1f s", result["images_per_second"], result["steps"], result["seconds"]
    )
    return result
