"""app.plain_multipart splits a plain body into exactly the parts python-multipart's parser reads from it, and
leaves every other body (None) to the parser."""

from __future__ import annotations

import random

import pytest
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import MultipartParser, parse_options_header

from app.plain_multipart import Part, boundary_of, disposition_of, split

B = b"b0undary"


def parsed(body: bytes, boundary: bytes = B) -> list[Part] | None:
    """What the real streaming parser reads from ``body`` (fed in 7-byte chunks); None when it refuses it."""
    parts: list[Part] = []
    name = value = b""

    def on_part_begin() -> None:
        parts.append(([], b""))

    def on_header_field(data: bytes, start: int, end: int) -> None:
        nonlocal name
        name += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        nonlocal value
        value += data[start:end]

    def on_header_end() -> None:
        nonlocal name, value
        parts[-1][0].append((name, value))
        name = value = b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1] = (parts[-1][0], parts[-1][1] + data[start:end])

    ended = []
    callbacks = {
        "on_part_begin": on_part_begin,
        "on_header_field": on_header_field,
        "on_header_value": on_header_value,
        "on_header_end": on_header_end,
        "on_part_data": on_part_data,
        "on_part_end": lambda: ended.append(1),
    }
    parser = MultipartParser(boundary, callbacks)
    try:
        for i in range(0, len(body), 7):
            parser.write(body[i : i + 7])
        parser.finalize()
    except FormParserError:
        return None
    return parts if len(ended) == len(parts) else None  # an unfinished last part: refused too


def body(*parts: tuple[list[bytes], bytes], end: bytes = b"\r\n") -> bytes:
    out = b""
    for headers, data in parts:
        out += b"--" + B + b"\r\n" + b"".join(h + b"\r\n" for h in headers) + b"\r\n" + data + b"\r\n"
    return out + b"--" + B + b"--" + end


DISPOSITION = b'Content-Disposition: form-data; name="file"; filename="cat.jpg"'
PLAIN = [
    body(([DISPOSITION], b"\xff\xd8 image bytes")),
    body(([DISPOSITION, b"Content-Type: image/jpeg"], b"a"), ([DISPOSITION], b"b"), ([DISPOSITION], b"")),
    body(([], b"no headers at all")),
    body(([DISPOSITION], b"data with \r\n-- and \r\n--b0undar inside")),
    body(([DISPOSITION], b"x"), end=b""),
    body(([b"X-Empty:", b"content-disposition:    form-data; name=file"], b"spaces, empty value")),
    body(([b"Content-Disposition:\tform-data; name=file"], b"a tab: the parser keeps it, and so does split")),
    body(([DISPOSITION.replace(b"cat.jpg", "chat noir é.jpg".encode())], b"utf-8 name")),
]
NOT_PLAIN = [
    b"preamble\r\n" + body(([DISPOSITION], b"x")),
    body(([DISPOSITION], b"x")).replace(b"--" + B + b"\r\n", b"--" + B + b"  \r\n", 1),  # transport padding
    body(([DISPOSITION], b"x"), end=b"\r\nepilogue"),
    body(([b"Content-Disposition form-data"], b"no colon")),
    body(([b": no name"], b"x")),
    body(([b"Bad\nName: x"], b"bare LF")),
    body(([DISPOSITION] + [b"X-%d: y" % i for i in range(8)], b"nine headers")),
    body(([b"X-Long: " + b"y" * 5000], b"long header")),
    body(([DISPOSITION], b"x"))[:-12],  # no closing boundary
    b"--" + B + b"\r\n" + DISPOSITION + b"\r\nno end of headers",
    b"",
]


@pytest.mark.parametrize("plain", PLAIN)
def test_a_plain_body_is_split_as_the_parser_reads_it(plain: bytes) -> None:
    assert split(plain, B) is not None
    assert split(plain, B) == parsed(plain)


@pytest.mark.parametrize("other", NOT_PLAIN)
def test_any_other_body_is_left_to_the_parser(other: bytes) -> None:
    assert split(other, B) is None


def test_whatever_it_accepts_the_parser_reads_alike() -> None:
    """Mutated bodies (bytes changed, cut, doubled): where split accepts one, the parser gives the same parts."""
    rng = random.Random(0)
    seeds = PLAIN + NOT_PLAIN[:3]
    accepted = 0
    for _ in range(3000):
        mutant = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 3)):
            if not mutant:
                break
            at = rng.randrange(len(mutant))
            kind = rng.randrange(3)
            if kind == 0:
                mutant[at] = rng.choice(b'\r\n-: ab\t"=;' + B)
            elif kind == 1:
                del mutant[at : at + rng.randint(1, 4)]
            else:
                mutant[at:at] = mutant[max(0, at - 6) : at]
        parts = split(bytes(mutant), B)
        if parts is not None:
            accepted += 1
            assert parts == parsed(bytes(mutant)), bytes(mutant)
    assert accepted > 200  # the check above ran on many accepted mutants, not on none


CONTENT_TYPES = [
    "multipart/form-data; boundary=b0undary",
    "multipart/form-data; boundary=------------------------d74496d66958873e",  # curl's
    "multipart/form-data; boundary=3f2bd3b5d2b1f9b4c5d6a1b1f0e9c8d7",  # httpx's
    "multipart/form-data; boundary=----WebKitFormBoundary7MA4YWxkTrZu0gW",  # a browser's
    "multipart/form-data; boundary=a'()+_,-./:=?z",
    'multipart/form-data; boundary="quoted"',
    "multipart/form-data; boundary=x; charset=utf-8",
    "Multipart/Form-Data; boundary=x",
    "multipart/form-data;boundary=x",
    "multipart/form-data; boundary*=x",
    "multipart/form-data; boundary=" + "x" * 71,
    "multipart/form-data; boundary=",
]
DISPOSITIONS = [
    b'form-data; name="file"; filename="cat.jpg"',
    b'form-data; name="file"; filename=""',
    b'form-data; name="other"; filename="a;b=c.png"',
    'form-data; name="file"; filename="chat noir é.jpg"'.encode(),
    b'form-data; name="file"; filename="C:\\photos\\cat.jpg"',  # IE's full path: the parser keeps its tail
    b'form-data; name="file"; filename="a\\"b.jpg"',
    b'form-data; name="file"',
    b'form-data; filename="cat.jpg"; name="file"',
    b"form-data; name=file; filename=cat.jpg",
    b"form-data; name=\"file\"; filename*=UTF-8''cat.jpg",
    b'Form-Data; name="file"; filename="cat.jpg"',
]


@pytest.mark.parametrize("content_type", CONTENT_TYPES)
def test_a_plain_content_type_gives_the_parsers_boundary(content_type: str) -> None:
    plain = boundary_of(content_type)
    media_type, params = parse_options_header(content_type)
    if plain is not None:
        assert (media_type, params) == (b"multipart/form-data", {b"boundary": plain})
    assert (plain is not None) == (content_type in CONTENT_TYPES[:5])  # the plain ones, and only those


@pytest.mark.parametrize("value", DISPOSITIONS)
def test_a_plain_disposition_gives_the_parsers_name_and_filename(value: bytes) -> None:
    plain = disposition_of(value)
    _, options = parse_options_header(value)
    if plain is not None:
        assert options == {b"name": plain[0], b"filename": plain[1]}
    assert (plain is not None) == (value in DISPOSITIONS[:4])


def test_mutated_headers_read_alike() -> None:
    rng = random.Random(1)
    accepted = 0
    for _ in range(3000):
        seed = rng.choice(DISPOSITIONS)
        mutant = bytearray(seed)
        at = rng.randrange(len(mutant))
        mutant[at : at + rng.randint(0, 2)] = bytes(rng.choice(b'";=\\ *aZ\xe9') for _ in range(rng.randint(0, 2)))
        plain = disposition_of(bytes(mutant))
        if plain is not None:
            accepted += 1
            assert parse_options_header(bytes(mutant))[1] == {b"name": plain[0], b"filename": plain[1]}
        text = rng.choice(CONTENT_TYPES[:5])
        cut = rng.randrange(len(text))
        mutated = text[:cut] + rng.choice('";= *xX') + text[cut + 1 :]
        boundary = boundary_of(mutated)
        if boundary is not None:
            accepted += 1
            assert parse_options_header(mutated) == (b"multipart/form-data", {b"boundary": boundary})
    assert accepted > 500
