"""POST /predict over real HTTP: answers, order, top-k, every format and mode a phone or a tool may send."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from PIL import Image

from app.schemas import PredictResponse
from models import CIFAR10_CLASSES, load_checkpoint
from tests.app.helpers import encode, files, picture, png


def test_one_image_gets_a_full_answer(client: httpx.Client, tiny_checkpoint: Path) -> None:
    response = client.post("/predict", files=files(("cat.png", png())))
    assert response.status_code == 200
    body = response.json()
    PredictResponse.model_validate(body)  # the documented shape, exactly
    (prediction,) = body["predictions"]
    assert prediction["filename"] == "cat.png"
    top = prediction["top_k"]
    assert len(top) == 5  # the default k
    assert [t["probability"] for t in top] == sorted((t["probability"] for t in top), reverse=True)
    assert (prediction["label"], prediction["probability"]) == (top[0]["label"], top[0]["probability"])
    assert all(CIFAR10_CLASSES[t["index"]] == t["label"] for t in top)
    assert len({t["index"] for t in top}) == 5
    assert body["model"]["weights_sha256"] == load_checkpoint(tiny_checkpoint).weights_sha256
    assert body["model"]["name"] == "alexnet" and body["model"]["input_size"] == 64


def test_several_images_answer_in_request_order(client: httpx.Client) -> None:
    names = [f"img{i}.png" for i in range(5)]
    uploads = files(*((name, png(picture(seed=i))) for i, name in enumerate(names)))
    body = client.post("/predict", files=uploads).json()
    assert [p["filename"] for p in body["predictions"]] == names
    # Each image answered on its own merits: the same picture alone gets the same answer.
    alone = client.post("/predict", files=files(("x.png", png(picture(seed=3))))).json()["predictions"][0]
    assert body["predictions"][3]["top_k"] == alone["top_k"]


def test_top_k_per_request(client: httpx.Client) -> None:
    for k in (1, 3, 10):
        body = client.post("/predict", params={"top_k": k}, files=files(("a.png", png()))).json()
        assert len(body["predictions"][0]["top_k"]) == k
    full = client.post("/predict", params={"top_k": 10}, files=files(("a.png", png()))).json()
    assert sum(t["probability"] for t in full["predictions"][0]["top_k"]) == pytest.approx(1.0, abs=1e-5)


@pytest.mark.parametrize("k", ["0", "11", "-1", "two"])
def test_bad_top_k_is_422(client: httpx.Client, k: str) -> None:
    response = client.post("/predict", params={"top_k": k}, files=files(("a.png", png())))
    assert response.status_code == 422
    assert "top_k" in str(response.json()["detail"])


def _answer(client: httpx.Client, name: str, data: bytes) -> list[dict]:
    response = client.post("/predict", params={"top_k": 10}, files=files((name, data)))
    assert response.status_code == 200, response.text
    return response.json()["predictions"][0]["top_k"]


def _rgb_reference(image: Image.Image) -> bytes:
    return png(image.convert("RGB"))


LOSSLESS = {
    "png": ("PNG", {}),
    "bmp": ("BMP", {}),
    "tiff": ("TIFF", {}),
    "webp": ("WEBP", {"lossless": True}),
}


@pytest.mark.parametrize("name", sorted(LOSSLESS))
def test_lossless_formats_match_the_same_pixels_as_png(client: httpx.Client, name: str) -> None:
    fmt, options = LOSSLESS[name]
    image = picture()
    assert _answer(client, f"a.{name}", encode(image, fmt, **options)) == _answer(client, "a.png", png(image))


def test_jpeg_and_lossy_webp_are_classified(client: httpx.Client) -> None:
    for name, data in (("a.jpg", encode(picture(), "JPEG", quality=90)), ("a.webp", encode(picture(), "WEBP"))):
        assert len(_answer(client, name, data)) == 10


def test_gif_uses_the_first_frame(client: httpx.Client) -> None:
    first, second = picture(seed=1).quantize(256), picture(seed=2).transpose(Image.Transpose.ROTATE_180).quantize(256)
    gif = encode(first, "GIF", save_all=True, append_images=[second], duration=100, loop=0)
    assert _answer(client, "a.gif", gif) == _answer(client, "first.png", _rgb_reference(first))
    assert _answer(client, "a.gif", gif) != _answer(client, "second.png", _rgb_reference(second))


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "CMYK", "I;16"])
def test_modes_convert_like_the_trainer(client: httpx.Client, mode: str) -> None:
    """Each mode, sent as TIFF (which stores them all), answers as its RGB rendering does."""
    base = picture()
    if mode == "I;16":
        import numpy as np

        wide = (np.asarray(base.convert("L"), dtype=np.uint16) * 257).astype(np.uint16)  # 16-bit samples
        image = Image.fromarray(wide)  # mode I;16
        reference = base.convert("L").convert("RGB")  # the top 8 bits: the same gray levels
    elif mode in ("RGBA", "LA"):
        image = base.convert(mode)
        alpha = Image.linear_gradient("L").resize(base.size)  # transparent at the top, opaque at the bottom
        image.putalpha(alpha)
        white = Image.new("RGBA", base.size, (255, 255, 255, 255))
        reference = Image.alpha_composite(white, image.convert("RGBA")).convert("RGB")  # alpha on white
        assert _answer(client, "a.png", encode(image, "PNG")) != _answer(client, "b.png", png(base))
    else:
        image = base.convert(mode) if mode != "P" else base.quantize(64)
        reference = image.convert("RGB")
    assert _answer(client, f"{mode}.tiff", encode(image, "TIFF")) == _answer(client, "ref.png", png(reference))
    if mode != "CMYK":  # PNG has no CMYK
        assert _answer(client, f"{mode}.png", encode(image, "PNG")) == _answer(client, "ref.png", png(reference))


def test_exif_orientation_is_applied(client: httpx.Client) -> None:
    upright = picture(48, 40)
    stored = upright.transpose(Image.Transpose.ROTATE_90)  # how a phone stores a turned photo
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees clockwise to display
    turned = encode(stored, "PNG", exif=exif.tobytes())
    assert _answer(client, "phone.png", turned) == _answer(client, "upright.png", png(upright))
    assert _answer(client, "phone.png", turned) != _answer(client, "stored.png", png(stored))  # the tag mattered


def test_large_jpeg_is_accepted(client: httpx.Client) -> None:
    big = picture(3000, 2000).resize((3000, 2000))
    assert len(_answer(client, "photo.jpg", encode(big, "JPEG", quality=85))) == 10
