"""Training configuration: one frozen dataclass, two recipes, and the command line that fills them.

The dataclass defaults are the ``default`` recipe. ``--recipe seed`` swaps in the guide's recipe as
written; any flag given explicitly wins over the recipe's value. The config is saved in the checkpoint.
Each field declares its own help text (with its unit) and, where the type does not say it, how a flag's
text is checked; the command line is built from the fields alone, so a new field is a new flag.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, Literal, get_args, get_origin, get_type_hints

from models import DEFAULT_CHECKPOINT
from models.alexnet import MIN_INPUT_SIZE
from models.inference import DEVICE_NAMES, DEVICE_PATTERN

DATA_DIR_ENV = "ALEXNET_DATA_DIR"  # the only environment variable training/ reads

# What each recipe changes from the dataclass defaults (the "default" recipe).
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
    # The CPU stand-in (`make serve` and docker-compose.cpu.yml without a GPU): the best a 2-core CPU reached in
    # about 10 minutes of training, by a measured search over input size, subset, epochs, batch and learning rate
    # (docs/training.md#the-cpu-stand-in); not the real model. 64 px, sized to a time budget measured on the
    # machine (two epochs of the 45,000 training images on the 2-core dev machine on a quiet day).
    # The log, the report, the service's log and /health say it is a stand-in (models.checkpoint.STAND_IN_RECIPES).
    # No dropout and no label smoothing: both slow early learning, and a run this short is far from over-fitting
    # (one epoch of 45,000: 47.9% validation accuracy without them, 46.1% with); no flip TTA, which the service
    # does not use, to keep the end of the run short.
    "cpu": {
        "input_size": 64,
        "time_budget_s": 420.0,
        "batch_size": 128,
        "lr": 0.02,
        "dropout": 0.0,
        "label_smoothing": 0.0,
        "tta": False,
        "cpu_bf16": True,
    },
    # The first stand-in, served within minutes while "cpu" trains in the background and replaces it: 40 s of
    # training and a smaller validation split, to keep the end of the run short.
    "cpu-first": {
        "input_size": 64,
        "time_budget_s": 40.0,
        "batch_size": 128,
        "lr": 0.02,
        "dropout": 0.0,
        "label_smoothing": 0.0,
        "tta": False,
        "val_size": 2000,
        "cpu_bf16": True,
    },
}


def _checked(kind: Callable[[str], Any], test: Callable[[Any], bool], wanted: str) -> Callable[[str], Any]:
    def parse(text: str) -> Any:
        value = kind(text)
        if not test(value):  # `not` also refuses nan
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {text}")
        return value

    parse.__name__ = kind.__name__  # argparse names it in "invalid int value"
    return parse


positive_int = _checked(int, lambda v: v >= 1, "a positive integer")
non_negative_int = _checked(int, lambda v: v >= 0, "0 or more")
non_negative_float = _checked(float, lambda v: v >= 0, "0 or more")
positive_float = _checked(float, lambda v: v > 0, "a positive number")
fraction = _checked(float, lambda v: 0 <= v < 1, "in [0, 1)")
device_name = _checked(str, lambda v: re.match(DEVICE_PATTERN, v) is not None, DEVICE_NAMES)


def option(default: Any, help: str, check: Callable[[str], Any] | None = None, **flag: Any) -> Any:
    """A config field with its --help text; ``check`` parses and checks the flag's text (argparse ``type``)."""
    return field(default=default, metadata={"help": help, "check": check, "flag": flag})


@dataclass(frozen=True)
class TrainConfig:
    # --- data ---
    data_dir: str = option(
        "./data",
        f"CIFAR-10 python version or train/<class>/ + test/<class>/ image folders (${DATA_DIR_ENV} when not given)",
    )
    download: bool = option(True, "fetch the official CIFAR-10 archive when data_dir holds no data")
    train_subset: int | None = option(
        None, "images: train on this many (stratified); all when not given", positive_int, metavar="N"
    )
    val_size: int | None = option(
        None,
        "images held out from train for validation (0 = none; default: 10%% of "
        "the training images, at least 2 per class, at most 5,000)",
        non_negative_int,
    )
    source_size: int = option(
        32, "pixels: every image is reduced to this square first (kept in the checkpoint)", positive_int, metavar="N"
    )
    decode_workers: int = option(0, "processes decoding an image folder (0 = one per CPU core)", non_negative_int)
    cache: bool = option(True, "keep decoded image folders as .npz under data_dir/.alexnet-cache")
    # --- model and input ---
    input_size: int = option(
        224, "pixels: network input, upsampled from source_size (tests use 64)", positive_int, metavar="N"
    )
    normalize: bool = option(True, "CIFAR-10 mean/std normalization (off: raw [0, 1] pixels)")
    dropout: float = option(0.5, "probability, in the classifier", fraction, metavar="X")
    init: Literal["he", "torch"] = option(
        "he", "he: He fan-out convs, N(0, 0.01) linears (SGD learns at once); torch: PyTorch's default"
    )
    # --- optimisation ---
    epochs: int = option(30, "passes over the training split", positive_int, metavar="N")
    time_budget_s: float | None = option(
        None,
        "seconds of training steps to size the run to on this machine, from the speed of its first steps: the "
        "epochs, or a share of the training split when one epoch is longer (replaces --epochs and --train-subset)",
        positive_float,
        metavar="S",
    )
    batch_size: int = option(512, "images per step, summed over all DDP ranks", positive_int, metavar="N")
    optimizer: Literal["sgd", "adam"] = option("sgd", "sgd (Nesterov momentum) or adam")
    lr: float = option(0.04, "peak learning rate (per step, after warm-up)", non_negative_float)
    momentum: float = option(0.9, "SGD momentum", fraction, metavar="X")
    weight_decay: float = option(5e-4, "L2 penalty, coupled (SGD) / Adam's classic weight_decay", non_negative_float)
    schedule: Literal["linear", "cosine", "constant"] = option(
        "linear", "linear: warm-up then linear to zero; cosine: warm-up then cosine; constant"
    )
    warmup_fraction: float = option(
        0.1, "share of all steps spent warming up linearly from lr/100 to lr", fraction, metavar="X"
    )
    label_smoothing: float = option(0.1, "fraction of target mass spread over all classes", fraction, metavar="X")
    ema_decay: float = option(
        0.995, "per step; exponential moving average of the weights (0 = off)", fraction, metavar="X"
    )
    # --- augmentation (on the device, on source-size uint8 batches) ---
    crop_padding: int = option(4, "pixels: random crop after zero padding (0 = off)", non_negative_int)
    flip: bool = option(True, "random horizontal flip")
    rotate_degrees: float = option(0.0, "degrees: max random rotation either way (0 = off)", non_negative_float)
    color_jitter: float = option(
        0.0, "max relative change of brightness, contrast and saturation (0 = off)", fraction, metavar="X"
    )
    tta: bool = option(True, "evaluate on the image and its mirror, averaging probabilities")
    ood: bool = option(True, "at the end, measure the out-of-distribution scores and fit the abstention threshold")
    # --- run ---
    recipe: str = option(
        "default",
        "default: the fast, accurate recipe; seed: the guide's recipe "
        "(Adam 1e-3, batch 64, 5 epochs); cpu: a short CPU stand-in to have something to serve "
        "(64 px, batch 128, lr 0.02, sized to 7 minutes of training on this machine); cpu-first: a first "
        "stand-in in 40 s of training, served while cpu trains (make serve without a GPU)",
        choices=tuple(RECIPES),
    )
    device: str = option("auto", DEVICE_NAMES + " (under torchrun: cuda:<local rank>)", device_name)
    compile: bool = option(False, "torch.compile the model (CUDA; minutes of compile time, faster steps)")
    cpu_bf16: bool = option(
        False,
        "on a CPU that computes bf16 natively (AVX512-BF16 or AMX), train in bf16 autocast (35%% more images/s "
        "measured on a 2-core AMD EPYC); elsewhere float32 (CUDA always trains in bf16)",
    )
    seed: int = option(0, "seeds torch, numpy, python and the data split; a CPU run is repeatable", non_negative_int)
    output: str = option(DEFAULT_CHECKPOINT, "final safetensors checkpoint; reports and state file go beside it")
    save_every_s: float = option(
        60.0,
        "seconds: write the resumable state after an epoch when this long has "
        "passed since the last write (0: every epoch); always after the last epoch "
        "and on SIGTERM/SIGINT",
        non_negative_float,
    )
    resume: bool = option(False, "continue from the state file beside --output (epoch, optimizer, EMA, RNG)")
    stale_state: Literal["refuse", "restart"] = option(
        "refuse",
        "with --resume, a state file saved under other settings: refuse (stop, naming the "
        "differences) or restart (keep it as <name>.state.pt.stale and start afresh; make serve and compose)",
    )
    progress: bool = option(True, "tqdm bar per epoch (only when stderr is a terminal)")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_saved(cls, values: dict[str, Any]) -> TrainConfig | None:
        """The config a checkpoint records (``to_dict``, saved by the trainer), typed again; None when the
        checkpoint was not written by the trainer (it records no seed or validation size: a random checkpoint's
        note, say). Fields added since it was saved take their defaults; fields since removed are dropped."""
        if "seed" not in values or "val_size" not in values:
            return None
        names = {f.name for f in fields(cls)}
        return cls(**{name: value for name, value in values.items() if name in names})


def build_parser() -> argparse.ArgumentParser:
    """One flag per field; every default is SUPPRESS so only explicit flags reach the namespace."""
    parser = argparse.ArgumentParser(
        prog="alexnet-train",
        description="Train AlexNet on CIFAR-10 (or your own image folders) and write a safetensors checkpoint.",
        argument_default=argparse.SUPPRESS,
    )
    types = get_type_hints(TrainConfig)
    for config_field in fields(TrainConfig):
        kind, meta = types[config_field.name], config_field.metadata
        flag = "--" + config_field.name.replace("_", "-")
        shown = "none" if config_field.default is None else config_field.default
        options: dict[str, Any] = {"help": f"{meta['help']} (default recipe: {shown})", **meta["flag"]}
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif get_origin(kind) is Literal:
            options["choices"] = get_args(kind)
        elif meta["check"] is not None:
            options["type"] = meta["check"]
        elif kind is not str:
            raise TypeError(f"{config_field.name}: a {kind} field needs a check")  # a new field declares one
        parser.add_argument(flag, **options)
    return parser


def parse_args(argv: Sequence[str] | None = None) -> TrainConfig:
    """Recipe values, then explicit flags over them. A bad flag exits with code 2 and argparse's message."""
    parser = build_parser()
    explicit = vars(parser.parse_args(argv))
    recipe = explicit.get("recipe", "default")
    values: dict[str, Any] = {"data_dir": default_data_dir()}
    values.update(RECIPES[recipe])
    if {"epochs", "train_subset"} & explicit.keys():
        values.pop("time_budget_s", None)  # sizes given by hand win over a recipe's time budget
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


def sized_to_budget(config: TrainConfig, images_per_second: float, train_images: int) -> TrainConfig:
    """``config`` with the epochs (and, when one epoch is longer than the budget, a training subset) that the
    time budget buys at ``images_per_second`` over ``train_images``. Validation and the end of the run come on
    top of the budget."""
    assert config.time_budget_s is not None
    affordable = config.time_budget_s * images_per_second  # images
    # The nearest whole number of epochs, over a share of the split when that fills the budget better than all
    # of it: 1.8 epochs' worth is two over 90% of the images, 1.2 is one over all of them (ending early).
    epochs = max(1, round(affordable / train_images))
    per_epoch = int(affordable / epochs)
    if per_epoch >= train_images:
        return replace(config, epochs=epochs, train_subset=None)
    subset = max(config.batch_size, per_epoch // config.batch_size * config.batch_size)  # whole batches
    return replace(config, epochs=epochs, train_subset=subset)


def check(config: TrainConfig) -> str | None:
    """Combinations no single flag can refuse; None when the config is usable."""
    if config.input_size < MIN_INPUT_SIZE:
        return f"--input-size {config.input_size} is below {MIN_INPUT_SIZE}, the smallest AlexNet's max-pools take"
    if config.source_size > config.input_size:
        return f"--source-size {config.source_size} is larger than --input-size {config.input_size}"
    if config.crop_padding >= config.source_size:
        return f"--crop-padding {config.crop_padding} must be smaller than --source-size {config.source_size}"
    return None
