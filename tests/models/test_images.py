import io

import numpy as np
import pytest
from PIL import Image

from models.images import (
    CorruptImageError,
    ImageTooLargeError,
    UnsupportedImageError,
    load_image,
)


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **kwargs)
    return buffer.getvalue()


def solid(mode: str, color, size=(40, 30)) -> Image.Image:
    return Image.new(mode, size, color)


@pytest.mark.parametrize("fmt", ["PNG", "BMP", "TIFF", "WEBP"])
def test_lossless_formats_keep_colour(fmt: str) -> None:
    data = encode(solid("RGB", (200, 30, 90)), fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    array = load_image(data)
    assert array.shape == (32, 32, 3) and array.dtype == np.uint8
    assert (array == (200, 30, 90)).all()


def test_jpeg_and_gif() -> None:
    assert np.abs(load_image(encode(solid("RGB", (10, 120, 240)), "JPEG")).astype(int) - (10, 120, 240)).max() < 6
    gif = encode(solid("RGB", (255, 0, 0)).convert("P"), "GIF")
    assert (load_image(gif) == (255, 0, 0)).all()


def test_cifar_sized_png_is_unchanged() -> None:
    pixels = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert (load_image(encode(Image.fromarray(pixels), "PNG")) == pixels).all()


def test_modes_convert_correctly() -> None:
    assert (load_image(encode(solid("L", 77), "PNG")) == 77).all()
    # 16-bit grey: 0xAB00 keeps its top byte, 0xAB, rather than clipping to 255.
    sixteen = Image.fromarray(np.full((30, 40), 0xAB00, dtype=np.uint16))
    assert (load_image(encode(sixteen, "PNG")) == 0xAB).all()
    # Fully transparent pixels come out white; opaque ones keep their colour.
    assert (load_image(encode(solid("RGBA", (0, 0, 0, 0)), "PNG")) == 255).all()
    assert (load_image(encode(solid("RGBA", (5, 6, 7, 255)), "PNG")) == (5, 6, 7)).all()
    palette = solid("RGB", (0, 200, 0)).convert("P", palette=Image.Palette.ADAPTIVE)
    assert (load_image(encode(palette, "PNG")) == (0, 200, 0)).all()
    cmyk = load_image(encode(solid("CMYK", (0, 255, 255, 0)), "JPEG")).astype(int)  # pure red in CMYK
    assert cmyk[..., 0].min() > 240 and cmyk[..., 1:].max() < 15


def test_exif_orientation_is_applied() -> None:
    # A 2:1 landscape, left half black, right half white, stored with "rotate 90 CW to display".
    pixels = np.zeros((32, 64, 3), dtype=np.uint8)
    pixels[:, 32:] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    data = encode(Image.fromarray(pixels), "PNG", exif=exif)
    out = load_image(data, size=32)
    # After rotation the picture is portrait: the centre square is split top/bottom, not left/right.
    assert out[:8].mean() != pytest.approx(out[-8:].mean(), abs=50)
    assert out[:, :8].mean() == pytest.approx(out[:, -8:].mean(), abs=1)


def test_centre_square_is_kept() -> None:
    pixels = np.zeros((32, 96, 3), dtype=np.uint8)
    pixels[:, 32:64] = 255  # only the middle third is white
    assert (load_image(encode(Image.fromarray(pixels), "PNG")) == 255).all()


def test_large_jpeg_is_decoded_at_reduced_scale() -> None:
    data = encode(solid("RGB", (50, 100, 150), size=(4000, 3000)), "JPEG")
    opened = Image.open(io.BytesIO(data))
    opened.draft("RGB", (64, 64))
    assert opened.size == (500, 375)  # the decoder's 1/8 scale: what load_image asks for
    assert load_image(data).shape == (32, 32, 3)


def test_not_an_image() -> None:
    with pytest.raises(UnsupportedImageError):
        load_image(b"%PDF-1.4 definitely not a picture")


def test_truncated_image() -> None:
    data = encode(Image.fromarray(np.random.default_rng(1).integers(0, 256, (300, 300, 3), dtype=np.uint8)), "PNG")
    with pytest.raises(CorruptImageError):
        load_image(data[: len(data) // 2])


@pytest.mark.parametrize("side", [8000, 20000])
def test_pixel_limit_is_checked_from_the_header(side: int) -> None:
    # A PNG of one colour is small on disk but huge decoded (20000x20000 is also over PIL's own limit).
    data = encode(Image.new("1", (side, side)), "PNG")
    assert len(data) < 1_000_000
    with pytest.raises(ImageTooLargeError, match="pixels"):
        load_image(data, max_pixels=50_000_000)
