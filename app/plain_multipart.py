"""A whole, small multipart/form-data body in its plainest form, split in one go with ``bytes.find``.

python-multipart's streaming parser (app/uploads.py) reads a part's headers one byte at a time in Python: for
a CIFAR-sized upload that was a sixth of the service's time per request without the model (py-spy,
docs/benchmarks.md). Most clients (curl, requests, httpx, browsers) send exactly the plain form this module
accepts. Anything else — a preamble, transport padding after a boundary, an epilogue, a header line that is
not ``Name: value``, more or longer headers than the parser allows, a missing end — is not judged here:
``split`` returns None and the streaming parser reads the same bytes, so it alone decides what is malformed
and how to say it. A body ``split`` accepts is one the parser would read into the same parts.
"""

from __future__ import annotations

import re

from python_multipart.multipart import DEFAULT_MAX_HEADER_COUNT, DEFAULT_MAX_HEADER_SIZE

MAX_BYTES = 64 * 1024  # bodies up to this size (declared by Content-Length) are read whole and split here
# The name in python-multipart's token characters; the value what it keeps after the colon's spaces (spaces
# only, not tabs), holding no CR or LF
_HEADER = re.compile(rb"([!#$%&'*+\-.^_`|~0-9A-Za-z]+): *([^\r\n]*)")

Part = tuple[list[tuple[bytes, bytes]], bytes]  # (header name and value pairs, data)

# The two headers as curl, requests, httpx and browsers write them; python-multipart's parse_options_header
# (a character-by-character split in Python) reads anything else. Only characters that it keeps as they are:
# no quotes, backslashes, semicolons in a value, or '*' (RFC 2231 parameters, which it drops).
_CONTENT_TYPE = re.compile(r"multipart/form-data; boundary=([0-9A-Za-z'()+_,\-./:=?]{1,70})")
_DISPOSITION = re.compile(rb'form-data; name="([^"\\]*)"; filename="([^"\\]*)"')


def boundary_of(content_type: str) -> bytes | None:
    """The boundary of a Content-Type in the plain form, else None (parse it with parse_options_header)."""
    match = _CONTENT_TYPE.fullmatch(content_type)
    return match[1].encode("latin-1") if match else None


def disposition_of(value: bytes) -> tuple[bytes, bytes] | None:
    """(name, filename) of a part's Content-Disposition in the plain form, else None (parse_options_header)."""
    match = _DISPOSITION.fullmatch(value)
    return (match[1], match[2]) if match else None


def split(body: bytes, boundary: bytes) -> list[Part] | None:
    """The parts of ``body`` in order, or None when it is not in the plain form (the parser must read it)."""
    opening, delimiter = b"--" + boundary + b"\r\n", b"\r\n--" + boundary
    if not body.startswith(opening):
        return None
    parts: list[Part] = []
    position = len(opening)
    while True:
        end = body.find(delimiter, position)
        if end < 0:
            return None  # no closing boundary: unfinished
        part = _part(body, position, end)
        if part is None:
            return None
        parts.append(part)
        after = end + len(delimiter)
        following = body[after : after + 2]
        if following == b"--":  # the closing boundary: only a line break may follow it
            return parts if body[after + 2 :] in (b"", b"\r\n") else None
        if following != b"\r\n":
            return None  # padding or garbage after a boundary: the parser's to judge
        position = after + 2


def _part(body: bytes, start: int, end: int) -> Part | None:
    if body.startswith(b"\r\n", start):  # no headers at all
        return [], body[start + 2 : end]
    head_end = body.find(b"\r\n\r\n", start, end)
    if head_end < 0:
        return None
    lines = body[start:head_end].split(b"\r\n")
    if len(lines) > DEFAULT_MAX_HEADER_COUNT:
        return None
    headers = []
    for line in lines:
        match = _HEADER.fullmatch(line)
        if match is None or len(line) > DEFAULT_MAX_HEADER_SIZE:
            return None
        headers.append((match[1], match[2]))
    return headers, body[head_end + 4 : end]
