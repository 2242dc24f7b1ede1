"""The checkpoint format: safetensors weights plus the metadata needed to rebuild and preprocess.

No pickle anywhere: safetensors stores raw tensors and a JSON header, so loading a file from
elsewhere cannot run code. One loader serves evaluation and the service.

Metadata (all strings, JSON where structured): ``format``, ``format_version``, ``model_args``,
``classes``, ``preprocess``, ``config``, ``metrics``, ``weights_sha256``; from version 2 also
``calibration`` (the temperature fitted on the validation split, and how it was fitted) and ``abstention``
(the out-of-distribution score kept, its threshold, and the sha256 of its fitted tensors, stored beside the
weights under the prefix ``abstention.``). A version 1 file loads as uncalibrated (temperature 1) and
without abstention.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save as serialize
from torch import nn

from models.abstention import SCORES, TENSOR_PREFIX, Abstention, FeatureGaussian
from models.alexnet import AlexNet
from models.files import atomic_write
from models.transforms import CIFAR10_CLASSES, INPUT_SIZE, PreprocessSpec

# Where the trainer writes and the service reads by default (the Makefile, Dockerfile and compose name it too).
DEFAULT_CHECKPOINT = "checkpoints/alexnet-cifar10.safetensors"
# The self-contained report page written beside a checkpoint; it names its weights in a <meta> tag, so that
# the service serves only the page of the weights it has loaded.
REPORT_FILE = "report.html"
REPORT_SHA_META = "alexnet-weights-sha256"
FORMAT_NAME = "alexnet-service-checkpoint"
FORMAT_VERSION = 2  # 2: adds ``calibration``
READABLE_VERSIONS = ("1", "2")
REQUIRED_METADATA = ("format", "format_version", "model_args", "classes", "preprocess", "weights_sha256")


class CheckpointError(Exception):
    """A checkpoint that cannot be used; the message names the file and the problem."""

    def __init__(self, path: str | os.PathLike[str], problem: str) -> None:
        super().__init__(f"checkpoint {os.fspath(path)}: {problem}")
        self.path = os.fspath(path)
        self.problem = problem


# Training recipes whose checkpoints are stand-ins (a short CPU run to have something to serve), not the model
# this project is about: the trainer, its report, the service's log and /health all say so. A first stand-in
# (cpu-first, about a minute of training) is there to be replaced by the cpu recipe's run while it serves.
FIRST_STAND_IN_RECIPE = "cpu-first"
STAND_IN_RECIPES = frozenset({"cpu", FIRST_STAND_IN_RECIPE})


@dataclass(frozen=True)
class Checkpoint:
    """Everything a checkpoint holds, checked."""

    state_dict: dict[str, torch.Tensor]
    model_args: dict[str, Any]
    classes: tuple[str, ...]
    preprocess: PreprocessSpec
    weights_sha256: str
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)  # empty: never calibrated (temperature 1)
    format_version: int = FORMAT_VERSION
    abstention: dict[str, Any] = field(default_factory=dict)  # empty: no OOD score fitted
    extras: dict[str, torch.Tensor] = field(default_factory=dict)  # the abstention's fitted tensors

    def abstention_rule(self) -> Abstention | None:
        """The score and threshold that flag a prediction, as fitted for this model; None when none was."""
        if not self.abstention:
            return None
        gaussian = FeatureGaussian.from_tensors(self.extras) if self.abstention["score"] == "mahalanobis" else None
        return Abstention(self.abstention["score"], float(self.abstention["threshold"]), gaussian)

    @property
    def temperature(self) -> float:
        """What the logits are divided by before the softmax; 1 for an uncalibrated checkpoint."""
        return float(self.calibration.get("temperature", 1.0))

    @property
    def stand_in(self) -> bool:
        """Trained by a stand-in recipe (``--recipe cpu``), not the real model."""
        return self.config.get("recipe") in STAND_IN_RECIPES

    def build_model(self) -> AlexNet:
        """The network with these weights, in eval mode, on the CPU."""
        model = AlexNet(**self.model_args)
        model.load_state_dict(self.state_dict)
        return model.eval()


def weights_sha256(state_dict: Mapping[str, torch.Tensor]) -> str:
    """A checksum of names, dtypes, shapes and bytes, independent of the file's layout."""
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        tensor = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def save_checkpoint(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    model_args: Mapping[str, Any],
    classes: tuple[str, ...] | list[str],
    preprocess: PreprocessSpec,
    config: Mapping[str, Any] | None = None,
    metrics: Mapping[str, Any] | None = None,
    calibration: Mapping[str, Any] | None = None,
    abstention: Mapping[str, Any] | None = None,
    extras: Mapping[str, torch.Tensor] | None = None,
) -> str:
    """Write the model's weights and metadata atomically; return the weights' sha256.

    Pass the unwrapped module (not a DDP or compiled wrapper) so the keys are the plain ones. ``extras``: the
    abstention's tensors, named with ``abstention.``; their checksum goes into the ``abstention`` metadata.
    """
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    extra = {k: v.detach().to("cpu").contiguous() for k, v in (extras or {}).items()}
    if any(not name.startswith(TENSOR_PREFIX) for name in extra):
        raise ValueError(f"extra tensors must be named {TENSOR_PREFIX}*")
    abstention = {**abstention, "tensors_sha256": weights_sha256(extra)} if abstention else {}
    if len(classes) != model_args.get("num_classes", len(classes)):
        raise ValueError(f"{len(classes)} class names for a model with {model_args['num_classes']} outputs")
    sha = weights_sha256(state)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": str(FORMAT_VERSION),
        "model_args": json.dumps(dict(model_args)),
        "classes": json.dumps(list(classes)),
        "preprocess": json.dumps(preprocess.to_dict()),
        "config": json.dumps(dict(config or {}), default=str),
        "metrics": json.dumps(dict(metrics or {})),
        "calibration": json.dumps(dict(calibration or {})),
        "abstention": json.dumps(abstention),
        "weights_sha256": sha,
    }
    # Serialised in memory (one more copy of the weights) and written by atomic_write's file: save_file's own
    # writer reports a full disk as a SafetensorError, not as the OSError it is.
    atomic_write(path, lambda f: f.write(serialize({**state, **extra}, metadata=metadata)))
    return sha


def save_random_checkpoint(
    path: str | os.PathLike[str],
    *,
    input_size: int = INPUT_SIZE,
    seed: int = 0,
    note: str = "random weights",
    with_rule: bool = False,
) -> Path:
    """A real checkpoint of an untrained CIFAR-10 AlexNet, for tests, smoke tests and benchmarks.

    Timing and plumbing do not depend on the weights; a small ``input_size`` (e.g. 64) keeps CPU tests fast.
    ``with_rule``: with a Mahalanobis abstention rule of random tensors, the score a trained checkpoint most
    often keeps and the dearest (a 4096x4096 product per image), so that a benchmark pays what the service pays
    for a trained model; its verdicts mean nothing.
    """
    model_args = {"num_classes": len(CIFAR10_CLASSES), "dropout": 0.5}
    with torch.random.fork_rng(devices=[]):  # seeded without disturbing the caller's random state
        torch.manual_seed(seed)
        model = AlexNet(**model_args)
        gaussian = _random_gaussian(model.classifier[-1].in_features, len(CIFAR10_CLASSES)) if with_rule else None
    save_checkpoint(
        path,
        model,
        model_args=model_args,
        classes=CIFAR10_CLASSES,
        preprocess=PreprocessSpec(input_size=input_size),
        config={"note": note},
        abstention={"score": "mahalanobis", "threshold": 0.0, "target": "random: no meaning"} if gaussian else None,
        extras=gaussian.tensors() if gaussian else None,
    )
    return Path(path)


def _random_gaussian(features: int, classes: int) -> FeatureGaussian:
    """Fitted tensors of the right shapes and a positive-definite precision (the identity plus a little)."""
    precision = torch.eye(features) + 0.01 * torch.rand(features, features)
    precision = (precision + precision.T) / 2
    means = torch.randn(classes, features) / features**0.5  # unit length, as the features are made
    projected = means @ precision
    return FeatureGaussian(precision, projected, (projected * means).sum(dim=1))


def load_report(checkpoint: str | os.PathLike[str], weights_sha256: str) -> str | None:
    """The report page beside a checkpoint when it is the page of these weights; None otherwise."""
    path = Path(checkpoint).with_name(REPORT_FILE)
    try:
        page = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    return page if f"<meta name='{REPORT_SHA_META}' content='{weights_sha256}'>" in page else None


def recorded_recipe(path: str | os.PathLike[str]) -> str | None:
    """The training recipe a checkpoint's metadata names, read without its weights; None when it names none or
    the file is not a readable checkpoint."""
    try:
        with safe_open(Path(path), framework="pt", device="cpu") as f:
            config = json.loads((f.metadata() or {}).get("config", "{}"))
    except (SafetensorError, OSError, ValueError):
        return None
    recipe = config.get("recipe") if isinstance(config, dict) else None
    return recipe if isinstance(recipe, str) else None


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Read and check a checkpoint; any problem raises CheckpointError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(path, "no such file")
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118 (safe_open has no iter)
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(path, f"not a readable safetensors file ({exc})") from exc
    return _check(path, metadata, state)


def _check(path: Path, metadata: dict[str, str], state: dict[str, torch.Tensor]) -> Checkpoint:
    missing = [key for key in REQUIRED_METADATA if key not in metadata]
    if missing:
        raise CheckpointError(path, f"not an alexnet-service checkpoint (missing metadata: {', '.join(missing)})")
    if metadata["format"] != FORMAT_NAME:
        raise CheckpointError(path, f"unknown format {metadata['format']!r}")
    if metadata["format_version"] not in READABLE_VERSIONS:
        readable = " and ".join(READABLE_VERSIONS)
        raise CheckpointError(
            path, f"format version {metadata['format_version']} is not supported (this code reads {readable})"
        )
    try:
        model_args = json.loads(metadata["model_args"])
        classes = tuple(str(c) for c in json.loads(metadata["classes"]))
        preprocess = PreprocessSpec.from_dict(json.loads(metadata["preprocess"]))
        config = json.loads(metadata.get("config", "{}"))
        metrics = json.loads(metadata.get("metrics", "{}"))
        calibration = json.loads(metadata.get("calibration", "{}"))
        abstention = json.loads(metadata.get("abstention", "{}"))
    except (ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(path, f"metadata is malformed ({exc!r})") from exc
    temperature = calibration.get("temperature", 1.0) if isinstance(calibration, dict) else None
    if not isinstance(temperature, int | float) or not 0 < temperature < float("inf"):
        raise CheckpointError(path, f"calibration temperature {temperature!r} is not a positive number")
    if model_args.get("num_classes") != len(classes):
        raise CheckpointError(path, f"{len(classes)} class names for {model_args.get('num_classes')} model outputs")
    extras = {name: state.pop(name) for name in [n for n in state if n.startswith(TENSOR_PREFIX)]}
    actual = weights_sha256(state)
    if actual != metadata["weights_sha256"]:
        raise CheckpointError(path, "weights do not match their sha256: the file is corrupt or was altered")
    _check_fits(path, model_args, state)
    _check_abstention(path, abstention, extras, len(classes))
    version = int(metadata["format_version"])
    return Checkpoint(
        state, model_args, classes, preprocess, actual, config, metrics, calibration, version, abstention, extras
    )


def _check_abstention(path: Path, abstention: Any, extras: dict[str, torch.Tensor], num_classes: int) -> None:
    """A known score, a finite threshold, and for mahalanobis its tensors, intact and of matching shapes."""
    if not abstention and not extras:
        return
    if not isinstance(abstention, dict) or abstention.get("score") not in SCORES:
        raise CheckpointError(path, f"abstention score must be one of {', '.join(SCORES)}")
    threshold = abstention.get("threshold")
    if not isinstance(threshold, int | float) or threshold != threshold or abs(threshold) == float("inf"):
        raise CheckpointError(path, f"abstention threshold {threshold!r} is not a finite number")
    if weights_sha256(extras) != abstention.get("tensors_sha256"):
        raise CheckpointError(path, "the abstention's tensors do not match their sha256")
    if abstention["score"] == "mahalanobis":
        try:
            gaussian = FeatureGaussian.from_tensors(extras)
        except KeyError as exc:
            raise CheckpointError(path, f"the mahalanobis score lacks its tensor {exc}") from None
        size = gaussian.precision.shape[0]
        if gaussian.precision.shape != (size, size) or gaussian.projected_means.shape != (num_classes, size):
            raise CheckpointError(path, "the mahalanobis tensors do not fit the model")


def _check_fits(path: Path, model_args: dict[str, Any], state: dict[str, torch.Tensor]) -> None:
    """The tensors must be exactly the network's: same names, same shapes (checked on the meta device)."""
    try:
        with torch.device("meta"):  # shapes only: allocates nothing
            expected = AlexNet(**model_args).state_dict()
    except TypeError as exc:
        raise CheckpointError(path, f"model_args do not fit AlexNet ({exc})") from exc
    if expected.keys() != state.keys():
        extra, absent = sorted(state.keys() - expected.keys()), sorted(expected.keys() - state.keys())
        raise CheckpointError(path, f"weights do not fit AlexNet (unexpected: {extra}, missing: {absent})")
    for name, tensor in expected.items():
        if tensor.shape != state[name].shape:
            shape = tuple(state[name].shape)
            raise CheckpointError(path, f"{name} has shape {shape}, AlexNet needs {tuple(tensor.shape)}")
