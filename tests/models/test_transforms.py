import pytest
import torch
import torch.nn.functional as F

from models import CIFAR10_MEAN, CIFAR10_STD, Preprocess, PreprocessSpec


def test_batch_equals_single_images() -> None:
    images = torch.randint(0, 256, (5, 3, 32, 32), dtype=torch.uint8)
    preprocess = Preprocess()
    batch = preprocess(images)
    singles = torch.cat([preprocess(images[i : i + 1]) for i in range(5)])
    assert batch.shape == (5, 3, 224, 224)
    torch.testing.assert_close(batch, singles, rtol=0, atol=1e-6)


def test_values_follow_the_formula() -> None:
    images = torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)
    out = Preprocess()(images)
    expected = F.interpolate(images.float() / 255, size=(224, 224), mode="bilinear", align_corners=False)
    mean = torch.tensor(CIFAR10_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(CIFAR10_STD).view(1, 3, 1, 1)
    torch.testing.assert_close(out, (expected - mean) / std)


def test_constant_image_normalises_to_known_values() -> None:
    images = torch.full((1, 3, 32, 32), 255, dtype=torch.uint8)
    out = Preprocess()(images)
    for c in range(3):
        assert out[0, c].unique().item() == pytest.approx((1 - CIFAR10_MEAN[c]) / CIFAR10_STD[c], rel=1e-5)


def test_spec_round_trip_and_input_size() -> None:
    spec = PreprocessSpec(input_size=64)
    assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    assert Preprocess(spec)(torch.zeros(1, 3, 32, 32, dtype=torch.uint8)).shape == (1, 3, 64, 64)


def test_rejects_float_input() -> None:
    with pytest.raises(ValueError, match="uint8"):
        Preprocess()(torch.zeros(1, 3, 32, 32))
