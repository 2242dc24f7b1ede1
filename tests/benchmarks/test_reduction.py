"""The reduction benchmark's candidates: "centre-crop / reduced decode" is exactly models.load_image."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks.reduction import KINDS, photo_like, reducer
from models import load_image


def test_todays_candidate_is_the_products_function() -> None:
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for kind in KINDS:
        data = photo_like(image, kind, rng)
        np.testing.assert_array_equal(reducer("centre-crop", True)(data), load_image(data).transpose(2, 0, 1))


def test_the_photo_like_kinds_and_what_undoes_them() -> None:
    rng = np.random.default_rng(1)
    image = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, axis=0).repeat(3, axis=2)
    sizes = {kind: Image.open(io.BytesIO(photo_like(image, kind, rng))).size for kind in KINDS}
    assert sizes == {"wide": (640, 480), "extended": (640, 480), "pasted": (400, 300), "large": (2000, 2000)}
    wide, extended = (photo_like(image, kind, rng) for kind in ("wide", "extended"))
    gap = lambda got: np.abs(got.astype(int) - image.transpose(2, 0, 1)).mean()  # noqa: E731
    assert gap(reducer("squash", False)(wide)) < gap(reducer("centre-crop", False)(wide))  # a stretch: squash undoes it
    assert gap(reducer("centre-crop", False)(extended)) < gap(reducer("squash", False)(extended))  # more context: crop
