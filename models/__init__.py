"""The AlexNet model, its input contract and its checkpoint format. Pure: no device choice, no env."""

from models.alexnet import AlexNet
from models.checkpoint import (
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_random_checkpoint,
)
from models.images import ImageError, load_image
from models.transforms import (
    CIFAR10_CLASSES,
    CIFAR10_MEAN,
    CIFAR10_STD,
    INPUT_SIZE,
    SOURCE_SIZE,
    Preprocess,
    PreprocessSpec,
)

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "INPUT_SIZE",
    "SOURCE_SIZE",
    "AlexNet",
    "Checkpoint",
    "CheckpointError",
    "ImageError",
    "Preprocess",
    "PreprocessSpec",
    "load_checkpoint",
    "load_image",
    "save_checkpoint",
    "save_random_checkpoint",
]
