"""Training configuration: one frozen dataclass, two recipes, and the command line that fills them.

The dataclass defaults are the ``default`` recipe. ``--recipe seed`` swaps in the guide's recipe as
written; any flag given explicitly wins over the recipe's value. The config is saved in the checkpoint.
"""

from __future__ import annotations

import argparse
import inspect
import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any

DATA_DIR_ENV = "ALEXNET_DATA_DIR"  # the only environment variable training/ reads
DEFAULT_OUTPUT = "checkpoints/alexnet-cifar10.safetensors"


@dataclass(frozen=True)
class TrainConfig:
    # --- data ---
    data_dir: str = "./data"  # CIFAR-10 python version or train/<class>/ + test/<class>/ image folders
    download: bool = True  # fetch the official CIFAR-10 archive when data_dir holds no data
    train_subset: int | None = None  # images: train on this many (stratified), None = all
    val_size: int = 5000  # images held out from train for validation (0 = none)
    source_size: int = 32  # pixels: every image is reduced to this square first (recorded in the checkpoint)
    decode_workers: int = 0  # processes decoding an image folder (0 = one per CPU core)
    cache: bool = True  # keep decoded image folders as .npz under data_dir/.alexnet-cache
    # --- model and input ---
    input_size: int = 224  # pixels: network input, upsampled from source_size (tests use 64)
    normalize: bool = True  # CIFAR-10 mean/std normalization (False: raw [0, 1] pixels)
    dropout: float = 0.5  # probability, in the classifier
    init: str = "he"  # he: He fan-out convs, N(0, 0.01) linears (SGD learns at once); torch: PyTorch default
    # --- optimisation ---
    epochs: int = 30  # passes over the training split
    batch_size: int = 512  # images per step, summed over all DDP ranks
    optimizer: str = "sgd"  # sgd (Nesterov momentum) or adam
    lr: float = 0.04  # peak learning rate (per step, after warm-up)
    momentum: float = 0.9  # SGD momentum
    weight_decay: float = 5e-4  # L2 penalty, coupled (SGD) / Adam's classic weight_decay
    schedule: str = "linear"  # linear: warm-up then linear to zero; cosine: warm-up then cosine; constant
    warmup_fraction: float = 0.1  # share of all steps spent warming up linearly from lr/100 to lr
    label_smoothing: float = 0.1  # fraction of target mass spread over all classes
    ema_decay: float = 0.995  # per step; exponential moving average of the weights (0 = off)
    # --- augmentation (on the device, on source-size uint8 batches) ---
    crop_padding: int = 4  # pixels: random crop after zero padding (0 = off)
    flip: bool = True  # random horizontal flip
    rotate_degrees: float = 0.0  # max random rotation either way (0 = off)
    color_jitter: float = 0.0  # max relative change of brightness, contrast and saturation (0 = off)
    tta: bool = True  # evaluate on the image and its mirror, averaging probabilities
    # --- run ---
    recipe: str = "default"  # which recipe filled the values above
    device: str = "auto"  # auto (cuda if available), cuda or cpu
    compile: bool = False  # torch.compile the model (CUDA; minutes of compile time, faster steps)
    seed: int = 0  # seeds torch, numpy, python and the data split; a CPU run is repeatable
    output: str = DEFAULT_OUTPUT  # final safetensors checkpoint; reports and state file go beside it
    resume: bool = False  # continue from the state file beside output, if there is one
    progress: bool = True  # tqdm bar per epoch (only when stderr is a terminal)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


RECIPES: dict[str, dict[str, Any]] = {
    "default": {},
    # The guide's recipe as written: Adam 1e-3, batch 64, 5 epochs, no normalization, no augmentation.
    "seed": {
        "epochs": 5,
        "batch_size": 64,
        "init": "torch",
        "optimizer": "adam",
        "lr": 1e-3,
        "weight_decay": 0.0,
        "schedule": "constant",
        "warmup_fraction": 0.0,
        "normalize": False,
        "label_smoothing": 0.0,
        "ema_decay": 0.0,
        "crop_padding": 0,
        "flip": False,
        "rotate_degrees": 0.0,
        "color_jitter": 0.0,
        "tta": False,
    },
}
CHOICES = {
    "init": ("he", "torch"),
    "optimizer": ("sgd", "adam"),
    "schedule": ("linear", "cosine", "constant"),
    "device": ("auto", "cuda", "cpu"),
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def _non_negative_int(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text}")
    return value


def _fraction(text: str) -> float:
    value = float(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be in [0, 1), got {text}")
    return value


_TYPES = {"int": _non_negative_int, "float": _non_negative_float}
_POSITIVE = {"epochs", "batch_size", "train_subset", "source_size", "input_size"}
_FRACTIONS = {"warmup_fraction", "dropout", "momentum", "label_smoothing", "ema_decay", "color_jitter"}
_HELP = {
    "data_dir": f"CIFAR-10 python version or train/<class>/ + test/<class>/ (default: ${DATA_DIR_ENV} or ./data)",
    "recipe": "default: the fast, accurate recipe; seed: the guide's recipe (Adam 1e-3, batch 64, 5 epochs)",
    "resume": "continue from the state file beside --output (epoch, optimizer, EMA, RNG)",
}


def _field_comments() -> dict[str, str]:
    """Each field's comment and default, from the dataclass source: --help says what the code says."""
    try:
        source = inspect.getsource(TrainConfig)
    except OSError:  # no source shipped: bare help
        return {}
    pattern = re.compile(r"^\s+(\w+): [^=]+= (.+?)\s+# (.+)$")
    return {m[1]: f"{m[3]} (default recipe: {m[2]})" for m in map(pattern.match, source.splitlines()) if m}


def build_parser() -> argparse.ArgumentParser:
    """One flag per field; every default is SUPPRESS so only explicit flags reach the namespace."""
    parser = argparse.ArgumentParser(
        prog="alexnet-train",
        description="Train AlexNet on CIFAR-10 (or your own image folders) and write a safetensors checkpoint.",
        argument_default=argparse.SUPPRESS,
    )
    comments = _field_comments()
    for field in fields(TrainConfig):
        flag = "--" + field.name.replace("_", "-")
        help_text = _HELP.get(field.name, comments.get(field.name, ""))
        if field.type == "bool":
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, help=help_text)
        elif field.name == "recipe":
            parser.add_argument(flag, choices=sorted(RECIPES), help=help_text)
        elif field.name in CHOICES:
            parser.add_argument(flag, choices=CHOICES[field.name], help=help_text)
        elif field.name in _POSITIVE:
            parser.add_argument(flag, type=_positive_int, metavar="N", help=help_text)
        elif field.name in _FRACTIONS:
            parser.add_argument(flag, type=_fraction, metavar="X", help=help_text)
        elif field.type in ("str", "int", "float"):
            parser.add_argument(flag, type=_TYPES.get(field.type, str), help=help_text)
        else:
            raise TypeError(f"no command-line type for {field.name}: {field.type}")  # a new field needs one
    return parser


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Recipe values, then explicit flags over them. A bad flag exits with code 2 and argparse's message."""
    parser = build_parser()
    explicit = vars(parser.parse_args(argv))
    recipe = explicit.get("recipe", "default")
    values: dict[str, Any] = {"data_dir": default_data_dir()}
    values.update(RECIPES[recipe])
    values.update(explicit)
    values["recipe"] = recipe
    config = TrainConfig(**values)
    problem = check(config)
    if problem:
        parser.error(problem)
    return config


def default_data_dir() -> str:
    """$ALEXNET_DATA_DIR, else ./data."""
    return os.environ.get(DATA_DIR_ENV) or "./data"


def check(config: TrainConfig) -> str | None:
    """Combinations no single flag can refuse; None when the config is usable."""
    if config.source_size > config.input_size:
        return f"--source-size {config.source_size} is larger than --input-size {config.input_size}"
    if config.crop_padding >= config.source_size:
        return f"--crop-padding {config.crop_padding} must be smaller than --source-size {config.source_size}"
    return None
