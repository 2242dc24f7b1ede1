"""Reading uploads: a multipart body streamed with its limits enforced as bytes arrive, then decoded off the loop.

Nothing is spooled to disk and nothing over a limit is held: the declared Content-Length is checked before
the body is read, and the body, each file and the number of files are counted while it streams, so an
oversized upload is refused after at most one chunk past the limit. Every error names the offending file.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Executor
from dataclasses import dataclass, field

import numpy as np
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import BadRequest, BodyTimeout, PayloadTooLarge, Unprocessable, UnsupportedMedia
from models import load_image
from models.images import CorruptImageError, ImageTooLargeError, UnsupportedImageError

FIELD = "file"  # the multipart field carrying images, repeated for several


@dataclass(frozen=True)
class UploadLimits:
    max_files: int
    max_file_bytes: int
    max_body_bytes: int


@dataclass
class Upload:
    """One uploaded file: its name as the client sent it, its bytes and its 1-based position."""

    filename: str
    index: int
    data: bytes = b""

    @property
    def name(self) -> str:
        """How errors refer to the file."""
        return f"file {self.filename!r}" if self.filename else f"file #{self.index}"


async def read_uploads(request: Request, limits: UploadLimits, timeout_s: float) -> list[Upload]:
    """The files in the request's ``file`` field, in order; raises 400/408/413/415/422 errors.

    The whole body must arrive within ``timeout_s``: a client that stalls is answered 408 and its
    connection closed, so what it sent is freed instead of held for as long as it likes.
    """
    boundary = _boundary(request, limits)
    reader = _PartReader(limits)
    parser = MultipartParser(boundary, reader.callbacks())
    try:
        await asyncio.wait_for(_parse_body(request, parser, limits.max_body_bytes), timeout_s)
    except asyncio.TimeoutError:  # TimeoutError itself from Python 3.11 on
        raise BodyTimeout(timeout_s) from None
    except FormParserError as exc:
        raise BadRequest(f"malformed multipart body ({exc})") from None
    except ClientDisconnect:  # nobody to answer; not a server error worth a traceback
        raise BadRequest("the client disconnected before sending the whole body") from None
    if reader.open_part:
        raise BadRequest("malformed multipart body (it ends inside a part)")
    if not reader.uploads:
        raise Unprocessable(f"no files: send images as multipart/form-data in the field {FIELD!r}")
    return reader.uploads


async def _parse_body(request: Request, parser: MultipartParser, max_body_bytes: int) -> None:
    received = 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > max_body_bytes:
            raise PayloadTooLarge(f"the request body is over the limit of {max_body_bytes:,} bytes")
        parser.write(chunk)
    parser.finalize()


def _boundary(request: Request, limits: UploadLimits) -> bytes:
    """Check the headers before reading any of the body."""
    length = request.headers.get("content-length")
    if length is not None:
        if not length.isdigit():
            raise BadRequest("the Content-Length header is not a number")
        if int(length) > limits.max_body_bytes:
            limit = limits.max_body_bytes
            raise PayloadTooLarge(f"the request body is {int(length):,} bytes, over the limit of {limit:,}")
    content_type = request.headers.get("content-type", "")
    media_type, params = parse_options_header(content_type)
    if media_type != b"multipart/form-data":
        if length in (None, "0") and "transfer-encoding" not in request.headers:
            raise Unprocessable(f"no files: send images as multipart/form-data in the field {FIELD!r}")
        shown = content_type or "no Content-Type"
        raise UnsupportedMedia(f"expected multipart/form-data with images in the field {FIELD!r}, got {shown}")
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("malformed multipart body (no boundary in the Content-Type header)")
    return boundary


@dataclass
class _PartReader:
    """python-multipart callbacks collecting file parts, enforcing the per-file and file-count limits."""

    limits: UploadLimits
    uploads: list[Upload] = field(default_factory=list)
    open_part: bool = False
    _chunks: list[bytes] = field(default_factory=list)
    _size: int = 0
    _header_name: bytes = b""
    _header_value: bytes = b""
    _disposition: bytes = b""

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
        }

    def on_part_begin(self) -> None:
        self.open_part = True
        self._chunks, self._size, self._disposition = [], 0, b""

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        if self._header_name.lower() == b"content-disposition":
            self._disposition = self._header_value
        self._header_name, self._header_value = b"", b""

    def on_headers_finished(self) -> None:
        _, options = parse_options_header(self._disposition)
        name = options.get(b"name", b"").decode("utf-8", "replace")
        if name != FIELD:
            raise Unprocessable(f"unexpected form field {name!r}: send images in the field {FIELD!r}")
        if len(self.uploads) >= self.limits.max_files:
            raise PayloadTooLarge(f"too many files: at most {self.limits.max_files} per request")
        filename = options.get(b"filename", b"").decode("utf-8", "replace")
        self.uploads.append(Upload(filename=filename, index=len(self.uploads) + 1))

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        self._size += end - start
        if self._size > self.limits.max_file_bytes:
            upload = self.uploads[-1]
            raise PayloadTooLarge(f"{upload.name} is over the limit of {self.limits.max_file_bytes:,} bytes")
        self._chunks.append(data[start:end])

    def on_part_end(self) -> None:
        self.uploads[-1].data = b"".join(self._chunks)
        self._chunks = []
        self.open_part = False


def decode_image(upload: Upload, size: int, max_pixels: int) -> np.ndarray:
    """One upload -> uint8 (size, size, 3) by the trainer's own ``load_image``; errors name the file."""
    if not upload.data:
        raise BadRequest(f"{upload.name} is empty")
    try:
        return load_image(upload.data, size=size, max_pixels=max_pixels)
    except UnsupportedImageError as exc:
        raise UnsupportedMedia(f"{upload.name}: {exc}") from None
    except ImageTooLargeError as exc:
        raise PayloadTooLarge(f"{upload.name}: {exc}") from None
    except CorruptImageError as exc:
        raise BadRequest(f"{upload.name}: {exc}") from None


async def decode_uploads(uploads: list[Upload], executor: Executor, size: int, max_pixels: int) -> np.ndarray:
    """Decode every upload in the thread pool (in parallel); uint8 (n, size, size, 3) in request order."""
    loop = asyncio.get_running_loop()
    if len(uploads) == 1:  # the common case: one hop to a thread, no gather
        return (await loop.run_in_executor(executor, decode_image, uploads[0], size, max_pixels))[None]
    decoded = await asyncio.gather(
        *(loop.run_in_executor(executor, decode_image, u, size, max_pixels) for u in uploads), return_exceptions=True
    )
    for result in decoded:  # the first bad file in request order is the one reported
        if isinstance(result, BaseException):
            raise result
    return np.stack(decoded)  # type: ignore[arg-type]
