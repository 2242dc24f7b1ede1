"""Small images are decoded on the event loop, anything else in the decode pool: chosen from the header."""

import asyncio
import io
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from PIL import Image

from app.errors import BadRequest, PayloadTooLarge, UnsupportedMedia
from app.uploads import INLINE_MAX_BYTES, INLINE_MAX_PIXELS, Upload, decode_uploads
from tests.app.helpers import picture, png


class CountingPool(ThreadPoolExecutor):
    """A real thread pool that counts what it was given."""

    submitted = 0

    def submit(self, *args, **kwargs):
        self.submitted += 1
        return super().submit(*args, **kwargs)


def _decode(*uploads: Upload) -> tuple[object, int]:
    with CountingPool(2) as pool:
        try:
            result = asyncio.run(decode_uploads(list(uploads), pool, 32, 50_000_000))
        except Exception as exc:
            result = exc
        return result, pool.submitted


def test_a_cifar_sized_image_never_leaves_the_loop():
    images, hops = _decode(Upload("a.png", 1, png(picture(32, 32))))
    assert images.shape == (1, 32, 32, 3) and hops == 0


def test_few_bytes_of_many_pixels_are_decoded_in_the_pool():
    flat = io.BytesIO()
    Image.new("RGB", (2000, 2000), (10, 20, 30)).save(flat, "PNG")  # 4 megapixels in a few KB
    assert len(flat.getvalue()) <= INLINE_MAX_BYTES and INLINE_MAX_PIXELS < 2000 * 2000
    images, hops = _decode(Upload("flat.png", 1, flat.getvalue()))
    assert hops == 1 and images[0, 0, 0].tolist() == [10, 20, 30]


def test_a_large_file_and_several_files_go_to_the_pool():
    noise = np.random.default_rng(0).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    big = png(Image.fromarray(noise))  # noise does not compress: 120 KB
    assert len(big) > INLINE_MAX_BYTES
    assert _decode(Upload("big.png", 1, big))[1] == 1
    assert _decode(Upload("a.png", 1, png()), Upload("b.png", 2, png()))[1] == 2


@pytest.mark.parametrize(
    ("data", "error", "words"),
    [
        (b"not an image", UnsupportedMedia, "not a supported image"),
        (png(picture(32, 32))[:60], BadRequest, "truncated"),
    ],
)
def test_inline_errors_name_the_file(data, error, words):
    result, _ = _decode(Upload("bad.png", 1, data))
    assert isinstance(result, error) and "'bad.png'" in result.detail and words in result.detail


def test_the_pixel_limit_is_checked_before_either_path():
    with CountingPool(1) as pool:
        with pytest.raises(PayloadTooLarge, match="over the limit of 100"):
            asyncio.run(decode_uploads([Upload("a.png", 1, png(picture(32, 32)))], pool, 32, 100))
        assert pool.submitted == 0
