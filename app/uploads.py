"""Reading uploads: a multipart body, or one image as the body, streamed with its limits enforced as bytes arrive,
then decoded off the loop.

Nothing is spooled to disk and nothing over a limit is held: the declared Content-Length is checked before
the body is read, and the body, each file and the number of files are counted while it streams, so an
oversized upload is refused after at most one chunk past the limit. Every error names the offending file.
"""

from __future__ import annotations

import asyncio
import io
import logging
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.message import Message

import numpy as np
from PIL import Image
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import Request

from app import plain_multipart
from app.errors import BadRequest, PayloadTooLarge, Unprocessable, UnsupportedMedia
from models.images import CorruptImageError, ImageTooLargeError, UnsupportedImageError, decode_opened, open_image

# python-multipart logs a WARNING in its own wording for each malformed body: a client could fill the log with
# them; the 400 names the fault (_multipart_error) and the access line records it.
logging.getLogger("python_multipart").setLevel(logging.ERROR)

FIELD = "file"  # the multipart field carrying images, repeated for several
RAW_MEDIA_TYPES = ("image/*", "application/octet-stream")  # one image as the whole body
# What a 415 for the body lists: the multipart upload, or one image as the body
ACCEPTED_BODIES = f"multipart/form-data (images in the field {FIELD!r}), image/* or application/octet-stream"
NO_FILES = f"no files: send images as multipart/form-data in the field {FIELD!r}, or one image as the body"


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
    raw: bool = False  # the whole request body, not a multipart part

    @property
    def name(self) -> str:
        """How errors refer to the file."""
        if self.filename:
            return f"file {self.filename!r}"
        return "the request body" if self.raw else f"file #{self.index}"


async def read_uploads(request: Request, limits: UploadLimits) -> list[Upload]:
    """The request's images, in order; raises 400/413/415/422 errors (the body's deadline is the caller's:
    ``app.pipeline``).

    Two bodies are accepted: multipart/form-data with the files in the ``file`` field, or one image as the
    whole body (``Content-Type: image/*`` or ``application/octet-stream``; a body without a Content-Type is
    taken as application/octet-stream, as RFC 9110 8.3 allows, which is what ``curl -T cat.jpg`` sends).
    """
    length = content_length(request, limits.max_body_bytes)
    content_type = request.headers.get("content-type", "")
    plain_boundary = plain_multipart.boundary_of(content_type)  # the common case, without the general parser
    media_type, params = (
        (b"multipart/form-data", {b"boundary": plain_boundary})
        if plain_boundary
        else parse_options_header(content_type)
    )
    has_body = length not in (None, 0) or "transfer-encoding" in request.headers
    one_image = media_type.startswith(b"image/") or media_type == b"application/octet-stream"
    if media_type == b"multipart/form-data":
        reading = _read_multipart(request, _boundary(params), limits, length)
    elif one_image or (not content_type and has_body):
        reading = _read_raw(request, length, limits)
    elif not has_body:
        raise Unprocessable(NO_FILES)
    else:
        shown = content_type or "no Content-Type"
        raise UnsupportedMedia(f"expected {ACCEPTED_BODIES}, got {shown}")
    return await reading


async def read_body(request: Request, max_body_bytes: int, empty: str) -> bytes:
    """The whole body with the same limits (Content-Length checked first, bytes counted as they stream); an
    empty one is a 400 saying ``empty``."""
    content_length(request, max_body_bytes)
    body = await read_capped(request, max_body_bytes, _too_large(max_body_bytes))
    if not body:
        raise BadRequest(empty)
    return body


def content_length(request: Request, max_body_bytes: int) -> int | None:
    """The declared length, checked before reading any of the body."""
    length = request.headers.get("content-length")
    if length is None:
        return None
    if not length.isdigit():
        raise BadRequest("the Content-Length header is not a number")
    if int(length) > max_body_bytes:
        raise PayloadTooLarge(f"the request body is {int(length):,} bytes, over the limit of {max_body_bytes:,}")
    return int(length)


def _boundary(params: dict[bytes, bytes]) -> bytes:
    boundary = params.get(b"boundary")
    if not boundary:
        raise BadRequest("malformed multipart body: no boundary in the Content-Type header")
    return boundary


async def _read_multipart(request: Request, boundary: bytes, limits: UploadLimits, length: int | None) -> list[Upload]:
    reader = _PartReader(limits)
    if length is not None and length <= plain_multipart.MAX_BYTES:  # small: whole, and split at once if plain
        body = await read_capped(request, limits.max_body_bytes, _too_large(limits.max_body_bytes))
        parts = plain_multipart.split(body, boundary)
        if parts is not None:
            reader.read_parts(parts)
            return _uploads(reader)
        chunks: AsyncIterator[bytes] = _once(body)  # not plain: the parser reads the same bytes, and judges them
    else:
        chunks = request.stream()
    parser = MultipartParser(boundary, reader.callbacks())
    received = start = 0
    try:
        async for chunk in chunks:
            start, received = received, received + len(chunk)
            if received > limits.max_body_bytes:
                raise PayloadTooLarge(_too_large(limits.max_body_bytes))
            parser.write(chunk)
        parser.finalize()
    except FormParserError as exc:
        offset = getattr(exc, "offset", -1)  # within the chunk being parsed
        raise BadRequest(_multipart_error(str(exc), boundary, start + offset if offset >= 0 else None)) from None
    if reader.open_part:
        raise BadRequest("malformed multipart body: it ends inside a part (no closing --boundary--)")
    return _uploads(reader)


def _uploads(reader: _PartReader) -> list[Upload]:
    if not reader.uploads:
        raise Unprocessable(NO_FILES)
    return reader.uploads


def _too_large(max_body_bytes: int) -> str:
    return f"the request body is over the limit of {max_body_bytes:,} bytes"


async def _once(body: bytes) -> AsyncIterator[bytes]:
    yield body


def _multipart_error(parser_message: str, boundary: bytes, at: int | None) -> str:
    """What the client got wrong, in its terms: python-multipart's own words name its internal states."""
    message = parser_message.lower()
    if message.startswith(("expected boundary character", "did not find cr at end of", "did not find lf at end of b")):
        shown = boundary[:70].decode("latin-1")  # RFC 2046 caps a boundary at 70 characters; the client chose it
        what = f"it does not start with --{shown} and a line break, the boundary its Content-Type header gives"
    elif "header" in message and "maximum" in message:
        what = "a part's headers are over the parser's size or count limit"
    elif "header" in message:
        what = "a part's headers are not 'Name: value' lines ending in CRLF, followed by an empty line"
    elif "boundary" in message:
        what = "a boundary inside it is malformed (each part ends with CRLF --boundary, the last with --boundary--)"
    else:
        what = "it is not multipart/form-data as its Content-Type says"
    return f"malformed multipart body: {what}" + (f" (at byte {at:,})" if at is not None else "")


async def _read_raw(request: Request, length: int | None, limits: UploadLimits) -> list[Upload]:
    """The whole body is one image; its name, if any, from ``Content-Disposition: ...; filename=``."""
    upload = Upload(filename=_disposition_filename(request.headers.get("content-disposition")), index=1, raw=True)
    limit = min(limits.max_file_bytes, limits.max_body_bytes)  # the body's own limit was checked from its length
    if length is not None and length > limit:
        raise PayloadTooLarge(f"{upload.name} is {length:,} bytes, over the limit of {limit:,}")
    upload.data = await read_capped(request, limit, f"{upload.name} is over the limit of {limit:,} bytes")
    if not upload.data:
        raise BadRequest(f"{upload.name} is empty: send the image's bytes as the request body")
    return [upload]


async def read_capped(request: Request, limit: int, too_large: str) -> bytes:
    """The whole body, counted as it streams: PayloadTooLarge(``too_large``) one chunk past ``limit`` at most."""
    chunks, received = [], 0
    async for chunk in request.stream():
        received += len(chunk)
        if received > limit:
            raise PayloadTooLarge(too_large)
        chunks.append(chunk)
    return b"".join(chunks)


def _disposition_filename(value: str | None) -> str:
    """``attachment; filename="cat.jpg"`` (or RFC 6266's ``filename*=UTF-8''...``) -> cat.jpg; none -> ""."""
    if not value:
        return ""
    header = Message()
    # Starlette decodes headers as latin-1; a client sending a UTF-8 name raw (as multipart parts do) meant UTF-8
    header["content-disposition"] = value.encode("latin-1").decode("utf-8", "replace")
    return header.get_filename("")


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
        plain = plain_multipart.disposition_of(self._disposition)  # the common case, without the general parser
        options = {b"name": plain[0], b"filename": plain[1]} if plain else parse_options_header(self._disposition)[1]
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

    def read_parts(self, parts: list[plain_multipart.Part]) -> None:
        """Parts split by app.plain_multipart, through the same callbacks and checks, in the same order."""
        for headers, data in parts:
            self.on_part_begin()
            for name, value in headers:
                self._header_name, self._header_value = name, value
                self.on_header_end()
            self.on_headers_finished()
            self.on_part_data(data, 0, len(data))
            self.on_part_end()


# A small image is decoded on the event loop: for a CIFAR-sized upload the hop to a thread and back costs more
# than the decode. "Small" is read from the header, never guessed from the bytes: a few KB of PNG can hold
# millions of pixels, which must not stall the loop. At these bounds a decode takes about 0.1 ms.
INLINE_MAX_BYTES = 32 * 1024
INLINE_MAX_PIXELS = 128 * 128


@contextmanager
def _named_errors(upload: Upload) -> Iterator[None]:
    """models.images' errors as the HTTP errors they are, naming the file."""
    try:
        yield
    except UnsupportedImageError as exc:
        raise UnsupportedMedia(f"{upload.name}: {exc}") from None
    except ImageTooLargeError as exc:
        raise PayloadTooLarge(f"{upload.name}: {exc}") from None
    except CorruptImageError as exc:
        raise BadRequest(f"{upload.name}: {exc}") from None


def decode_image(upload: Upload, size: int, max_pixels: int, opened: Image.Image | None = None) -> np.ndarray:
    """One upload -> uint8 (size, size, 3) by the trainer's own ``load_image``; errors name the file.

    ``opened``: the upload's header, already read and checked by ``open_image``."""
    if not upload.data:
        raise BadRequest(f"{upload.name} is empty")
    with _named_errors(upload):
        return decode_opened(opened or open_image(io.BytesIO(upload.data), max_pixels), size)


async def decode_uploads(uploads: list[Upload], executor: Executor, size: int, max_pixels: int) -> np.ndarray:
    """Decode every upload, in the thread pool (in parallel) unless it is one small image; uint8 (n, size, size, 3)
    in request order."""
    loop = asyncio.get_running_loop()
    if len(uploads) == 1:  # the common case: at most one hop to a thread, no gather
        upload = uploads[0]
        if not upload.data or len(upload.data) > INLINE_MAX_BYTES:
            return (await loop.run_in_executor(executor, decode_image, upload, size, max_pixels))[None]
        with _named_errors(upload):
            opened = open_image(io.BytesIO(upload.data), max_pixels)  # the header only: microseconds
        if opened.width * opened.height <= INLINE_MAX_PIXELS:
            return decode_image(upload, size, max_pixels, opened)[None]
        return (await loop.run_in_executor(executor, decode_image, upload, size, max_pixels, opened))[None]
    decoded = await asyncio.gather(
        *(loop.run_in_executor(executor, decode_image, u, size, max_pixels) for u in uploads), return_exceptions=True
    )
    for result in decoded:  # the first bad file in request order is the one reported
        if isinstance(result, BaseException):
            raise result
    return np.stack(decoded)  # type: ignore[arg-type]
