"""The AlexNet model, its input contract, its checkpoint format and the one inference pass everything uses.

No environment reads and no side effects at import; device and precision are chosen by ``models.inference``
from names the callers pass in.
"""

from models.alexnet import AlexNet
from models.checkpoint import (
    DEFAULT_CHECKPOINT,
    Checkpoint,
    CheckpointError,
    load_checkpoint,
    save_checkpoint,
    save_random_checkpoint,
)
from models.images import ImageError, load_image
from models.inference import Classifier, DeviceError, Predictions, resolve_device
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
    "DEFAULT_CHECKPOINT",
    "INPUT_SIZE",
    "SOURCE_SIZE",
    "AlexNet",
    "Checkpoint",
    "CheckpointError",
    "Classifier",
    "DeviceError",
    "ImageError",
    "Predictions",
    "Preprocess",
    "PreprocessSpec",
    "load_checkpoint",
    "load_image",
    "resolve_device",
    "save_checkpoint",
    "save_random_checkpoint",
]
