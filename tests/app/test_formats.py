"""Only six image formats reach a decoder: every other format Pillow could decode is refused with 415."""

from __future__ import annotations

import io
import warnings

import httpx
import pytest
from PIL import Image

from models.images import SUPPORTED_FORMATS
from tests.app.helpers import LiveServer, encode, files, picture


def other_formats() -> dict[str, bytes]:
    """Every format this Pillow can write and read back, outside the six: each a decoder an upload must not reach."""
    Image.init()
    found = {}
    for fmt in sorted(set(Image.SAVE) - set(SUPPORTED_FORMATS) - {"MPO"}):  # MPO is a JPEG, read by the JPEG decoder
        try:
            with warnings.catch_warnings():  # some of these formats are deprecated in Pillow: that is the point
                warnings.simplefilter("ignore", DeprecationWarning)
                data = encode(picture(), fmt)
                Image.open(io.BytesIO(data)).load()
        except Exception:  # an encoder without its library here (e.g. EPS without Ghostscript)
            continue
        found[fmt] = data
    return found


def test_the_six_formats_are_the_ones_documented() -> None:
    # Widening this list opens more of Pillow's decoders to the internet (docs/reliability.md): decide it there.
    assert SUPPORTED_FORMATS == ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")


def test_formats_pillow_could_decode_are_refused(server: LiveServer) -> None:
    others = other_formats()
    assert {"TGA", "PCX", "ICO", "PPM", "SGI"} <= set(others)  # the test is not vacuous
    for fmt, data in others.items():
        response = httpx.post(server.url + "/predict", files=files((f"image.{fmt.lower()}", data)), timeout=30)
        assert response.status_code == 415, fmt
        assert "not a supported image" in response.json()["detail"], fmt


@pytest.mark.parametrize("fmt", SUPPORTED_FORMATS)
def test_each_of_the_six_is_served(server: LiveServer, fmt: str) -> None:
    data = encode(picture(), fmt)
    assert (
        httpx.post(server.url + "/predict", files=files((f"image.{fmt.lower()}", data)), timeout=30).status_code == 200
    )
