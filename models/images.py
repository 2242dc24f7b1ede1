"""An image file of any format, size and mode -> the source-size uint8 RGB array the model expects.

Training's image-folder reader and the service's uploads both go through ``load_image``, so a picture is
reduced to 32x32 in exactly one way. Choices, for a demanding user:

- the largest centred square is kept, then resized (CIFAR images are square; squashing would distort);
- EXIF orientation is applied first (phone photos are stored sideways);
- transparency is composited on white (how a transparent picture is usually seen);
- 16-bit images are scaled to 8 bits, not clipped;
- a JPEG is decoded at a reduced scale (1/2 .. 1/8, by the decoder) when it is much larger than needed,
  so a 12-megapixel photo is never decoded at full size only to become 32x32;
- the pixel count is checked from the header before any decoding, so a decompression bomb never
  allocates its full size.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from models.transforms import SOURCE_SIZE

SUPPORTED_FORMATS: tuple[str, ...] = ("JPEG", "PNG", "WEBP", "BMP", "GIF", "TIFF")
ORIENTATION = 0x0112  # the EXIF tag; 1 (or none) means stored upright
DEFAULT_MAX_PIXELS = 50_000_000  # pixels (width x height): about a 50-megapixel photo


class ImageError(ValueError):
    """An image that cannot be used; the message says why, in words fit for a client."""


class UnsupportedImageError(ImageError):
    """Not an image, or a format we do not accept."""


class CorruptImageError(ImageError):
    """A recognised format whose data is broken or truncated."""


class ImageTooLargeError(ImageError):
    """More pixels than allowed, found from the header before decoding."""


def load_image(
    source: bytes | str | os.PathLike[str] | BinaryIO,
    size: int = SOURCE_SIZE,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Decode an image file into a uint8 RGB array of shape (size, size, 3)."""
    if isinstance(source, bytes):
        source = io.BytesIO(source)
    return decode_opened(open_image(source, max_pixels), size)


def decode_opened(image: Image.Image, size: int = SOURCE_SIZE) -> np.ndarray:
    """``load_image``'s second half: decode an image ``open_image`` checked, reduce it, close it."""
    try:
        return reduce_image(image, size)
    except (OSError, SyntaxError, ValueError, EOFError) as exc:  # PIL reports broken data these ways
        raise CorruptImageError(f"the image data is corrupt or truncated ({exc})") from exc
    finally:
        image.close()


def open_image(fp: str | os.PathLike[str] | BinaryIO, max_pixels: int = DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read only the header: check the format and the pixel count, decode nothing yet."""
    try:
        with warnings.catch_warnings():
            # We enforce our own limit below; PIL's bomb warning would only duplicate it.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(fp, formats=SUPPORTED_FORMATS)
    except UnidentifiedImageError as exc:
        raise UnsupportedImageError(f"not a supported image (accepted: {', '.join(SUPPORTED_FORMATS)})") from exc
    except Image.DecompressionBombError as exc:  # over twice PIL's own limit: it refuses to open it at all
        raise ImageTooLargeError(f"{_bomb_pixels(exc)}, over the limit of {max_pixels:,}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise CorruptImageError(f"the image header is corrupt ({exc})") from exc
    width, height = image.size
    if width < 1 or height < 1:
        raise CorruptImageError(f"the image has no pixels ({width}x{height})")
    if width * height > max_pixels:
        image.close()
        raise ImageTooLargeError(f"{width}x{height} is {width * height:,} pixels, over the limit of {max_pixels:,}")
    return image


def _bomb_pixels(exc: Image.DecompressionBombError) -> str:
    """The pixel count in PIL's refusal ("Image size (400000000 pixels) exceeds limit of ..."), our wording."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    return f"{int(found[1]):,} pixels" if found else "more pixels than PIL will open"


def reduce_image(image: Image.Image, size: int = SOURCE_SIZE) -> np.ndarray:
    """Orient, convert to RGB, keep the centred square and resize it: (size, size, 3) uint8."""
    image.seek(0)  # GIF and multi-page TIFF: the first frame
    if image.format == "JPEG":
        # Let the decoder downscale by up to 8x while both sides stay >= 2x the target (kept for quality).
        image.draft(image.mode, (2 * size, 2 * size))
    if image.getexif().get(ORIENTATION, 1) != 1:
        image = ImageOps.exif_transpose(image)  # decodes, applying EXIF orientation
    rgb = to_rgb(image)
    # Already the size (a CIFAR image): nothing to crop or resize, and fit would copy it all the same
    square = rgb if rgb.size == (size, size) else ImageOps.fit(rgb, (size, size), method=Image.Resampling.BILINEAR)
    # One copy into a writable array (np.asarray of a PIL image is read-only, and slower for small images)
    return np.frombuffer(bytearray(square.tobytes()), dtype=np.uint8).reshape(size, size, 3)


def to_rgb(image: Image.Image) -> Image.Image:
    """Any PIL mode -> RGB: alpha on white, palette expanded, CMYK converted, 16-bit scaled."""
    mode = image.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit samples: keep the top 8 bits (PIL's convert("L") would clip at 255 instead).
        wide = np.asarray(image, dtype=np.int64)
        image = Image.fromarray((np.clip(wide, 0, 65535) >> 8).astype(np.uint8), mode="L")
    elif mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), mode="L")
    if image.mode == "P" or image.mode in ("LA", "PA", "RGBA") or "transparency" in image.info:
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert would copy an RGB image
