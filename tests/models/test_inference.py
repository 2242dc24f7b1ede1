"""The one inference pass: what it computes, its device vocabulary and its precision policy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from benchmarks.payloads import cifar_arrays
from models import Classifier, DeviceError, Preprocess, load_checkpoint, resolve_device, save_random_checkpoint
from models.inference import autocast_dtype, weights_layout
from tests.helpers import BF16_TOLERANCE, FP32_TOLERANCE, prediction_error, write_he_checkpoint


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_probabilities_are_a_plain_forward_pass_and_its_mirror(tiny_checkpoint: Path, images: torch.Tensor) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    model, preprocess = ckpt.build_model(), Preprocess(ckpt.preprocess)
    classifier = Classifier(model.train(), preprocess, torch.device("cpu"))  # the pass switches dropout off
    predictions = classifier.predict(images, batch_size=2)
    probs = predictions.probabilities
    with torch.inference_mode():
        expected = model.eval()(preprocess(images))
        mirrored = model(preprocess(images.flip(3)))
    torch.testing.assert_close(probs, expected.softmax(dim=1))
    assert probs.dtype == torch.float32 and probs.device.type == "cpu" and probs.shape == (5, 10)
    assert predictions.scores is None  # no abstention rule in this checkpoint
    torch.testing.assert_close(classifier.logits(images.numpy(), mirrored=True, batch_size=3), mirrored)


def test_from_checkpoint_serves_channels_last_with_the_same_answer(tiny_checkpoint: Path, images: torch.Tensor) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    served = Classifier.from_checkpoint(ckpt, torch.device("cpu"))
    plain = Classifier(ckpt.build_model(), Preprocess(ckpt.preprocess), torch.device("cpu"))
    assert served.layout == torch.channels_last and plain.layout == torch.contiguous_format
    assert weights_layout(served.model) == torch.channels_last
    hwc = images.permute(0, 2, 3, 1).contiguous()  # decoded uploads arrive as (N, H, W, C)
    served_rows = served.predict(hwc.permute(0, 3, 1, 2)).probabilities
    torch.testing.assert_close(served_rows, plain.predict(images).probabilities)


def test_device_vocabulary() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    for bad in ("gpu", "cuda:", "cuda:x", "CPU", ""):
        with pytest.raises(DeviceError, match="is not one of auto"):
            resolve_device(bad)
    if not torch.cuda.is_available():
        for name in ("cuda", "cuda:0"):
            with pytest.raises(DeviceError, match="CUDA is not available"):
                resolve_device(name)
    else:
        assert resolve_device("cuda").index is not None  # always with its index: /health says cuda:0


def test_precision_policy() -> None:
    cpu = torch.device("cpu")
    assert autocast_dtype("auto", cpu) is None  # float32 on a CPU
    assert autocast_dtype("fp32", cpu) is None
    assert autocast_dtype("bf16", cpu) is torch.bfloat16
    assert autocast_dtype("fp16", cpu) is torch.float16
    with pytest.raises(ValueError, match="precision 'fp8'"):
        autocast_dtype("fp8", cpu)


def test_bf16_on_a_cpu_stays_close_to_fp32(tiny_checkpoint: Path, images: torch.Tensor) -> None:
    ckpt = load_checkpoint(tiny_checkpoint)
    fp32 = Classifier.from_checkpoint(ckpt, torch.device("cpu")).predict(images).probabilities
    bf16 = Classifier.from_checkpoint(ckpt, torch.device("cpu"), "bf16").predict(images).probabilities
    assert bf16.dtype == torch.float32  # the softmax is always taken in float32
    torch.testing.assert_close(bf16, fp32, atol=2e-2, rtol=0)


def test_the_device_comparison_passes_bf16_and_catches_a_wrong_channel_order_or_layout(tmp_path: Path) -> None:
    """The check tests/cuda/test_cuda_service.py makes between the CPU and CUDA, made here between two CPU passes:
    bf16 autocast stays within the bf16 tolerance; the mistakes a device port makes go far beyond it."""
    ckpt = load_checkpoint(write_he_checkpoint(tmp_path / "he.safetensors"))
    images = torch.from_numpy(np.stack(cifar_arrays(9, tmp_path / "none")))  # (9, 32, 32, 3), as uploads decode

    def served(precision: str, hwc: torch.Tensor) -> torch.Tensor:
        classifier = Classifier.from_checkpoint(ckpt, torch.device("cpu"), precision)
        return classifier.predict(hwc.permute(0, 3, 1, 2)).probabilities

    expected = served("fp32", images)
    assert prediction_error(served("fp32", images.clone()), expected) <= FP32_TOLERANCE
    assert 0 < prediction_error(served("bf16", images), expected) <= BF16_TOLERANCE
    mistakes = {
        "channels in BGR order": images.flip(3),
        "height and width swapped": images.transpose(1, 2),
        "mirrored": images.flip(2),
    }
    for mistake, wrong in mistakes.items():
        assert prediction_error(served("fp32", wrong), expected) > 3 * BF16_TOLERANCE, mistake


def test_the_served_pass_scores_with_the_checkpoints_rule(tmp_path: Path, images: torch.Tensor) -> None:
    ckpt = load_checkpoint(save_random_checkpoint(tmp_path / "rule.safetensors", input_size=64, with_rule=True))
    classifier = Classifier.from_checkpoint(ckpt, torch.device("cpu"))
    assert classifier.abstention is not None and classifier.abstention.gaussian.precision.device.type == "cpu"
    predictions = classifier.predict(images, batch_size=3)
    logits, features = classifier.logits_and_features(images)
    rule = ckpt.abstention_rule()
    torch.testing.assert_close(predictions.scores, rule.scores(logits, features, ckpt.temperature))
    torch.testing.assert_close(predictions.probabilities, logits.softmax(dim=1))
    whole = classifier.predict(images)  # one pass of them all, as the service runs it: the same rows
    torch.testing.assert_close(whole.scores, predictions.scores)
    torch.testing.assert_close(whole.probabilities, predictions.probabilities)
    none = classifier.predict(images[:0])  # no images: no pass, empty rows
    assert none.probabilities.shape == (0, 0) and none.scores is not None and none.scores.shape == (0,)
